//! The reference Reticulum stack (PyPI `rns`, pinned) for interoperability tests: its Python
//! interpreter (installed by `tests/setup-rns.sh` when absent; a failure to install fails the
//! test, it never skips), per-instance configuration directories with `share_instance = No`
//! and everything on 127.0.0.1, and child processes stopped by pid.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The interpreter with `rns` installed: `TENBIT_RNS_PYTHON`, else what `tests/setup-rns.sh`
/// installs (idempotent, seconds).
pub fn python() -> String {
    if let Ok(p) = std::env::var("TENBIT_RNS_PYTHON") {
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(root.join("tests/setup-rns.sh"))
        .current_dir(root)
        .output()
        .expect("run tests/setup-rns.sh");
    assert!(
        out.status.success(),
        "installing rns failed (tests/setup-rns.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rel = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_string();
    root.join(rel).to_string_lossy().into_owned()
}

/// A port nobody listens on right now (127.0.0.1).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-rns-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a Reticulum configuration: no shared instance, no transport, the given interfaces.
pub fn config(dir: &Path, interfaces: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "[reticulum]\n  enable_transport = No\n  share_instance = No\n  panic_on_interface_error = No\n\n\
         [logging]\n  loglevel = 3\n\n[interfaces]\n{interfaces}"
    );
    std::fs::write(dir.join("config"), text).unwrap();
    dir.to_path_buf()
}

/// A TCP server interface on 127.0.0.1.
pub fn tcp_server(port: u16) -> String {
    format!(
        "  [[tcp server]]\n    type = TCPServerInterface\n    enabled = yes\n    listen_ip = 127.0.0.1\n    listen_port = {port}\n"
    )
}

/// A TCP client interface to 127.0.0.1.
pub fn tcp_client(port: u16) -> String {
    format!(
        "  [[tcp client]]\n    type = TCPClientInterface\n    enabled = yes\n    target_host = 127.0.0.1\n    target_port = {port}\n"
    )
}

/// Reticulum's KISSInterface on a serial device (a pty).
pub fn kiss(port: &str) -> String {
    format!(
        "  [[kiss]]\n    type = KISSInterface\n    enabled = yes\n    port = {port}\n    speed = 115200\n    databits = 8\n    parity = none\n    stopbits = 1\n    preamble = 0\n    txtail = 0\n    persistence = 255\n    slottime = 0\n    flow_control = false\n"
    )
}

/// A child process killed (by pid) and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
