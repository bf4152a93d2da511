//! Link layer over real pseudo-terminal pairs: the kernel's tty layer sits between sender and
//! receiver exactly as with a USB serial adapter. One side is opened by path with
//! `open_serial`, like `tenbit-edge listen --port /dev/ttyAMA0` would.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use tenbit_link::io::{open_serial, LinkConfig, Mode, Received, Receiver, ReceiverStats, Sender};
use tenbit_link::seal::Key;
use tenbit_link::sim::Rng;
use tenbit_link::{ArqError, LinkError, LinkProfile};

/// A pty pair: (master port, slave path opened through `open_serial`).
fn pty_pair() -> (TTYPort, Box<dyn serialport::SerialPort>, String) {
    let (master, slave) = TTYPort::pair().expect("openpty");
    let name = slave.name().expect("slave name");
    // Keep the slave open until the path is reopened, so the master never sees a hang-up.
    let port = open_serial(&name, 115_200).expect("reopen slave by path");
    drop(slave);
    (master, port, name)
}

fn messages(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = if i == 0 { 0 } else { rng.below(3000) as usize };
            (0..len).map(|_| rng.next_u64() as u8).collect()
        })
        .collect()
}

fn config(mode: Mode, key: Option<Key>, dir: &std::path::Path) -> LinkConfig {
    let mut cfg = LinkConfig::new("serial-115200".parse::<LinkProfile>().unwrap());
    cfg.mode = mode;
    cfg.key = key;
    cfg.epoch_file = Some(dir.join("epoch"));
    cfg.idle_timeout = Some(Duration::from_secs(5));
    cfg
}

/// Receives until the idle timeout; returns the messages and the final counters.
fn spawn_receiver(
    port: Box<dyn serialport::SerialPort>,
    cfg: LinkConfig,
) -> thread::JoinHandle<(Vec<Received>, ReceiverStats, LinkError)> {
    thread::spawn(move || {
        let mut rx = Receiver::new(port, &cfg).unwrap();
        let mut got = Vec::new();
        let err = loop {
            match rx.next_message() {
                Ok(m) => got.push(m),
                Err(e) => break e,
            }
        };
        (got, rx.stats(), err)
    })
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-link-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn sealed_arq_over_a_pty_delivers_exactly() {
    let dir = tempdir("arq");
    let key = Key::from_bytes([0x42; 32]);
    let (mut master, port, _) = pty_pair();
    let cfg = config(Mode::Arq, Some(key), &dir);
    let rx = spawn_receiver(port, cfg.clone());
    let msgs = messages(12, 1);
    let mut tx = Sender::new(cfg).unwrap();
    let mut progress_calls = 0;
    for m in &msgs {
        let r = tx.send(&mut master, m, |_| progress_calls += 1).unwrap();
        assert_eq!(r.payload_bytes, m.len());
        assert!(r.acks >= 1 && r.wire_bytes > m.len() as u64);
    }
    let (got, stats, end) = rx.join().unwrap();
    assert!(matches!(end, LinkError::Timeout), "{end:?}");
    let got: Vec<Vec<u8>> = got
        .into_iter()
        .map(|r| {
            assert!(r.authenticated);
            r.payload
        })
        .collect();
    assert_eq!(got, msgs);
    assert_eq!(stats.auth_failures, 0);
    assert!(progress_calls >= msgs.len());
    // The epoch file was bumped and persisted before first use.
    let epoch: u32 = std::fs::read_to_string(dir.join("epoch"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(epoch > 0);
}

#[test]
fn fec_broadcast_over_a_pty() {
    let dir = tempdir("fec");
    let (mut master, port, _) = pty_pair();
    let cfg = config(Mode::Broadcast { parity_percent: 25 }, None, &dir);
    let rx = spawn_receiver(port, cfg.clone());
    let msgs = messages(8, 2);
    let mut tx = Sender::new(cfg).unwrap();
    for m in &msgs {
        let r = tx.send(&mut master, m, |_| {}).unwrap();
        assert_eq!(r.acks, 0);
        assert!(r.shards >= 2, "data plus parity");
    }
    let (got, _, _) = rx.join().unwrap();
    let got: Vec<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
    assert_eq!(got, msgs);
}

#[test]
fn wrong_key_is_dropped_and_counted_never_delivered() {
    let dir = tempdir("auth");
    let (mut master, port, _) = pty_pair();
    let rx_cfg = config(Mode::Arq, Some(Key::from_bytes([1; 32])), &dir);
    let rx = spawn_receiver(port, rx_cfg);
    let tx_cfg = config(Mode::Arq, Some(Key::from_bytes([2; 32])), &dir);
    let mut tx = Sender::new(tx_cfg).unwrap();
    for m in messages(3, 3) {
        // The link layer still acknowledges the shards; authentication happens above it.
        tx.send(&mut master, &m, |_| {}).unwrap();
    }
    let (got, stats, _) = rx.join().unwrap();
    assert!(got.is_empty());
    assert_eq!(stats.auth_failures, 3);
}

#[test]
fn unsealed_message_is_rejected_when_a_key_is_set() {
    let dir = tempdir("unsealed");
    let (mut master, port, _) = pty_pair();
    let rx = spawn_receiver(
        port,
        config(Mode::Arq, Some(Key::from_bytes([1; 32])), &dir),
    );
    let mut tx = Sender::new(config(Mode::Arq, None, &dir)).unwrap();
    tx.send(&mut master, b"forged", |_| {}).unwrap();
    let (got, stats, _) = rx.join().unwrap();
    assert!(got.is_empty());
    assert_eq!(stats.auth_failures, 1);
}

#[test]
fn replayed_bytes_are_not_delivered_twice() {
    let dir = tempdir("replay");
    // Record a sealed broadcast into memory, then play it into the pty twice.
    let cfg = config(
        Mode::Broadcast { parity_percent: 10 },
        Some(Key::from_bytes([7; 32])),
        &dir,
    );
    let mut rec = tenbit_link::io::Duplex {
        reader: std::io::empty(),
        writer: Vec::new(),
    };
    let mut nopace = cfg.clone();
    nopace.pace = false;
    Sender::new(nopace)
        .unwrap()
        .send(&mut rec, b"launch at dawn", |_| {})
        .unwrap();
    let (mut master, port, _) = pty_pair();
    let rx = spawn_receiver(port, cfg);
    use std::io::Write;
    master.write_all(&rec.writer).unwrap();
    thread::sleep(Duration::from_millis(200));
    master.write_all(&rec.writer).unwrap();
    let (got, stats, _) = rx.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"launch at dawn");
    assert!(stats.replays + u64::from(stats.reassembly.duplicates) >= 1);
}

#[test]
fn missing_port_gives_a_clear_error() {
    let err = open_serial("/dev/ttyTENBIT-does-not-exist", 115_200).unwrap_err();
    assert_eq!(
        format!("{}: {}", err, std::error::Error::source(&err).unwrap()),
        "cannot open serial port /dev/ttyTENBIT-does-not-exist: No such file or directory"
    );
    // The std::io::ErrorKind survives the link error (it used to be flattened into a String).
    match err {
        LinkError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hung_up_port_ends_the_receiver() {
    let dir = tempdir("hangup");
    let (master, port, _) = pty_pair();
    let mut cfg = config(Mode::Arq, None, &dir);
    cfg.idle_timeout = Some(Duration::from_secs(20));
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let mut rx = Receiver::new(port, &cfg).unwrap();
        let _ = tx.send(rx.next_message());
    });
    thread::sleep(Duration::from_millis(300));
    drop(master);
    let r = done
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver must notice the hang-up, not hang");
    match r {
        Err(LinkError::Closed) | Err(LinkError::Io(_)) => {}
        other => panic!("expected a closed-port error, got {other:?}"),
    }
}

#[test]
fn sender_reports_loss_when_nobody_answers() {
    let dir = tempdir("noanswer");
    let (mut master, _port, _) = pty_pair(); // nobody reads the other end
    let mut cfg = config(Mode::Arq, None, &dir);
    cfg.arq.max_failures = 3;
    cfg.arq.base_timeout_ms = 50;
    let err = Sender::new(cfg)
        .unwrap()
        .send(&mut master, b"hello?", |_| {})
        .unwrap_err();
    assert!(
        matches!(err, LinkError::Arq(ArqError::Lost { tries: 3, .. })),
        "{err}"
    );
}
