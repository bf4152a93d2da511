//! Getting a gradeable answer out of a chat reply.
//!
//! Chat models wrap code in prose and Markdown fences and end math answers with a sentence.
//! Grading must be strict (an exact number, a program that passes its tests) but must not fail
//! a right answer because of its wrapping, so the rules here are deliberately simple and tested:
//! the *last* number of a math answer, and the fenced block that defines the entry point of a
//! code answer.

/// The last number in `text`, normalised so that equal values compare equal as strings:
/// thousands separators dropped (`1,234` -> `1234`), a leading `+` dropped, trailing fractional
/// zeros dropped (`12.50` -> `12.5`, `7.0` -> `7`), `-0` -> `0`. A sentence-ending period is
/// not a decimal point (`is 42.` -> `42`). `None` when the text has no digit.
pub fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut last: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut start = i;
        // A minus sign counts when it is not part of a word or a subtraction like `5-3`.
        if start > 0 && b[start - 1] == b'-' && (start < 2 || !b[start - 2].is_ascii_alphanumeric())
        {
            start -= 1;
        }
        let mut j = i;
        let mut seen_point = false;
        while j < b.len() {
            let c = b[j];
            let next_digit = j + 1 < b.len() && b[j + 1].is_ascii_digit();
            // A digit, or a thousands separator followed by a digit (only before the point).
            if c.is_ascii_digit() || (c == b',' && next_digit && !seen_point) {
                j += 1;
            } else if c == b'.' && next_digit && !seen_point {
                seen_point = true;
                j += 1;
            } else {
                break;
            }
        }
        last = Some((start, j));
        i = j;
    }
    let (s, e) = last?;
    Some(normalise_number(&text[s..e]))
}

/// Canonical decimal string of a number as written (see [`last_number`]).
pub fn normalise_number(raw: &str) -> String {
    let t: String = raw
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|&c| c != ',')
        .collect();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t),
    };
    let (int, frac) = match t.split_once('.') {
        Some((a, f)) => (a.to_string(), f.trim_end_matches('0').to_string()),
        None => (t.clone(), String::new()),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    }
}

/// Do `answer` (a model's reply) and `expected` (a verified answer) end on the same number?
pub fn math_correct(answer: &str, expected: &str) -> bool {
    last_number(answer).is_some_and(|n| n == normalise_number(expected))
}

/// One Markdown code block: its info string (`python`, `py`, empty, ...) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    lang: String,
    body: String,
}

/// Fenced blocks in order. An unterminated fence (a reply cut off by its token limit) runs to
/// the end of the text, so a truncated answer is still graded on what it has.
fn fenced_blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            match cur.take() {
                None => cur = Some((rest.trim().to_ascii_lowercase(), Vec::new())),
                Some((lang, lines)) => out.push(Block {
                    lang,
                    body: lines.join("\n"),
                }),
            }
        } else if let Some((_, lines)) = cur.as_mut() {
            lines.push(line);
        }
    }
    if let Some((lang, lines)) = cur {
        out.push(Block {
            lang,
            body: lines.join("\n"),
        });
    }
    out
}

fn defines(code: &str, entry_point: &str) -> bool {
    code.lines().any(|l| {
        l.trim_start()
            .strip_prefix("def ")
            .is_some_and(|r| r.trim_start().starts_with(&format!("{entry_point}(")))
    })
}

/// The Python code in a chat reply to a HumanEval task.
///
/// Preference order: the first fenced block that defines `entry_point`; else the first block
/// tagged python/py/python3 or untagged; else (no fences) the reply from its first line that
/// starts like Python code (`def`, `import`, `from`, `class`, `@`), or the whole reply if it is
/// indented (a bare function body). Prose lines before the code are dropped.
pub fn extract_code(reply: &str, entry_point: &str) -> String {
    let blocks = fenced_blocks(reply);
    if let Some(b) = blocks.iter().find(|b| defines(&b.body, entry_point)) {
        return b.body.clone();
    }
    let pythonish = |l: &str| matches!(l, "" | "python" | "py" | "python3");
    if let Some(b) = blocks.iter().find(|b| pythonish(&b.lang)) {
        return b.body.clone();
    }
    if let Some(b) = blocks.first() {
        return b.body.clone();
    }
    let lines: Vec<&str> = reply.lines().collect();
    let starts_code = |l: &str| {
        let t = l.trim_start();
        ["def ", "import ", "from ", "class ", "@"]
            .iter()
            .any(|p| t.starts_with(p))
            || (l.starts_with("    ") && !t.is_empty())
    };
    match lines.iter().position(|l| starts_code(l)) {
        Some(i) => lines[i..].join("\n"),
        None => reply.to_string(),
    }
}

/// The program that grades a completion: the task's prompt (imports, helpers and the stub),
/// the model's code, the task's tests and the call of `check`.
///
/// When the code defines `entry_point` it follows the prompt as a full redefinition (the stub,
/// whose body is only its docstring, is valid Python and is simply replaced); otherwise the
/// code is taken as the function's body and indented under the stub if it is not already.
pub fn build_program(task_prompt: &str, code: &str, entry_point: &str, test: &str) -> String {
    let mut p = String::with_capacity(task_prompt.len() + code.len() + test.len() + 64);
    p.push_str(task_prompt);
    if defines(code, entry_point) {
        if !task_prompt.ends_with('\n') {
            p.push('\n');
        }
        p.push_str("\n\n");
        p.push_str(code);
    } else {
        let indented = code
            .lines()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.starts_with(' ') || l.starts_with('\t'));
        for l in code.lines() {
            if !indented && !l.trim().is_empty() {
                p.push_str("    ");
            }
            p.push_str(l);
            p.push('\n');
        }
    }
    p.push_str("\n\n");
    p.push_str(test);
    p.push_str(&format!("\n\ncheck({entry_point})\n"));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_number_rules() {
        for (text, want) in [
            ("So the answer is 42.", Some("42")),
            ("3 apples and 5 pears make 8", Some("8")),
            ("He pays $1,234.50 in total.", Some("1234.5")),
            ("Result: -7", Some("-7")),
            ("5-3 = 2", Some("2")),
            ("from 10 to -0.0", Some("0")),
            ("x = 7.0", Some("7")),
            ("007 agents", Some("7")),
            ("45% of them, i.e. 9.", Some("9")),
            ("numbers 1, 2, 3", Some("3")),
            ("no digits here", None),
            ("", None),
        ] {
            assert_eq!(last_number(text).as_deref(), want, "{text:?}");
        }
        assert!(math_correct("…so she has 18 apples.", "18"));
        assert!(!math_correct("…so she has 18 apples, not 19", "18"));
        assert!(!math_correct("I do not know", "18"));
        assert!(math_correct("Total: 1,000", "1000"));
    }

    #[test]
    fn code_from_fences_prefers_the_entry_point() {
        let reply = "Here is a helper:\n```python\ndef helper():\n    return 1\n```\n\
                     And the function:\n```py\ndef add(a, b):\n    return a + b\n```\nDone.";
        assert_eq!(
            extract_code(reply, "add"),
            "def add(a, b):\n    return a + b"
        );
        // No block defines it: first python block.
        assert_eq!(extract_code(reply, "mul"), "def helper():\n    return 1");
        // Unterminated fence (cut off at the token limit).
        let cut = "Sure!\n```python\ndef add(a, b):\n    return a +";
        assert_eq!(extract_code(cut, "add"), "def add(a, b):\n    return a +");
        // Indented fences inside a list item still count.
        let nested = "1. Code:\n   ```python\n   def f(x):\n       return x\n   ```";
        assert_eq!(extract_code(nested, "f"), "   def f(x):\n       return x");
    }

    #[test]
    fn code_without_fences() {
        let reply = "The function is:\ndef add(a, b):\n    return a + b";
        assert_eq!(
            extract_code(reply, "add"),
            "def add(a, b):\n    return a + b"
        );
        let body = "    return a + b";
        assert_eq!(extract_code(body, "add"), "    return a + b");
    }

    #[test]
    fn program_assembly_full_definition_and_body() {
        let prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n";
        let test = "def check(c):\n    assert c(1, 2) == 3";
        let full = build_program(prompt, "def add(a, b):\n    return a + b", "add", test);
        assert!(full.starts_with(prompt));
        assert!(full.contains("\n\ndef add(a, b):\n    return a + b"));
        assert!(full.trim_end().ends_with("check(add)"));
        let body = build_program(prompt, "return a + b", "add", test);
        assert!(
            body.contains("\"\"\"Add.\"\"\"\n    return a + b\n"),
            "{body}"
        );
        let body2 = build_program(prompt, "    return a + b", "add", test);
        assert!(
            body2.contains("\"\"\"Add.\"\"\"\n    return a + b\n"),
            "{body2}"
        );
    }
}
