//! Experiment: code length of the LLM corpus under different logit temperatures and system
//! prompts (float64 softmax; the codec's integer mapping tracks it within 0.1%).
//!
//!     cargo run --release -p tenbit-models --example calib_sweep -- DIR [SYSTEM]...

use tenbit_models::catalogue;
use tenbit_models::chat::ChatTemplate;
use tenbit_models::engine::{Model, Session, SessionOptions};
use tenbit_models::tokenizer::Tokenizer;

const TEMPS: [f64; 9] = [0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let systems: Vec<Option<String>> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|s| if s == "-" { None } else { Some(s.clone()) })
            .collect()
    } else {
        vec![None]
    };
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
    for sys in &systems {
        let mut bits = [0f64; TEMPS.len()];
        let mut ntok = 0usize;
        let mut per_file_bytes = vec![[0f64; TEMPS.len()]; files.len()];
        for (fi, f) in files.iter().enumerate() {
            let resp = std::fs::read(f).unwrap();
            let pf = f.to_string_lossy().replace(".response.txt", ".prompt.txt");
            let prompt = std::fs::read(pf).unwrap();
            let mut ids = chat.user_prefix(&tok, sys.as_deref());
            ids.extend(tok.encode(&prompt));
            ids.push(eot);
            ids.extend(chat.assistant_prefix(&tok));
            let ctx = ids.len();
            ids.extend(tok.encode(&resp));
            ids.push(eot);
            let mut s = Session::new(&m, SessionOptions::default()).unwrap();
            let mut fb = [0f64; TEMPS.len()];
            s.feed_all(&ids[..ids.len() - 1], &mut |i, l| {
                if i + 1 < ctx {
                    return;
                }
                let tgt = ids[i + 1].index();
                let mx = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
                for (k, &t) in TEMPS.iter().enumerate() {
                    let z: f64 = l.iter().map(|&v| ((v as f64 - mx) / t).exp()).sum();
                    let lp = (l[tgt] as f64 - mx) / t - z.ln();
                    fb[k] += -lp / std::f64::consts::LN_2;
                }
            })
            .unwrap();
            ntok += ids.len() - ctx;
            for k in 0..TEMPS.len() {
                bits[k] += fb[k];
                per_file_bytes[fi][k] = (fb[k] / 8.0).ceil() + 6.0;
            }
        }
        println!(
            "system: {:?}  tokens {ntok}",
            sys.as_deref().unwrap_or("<default>")
        );
        for (k, &t) in TEMPS.iter().enumerate() {
            let total: f64 = per_file_bytes.iter().map(|r| r[k]).sum();
            println!(
                "  T={t:.2}  {:.1} bytes payload  {:.3} bits/tok  est frames {total:.0} B",
                bits[k] / 8.0,
                bits[k] / ntok as f64
            );
        }
    }
}
