//! Prompt templates for the strong model's two jobs, and parsing of what it says back.
//!
//! * Rewrite: [`rewrite_messages`] / [`rewrite`] ask for a succinct version of an answer that
//!   keeps every fact, step and the final result (the small model then codes fewer tokens).
//! * QA: [`qa_answer_messages`] / [`answer_yes_no`] get one bit per small-model question;
//!   [`StrongOracle`] plugs that into `tenbit_lm::qa::run`.
//! * The small model's side of QA ([`small_answer_messages`], [`small_ask_messages`],
//!   [`small_revise_messages`]) as message lists. These must stay identical on both ends of a
//!   link: the texts below equal the ones `tenbit_lm::qa` uses today.
//!
//! Replies are parsed strictly enough that a confused strong model produces an error, not a
//! guessed bit: a wrong bit would silently change the edge's final answer.

use tenbit_lm::qa::Oracle;

use super::{ChatMessage, ChatModel, ChatRequest, FinishReason, StrongError};

/// System message of the rewrite job.
pub const REWRITE_SYSTEM: &str = "You are an expert editor. You rewrite answers to be as short \
as possible without losing any information. You output only the rewritten answer.";

/// Instruction of the rewrite job; the answer follows it.
pub const REWRITE_INSTRUCTION: &str = "Rewrite the following answer as succinctly as possible \
while keeping every fact, step and the final answer. Keep code, numbers, names and units exactly. \
Drop filler, repetition and pleasantries. Output only the rewritten answer, with no preamble.";

/// System message of the QA-answer job.
pub const QA_SYSTEM: &str = "You are a knowledgeable, truthful judge. A small assistant is \
working on a task and asks you yes/no questions to check or improve its answer. Reply with \
exactly one word: yes or no.";

/// What the small model is told when it must ask a question (equal to `tenbit_lm::qa`).
pub const SMALL_ASK: &str =
    "Before you finalize, ask me ONE yes/no question whose answer would best help you \
check or improve your answer. Reply with the question only.";

/// What the small model is told when it must revise (equal to `tenbit_lm::qa`).
pub const SMALL_REVISE: &str = "Taking my answers into account, write your final answer to the \
original question. Be concise and end with the final result.";

/// Default number of tries to get a parseable yes/no out of the strong model.
pub const DEFAULT_QA_ATTEMPTS: u32 = 3;
/// Token budget of one yes/no reply: room for "Yes." or a short hedge, not for an essay.
const QA_MAX_TOKENS: u32 = 16;

/// Messages asking the strong model to rewrite `answer` (the reply to `task`, when known).
pub fn rewrite_messages(task: Option<&str>, answer: &str) -> Vec<ChatMessage> {
    let mut user = String::new();
    if let Some(t) = task.filter(|t| !t.trim().is_empty()) {
        user.push_str("The answer responds to this request:\n<request>\n");
        user.push_str(t.trim());
        user.push_str("\n</request>\n\n");
    }
    user.push_str(REWRITE_INSTRUCTION);
    user.push_str("\n\n<answer>\n");
    user.push_str(answer.trim());
    user.push_str("\n</answer>");
    vec![ChatMessage::system(REWRITE_SYSTEM), ChatMessage::user(user)]
}

/// Drop a chatty lead-in line such as "Here is the rewritten answer:" and `<answer>` tags the
/// model may echo; everything else is kept verbatim.
fn clean_rewrite(text: &str) -> &str {
    let mut t = strip_think(text).trim();
    if let Some((first, rest)) = t.split_once('\n') {
        let f = first.trim().to_ascii_lowercase();
        if f.ends_with(':') && (f.starts_with("here") || f.starts_with("sure")) {
            t = rest.trim();
        }
    }
    if let Some(inner) = t
        .strip_prefix("<answer>")
        .and_then(|s| s.strip_suffix("</answer>"))
    {
        t = inner.trim();
    }
    t
}

/// Ask `model` for a succinct rewrite of `answer`; greedy, at most `max_tokens` tokens.
///
/// Refuses an empty reply and a reply cut off by the token limit (either would be coded as if
/// it were the answer).
pub fn rewrite(
    model: &dyn ChatModel,
    task: Option<&str>,
    answer: &str,
    max_tokens: u32,
) -> Result<String, StrongError> {
    let req = ChatRequest::new(rewrite_messages(task, answer)).max_tokens(max_tokens);
    let resp = model.chat(&req)?;
    if resp.finish_reason == FinishReason::Length {
        return Err(StrongError::RewriteTruncated { max_tokens });
    }
    let text = clean_rewrite(&resp.content);
    if text.is_empty() {
        return Err(StrongError::EmptyRewrite);
    }
    Ok(text.to_string())
}

/// Messages asking the strong model to answer the small model's `question` about `task`.
///
/// `reference` is the strong model's own (or the original) answer to the task when there is
/// one; without it the strong model uses its own judgement. `draft` is the small model's
/// current answer, which most questions refer to ("Is my answer correct?").
pub fn qa_answer_messages(
    task: &str,
    reference: Option<&str>,
    draft: Option<&str>,
    question: &str,
) -> Vec<ChatMessage> {
    let mut user = format!("Task:\n<task>\n{}\n</task>\n\n", task.trim());
    if let Some(r) = reference.filter(|r| !r.trim().is_empty()) {
        user.push_str(&format!(
            "A correct reference answer:\n<reference>\n{}\n</reference>\n\n",
            r.trim()
        ));
    }
    if let Some(d) = draft.filter(|d| !d.trim().is_empty()) {
        user.push_str(&format!(
            "The small assistant's draft answer:\n<draft>\n{}\n</draft>\n\n",
            d.trim()
        ));
    }
    user.push_str(&format!(
        "The small assistant asks:\n<question>\n{}\n</question>\n\n\
         Answer the question truthfully{}. Reply with exactly one word: yes or no.",
        question.trim(),
        if reference.is_some() {
            ", using the reference answer"
        } else {
            ""
        }
    ));
    vec![ChatMessage::system(QA_SYSTEM), ChatMessage::user(user)]
}

/// Remove `<think>…</think>` blocks (reasoning models served by Ollama/vLLM emit them before
/// the answer). An unterminated block removes everything after it.
fn strip_think(text: &str) -> &str {
    let mut t = text.trim_start();
    while let Some(rest) = t.strip_prefix("<think>") {
        t = match rest.find("</think>") {
            Some(end) => rest[end + "</think>".len()..].trim_start(),
            None => "",
        };
    }
    t
}

/// The first word of `text` that is "yes" or "no" (case-insensitive), as a bool.
///
/// Words are runs of letters, so "No." / "**Yes**" / "yes, because" parse, while "not",
/// "nobody" or "yesterday" never count. `None` when neither word appears.
pub fn parse_yes_no(text: &str) -> Option<bool> {
    strip_think(text)
        .split(|c: char| !c.is_alphabetic())
        .find_map(|w| {
            if w.eq_ignore_ascii_case("yes") {
                Some(true)
            } else if w.eq_ignore_ascii_case("no") {
                Some(false)
            } else {
                None
            }
        })
}

/// One bit from the strong model: its yes/no answer to `question`.
///
/// Greedy and short. When the reply has no yes/no word, the exchange is retried (up to
/// `attempts` calls in all) with the unusable reply and a one-word reminder appended; transport
/// retries happen inside the model. Never guesses.
pub fn answer_yes_no(
    model: &dyn ChatModel,
    task: &str,
    reference: Option<&str>,
    draft: Option<&str>,
    question: &str,
    attempts: u32,
) -> Result<bool, StrongError> {
    let attempts = attempts.max(1);
    let mut messages = qa_answer_messages(task, reference, draft, question);
    let mut last = String::new();
    for i in 0..attempts {
        let req = ChatRequest::new(messages.clone()).max_tokens(QA_MAX_TOKENS);
        let reply = model.chat(&req)?.content;
        if let Some(bit) = parse_yes_no(&reply) {
            return Ok(bit);
        }
        tracing::warn!("strong model reply {} has no yes/no: {reply:?}", i + 1);
        messages.push(ChatMessage::assistant(reply.clone()));
        messages.push(ChatMessage::user(
            "That was not a yes/no answer. Reply with exactly one word: yes or no.",
        ));
        last = reply;
    }
    Err(StrongError::Unparseable {
        question: question.to_string(),
        attempts,
        last_reply: last,
    })
}

/// The small model's first turn: just the task.
pub fn small_answer_messages(task: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::user(task)]
}

/// The conversation so far: task, draft, and each asked question with its answer, in the shape
/// `tenbit_lm::qa::run` builds it.
fn small_history(task: &str, draft: &str, answered: &[(String, bool)]) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::user(task), ChatMessage::assistant(draft)];
    for (q, bit) in answered {
        m.push(ChatMessage::user(SMALL_ASK));
        m.push(ChatMessage::assistant(q.as_str()));
        m.push(ChatMessage::user(if *bit { "Yes." } else { "No." }));
        m.push(ChatMessage::assistant("Understood."));
    }
    m
}

/// Ask the small model for its next yes/no question, after the questions already `answered`.
pub fn small_ask_messages(
    task: &str,
    draft: &str,
    answered: &[(String, bool)],
) -> Vec<ChatMessage> {
    let mut m = small_history(task, draft, answered);
    m.push(ChatMessage::user(SMALL_ASK));
    m
}

/// Ask the small model for its final answer given the `answered` questions.
pub fn small_revise_messages(
    task: &str,
    draft: &str,
    answered: &[(String, bool)],
) -> Vec<ChatMessage> {
    let mut m = small_history(task, draft, answered);
    m.push(ChatMessage::user(SMALL_REVISE));
    m
}

/// The strong model as the QA oracle of `tenbit_lm::qa::run` on the encoder.
///
/// Refuses question indices at or above `max_questions` (the configured K limit; check K up
/// front with [`super::check_k`] too, so a run fails before any model work). Records every
/// question and bit for logging.
pub struct StrongOracle<'a> {
    model: &'a dyn ChatModel,
    reference: Option<String>,
    max_questions: usize,
    attempts: u32,
    /// (question, bit) in asking order.
    pub answered: Vec<(String, bool)>,
}

impl<'a> StrongOracle<'a> {
    /// An oracle with no reference answer that refuses questions past `max_questions`.
    pub fn new(model: &'a dyn ChatModel, max_questions: usize) -> Self {
        StrongOracle {
            model,
            reference: None,
            max_questions,
            attempts: DEFAULT_QA_ATTEMPTS,
            answered: Vec::new(),
        }
    }
    /// Give the strong model a reference answer to judge against.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
    /// Calls allowed per question to get a parseable yes/no (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }
}

impl Oracle for StrongOracle<'_> {
    fn answer(
        &mut self,
        index: usize,
        prompt: &str,
        draft: &str,
        question: &str,
    ) -> Result<bool, tenbit_lm::qa::OracleError> {
        if index >= self.max_questions {
            return Err(Box::new(StrongError::TooManyQuestions {
                k: index + 1,
                max: self.max_questions,
            }));
        }
        let bit = answer_yes_no(
            self.model,
            prompt,
            self.reference.as_deref(),
            Some(draft),
            question,
            self.attempts,
        )?;
        tracing::info!(
            question = index + 1,
            answer = if bit { "yes" } else { "no" },
            "{question}"
        );
        self.answered.push((question.to_string(), bit));
        Ok(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strong::ChatResponse;
    use std::sync::Mutex;

    /// Replies from a script, one per call; records the requests.
    struct Script {
        replies: Mutex<Vec<(String, FinishReason)>>,
        seen: Mutex<Vec<ChatRequest>>,
    }

    impl Script {
        fn new(replies: &[&str]) -> Self {
            Script {
                replies: Mutex::new(
                    replies
                        .iter()
                        .rev()
                        .map(|r| (r.to_string(), FinishReason::Stop))
                        .collect(),
                ),
                seen: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    impl ChatModel for Script {
        fn name(&self) -> &str {
            "script"
        }
        fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
            self.seen.lock().unwrap().push(req.clone());
            let (content, finish_reason) = self
                .replies
                .lock()
                .unwrap()
                .pop()
                .ok_or_else(|| StrongError::Local("script exhausted".into()))?;
            Ok(ChatResponse {
                content,
                finish_reason,
                model: "script".into(),
                prompt_tokens: None,
                completion_tokens: None,
            })
        }
    }

    #[test]
    fn yes_no_parsing() {
        for (s, want) in [
            ("Yes", Some(true)),
            ("no", Some(false)),
            ("NO.", Some(false)),
            ("**Yes**, it is.", Some(true)),
            ("The answer is no; yes would be wrong", Some(false)),
            ("<think>no wait, maybe</think>\nYes.", Some(true)),
            ("Not really sure, nobody knows", None),
            ("yesterday", None),
            ("", None),
            ("<think>yes", None),
            ("Oui", None),
        ] {
            assert_eq!(parse_yes_no(s), want, "{s:?}");
        }
    }

    #[test]
    fn qa_answer_retries_unparseable_then_succeeds() {
        let m = Script::new(&["I think it depends.", "No."]);
        let bit = answer_yes_no(&m, "2+2?", Some("4"), Some("5"), "Is it 5?", 3).unwrap();
        assert!(!bit);
        assert_eq!(m.calls(), 2);
        let second = &m.seen.lock().unwrap()[1];
        // The retry carries the unusable reply and a reminder.
        assert_eq!(second.messages.len(), 4);
        assert_eq!(second.messages[2].content, "I think it depends.");
        assert_eq!(second.temperature, 0.0);
    }

    #[test]
    fn qa_answer_gives_up_with_a_clear_error() {
        let m = Script::new(&["maybe", "perhaps", "unclear"]);
        let e = answer_yes_no(&m, "t", None, None, "q?", 3).unwrap_err();
        match &e {
            StrongError::Unparseable {
                attempts,
                last_reply,
                ..
            } => {
                assert_eq!(*attempts, 3);
                assert_eq!(last_reply, "unclear");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.calls(), 3);
    }

    #[test]
    fn qa_prompt_mentions_all_inputs() {
        let m = qa_answer_messages("TASK-X", Some("REF-Y"), Some("DRAFT-Z"), "Q-W?");
        let u = &m[1].content;
        for s in ["TASK-X", "REF-Y", "DRAFT-Z", "Q-W?", "yes or no"] {
            assert!(u.contains(s), "{s} missing from {u}");
        }
        let bare = qa_answer_messages("T", None, None, "Q?");
        assert!(!bare[1].content.contains("reference"));
    }

    #[test]
    fn rewrite_cleans_and_refuses_bad_replies() {
        let m = Script::new(&["Here is the succinct version:\nParis is France's capital."]);
        let r = rewrite(&m, Some("Capital of France?"), "The capital is Paris.", 100).unwrap();
        assert_eq!(r, "Paris is France's capital.");
        let req = &m.seen.lock().unwrap()[0];
        assert_eq!(req.max_tokens, Some(100));
        assert!(req.messages[1].content.contains("The capital is Paris."));
        assert!(req.messages[1].content.contains("Capital of France?"));

        let m = Script::new(&["  \n "]);
        assert!(matches!(
            rewrite(&m, None, "a", 10),
            Err(StrongError::EmptyRewrite)
        ));
        let m = Script::new(&["cut"]);
        m.replies.lock().unwrap()[0].1 = FinishReason::Length;
        assert!(matches!(
            rewrite(&m, None, "a", 10),
            Err(StrongError::RewriteTruncated { max_tokens: 10 })
        ));
    }

    #[test]
    fn oracle_refuses_k_above_the_limit() {
        let m = Script::new(&["yes", "no"]);
        let mut o = StrongOracle::new(&m, 2).with_reference("R");
        assert!(o.answer(0, "p", "d", "q0").unwrap());
        assert!(!o.answer(1, "p", "d", "q1").unwrap());
        let e = o.answer(2, "p", "d", "q2").unwrap_err();
        // The oracle's error keeps its type across the QA layer, for the exit code.
        assert!(
            matches!(
                e.downcast_ref::<StrongError>(),
                Some(StrongError::TooManyQuestions { k: 3, max: 2 })
            ),
            "{e}"
        );
        assert_eq!(m.calls(), 2, "no model call past the limit");
        assert_eq!(o.answered.len(), 2);
    }

    #[test]
    fn small_side_conversation_shape() {
        let qa = vec![("Is it even?".to_string(), true)];
        let ask = small_ask_messages("T", "D", &qa);
        let roles: Vec<&str> = ask.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "assistant",
                "user"
            ]
        );
        assert_eq!(ask[4].content, "Yes.");
        assert_eq!(ask.last().unwrap().content, SMALL_ASK);
        let rev = small_revise_messages("T", "D", &[]);
        assert_eq!(rev.len(), 3);
        assert_eq!(rev[2].content, SMALL_REVISE);
        assert_eq!(small_answer_messages("T"), vec![ChatMessage::user("T")]);
    }
}
