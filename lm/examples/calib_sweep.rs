//! Experiment: code length of the LLM corpus under different logit temperatures and system
//! prompts (float64 softmax; the codec's integer mapping tracks it within 0.1%).
//!
//!     cargo run --release -p tenbit-lm --example calib_sweep -- DIR [SYSTEM]...

use tenbit_catalogue as catalogue;
use tenbit_engine::{Model, Session, SessionOptions};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::Tokenizer;

const TEMPS: [f64; 11] = [0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4];
/// Buckets of the model's top probability at T = 1 (for a confidence-dependent temperature).
const BUCKETS: [f64; 8] = [0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 0.995, 1.01];

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
        // [split][bucket][temp] bits; split 0 = odd-numbered files, 1 = even
        let mut bk = [[[0f64; TEMPS.len()]; BUCKETS.len()]; 2];
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
            let split = fi % 2;
            s.feed_all(&ids[..ids.len() - 1], &mut |i, l| {
                if i + 1 < ctx {
                    return;
                }
                let tgt = ids[i + 1].index();
                let mx = l.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let z1: f64 = l.iter().map(|&v| (v as f64 - mx).exp()).sum();
                let b = BUCKETS.iter().position(|&u| 1.0 / z1 < u).unwrap();
                for (k, &t) in TEMPS.iter().enumerate() {
                    let z: f64 = l.iter().map(|&v| ((v as f64 - mx) / t).exp()).sum();
                    let lp = (l[tgt] as f64 - mx) / t - z.ln();
                    fb[k] += -lp / std::f64::consts::LN_2;
                    bk[split][b][k] += -lp / std::f64::consts::LN_2;
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
        // Per-bucket temperature fitted on one split, scored on the other.
        for (fit, score) in [(0usize, 1usize), (1, 0)] {
            let t1 = TEMPS.iter().position(|&t| t == 1.0).unwrap();
            let t11 = TEMPS.iter().position(|&t| t == 1.1).unwrap();
            let (mut base, mut glob, mut adapt) = (0.0, 0.0, 0.0);
            let mut chosen = Vec::new();
            // b indexes the fitting and the scoring split of bk alike.
            #[allow(clippy::needless_range_loop)]
            for b in 0..BUCKETS.len() {
                let best = (0..TEMPS.len())
                    .min_by(|&x, &y| bk[fit][b][x].total_cmp(&bk[fit][b][y]))
                    .unwrap();
                chosen.push(TEMPS[best]);
                base += bk[score][b][t1];
                glob += bk[score][b][t11];
                adapt += bk[score][b][best];
            }
            println!(
                "  fit on split {fit}, scored on split {score}: T=1 {:.0} B, T=1.1 {:.0} B, \
                 per-bucket T {:.0} B, temperatures {chosen:?}",
                base / 8.0,
                glob / 8.0,
                adapt / 8.0
            );
        }
    }
}
