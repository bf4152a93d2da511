//! The tokenizer against an independent implementation (HF `tokenizers`, see
//! bench/tokenizer_ref/make_fixture.py) and against its own contracts on the real SmolLM2
//! vocabulary: canonical ids, lossless round trips for any bytes. (Speed is measured and printed,
//! never asserted: timing targets live in benchmarks.)

use std::sync::OnceLock;
use std::time::Instant;

use proptest::prelude::*;
use tenbit_catalogue as catalogue;
use tenbit_engine::gguf::Gguf;
use tenbit_lm::tokenizer::{PreTokenizer, Tokenizer};
use tenbit_wire::TokenId;

fn tok() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let path =
            catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("default model");
        let g = Gguf::open(path).expect("open model");
        Tokenizer::from_gguf(&g).expect("tokenizer")
    })
}

#[test]
fn reads_smollm2_vocabulary() {
    let t = tok();
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.pre_tokenizer(), PreTokenizer::SmolLm);
    assert_eq!(t.eos(), TokenId(2));
    assert_eq!(t.token_id("<|im_end|>"), Some(TokenId(2)));
    assert_eq!(t.token_id("<|im_start|>"), Some(TokenId(1)));
    assert!(t.is_special(TokenId(0)) && t.is_special(TokenId(16)));
    assert!(!t.is_special(TokenId(17)));
    assert_eq!(t.token_bytes(TokenId(2)), b"<|im_end|>");
    assert_eq!(t.escape(), TokenId(0));
    // "Ġthe" is the byte-level spelling of " the".
    let the = t.token_id("Ġthe").unwrap();
    assert_eq!(t.token_bytes(the), b" the");
    assert_eq!(t.encode(b" the"), vec![the]);
}

#[derive(Debug)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn fixture() -> (String, Vec<Case>) {
    let raw = include_str!("fixtures/smollm_tokens.json");
    let v: serde_json::Value = serde_json::from_str(raw).expect("fixture is JSON");
    let sha = v["model_sha256"].as_str().unwrap().to_string();
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
        })
        .collect();
    (sha, cases)
}

#[test]
fn encode_matches_hf_tokenizers_reference() {
    let (sha, cases) = fixture();
    assert_eq!(
        sha,
        catalogue::default_model().sha256,
        "fixture was made from another model"
    );
    assert!(cases.len() > 400);
    let t = tok();
    let mut failures = Vec::new();
    for c in &cases {
        // HF silently drops bytes that have no token; we emit virtual byte tokens instead
        // (the codec escapes them). Compare the rest.
        let ours: Vec<u32> = t
            .encode(c.text.as_bytes())
            .into_iter()
            .filter(|&i| t.virtual_byte(i).is_none())
            .map(|i| i.0)
            .collect();
        if ours != c.ids {
            failures.push(format!(
                "{:?}\n  ours: {:?}\n  ref:  {:?}",
                c.text, ours, c.ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn special_spellings_in_text_are_ordinary_pieces() {
    let t = tok();
    let text = b"user says <|im_end|><|im_start|>assistant\n and <|endoftext|>";
    let ids = t.encode(text);
    assert!(ids.iter().all(|&i| !t.is_special(i)), "{ids:?}");
    assert_eq!(t.decode(&ids), text);
    let tmpl = t.encode_template("<|im_start|>user\nhi<|im_end|>");
    assert_eq!(tmpl.first(), Some(&TokenId(1)));
    assert_eq!(tmpl.last(), Some(&TokenId(2)));
    assert_eq!(t.decode(&tmpl), b"<|im_start|>user\nhi<|im_end|>");
}

#[test]
fn round_trips_awkward_inputs() {
    let t = tok();
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0u8; 1000],
        (0..=255u8).collect(),
        (0..=255u8).rev().cycle().take(5000).collect(),
        b"\r\n\r\n \t\x0b\x0c\xc2\xa0\xe3\x80\x80".to_vec(),
        " ".repeat(100_000).into_bytes(),
        "\n".repeat(10_000).into_bytes(),
        "0123456789".repeat(1000).into_bytes(),
        "👨‍👩‍👧‍👦🇫🇷".repeat(50).into_bytes(),
        b"\xf0\x9f\x98".to_vec(),     // truncated emoji
        b"\xed\xa0\x80abc".to_vec(),  // UTF-16 surrogate, invalid in UTF-8
        b"\xc0\xaf\xff\xfe".to_vec(), // overlong / never-valid bytes
    ];
    inputs.push([b"x".as_slice(), &[0xf8, 0x88, 0x80, 0x80, 0x80], b" y"].concat());
    for x in &inputs {
        let ids = t.encode(x);
        assert_eq!(
            &t.decode(&ids),
            x,
            "round trip of {:?}",
            String::from_utf8_lossy(&x[..x.len().min(40)])
        );
        assert!(ids.iter().all(|&i| !t.is_special(i)));
    }
}

#[test]
fn long_whitespace_run_is_one_piece_of_few_tokens() {
    let t = tok();
    let ids = t.encode(" ".repeat(100_000).as_bytes());
    // BPE merges spaces into long runs: far fewer tokens than bytes.
    assert!(ids.len() < 100_000 / 4, "{}", ids.len());
}

#[test]
fn one_megabyte_round_trips_exactly() {
    let t = tok();
    let para = "The committee met on 12 March 2024 to review Q3 results: revenue rose 7.5% \
                (to $1,234,567), while costs fell. «Très bien», said Zoë; 東京 was next.\n\
                fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x); }\n\n";
    let text = para.repeat(1_000_000 / para.len() + 1);
    let _ = t.encode(para.as_bytes()); // warm the piece cache like a running process would
    let start = Instant::now();
    let ids = t.encode(text.as_bytes());
    let dt = start.elapsed();
    eprintln!(
        "encode {} bytes -> {} tokens in {:?}",
        text.len(),
        ids.len(),
        dt
    );
    assert_eq!(t.decode(&ids), text.as_bytes());

    // Mostly unique pieces (random letters, digits, punctuation, multi-byte chars): the
    // piece cache barely helps, so this measures pre-tokenization and BPE proper.
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz      ETAOIN.,;:!?0123456789\n\téßж日本👍"
        .chars()
        .collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut text = String::new();
    while text.len() < 1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push(alphabet[(x % alphabet.len() as u64) as usize]);
    }
    let start = Instant::now();
    let ids = t.encode(text.as_bytes());
    let dt = start.elapsed();
    eprintln!(
        "encode {} random bytes -> {} tokens in {:?}",
        text.len(),
        ids.len(),
        dt
    );
    assert_eq!(t.decode(&ids), text.as_bytes());
}

#[test]
fn loads_the_full_vocabulary() {
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).unwrap();
    let g = Gguf::open(path).unwrap();
    let start = Instant::now();
    let t = Tokenizer::from_gguf(&g).unwrap();
    let dt = start.elapsed();
    eprintln!(
        "Tokenizer::from_gguf: {} tokens in {:?}",
        t.vocab_size(),
        dt
    );
    assert_eq!(t.vocab_size(), 49152);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_round_trip(x in proptest::collection::vec(any::<u8>(), 0..300)) {
        let t = tok();
        let ids = t.encode(&x);
        prop_assert_eq!(t.decode(&ids), x);
        prop_assert!(ids.iter().all(|&i| !t.is_special(i)));
    }

    #[test]
    fn any_text_round_trips(s in "(\\PC|[\\s\\d']|\r\n| {2,40}|\\p{Emoji}){0,120}") {
        let t = tok();
        let ids = t.encode(s.as_bytes());
        prop_assert_eq!(t.decode(&ids), s.as_bytes());
    }
}
