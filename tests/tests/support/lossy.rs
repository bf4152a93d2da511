//! A pty null-modem cable that loses packets: two pseudo-terminal pairs joined by relay threads
//! that cut the byte stream at COBS delimiters and drop each packet with a seeded probability,
//! in both directions. Bounded in time (the relays stop at a deadline or when the cable is
//! dropped) and counting the bytes it carried each way. The slave ends are held open, so the
//! processes under test can die (kill -9) and reopen their port by path.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

/// Counters of one direction.
#[derive(Default)]
pub struct Flow {
    /// Bytes delivered to the far end.
    pub bytes: AtomicU64,
    /// Packets delivered.
    pub packets: AtomicU64,
    /// Packets dropped by the loss injector.
    pub dropped: AtomicU64,
}

/// The cable: `a` and `b` are the device paths of its two ends.
pub struct LossyCable {
    pub a: String,
    pub b: String,
    /// a -> b (data, when the sender is on `a`).
    pub forward: Arc<Flow>,
    /// b -> a (acknowledgements).
    pub back: Arc<Flow>,
    stop: Arc<AtomicBool>,
    _ends: (TTYPort, TTYPort),
}

impl Drop for LossyCable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A cable dropping `loss_percent`% of the packets each way, for at most `limit`.
pub fn lossy_cable(loss_percent: u32, seed: u64, limit: Duration) -> LossyCable {
    let (ma, sa) = TTYPort::pair().expect("openpty");
    let (mb, sb) = TTYPort::pair().expect("openpty");
    let (a, b) = (sa.name().unwrap(), sb.name().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let forward = Arc::new(Flow::default());
    let back = Arc::new(Flow::default());
    let deadline = Instant::now() + limit;
    relay(
        ma.try_clone_native().unwrap(),
        mb.try_clone_native().unwrap(),
        loss_percent,
        seed,
        forward.clone(),
        stop.clone(),
        deadline,
    );
    relay(
        mb,
        ma,
        loss_percent,
        seed ^ 0x5EED,
        back.clone(),
        stop.clone(),
        deadline,
    );
    LossyCable {
        a,
        b,
        forward,
        back,
        stop,
        _ends: (sa, sb),
    }
}

fn relay(
    mut from: TTYPort,
    mut to: TTYPort,
    loss: u32,
    seed: u64,
    flow: Arc<Flow>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    std::thread::spawn(move || {
        let _ = from.set_timeout(Duration::from_millis(20));
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut packet = Vec::new();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let n = match from.read(&mut buf) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                // The slave is reopened by a restarted process: keep relaying.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            for &b in &buf[..n] {
                packet.push(b);
                if b != 0 {
                    if packet.len() > 4096 {
                        packet.clear(); // garbage without delimiters: a line fault
                    }
                    continue;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 100) < u64::from(loss) {
                    flow.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = to.write_all(&packet);
                    flow.bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
                    flow.packets.fetch_add(1, Ordering::Relaxed);
                }
                packet.clear();
            }
        }
    });
}
