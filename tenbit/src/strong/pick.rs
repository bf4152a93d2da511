//! The encoder's side of pick mode: the strong model chooses the best of the small model's
//! seeded candidates, and the frame carries only the index.
//!
//! Best = the first candidate whose final answer (a `\boxed{}` value, a multiple-choice
//! letter, else the last number) equals the strong model's own; when the strong answer has no
//! such answer (prose, code), the strong model judges the candidates one by one with a yes/no
//! question and the first "yes" wins. When none qualifies, the encoder sends the strong answer
//! itself instead (a rewrite-mode frame, or the lossless frame of a given reference text).

use tenbit_lm::codec::{LmCodec, PickOutcome, PromptUse};
use tenbit_lm::pick::Judge;
use tenbit_wire::frame::Mode;

use super::prompts::{answer_yes_no, DEFAULT_QA_ATTEMPTS};
use super::{ChatMessage, ChatModel, ChatRequest, QaEncodeError, StrongError};
use crate::eval::extract::{last_number, normalise_number};

/// Token limit of the strong model's own answer when the encoder has no reference text.
pub const STRONG_ANSWER_TOKENS: u32 = 1024;
/// The yes/no question the strong model answers about each candidate when no final answer can
/// be extracted to compare.
pub const JUDGE_QUESTION: &str = "Is the draft answer a correct and complete answer to the task?";

/// The gradeable final answer of a reply, normalised so equal answers compare equal: the last
/// `\boxed{...}`, else a multiple-choice letter stated as the answer ("answer is (B)",
/// "Answer: C"), else the last number. `None` when there is none of these.
pub fn final_answer(text: &str) -> Option<String> {
    if let Some(b) = last_boxed(text) {
        let n = last_number(&b).filter(|n| normalise_number(&b) == *n);
        return Some(n.unwrap_or_else(|| b.split_whitespace().collect::<Vec<_>>().join("")));
    }
    if let Some(l) = answer_letter(text) {
        return Some(l.to_string());
    }
    last_number(text)
}

/// The contents of the last `\boxed{...}` (braces balanced).
fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].trim().to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// A letter A-J right after "answer is" / "answer:" (parentheses and bold allowed).
fn answer_letter(text: &str) -> Option<char> {
    let lower = text.to_ascii_lowercase();
    let mut found = None;
    for key in ["answer is", "answer:"] {
        let mut from = 0;
        while let Some(p) = lower[from..].find(key) {
            let after = &text[from + p + key.len()..];
            let rest = after.trim_start_matches([' ', '(', '*', ':']);
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                let next = chars.next();
                if ('A'..='J').contains(&c) && next.is_none_or(|n| !n.is_alphanumeric()) {
                    found = Some((from + p, c));
                }
            }
            from += p + key.len();
        }
    }
    found.map(|(_, c)| c)
}

/// [`Judge`] backed by the strong model and its reference answer.
pub struct StrongJudge<'a> {
    model: &'a dyn ChatModel,
    reference: String,
    /// Yes/no calls made (0 when the answers could be compared).
    pub judged: usize,
}

impl<'a> StrongJudge<'a> {
    /// A judge comparing against `reference` (the strong model's own answer to the task).
    pub fn new(model: &'a dyn ChatModel, reference: impl Into<String>) -> Self {
        StrongJudge {
            model,
            reference: reference.into(),
            judged: 0,
        }
    }
}

impl Judge for StrongJudge<'_> {
    fn choose(
        &mut self,
        prompt: &str,
        candidates: &[String],
    ) -> Result<Option<usize>, tenbit_lm::qa::OracleError> {
        if let Some(want) = final_answer(&self.reference) {
            return Ok(candidates
                .iter()
                .position(|c| final_answer(c).as_deref() == Some(want.as_str())));
        }
        for (i, c) in candidates.iter().enumerate() {
            self.judged += 1;
            let yes = answer_yes_no(
                self.model,
                prompt,
                Some(&self.reference),
                Some(c),
                JUDGE_QUESTION,
                DEFAULT_QA_ATTEMPTS,
            )?;
            if yes {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// The strong model's own answer to `prompt` (greedy).
pub fn strong_answer(model: &dyn ChatModel, prompt: &str) -> Result<String, StrongError> {
    let req = ChatRequest::new(vec![ChatMessage::user(prompt)]).max_tokens(STRONG_ANSWER_TOKENS);
    let text = model.chat(&req)?.content.trim().to_string();
    if text.is_empty() {
        return Err(StrongError::Garbage {
            url: model.name().to_string(),
            detail: "empty answer".into(),
        });
    }
    Ok(text)
}

/// What [`encode_pick`] sent.
#[derive(Debug, Clone)]
pub struct PickEncoded {
    /// The frame to send: a pick frame, or the fallback frame when no candidate was good.
    pub frame: Vec<u8>,
    /// The chosen index (`None`: the fallback was sent).
    pub index: Option<u32>,
    /// Every candidate drawn, and the strong answer they were judged against.
    pub outcome: PickOutcome,
    /// The strong model's answer (or the reference text given).
    pub reference: String,
}

/// The encoder's whole pick step: draw 2^`k` candidates, let the strong model choose, send
/// the index, or fall back to the strong answer's own frame. `reference` is a given answer
/// text (then the fallback is its lossless frame); without it the strong model answers first
/// (and the fallback is a rewrite-mode frame of that answer). The one function behind both
/// `tenbit encode --mode pick` and evaluation.
pub fn encode_pick(
    codec: &LmCodec<'_>,
    strong: &dyn ChatModel,
    prompt: &str,
    k: u32,
    reference: Option<&str>,
) -> Result<PickEncoded, QaEncodeError> {
    tenbit_lm::pick::check_bits(k).map_err(tenbit_lm::codec::CodecError::from)?;
    let (reference, fallback_mode) = match reference.filter(|r| !r.trim().is_empty()) {
        Some(r) => (r.to_string(), Mode::Lossless),
        None => (strong_answer(strong, prompt)?, Mode::Rewrite),
    };
    let mut judge = StrongJudge::new(strong, reference.clone());
    let outcome = codec.encode_pick(prompt.as_bytes(), k, &mut judge)?;
    let (frame, index) = match &outcome.chosen {
        Some((i, f)) => (f.clone(), Some(*i)),
        None => (
            codec.encode_message(
                PromptUse::Known(prompt.as_bytes()),
                reference.as_bytes(),
                fallback_mode,
                &mut |_, _| {},
            )?,
            None,
        ),
    };
    Ok(PickEncoded {
        frame,
        index,
        outcome,
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_compare_equal_when_they_mean_the_same() {
        assert_eq!(final_answer("so 7*8 = 56.").as_deref(), Some("56"));
        assert_eq!(final_answer("#### 1,234").as_deref(), Some("1234"));
        assert_eq!(
            final_answer("it is \\boxed{\\frac{1}{2}} here").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(
            final_answer("\\boxed{ 12.50 } then 3").as_deref(),
            Some("12.5")
        );
        assert_eq!(final_answer("The answer is (B).").as_deref(), Some("B"));
        assert_eq!(final_answer("Answer: **C**").as_deref(), Some("C"));
        assert_eq!(final_answer("The answer is Bob").as_deref(), None);
        assert_eq!(final_answer("no digits at all"), None);
        assert_eq!(final_answer("\\boxed{x^{2}+1}").as_deref(), Some("x^{2}+1"));
    }

    /// Replies from a script, one per call.
    struct Script(std::sync::Mutex<Vec<&'static str>>);

    impl ChatModel for Script {
        fn name(&self) -> &str {
            "script"
        }
        fn chat(&self, _: &ChatRequest) -> Result<super::super::ChatResponse, StrongError> {
            let mut r = self.0.lock().unwrap();
            if r.is_empty() {
                return Err(StrongError::Down {
                    url: "script".into(),
                    attempts: 1,
                    detail: "no more replies".into(),
                });
            }
            Ok(super::super::ChatResponse {
                content: r.remove(0).into(),
                finish_reason: super::super::FinishReason::Stop,
                model: "script".into(),
                prompt_tokens: None,
                completion_tokens: None,
            })
        }
    }

    fn cands(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn judge_compares_answers_then_asks_then_gives_up() {
        // A numeric reference: compared, no strong call made.
        let s = Script(Default::default());
        let mut j = StrongJudge::new(&s, "7*8 = 56");
        let c = cands(&["It is 54.", "The product is 56.", "56"]);
        assert_eq!(j.choose("7*8?", &c).unwrap(), Some(1));
        assert_eq!(j.judged, 0);
        assert_eq!(j.choose("7*8?", &cands(&["54", "55"])).unwrap(), None);
        // Prose: the strong model is asked about each candidate until a yes.
        let s = Script(std::sync::Mutex::new(vec!["No.", "Yes."]));
        let mut j = StrongJudge::new(&s, "Use a bowline knot.");
        let c = cands(&["a granny knot", "a bowline", "a reef knot"]);
        assert_eq!(j.choose("Which knot?", &c).unwrap(), Some(1));
        assert_eq!(j.judged, 2);
        // An outage keeps the strong model's error type (exit 7 in the CLI).
        let s = Script(Default::default());
        let mut j = StrongJudge::new(&s, "Use a bowline knot.");
        let e = j.choose("Which knot?", &c).unwrap_err();
        assert!(
            matches!(
                e.downcast_ref::<StrongError>(),
                Some(StrongError::Down { .. })
            ),
            "{e}"
        );
    }
}
