//! RNode LoRa radios (<https://unsigned.io/rnode>): KISS on a USB serial port, plus radio
//! commands. The command set and the order of the configuration handshake follow the reference
//! host implementation, `RNodeInterface` of PyPI `rns` 1.5.7 (`RNS/Interfaces/RNodeInterface.py`):
//!
//! 1. detect: `FEND 08 73 FEND 50 00 FEND 48 00 FEND 49 00 FEND`; the radio answers
//!    `FEND 08 46 FEND` plus its firmware version (`50 maj min`), platform and MCU;
//! 2. configure: frequency (`01`, Hz, u32 big-endian), bandwidth (`02`, Hz, u32 BE), TX power
//!    (`03`, dBm), spreading factor (`04`), coding rate (`05`, 5..8 for 4/5..4/8), radio state
//!    on (`06 01`); every value escaped like KISS data;
//! 3. validate: the radio echoes each setting as it applied it; any difference (frequency off by
//!    more than 100 Hz, another bandwidth, TX power, SF, coding rate or state) aborts, as
//!    `validateRadioState` does. An error frame (`90 code`) aborts with the radio's code.
//!
//! Data then travels as KISS data frames; the radio transmits each as one LoRa packet behind a
//! 1-byte RNode header (see [`super::packet::Framing::Rnode`]).
//!
//! The parameters that configure the radio are the ones that drive the airtime model
//! ([`RadioConfig::profile`]), so pacing and the radio cannot disagree.

use super::kiss::{self, Frame};
use super::profile::{LinkProfile, LoraParams, Region};

/// Set/report the frequency (Hz, u32 big-endian).
pub const CMD_FREQUENCY: u8 = 0x01;
/// Set/report the bandwidth (Hz, u32 big-endian).
pub const CMD_BANDWIDTH: u8 = 0x02;
/// Set/report the TX power (dBm).
pub const CMD_TXPOWER: u8 = 0x03;
/// Set/report the spreading factor.
pub const CMD_SF: u8 = 0x04;
/// Set/report the coding rate (5..8).
pub const CMD_CR: u8 = 0x05;
/// Set/report the radio state.
pub const CMD_RADIO_STATE: u8 = 0x06;
/// Detect request/response.
pub const CMD_DETECT: u8 = 0x08;
/// The host leaves.
pub const CMD_LEAVE: u8 = 0x0A;
/// Flow control: the radio is ready for the next packet.
pub const CMD_READY: u8 = 0x0F;
/// Platform query/report.
pub const CMD_PLATFORM: u8 = 0x48;
/// MCU query/report.
pub const CMD_MCU: u8 = 0x49;
/// Firmware version query/report.
pub const CMD_FW_VERSION: u8 = 0x50;
/// Error report.
pub const CMD_ERROR: u8 = 0x90;
/// Detect request byte.
pub const DETECT_REQ: u8 = 0x73;
/// Detect response byte.
pub const DETECT_RESP: u8 = 0x46;
/// Radio state: on.
pub const RADIO_STATE_ON: u8 = 0x01;
/// Oldest firmware the reference host accepts (1.52).
pub const MIN_FIRMWARE: (u8, u8) = (1, 52);

/// Which radio setting a mismatch is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Frequency, Hz.
    Frequency,
    /// Bandwidth, Hz.
    Bandwidth,
    /// TX power, dBm.
    TxPower,
    /// Spreading factor.
    SpreadingFactor,
    /// Coding rate denominator.
    CodingRate,
    /// Radio state (1 = on).
    RadioState,
}

impl core::fmt::Display for Setting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Setting::Frequency => "frequency (Hz)",
            Setting::Bandwidth => "bandwidth (Hz)",
            Setting::TxPower => "TX power (dBm)",
            Setting::SpreadingFactor => "spreading factor",
            Setting::CodingRate => "coding rate",
            Setting::RadioState => "radio state",
        })
    }
}

/// Errors of the RNode configuration handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RnodeError {
    /// The device did not answer the detect request: not an RNode, wrong port or speed, or
    /// not powered.
    #[error("no RNode answered on the port (no detect response within {waited_ms} ms)")]
    NotDetected {
        /// How long we waited.
        waited_ms: u64,
    },
    /// The radio did not report a setting back after configuration.
    #[error("the RNode did not confirm its {setting} within {waited_ms} ms")]
    NoAnswer {
        /// The first unconfirmed setting.
        setting: Setting,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The radio applied another value than requested (unsupported by the hardware).
    #[error("the RNode reports {setting} {reported}, but {wanted} was requested (does the hardware support it?)")]
    Mismatch {
        /// Which setting.
        setting: Setting,
        /// Requested value.
        wanted: u32,
        /// Value the radio reported.
        reported: u32,
    },
    /// The radio reported an error code (`0x01` radio init failed, `0x02` TX failed,
    /// `0x03` EEPROM locked, `0x04` queue full, `0x05` memory low, `0x06` modem timeout).
    #[error("the RNode reported error 0x{0:02x}")]
    Device(u8),
    /// Firmware older than [`MIN_FIRMWARE`].
    #[error("RNode firmware {major}.{minor} is too old (need 1.52 or later)")]
    Firmware {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// A requested parameter is out of range for an RNode or for tenbit's airtime model.
    #[error("invalid RNode radio parameter: {setting} {value}")]
    BadParameter {
        /// Which setting.
        setting: Setting,
        /// The value.
        value: u32,
    },
}

/// The radio settings tenbit asks an RNode for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RadioConfig {
    /// Carrier frequency in Hz (137 MHz .. 3 GHz).
    pub frequency_hz: u32,
    /// Bandwidth in Hz (tenbit's airtime model: 125000, 250000 or 500000).
    pub bandwidth_hz: u32,
    /// Spreading factor (7..12).
    pub sf: u8,
    /// Coding-rate denominator (5..8 for 4/5..4/8).
    pub cr: u8,
    /// Transmit power in dBm (0..37, what the hardware allows).
    pub txpower_dbm: u8,
}

impl RadioConfig {
    /// Checks ranges (those of `RNodeInterface`, narrowed to what the airtime model covers).
    pub fn validate(&self) -> Result<(), RnodeError> {
        let bad = |setting, value| Err(RnodeError::BadParameter { setting, value });
        if !(137_000_000..=3_000_000_000).contains(&self.frequency_hz) {
            return bad(Setting::Frequency, self.frequency_hz);
        }
        if !matches!(self.bandwidth_hz, 125_000 | 250_000 | 500_000) {
            return bad(Setting::Bandwidth, self.bandwidth_hz);
        }
        if !(7..=12).contains(&self.sf) {
            return bad(Setting::SpreadingFactor, u32::from(self.sf));
        }
        if !(5..=8).contains(&self.cr) {
            return bad(Setting::CodingRate, u32::from(self.cr));
        }
        if self.txpower_dbm > 37 {
            return bad(Setting::TxPower, u32::from(self.txpower_dbm));
        }
        Ok(())
    }

    /// The regulatory region of the frequency: 863-870 MHz is EU868 (1% duty cycle), 902-928
    /// MHz is US915 (400 ms dwell), anything else is unrestricted.
    pub fn region(&self) -> Region {
        match self.frequency_hz {
            863_000_000..=870_000_000 => Region::Eu868,
            902_000_000..=928_000_000 => Region::Us915,
            _ => Region::Unrestricted,
        }
    }

    /// The airtime profile of these parameters (8-symbol preamble, as the RNode firmware).
    pub fn profile(&self) -> Result<LinkProfile, RnodeError> {
        self.validate()?;
        Ok(LinkProfile::Lora(LoraParams {
            sf: self.sf,
            bw_khz: (self.bandwidth_hz / 1000) as u16,
            cr: self.cr,
            preamble: 8,
            region: self.region(),
        }))
    }

    /// Writes the detect request (with firmware, platform and MCU queries) into `out`.
    pub fn write_detect(out: &mut [u8]) -> Result<usize, super::PacketError> {
        let mut n = 0;
        for (cmd, arg) in [
            (CMD_DETECT, DETECT_REQ),
            (CMD_FW_VERSION, 0),
            (CMD_PLATFORM, 0),
            (CMD_MCU, 0),
        ] {
            n += kiss::encode(cmd, &[arg], &mut out[n..])?;
        }
        Ok(n)
    }

    /// Writes the configuration commands, in the reference host's order, into `out`.
    pub fn write_config(&self, out: &mut [u8]) -> Result<usize, super::PacketError> {
        let mut n = 0;
        n += kiss::encode(
            CMD_FREQUENCY,
            &self.frequency_hz.to_be_bytes(),
            &mut out[n..],
        )?;
        n += kiss::encode(
            CMD_BANDWIDTH,
            &self.bandwidth_hz.to_be_bytes(),
            &mut out[n..],
        )?;
        n += kiss::encode(CMD_TXPOWER, &[self.txpower_dbm], &mut out[n..])?;
        n += kiss::encode(CMD_SF, &[self.sf], &mut out[n..])?;
        n += kiss::encode(CMD_CR, &[self.cr], &mut out[n..])?;
        n += kiss::encode(CMD_RADIO_STATE, &[RADIO_STATE_ON], &mut out[n..])?;
        Ok(n)
    }
}

/// What the radio has reported so far (fed with every non-data KISS frame).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RadioReport {
    /// A detect response arrived.
    pub detected: bool,
    /// Firmware version.
    pub firmware: Option<(u8, u8)>,
    /// Reported frequency, Hz.
    pub frequency_hz: Option<u32>,
    /// Reported bandwidth, Hz.
    pub bandwidth_hz: Option<u32>,
    /// Reported TX power, dBm.
    pub txpower_dbm: Option<u8>,
    /// Reported spreading factor.
    pub sf: Option<u8>,
    /// Reported coding rate.
    pub cr: Option<u8>,
    /// Reported radio state.
    pub state: Option<u8>,
    /// Last error code reported.
    pub error: Option<u8>,
    /// Frames with commands this parser does not know (statistics, display, ...), ignored.
    pub other: u32,
}

fn be32(d: &[u8]) -> Option<u32> {
    (d.len() == 4).then(|| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

impl RadioReport {
    /// Takes in one KISS frame from the radio. Data frames and malformed reports are ignored
    /// (a wrong-length report leaves the setting unconfirmed, so validation fails cleanly).
    pub fn on_frame(&mut self, f: &Frame<'_>) {
        let one = f.data.first().copied().filter(|_| f.data.len() == 1);
        match f.command {
            kiss::CMD_DATA => {}
            CMD_DETECT => self.detected = one == Some(DETECT_RESP),
            CMD_FW_VERSION if f.data.len() == 2 => self.firmware = Some((f.data[0], f.data[1])),
            CMD_FREQUENCY => self.frequency_hz = be32(f.data),
            CMD_BANDWIDTH => self.bandwidth_hz = be32(f.data),
            CMD_TXPOWER => self.txpower_dbm = one,
            CMD_SF => self.sf = one,
            CMD_CR => self.cr = one,
            CMD_RADIO_STATE => self.state = one,
            CMD_ERROR => self.error = one.or(Some(0xFF)),
            _ => self.other = self.other.saturating_add(1),
        }
    }

    /// After detection: the firmware, if it reported one, is new enough.
    pub fn check_firmware(&self) -> Result<(), RnodeError> {
        match self.firmware {
            Some((major, minor)) if (major, minor) < MIN_FIRMWARE => {
                Err(RnodeError::Firmware { major, minor })
            }
            _ => Ok(()),
        }
    }

    /// Compares the reports with `cfg`: `Ok(true)` when every setting is confirmed, `Ok(false)`
    /// while some are still missing, an error on a mismatch or a device error.
    pub fn check(&self, cfg: &RadioConfig) -> Result<bool, RnodeError> {
        if let Some(e) = self.error {
            return Err(RnodeError::Device(e));
        }
        Ok(self.first_missing(cfg)?.is_none())
    }

    /// The first setting not yet reported back (for the timeout message), or a mismatch.
    pub fn first_missing(&self, cfg: &RadioConfig) -> Result<Option<Setting>, RnodeError> {
        let checks = [
            (Setting::Frequency, cfg.frequency_hz, self.frequency_hz, 100),
            (Setting::Bandwidth, cfg.bandwidth_hz, self.bandwidth_hz, 0),
            (
                Setting::TxPower,
                u32::from(cfg.txpower_dbm),
                self.txpower_dbm.map(u32::from),
                0,
            ),
            (
                Setting::SpreadingFactor,
                u32::from(cfg.sf),
                self.sf.map(u32::from),
                0,
            ),
            (
                Setting::CodingRate,
                u32::from(cfg.cr),
                self.cr.map(u32::from),
                0,
            ),
            (
                Setting::RadioState,
                u32::from(RADIO_STATE_ON),
                self.state.map(u32::from),
                0,
            ),
        ];
        let mut missing = None;
        for (setting, wanted, reported, tolerance) in checks {
            match reported {
                Some(r) if r.abs_diff(wanted) > tolerance => {
                    return Err(RnodeError::Mismatch {
                        setting,
                        wanted,
                        reported: r,
                    })
                }
                Some(_) => {}
                None => missing = missing.or(Some(setting)),
            }
        }
        Ok(missing)
    }
}

/// Detects and configures an RNode on `io` (a serial port with a read timeout), then checks
/// every setting the radio reports back, as the reference host does. The detect request is
/// repeated every 500 ms (ESP32 boards reboot when the port opens) until `timeout`; the
/// configuration must be confirmed within `timeout` after that.
#[cfg(feature = "std")]
pub fn configure<IO: std::io::Read + std::io::Write>(
    io: &mut IO,
    cfg: &RadioConfig,
    timeout: std::time::Duration,
) -> Result<RadioReport, super::LinkError> {
    use super::port::{FromStd, Incoming, PacketPort};
    use std::time::{Duration, Instant};
    cfg.validate()?;
    let mut port: PacketPort<FromStd<&mut IO>, 64> =
        PacketPort::new(FromStd(io), super::packet::Framing::Rnode);
    let mut report = RadioReport::default();
    let mut buf = [0u8; 96];
    let ms = |t: Duration| t.as_millis() as u64;
    let start = Instant::now();
    let mut last_detect: Option<Instant> = None;
    while !report.detected {
        if start.elapsed() >= timeout {
            return Err(RnodeError::NotDetected {
                waited_ms: ms(timeout),
            }
            .into());
        }
        if last_detect.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            let n = RadioConfig::write_detect(&mut buf)?;
            port.write_bytes(&buf[..n])?;
            last_detect = Some(Instant::now());
        }
        while let Some(inc) = port.poll()? {
            if let Incoming::Command(f) = inc {
                report.on_frame(&f);
            }
        }
    }
    // Firmware, platform and MCU answers follow the detect response.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(100) {
        while let Some(inc) = port.poll()? {
            if let Incoming::Command(f) = inc {
                report.on_frame(&f);
            }
        }
    }
    report.check_firmware()?;
    let n = cfg.write_config(&mut buf)?;
    port.write_bytes(&buf[..n])?;
    let start = Instant::now();
    loop {
        while let Some(inc) = port.poll()? {
            if let Incoming::Command(f) = inc {
                report.on_frame(&f);
            }
        }
        if report.check(cfg)? {
            return Ok(report);
        }
        if start.elapsed() >= timeout {
            let setting = report.first_missing(cfg)?.unwrap_or(Setting::RadioState);
            return Err(RnodeError::NoAnswer {
                setting,
                waited_ms: ms(timeout),
            }
            .into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RadioConfig {
        RadioConfig {
            frequency_hz: 868_100_000,
            bandwidth_hz: 125_000,
            sf: 9,
            cr: 5,
            txpower_dbm: 14,
        }
    }

    #[test]
    fn commands_and_profile() {
        let mut out = [0u8; 128];
        let n = RadioConfig::write_detect(&mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[
                0xC0, 0x08, 0x73, 0xC0, 0xC0, 0x50, 0x00, 0xC0, 0xC0, 0x48, 0x00, 0xC0, 0xC0, 0x49,
                0x00, 0xC0
            ]
        );
        let n = cfg().write_config(&mut out).unwrap();
        // 868.1 MHz = 0x33BE_27A0; 125 kHz = 0x0001_E848.
        assert_eq!(&out[..8], &[0xC0, 0x01, 0x33, 0xBE, 0x27, 0xA0, 0xC0, 0xC0]);
        assert_eq!(n, 7 + 7 + 4 * 4);
        assert_eq!(
            cfg().profile().unwrap().to_string(),
            "lora-sf9-bw125-cr4/5-eu868"
        );
        assert!(RadioConfig { sf: 6, ..cfg() }.profile().is_err());
    }

    #[test]
    fn report_validation() {
        let mut r = RadioReport::default();
        assert_eq!(r.check(&cfg()), Ok(false));
        for (c, d) in [
            (CMD_FREQUENCY, &868_100_050u32.to_be_bytes()[..]),
            (CMD_BANDWIDTH, &125_000u32.to_be_bytes()[..]),
            (CMD_TXPOWER, &[14][..]),
            (CMD_SF, &[9][..]),
            (CMD_CR, &[5][..]),
        ] {
            r.on_frame(&Frame {
                command: c,
                data: d,
            });
        }
        assert_eq!(r.first_missing(&cfg()), Ok(Some(Setting::RadioState)));
        r.on_frame(&Frame {
            command: CMD_RADIO_STATE,
            data: &[1],
        });
        assert_eq!(r.check(&cfg()), Ok(true));
        r.on_frame(&Frame {
            command: CMD_SF,
            data: &[10],
        });
        assert!(matches!(
            r.check(&cfg()),
            Err(RnodeError::Mismatch {
                setting: Setting::SpreadingFactor,
                wanted: 9,
                reported: 10
            })
        ));
        r.on_frame(&Frame {
            command: CMD_ERROR,
            data: &[1],
        });
        assert_eq!(r.check(&cfg()), Err(RnodeError::Device(1)));
        r.on_frame(&Frame {
            command: CMD_FW_VERSION,
            data: &[1, 40],
        });
        assert!(r.check_firmware().is_err());
    }
}
