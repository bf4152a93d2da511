//! A null-modem cable made of two pseudo-terminal pairs: what one side writes to its port the
//! other side reads from its own, as with two USB serial adapters or two transparent-mode radio
//! modems. Real serial devices from the kernel's point of view, so the binaries under test open
//! them by path exactly as they would open `/dev/ttyUSB0`.

use std::io::{Read, Write};
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

/// The two ends of the cable. The slave handles are held so the ptys stay open while the
/// processes under test come and go; drop the cable to hang up.
pub struct Cable {
    pub a: String,
    pub b: String,
    _ends: (TTYPort, TTYPort),
}

/// Join two fresh pty pairs with relay threads in both directions.
pub fn pty_cable() -> Cable {
    let (ma, sa) = TTYPort::pair().expect("openpty");
    let (mb, sb) = TTYPort::pair().expect("openpty");
    let (a, b) = (sa.name().unwrap(), sb.name().unwrap());
    relay(
        ma.try_clone_native().unwrap(),
        mb.try_clone_native().unwrap(),
    );
    relay(mb, ma);
    Cable {
        a,
        b,
        _ends: (sa, sb),
    }
}

/// Copy bytes from one pty master to the other until either side closes.
fn relay(mut from: TTYPort, mut to: TTYPort) {
    std::thread::spawn(move || {
        let _ = from.set_timeout(Duration::from_millis(50));
        let mut buf = [0u8; 512];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            }
        }
    });
}
