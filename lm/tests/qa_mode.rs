//! QA mode with the real model: the edge replays the small model's side of the conversation
//! from the answer bits alone and reaches the same final answer, token for token.

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, SessionOptions};
use tenbit_lm::codec::{frame_mode, CodecError, LmCodec};
use tenbit_lm::qa::{Oracle, QaError, MAX_BITS};
use tenbit_wire::frame::Mode;

/// A scripted strong model: answers by a fixed pattern, and records the questions it saw.
struct Scripted(Vec<String>);

impl Oracle for Scripted {
    fn answer(
        &mut self,
        index: usize,
        _prompt: &str,
        _draft: &str,
        question: &str,
    ) -> Result<bool, tenbit_lm::qa::OracleError> {
        self.0.push(question.to_string());
        Ok(index.is_multiple_of(2))
    }
}

#[test]
fn edge_replays_the_same_conversation_from_two_bits() {
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"What is 7 times 8? Reply with the number only.";
    let mut oracle = Scripted(Vec::new());
    let (frame, sent) = c.encode_qa(prompt, 2, &mut oracle).unwrap();
    assert_eq!(frame_mode(&frame).unwrap(), Mode::Qa);
    // 6 bytes of frame overhead, 1 byte K, 1 byte of bits.
    assert_eq!(frame.len(), 8);
    assert_eq!(oracle.0.len(), 2);
    assert!(!sent.final_answer.is_empty());
    let got = c.decode_qa(&frame, prompt).unwrap();
    assert_eq!(got, sent, "edge transcript differs from the encoder's");
    // Another prompt cannot decode it.
    let e = c.decode_qa(&frame, b"What is 6 times 9?").unwrap_err();
    assert!(matches!(e, CodecError::CorruptOrWrongPrompt), "{e}");
    // More questions than the protocol allows are refused before any work.
    let e = c
        .encode_qa(prompt, MAX_BITS + 1, &mut Scripted(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(e, CodecError::Qa(QaError::TooManyBits { .. })),
        "{e}"
    );
}

#[test]
fn protocol_1_frames_still_replay_after_the_revision() {
    use tenbit_lm::qa::Protocol;
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"A train travels 120 km in 2 hours. What is its average speed?";
    for proto in [Protocol::V1, Protocol::V2] {
        let (frame, sent) = c
            .encode_qa_with(prompt, 3, proto, &mut Scripted(Vec::new()))
            .unwrap();
        // The revision travels in the frame: the edge replays the one the encoder used.
        assert_eq!(frame[2] & 0x80 != 0, proto == Protocol::V2, "revision bit");
        assert_eq!(c.decode_qa(&frame, prompt).unwrap(), sent, "{proto:?}");
    }
}

/// SmolLM2-135M answers every request for a question with the same non-question, so the
/// distinct-question rule is checked on the small model of the evaluation pair.
#[test]
fn protocol_2_asks_distinct_questions_with_qwen_0_5b() {
    use tenbit_lm::qa::Protocol;
    let spec = catalogue::find("qwen2.5-coder-0.5b").expect("catalogue entry");
    let m = Model::load(catalogue::ensure(spec, &mut |_| {}).expect("fetch Qwen 0.5B")).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"A baker made 48 muffins, sold 29 and gave 5 to a neighbour. How many are left?";
    let norm = |q: &str| {
        q.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let (frame, sent) = c
        .encode_qa_with(prompt, 3, Protocol::V2, &mut Scripted(Vec::new()))
        .unwrap();
    eprintln!("questions: {:?}", sent.questions);
    let mut q: Vec<String> = sent.questions.iter().map(|(q, _)| norm(q)).collect();
    q.sort();
    q.dedup();
    assert_eq!(q.len(), 3, "questions: {:?}", sent.questions);
    assert_eq!(c.decode_qa(&frame, prompt).unwrap(), sent);
}
