//! QA mode with the real model: the edge replays the small model's side of the conversation
//! from the answer bits alone and reaches the same final answer, token for token.

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, SessionOptions};
use tenbit_lm::codec::{frame_mode, CodecError, LmCodec};
use tenbit_lm::qa::{pack_bits, Protocol};
use tenbit_lm::qa::{Oracle, QaError, MAX_BITS};
use tenbit_wire::frame::{encode_frame, Flags, FrameHeader, Mode, FRAME_VERSION};

fn bits_byte(bits: &[bool]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0, |b, (i, &v)| b | (u8::from(v) << i))
}

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
    // Compact: 1 byte (mode, revision, K), 2 answer bits, a 14-bit keyed check.
    assert_eq!(frame.len(), 3);
    assert_eq!(oracle.0.len(), 2);
    assert!(!sent.final_answer.is_empty());
    let got = c.decode_qa(&frame, prompt).unwrap();
    assert_eq!(got, sent, "edge transcript differs from the encoder's");
    // Another prompt cannot decode it.
    let e = c.decode_qa(&frame, b"What is 6 times 9?").unwrap_err();
    assert!(matches!(e, CodecError::CorruptOrWrongPrompt), "{e}");
    // The same bits as a full frame (the format before compact frames) replay the same way.
    let key = c.identity_for_prompt(prompt);
    let header = FrameHeader {
        version: FRAME_VERSION,
        mode: Mode::Qa,
        flags: Flags::default().with(Flags::PROMPT_KNOWN),
        model_tag: key.tag(),
    };
    let bits: Vec<bool> = sent.questions.iter().map(|(_, b)| *b).collect();
    let mut full = Vec::new();
    encode_frame(
        &header,
        &key,
        &pack_bits(Protocol::CURRENT, &bits),
        &mut full,
    )
    .unwrap();
    assert_eq!(full.len(), 8, "6 bytes overhead, 1 byte K, 1 byte of bits");
    assert_eq!(c.decode_qa(&full, prompt).unwrap(), sent);
    // The bytes written out: a protocol-3 full frame [header, tag, 0x40 | K, bits, CRC].
    assert_eq!(Protocol::CURRENT, Protocol::V3);
    assert_eq!(&full[2..4], &[0x42, bits_byte(&bits)]);
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
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"A train travels 120 km in 2 hours. What is its average speed?";
    for proto in [Protocol::V1, Protocol::V2, Protocol::V3] {
        let (frame, sent) = c
            .encode_qa_with(prompt, 3, proto, &mut Scripted(Vec::new()))
            .unwrap();
        // The revision travels in the frame (a compact frame's code: 16 per revision, then
        // K - 1): the edge replays the one the encoder used.
        assert_eq!(
            frame[0],
            (proto.number() - 1) * 16 + 2,
            "compact code of K = 3"
        );
        assert_eq!(c.decode_qa(&frame, prompt).unwrap(), sent, "{proto:?}");
    }
}

/// SmolLM2-135M answers every request for a question with the same non-question, so the
/// distinct-question rule is checked on the small model of the evaluation pair.
#[test]
fn protocol_2_asks_distinct_questions_with_qwen_0_5b() {
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

/// Protocol 3 (the paper's): the whole list is written in one generation and padded to K;
/// a K beyond the compact table travels in a full frame and replays the same way, and a frame
/// short of bits is refused.
#[test]
fn protocol_3_writes_k_questions_in_one_list_and_replays() {
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"A baker made 48 muffins, sold 29 and gave 5 to a neighbour. How many are left?";
    let mut oracle = Scripted(Vec::new());
    let (frame, sent) = c
        .encode_qa_with(prompt, 10, Protocol::V3, &mut oracle)
        .unwrap();
    eprintln!("questions: {:?}", sent.questions);
    assert_eq!(sent.questions.len(), 10);
    assert_eq!(oracle.0.len(), 10, "every question goes to the oracle");
    assert_eq!(frame.len(), 4, "compact: 1 + 10 bits + a 14-bit check");
    assert_eq!(frame[0], 32 + 9, "compact code of protocol 3, K = 10");
    assert_eq!(c.decode_qa(&frame, prompt).unwrap(), sent);
    // The answers do not change the questions (asked in one batch before any answer).
    let flipped: Vec<bool> = sent.questions.iter().map(|(_, b)| !b).collect();
    struct Replay(Vec<bool>);
    impl Oracle for Replay {
        fn answer(
            &mut self,
            i: usize,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<bool, tenbit_lm::qa::OracleError> {
            Ok(self.0[i])
        }
    }
    let (_, other) = c
        .encode_qa_with(prompt, 10, Protocol::V3, &mut Replay(flipped))
        .unwrap();
    let q = |t: &tenbit_lm::qa::Transcript| -> Vec<String> {
        t.questions.iter().map(|(q, _)| q.clone()).collect()
    };
    assert_eq!(q(&other), q(&sent));
    assert_eq!(other.initial_answer, sent.initial_answer);
    // K = 20 is beyond the compact table: a full frame, replayed the same way.
    let (full, sent20) = c
        .encode_qa_with(prompt, 20, Protocol::V3, &mut Scripted(Vec::new()))
        .unwrap();
    assert!(!tenbit_wire::compact::is_compact(&full));
    assert_eq!(full.len(), 6 + 1 + 3);
    assert_eq!(full[2], 0x40 | 20);
    assert_eq!(c.decode_qa(&full, prompt).unwrap(), sent20);
    // Over protocol 3's limit: refused before any work.
    let e = c
        .encode_qa_with(prompt, 64, Protocol::V3, &mut Scripted(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(e, CodecError::Qa(QaError::TooManyBits { k: 64, max: 63 })),
        "{e}"
    );
}
