//! `tenbit send` on the host and `tenbit-edge listen` on the board, as real processes talking
//! through real serial devices: two pseudo-terminal pairs joined by a relay thread stand in for
//! a null-modem cable (or two radio modems in transparent mode).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use tenbit_tests::{bin, model_path};

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

#[test]
fn send_and_listen_over_a_pty_cable() {
    let (ma, sa) = TTYPort::pair().expect("openpty");
    let (mb, sb) = TTYPort::pair().expect("openpty");
    let (pa, pb) = (sa.name().unwrap(), sb.name().unwrap());
    relay(
        ma.try_clone_native().unwrap(),
        mb.try_clone_native().unwrap(),
    );
    relay(mb, ma);
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
    drop((sa, sb));
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
}
