//! tenbit over the reference Reticulum stack (PyPI `rns` 1.5.7, installed by
//! `tests/setup-rns.sh`), all on 127.0.0.1 with `share_instance = No`, bounded in time, every
//! process stopped by its pid.

use std::time::{Duration, Instant};

#[path = "support/rns.rs"]
mod rns;

use tenbit_link::reticulum::{Role, Sidecar, SidecarConfig, SidecarEvent};

fn sidecar_cfg(python: &str, dir: std::path::PathBuf) -> SidecarConfig {
    let mut c = SidecarConfig::new(dir);
    c.python = python.to_string();
    c.timeout = Duration::from_secs(20);
    c.announce_interval = Duration::from_secs(5);
    c
}

fn next_frame(s: &mut Sidecar, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no frame within {within:?}");
        match s.next_event(left).unwrap() {
            Some(SidecarEvent::Frame(f)) => return f,
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
}

#[test]
fn frames_cross_two_reticulum_instances_over_tcp() {
    let py = rns::python();
    let d = rns::scratch("tcp");
    let port = rns::free_port();
    let a = rns::config(&d.join("a"), &rns::tcp_server(port));
    let b = rns::config(&d.join("b"), &rns::tcp_client(port));
    let mut listener = Sidecar::start(sidecar_cfg(&py, a.clone()), Role::Listen).unwrap();
    let dest = listener.destination().to_string();
    assert_eq!(dest.len(), 32, "{dest}");
    let mut sender =
        Sidecar::start(sidecar_cfg(&py, b), Role::Send { dest: dest.clone() }).unwrap();
    // One packet (<= 383 bytes) and a frame that needs a Resource over a Link.
    let small: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let large: Vec<u8> = (0..1500u32).map(|i| (i * 13 + 1) as u8).collect();
    for frame in [&small, &large] {
        sender.send(frame, |_| panic!("sidecar restarted")).unwrap();
        assert_eq!(&next_frame(&mut listener, Duration::from_secs(30)), frame);
    }
    // The identity persists: a restarted listener has the same destination hash.
    drop(listener);
    let again = Sidecar::start(sidecar_cfg(&py, a), Role::Listen).unwrap();
    assert_eq!(again.destination(), dest);
    let _ = std::fs::remove_dir_all(&d);
}

/// tenbit as the KISS TNC of a Reticulum node: KISS frames from the node's KISSInterface (on a
/// pty) are carried as tenbit link messages over a second pty (COBS + ARQ), and what arrives is
/// written back to the node as KISS data frames. Stops when `stop` is set.
fn tnc(
    mut kiss_side: serialport::TTYPort,
    link_side: serialport::TTYPort,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64, u64)> {
    use serialport::SerialPort;
    use std::io::{Read, Write};
    use tenbit_link::io::{DuplexEvent, Endpoint, LinkConfig};
    use tenbit_link::kiss::{self, KissDecoder};
    std::thread::spawn(move || {
        kiss_side.set_timeout(Duration::from_millis(10)).unwrap();
        let mut link_side = link_side;
        link_side.set_timeout(Duration::from_millis(10)).unwrap();
        let mut cfg = LinkConfig::new("serial-115200".parse().unwrap());
        cfg.pace = false;
        let mut ep = Endpoint::new(link_side, &cfg).unwrap();
        let mut dec = KissDecoder::<2048>::new();
        let (mut up, mut down, mut commands) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 512];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match kiss_side.read(&mut buf) {
                Ok(n) => {
                    for &b in &buf[..n] {
                        if let Some(Ok(f)) = dec.push(b) {
                            if f.is_data() {
                                ep.queue(f.data.to_vec()).unwrap();
                                up += 1;
                            } else {
                                commands += 1; // TXDELAY, persistence, slot time, ...
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("KISS side: {e}"),
            }
            loop {
                let ev = match ep.poll() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    // The other TNC stopped first and hung up the cable.
                    Err(tenbit_link::LinkError::Closed)
                        if stop.load(std::sync::atomic::Ordering::Relaxed) =>
                    {
                        return (up, down, commands)
                    }
                    Err(e) => panic!("link side: {e}"),
                };
                if let DuplexEvent::Received(p) = ev {
                    let mut out = vec![0u8; kiss::max_encoded_len(p.len())];
                    let n = kiss::encode(kiss::CMD_DATA, &p, &mut out).unwrap();
                    kiss_side.write_all(&out[..n]).unwrap();
                    down += 1;
                }
            }
        }
        (up, down, commands)
    })
}

#[test]
fn two_reticulum_nodes_reach_each_other_only_through_tenbit_kiss() {
    use serialport::{SerialPort, TTYPort};
    let py = rns::python();
    let d = rns::scratch("kiss");
    let (kiss_a, node_a) = TTYPort::pair().unwrap();
    let (kiss_b, node_b) = TTYPort::pair().unwrap();
    let (link_a, link_b) = TTYPort::pair().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ta = tnc(kiss_a, link_a, stop.clone());
    let tb = tnc(kiss_b, link_b, stop.clone());
    let a = rns::config(&d.join("a"), &rns::kiss(&node_a.name().unwrap()));
    let b = rns::config(&d.join("b"), &rns::kiss(&node_b.name().unwrap()));
    let mut listener = Sidecar::start(sidecar_cfg(&py, a), Role::Listen).unwrap();
    let dest = listener.destination().to_string();
    let mut sender = Sidecar::start(sidecar_cfg(&py, b), Role::Send { dest }).unwrap();
    // A -> B: the packet; B -> A: Reticulum's delivery proof, which `send` waits for.
    let frame: Vec<u8> = (0..200u32).map(|i| (i * 31 + 0xC0) as u8).collect();
    sender
        .send(&frame, |_| panic!("sidecar restarted"))
        .unwrap();
    assert_eq!(next_frame(&mut listener, Duration::from_secs(30)), frame);
    drop((sender, listener));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (up_a, down_a, cmd_a) = ta.join().unwrap();
    let (up_b, down_b, cmd_b) = tb.join().unwrap();
    eprintln!("TNC A: {up_a} up {down_a} down {cmd_a} commands; TNC B: {up_b} up {down_b} down {cmd_b} commands");
    assert!(up_a >= 1 && down_a >= 1 && up_b >= 1 && down_b >= 1);
    assert!(
        cmd_a >= 1 && cmd_b >= 1,
        "KISSInterface sends its TNC parameters first"
    );
    drop((node_a, node_b));
    let _ = std::fs::remove_dir_all(&d);
}
