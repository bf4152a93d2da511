//! Engine speed in llama-bench's terms, for side-by-side figures with `bench/llamacpp/run.sh`:
//! `pp` = one batched prefill of N tokens into an empty cache, `tg` = N single-token steps from
//! an empty cache (llama-bench's pp64 / tg64). Prints the best and median of R repetitions, and
//! a hash over every logit computed so that A/B runs can also be checked for identical output.
//!
//!     cargo run --release -p tenbit-engine --example speed -- [-t THREADS] [-k LEVEL] [-p 64] [-n 64] [-r 5] [MODEL]

use std::time::Instant;

use sha2::{Digest, Sha256};
use tenbit_catalogue as catalogue;
use tenbit_engine::{KernelLevel, Model, Session, SessionOptions, TokenId};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut threads, mut kernel, mut pp, mut tg, mut reps, mut model) = (
        1usize,
        None::<KernelLevel>,
        64usize,
        64usize,
        5usize,
        None::<String>,
    );
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("option value");
        match a.as_str() {
            "-t" => threads = val().parse().unwrap(),
            "-k" => kernel = Some(val().parse().unwrap()),
            "-p" => pp = val().parse().unwrap(),
            "-n" => tg = val().parse().unwrap(),
            "-r" => reps = val().parse().unwrap(),
            _ => model = Some(a),
        }
    }
    let path = match model {
        Some(p) => p.into(),
        None => catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("model"),
    };
    let m = Model::load(path).expect("load");
    let opts = SessionOptions {
        threads,
        kernel,
        max_ctx: 1024,
    };
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let toks: Vec<TokenId> = (0..pp.max(tg))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            TokenId((seed % m.config().n_vocab as u64) as u32)
        })
        .collect();
    let mut h = Sha256::new();
    let mut absorb = |l: &[f32]| l.iter().for_each(|v| h.update(v.to_bits().to_le_bytes()));
    // Warm-up: page in the weights, start the workers.
    let mut s = Session::new(&m, opts.clone()).unwrap();
    s.feed(&toks[..8]).unwrap();
    let level = s.kernel();
    let mut pps = Vec::new();
    let mut tgs = Vec::new();
    for _ in 0..reps {
        if pp > 0 {
            s.reset();
            let t0 = Instant::now();
            let l = s.feed(&toks[..pp]).unwrap();
            pps.push(pp as f64 / t0.elapsed().as_secs_f64());
            absorb(l);
        }
        if tg > 0 {
            s.reset();
            let t0 = Instant::now();
            for t in &toks[..tg] {
                absorb(s.feed(&[*t]).unwrap());
            }
            tgs.push(tg as f64 / t0.elapsed().as_secs_f64());
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let mut line = format!("tenbit threads={threads} kernel={level}:");
    if pp > 0 {
        let (med, lo, hi) = stats(&mut pps);
        line += &format!(" pp{pp} {med:.1} tok/s ({lo:.1}-{hi:.1}),");
    }
    if tg > 0 {
        let (med, lo, hi) = stats(&mut tgs);
        line += &format!(" tg{tg} {med:.1} tok/s ({lo:.1}-{hi:.1}),");
    }
    let digest = h.finalize();
    println!(
        "{line} {reps} reps, logits sha256 {}",
        hex::encode(&digest[..8])
    );
}
