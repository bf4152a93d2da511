//! Grading competition-math answers (MATH-500, AIME, CNMO) by normalised exact match.
//!
//! Gold answers are LaTeX (`$\frac{3}{4}$`, `$2\sqrt{2}$`, `$(-\infty,-1)\cup(6,+\infty)$`) and
//! model answers end in a `\boxed{}` or a sentence. Both sides go through [`normalise`], which
//! removes what does not change the value as written: math delimiters, `\boxed{}`, spaces,
//! `\left`/`\right`, `\dfrac`/`\tfrac`, thin spaces, degrees, `\text{}` units after a value, a
//! leading `x =`, thousands separators and trailing zeros, and writes `\frac12`, `\sqrt2` and
//! `a/b` (integers) in the one `\frac{1}{2}` / `\sqrt{2}` form. Two answers are equal when their
//! normal forms are, or when both are plain numbers or integer fractions of the same value.
//! No computer algebra: `\frac{\sqrt{6}}{4}` and `\frac{\sqrt{3}}{2\sqrt{2}}` stay different.

use super::extract::{last_number, normalise_number};

/// The contents of the last `\boxed{...}` (or `\fbox{...}`), braces balanced.
pub fn last_boxed(text: &str) -> Option<String> {
    let (at, key) = ["\\boxed{", "\\fbox{"]
        .iter()
        .filter_map(|k| text.rfind(k).map(|p| (p, *k)))
        .max_by_key(|(p, _)| *p)?;
    let start = at + key.len();
    group_end(text, start).map(|end| text[start..end].trim().to_string())
}

/// Index of the `}` closing the group whose contents start at `start`.
fn group_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The final answer of a model's reply: the last `\boxed{}`; else what follows the last
/// "answer is" / "answer:" up to the end of its sentence; else the last number.
pub fn final_math_answer(reply: &str) -> Option<String> {
    if let Some(b) = last_boxed(reply) {
        return Some(b);
    }
    let lower = reply.to_ascii_lowercase();
    for key in ["answer is", "answer:"] {
        if let Some(p) = lower.rfind(key) {
            let rest = reply[p + key.len()..].trim_start_matches([' ', ':', '*']);
            let end = rest
                .char_indices()
                .find(|&(i, c)| {
                    c == '\n'
                        || (c == '.' && !rest[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
                })
                .map_or(rest.len(), |(i, _)| i);
            let a = rest[..end].trim().trim_end_matches('*').trim();
            if !a.is_empty() {
                return Some(a.to_string());
            }
        }
    }
    last_number(reply)
}

/// Replace every `\cmd{X}` by `f(X)`, innermost groups handled by the recursion of `f`.
fn replace_group(s: &str, cmd: &str, f: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find(cmd) {
        let start = p + cmd.len();
        match group_end(rest, start) {
            Some(end) => {
                out.push_str(&rest[..p]);
                out.push_str(&f(&rest[start..end]));
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// `\frac12` -> `\frac{1}{2}`, `\frac1{x}` -> `\frac{1}{x}`, `\sqrt2` -> `\sqrt{2}`: the
/// one-character arguments LaTeX allows without braces.
fn brace_short_args(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let next = ["\\frac", "\\sqrt"]
            .iter()
            .filter_map(|k| rest.find(k).map(|p| (p, *k)))
            .min_by_key(|(p, _)| *p);
        let Some((p, key)) = next else { break };
        out.push_str(&rest[..p + key.len()]);
        rest = &rest[p + key.len()..];
        let args = if key == "\\frac" { 2 } else { 1 };
        for _ in 0..args {
            match rest.chars().next() {
                Some('{') => match group_end(rest, 1) {
                    Some(end) => {
                        out.push('{');
                        out.push_str(&brace_short_args(&rest[1..end]));
                        out.push('}');
                        rest = &rest[end + 1..];
                    }
                    None => break,
                },
                Some(c) if c.is_ascii_alphanumeric() => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    rest = &rest[1..];
                }
                _ => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `s` is an integer with thousands separators (`1,000`, `-12,345,678`).
fn is_grouped_integer(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    let parts: Vec<&str> = t.split(',').collect();
    parts.len() > 1
        && (1..=3).contains(&parts[0].len())
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
        && parts[1..].iter().all(|p| p.len() == 3)
}

fn is_plain_number(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.chars().filter(|&c| c == '.').count() <= 1
        && t.chars().any(|c| c.is_ascii_digit())
}

/// The normal form of a math answer (see the module docs).
pub fn normalise(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    // Delimiters and the box.
    s = s.replace("\\$", "");
    for d in ["$$", "$", "\\(", "\\)", "\\[", "\\]"] {
        s = s.replace(d, "");
    }
    while s.contains("\\boxed{") || s.contains("\\fbox{") {
        let before = s.clone();
        s = replace_group(&s, "\\boxed{", &|x| x.to_string());
        s = replace_group(&s, "\\fbox{", &|x| x.to_string());
        if s == before {
            break;
        }
    }
    // Spacing and sizing commands.
    for d in [
        "\\left",
        "\\right",
        "\\displaystyle",
        "\\!",
        "\\,",
        "\\;",
        "\\:",
        "\\ ",
        "~",
    ] {
        s = s.replace(d, "");
    }
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac");
    // Degrees.
    for d in ["^{\\circ}", "^\\circ", "\\circ", "°", "\\degree"] {
        s = s.replace(d, "");
    }
    s = s.replace("\\%", "").replace('%', "");
    // Units and words in \text{}: dropped after a value, unwrapped when they are the answer.
    for cmd in ["\\text{", "\\textbf{", "\\mbox{", "\\mathrm{"] {
        let without = replace_group(&s, cmd, &|_| String::new());
        s = if without.trim().is_empty() {
            replace_group(&s, cmd, &|x| x.to_string())
        } else {
            without
        };
    }
    s.retain(|c| !c.is_whitespace());
    s = brace_short_args(&s);
    // A leading single-variable assignment: `x=5` -> `5` (not `x=y` relations in general).
    let bytes = s.as_bytes();
    if bytes.len() > 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'=' {
        s = s[2..].to_string();
    }
    let s = s.trim_end_matches('.').to_string();
    if is_grouped_integer(&s) || is_plain_number(&s) {
        return normalise_number(&s);
    }
    // `3/4` (integers) -> `\frac{3}{4}`.
    if let Some((a, b)) = s.split_once('/') {
        if is_plain_number(a) && is_plain_number(b) && !a.contains('.') && !b.contains('.') {
            return format!("\\frac{{{a}}}{{{b}}}");
        }
    }
    s
}

/// The value of a normal form that is a plain number or an integer fraction (`-\frac{3}{4}`).
fn value(n: &str) -> Option<f64> {
    if is_plain_number(n) {
        return n.parse().ok();
    }
    let (neg, t) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n),
    };
    let inner = t.strip_prefix("\\frac{")?.strip_suffix('}')?;
    let (a, b) = inner.split_once("}{")?;
    let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
    (b != 0.0).then(|| if neg { -a / b } else { a / b })
}

/// Whether a model's reply answers `gold` (a LaTeX answer): its final answer
/// ([`final_math_answer`]) and the gold answer have the same normal form or the same value.
pub fn latex_correct(reply: &str, gold: &str) -> bool {
    let Some(got) = final_math_answer(reply) else {
        return false;
    };
    answers_equal(&got, gold)
}

/// Whether two answers are equal after [`normalise`] (or equal in value, see the module docs).
pub fn answers_equal(a: &str, b: &str) -> bool {
    let (x, y) = (normalise(a), normalise(b));
    if x == y {
        return true;
    }
    match (value(&x), value(&y)) {
        (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
        _ => false,
    }
}

/// The letter (A-D) a reply chooses for a multiple-choice question: after the last "answer is"
/// / "answer:" (parentheses and bold allowed), else a reply that is just the letter, else the
/// last "(X)".
pub fn choice_letter(reply: &str) -> Option<char> {
    let is_choice = |c: char| ('A'..='D').contains(&c);
    let lower = reply.to_ascii_lowercase();
    let mut best: Option<(usize, char)> = None;
    for key in ["answer is", "answer:"] {
        let mut from = 0;
        while let Some(p) = lower[from..].find(key) {
            let at = from + p + key.len();
            let rest = reply[at..].trim_start_matches([' ', '(', '*', ':', '$', '\\']);
            let rest = rest.strip_prefix("boxed{").unwrap_or(rest);
            let mut cs = rest.chars();
            if let Some(c) = cs.next().filter(|&c| is_choice(c)) {
                if !cs.next().is_some_and(|n| n.is_ascii_alphanumeric())
                    && best.is_none_or(|(q, _)| at > q)
                {
                    best = Some((at, c));
                }
            }
            from = at;
        }
    }
    if let Some((_, c)) = best {
        return Some(c);
    }
    let t = reply.trim().trim_matches(['*', '(', ')', '.', ' ']);
    let mut cs = t.chars();
    if let (Some(c), None) = (cs.next(), cs.next()) {
        if is_choice(c) {
            return Some(c);
        }
    }
    // The last "(X)" in the reply: scan from the end.
    reply.rmatch_indices('(').find_map(|(i, _)| {
        let mut cs = reply[i + 1..].chars();
        match (cs.next(), cs.next()) {
            (Some(c), Some(')')) if is_choice(c) => Some(c),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let cases = [
            ("$\\frac{3}{4}$", "\\frac{3}{4}"),
            ("\\dfrac{3}{4}", "\\frac{3}{4}"),
            ("\\tfrac34", "\\frac{3}{4}"),
            ("3/4", "\\frac{3}{4}"),
            ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
            ("$2\\sqrt{2}$", "2\\sqrt{2}"),
            ("2\\sqrt2", "2\\sqrt{2}"),
            ("\\frac{\\sqrt{6}}{4}", "\\frac{\\sqrt{6}}{4}"),
            ("\\frac{\\sqrt6}4", "\\frac{\\sqrt{6}}{4}"),
            ("8\\sqrt{5} - 16", "8\\sqrt{5}-16"),
            (
                "\\left( -\\infty, -1 \\right) \\cup (6, +\\infty)",
                "(-\\infty,-1)\\cup(6,+\\infty)",
            ),
            ("90^\\circ", "90"),
            ("90^{\\circ}", "90"),
            ("30°", "30"),
            ("5\\text{ cm}", "5"),
            ("12 \\mbox{ inches}", "12"),
            ("\\text{Monday}", "Monday"),
            ("x = 5", "5"),
            ("1,000", "1000"),
            ("12.50", "12.5"),
            ("4049.", "4049"),
            ("\\$18.90", "18.9"),
            ("50\\%", "50"),
            ("\\,10\\!", "10"),
            ("10^{2^n-n-1}", "10^{2^n-n-1}"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise(raw), want, "{raw}");
        }
    }

    #[test]
    fn equality_by_form_and_value() {
        assert!(answers_equal("\\frac{1}{2}", "0.5"));
        assert!(answers_equal("-\\frac{3}{4}", "-0.75"));
        assert!(answers_equal("\\dfrac{6}{8}", "\\frac{6}{8}"));
        assert!(answers_equal("6/8", "\\frac{3}{4}"), "same value");
        assert!(!answers_equal("\\frac{3}{4}", "\\frac{4}{3}"));
        assert!(!answers_equal("2\\sqrt{2}", "2\\sqrt{3}"));
        assert!(!answers_equal("1,5", "15"), "not a thousands separator");
        assert!(answers_equal("204", "$204$"));
    }

    #[test]
    fn replies_are_graded_by_their_final_answer() {
        assert!(latex_correct(
            "So the probability is $\\boxed{\\dfrac{4}{21}}$.",
            "$\\frac{4}{21}$"
        ));
        assert!(latex_correct(
            "... which gives 591 minutes.\nThe answer is 591.",
            "$591$"
        ));
        assert!(latex_correct(
            "Therefore $r = 2\\sqrt2$ and the answer is $2\\sqrt{2}$.",
            "$2\\sqrt{2}$"
        ));
        assert!(!latex_correct(
            "I get \\boxed{7} here but \\boxed{8} at the end",
            "7"
        ));
        assert!(!latex_correct("no answer", "7"));
        assert_eq!(final_math_answer("answer: 3.5 m."), Some("3.5 m".into()));
        assert!(latex_correct("answer: 3.5\\text{ m}.", "3.5"));
        assert_eq!(
            last_boxed("\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}").as_deref(),
            Some("x^{2}")
        );
    }

    #[test]
    fn choice_letters() {
        assert_eq!(choice_letter("The answer is (B)."), Some('B'));
        assert_eq!(choice_letter("Answer: **C**"), Some('C'));
        assert_eq!(choice_letter("D"), Some('D'));
        assert_eq!(choice_letter("(A)"), Some('A'));
        assert_eq!(
            choice_letter("Options (A) and (C) are wrong, so (B)"),
            Some('B')
        );
        assert_eq!(
            choice_letter("The answer is A... no wait, the answer is $\\boxed{D}$"),
            Some('D')
        );
        assert_eq!(choice_letter("The answer is Avogadro's number"), None);
        assert_eq!(choice_letter("I am not sure"), None);
    }
}
