//! Pick mode with the real model: the edge draws only the chosen candidate and gets exactly
//! the text the encoder chose; every malformed request or frame fails with a typed error.

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, SessionOptions};
use tenbit_lm::codec::{frame_mode, CodecError, LmCodec};
use tenbit_lm::pick::{Judge, PickError, MAX_PICK_BITS};
use tenbit_lm::qa::OracleError;
use tenbit_wire::frame::{encode_frame, Flags, FrameHeader, Mode, FRAME_VERSION};

/// A scripted judge: chooses a fixed index (or none, or fails), and records what it saw.
struct Fixed {
    choice: Result<Option<usize>, &'static str>,
    seen: Vec<String>,
}

impl Judge for Fixed {
    fn choose(&mut self, _: &str, candidates: &[String]) -> Result<Option<usize>, OracleError> {
        self.seen = candidates.to_vec();
        self.choice.map_err(|e| e.into())
    }
}

fn fixed(choice: Option<usize>) -> Fixed {
    Fixed {
        choice: Ok(choice),
        seen: Vec::new(),
    }
}

const PROMPT: &[u8] = b"What is 7 times 8? Reply with the number only.";

#[test]
fn edge_draws_the_chosen_candidate_alone_and_refuses_bad_frames() {
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();

    let mut judge = fixed(Some(2));
    let out = c.encode_pick(PROMPT, 2, &mut judge).unwrap();
    assert_eq!(out.candidates.len(), 4);
    assert_eq!(judge.seen, out.candidates);
    let distinct = {
        let mut v = out.candidates.clone();
        v.sort();
        v.dedup();
        v.len()
    };
    assert!(
        distinct >= 2,
        "seeded candidates are all the same: {:?}",
        out.candidates
    );
    let (index, frame) = out.chosen.clone().expect("judge chose 2");
    assert_eq!(index, 2);
    assert_eq!(frame_mode(&frame).unwrap(), Mode::Pick);
    // A compact frame: 1 byte (mode, revision, K), 2 index bits, a 14-bit keyed check.
    assert_eq!(frame.len(), 3);
    assert!(tenbit_wire::compact::is_compact(&frame));

    // The one decode entry point draws candidate 2 alone: the same text as in the batch of 4.
    let msg = c
        .decode(&frame, Some(PROMPT), 1 << 16, &mut |_, _| {})
        .unwrap();
    assert_eq!(msg.mode, Mode::Pick);
    assert_eq!(msg.text, out.candidates[2].as_bytes());
    assert_eq!(
        c.decode_pick(&frame, PROMPT).unwrap(),
        (2, 2, out.candidates[2].clone())
    );
    // Drawn in another batch (other companions, another size), a candidate is the same text.
    let again = c
        .pick_candidates(std::str::from_utf8(PROMPT).unwrap(), &[3, 1])
        .unwrap();
    assert_eq!(
        again,
        vec![out.candidates[3].clone(), out.candidates[1].clone()]
    );

    // Replayed with another prompt, or without one: refused.
    let e = c
        .decode(&frame, Some(b"What is 6 times 9?"), 1 << 16, &mut |_, _| {})
        .unwrap_err();
    assert!(matches!(e, CodecError::CorruptOrWrongPrompt), "{e}");
    let e = c.decode(&frame, None, 1 << 16, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, CodecError::PromptRequired), "{e}");

    // The same choice as a full (pre-compact) frame still decodes to the same candidate.
    let key = c.identity_for_prompt(PROMPT);
    let full = {
        let h = FrameHeader {
            version: FRAME_VERSION,
            mode: Mode::Pick,
            flags: Flags::default().with(Flags::PROMPT_KNOWN),
            model_tag: key.tag(),
        };
        let mut f = Vec::new();
        encode_frame(&h, &key, &[2, 2], &mut f).unwrap();
        f
    };
    assert_eq!(full.len(), 8);
    assert_eq!(
        c.decode_pick(&full, PROMPT).unwrap(),
        (2, 2, out.candidates[2].clone())
    );
    // A compact frame whose K is beyond the pick maximum (the table holds K <= 8): typed.
    let mut big = [0u8; 4];
    let n = tenbit_wire::compact::encode_compact(
        &tenbit_wire::compact::CompactHeader {
            mode: Mode::Pick,
            revision: 0,
            k: 7,
        },
        5,
        &key,
        &mut big,
    )
    .unwrap();
    let e = c.decode_pick(&big[..n], PROMPT).unwrap_err();
    assert!(
        matches!(e, CodecError::Pick(PickError::TooManyBits { k: 7, .. })),
        "{e}"
    );

    // Properly keyed frames whose payload is wrong: index beyond 2^K, K above the maximum.
    let keyed = |payload: &[u8]| {
        let key = c.identity_for_prompt(PROMPT);
        let h = FrameHeader {
            version: FRAME_VERSION,
            mode: Mode::Pick,
            flags: Flags::default().with(Flags::PROMPT_KNOWN),
            model_tag: key.tag(),
        };
        let mut f = Vec::new();
        encode_frame(&h, &key, payload, &mut f).unwrap();
        f
    };
    let e = c
        .decode(&keyed(&[2, 4]), Some(PROMPT), 1 << 16, &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::Pick(PickError::IndexOutOfRange { index: 4, k: 2 })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("beyond"), "{e}");
    let e = c
        .decode(&keyed(&[9, 0, 0]), Some(PROMPT), 1 << 16, &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(e, CodecError::Pick(PickError::TooManyBits { k: 9, .. })),
        "{e}"
    );
}

#[test]
fn encoder_refuses_bad_k_and_reports_none_and_judge_failures() {
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
    let m = Model::load(path).unwrap();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    // K above the maximum: refused before any candidate is drawn or the judge is asked.
    let mut j = fixed(Some(0));
    let e = c
        .encode_pick(PROMPT, MAX_PICK_BITS + 1, &mut j)
        .unwrap_err();
    assert!(
        matches!(e, CodecError::Pick(PickError::TooManyBits { .. })),
        "{e}"
    );
    assert!(j.seen.is_empty());
    let e = c.encode_pick(PROMPT, 0, &mut j).unwrap_err();
    assert!(matches!(e, CodecError::Pick(PickError::ZeroBits)), "{e}");
    // None good: no frame (the caller falls back to the strong answer's own frame).
    let out = c.encode_pick(PROMPT, 1, &mut fixed(None)).unwrap();
    assert_eq!(out.candidates.len(), 2);
    assert!(out.chosen.is_none());
    // A judge choosing an index it was not offered, and a judge that fails: typed errors.
    let e = c.encode_pick(PROMPT, 1, &mut fixed(Some(2))).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::Pick(PickError::IndexOutOfRange { index: 2, k: 1 })
        ),
        "{e}"
    );
    let mut down = Fixed {
        choice: Err("strong server unreachable"),
        seen: Vec::new(),
    };
    let e = c.encode_pick(PROMPT, 1, &mut down).unwrap_err();
    match &e {
        CodecError::Pick(PickError::Judge(src)) => {
            assert_eq!(src.to_string(), "strong server unreachable")
        }
        other => panic!("{other}"),
    }
}
