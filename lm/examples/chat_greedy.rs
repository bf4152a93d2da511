//! Greedy chat answer from a model, with decode speed on stderr.
//!
//!     cargo run --release -p tenbit-lm --example chat_greedy -- MODEL.gguf "PROMPT" [N] [THREADS]

use std::time::Instant;

use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::generate::Conversation;
use tenbit_lm::tokenizer::Tokenizer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m = Model::load(&args[1]).expect("load");
    let n: usize = args.get(3).map_or(64, |s| s.parse().unwrap());
    let threads: usize = args.get(4).map_or(0, |s| s.parse().unwrap());
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(m.gguf()).unwrap();
    let prompt = chat.render(&tok, &[("user", &args[2])]);
    let sess = Session::new(
        &m,
        SessionOptions {
            threads,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    let mut conv = Conversation::new(sess);
    let t0 = Instant::now();
    conv.sync(&prompt).unwrap();
    let t_prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let out = conv.greedy(&prompt, &[chat.end_of_turn(&tok)], n).unwrap();
    let t_gen = t1.elapsed().as_secs_f64();
    println!("{}", String::from_utf8_lossy(&tok.decode(&out)));
    eprintln!(
        "prompt {} tokens prefill {:.2} s ({:.1} tok/s); generated {} tokens in {:.2} s ({:.2} tok/s)",
        prompt.len(),
        t_prefill,
        prompt.len() as f64 / t_prefill,
        out.len(),
        t_gen,
        out.len() as f64 / t_gen
    );
}
