//! Link options and port opening shared by `tenbit send` and `tenbit-edge listen`.
//!
//! Both ends must agree on the profile, MTU, mode and key; everything else is local. A port of
//! `-` is stdin/stdout, so the whole path can be piped or tested without hardware; a port of
//! `tcp:HOST:PORT` is a TCP stream (e.g. a KISS TNC's TCP port).
//!
//! `--link` takes a profile (transparent modem or cable: COBS framing), `kiss[+PROFILE]` (a
//! KISS TNC: KISS framing, only the packet goes on air), or `rnode:DEV` (an RNode LoRa radio:
//! tenbit configures it with `--freq/--bw/--sf/--cr/--txp`, checks what it reports back, and
//! takes the airtime model from the same parameters).

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tenbit_link::io::{open_serial, open_tcp, stdio_port, LinkConfig, Mode};
use tenbit_link::packet::Framing;
use tenbit_link::profile::LinkProfile;
use tenbit_link::rnode::RadioConfig;
use tenbit_link::seal::Key;

/// What `--link` names: the kind of device and its airtime model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// A transparent modem or cable (COBS framing) with this profile.
    Profile(LinkProfile),
    /// A KISS TNC (KISS framing on the port) with this airtime profile.
    Kiss(LinkProfile),
    /// An RNode radio on this serial device.
    Rnode(String),
}

impl FromStr for LinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |e: tenbit_link::ProfileError| e.to_string();
        if let Some(dev) = s.strip_prefix("rnode:") {
            if dev.is_empty() {
                return Err("rnode:DEV needs the radio's serial device".into());
            }
            return Ok(LinkSpec::Rnode(dev.to_string()));
        }
        if s == "kiss" {
            return Ok(LinkSpec::Kiss(LinkProfile::Serial { baud: 115_200 }));
        }
        if let Some(p) = s.strip_prefix("kiss+") {
            return p.parse().map(LinkSpec::Kiss).map_err(bad);
        }
        s.parse().map(LinkSpec::Profile).map_err(bad)
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkSpec::Profile(p) => write!(f, "{p}"),
            LinkSpec::Kiss(p) => write!(f, "kiss+{p}"),
            LinkSpec::Rnode(d) => write!(f, "rnode:{d}"),
        }
    }
}

/// RNode radio parameters (`--link rnode:DEV`).
#[derive(Debug, Clone, Args)]
pub struct RnodeArgs {
    /// RNode carrier frequency in Hz (e.g. 868.1e6; 863-870 MHz is paced as EU868, 902-928 MHz
    /// as US915).
    #[arg(long, value_name = "HZ", value_parser = parse_hz)]
    pub freq: Option<u32>,
    /// RNode bandwidth in kHz (125, 250, 500).
    #[arg(long, value_name = "KHZ", default_value_t = 125)]
    pub bw: u32,
    /// RNode spreading factor (7..12).
    #[arg(long, value_name = "SF", default_value_t = 9)]
    pub sf: u8,
    /// RNode coding rate denominator (5..8 for 4/5..4/8).
    #[arg(long, value_name = "CR", default_value_t = 5)]
    pub cr: u8,
    /// RNode transmit power in dBm.
    #[arg(long, value_name = "DBM", default_value_t = 14)]
    pub txp: u8,
}

fn parse_hz(s: &str) -> Result<u32, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a frequency: {s}"))?;
    if !(1.0..4.3e9).contains(&v) {
        return Err(format!("frequency out of range: {s}"));
    }
    Ok(v.round() as u32)
}

impl RnodeArgs {
    /// The radio configuration (needs `--freq`).
    pub fn radio(&self) -> Result<RadioConfig> {
        let frequency_hz = self
            .freq
            .context("--link rnode:DEV needs --freq (e.g. --freq 868.1e6)")?;
        let cfg = RadioConfig {
            frequency_hz,
            bandwidth_hz: self.bw.saturating_mul(1000),
            sf: self.sf,
            cr: self.cr,
            txpower_dbm: self.txp,
        };
        cfg.validate().map_err(tenbit_link::LinkError::from)?;
        Ok(cfg)
    }
}

/// A byte stream to a radio modem or serial cable.
pub trait Port: Read + Write + Send {}
impl<T: Read + Write + Send> Port for T {}

/// Where and how frames travel: port, profile or device kind, MTU, mode, key.
#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    /// Serial device of the cable, radio modem or KISS TNC (e.g. /dev/ttyUSB0, /dev/ttyAMA0),
    /// tcp:HOST:PORT for a TNC's TCP port, or '-' for stdin/stdout. Not needed with
    /// --link rnode:DEV.
    #[arg(
        long,
        short = 'P',
        env = "TENBIT_PORT",
        value_name = "DEV",
        default_value = ""
    )]
    pub port: String,
    /// Link: a profile, serial-<baud> or lora-sf<7..12>[-bw125|250|500][-cr4/5..8][-eu868|-us915|-none]
    /// (cable or transparent modem); kiss[+PROFILE] (KISS TNC); or rnode:DEV (RNode LoRa radio,
    /// with --freq/--bw/--sf/--cr/--txp). Sets framing, packet size, airtime model and
    /// duty-cycle pacing. Both ends must use the same.
    #[arg(
        long,
        short = 'L',
        default_value = "serial-115200",
        value_name = "LINK"
    )]
    pub link: LinkSpec,
    // RNode radio settings (their own flags carry the help text; a doc comment here would
    // replace clap's group description).
    #[command(flatten)]
    #[allow(missing_docs)]
    pub rnode: RnodeArgs,
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
    /// The airtime profile: the one named, or an RNode's from its radio parameters.
    pub fn profile(&self) -> Result<LinkProfile> {
        Ok(match &self.link {
            LinkSpec::Profile(p) | LinkSpec::Kiss(p) => *p,
            LinkSpec::Rnode(_) => self
                .rnode
                .radio()?
                .profile()
                .map_err(tenbit_link::LinkError::from)?,
        })
    }

    /// The port's name, for messages.
    pub fn port_name(&self) -> &str {
        match &self.link {
            LinkSpec::Rnode(d) => d,
            _ => &self.port,
        }
    }

    /// The link configuration both ends must agree on, plus local settings.
    pub fn config(&self) -> Result<LinkConfig> {
        let mut cfg = LinkConfig::new(self.profile()?);
        cfg.framing = match self.link {
            LinkSpec::Profile(_) => Framing::Cobs,
            LinkSpec::Kiss(_) => Framing::Kiss,
            LinkSpec::Rnode(_) => Framing::Rnode,
        };
        // KISS MTUs count packet bytes (the TNC strips the framing): at most one LoRa packet.
        if self.mtu.is_none() && cfg.framing.is_kiss() {
            cfg.mtu = cfg
                .mtu
                .min(tenbit_link::MAX_RAW_PACKET + usize::from(cfg.framing == Framing::Rnode));
        }
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

    /// Open the port (a clear error for a missing or dead device). An RNode is detected and
    /// configured here; an RNode that answers wrong or not at all is a link error.
    pub fn open(&self) -> Result<Box<dyn Port>> {
        if let LinkSpec::Rnode(dev) = &self.link {
            let radio = self.rnode.radio()?;
            let mut port = open_serial(dev, self.baud.unwrap_or(115_200))?;
            let report = tenbit_link::rnode::configure(&mut port, &radio, Duration::from_secs(5))
                .with_context(|| format!("configuring the RNode on {dev} failed"))?;
            tracing::info!(
                device = %dev,
                firmware = ?report.firmware,
                profile = %self.profile()?,
                "RNode configured"
            );
            return Ok(Box::new(SendPort(port)));
        }
        if self.port.is_empty() {
            anyhow::bail!("--port is required (a serial device, tcp:HOST:PORT or '-')");
        }
        if self.port == "-" {
            return Ok(Box::new(stdio_port()));
        }
        if let Some(addr) = self.port.strip_prefix("tcp:") {
            return Ok(Box::new(open_tcp(addr)?));
        }
        let baud = self.baud.unwrap_or(match self.profile()? {
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
