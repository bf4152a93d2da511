//! Running model-written Python under limits.
//!
//! HumanEval is graded by executing what a model wrote, which may loop forever, eat memory,
//! fork, or write files. Each program runs in a fresh temporary directory (its cwd and HOME),
//! with an empty environment, no stdin, Python's isolated mode (`-I`: no user site, no
//! `PYTHON*` variables, no cwd on `sys.path`), in its own process group, under `setrlimit`
//! limits (CPU seconds, address space, file size, open files, no core dumps, few processes).
//! A wall-clock timeout kills the whole group with SIGKILL, so a program that spawned children
//! leaves nothing behind. The program gets a network namespace of its own (no interfaces but
//! a down loopback), as root directly or unprivileged inside a new user namespace. Where the
//! system allows neither (some containers), programs run with the network and a warning is
//! logged once ([`network_isolated`] tells which). This is a grading sandbox, not a security
//! boundary: the file system is the caller's.

use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Limits of one sandboxed run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit; the process group is killed after it.
    pub timeout: Duration,
    /// RLIMIT_AS in bytes.
    pub memory_bytes: u64,
    /// RLIMIT_FSIZE in bytes (largest file the program may write).
    pub file_bytes: u64,
    /// RLIMIT_NPROC (not enforced for root, which bypasses it).
    pub processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            file_bytes: 16 << 20,
            processes: 256,
        }
    }
}

/// How a sandboxed program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0: every assertion held.
    Passed,
    /// Non-zero exit or killed by a signal (an assertion, an exception, a resource limit).
    Failed {
        /// The exit status, when the program exited.
        code: Option<i32>,
        /// The signal that killed it, when one did (SIGKILL/SIGXCPU often mean a limit).
        signal: Option<i32>,
        /// Last lines of stderr (the traceback), for the report.
        stderr_tail: String,
    },
    /// Still running at the wall-clock limit; the process group was killed.
    TimedOut,
}

impl Outcome {
    /// Whether the program passed (the only outcome graded as correct).
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
    /// One line for reports.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Passed => "passed".into(),
            Outcome::TimedOut => "timed out".into(),
            Outcome::Failed {
                code,
                signal,
                stderr_tail,
            } => {
                let last = stderr_tail.lines().last().unwrap_or("").trim();
                match (code, signal) {
                    (_, Some(s)) => format!("killed by signal {s}: {last}"),
                    (Some(c), _) => format!("exit {c}: {last}"),
                    _ => format!("failed: {last}"),
                }
            }
        }
    }
}

/// Why a program could not be run at all (as opposed to running and failing, an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No usable interpreter: install `python3` or point `TENBIT_PYTHON` at one.
    #[error("no Python 3 interpreter found (tried {0}); install python3 or set TENBIT_PYTHON")]
    NoPython(String),
    /// Creating the run directory, writing the program, or spawning it failed.
    #[error("sandbox {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Absolute path of the Python interpreter. Resolved once with the normal environment
/// (`$TENBIT_PYTHON`, else `python3` on PATH), because version-manager shims need theirs; the
/// sandboxed run then starts the real binary with an empty environment.
pub fn python() -> Result<PathBuf, SandboxError> {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    P.get_or_init(|| {
        let cand = std::env::var("TENBIT_PYTHON")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".into());
        let out = Command::new(&cand)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if p.is_empty() {
                    Err(cand)
                } else {
                    Ok(PathBuf::from(p))
                }
            }
            _ => Err(cand),
        }
    })
    .clone()
    .map_err(SandboxError::NoPython)
}

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, SandboxError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "tenbit-sandbox-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&p).map_err(io(&p))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tail(path: &Path, max: usize) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    let start = buf.len().saturating_sub(max);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// A network namespace of its own for the calling (forked, single-threaded) process: as root
/// directly, else inside a new user namespace. Only syscalls: safe between fork and exec.
fn unshare_network() -> bool {
    // SAFETY: unshare takes flags only and changes nothing but this process's namespaces.
    unsafe {
        libc::unshare(libc::CLONE_NEWNET) == 0
            || libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) == 0
    }
}

/// Whether sandboxed programs get no network on this system (probed once, by starting a
/// process that unshares its network namespace).
pub fn network_isolated() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exit 0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: as in run_python, only the unshare syscalls run between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if unshare_network() {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let ok = cmd.status().is_ok_and(|s| s.success());
        if !ok {
            tracing::warn!(
                "this system allows no network namespace (unshare): sandboxed test programs \
                 will run with the network"
            );
        }
        ok
    })
}

/// Run `program` with `python3 -I -B` under `limits` and report how it ended.
pub fn run_python(program: &str, limits: &Limits) -> Result<Outcome, SandboxError> {
    let py = python()?;
    let dir = TempDir::new()?;
    let script = dir.0.join("program.py");
    fs::write(&script, program).map_err(io(&script))?;
    let out_path = dir.0.join("stdout.txt");
    let err_path = dir.0.join("stderr.txt");
    let stdout = fs::File::create(&out_path).map_err(io(&out_path))?;
    let stderr = fs::File::create(&err_path).map_err(io(&err_path))?;

    let cpu = limits.timeout.as_secs() + 1;
    let (mem, fsize, nproc) = (limits.memory_bytes, limits.file_bytes, limits.processes);
    let mut cmd = Command::new(&py);
    cmd.args(["-I", "-B"])
        .arg(&script)
        .current_dir(&dir.0)
        .env_clear()
        .env("HOME", &dir.0)
        .env("TMPDIR", &dir.0)
        .env("LANG", "C.UTF-8")
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let isolate = network_isolated();
    // SAFETY: the closure runs between fork and exec and only calls unshare and setrlimit,
    // plain syscalls that are async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            if isolate && !unshare_network() {
                return Err(std::io::Error::last_os_error());
            }
            let set = |res, v: u64| {
                let r = libc::rlimit {
                    rlim_cur: v as libc::rlim_t,
                    rlim_max: v as libc::rlim_t,
                };
                libc::setrlimit(res, &r);
            };
            set(libc::RLIMIT_CPU, cpu);
            set(libc::RLIMIT_AS, mem);
            set(libc::RLIMIT_FSIZE, fsize);
            set(libc::RLIMIT_NOFILE, 64);
            set(libc::RLIMIT_CORE, 0);
            set(libc::RLIMIT_NPROC, nproc);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io(&py))?;
    let pgid = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: plain syscall; a negative pid addresses the group we created above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    };
    let deadline = Instant::now() + limits.timeout;
    let status = loop {
        match child.try_wait().map_err(io(&py))? {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // Whatever happened, nothing the program started may outlive it.
    kill_group();
    let Some(status) = status else {
        let _ = child.wait();
        return Ok(Outcome::TimedOut);
    };
    if status.success() {
        return Ok(Outcome::Passed);
    }
    Ok(Outcome::Failed {
        code: status.code(),
        signal: status.signal(),
        stderr_tail: tail(&err_path, 1500),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Limits {
        Limits {
            timeout: Duration::from_secs(3),
            ..Limits::default()
        }
    }

    #[test]
    fn passing_and_failing_programs_are_told_apart() {
        let ok = run_python("def f(x):\n    return x + 1\nassert f(1) == 2\n", &quick()).unwrap();
        assert_eq!(ok, Outcome::Passed);
        let bad = run_python(
            "def f(x):\n    return x\nassert f(1) == 2, 'wrong'\n",
            &quick(),
        )
        .unwrap();
        match &bad {
            Outcome::Failed {
                code, stderr_tail, ..
            } => {
                assert_eq!(*code, Some(1));
                assert!(
                    stderr_tail.contains("AssertionError: wrong"),
                    "{stderr_tail}"
                );
            }
            other => panic!("{other:?}"),
        }
        let syntax = run_python("def f(:\n", &quick()).unwrap();
        assert!(!syntax.passed());
    }

    /// The program sees no network: no interface but loopback, and that one is down, so even a
    /// server on this machine's 127.0.0.1 cannot be reached.
    #[test]
    fn the_program_has_no_network() {
        if !network_isolated() {
            // Not a silent skip: the probe's answer is what the sandbox acts on, and it says so.
            eprintln!("NOTE: no network namespaces here; sandboxed programs keep the network");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let program = format!(
            "import socket\n\
             try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n\
             except OSError:\n    raise SystemExit(0)\n\
             raise SystemExit('reached the host network')\n"
        );
        assert_eq!(run_python(&program, &quick()).unwrap(), Outcome::Passed);
        // The same probe outside the sandbox does connect (so the test can fail).
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn an_endless_loop_is_killed_and_fails() {
        let o = run_python("while True:\n    pass\n", &quick()).unwrap();
        assert_eq!(o, Outcome::TimedOut);
        assert!(!o.passed());
    }

    #[test]
    fn children_die_with_the_group() {
        // The program forks a sleeper that would outlive it, records the sleeper's pid in a
        // file outside its own (deleted) directory, then hangs until the timeout.
        let marker = std::env::temp_dir().join(format!(
            "tenbit-sandbox-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_file(&marker);
        let prog = format!(
            "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(600)\n    os._exit(0)\n\
             open({m:?}, 'w').write(str(pid))\nwhile True:\n    pass\n",
            m = marker.to_str().unwrap()
        );
        let o = run_python(&prog, &quick()).unwrap();
        assert_eq!(o, Outcome::TimedOut);
        let child: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        let _ = fs::remove_file(&marker);
        // SIGKILL is delivered asynchronously: give the kernel a moment (bounded), then the
        // sleeper must be gone or a zombie awaiting its reaper.
        let alive = || {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
            !stat.is_empty() && state != Some('Z')
        };
        for _ in 0..500 {
            if !alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "forked child {child} survived the group kill");
    }

    #[test]
    fn memory_limit_fails_instead_of_swapping() {
        let o = run_python("x = bytearray(4 << 30)\n", &quick()).unwrap();
        assert!(
            matches!(&o, Outcome::Failed { stderr_tail, .. } if stderr_tail.contains("MemoryError")),
            "{o:?}"
        );
    }
}
