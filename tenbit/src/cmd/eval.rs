//! `tenbit eval`: the paper's evaluation, small alone vs strong alone vs the few-bit modes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tenbit_cli::ModelArgs;
use tenbit_lm::codec::LmCodec;

use super::{spinner, StrongArgs, FETCH};

/// Which benchmark(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SuiteArg {
    /// GSM8K (the pinned fixture of 100 test questions), in a seeded order.
    Gsm8k,
    /// MATH-500 problems of MMATH (311), in a seeded order, graded by normalised LaTeX.
    Math500,
    /// AIME 2024/2025 and CNMO problems of MMATH (63), in a seeded order.
    Hard,
    /// MMLU STEM subjects, a seeded subject-stratified sample.
    MmluStem,
    Humaneval,
    /// The hand-written and generated math problems (a smoke test, not a benchmark).
    Math,
    /// HumanEval and math.
    All,
}

/// Evaluate question-asking and rewrite against the small and strong models alone:
/// HumanEval (pass@1 in a sandboxed python3) and math word problems with verified answers.
/// Writes report.json, report.md and two SVG frontier plots into --out.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tenbit eval --suite math --limit 20 --strong http://127.0.0.1:8080\n  \
tenbit eval --suite humaneval --limit 10 --bits 1,2,5,10 --strong-model qwen2.5-coder-1.5b\n  \
tenbit eval --small qwen2.5-coder-0.5b --strong-model qwen2.5-coder-1.5b --out eval-out\n\n\
The strong model is --strong URL (any OpenAI-compatible server; --strong-model then names the \
server's model) or a local GGUF: --strong PATH|NAME, or --strong-model PATH|NAME without --strong."
)]
pub struct Args {
    /// Small model (GGUF path or catalogue name); same as --model.
    #[arg(long, value_name = "PATH|NAME")]
    small: Option<String>,
    #[command(flatten)]
    cfg: EvalArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// The evaluation's own options.
#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Which benchmark(s).
    #[arg(long, value_enum, default_value = "all")]
    suite: SuiteArg,
    /// Only the first N tasks of each suite (math: the hand-written ones first).
    #[arg(long)]
    limit: Option<usize>,
    /// Question counts K to evaluate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10")]
    bits: Vec<usize>,
    /// Pick index bits K to evaluate, comma-separated (none by default).
    #[arg(long, value_delimiter = ',')]
    pick_bits: Vec<u32>,
    /// Also run QA with the benchmark's gold answer shown to the judge (the paper's setting;
    /// a deployed encoder has no gold answer, so both figures are reported).
    #[arg(long)]
    oracle: bool,
    /// Continue the run in DIR (its tasks/ folder holds one JSON per finished task): finished
    /// tasks are kept, tasks with a strong-model outage are retried. Implies --out DIR.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    strong: StrongArgs,
    /// Output directory for report.json, report.md and the plots.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
    /// Generated math problems (after the hand-written ones) when --limit is absent.
    #[arg(long, default_value_t = 42)]
    math_generated: usize,
    /// Seed of the math problem generator and of the GSM8K sample order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Token limit of the strong model's answers.
    #[arg(long, default_value_t = 512)]
    strong_max_tokens: u32,
    /// Token limit of the strong model's rewrites.
    #[arg(long, default_value_t = 512)]
    rewrite_max_tokens: u32,
    /// Wall-clock limit of one HumanEval test run, in seconds.
    #[arg(long, default_value_t = 10)]
    test_timeout: u64,
}

fn file_label(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `tenbit eval`: load the tasks and models, run every task with a progress bar, write the
/// report.
pub fn run(a: Args, quiet: bool) -> Result<()> {
    let (c, mut model) = (a.cfg, a.model);
    if a.small.is_some() {
        model.model = a.small;
    }
    use tenbit::eval::{self, tasks};
    anyhow::ensure!(
        c.bits.iter().all(|&k| k <= tenbit_lm::qa::MAX_BITS),
        "--bits: at most {} questions per message",
        tenbit_lm::qa::MAX_BITS
    );
    let mut bits = c.bits.clone();
    bits.sort_unstable();
    bits.dedup();
    let mut pick_bits = c.pick_bits.clone();
    pick_bits.sort_unstable();
    pick_bits.dedup();
    for &k in &pick_bits {
        tenbit_lm::pick::check_bits(k).map_err(tenbit_lm::codec::CodecError::from)?;
    }
    let out_dir = c.resume.clone().unwrap_or_else(|| c.out.clone());
    let mut all = Vec::new();
    match c.suite {
        SuiteArg::Gsm8k => {
            let t = tasks::gsm8k()?;
            let n = c.limit.unwrap_or(t.len());
            all.extend(tasks::seeded_sample(t, c.seed, n));
        }
        SuiteArg::Math500 | SuiteArg::Hard => {
            let (m, h) = tasks::mmath()?;
            let t = if c.suite == SuiteArg::Math500 { m } else { h };
            let n = c.limit.unwrap_or(t.len());
            all.extend(tasks::seeded_sample(t, c.seed, n));
        }
        SuiteArg::MmluStem => {
            let t = tasks::mmlu_stem()?;
            let n = c.limit.unwrap_or(100);
            all.extend(tasks::stratified_sample(t, tasks::MMLU_STEM, c.seed, n));
        }
        _ => {}
    }
    if matches!(c.suite, SuiteArg::Humaneval | SuiteArg::All) {
        let mut t = tasks::humaneval()?;
        if let Some(n) = c.limit {
            t.truncate(n);
        }
        all.extend(t);
    }
    if matches!(c.suite, SuiteArg::Math | SuiteArg::All) {
        let mut t = tasks::parse_math_jsonl(
            include_str!("../../../tests/data/eval/math.jsonl"),
            "tests/data/eval/math.jsonl",
        )?;
        let want = c.limit.unwrap_or(t.len() + c.math_generated);
        let extra = want.saturating_sub(t.len());
        t.extend(tasks::generate_math(c.seed, extra));
        t.truncate(want);
        all.extend(t);
    }
    anyhow::ensure!(!all.is_empty(), "no tasks selected");
    let small_path = model.resolve(FETCH)?;
    let m = tenbit_engine::Model::load(&small_path)
        .with_context(|| format!("cannot load {}", small_path.display()))?;
    let codec = LmCodec::new(&m, model.session_options())?;
    let (strong, strong_name) = c.strong.open("tenbit eval")?;
    tracing::info!(small = %small_path.display(), strong = %strong_name, tasks = all.len(), "evaluating");
    let ev = eval::Evaluator::new(
        &codec,
        strong.as_ref(),
        eval::Options {
            bits: bits.clone(),
            strong_max_tokens: c.strong_max_tokens,
            rewrite_max_tokens: c.rewrite_max_tokens,
            sandbox: eval::sandbox::Limits {
                timeout: Duration::from_secs(c.test_timeout.max(1)),
                ..Default::default()
            },
            pick_bits,
            oracle: c.oracle,
        },
    );
    let task_dir = out_dir.join("tasks");
    std::fs::create_dir_all(&task_dir)
        .with_context(|| format!("cannot create {}", task_dir.display()))?;
    let task_file = |i: usize, t: &tasks::Task| {
        let safe: String =
            t.id.chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || ch == '-' {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
        task_dir.join(format!("{i:04}-{safe}.json"))
    };
    let pb = spinner(quiet, Some(all.len() as u64), "eval");
    let mut records = Vec::with_capacity(all.len());
    for (i, t) in all.iter().enumerate() {
        pb.set_message(t.id.clone());
        let file = task_file(i, t);
        if c.resume.is_some() {
            if let Ok(body) = std::fs::read_to_string(&file) {
                let r: eval::TaskRecord = serde_json::from_str(&body)
                    .with_context(|| format!("{}: not a task record", file.display()))?;
                if r.id == t.id && !r.had_outage() {
                    records.push(r);
                    pb.inc(1);
                    continue;
                }
                tracing::info!(task = %t.id, "retrying a task with a strong-model outage");
            }
        }
        let r = ev
            .run_task(t)
            .with_context(|| format!("task {} failed", t.id))?;
        // One file per finished task, written atomically: a killed run loses at most the task
        // in flight, and --resume continues after the last finished one.
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&r)? + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
        tracing::info!(
            task = %t.id,
            small = r.small.graded.correct,
            strong = r.strong.graded.correct,
            seconds = r.seconds,
            "task done"
        );
        records.push(r);
        // Rewrite the report after every task: a long run that is interrupted keeps what it
        // measured (the report says how many tasks it covers).
        let partial = eval::report::Report::new(
            file_label(&small_path),
            strong_name.clone(),
            bits.clone(),
            records.clone(),
        );
        eval::report::write_all(&partial, &out_dir)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let report = eval::report::Report::new(file_label(&small_path), strong_name, bits, records);
    let files = eval::report::write_all(&report, &out_dir)?;
    print!("{}", eval::report::markdown(&report));
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
