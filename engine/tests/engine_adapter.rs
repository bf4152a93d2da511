//! The one law with a LoRA adapter loaded: logits stay bit-identical across kernel levels,
//! thread counts and prefill chunkings; an adapter whose B matrices are zero reproduces the base
//! model's logits exactly; a nonzero one changes them; a file for another model is refused.
//! The adapter touches every target (q k v o gate up down) so every hook in the engine runs.

use tenbit_catalogue as catalogue;
use tenbit_engine::lora::{Adapter, Dtype, LoraPair, Target};
use tenbit_engine::{logits_hash, KernelLevel, Model, Session, SessionOptions, TokenId};

const N: usize = 24;

fn model() -> Model {
    let p = catalogue::ensure(catalogue::default_model(), &mut |_| {})
        .expect("default model (fetched via pip)");
    Model::load(p).expect("load model")
}

fn tokens() -> Vec<TokenId> {
    let mut s = 99u64;
    (0..N)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i == 0 {
                TokenId(1)
            } else {
                TokenId((s % 49152) as u32)
            }
        })
        .collect()
}

/// A deterministic rank-4 adapter on all targets; `zero_b` gives the untrained LoRA start.
fn adapter(m: &Model, zero_b: bool) -> Adapter {
    let dims = m.adapter_dims();
    let mut s = 7u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
    };
    let rank = 4;
    let layers = (0..dims.n_layer)
        .map(|_| {
            Target::ALL
                .iter()
                .map(|t| {
                    let (i, o) = t.dims(&dims);
                    LoraPair {
                        a: (0..rank * i).map(|_| rnd()).collect(),
                        b: (0..o * rank)
                            .map(|_| if zero_b { 0.0 } else { rnd() })
                            .collect(),
                    }
                })
                .collect()
        })
        .collect();
    Adapter::new(
        m.content_hash(),
        rank,
        8.0,
        Dtype::F16,
        Target::ALL.to_vec(),
        dims,
        layers,
    )
    .unwrap()
}

fn opts(kernel: KernelLevel, threads: usize) -> SessionOptions {
    SessionOptions {
        threads,
        oversubscribe: true,
        kernel: Some(kernel),
        max_ctx: 64,
    }
}

fn one_by_one(m: &Model, kernel: KernelLevel, threads: usize) -> Vec<[u8; 32]> {
    let mut s = Session::new(m, opts(kernel, threads)).unwrap();
    tokens()
        .iter()
        .map(|t| logits_hash(s.feed(&[*t]).unwrap()))
        .collect()
}

fn chunked(m: &Model, kernel: KernelLevel, threads: usize, chunk: usize) -> Vec<[u8; 32]> {
    let mut s = Session::new(m, opts(kernel, threads)).unwrap();
    let mut got = Vec::new();
    for c in tokens().chunks(chunk) {
        s.feed_all(c, &mut |_, l| got.push(logits_hash(l))).unwrap();
    }
    got
}

#[test]
fn adapter_logits_are_identical_across_levels_threads_and_chunkings() {
    let mut m = model();
    let base = one_by_one(&m, KernelLevel::detect(), 1);
    m.set_adapter(adapter(&m, false)).unwrap();
    let want = one_by_one(&m, KernelLevel::Scalar, 1);
    let changed = want.iter().zip(&base).filter(|(a, b)| a != b).count();
    assert_eq!(
        changed, N,
        "a nonzero adapter must change every position's logits"
    );
    for level in KernelLevel::available() {
        for threads in [1, 2] {
            if level == KernelLevel::Scalar && threads > 1 {
                continue;
            }
            let got = one_by_one(&m, level, threads);
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(
                first, None,
                "{level}/{threads} threads differs at {first:?}"
            );
        }
    }
    let level = KernelLevel::detect();
    for (chunk, threads) in [(1, 2), (5, 1), (5, 2), (N, 2)] {
        assert_eq!(
            chunked(&m, level, threads, chunk),
            want,
            "prefill in chunks of {chunk} ({threads} threads) differs"
        );
    }
}

#[test]
fn zero_b_adapter_gives_exactly_the_base_logits() {
    let mut m = model();
    let level = KernelLevel::detect();
    let base = chunked(&m, level, 2, 5);
    let zero = adapter(&m, true);
    // Round-trip through the file format: what a receiver loads.
    let zero = Adapter::from_bytes(&zero.to_bytes()).unwrap();
    m.set_adapter(zero).unwrap();
    assert_eq!(chunked(&m, level, 2, 5), base);
    m.clear_adapter();
    assert_eq!(chunked(&m, level, 1, N), base);
}

#[test]
fn adapter_for_another_model_is_refused() {
    let mut m = model();
    let a = adapter(&m, true);
    let mut bytes = a.to_bytes();
    bytes[12] ^= 1; // base-model hash field
    let other = Adapter::from_bytes(&bytes).unwrap();
    let err = m.set_adapter(other).unwrap_err().to_string();
    assert!(err.contains("base model"), "{err}");
    assert!(m.adapter().is_none());
}
