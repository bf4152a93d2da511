//! Experiment: does a fixed example exchange placed before the prompt (known to both ends, so
//! free on the wire) lower the code length of LLM responses? Prints bits per scored file with
//! and without the primer; primer files are not scored.
//!
//!     cargo run --release -p tenbit-lm --example prime_probe -- DIR STEM...

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::Tokenizer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let primers: Vec<String> = args[2..].to_vec();
    let path = catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("model");
    let m = Model::load(path).expect("load");
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(m.gguf()).unwrap();
    let eot = chat.end_of_turn(&tok);
    let read = |stem: &str, kind: &str| {
        String::from_utf8(std::fs::read(dir.join(format!("{stem}.{kind}.txt"))).unwrap()).unwrap()
    };
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter_map(|n| n.strip_suffix(".response.txt").map(str::to_owned))
        .filter(|s| !primers.contains(s))
        .collect();
    stems.sort();
    let pairs: Vec<(String, String)> = primers
        .iter()
        .map(|p| (read(p, "prompt"), read(p, "response")))
        .collect();
    let mut s = Session::new(&m, SessionOptions::default()).unwrap();
    let (mut tb, mut tp) = (0f64, 0f64);
    for stem in &stems {
        let prompt = read(stem, "prompt");
        let resp = std::fs::read(dir.join(format!("{stem}.response.txt"))).unwrap();
        let mut bits = [0f64; 2];
        for (v, use_primer) in [false, true].into_iter().enumerate() {
            let mut msgs: Vec<(&str, &str)> = Vec::new();
            if use_primer {
                for (p, r) in &pairs {
                    msgs.push(("user", p));
                    msgs.push(("assistant", r));
                }
            }
            msgs.push(("user", &prompt));
            let mut ids = chat.render(&tok, &msgs);
            let ctx = ids.len();
            ids.extend(tok.encode(resp.as_slice()));
            ids.push(eot);
            s.reset();
            let mut b = 0f64;
            s.feed_all(&ids[..ids.len() - 1], &mut |i, l| {
                if i + 1 < ctx {
                    return;
                }
                let tgt = ids[i + 1].index();
                let t = 1.1f64;
                let mx = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let z: f64 = l.iter().map(|&x| ((x as f64 - mx) / t).exp()).sum();
                b += -(((l[tgt] as f64 - mx) / t) - z.ln()) / std::f64::consts::LN_2;
            })
            .unwrap();
            bits[v] = b;
        }
        tb += bits[0];
        tp += bits[1];
        println!(
            "{stem}\t{:.0}\t{:.0}\t{:+.1}%",
            bits[0] / 8.0,
            bits[1] / 8.0,
            100.0 * (bits[1] / bits[0] - 1.0)
        );
    }
    println!(
        "TOTAL\t{:.0}\t{:.0}\t{:+.2}%",
        tb / 8.0,
        tp / 8.0,
        100.0 * (tp / tb - 1.0)
    );
}
