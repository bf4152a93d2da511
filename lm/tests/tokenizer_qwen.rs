//! Qwen2.5 tokenizer (`qwen2` pre-tokenizer, 151k vocabulary) and ChatML template against the
//! HF `tokenizers` / jinja2 reference (bench/tokenizer_ref/make_fixture.py).
//!
//! The Qwen2.5-Coder-0.5B GGUF is 491 MB, so this test is `#[ignore]`d in the default run (cargo
//! reports it as ignored) and fetches the model through the catalogue when run with --ignored.

use std::time::Instant;

use tenbit_catalogue as catalogue;
use tenbit_engine::gguf::Gguf;
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::{PreTokenizer, Tokenizer};
use tenbit_wire::TokenId;

fn load() -> Option<(Tokenizer, ChatTemplate)> {
    let spec = catalogue::find("qwen2.5-coder-0.5b").unwrap();
    let path = catalogue::ensure(spec, &mut |_| {}).expect("fetch Qwen2.5-Coder-0.5B");
    let g = Gguf::open(path).unwrap();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    eprintln!("qwen tokenizer loaded in {:?}", t0.elapsed());
    Some((tok, ChatTemplate::from_gguf(&g).unwrap()))
}

#[test]
#[ignore = "needs the 491 MB Qwen2.5-Coder-0.5B GGUF (fetched on demand): cargo test -- --ignored"]
fn qwen25_matches_reference_tokenization_and_chat() {
    let Some((tok, chat)) = load() else { return };
    assert_eq!(tok.pre_tokenizer(), PreTokenizer::Qwen2);
    assert_eq!(tok.token_id("<|im_end|>"), Some(tok.eos()));
    assert_eq!(
        chat.default_system(),
        Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    );

    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/qwen25_tokens.json")).unwrap();
    assert_eq!(v["pre"], "qwen2");
    let mut bad = Vec::new();
    let cases = v["cases"].as_array().unwrap();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        let got: Vec<u32> = tok
            .encode(text.as_bytes())
            .into_iter()
            .filter(|&t| tok.virtual_byte(t).is_none())
            .map(|t| t.0)
            .collect();
        if got != want {
            bad.push(format!("{text:?}\n  ours: {got:?}\n  ref:  {want:?}"));
        }
        assert_eq!(tok.decode(&tok.encode(text.as_bytes())), text.as_bytes());
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );

    for c in v["chats"].as_array().unwrap() {
        let msgs: Vec<(&str, &str)> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        let want: Vec<TokenId> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| TokenId(i.as_u64().unwrap() as u32))
            .collect();
        let ids = chat.render(&tok, &msgs);
        assert_eq!(tok.decode(&ids), c["text"].as_str().unwrap().as_bytes());
        assert_eq!(ids, want, "{msgs:?}");
    }
}
