//! Nonces never repeat across reboots: every `Sender` (one per process start) takes a fresh
//! boot epoch from its epoch file, strictly above every epoch used before, and written durably
//! before the first message. A receiver holding the key accepts each boot's messages once.
#![cfg(all(feature = "std", feature = "crypto"))]

use std::io::{Cursor, Read, Write};

use tenbit_link::io::{next_epoch, LinkConfig, Mode, Receiver, Sender};
use tenbit_link::seal::Key;
use tenbit_link::seal::SealError;
use tenbit_link::LinkError;

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-epoch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port that reads from a fixed buffer and collects what is written.
struct Port {
    rx: Cursor<Vec<u8>>,
    tx: Vec<u8>,
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.rx.read(buf)
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn epochs_strictly_increase_and_survive_restarts() {
    let d = scratch("inc");
    let path = d.join("state/epoch");
    let mut last = 0u32;
    for _ in 0..5 {
        let e = next_epoch(&path).unwrap();
        assert!(e > last, "epoch {e} after {last}");
        // Persisted before it is returned: the file already holds it.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            e.to_string()
        );
        last = e;
    }
    // A clock set back (or a stored epoch ahead of the clock) still moves forward.
    std::fs::write(&path, format!("{}\n", u32::MAX - 2)).unwrap();
    assert_eq!(next_epoch(&path).unwrap(), u32::MAX - 1);
    assert_eq!(next_epoch(&path).unwrap(), u32::MAX);
    // Exhausted: refuse rather than wrap around to an epoch already used.
    assert!(matches!(
        next_epoch(&path),
        Err(LinkError::Seal(SealError::NonceExhausted))
    ));
    // A damaged file is an error, and is left as it is for the operator to look at.
    std::fs::write(&path, "not a number").unwrap();
    let e = next_epoch(&path).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a number");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn two_boots_with_one_key_never_share_a_nonce() {
    let d = scratch("boots");
    let key = Key::from_bytes([0x5A; 32]);
    let mut cfg = LinkConfig::new("serial-115200".parse().unwrap());
    cfg.mode = Mode::Broadcast { parity_percent: 0 };
    cfg.pace = false;
    cfg.key = Some(key);
    cfg.epoch_file = Some(d.join("epoch"));
    let boot = |msg: &[u8]| {
        // A fresh Sender is what a restarted process (or a rebooted board) creates.
        let mut port = Port {
            rx: Cursor::new(Vec::new()),
            tx: Vec::new(),
        };
        Sender::new(cfg.clone())
            .unwrap()
            .send(&mut port, msg, |_| {})
            .unwrap();
        port.tx
    };
    let first = boot(b"same length msg");
    let second = boot(b"same length msg");
    // Same key, sender id, counter (0) and plaintext: only the epoch differs, so the bytes do.
    assert_ne!(first, second, "two boots produced identical ciphertext");
    let mut rx = Receiver::new(
        Port {
            rx: Cursor::new([&first[..], &second[..]].concat()),
            tx: Vec::new(),
        },
        &cfg,
    )
    .unwrap();
    for _ in 0..2 {
        let m = rx.next_message().unwrap();
        assert!(m.authenticated);
        assert_eq!(m.payload, b"same length msg");
    }
    assert!(matches!(rx.next_message(), Err(LinkError::Closed)));
    assert_eq!(rx.stats().replays, 0);
    assert_eq!(rx.stats().auth_failures, 0);
    let _ = std::fs::remove_dir_all(&d);
}
