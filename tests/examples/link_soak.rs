//! Soak benchmark of crash-safe delivery: N messages (default 1,000, 100-400 bytes each) through
//! `tenbit send --spool --daemon` and `tenbit-edge listen --state` (real processes) over a pty
//! cable that drops `--loss`% of the packets each way, while either side is killed with SIGKILL
//! at random every 2-6 s and restarted. Prints delivered / duplicated / lost and bytes on the
//! cable per message. Run it with `bench/link_soak.sh` (builds the binaries first).
//!
//!   link_soak [--messages N] [--loss PERCENT] [--seed S] [--limit SECONDS] [--no-kill]
//!
//! delivered: messages whose file (`<stream>-<seq>.tb`) exists with exactly the bytes sent;
//! duplicated: extra writes of an already delivered message (from the listeners' logs);
//! lost: messages not delivered within the time limit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[path = "../tests/support/lossy.rs"]
mod lossy;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bins() -> (PathBuf, PathBuf) {
    let dir = std::env::current_exe().unwrap();
    let dir = dir.parent().unwrap().parent().unwrap(); // target/release/examples -> release
    (dir.join("tenbit"), dir.join("tenbit-edge"))
}

const LINK: [&str; 3] = ["--link", "serial-115200", "--no-pace"];

fn log(p: &Path) -> std::fs::File {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(p)
        .unwrap()
}

fn main() {
    let n: usize = arg("--messages", 1000);
    let loss: u32 = arg("--loss", 10);
    let seed: u64 = arg("--seed", 0x50AC);
    let limit = Duration::from_secs(arg("--limit", 3600));
    let kill = !std::env::args().any(|a| a == "--no-kill");
    let (tenbit, edge) = bins();
    assert!(
        tenbit.exists() && edge.exists(),
        "build first: cargo build --release --bins"
    );
    let d = std::env::temp_dir().join(format!("tenbit-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let (spool, state, out) = (d.join("spool"), d.join("state"), d.join("out"));
    let (slog, llog) = (d.join("sender.log"), d.join("listener.log"));
    // The application's side of the outbox: N messages written to the spool up front.
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ob = tenbit_link::durable::Outbox::open(&spool).unwrap();
    let mut want = HashMap::new();
    let mut frame_bytes = 0usize;
    for i in 0..n {
        let len = 100 + (rnd() % 301) as usize;
        let mut m = format!("soak {i:05} ").into_bytes();
        while m.len() < len {
            m.push(rnd() as u8);
        }
        frame_bytes += m.len();
        let e = ob.enqueue(&m).unwrap();
        want.insert(e.file_name("tb"), m);
    }
    let cable = lossy::lossy_cable(loss, seed, limit + Duration::from_secs(60));
    let start_listener = || {
        Proc(
            Command::new(&edge)
                .args(["listen", "--raw", "-v", "--port", &cable.b])
                .args(LINK)
                .arg("--state")
                .arg(&state)
                .arg("--out-dir")
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log(&llog))
                .spawn()
                .unwrap(),
        )
    };
    let start_sender = || {
        Proc(
            Command::new(&tenbit)
                .args(["send", "--frame", "--daemon", "--port", &cable.a])
                .args(LINK)
                .arg("--spool")
                .arg(&spool)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log(&slog))
                .spawn()
                .unwrap(),
        )
    };
    let count = || {
        std::fs::read_dir(&out)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "tb"))
                    .count()
            })
            .unwrap_or(0)
    };
    let pending = || {
        std::fs::read_dir(&spool)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "out"))
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    let mut rx = start_listener();
    let mut tx = start_sender();
    let (mut kills_tx, mut kills_rx) = (0u32, 0u32);
    let mut next_kill = t0 + Duration::from_millis(2000 + rnd() % 4000);
    let mut last_print = t0;
    while (count() < n || pending() > 0) && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
        if kill && Instant::now() >= next_kill {
            if rnd() % 2 == 0 {
                drop(tx);
                std::thread::sleep(Duration::from_millis(100 + rnd() % 400));
                tx = start_sender();
                kills_tx += 1;
            } else {
                drop(rx);
                std::thread::sleep(Duration::from_millis(100 + rnd() % 400));
                rx = start_listener();
                kills_rx += 1;
            }
            next_kill = Instant::now() + Duration::from_millis(2000 + rnd() % 4000);
        }
        if last_print.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "{:>5.0} s: {} delivered, {} spooled, kills: sender {kills_tx}, listener {kills_rx}",
                t0.elapsed().as_secs_f64(),
                count(),
                pending()
            );
            last_print = Instant::now();
        }
    }
    let elapsed = t0.elapsed();
    drop(tx);
    drop(rx);
    let mut delivered = 0usize;
    let mut wrong = 0usize;
    for (name, m) in &want {
        match std::fs::read(out.join(name)) {
            Ok(b) if &b == m => delivered += 1,
            Ok(_) => wrong += 1,
            Err(_) => {}
        }
    }
    let writes = std::fs::read_to_string(&llog)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("delivered"))
        .count();
    let dups = writes.saturating_sub(delivered);
    let fwd = cable.forward.bytes.load(Relaxed);
    let back = cable.back.bytes.load(Relaxed);
    println!(
        "soak: {n} messages ({:.0} B mean), {loss}% packet loss each way, {kills_tx} sender + {kills_rx} listener kills (SIGKILL), {:.0} s",
        frame_bytes as f64 / n as f64,
        elapsed.as_secs_f64()
    );
    println!(
        "delivered {delivered} / duplicated {dups} / lost {} / corrupted {wrong}",
        n - delivered - wrong
    );
    println!(
        "bytes on the cable per message: {:.1} forward (data), {:.1} back (ACKs), {:.3}x the frame; packets dropped: {} forward, {} back",
        fwd as f64 / n as f64,
        back as f64 / n as f64,
        (fwd + back) as f64 / frame_bytes as f64,
        cable.forward.dropped.load(Relaxed),
        cable.back.dropped.load(Relaxed)
    );
    if delivered == n && wrong == 0 {
        let _ = std::fs::remove_dir_all(&d);
    } else {
        println!("kept {} for inspection", d.display());
        std::process::exit(1);
    }
}
