//! `tenbit send` on the host and `tenbit-edge listen` on the board, as real processes talking
//! through real serial devices: two pseudo-terminal pairs joined by a relay thread stand in for
//! a null-modem cable (or two radio modems in transparent mode).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/cable.rs"]
mod cable;
use cable::pty_cable;
use tenbit_tests::{bin, model_path};

#[test]
fn send_and_listen_over_a_pty_cable() {
    let cable = pty_cable();
    let (pa, pb) = (cable.a.clone(), cable.b.clone());
    let prompt = "How do I tie a bowline knot?";
    let text =
        std::fs::read(tenbit_tests::data_dir().join("llm/02-bowline-knot.response.txt")).unwrap();
    let listener = Command::new(bin("tenbit-edge"))
        .args([
            "listen",
            "--port",
            &pb,
            "--link",
            "serial-115200",
            "--count",
            "1",
            "--prompt",
            prompt,
        ])
        .env("TENBIT_MODEL", model_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // model load before the first packet
    let send = Command::new(bin("tenbit"))
        .args([
            "send",
            "--port",
            &pa,
            "--link",
            "serial-115200",
            "--prompt",
            prompt,
        ])
        .env("TENBIT_MODEL", model_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin.as_ref().unwrap().write_all(&text).unwrap();
    let sent = send.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "send: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stderr).contains("estimated airtime"));
    let got = listener.wait_with_output().unwrap();
    assert!(
        got.status.success(),
        "listen: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        got.stdout,
        [&text[..], b"\n\n"].concat(),
        "listener printed something else"
    );
    drop(cable);
}

#[test]
fn dead_port_is_a_clear_error_with_the_link_exit_code() {
    let out = Command::new(bin("tenbit-edge"))
        .args(["listen", "--port", "/dev/ttyTENBIT-missing", "--count", "1"])
        .env("TENBIT_MODEL", model_path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot open serial port /dev/ttyTENBIT-missing"));
    // The sending side too.
    let out = tenbit_tests::run(
        &bin("tenbit"),
        &[
            "send",
            "--port",
            "/dev/ttyTENBIT-missing",
            "--link",
            "lora-sf9",
        ],
        b"a short answer",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("cannot open serial port /dev/ttyTENBIT-missing"),
        "{err}"
    );
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tenbit-link-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The LoRa profile over the pty cable with duty-cycle pacing on (a one-packet message, so the
/// 1% off-time never has to pass), ARQ acknowledged.
#[test]
fn send_and_listen_lora_sf9_paced_over_a_pty_cable() {
    let cable = pty_cable();
    let (pa, pb) = (cable.a.clone(), cable.b.clone());
    let dir = tenbit_tests::data_dir().join("llm");
    let prompt = std::fs::read_to_string(dir.join("52-knots-conversion.prompt.txt")).unwrap();
    let text = std::fs::read(dir.join("52-knots-conversion.response.txt")).unwrap();
    let listener = Command::new(bin("tenbit-edge"))
        .args([
            "listen", "--port", &pb, "--link", "lora-sf9", "--count", "1",
        ])
        .args(["--prompt", &prompt])
        .env("TENBIT_MODEL", model_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new(bin("tenbit"))
        .args([
            "send", "--port", &pa, "--link", "lora-sf9", "--prompt", &prompt,
        ])
        .arg(dir.join("52-knots-conversion.response.txt"))
        .env("TENBIT_MODEL", model_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "send: {err}");
    assert!(err.contains("estimated airtime"), "{err}");
    let got = listener.wait_with_output().unwrap();
    assert!(
        got.status.success(),
        "listen: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, [&text[..], b"\n\n"].concat());
    drop(cable);
}

/// One-way (FEC over several 58-byte packets) and sealed, through stdin/stdout (`--port -`), as `tenbit send ... | tenbit-edge
/// listen ...`: the text arrives exactly, and at the most verbose log level neither side ever
/// prints the key (in any case), nor does the sender put the frame in clear on the wire.
#[test]
fn sealed_broadcast_through_a_pipe_never_logs_the_key() {
    let d = scratch("pipe");
    let key_hex = "8f3a1c5e9b2d4f6071a8c3e5d7f90b1d2e4f6a8c0b1d3e5f7a9c1e3f5b7d9e1f";
    std::fs::write(d.join("psk.hex"), format!("{key_hex}\n")).unwrap();
    let data = tenbit_tests::data_dir().join("llm");
    let prompt = std::fs::read_to_string(data.join("40-mixture-math.prompt.txt")).unwrap();
    let resp = data.join("40-mixture-math.response.txt");
    let text = std::fs::read(&resp).unwrap();
    let common = [
        "--port",
        "-",
        "--link",
        "lora-sf9",
        "--broadcast",
        "--parity",
        "50",
        "--no-pace",
        "--mtu",
        "58",
        "-vvv",
    ];
    let mut listener = Command::new(bin("tenbit-edge"))
        .arg("listen")
        .args(common)
        .args(["--count", "1", "--prompt", &prompt, "--key-file"])
        .arg(d.join("psk.hex"))
        .arg("--out-dir")
        .arg(d.join("out"))
        .env("TENBIT_MODEL", model_path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut send = Command::new(bin("tenbit"))
        .arg("send")
        .args(common)
        .args(["--prompt", &prompt, "--key-file"])
        .arg(d.join("psk.hex"))
        .arg("--epoch-file")
        .arg(d.join("epoch"))
        .arg(&resp)
        .env("TENBIT_MODEL", model_path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pipe between them, keeping a copy of what went "on air".
    let mut from = send.stdout.take().unwrap();
    let mut to = listener.stdin.take().unwrap();
    let pipe = std::thread::spawn(move || {
        let mut wire = Vec::new();
        from.read_to_end(&mut wire).unwrap();
        to.write_all(&wire).unwrap();
        wire
    });
    let sent = send.wait_with_output().unwrap();
    let wire = pipe.join().unwrap();
    let got = listener.wait_with_output().unwrap();
    let (se, le) = (
        String::from_utf8_lossy(&sent.stderr).to_lowercase(),
        String::from_utf8_lossy(&got.stderr).to_lowercase(),
    );
    assert!(sent.status.success(), "send: {se}");
    assert!(got.status.success(), "listen: {le}");
    assert_eq!(std::fs::read(d.join("out/msg-00001.txt")).unwrap(), text);
    assert!(!wire.is_empty() && wire.ends_with(&[0]));
    for (who, log) in [("send", &se), ("listen", &le)] {
        assert!(!log.is_empty(), "{who} logged nothing at -vvv");
        for w in key_hex.as_bytes().windows(12) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!log.contains(w), "{who} logged part of the key: {w}");
        }
    }
    // The frame itself (what an unsealed link would carry) does not appear on the wire.
    let frame = Command::new(bin("tenbit"))
        .args(["encode", "-q", "--prompt", &prompt])
        .arg(&resp)
        .env("TENBIT_MODEL", model_path())
        .output()
        .unwrap();
    assert!(frame.status.success());
    assert!(frame.stdout.len() > 32);
    let probe = &frame.stdout[8..24];
    assert!(
        !wire.windows(probe.len()).any(|w| w == probe),
        "frame bytes in clear on a sealed link"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn kiss_over_tcp_ports_between_the_real_binaries() {
    // Two TCP connections joined by a relay stand in for a pair of networked KISS TNCs
    // (`--port tcp:HOST:PORT`); both ends frame with KISS, the relay only copies bytes.
    use std::net::TcpListener;
    let srv = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp:{}", srv.local_addr().unwrap());
    let relay = std::thread::spawn(move || {
        let (a, _) = srv.accept().unwrap();
        let (b, _) = srv.accept().unwrap();
        let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let (mut a, mut b) = (a, b);
        let t = std::thread::spawn(move || std::io::copy(&mut a, &mut b2));
        let _ = std::io::copy(&mut b, &mut a2);
        let _ = t.join();
    });
    let out = scratch("kiss-tcp");
    let listener = Command::new(bin("tenbit-edge"))
        .args([
            "listen", "--raw", "--count", "1", "--link", "kiss", "--port", &addr,
        ])
        .arg("--out-dir")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let frame: Vec<u8> = (0..300u32).map(|i| (i * 7 + 0xC0) as u8).collect(); // FEND/FESC inside
    let sent = tenbit_tests::run(
        &bin("tenbit"),
        &["send", "--frame", "--link", "kiss", "--port", &addr],
        &frame,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let got = listener.wait_with_output().unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(out.join("msg-00001.tb")).unwrap(), frame);
    drop(relay);
}
