//! Question-Asking mode: the small model answers, asks yes/no questions, and revises.
//!
//! The paper's protocol, made deterministic so that only the answer bits travel: the encoder
//! runs the small model's side (greedy decoding on the bit-exact engine) and asks the strong
//! model only the questions; the edge replays exactly the same conversation with the bits from
//! the frame in place of the strong model and arrives at the same final answer, token for token.
//! Nothing here may depend on anything but (model, prompt, bits): no clocks, no randomness.

use tenbit_common::TokenId;

use crate::chat::ChatTemplate;
use crate::engine::{EngineError, Model, Session, SessionOptions};
use crate::generate::Conversation;
use crate::tokenizer::Tokenizer;

/// Limits of a QA run. Part of the protocol: both ends must use the same values, so they are
/// constants of the frame version rather than user settings.
pub const MAX_ANSWER_TOKENS: usize = 320;
pub const MAX_QUESTION_TOKENS: usize = 40;
/// Largest number of questions a frame may carry.
pub const MAX_BITS: usize = 64;
/// KV-cache size for the whole conversation.
pub const QA_CONTEXT: usize = 4096;

const ASK: &str =
    "Before you finalize, ask me ONE yes/no question whose answer would best help you \
check or improve your answer. Reply with the question only.";
const FINAL: &str = "Taking my answers into account, write your final answer to the original \
question. Be concise and end with the final result.";

#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{k} questions requested; at most {max} are allowed")]
    TooManyBits { k: usize, max: usize },
    #[error("the strong model could not answer question {index} ({question:?}): {reason}")]
    Oracle {
        index: usize,
        question: String,
        reason: String,
    },
}

/// Everything that happened in one QA run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub initial_answer: String,
    pub questions: Vec<(String, bool)>,
    pub final_answer: String,
}

/// Who answers the questions: the strong model on the encoder, the frame's bits on the edge.
pub trait Oracle {
    fn answer(
        &mut self,
        index: usize,
        prompt: &str,
        draft: &str,
        question: &str,
    ) -> Result<bool, String>;
}

/// Replays recorded bits (the edge side).
pub struct Bits<'a>(pub &'a [bool]);

impl Oracle for Bits<'_> {
    fn answer(&mut self, index: usize, _: &str, _: &str, _: &str) -> Result<bool, String> {
        self.0
            .get(index)
            .copied()
            .ok_or_else(|| "frame carries fewer bits than questions".into())
    }
}

/// Run the small model's side of QA with `k` questions.
pub fn run(
    model: &Model,
    opts: &SessionOptions,
    tok: &Tokenizer,
    chat: &ChatTemplate,
    prompt: &str,
    k: usize,
    oracle: &mut dyn Oracle,
) -> Result<Transcript, QaError> {
    if k > MAX_BITS {
        return Err(QaError::TooManyBits { k, max: MAX_BITS });
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
    let mut questions = Vec::with_capacity(k);
    for i in 0..k {
        msgs.push(("user".into(), ASK.into()));
        let q = text(&conv.greedy(&render(&msgs), &stop, MAX_QUESTION_TOKENS)?);
        let bit = oracle
            .answer(i, prompt, &initial, &q)
            .map_err(|reason| QaError::Oracle {
                index: i,
                question: q.clone(),
                reason,
            })?;
        msgs.push(("assistant".into(), q.clone()));
        msgs.push(("user".into(), if bit { "Yes." } else { "No." }.into()));
        msgs.push(("assistant".into(), "Understood.".into()));
        questions.push((q, bit));
    }
    let final_answer = if k == 0 {
        initial.clone()
    } else {
        msgs.push(("user".into(), FINAL.into()));
        text(&conv.greedy(&render(&msgs), &stop, MAX_ANSWER_TOKENS)?)
    };
    Ok(Transcript {
        initial_answer: initial,
        questions,
        final_answer,
    })
}

/// QA payload: one byte K, then the K answer bits packed LSB-first.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![bits.len() as u8];
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
pub fn unpack_bits(payload: &[u8]) -> Option<Vec<bool>> {
    let (&k, rest) = payload.split_first()?;
    let k = k as usize;
    if k > MAX_BITS || rest.len() != k.div_ceil(8) {
        return None;
    }
    let bits: Vec<bool> = (0..k).map(|i| rest[i / 8] >> (i % 8) & 1 == 1).collect();
    if k % 8 != 0 && rest[k / 8] >> (k % 8) != 0 {
        return None;
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_and_reject_garbage() {
        for k in 0..=20usize {
            let bits: Vec<bool> = (0..k).map(|i| (i * 7 + 3) % 5 < 2).collect();
            let p = pack_bits(&bits);
            assert_eq!(p.len(), 1 + k.div_ceil(8));
            assert_eq!(unpack_bits(&p).unwrap(), bits);
        }
        assert!(unpack_bits(&[]).is_none());
        assert!(unpack_bits(&[3]).is_none());
        assert!(unpack_bits(&[3, 0b1000]).is_none());
        assert!(unpack_bits(&[200, 0]).is_none());
    }
}
