//! End to end through the real binaries: `tenbit encode` on the host, `tenbit-edge decode` on
//! the "board", with the real model. Every bad input gets its documented exit status and a
//! message that says what is wrong.

use tenbit_tests::{bin, llm_corpus, model_path, run};

fn encode(args: &[&str], input: &[u8]) -> Vec<u8> {
    let out = run(&bin("tenbit"), &[&["encode"], args].concat(), input);
    assert!(
        out.status.success(),
        "encode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn edge_decode(args: &[&str], frame: &[u8]) -> std::process::Output {
    run(&bin("tenbit-edge"), &[&["decode"], args].concat(), frame)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn corpus_round_trips_host_to_edge_with_known_prompt() {
    let corpus = llm_corpus();
    assert!(corpus.len() >= 30, "corpus has {} responses", corpus.len());
    // Five responses spread over the whole corpus (old and new ones, short and long): CI time
    // stays bounded however many responses the corpus grows to. `tenbit bench` and
    // `link_sim` round-trip every file.
    let step = corpus.len().div_ceil(5);
    for (name, prompt, text) in corpus.iter().step_by(step) {
        let p = String::from_utf8(prompt.clone()).unwrap();
        let frame = encode(&["--prompt", &p], text);
        assert!(
            frame.len() * 3 < text.len(),
            "{name}: {} -> {} bytes is not compression",
            text.len(),
            frame.len()
        );
        let out = edge_decode(&["--prompt", &p], &frame);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(out.stdout, *text, "{name}: round trip differs");
    }
}

#[test]
fn empty_binary_and_invalid_utf8_inputs_round_trip() {
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut noise = Vec::new();
    for _ in 0..300 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        noise.push(rng as u8);
    }
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        noise,
        b"caf\xc3\xa9 \xff\xfe broken \xc3 utf-8 <|im_end|> literal specials <|im_start|>\x00\r\n"
            .to_vec(),
    ];
    for c in cases {
        let frame = encode(&[], &c);
        let out = edge_decode(&[], &frame);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, c);
    }
}

#[test]
fn sent_prompt_travels_in_the_frame() {
    let dir = std::env::temp_dir().join(format!("tenbit-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frame = encode(
        &["--prompt", "What is 2+2?", "--send-prompt"],
        b"2 + 2 = 4.",
    );
    let po = dir.join("prompt.txt");
    let out = edge_decode(&["--prompt-out", po.to_str().unwrap()], &frame);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"2 + 2 = 4.");
    assert_eq!(std::fs::read(&po).unwrap(), b"What is 2+2?");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_and_corrupted_frames_are_refused_with_exit_4() {
    let frame = encode(
        &[],
        b"The quick brown fox jumps over the lazy dog, twice over.",
    );
    for cut in [0, 1, 2, frame.len() / 2, frame.len() - 1] {
        let out = edge_decode(&[], &frame[..cut]);
        assert_eq!(out.status.code(), Some(4), "cut {cut}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{}", stderr(&out));
    }
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x10;
        let out = edge_decode(&[], &bad);
        assert!(!out.status.success(), "flip at byte {i} decoded");
        // 3: names another model/version; 4: corrupt; 5: the flipped header now claims a
        // prompt-keyed (QA or known-prompt) frame, which cannot be checked without that prompt.
        assert!(
            matches!(out.status.code(), Some(3) | Some(4) | Some(5)),
            "byte {i}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
}

#[test]
fn wrong_or_missing_prompt_is_refused() {
    let frame = encode(&["--prompt", "Name a colour."], b"Blue.");
    let out = edge_decode(&[], &frame);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("prompt"), "{}", stderr(&out));
    let out = edge_decode(&["--prompt", "Name a number."], &frame);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("different prompt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn frame_from_another_model_is_refused_with_exit_3() {
    // Another model: the same weights with one metadata byte changed has another content hash.
    let src = std::fs::read(model_path()).unwrap();
    let frame = encode(&[], b"Hello from the host.");
    let needle = b"Smollm2 135M";
    let at = src
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("model name in metadata");
    let dir = std::env::temp_dir().join(format!("tenbit-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other.gguf");
    let mut copy = src;
    copy[at] = b'X';
    std::fs::write(&other, &copy).unwrap();
    let out = edge_decode(&["--model", other.to_str().unwrap()], &frame);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        matches!(out.status.code(), Some(3) | Some(4)),
        "{:?}: {}",
        out.status,
        stderr(&out)
    );
    let e = stderr(&out);
    assert!(
        e.contains("different model") || e.contains("another model"),
        "{e}"
    );
}

#[test]
fn newer_frame_version_is_refused_with_exit_3() {
    let mut frame = encode(&[], b"Version check.");
    frame[0] = (frame[0] & 0x3f) | (3 << 6); // version field lives in the top two bits
    let out = edge_decode(&[], &frame);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("newer"), "{}", stderr(&out));
}

#[test]
fn ten_megabyte_input_is_refused_quickly_with_exit_5() {
    let big = vec![b'a'; 10 * 1024 * 1024];
    let out = run(&bin("tenbit"), &["encode"], &big);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-size"), "{}", stderr(&out));
}

#[test]
fn missing_input_file_is_a_clear_error() {
    let out = run(&bin("tenbit"), &["encode", "/nonexistent/answer.txt"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/answer.txt"),
        "{}",
        stderr(&out)
    );
}
