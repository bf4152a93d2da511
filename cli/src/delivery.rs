//! How `tenbit send` and `tenbit-edge listen` move frames: straight over the link, through a
//! crash-safe spool (`--spool`, `--daemon`; receiver `--state`), or over Reticulum
//! (`--reticulum`). The commands parse their own flags and call [`send`] / [`listen`]; the
//! mechanisms live in `tenbit_link::{io, durable, reticulum}`.
//!
//! Exactly-once across crashes (spool + `--state`): the sender writes each frame to the spool
//! (fsync, atomic rename) before sending and deletes it only when acknowledged; the listener
//! holds the final ACK until the message file `<stream>-<seq>.txt` is written (atomically) and
//! recorded in its persisted window, and only acknowledges duplicates. Kill either side at any
//! point and restart it: every message ends up written once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tenbit_link::durable::{self, Admit, Outbox, SeenWindow};
use tenbit_link::io::{Event, Receiver, Sender};
use tenbit_link::reticulum::{Role, Sidecar, SidecarConfig, SidecarEvent};
use tenbit_link::{ArqError, LinkError};

use crate::link::{fmt_airtime, LinkArgs};

/// Sender-side spool options.
#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    /// Crash-safe outbox: write the frame to DIR (fsync, atomic rename) before sending, delete
    /// it once acknowledged, and first resend whatever an earlier run left unacknowledged.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Keep running: send the spool, then wait for new entries (`tenbit send --spool DIR
    /// --queue FILE` adds them), retrying unacknowledged ones, until killed.
    #[arg(long, requires = "spool")]
    pub daemon: bool,
    /// Only add the frame to the spool (for a running --daemon); send nothing.
    #[arg(long, requires = "spool")]
    pub queue: bool,
}

/// Reticulum options (`--reticulum`).
#[derive(Debug, Clone, Args)]
pub struct RnsArgs {
    /// Reticulum configuration directory (as `rnsd --config`; default ~/.reticulum). The
    /// identity of a listener is kept there (tenbit_identity).
    #[arg(long, value_name = "DIR", env = "TENBIT_RNS_CONFIG")]
    pub rns_config: Option<PathBuf>,
    /// Python interpreter with rns 1.5.7 installed (default python3; tests/setup-rns.sh makes
    /// one). Also TENBIT_RNS_PYTHON.
    #[arg(long, value_name = "PYTHON")]
    pub rns_python: Option<String>,
    /// Restarts of a dead Reticulum sidecar before giving up with the link exit code.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rns_restarts: u32,
    /// Seconds to wait for a path, a link or a delivery proof.
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub rns_timeout: u64,
}

impl RnsArgs {
    fn config(&self) -> SidecarConfig {
        let dir = self.rns_config.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".reticulum")
        });
        let mut c = SidecarConfig::new(dir);
        if let Some(p) = &self.rns_python {
            c.python = p.clone();
        }
        c.max_restarts = self.rns_restarts;
        c.timeout = Duration::from_secs(self.rns_timeout.max(1));
        c
    }
}

fn report_sent(r: &tenbit_link::io::SendReport) {
    eprintln!(
        "sent: {} packets ({} retransmitted), {} bytes on air, airtime {}, {:.1} s",
        r.packets_sent,
        r.retransmissions,
        r.on_air_bytes,
        fmt_airtime(r.airtime_us),
        r.elapsed_ms as f64 / 1000.0
    );
}

/// `tenbit send`'s transport: `frame` (absent with `--daemon` and nothing to add) over the link,
/// through the spool, or to a Reticulum destination.
pub fn send(
    link: &LinkArgs,
    spool: &SpoolArgs,
    rns: &RnsArgs,
    reticulum: Option<&str>,
    frame: Option<Vec<u8>>,
) -> Result<()> {
    if let Some(dest) = reticulum {
        let frame = frame.context("nothing to send")?;
        let mut s = Sidecar::start(
            rns.config(),
            Role::Send {
                dest: dest.to_string(),
            },
        )
        .map_err(LinkError::from)?;
        tracing::info!(pid = s.pid(), dest, "reticulum sidecar ready");
        s.send(&frame, |status| {
            eprintln!("reticulum sidecar died (status {status:?}); restarted it")
        })
        .map_err(LinkError::from)
        .with_context(|| format!("sending to Reticulum destination {dest} failed"))?;
        eprintln!("delivered over Reticulum to {dest} ({} bytes)", frame.len());
        return Ok(());
    }
    let Some(dir) = &spool.spool else {
        let frame = frame.context("nothing to send")?;
        let cfg = link.config()?;
        let mut port = link.open()?;
        let report = tenbit_link::io::send_message(&mut port, &cfg, &frame, |_| {})
            .with_context(|| format!("sending over {} failed", link.port_name()))?;
        report_sent(&report);
        return Ok(());
    };
    let mut outbox = Outbox::open(dir).map_err(LinkError::from)?;
    if let Some(f) = frame {
        let e = outbox.enqueue(&f).map_err(LinkError::from)?;
        eprintln!("spooled as {:08x}-{} in {}", e.stream, e.seq, dir.display());
    }
    if spool.queue {
        return Ok(());
    }
    let cfg = link.config()?;
    let mut sender = Sender::new(cfg)?;
    let mut port = link.open()?;
    let mut backoff = Duration::from_millis(200);
    loop {
        let res = durable::send_pending(
            &outbox,
            &mut sender,
            &mut port,
            |e, r| {
                eprintln!(
                    "delivered {:08x}-{}: {} bytes, {} packets, {} bytes on air",
                    e.envelope.stream,
                    e.envelope.seq,
                    e.frame.len(),
                    r.packets_sent,
                    r.on_air_bytes
                )
            },
            |c| {
                eprintln!(
                    "spool entry {} is damaged ({}): set aside, not sent",
                    c.path.display(),
                    c.reason
                )
            },
        );
        match res {
            Ok(_) if !spool.daemon => return Ok(()),
            Ok(n) => {
                if n > 0 {
                    backoff = Duration::from_millis(200);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(LinkError::Arq(ArqError::Lost { msg_id, tries })) if spool.daemon => {
                eprintln!(
                    "message {msg_id} not acknowledged after {tries} tries; kept in the spool, retrying in {:.1} s",
                    backoff.as_secs_f64()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "sending over {} failed; unacknowledged messages stay in {}",
                        link.port_name(),
                        dir.display()
                    )
                })
            }
        }
        // New entries may have been queued meanwhile.
        outbox = Outbox::open(dir).map_err(LinkError::from)?;
    }
}

/// Receiver-side durability options.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Exactly-once delivery across restarts of either end: keep the de-duplication window in
    /// DIR/seen, acknowledge a message only once it is written, and name each message file
    /// <stream>-<seq>.txt after the sender's spool id.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

/// Where delivered messages go.
pub struct Output {
    /// A directory (one file per message), or stdout.
    pub dir: Option<PathBuf>,
    /// Messages written so far by this run.
    pub written: u64,
    /// File extension.
    pub ext: &'static str,
}

impl Output {
    fn write(&mut self, name: Option<(&durable::Envelope, &Path)>, bytes: &[u8]) -> Result<()> {
        self.written += 1;
        match (&self.dir, name) {
            (Some(d), Some((e, _))) => {
                durable::write_message(d, e, self.ext, bytes).map_err(LinkError::from)?;
            }
            (Some(d), None) => {
                // Without --state the numbering restarts with each run; skip names an earlier
                // run left so a restarted listener never replaces a delivered message.
                let n = loop {
                    let n = format!("msg-{:05}.{}", self.written, self.ext);
                    if !d.join(&n).exists() {
                        break n;
                    }
                    self.written += 1;
                };
                durable::write_atomic(d, &n, bytes)
                    .with_context(|| format!("cannot write {}", d.join(&n).display()))?;
            }
            (None, _) => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.write_all(b"\n\n")?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// `tenbit-edge listen`'s transport: receives frames (over the link, or from Reticulum),
/// turns each into output bytes with `decode` (an `Err` is logged and counted, the listener
/// goes on), writes them, and stops after `count` messages or when the link ends.
pub fn listen(
    link: &LinkArgs,
    state: &StateArgs,
    rns: &RnsArgs,
    reticulum: bool,
    mut out: Output,
    count: Option<u64>,
    mut decode: impl FnMut(&[u8]) -> Result<Vec<u8>>,
) -> Result<()> {
    if let Some(d) = &out.dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let (mut ok, mut failed, mut dups) = (0u64, 0u64, 0u64);
    let done = |ok: u64, failed: u64| count.is_some_and(|c| ok + failed >= c);
    if reticulum {
        let mut s = Sidecar::start(rns.config(), Role::Listen).map_err(LinkError::from)?;
        eprintln!(
            "listening on Reticulum destination {} (tenbit.edge), sidecar pid {}",
            s.destination(),
            s.pid()
        );
        while !done(ok, failed) {
            match s
                .next_event(Duration::from_secs(1))
                .map_err(LinkError::from)?
            {
                None => {}
                Some(SidecarEvent::Restarted { status }) => eprintln!(
                    "reticulum sidecar died (status {status:?}); restarted it, pid {}",
                    s.pid()
                ),
                Some(SidecarEvent::Frame(f)) => match decode(&f) {
                    Ok(text) => {
                        ok += 1;
                        out.write(None, &text)?;
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::error!("frame refused: {e:#}");
                    }
                },
            }
        }
        return Ok(());
    }
    let mut cfg = link.config()?;
    let mut window = match &state.state {
        Some(d) => {
            cfg.deferred_ack = true;
            Some(SeenWindow::open(&d.join("seen")).map_err(LinkError::from)?)
        }
        None => None,
    };
    let port = link.open()?;
    tracing::info!(port = %link.port_name(), link = %link.link, "listening");
    let mut rx = Receiver::new(port, &cfg)?;
    while !done(ok, failed) {
        let msg = match rx.next_event() {
            Ok(Event::Message(m)) => m,
            Ok(Event::Lost { msg_id }) => {
                tracing::warn!(msg_id, "message lost on the link");
                continue;
            }
            Err(e) => {
                tracing::info!(ok, failed, dups, "link ended");
                return Err(e).context(format!("link on {} failed", link.port_name()));
            }
        };
        let (envelope, frame) = match (&window, msg.durable) {
            (Some(w), true) => match w.admit(&msg.payload) {
                Ok(Admit::Duplicate(e)) => {
                    dups += 1;
                    tracing::info!(stream = e.stream, seq = e.seq, "duplicate acknowledged");
                    rx.acknowledge(&msg)?;
                    continue;
                }
                Ok(Admit::New(e, f)) => (Some(e), f),
                Err(e) => {
                    failed += 1;
                    tracing::error!("durable message refused: {e}");
                    rx.acknowledge(&msg)?;
                    continue;
                }
            },
            (_, true) => match durable::Envelope::unwrap(&msg.payload) {
                Ok((_, f)) => (None, f),
                Err(_) => (None, &msg.payload[..]),
            },
            _ => (None, &msg.payload[..]),
        };
        let frame = frame.to_vec();
        match decode(&frame) {
            Ok(text) => {
                ok += 1;
                let dir = out.dir.clone();
                out.write(envelope.as_ref().zip(dir.as_deref()), &text)?;
                match &envelope {
                    Some(e) => tracing::info!(
                        stream = e.stream,
                        seq = e.seq,
                        frame = frame.len(),
                        "delivered"
                    ),
                    None => tracing::info!(msg_id = msg.msg_id, frame = frame.len(), "delivered"),
                }
            }
            Err(e) => {
                failed += 1;
                tracing::error!(msg_id = msg.msg_id, "frame refused: {e:#}");
            }
        }
        if let (Some(w), Some(e)) = (window.as_mut(), envelope.as_ref()) {
            w.insert(e).map_err(LinkError::from)?;
        }
        rx.acknowledge(&msg)?;
    }
    let st = rx.stats();
    tracing::info!(ok, failed, dups, auth_failures = st.auth_failures, "done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Output;

    /// A listener restarted without --state numbers from 1 again; the files of the earlier run
    /// must survive and the new messages land after them.
    #[test]
    fn restarted_output_never_replaces_earlier_messages() {
        let dir = std::env::temp_dir().join(format!("tenbit-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for run in [["a", "b"], ["c", "d"]] {
            let mut out = Output {
                dir: Some(dir.clone()),
                written: 0,
                ext: "txt",
            };
            for m in run {
                out.write(None, m.as_bytes()).unwrap();
            }
        }
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!(
            [
                "msg-00001.txt",
                "msg-00002.txt",
                "msg-00003.txt",
                "msg-00004.txt"
            ]
            .map(read),
            ["a", "b", "c", "d"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
