//! Experiment: would a token match model mixed into the LM distribution pay? Logs, per coded
//! token: match length, whether the match-predicted token was right, LM probability (T=1.1) of
//! the actual token and of the predicted one. A script fits mixing weights offline.
//!
//!     cargo run --release -p tenbit-lm --example match_probe -- DIR > probe.tsv

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::Tokenizer;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("model");
    let m = Model::load(path).expect("load");
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(m.gguf()).unwrap();
    let eot = chat.end_of_turn(&tok);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".response.txt"))
        .collect();
    files.sort();
    println!("file\tpos\tmlen\thit\tp_act\tp_pred\tp_top");
    for (fi, f) in files.iter().enumerate() {
        let resp = std::fs::read(f).unwrap();
        let pf = f.to_string_lossy().replace(".response.txt", ".prompt.txt");
        let prompt = std::fs::read(pf).unwrap();
        let mut ids = chat.user_prefix(&tok, None);
        let pstart = ids.len();
        ids.extend(tok.encode(&prompt));
        ids.push(eot);
        ids.extend(chat.assistant_prefix(&tok));
        let ctx = ids.len();
        ids.extend(tok.encode(&resp));
        ids.push(eot);
        let raw: Vec<u32> = ids.iter().map(|t| t.index() as u32).collect();
        let mut s = Session::new(&m, SessionOptions::default()).unwrap();
        s.feed_all(&ids[..ids.len() - 1], &mut |i, l| {
            if i + 1 < ctx {
                return;
            }
            let tgt = raw[i + 1] as usize;
            // longest match of the context ending at i against earlier text (from the prompt on)
            let (mut best_len, mut pred) = (0usize, u32::MAX);
            for j in (pstart..i).rev() {
                let mut k = 0;
                while k < 32 && j >= k + pstart && raw[j - k] == raw[i - k] {
                    k += 1;
                }
                if k > best_len {
                    best_len = k;
                    pred = raw[j + 1];
                }
            }
            let t = 1.1f64;
            let mx = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let z: f64 = l.iter().map(|&v| ((v as f64 - mx) / t).exp()).sum();
            let p = |x: usize| (((l[x] as f64 - mx) / t).exp()) / z;
            let pp = if pred == u32::MAX {
                0.0
            } else {
                p(pred as usize)
            };
            println!(
                "{fi}\t{}\t{best_len}\t{}\t{:.6e}\t{:.6e}\t{:.6e}",
                i + 1 - ctx,
                (pred as usize == tgt) as u8,
                p(tgt),
                pp,
                1.0 / z
            );
        })
        .unwrap();
        eprintln!("{fi} {}", f.display());
    }
}
