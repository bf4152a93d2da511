//! Print the engine's view of a text as JSON for `bench/reference/compare.py`: the token ids
//! (chat context included), the per-token negative log-likelihood of each next token, the
//! top-1 prediction at every position, and a 32-token greedy continuation.
//!
//!     cargo run --release -p tenbit-lm --example reference_check -- FILE [MODEL]

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::generate::{argmax, Conversation};
use tenbit_lm::tokenizer::Tokenizer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read(&args[1]).expect("text file");
    let path = match args.get(2) {
        Some(p) => p.into(),
        None => catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("model"),
    };
    let m = Model::load(path).expect("load");
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(m.gguf()).unwrap();
    let mut ids = chat.bare_assistant_prefix(&tok, None);
    let ctx = ids.len();
    ids.extend(tok.encode(&text));
    let mut s = Session::new(&m, SessionOptions::default()).unwrap();
    let mut nll = Vec::new();
    let mut top1 = Vec::new();
    s.feed_all(&ids, &mut |i, l| {
        let mx = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = l.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln() + mx;
        if i + 1 < ids.len() {
            nll.push(lse - l[ids[i + 1].index()] as f64);
        }
        top1.push(argmax(l).0);
    })
    .unwrap();
    let mut conv = Conversation::new(Session::new(&m, SessionOptions::default()).unwrap());
    let greedy = conv.greedy(&ids[..ctx], &[], 32).unwrap();
    let j = |v: Vec<String>| v.join(",");
    println!(
        "{{\"ids\":[{}],\"context\":{ctx},\"nll\":[{}],\"top1\":[{}],\"greedy_from_context\":[{}]}}",
        j(ids.iter().map(|t| t.0.to_string()).collect()),
        j(nll.iter().map(|v| format!("{v:.6}")).collect()),
        j(top1.iter().map(|v| v.to_string()).collect()),
        j(greedy.iter().map(|t| t.0.to_string()).collect()),
    );
}
