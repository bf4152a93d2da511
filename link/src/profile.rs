//! Link profiles, the LoRa time-on-air model and duty-cycle pacing.
//!
//! All arithmetic is integer (microseconds): the crate is float-free so that it builds and
//! behaves the same on every target, and the Semtech formula only needs rationals whose
//! denominators are powers of two for the supported bandwidths.

use core::fmt;
use core::str::FromStr;

use super::packet::{max_shard_payload, wire_len, DATA_HEADER};
use super::MAX_MTU;

/// Errors of link profiles and MTUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profile string or its parameters are invalid.
    #[error(
        "invalid link profile (try serial-115200 or lora-sf9[-bw125][-cr4/5][-eu868|-us915|-none])"
    )]
    Invalid,
    /// The MTU is too small to carry data or breaks the profile's dwell-time limit.
    #[error("MTU too small or above the profile's limit")]
    BadMtu,
}

/// Regulatory region of a LoRa link: what limits the transmitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// EU 863-870 MHz, g1 sub-band: 1% duty cycle (36 s of airtime per hour).
    Eu868,
    /// US 902-928 MHz, 125 kHz channels: 400 ms dwell time per packet, no duty cycle.
    Us915,
    /// No regulatory limit modelled (lab links, licensed bands).
    Unrestricted,
}

/// LoRa modem parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraParams {
    /// Spreading factor, 7..=12.
    pub sf: u8,
    /// Bandwidth in kHz: 125, 250 or 500.
    pub bw_khz: u16,
    /// Coding-rate denominator: 5..=8 for 4/5..4/8.
    pub cr: u8,
    /// Preamble length in symbols (8 on nearly every module).
    pub preamble: u16,
    /// Regulatory region.
    pub region: Region,
}

/// What kind of link the packets travel over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkProfile {
    /// UART / USB serial: 8N1, so 10 bits on the line per byte.
    Serial {
        /// Line rate in baud.
        baud: u32,
    },
    /// A LoRa modem in transparent mode behind a UART: each packet is one LoRa packet.
    Lora(LoraParams),
}

impl LoraParams {
    /// Symbol time in nanoseconds (exact for 125/250/500 kHz).
    pub fn symbol_ns(&self) -> u64 {
        (1u64 << self.sf) * 1_000_000_000 / (u64::from(self.bw_khz) * 1000)
    }

    /// Low-data-rate optimisation is mandated when a symbol lasts more than 16 ms.
    pub fn low_data_rate_optimize(&self) -> bool {
        self.symbol_ns() > 16_000_000
    }

    /// Time on air of one packet with `payload_len` bytes, in microseconds, per Semtech
    /// AN1200.13: explicit header, CRC on, `preamble` + 4.25 symbols of preamble.
    pub fn airtime_us(&self, payload_len: usize) -> u64 {
        let sf = i64::from(self.sf);
        let de = i64::from(self.low_data_rate_optimize());
        let pl = payload_len as i64;
        let num = 8 * pl - 4 * sf + 28 + 16; // CRC on (+16), explicit header (IH = 0)
        let den = 4 * (sf - 2 * de);
        let blocks = if num > 0 { (num + den - 1) / den } else { 0 };
        let payload_symbols = 8 + blocks as u64 * u64::from(self.cr);
        // (preamble + 4.25) symbols = (4 * preamble + 17) / 4 symbols.
        let quarter_symbols = 4 * u64::from(self.preamble) + 17 + 4 * payload_symbols;
        (quarter_symbols * self.symbol_ns()).div_ceil(4 * 1000)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if !(7..=12).contains(&self.sf)
            || !matches!(self.bw_khz, 125 | 250 | 500)
            || !(5..=8).contains(&self.cr)
            || self.preamble < 6
        {
            return Err(ProfileError::Invalid);
        }
        Ok(())
    }
}

impl LinkProfile {
    /// Time on the medium for one packet of `wire_bytes` bytes, in microseconds.
    pub fn airtime_us(&self, wire_bytes: usize) -> u64 {
        match self {
            LinkProfile::Serial { baud } => {
                (wire_bytes as u64 * 10 * 1_000_000).div_ceil(u64::from((*baud).max(1)))
            }
            LinkProfile::Lora(l) => l.airtime_us(wire_bytes),
        }
    }

    /// Allowed fraction of time on air, in parts per million (1_000_000 = no limit).
    pub fn duty_cycle_ppm(&self) -> u32 {
        match self {
            LinkProfile::Lora(LoraParams {
                region: Region::Eu868,
                ..
            }) => 10_000,
            _ => 1_000_000,
        }
    }

    /// Longest allowed single transmission, in microseconds, if the region limits it.
    pub fn dwell_limit_us(&self) -> Option<u64> {
        match self {
            LinkProfile::Lora(LoraParams {
                region: Region::Us915,
                ..
            }) => Some(400_000),
            _ => None,
        }
    }

    /// A sensible default MTU (wire bytes per packet, COBS and delimiter included): 255 on
    /// serial; on LoRa 255 clamped to the dwell limit. Transparent modules with smaller buffers
    /// (e.g. 58 bytes) need an explicit MTU.
    pub fn default_mtu(&self) -> usize {
        self.max_mtu().unwrap_or(0)
    }

    /// The largest MTU this profile allows (dwell time), or an error if even a minimal
    /// packet would break the regulatory limit (e.g. SF11 at 125 kHz in US915).
    pub fn max_mtu(&self) -> Result<usize, ProfileError> {
        let mut mtu = MAX_MTU;
        if let Some(limit) = self.dwell_limit_us() {
            while mtu > 0 && self.airtime_us(mtu) > limit {
                mtu -= 1;
            }
        }
        if max_shard_payload(mtu, DATA_HEADER + 1).is_none() {
            return Err(ProfileError::Invalid);
        }
        Ok(mtu)
    }

    /// Checks parameters and that `mtu` (on-air bytes per packet) respects the profile under
    /// `framing`.
    pub fn validate_framed(
        &self,
        mtu: usize,
        framing: super::packet::Framing,
    ) -> Result<(), ProfileError> {
        self.validate(MAX_MTU.min(self.max_mtu()?))?;
        let raw = framing.max_raw(mtu);
        if mtu > self.max_mtu()?
            || super::packet::shard_payload_for_raw(raw, DATA_HEADER + 1).is_none()
        {
            return Err(ProfileError::BadMtu);
        }
        Ok(())
    }

    /// Checks parameters and that `mtu` respects the profile (COBS framing).
    pub fn validate(&self, mtu: usize) -> Result<(), ProfileError> {
        match self {
            LinkProfile::Serial { baud } if *baud == 0 => return Err(ProfileError::Invalid),
            LinkProfile::Serial { .. } => {}
            LinkProfile::Lora(l) => l.validate()?,
        }
        if mtu > self.max_mtu()? || max_shard_payload(mtu, DATA_HEADER + 1).is_none() {
            return Err(ProfileError::BadMtu);
        }
        Ok(())
    }

    /// Airtime of an ACK for a message of `k` data shards (used to size ARQ timeouts).
    pub fn ack_airtime_us(&self, k: usize) -> u64 {
        self.airtime_us(super::packet::ack_wire_len(k))
    }

    /// Airtime of a packet carrying `raw` un-stuffed bytes.
    pub fn raw_airtime_us(&self, raw: usize) -> u64 {
        self.airtime_us(wire_len(raw))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Region::Eu868 => "eu868",
            Region::Us915 => "us915",
            Region::Unrestricted => "none",
        })
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkProfile::Serial { baud } => write!(f, "serial-{baud}"),
            LinkProfile::Lora(l) => {
                write!(
                    f,
                    "lora-sf{}-bw{}-cr4/{}-{}",
                    l.sf, l.bw_khz, l.cr, l.region
                )?;
                if l.preamble != 8 {
                    write!(f, "-pre{}", l.preamble)?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for LinkProfile {
    type Err = ProfileError;

    /// Parses `serial`, `serial-<baud>`, or
    /// `lora-sf<7-12>[-bw<125|250|500>][-cr4/<5-8>|-cr<5-8>][-eu868|-us915|-none][-pre<n>]`.
    /// Defaults: 115200 baud; LoRa 125 kHz, 4/5, EU868, 8-symbol preamble.
    fn from_str(s: &str) -> Result<Self, ProfileError> {
        let s = s.trim();
        let mut parts = s.split('-');
        match parts.next() {
            Some(p) if p.eq_ignore_ascii_case("serial") => {
                let baud = match parts.next() {
                    None => 115_200,
                    Some(b) => b.parse().map_err(|_| ProfileError::Invalid)?,
                };
                if parts.next().is_some() || baud == 0 {
                    return Err(ProfileError::Invalid);
                }
                Ok(LinkProfile::Serial { baud })
            }
            Some(p) if p.eq_ignore_ascii_case("lora") => {
                let mut l = LoraParams {
                    sf: 0,
                    bw_khz: 125,
                    cr: 5,
                    preamble: 8,
                    region: Region::Eu868,
                };
                for part in parts {
                    let part = lowercase(part)?;
                    let part = part.as_str();
                    fn num<T: FromStr>(v: &str) -> Result<T, ProfileError> {
                        v.parse().map_err(|_| ProfileError::Invalid)
                    }
                    if let Some(v) = part.strip_prefix("sf") {
                        l.sf = num(v)?;
                    } else if let Some(v) = part.strip_prefix("bw") {
                        l.bw_khz = num(v)?;
                    } else if let Some(v) = part.strip_prefix("cr") {
                        // "cr4/5", "cr4_5", "cr45" and "cr5" all mean 4/5.
                        let v = match v.strip_prefix("4/").or_else(|| v.strip_prefix("4_")) {
                            Some(d) => d,
                            None if v.len() == 2 && v.starts_with('4') => &v[1..],
                            None => v,
                        };
                        l.cr = num(v)?;
                    } else if let Some(v) = part.strip_prefix("pre") {
                        l.preamble = num(v)?;
                    } else {
                        l.region = match part {
                            "eu868" => Region::Eu868,
                            "us915" => Region::Us915,
                            "none" => Region::Unrestricted,
                            _ => return Err(ProfileError::Invalid),
                        };
                    }
                }
                l.validate()?;
                Ok(LinkProfile::Lora(l))
            }
            _ => Err(ProfileError::Invalid),
        }
    }
}

/// Lowercase copy of a short profile component (no allocation: this parser runs in no_std).
fn lowercase(s: &str) -> Result<heapless::String<16>, ProfileError> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        out.push(c.to_ascii_lowercase())
            .map_err(|_| ProfileError::Invalid)?;
    }
    Ok(out)
}

/// Duty-cycle pacer: tells the sender how long to stay silent so that its share of airtime
/// never exceeds the region's limit. After a transmission of airtime `t` at duty cycle `d`,
/// the next may start `t / d` later (the "off-time" rule of ETSI EN 300 220 and LoRaWAN).
/// On unlimited links this still spaces packets by their airtime, modelling line bandwidth.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    duty_ppm: u32,
    next_free_us: u64,
    total_airtime_us: u64,
}

impl Pacer {
    /// A pacer for `profile`.
    pub fn new(profile: &LinkProfile) -> Self {
        Pacer {
            duty_ppm: profile.duty_cycle_ppm().max(1),
            next_free_us: 0,
            total_airtime_us: 0,
        }
    }

    /// Microseconds to wait at `now_us` before the next transmission may start.
    pub fn wait_us(&self, now_us: u64) -> u64 {
        self.next_free_us.saturating_sub(now_us)
    }

    /// Records a transmission of `airtime_us` starting at `now_us` (after waiting).
    pub fn record(&mut self, now_us: u64, airtime_us: u64) {
        let start = now_us.max(self.next_free_us);
        let span = airtime_us.saturating_mul(1_000_000) / u64::from(self.duty_ppm);
        self.next_free_us = start.saturating_add(span.max(airtime_us));
        self.total_airtime_us = self.total_airtime_us.saturating_add(airtime_us);
    }

    /// Total airtime recorded so far.
    pub fn total_airtime_us(&self) -> u64 {
        self.total_airtime_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(sf: u8, bw: u16, cr: u8) -> LoraParams {
        LoraParams {
            sf,
            bw_khz: bw,
            cr,
            preamble: 8,
            region: Region::Eu868,
        }
    }

    #[test]
    fn semtech_calculator_values() {
        // Reference values from the Semtech LoRa calculator (explicit header, CRC on, 8-symbol
        // preamble), in microseconds.
        assert_eq!(lora(7, 125, 5).airtime_us(10), 41_216);
        assert_eq!(lora(9, 125, 5).airtime_us(58), 369_664);
        assert_eq!(lora(12, 125, 5).airtime_us(10), 991_232); // low data rate optimise on
        assert_eq!(lora(10, 250, 8).airtime_us(100), 771_072);
        assert!(lora(11, 125, 5).low_data_rate_optimize());
        assert!(!lora(10, 125, 5).low_data_rate_optimize());
    }

    #[test]
    fn parse_and_display() {
        let p: LinkProfile = "lora-sf9".parse().unwrap();
        assert_eq!(p, LinkProfile::Lora(lora(9, 125, 5)));
        assert_eq!(p.to_string(), "lora-sf9-bw125-cr4/5-eu868");
        assert_eq!(p.to_string().parse::<LinkProfile>().unwrap(), p);
        let q: LinkProfile = "LoRa-SF12-bw500-cr4/8-us915".parse().unwrap();
        assert_eq!(q.to_string().parse::<LinkProfile>().unwrap(), q);
        assert_eq!(
            "lora-sf7-cr47".parse::<LinkProfile>().unwrap(),
            "lora-sf7-cr7".parse::<LinkProfile>().unwrap()
        );
        assert_eq!(
            "serial-9600".parse::<LinkProfile>().unwrap(),
            LinkProfile::Serial { baud: 9600 }
        );
        for bad in [
            "",
            "lora",
            "lora-sf6",
            "lora-sf13",
            "lora-sf9-bw100",
            "lora-sf9-cr4/9",
            "serial-0",
            "serial-x",
            "usb",
        ] {
            assert!(bad.parse::<LinkProfile>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serial_airtime_and_limits() {
        let s = LinkProfile::Serial { baud: 9600 };
        assert_eq!(s.airtime_us(96), 100_000);
        assert_eq!(s.default_mtu(), MAX_MTU);
        // US915 dwell time: SF9/125 packets must stay under 400 ms; SF12/125 cannot transmit.
        let us9: LinkProfile = "lora-sf9-us915".parse().unwrap();
        let mtu = us9.max_mtu().unwrap();
        assert!(us9.airtime_us(mtu) <= 400_000 && us9.airtime_us(mtu + 1) > 400_000);
        assert!("lora-sf12-us915"
            .parse::<LinkProfile>()
            .unwrap()
            .max_mtu()
            .is_err());
    }

    #[test]
    fn pacer_enforces_one_percent() {
        let p: LinkProfile = "lora-sf9".parse().unwrap();
        let mut pacer = Pacer::new(&p);
        let mut now = 0u64;
        let mut air = 0u64;
        for _ in 0..50 {
            now += pacer.wait_us(now);
            let t = p.airtime_us(58);
            pacer.record(now, t);
            air += t;
        }
        // 50 packets: the 50th starts after 49 off-times of 100 x airtime.
        assert!(now >= 49 * 100 * p.airtime_us(58));
        assert_eq!(pacer.total_airtime_us(), air);
        assert!(air * 100 <= now + p.airtime_us(58) * 100);
    }
}
