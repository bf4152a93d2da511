//! RNode radios: the configuration tenbit sends is the reference host's (`RNodeInterface` of
//! PyPI rns 1.5.7, run here), and a radio that answers wrong or not at all is a clear error.
//!
//! No RNode hardware runs here, so the radio side of the handshake tests is a small emulation of
//! the RNode firmware's host protocol on a real pty (detect response, firmware version, echo of
//! each applied setting), with the faults of bad hardware switched in. The encoding itself is
//! checked against the reference implementation, not against this emulation.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use tenbit_link::io::open_serial;
use tenbit_link::kiss::{self, KissDecoder};
use tenbit_link::rnode::{self, configure, RadioConfig, RnodeError, Setting};
use tenbit_link::LinkError;

#[path = "support/rns.rs"]
mod rns;

fn cfg() -> RadioConfig {
    RadioConfig {
        frequency_hz: 868_100_000,
        bandwidth_hz: 125_000,
        sf: 9,
        cr: 5,
        txpower_dbm: 14,
    }
}

fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut d = KissDecoder::<64>::new();
    bytes
        .iter()
        .filter_map(|&b| {
            d.push(b)
                .and_then(|r| r.ok())
                .map(|f| (f.command, f.data.to_vec()))
        })
        .collect()
}

#[test]
fn configuration_matches_the_reference_rnode_interface() {
    let py = rns::python();
    let script = r#"
from RNS.Interfaces.RNodeInterface import RNodeInterface
class W:
    def __init__(s): s.b = b""
    def write(s, d): s.b += d; return len(d)
o = RNodeInterface.__new__(RNodeInterface)
o.serial = W(); o.frequency = 868100000; o.bandwidth = 125000; o.txpower = 14; o.sf = 9; o.cr = 5
o.st_alock = None; o.lt_alock = None; o.use_ble = False
o.detect(); o.initRadio(); print(o.serial.b.hex())
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let mut ours = vec![0u8; 256];
    let n = RadioConfig::write_detect(&mut ours).unwrap();
    let m = cfg().write_config(&mut ours[n..]).unwrap();
    ours.truncate(n + m);
    assert_eq!(
        frames(&ours),
        frames(&reference),
        "KISS command sequence differs from rns"
    );
    assert_eq!(frames(&reference).len(), 10);
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Silent,
    WrongSf,
    NoStateEcho,
    InitError,
    OldFirmware,
}

/// The radio end of a pty: answers like RNode firmware, with `fault` switched in.
fn radio(mut port: TTYPort, fault: Fault, stop_after: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        port.set_timeout(Duration::from_millis(20)).unwrap();
        let mut d = KissDecoder::<64>::new();
        let mut buf = [0u8; 256];
        let start = Instant::now();
        let send = |port: &mut TTYPort, cmd: u8, data: &[u8]| {
            let mut out = [0u8; 32];
            let n = kiss::encode(cmd, data, &mut out).unwrap();
            let _ = port.write_all(&out[..n]);
        };
        while start.elapsed() < stop_after {
            let n = match port.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            };
            if fault == Fault::Silent {
                continue;
            }
            for &b in &buf[..n] {
                let Some(Ok(f)) = d.push(b) else { continue };
                let (cmd, data) = (f.command, f.data.to_vec());
                match cmd {
                    rnode::CMD_DETECT => send(&mut port, cmd, &[rnode::DETECT_RESP]),
                    rnode::CMD_FW_VERSION => {
                        let v = if fault == Fault::OldFirmware {
                            [1, 40]
                        } else {
                            [1, 74]
                        };
                        send(&mut port, cmd, &v)
                    }
                    rnode::CMD_SF if fault == Fault::WrongSf => {
                        send(&mut port, cmd, &[data[0] + 1])
                    }
                    rnode::CMD_RADIO_STATE if fault == Fault::NoStateEcho => {}
                    rnode::CMD_RADIO_STATE if fault == Fault::InitError => {
                        send(&mut port, rnode::CMD_ERROR, &[0x01])
                    }
                    rnode::CMD_FREQUENCY
                    | rnode::CMD_BANDWIDTH
                    | rnode::CMD_TXPOWER
                    | rnode::CMD_SF
                    | rnode::CMD_CR
                    | rnode::CMD_RADIO_STATE => send(&mut port, cmd, &data),
                    _ => {}
                }
            }
        }
    })
}

fn handshake(fault: Fault) -> (Result<rnode::RadioReport, LinkError>, Duration) {
    let (master, slave) = TTYPort::pair().unwrap();
    let name = slave.name().unwrap();
    let r = radio(master, fault, Duration::from_secs(5));
    let mut port = open_serial(&name, 115_200).unwrap();
    let t = Instant::now();
    let res = configure(&mut port, &cfg(), Duration::from_millis(1500));
    let took = t.elapsed();
    drop(port);
    drop(slave);
    let _ = r.join();
    (res, took)
}

#[test]
fn a_working_radio_is_configured_and_confirms_every_setting() {
    let (res, _) = handshake(Fault::None);
    let report = res.unwrap();
    assert_eq!(report.sf, Some(9));
    assert_eq!(report.bandwidth_hz, Some(125_000));
    assert_eq!(report.firmware, Some((1, 74)));
    assert_eq!(
        cfg().profile().unwrap().to_string(),
        "lora-sf9-bw125-cr4/5-eu868"
    );
}

#[test]
fn a_radio_that_answers_wrong_or_not_at_all_is_a_clear_error() {
    let (res, took) = handshake(Fault::Silent);
    let e = res.unwrap_err();
    assert!(
        matches!(e, LinkError::Rnode(RnodeError::NotDetected { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("no RNode answered"), "{e}");
    assert!(took < Duration::from_secs(3), "bounded: {took:?}");

    let e = handshake(Fault::WrongSf).0.unwrap_err();
    assert!(
        matches!(
            e,
            LinkError::Rnode(RnodeError::Mismatch {
                setting: Setting::SpreadingFactor,
                wanted: 9,
                reported: 10
            })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("spreading factor 10"), "{e}");

    let e = handshake(Fault::NoStateEcho).0.unwrap_err();
    assert!(
        matches!(
            e,
            LinkError::Rnode(RnodeError::NoAnswer {
                setting: Setting::RadioState,
                ..
            })
        ),
        "{e:?}"
    );
    let e = handshake(Fault::InitError).0.unwrap_err();
    assert!(
        matches!(e, LinkError::Rnode(RnodeError::Device(1))),
        "{e:?}"
    );
    let e = handshake(Fault::OldFirmware).0.unwrap_err();
    assert!(
        matches!(
            e,
            LinkError::Rnode(RnodeError::Firmware {
                major: 1,
                minor: 40
            })
        ),
        "{e:?}"
    );
}
