//! Link options and port opening shared by `tenbit send` and `tenbit-edge listen`.
//!
//! Both ends must agree on the profile, MTU, mode and key; everything else is local. A port of
//! `-` is stdin/stdout, so the whole path can be piped or tested without hardware.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tenbit_link::io::{open_serial, stdio_port, LinkConfig, Mode};
use tenbit_link::profile::LinkProfile;
use tenbit_link::seal::Key;

/// A byte stream to a radio modem or serial cable.
pub trait Port: Read + Write + Send {}
impl<T: Read + Write + Send> Port for T {}

#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    /// Serial device of the cable or radio modem (e.g. /dev/ttyUSB0, /dev/ttyAMA0), or '-' for
    /// stdin/stdout.
    #[arg(long, short = 'P', env = "TENBIT_PORT", value_name = "DEV")]
    pub port: String,
    /// Link profile: serial-<baud>, or lora-sf<7..12>[-bw125|250|500][-cr4/5..8][-eu868|-us915|-none].
    /// Sets packet size, airtime model and duty-cycle pacing. Both ends must use the same.
    #[arg(
        long,
        short = 'L',
        default_value = "serial-115200",
        value_name = "PROFILE"
    )]
    pub link: LinkProfile,
    /// UART speed to the device (default: the profile's baud for serial, 9600 for LoRa modems).
    #[arg(long, value_name = "BAUD")]
    pub baud: Option<u32>,
    /// Largest packet on the wire (default: the profile's; LoRa modems often need 58 or 240).
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<usize>,
    /// One-way link: send Reed-Solomon parity instead of waiting for acknowledgements.
    #[arg(long)]
    pub broadcast: bool,
    /// Parity overhead in percent for --broadcast.
    #[arg(long, default_value_t = 50, value_name = "PERCENT")]
    pub parity: u8,
    /// Pre-shared key file (64 hex chars): frames are encrypted and authenticated
    /// (ChaCha20-Poly1305); unauthenticated frames are dropped. Also TENBIT_KEY_FILE.
    #[arg(long, env = "TENBIT_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Where the sender persists its boot epoch (nonce uniqueness across reboots).
    #[arg(long, value_name = "FILE")]
    pub epoch_file: Option<PathBuf>,
    /// Do not wait for duty-cycle limits (test benches only; breaks radio regulations).
    #[arg(long)]
    pub no_pace: bool,
}

impl LinkArgs {
    pub fn config(&self) -> Result<LinkConfig> {
        let mut cfg = LinkConfig::new(self.link);
        if let Some(m) = self.mtu {
            cfg.mtu = m;
        }
        if self.broadcast {
            cfg.mode = Mode::Broadcast {
                parity_percent: self.parity,
            };
        }
        cfg.pace = !self.no_pace;
        if let Some(kf) = &self.key_file {
            let text = std::fs::read_to_string(kf)
                .with_context(|| format!("cannot read key file {}", kf.display()))?;
            // The key's bytes never reach a log line: Key's Debug is redacted.
            cfg.key = Some(Key::from_hex(&text).map_err(|_| {
                anyhow::anyhow!("key file {} must hold 64 hex characters", kf.display())
            })?);
            cfg.epoch_file = Some(self.epoch_file.clone().unwrap_or_else(default_epoch_file));
        }
        Ok(cfg)
    }

    /// Open the port (a clear error for a missing or dead device).
    pub fn open(&self) -> Result<Box<dyn Port>> {
        if self.port == "-" {
            return Ok(Box::new(stdio_port()));
        }
        let baud = self.baud.unwrap_or(match self.link {
            LinkProfile::Serial { baud } => baud,
            LinkProfile::Lora(_) => 9600,
        });
        Ok(Box::new(SendPort(open_serial(&self.port, baud)?)))
    }
}

/// `serialport`'s boxed port is `Send`; this wrapper states it for the `Port` trait object.
struct SendPort(Box<dyn serialport::SerialPort>);

impl Read for SendPort {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SendPort {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn default_epoch_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tenbit/epoch")
}

/// Human-readable airtime.
pub fn fmt_airtime(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else {
        format!("{:.1} ms", us as f64 / 1e3)
    }
}

/// How long a listener waits on an idle port before checking again.
pub const POLL: Duration = Duration::from_millis(100);
