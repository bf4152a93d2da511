//! Engine speed in llama-bench's terms, for side-by-side figures (`bench/speed_side_by_side.sh`):
//!
//! * `pp` = one batched prefill of P tokens into an empty cache (llama-bench `-p P`);
//! * `tg` = N single-token steps after a prefill of D tokens (llama-bench `-n N -d D`; D = 0 by
//!   default, like llama-bench);
//! * with `-b B > 1`, also `tgB`: B independent sequences (each after its own D-token prefill)
//!   decoding N steps together in a `Batch`; the figure is the aggregate tokens/s of all B.
//!
//! Prints the median (and range) of R repetitions, tokens per CPU-second of the process (less
//! sensitive to a busy machine than wall time, for one thread), and a hash over every logit
//! computed, hashed outside the timed parts, so A/B runs can be checked for identical output.
//!
//!     cargo run --release -p tenbit-engine --example speed -- [-t THREADS] [-k LEVEL] \
//!         [-p 64] [-n 64] [-d 0] [-b 1] [-r 5] [MODEL FILE | CATALOGUE NAME]

use std::time::Instant;

use sha2::{Digest, Sha256};
use tenbit_catalogue as catalogue;
use tenbit_engine::{Batch, KernelLevel, Model, Session, SessionOptions, TokenId};

/// CPU seconds used so far by this process (user + system), from /proc; `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Timer {
    wall: Instant,
    cpu: Option<f64>,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    /// (tokens per wall second, tokens per CPU second) for `n` tokens.
    fn rates(&self, n: usize) -> (f64, f64) {
        let wall = n as f64 / self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, cpu_seconds()) {
            (Some(a), Some(b)) if b > a => n as f64 / (b - a),
            _ => f64::NAN,
        };
        (wall, cpu)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut threads, mut kernel, mut pp, mut tg, mut depth, mut batch, mut reps, mut model) = (
        1usize,
        None::<KernelLevel>,
        64usize,
        64usize,
        0usize,
        1usize,
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
            "-d" => depth = val().parse().unwrap(),
            "-b" => batch = val().parse().unwrap(),
            "-r" => reps = val().parse().unwrap(),
            _ => model = Some(a),
        }
    }
    let path = match model {
        // A file, or a catalogue name (`qwen2.5-coder-0.5b`), fetched like `tenbit models fetch`.
        Some(p) => catalogue::resolve(&p).expect("model"),
        None => catalogue::ensure(catalogue::default_model(), &mut |_| {}).expect("model"),
    };
    let m = Model::load(path).expect("load");
    let opts = SessionOptions {
        threads,
        kernel,
        max_ctx: (pp.max(depth + tg) + 8).max(1024),
        ..SessionOptions::default()
    };
    let nv = m.config().n_vocab as u64;
    let walk = |seed: u64, n: usize| -> Vec<TokenId> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                TokenId((s % nv) as u32)
            })
            .collect()
    };
    let toks = walk(0x2545_F491_4F6C_DD1D, pp.max(depth + tg));
    let mut h = Sha256::new();
    let mut absorb = |l: &[f32]| l.iter().for_each(|v| h.update(v.to_bits().to_le_bytes()));
    // Warm-up: page in the weights, start the workers.
    let mut s = Session::new(&m, opts.clone()).unwrap();
    s.feed(&toks[..8]).unwrap();
    let level = s.kernel();
    let (mut pps, mut tgs, mut tbs) = (Vec::new(), Vec::new(), Vec::new());
    let mut kept: Vec<Vec<f32>> = Vec::new();
    for _ in 0..reps {
        if pp > 0 {
            s.reset();
            let t = Timer::start();
            let l = s.feed(&toks[..pp]).unwrap().to_vec();
            pps.push(t.rates(pp));
            absorb(&l);
        }
        if tg > 0 {
            s.reset();
            s.feed(&toks[..depth]).unwrap();
            let t = Timer::start();
            for tok in &toks[depth..depth + tg] {
                kept.push(s.feed(&[*tok]).unwrap().to_vec());
            }
            tgs.push(t.rates(tg));
            kept.drain(..).for_each(|l| absorb(&l));
        }
        if tg > 0 && batch > 1 {
            let mut b = Batch::new(&m, opts.clone(), batch).unwrap();
            let seqs: Vec<_> = (0..batch).map(|_| b.add().unwrap()).collect();
            let streams: Vec<Vec<TokenId>> = (0..batch)
                .map(|i| walk(0x9E37_79B9 + i as u64, depth + tg))
                .collect();
            if depth > 0 {
                let feeds: Vec<_> = seqs
                    .iter()
                    .zip(&streams)
                    .map(|(id, st)| (*id, &st[..depth]))
                    .collect();
                b.step(&feeds).unwrap();
            }
            let t = Timer::start();
            for k in depth..depth + tg {
                let feeds: Vec<_> = seqs
                    .iter()
                    .zip(&streams)
                    .map(|(id, st)| (*id, &st[k..k + 1]))
                    .collect();
                let r = b.step(&feeds).unwrap();
                assert!(r.iter().all(|r| r.is_ok()));
                kept.extend(seqs.iter().map(|id| b.logits(*id).unwrap().to_vec()));
            }
            tbs.push(t.rates(batch * tg));
            kept.drain(..).for_each(|l| absorb(&l));
        }
    }
    let stats = |v: &mut Vec<(f64, f64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut c: Vec<f64> = v.iter().map(|x| x.1).collect();
        c.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2].0, v[0].0, v[v.len() - 1].0, c[c.len() / 2])
    };
    let mut line = format!("tenbit threads={threads} kernel={level}:");
    let at = if depth > 0 {
        format!("@d{depth}")
    } else {
        String::new()
    };
    for (name, v) in [
        (format!("pp{pp}"), &mut pps),
        (format!("tg{tg}{at}"), &mut tgs),
        (format!("tg{tg}{at}x{batch}"), &mut tbs),
    ] {
        if !v.is_empty() {
            let (med, lo, hi, cpu) = stats(v);
            line += &format!(" {name} {med:.1} tok/s ({lo:.1}-{hi:.1}; {cpu:.1}/cpu-s),");
        }
    }
    let digest = h.finalize();
    println!(
        "{line} {reps} reps, logits sha256 {}",
        hex::encode(&digest[..8])
    );
}
