//! Question-Asking mode: the small model answers, asks yes/no questions, and revises.
//!
//! The paper's protocol, made deterministic so that only the answer bits travel: the encoder
//! runs the small model's side (greedy decoding on the bit-exact engine) and asks the strong
//! model only the questions; the edge replays exactly the same conversation with the bits from
//! the frame in place of the strong model and arrives at the same final answer, token for token.
//! Nothing here may depend on anything but (model, prompt, bits): no clocks, no randomness.

use tenbit_wire::TokenId;

use crate::chat::ChatTemplate;
use crate::generate::Conversation;
use crate::tokenizer::Tokenizer;
use tenbit_engine::{EngineError, Model, Session, SessionOptions};

/// Limits of a QA run. Part of the protocol: both ends must use the same values, so they are
/// constants of the frame version rather than user settings.
pub const MAX_ANSWER_TOKENS: usize = 320;
/// Token limit of one question (part of the protocol, like [`MAX_ANSWER_TOKENS`]).
pub const MAX_QUESTION_TOKENS: usize = 40;
/// Largest number of questions a frame may carry.
pub const MAX_BITS: usize = 64;
/// Largest number of questions a protocol-3 frame may carry (its full-frame K byte has room
/// for 63).
pub const MAX_BITS_V3: usize = 63;
/// KV-cache size for the whole conversation.
pub const QA_CONTEXT: usize = 4096;

const ASK: &str =
    "Before you finalize, ask me ONE yes/no question whose answer would best help you \
check or improve your answer. Reply with the question only.";
/// Protocol 2, questions after the first: small models otherwise ask the same question again
/// and again (Qwen2.5-Coder-0.5B asked one question ten times in the first evaluation run).
const ASK_MORE: &str = "Now ask me ONE new yes/no question about a different part of your \
answer, one you have not asked yet, whose answer would best help you check or improve it. \
Reply with the question only.";
/// Protocol 2: how often a question that repeats an earlier one (or is no question) is drawn
/// again, by seeded sampling, after the greedy attempt.
const REASK: u64 = 3;

/// Revision of the question-asking conversation. Replaying a frame with another revision would
/// give another answer without any error, so the revision travels in the frame (the top bit
/// of the K byte, free because K <= 64) and the edge replays exactly the one that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The first protocol: the same request before every question.
    V1,
    /// Later questions are asked with the earlier ones and their answers listed; a question is
    /// cut after its first "?", and a repeat (ignoring case and spacing) or a reply with no
    /// "?" is drawn again by seeded sampling from the integer CDF, up to three times.
    V2,
    /// The paper's protocol (RoyRin/model-compression-bit-limiting, `run_qa_sweep.py`): after
    /// its first answer the small model writes all K questions in one greedy generation (a
    /// numbered list, at most [`MAX_LIST_TOKENS`]), padded with [`PAD_QUESTION`] when it
    /// writes fewer; the oracle answers each; the small model answers again from the problem,
    /// its first attempt and the question/answer transcript. Questions cannot depend on earlier
    /// answers, so the oracle's answers never change what is asked.
    V3,
}

/// Protocol 3: the question that pads a list shorter than K (the paper's padding).
pub const PAD_QUESTION: &str = "Is the answer correct?";
/// Protocol 3: token limit of the one generation that writes the whole question list.
pub const MAX_LIST_TOKENS: usize = 400;

impl Protocol {
    /// What `tenbit encode --mode qa` sends.
    pub const CURRENT: Protocol = Protocol::V3;

    /// Most questions a run of this revision may ask.
    pub fn max_bits(self) -> usize {
        match self {
            Protocol::V3 => MAX_BITS_V3,
            _ => MAX_BITS,
        }
    }

    /// The revision number frames carry (1, 2, 3).
    pub fn number(self) -> u8 {
        match self {
            Protocol::V1 => 1,
            Protocol::V2 => 2,
            Protocol::V3 => 3,
        }
    }

    /// Inverse of [`Protocol::number`]; `None` for a revision this build does not know.
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            1 => Some(Protocol::V1),
            2 => Some(Protocol::V2),
            3 => Some(Protocol::V3),
            _ => None,
        }
    }

    /// The request for question `asked.len() + 1`.
    fn ask(self, asked: &[(String, bool)]) -> String {
        match self {
            Protocol::V2 if !asked.is_empty() => format!("{}{ASK_MORE}", answers_so_far(asked)),
            _ => ASK.into(),
        }
    }
}
const FINAL: &str = "Taking my answers into account, write your final answer to the original \
question. Be concise and end with the final result.";

/// Why a QA run (encoder) or replay (edge) failed.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    /// The engine failed while running the small model's side of the conversation.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// More questions than [`MAX_BITS`] were requested (or a frame claims more): ask fewer.
    #[error("{k} questions requested; at most {max} are allowed")]
    TooManyBits {
        /// Questions requested.
        k: usize,
        /// [`MAX_BITS`].
        max: usize,
    },
    /// The oracle failed: on the encoder the strong model (down, timed out, no yes/no); its
    /// own error is the source, so callers can tell an outage from a corrupt frame.
    #[error("the strong model could not answer question {} ({question:?})", index + 1)]
    Oracle {
        /// Which question failed, counted from 0.
        index: usize,
        /// The question the small model asked.
        question: String,
        /// The oracle's own error (downcast it to tell an outage from a bad reply).
        #[source]
        source: OracleError,
    },
    /// The edge ran out of answer bits (a frame whose bit count disagrees with its payload).
    #[error("the frame carries {bits} answer bits but the replay asked question {}", index + 1)]
    MissingBit {
        /// The question that had no bit, counted from 0.
        index: usize,
        /// Answer bits the frame carries.
        bits: usize,
    },
}

/// Why an [`Oracle`] could not answer: the strong model's own error, boxed so that this crate
/// need not know the HTTP client or the local strong model (and keeps their types for the
/// exit-code mapping, which downcasts the source chain).
pub type OracleError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that happened in one QA run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The small model's first answer, before any question.
    pub initial_answer: String,
    /// Each question asked, in order, with its yes (`true`) / no (`false`) answer bit.
    pub questions: Vec<(String, bool)>,
    /// The answer revised with the questions' answers: what the edge shows the user.
    pub final_answer: String,
}

/// Who answers the questions: the strong model on the encoder, the frame's bits on the edge.
pub trait Oracle {
    /// Yes (`true`) or no to question `index` (from 0), asked about `draft`, the small model's
    /// initial answer to `prompt`. An error aborts the run as [`QaError::Oracle`].
    fn answer(
        &mut self,
        index: usize,
        prompt: &str,
        draft: &str,
        question: &str,
    ) -> Result<bool, OracleError>;
}

/// Replays recorded bits (the edge side).
pub struct Bits<'a>(pub &'a [bool]);

/// [`Bits`] ran out: the frame carries fewer bits than the replay asked questions. That is the
/// frame's fault, not an oracle failure, so [`run`] reports it as [`QaError::MissingBit`].
#[derive(Debug, thiserror::Error)]
#[error("no answer bit left")]
pub struct BitsExhausted;

impl Oracle for Bits<'_> {
    fn answer(&mut self, index: usize, _: &str, _: &str, _: &str) -> Result<bool, OracleError> {
        self.0
            .get(index)
            .copied()
            .ok_or_else(|| BitsExhausted.into())
    }
}

/// Question `index`'s bit from the oracle. Replay's [`Bits`] running out means the frame
/// carries fewer bits than the run asks ([`QaError::MissingBit`]); any other failure keeps
/// the oracle's own error ([`QaError::Oracle`]).
fn ask(
    oracle: &mut dyn Oracle,
    index: usize,
    prompt: &str,
    draft: &str,
    question: &str,
) -> Result<bool, QaError> {
    oracle
        .answer(index, prompt, draft, question)
        .map_err(|e| match e {
            e if e.is::<BitsExhausted>() => QaError::MissingBit { index, bits: index },
            source => QaError::Oracle {
                index,
                question: question.to_string(),
                source,
            },
        })
}

/// Protocol 3: the request for the whole question list.
fn list_request(k: usize) -> String {
    format!(
        "Write {k} yes/no questions that an expert could answer to show whether your approach \
         and answer above are right: ask about the key steps, the calculations and the \
         concepts. Write one question per line, numbered 1 to {k}, and nothing else."
    )
}

/// Protocol 3: the questions of a generated list, in order: each line's text after any
/// numbering or bullet, cut after its first "?", lines without one dropped, repeats (ignoring
/// case and spacing) dropped; then the first `k`, padded with [`PAD_QUESTION`].
pub fn parse_question_list(text: &str, k: usize) -> Vec<String> {
    let norm = |q: &str| {
        q.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if out.len() == k {
            break;
        }
        let l = line.trim();
        let l = l.trim_start_matches(|c: char| {
            c.is_ascii_digit()
                || matches!(c, '.' | ')' | '-' | '*' | ':' | '#')
                || c.is_whitespace()
        });
        let l = l
            .strip_prefix("Q")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            .map(|r| {
                r.trim_start_matches(|c: char| {
                    c.is_ascii_digit() || matches!(c, '.' | ')' | ':') || c.is_whitespace()
                })
            })
            .unwrap_or(l);
        let Some(end) = l.find('?') else { continue };
        let q = l[..=end].trim().to_string();
        if q.len() < 2 || out.iter().any(|p| norm(p) == norm(&q)) {
            continue;
        }
        out.push(q);
    }
    while out.len() < k {
        out.push(PAD_QUESTION.to_string());
    }
    out
}

/// Protocol 3: the final request, the first attempt and the answered questions restated.
fn v3_final(prompt: &str, draft: &str, answered: &[(String, bool)]) -> String {
    let mut s = format!(
        "Problem:\n{prompt}\n\nA first attempt at it:\n{draft}\n\nYes/no questions about that \
         attempt, answered by an expert:\n"
    );
    for (i, (q, a)) in answered.iter().enumerate() {
        let a = if *a { "Yes" } else { "No" };
        s.push_str(&format!("{}. {q} {a}\n", i + 1));
    }
    s.push_str(
        "\nUsing the expert's answers, solve the problem again and write your complete final \
         answer.",
    );
    s
}

/// Protocol 2: the questions asked so far with my answers, as a list inside the next request.
fn answers_so_far(asked: &[(String, bool)]) -> String {
    let mut s = String::from("Your questions so far, with my answers:\n");
    for (q, a) in asked {
        let a = if *a { "yes" } else { "no" };
        s.push_str(&format!("- {q} (my answer: {a})\n"));
    }
    s.push('\n');
    s
}

/// Run the small model's side of QA with `k` questions.
// Each argument is a separate input of the replayed conversation (model, its session options,
// tokenizer and template, the prompt, K, the protocol revision, who answers), and both callers
// pass them straight from `LmCodec`; a parameter struct would only move the same list.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &Model,
    opts: &SessionOptions,
    tok: &Tokenizer,
    chat: &ChatTemplate,
    prompt: &str,
    k: usize,
    protocol: Protocol,
    oracle: &mut dyn Oracle,
) -> Result<Transcript, QaError> {
    if k > protocol.max_bits() {
        return Err(QaError::TooManyBits {
            k,
            max: protocol.max_bits(),
        });
    }
    let mut o = opts.clone();
    o.max_ctx = QA_CONTEXT;
    let mut conv = Conversation::new(Session::new(model, o)?);
    let eot = chat.end_of_turn(tok);
    let stop = [eot, tok.eos()];
    let text = |ids: &[TokenId]| String::from_utf8_lossy(&tok.decode(ids)).trim().to_string();

    let mut msgs: Vec<(String, String)> = vec![("user".into(), prompt.to_string())];
    let render = |msgs: &[(String, String)]| {
        let m: Vec<(&str, &str)> = msgs.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
        chat.render(tok, &m)
    };
    let initial = text(&conv.greedy(&render(&msgs), &stop, MAX_ANSWER_TOKENS)?);
    msgs.push(("assistant".into(), initial.clone()));
    if protocol == Protocol::V3 {
        return run_v3(&mut conv, &render, &text, &stop, prompt, initial, k, oracle);
    }
    let mut questions = Vec::with_capacity(k);
    let norm = |q: &str| {
        q.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    for i in 0..k {
        msgs.push(("user".into(), protocol.ask(&questions)));
        let context = render(&msgs);
        let mut tries = 0u64;
        let q = loop {
            let ids = if tries == 0 {
                conv.greedy(&context, &stop, MAX_QUESTION_TOKENS)?
            } else {
                let seed = (i as u64) << 8 | tries;
                conv.sample_seeded(&context, &stop, MAX_QUESTION_TOKENS, seed)?
            };
            let mut q = text(&ids);
            if protocol == Protocol::V2 {
                // Small models run on after the question ("...? Yes. Yes."): keep the question.
                if let Some(end) = q.find('?') {
                    q.truncate(end + 1);
                }
            }
            // A repeat, or no question at all (small models answer instead of asking).
            let bad = questions
                .iter()
                .any(|(p, _): &(String, bool)| norm(p) == norm(&q))
                || !q.ends_with('?');
            if protocol == Protocol::V1 || !bad || tries == REASK {
                break q;
            }
            tries += 1;
        };
        let bit = ask(oracle, i, prompt, &initial, &q)?;
        if protocol == Protocol::V1 {
            msgs.push(("assistant".into(), q.clone()));
            msgs.push(("user".into(), if bit { "Yes." } else { "No." }.into()));
            msgs.push(("assistant".into(), "Understood.".into()));
        } else {
            // Protocol 2 keeps the conversation at (prompt, draft, one request): the questions
            // and answers so far are listed inside the next request instead of as turns.
            msgs.pop();
        }
        questions.push((q, bit));
    }
    let final_answer = if k == 0 {
        initial.clone()
    } else {
        let fin = match protocol {
            Protocol::V1 => FINAL.to_string(),
            // The 0.5B answered the last question instead of the task under protocol 1's
            // wording (math accuracy 0.375 alone, 0.125 after QA): restate the task.
            // Protocol 3 returned from `run_v3` before the loop.
            Protocol::V2 | Protocol::V3 => format!(
                "{}Now write your complete final answer to the original question, taking my \
                 answers into account. The original question was:\n\n{prompt}",
                answers_so_far(&questions)
            ),
        };
        msgs.push(("user".into(), fin));
        text(&conv.greedy(&render(&msgs), &stop, MAX_ANSWER_TOKENS)?)
    };
    Ok(Transcript {
        initial_answer: initial,
        questions,
        final_answer,
    })
}

/// Chat turns (role, text) to the tokens of their chat-template rendering.
type Render<'a> = &'a dyn Fn(&[(String, String)]) -> Vec<TokenId>;

/// Protocol 3 after the first answer (see [`Protocol::V3`]).
#[allow(clippy::too_many_arguments)]
fn run_v3(
    conv: &mut Conversation<'_>,
    render: Render<'_>,
    text: &dyn Fn(&[TokenId]) -> String,
    stop: &[TokenId],
    prompt: &str,
    initial: String,
    k: usize,
    oracle: &mut dyn Oracle,
) -> Result<Transcript, QaError> {
    if k == 0 {
        return Ok(Transcript {
            final_answer: initial.clone(),
            initial_answer: initial,
            questions: Vec::new(),
        });
    }
    let msgs = vec![
        ("user".to_string(), prompt.to_string()),
        ("assistant".to_string(), initial.clone()),
        ("user".to_string(), list_request(k)),
    ];
    let list = text(&conv.greedy(&render(&msgs), stop, MAX_LIST_TOKENS)?);
    let mut questions = Vec::with_capacity(k);
    for (i, q) in parse_question_list(&list, k).into_iter().enumerate() {
        let bit = ask(oracle, i, prompt, &initial, &q)?;
        questions.push((q, bit));
    }
    let fin = vec![("user".to_string(), v3_final(prompt, &initial, &questions))];
    let final_answer = text(&conv.greedy(&render(&fin), stop, MAX_ANSWER_TOKENS)?);
    Ok(Transcript {
        initial_answer: initial,
        questions,
        final_answer,
    })
}

/// Full-frame QA payload: one byte, then the K answer bits packed LSB-first. The byte is K
/// (protocol 1), 0x80 | K (protocol 2) or 0x40 | K (protocol 3, 1 <= K <= [`MAX_BITS_V3`];
/// its K = 0 run is protocol 1's, the first answer unchanged, and is written as such).
/// `bits.len()` must be at most [`MAX_BITS`] ([`MAX_BITS_V3`] for protocol 3).
pub fn pack_bits(protocol: Protocol, bits: &[bool]) -> Vec<u8> {
    debug_assert!(bits.len() <= protocol.max_bits());
    let rev = match protocol {
        Protocol::V1 => 0,
        Protocol::V2 => 0x80,
        Protocol::V3 if bits.is_empty() => 0,
        Protocol::V3 => 0x40,
    };
    let mut out = vec![rev | bits.len() as u8];
    for chunk in bits.chunks(8) {
        out.push(
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, &v)| b | ((v as u8) << i)),
        );
    }
    out
}

/// Inverse of [`pack_bits`]; refuses payloads whose length disagrees with K or whose unused
/// high bits are set (both mean corruption).
pub fn unpack_bits(payload: &[u8]) -> Option<(Protocol, Vec<bool>)> {
    let (&kb, rest) = payload.split_first()?;
    // Protocols 1 and 2 wrote K (<= 64) in the low 7 bits, so bit 6 was set only by K = 64.
    // Protocol 3 writes 0x40 | K for 1 <= K <= 63, i.e. 65..=127, which protocol 1 never did.
    let (protocol, k) = match (kb & 0x80 != 0, kb & 0x7f) {
        (false, v) if v > 64 => (Protocol::V3, (v & 0x3f) as usize),
        (false, v) => (Protocol::V1, v as usize),
        (true, v) => (Protocol::V2, v as usize),
    };
    if k > MAX_BITS || rest.len() != k.div_ceil(8) {
        return None;
    }
    let bits: Vec<bool> = (0..k).map(|i| rest[i / 8] >> (i % 8) & 1 == 1).collect();
    if !k.is_multiple_of(8) && rest[k / 8] >> (k % 8) != 0 {
        return None;
    }
    Some((protocol, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_lists_are_parsed_cut_deduplicated_and_padded() {
        let list = "Here are the questions:\n1. Is 48 - 29 = 19? Yes.\n2) Did you subtract the 5 \
                    muffins given away?\nQ3: Is 48 - 29 = 19?\n- Is the final answer 14?\n\n\
                    Note: these check the steps.\n**4.** Is the answer a whole number?";
        let q = parse_question_list(list, 6);
        assert_eq!(
            q,
            vec![
                "Is 48 - 29 = 19?",
                "Did you subtract the 5 muffins given away?",
                "Is the final answer 14?",
                "Is the answer a whole number?",
                PAD_QUESTION,
                PAD_QUESTION,
            ]
        );
        assert_eq!(parse_question_list(list, 2).len(), 2);
        assert_eq!(parse_question_list("", 3), vec![PAD_QUESTION; 3]);
        assert!(parse_question_list(list, 0).is_empty());
    }

    #[test]
    fn bits_round_trip_and_reject_garbage() {
        for proto in [Protocol::V1, Protocol::V2, Protocol::V3] {
            for k in (0..=20usize).chain([proto.max_bits() - 1, proto.max_bits()]) {
                let bits: Vec<bool> = (0..k).map(|i| (i * 7 + 3) % 5 < 2).collect();
                let p = pack_bits(proto, &bits);
                assert_eq!(p.len(), 1 + k.div_ceil(8));
                // Protocol 3's K = 0 run is protocol 1's (nothing asked, first answer kept).
                let want = if k == 0 && proto == Protocol::V3 {
                    Protocol::V1
                } else {
                    proto
                };
                assert_eq!(unpack_bits(&p).unwrap(), (want, bits), "{proto:?} K={k}");
            }
        }
        assert_eq!(
            unpack_bits(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap().0,
            Protocol::V1
        );
        assert_eq!(
            unpack_bits(&[0x43, 0b101]).unwrap(),
            (Protocol::V3, vec![true, false, true])
        );
        for p in [Protocol::V1, Protocol::V2, Protocol::V3] {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
        }
        assert_eq!(Protocol::from_number(4), None);
        // Protocol-1 frames from before the revision bit keep their meaning.
        assert_eq!(
            unpack_bits(&[2, 0b01]).unwrap(),
            (Protocol::V1, vec![true, false])
        );
        assert_eq!(
            unpack_bits(&[0x82, 0b10]).unwrap(),
            (Protocol::V2, vec![false, true])
        );
        assert!(unpack_bits(&[]).is_none());
        assert!(unpack_bits(&[3]).is_none());
        assert!(unpack_bits(&[3, 0b1000]).is_none());
        assert!(unpack_bits(&[0x83, 0b1000]).is_none());
        assert!(unpack_bits(&[65, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(unpack_bits(&[0x80 | 100, 0]).is_none());
    }
}
