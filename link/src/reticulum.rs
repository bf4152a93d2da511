//! tenbit frames over Reticulum (<https://reticulum.network>), through the reference stack.
//!
//! Why a sidecar: the Rust implementations checked (crates `reticulum` / `reticulum-rs` 0.1.x,
//! `rete`, all pre-1.0 and tokio- or embassy-based) do not claim Link/Resource interoperability
//! with Python `rns`, and pulling an async runtime into `tenbit-edge` would cost more than the
//! whole link layer. So tenbit drives the reference implementation, PyPI `rns` 1.5.7, through a
//! small pinned Python program ([`SIDECAR_PY`], `link/reticulum/tenbit_rns_sidecar.py`) that it
//! starts, talks to over stdin/stdout, and supervises. Reticulum's own encryption, routing,
//! delivery proofs, links and resources are used as they are, never reimplemented.
//!
//! * Listening (`tenbit-edge listen --reticulum`): an IN destination `tenbit.edge` whose
//!   identity is persisted in a file (so its hash survives restarts), announced at start and
//!   periodically; frames arrive as packets (up to the 383-byte encrypted packet MDU) or as
//!   resources over a link (larger ones).
//! * Sending (`tenbit send --reticulum DEST`): resolves DEST, sends each frame, waits for
//!   Reticulum's delivery proof (or the completed resource), and retries a bounded number of
//!   times.
//! * Supervision: if the sidecar dies, the supervisor reports it ([`SidecarEvent::Restarted`])
//!   and starts a new one, up to [`SidecarConfig::max_restarts`] times; after that, or if the
//!   sidecar reports a fatal error (no `rns`, wrong version, no path), it is an error
//!   ([`ReticulumError`]) that the CLIs exit with as a link error (6). Dropping a [`Sidecar`]
//!   closes its stdin and kills it by pid.

use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The sidecar program, written next to the Reticulum configuration at each start.
pub const SIDECAR_PY: &str = include_str!("../reticulum/tenbit_rns_sidecar.py");
/// The `rns` version the sidecar is pinned to.
pub const RNS_VERSION: &str = "1.5.7";
/// Largest frame Reticulum carries in one encrypted packet; larger ones go as a Resource.
pub const PACKET_MDU: usize = 383;

/// Errors of the Reticulum transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReticulumError {
    /// The Python interpreter could not be started.
    #[error("cannot start the Reticulum sidecar with {python} (set TENBIT_RNS_PYTHON, and pip install rns=={RNS_VERSION})")]
    Spawn {
        /// The interpreter tried.
        python: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The sidecar reported a fatal error (its message: e.g. `rns` missing or of another
    /// version, no path to the destination) and exited.
    #[error("Reticulum sidecar: {0}")]
    Sidecar(String),
    /// The sidecar died more often than allowed.
    #[error("the Reticulum sidecar died (exit status {status:?}) after {restarts} restart(s); giving up")]
    Died {
        /// Exit status of the last one (`None`: killed by a signal).
        status: Option<i32>,
        /// Restarts made before giving up.
        restarts: u32,
    },
    /// The sidecar did not come up in time.
    #[error("the Reticulum sidecar was not ready within {0:?}")]
    NotReady(Duration),
    /// A frame was not delivered (no delivery proof) after every try.
    #[error("frame not delivered over Reticulum after {tries} tries: {reason}")]
    NotDelivered {
        /// Tries made.
        tries: u32,
        /// The last reason (from the stack).
        reason: String,
    },
    /// The sidecar's stdio could not be used.
    #[error("talking to the Reticulum sidecar failed")]
    Pipe(#[source] io::Error),
    /// The sidecar sent something outside its protocol.
    #[error("the Reticulum sidecar broke its protocol")]
    Protocol,
}

/// What the sidecar should be.
#[derive(Clone, Debug)]
pub enum Role {
    /// Announce `tenbit.edge` and pass up every frame that arrives.
    Listen,
    /// Send frames to this destination hash (32 hex digits).
    Send {
        /// The destination hash.
        dest: String,
    },
}

/// How to run the sidecar.
#[derive(Clone, Debug)]
pub struct SidecarConfig {
    /// Python interpreter with `rns` installed (default `python3`, or `TENBIT_RNS_PYTHON`).
    pub python: String,
    /// Reticulum configuration directory (as `rnsd --config`).
    pub config_dir: PathBuf,
    /// Identity file (created on first use, then kept: the destination hash stays the same).
    pub identity: PathBuf,
    /// Re-announce period when listening.
    pub announce_interval: Duration,
    /// How long to wait for a path, a link, or a delivery proof.
    pub timeout: Duration,
    /// How often a dead sidecar is restarted before giving up.
    pub max_restarts: u32,
    /// Tries per frame when sending.
    pub tries: u32,
}

impl SidecarConfig {
    /// Defaults for a configuration directory: identity `<dir>/tenbit_identity`, 30 s
    /// announces and timeouts, 3 restarts, 3 tries.
    pub fn new(config_dir: PathBuf) -> Self {
        SidecarConfig {
            python: std::env::var("TENBIT_RNS_PYTHON").unwrap_or_else(|_| "python3".into()),
            identity: config_dir.join("tenbit_identity"),
            config_dir,
            announce_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            max_restarts: 3,
            tries: 3,
        }
    }
}

enum Msg {
    Ready(String),
    Data(Vec<u8>),
    Acked(u64),
    Failed(u64, String),
    Fatal(String),
    Exited,
}

/// What a listening sidecar produced.
#[derive(Debug, PartialEq, Eq)]
pub enum SidecarEvent {
    /// A frame arrived.
    Frame(Vec<u8>),
    /// The sidecar had died (exit status) and was started again.
    Restarted {
        /// Exit status of the one that died (`None`: killed by a signal).
        status: Option<i32>,
    },
}

/// A running, supervised sidecar.
pub struct Sidecar {
    cfg: SidecarConfig,
    role: Role,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Msg>,
    hash: String,
    restarts: u32,
    next_id: u64,
}

fn read_msg(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if n > 16 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized"));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(Some((head[0], body)))
}

fn u64_of(b: &[u8]) -> Option<u64> {
    b.get(..8)
        .map(|x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8])))
}

impl Sidecar {
    /// Starts the sidecar and waits (at most `cfg.timeout`, plus the stack's start-up) until
    /// it is ready: listening and announced, or with a path to the destination.
    pub fn start(cfg: SidecarConfig, role: Role) -> Result<Sidecar, ReticulumError> {
        let (child, stdin, rx) = spawn(&cfg, &role)?;
        let mut s = Sidecar {
            cfg,
            role,
            child,
            stdin: Some(stdin),
            rx,
            hash: String::new(),
            restarts: 0,
            next_id: 0,
        };
        s.wait_ready()?;
        Ok(s)
    }

    /// The destination hash (own when listening, the peer's when sending), hex.
    pub fn destination(&self) -> &str {
        &self.hash
    }

    /// The sidecar's process id (for logs, and for tests that kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    fn wait_ready(&mut self) -> Result<(), ReticulumError> {
        let limit = self.cfg.timeout + Duration::from_secs(15);
        match self.rx.recv_timeout(limit) {
            Ok(Msg::Ready(h)) => {
                self.hash = h;
                Ok(())
            }
            Ok(Msg::Fatal(m)) => Err(ReticulumError::Sidecar(m)),
            Ok(Msg::Exited) => Err(ReticulumError::Died {
                status: self.child.wait().ok().and_then(|s| s.code()),
                restarts: self.restarts,
            }),
            Ok(_) => Err(ReticulumError::Protocol),
            Err(_) => Err(ReticulumError::NotReady(limit)),
        }
    }

    fn restart(&mut self) -> Result<Option<i32>, ReticulumError> {
        let status = self.child.wait().ok().and_then(|s| s.code());
        if self.restarts >= self.cfg.max_restarts {
            return Err(ReticulumError::Died {
                status,
                restarts: self.restarts,
            });
        }
        self.restarts += 1;
        let (child, stdin, rx) = spawn(&self.cfg, &self.role)?;
        self.child = child;
        self.stdin = Some(stdin);
        self.rx = rx;
        self.wait_ready()?;
        Ok(status)
    }

    /// Listening: the next frame, or `Ok(None)` after `timeout` without one. A dead sidecar is
    /// restarted and reported.
    pub fn next_event(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<SidecarEvent>, ReticulumError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Data(d)) => return Ok(Some(SidecarEvent::Frame(d))),
                Ok(Msg::Fatal(m)) => return Err(ReticulumError::Sidecar(m)),
                Ok(Msg::Exited) => {
                    let status = self.restart()?;
                    return Ok(Some(SidecarEvent::Restarted { status }));
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.restart()?;
                    return Ok(Some(SidecarEvent::Restarted { status }));
                }
            }
        }
    }

    /// Sending: delivers one frame (Reticulum's delivery proof, or a completed resource), with
    /// retries, restarting a dead sidecar. `on_restart` is told about each restart.
    pub fn send(
        &mut self,
        frame: &[u8],
        mut on_restart: impl FnMut(Option<i32>),
    ) -> Result<(), ReticulumError> {
        let mut reason = String::from("no answer");
        for _ in 0..self.cfg.tries.max(1) {
            let id = self.next_id;
            self.next_id += 1;
            let mut msg = Vec::with_capacity(13 + frame.len());
            msg.push(b'S');
            msg.extend_from_slice(&((8 + frame.len()) as u32).to_le_bytes());
            msg.extend_from_slice(&id.to_le_bytes());
            msg.extend_from_slice(frame);
            let wrote = match self.stdin.as_mut() {
                Some(w) => w.write_all(&msg).and_then(|_| w.flush()),
                None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            };
            // A failed write means the sidecar is gone: its reader thread reports the exit,
            // and the wait below restarts it.
            let _ = wrote;
            let deadline = Instant::now() + self.cfg.timeout + Duration::from_secs(5);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(Msg::Acked(a)) if a == id => return Ok(()),
                    Ok(Msg::Failed(a, why)) if a == id => {
                        reason = why;
                        break;
                    }
                    Ok(Msg::Fatal(m)) => return Err(ReticulumError::Sidecar(m)),
                    Ok(Msg::Exited) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        on_restart(self.restart()?);
                        reason = "sidecar died".into();
                        break;
                    }
                    Ok(_) => continue,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        reason = "timed out waiting for the delivery proof".into();
                        break;
                    }
                }
            }
        }
        Err(ReticulumError::NotDelivered {
            tries: self.cfg.tries.max(1),
            reason,
        })
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Spawned = (Child, ChildStdin, mpsc::Receiver<Msg>);

fn spawn(cfg: &SidecarConfig, role: &Role) -> Result<Spawned, ReticulumError> {
    std::fs::create_dir_all(&cfg.config_dir).map_err(ReticulumError::Pipe)?;
    let script = cfg.config_dir.join("tenbit_rns_sidecar.py");
    crate::durable::write_atomic(
        &cfg.config_dir,
        "tenbit_rns_sidecar.py",
        SIDECAR_PY.as_bytes(),
    )
    .map_err(ReticulumError::Pipe)?;
    let mut cmd = Command::new(&cfg.python);
    cmd.arg(&script)
        .arg("--config")
        .arg(&cfg.config_dir)
        .arg("--identity")
        .arg(&cfg.identity)
        .arg("--path-timeout")
        .arg(cfg.timeout.as_secs_f64().to_string())
        .arg("--announce-interval")
        .arg(cfg.announce_interval.as_secs_f64().to_string());
    match role {
        Role::Listen => {
            cmd.args(["--mode", "listen"]);
        }
        Role::Send { dest } => {
            cmd.args(["--mode", "send", "--dest", dest]);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| ReticulumError::Spawn {
            python: cfg.python.clone(),
            source,
        })?;
    let stdin = child.stdin.take().ok_or(ReticulumError::Protocol)?;
    let stdout = child.stdout.take().ok_or(ReticulumError::Protocol)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let msg = match read_msg(&mut r) {
                Ok(Some((b'R', p))) => Msg::Ready(String::from_utf8_lossy(&p).into_owned()),
                Ok(Some((b'D', p))) => Msg::Data(p),
                Ok(Some((b'A', p))) => match u64_of(&p) {
                    Some(id) => Msg::Acked(id),
                    None => Msg::Fatal("malformed delivery report".into()),
                },
                Ok(Some((b'F', p))) => match u64_of(&p) {
                    Some(id) => Msg::Failed(id, String::from_utf8_lossy(&p[8..]).into_owned()),
                    None => Msg::Fatal("malformed failure report".into()),
                },
                Ok(Some((b'E', p))) => Msg::Fatal(String::from_utf8_lossy(&p).into_owned()),
                Ok(Some(_)) => Msg::Fatal("unknown message from the sidecar".into()),
                Ok(None) | Err(_) => {
                    let _ = tx.send(Msg::Exited);
                    return;
                }
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    Ok((child, stdin, rx))
}
