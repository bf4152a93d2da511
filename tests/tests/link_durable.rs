//! Delivery that survives crashes: `tenbit send --spool --daemon` and `tenbit-edge listen
//! --state` as real processes on a pty cable that drops 10% of the packets each way (bounded in
//! time), each side killed with SIGKILL mid-stream and restarted; every message must arrive
//! exactly once (one file per message, byte for byte) and the spool must end empty.
//! Bad input: a damaged spool entry is set aside and never sent; a full or unwritable spool is
//! a clear error with exit status 1 (local failure, not the link's 6).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/lossy.rs"]
mod lossy;
use tenbit_tests::bin;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-durable-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Distinct, incompressible messages of 120-400 bytes (frames are opaque to the link).
fn messages(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 120 + (x % 281) as usize;
            let mut v = format!("message {i:04} ").into_bytes();
            while v.len() < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            v
        })
        .collect()
}

const LINK: [&str; 3] = ["--link", "serial-115200", "--no-pace"];

fn queue(spool: &Path, msg: &[u8], dir: &Path, i: usize) {
    let f = dir.join(format!("in-{i}.tb"));
    std::fs::write(&f, msg).unwrap();
    let out = Command::new(bin("tenbit"))
        .args(["send", "--frame", "--spool"])
        .arg(spool)
        .arg("--queue")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child killed by pid (SIGKILL) and reaped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sender(port: &str, spool: &Path, log: &Path) -> Proc {
    Proc(
        Command::new(bin("tenbit"))
            .args(["send", "--frame", "--daemon", "--port", port])
            .args(LINK)
            .arg("--spool")
            .arg(spool)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

fn listener(port: &str, state: &Path, out: &Path, log: &Path) -> Proc {
    Proc(
        Command::new(bin("tenbit-edge"))
            .args(["listen", "--raw", "-v", "--port", port])
            .args(LINK)
            .arg("--state")
            .arg(state)
            .arg("--out-dir")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

fn delivered(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "tb"));
    v.sort();
    v
}

fn spooled(spool: &Path) -> usize {
    std::fs::read_dir(spool)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "out"))
        .count()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_either_side_with_10_percent_loss_delivers_each_message_exactly_once() {
    let d = scratch("kill");
    let (spool, state, out) = (d.join("spool"), d.join("state"), d.join("out"));
    let (slog, llog) = (d.join("sender.log"), d.join("listener.log"));
    let msgs = messages(12, 0xC0FFEE);
    for (i, m) in msgs.iter().enumerate() {
        queue(&spool, m, &d, i);
    }
    assert_eq!(spooled(&spool), 12);
    let cable = lossy::lossy_cable(10, 42, Duration::from_secs(150));
    let mut rx = listener(&cable.b, &state, &out, &llog);
    let mut tx = sender(&cable.a, &spool, &slog);
    let limit = Duration::from_secs(60);
    wait_for("3 messages", limit, || delivered(&out).len() >= 3);
    drop(tx); // SIGKILL mid-stream
    tx = sender(&cable.a, &spool, &slog);
    wait_for("6 messages", limit, || delivered(&out).len() >= 6);
    drop(rx); // SIGKILL mid-stream
    rx = listener(&cable.b, &state, &out, &llog);
    wait_for("8 messages", limit, || delivered(&out).len() >= 8);
    drop(tx);
    drop(rx);
    rx = listener(&cable.b, &state, &out, &llog);
    tx = sender(&cable.a, &spool, &slog);
    wait_for("all 12 messages and an empty spool", limit, || {
        delivered(&out).len() >= 12 && spooled(&spool) == 0
    });
    drop(tx);
    drop(rx);
    let files = delivered(&out);
    let log = || {
        format!(
            "sender:\n{}\nlistener:\n{}",
            std::fs::read_to_string(&slog).unwrap_or_default(),
            std::fs::read_to_string(&llog).unwrap_or_default()
        )
    };
    assert_eq!(files.len(), 12, "{}", log());
    let mut got: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    got.sort();
    let mut want = msgs.clone();
    want.sort();
    assert!(
        got == want,
        "delivered messages differ from those sent\n{}",
        log()
    );
    // Nothing half-written left behind.
    assert!(std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    let (fwd, back) = (&cable.forward, &cable.back);
    use std::sync::atomic::Ordering::Relaxed;
    eprintln!(
        "on the cable: {} B / {} packets forward ({} dropped), {} B / {} packets back ({} dropped)",
        fwd.bytes.load(Relaxed),
        fwd.packets.load(Relaxed),
        fwd.dropped.load(Relaxed),
        back.bytes.load(Relaxed),
        back.packets.load(Relaxed),
        back.dropped.load(Relaxed)
    );
    assert!(
        fwd.dropped.load(Relaxed) > 0 && back.dropped.load(Relaxed) > 0,
        "no loss injected"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_damaged_spool_entry_is_set_aside_and_never_sent() {
    let d = scratch("corrupt");
    let (spool, state, out) = (d.join("spool"), d.join("state"), d.join("out"));
    let llog = d.join("listener.log");
    let msgs = messages(3, 7);
    for (i, m) in msgs.iter().enumerate() {
        queue(&spool, m, &d, i);
    }
    // Flip a byte of the second entry's frame.
    let entry = spool.join(format!("{:016x}.out", 1));
    let mut bytes = std::fs::read(&entry).unwrap();
    *bytes.last_mut().unwrap() ^= 0x20;
    std::fs::write(&entry, bytes).unwrap();
    let cable = lossy::lossy_cable(0, 1, Duration::from_secs(60));
    let _rx = listener(&cable.b, &state, &out, &llog);
    let send = Command::new(bin("tenbit"))
        .args(["send", "--frame", "--port", &cable.a])
        .args(LINK)
        .arg("--spool")
        .arg(&spool)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&send.stderr);
    assert!(send.status.success(), "{err}");
    assert!(
        err.contains("is damaged (CRC-32 mismatch): set aside, not sent"),
        "{err}"
    );
    assert!(spool.join(format!("{:016x}.out.corrupt", 1)).exists());
    wait_for("two messages", Duration::from_secs(20), || {
        delivered(&out).len() >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<Vec<u8>> = delivered(&out)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(got, vec![msgs[0].clone(), msgs[2].clone()]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_full_or_unwritable_spool_is_a_clear_local_error() {
    let d = scratch("full");
    let frame = d.join("f.tb");
    std::fs::write(&frame, b"a frame").unwrap();
    // Full: the next entry's temp file is the kernel's always-full device.
    let spool = d.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::os::unix::fs::symlink("/dev/full", spool.join(".0000000000000000.out.tmp")).unwrap();
    let out = Command::new(bin("tenbit"))
        .args(["send", "--frame", "--queue", "--spool"])
        .arg(&spool)
        .arg(&frame)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write spool entry") && err.contains("disk is full"),
        "{err}"
    );
    // Unwritable: a directory the kernel refuses to create (sysfs), even as root.
    let out = Command::new(bin("tenbit"))
        .args(["send", "--frame", "--queue", "--spool", "/sys/tenbit-spool"])
        .arg(&frame)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot create spool /sys/tenbit-spool"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
