//! Compact frames: QA answer bits and pick indices in a frame as small as the bits.
//!
//! A 10-bit QA answer in a [`crate::frame`] frame is 9 bytes (2 header, 1 K byte, 2 bytes of
//! bits, 4 CRC): eight bytes of overhead for ten bits of news. A compact frame is at most 4 bytes
//! for K <= 16:
//!
//! ```text
//! +--------+----------------------------------------------+
//! | byte 0 | K data bits, then the keyed check, LSB-first |
//! +--------+----------------------------------------------+
//!  byte 0 = 00 (the version field of a full frame: 0 is never a full frame) | code (6 bits)
//!  rest   = n bytes, n = ceil((K + 8) / 8), read as one little-endian integer v:
//!           v & (2^K - 1) = the data (QA answer i in bit i, or the pick index),
//!           v >> K        = the check, C = 8n - K bits (8..=15)
//! ```
//!
//! The 6-bit code names (mode, revision, K) from a fixed table: codes 0..=47 are QA with
//! protocol revision `code / 16 + 1` (1..=3) and K = `code % 16 + 1` (1..=16); codes 48..=55
//! are pick revision 0 with K = `code - 47` (1..=8); 56..=63 are reserved (refused as an
//! unknown mode). Runs outside the table (QA with K = 0 or K > 16) use full frames.
//!
//! **The check**: the low C bits of a keyed hash (SplitMix64's finaliser absorbing the
//! 32-byte key, byte 0, the length and the data). Frames are QA and pick frames, always coded
//! against a prompt both ends know, so the key is [`crate::frame::ModelIdentity`] of (model,
//! adapter, prompt). A compact frame has no model tag: a frame made for another model, adapter
//! or prompt is caught by the check alone, with false-accept probability 2^-C per frame
//! (2^-14 for a 10-bit QA frame, 2^-8 at K = 16, 2^-13 for a 3-bit pick). The check is not a
//! CRC over the channel: compact frames rely on the link layer's own CRC (every tenbit link
//! packet carries a CRC-32) against transmission errors; any single-bit flip still fails with
//! probability 1 - 2^-C. It is not a MAC either (the key is not secret); sealing is the link's.
//!
//! Full frames are unchanged, and a decoder tells the two apart by byte 0's top two bits, so
//! every older frame still decodes. Decoders from before compact frames refuse them (version 0
//! has always been refused as corrupt).

use crate::frame::{FrameError, Mode, ModelIdentity};
use crate::rng::mix64;

/// Largest K a compact QA frame carries (the frame is then 4 bytes).
pub const MAX_COMPACT_QA_BITS: u8 = 16;
/// Largest K a compact pick frame carries.
pub const MAX_COMPACT_PICK_BITS: u8 = 8;
/// Largest compact frame: byte 0 and 3 bytes of data and check.
pub const MAX_COMPACT_LEN: usize = 4;
/// Fewest check bits in any compact frame.
pub const MIN_CHECK_BITS: u32 = 8;

const QA_CODES: u8 = 48;
const PICK_CODES: u8 = 8;
const DOMAIN: u64 = 0x7465_6e62_6974_6331; // "tenbitc1"

/// What a compact frame carries besides its data: mode, revision and K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CompactHeader {
    /// [`Mode::Qa`] or [`Mode::Pick`].
    pub mode: Mode,
    /// QA: the protocol revision (1..=3). Pick: the pick revision (0).
    pub revision: u8,
    /// Bits of data: QA answer bits, or pick index bits.
    pub k: u8,
}

/// A checked compact frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CompactFrame {
    /// Mode, revision and K.
    pub header: CompactHeader,
    /// The K data bits (QA: answer `i` in bit `i`; pick: the index).
    pub data: u32,
}

impl CompactHeader {
    /// The 6-bit code of this header, or `None` when the table has no entry for it (then the
    /// caller uses a full frame).
    pub fn code(&self) -> Option<u8> {
        match self.mode {
            Mode::Qa
                if (1..=3).contains(&self.revision)
                    && (1..=MAX_COMPACT_QA_BITS).contains(&self.k) =>
            {
                Some((self.revision - 1) * 16 + (self.k - 1))
            }
            Mode::Pick if self.revision == 0 && (1..=MAX_COMPACT_PICK_BITS).contains(&self.k) => {
                Some(QA_CODES + self.k - 1)
            }
            _ => None,
        }
    }

    /// The header a code names; reserved codes are refused as an unknown mode.
    pub fn from_code(code: u8) -> Result<CompactHeader, FrameError> {
        match code {
            c if c < QA_CODES => Ok(CompactHeader {
                mode: Mode::Qa,
                revision: c / 16 + 1,
                k: c % 16 + 1,
            }),
            c if c < QA_CODES + PICK_CODES => Ok(CompactHeader {
                mode: Mode::Pick,
                revision: 0,
                k: c - QA_CODES + 1,
            }),
            c => Err(FrameError::UnknownMode(c)),
        }
    }

    /// Whether a run with this header fits a compact frame.
    pub fn fits(&self) -> bool {
        self.code().is_some()
    }
}

/// Bytes after byte 0 for K data bits.
const fn rest_len(k: u8) -> usize {
    (k as usize + MIN_CHECK_BITS as usize).div_ceil(8)
}

/// Total length of a compact frame with K data bits.
pub const fn compact_len(k: u8) -> usize {
    1 + rest_len(k)
}

/// Whether `bytes` is a compact frame (byte 0's version field is 0) rather than a full one.
pub fn is_compact(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b >> 6 == 0)
}

fn check(key: &ModelIdentity, b0: u8, n: usize, data: u32) -> u64 {
    let mut h = DOMAIN;
    for w in key.0.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = mix64(h ^ u64::from_le_bytes(b)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    }
    h = mix64(h ^ (u64::from(b0) | (n as u64) << 8)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(h ^ u64::from(data))
}

/// Write the compact frame of `header` and `data` into `out`; returns its length. Fails with
/// [`FrameError::UnknownMode`] when the header has no compact code, [`FrameError::Corrupt`]
/// when `data` does not fit K bits, [`FrameError::Full`] when `out` is too short.
pub fn encode_compact(
    header: &CompactHeader,
    data: u32,
    key: &ModelIdentity,
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let code = header
        .code()
        .ok_or(FrameError::UnknownMode(header.mode as u8))?;
    let k = u32::from(header.k);
    if u64::from(data) >> k != 0 {
        return Err(FrameError::Corrupt);
    }
    let n = rest_len(header.k);
    if out.len() < 1 + n {
        return Err(FrameError::Full);
    }
    let c = 8 * n as u32 - k;
    let chk = check(key, code, n, data) & ((1u64 << c) - 1);
    let v = u64::from(data) | chk << k;
    out[0] = code;
    out[1..=n].copy_from_slice(&v.to_le_bytes()[..n]);
    Ok(1 + n)
}

/// Read a compact frame's header without checking it (for `inspect`-style tools).
pub fn peek_compact(bytes: &[u8]) -> Result<CompactHeader, FrameError> {
    let (&b0, rest) = bytes
        .split_first()
        .ok_or(FrameError::Truncated { len: 0 })?;
    if b0 >> 6 != 0 {
        return Err(FrameError::Corrupt);
    }
    let h = CompactHeader::from_code(b0)?;
    if rest.len() != rest_len(h.k) {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    Ok(h)
}

/// Verify a compact frame against `key` and return its header and data. A frame for another
/// model, adapter or prompt fails as [`FrameError::Corrupt`] (probability 2^-C of passing).
pub fn decode_compact(bytes: &[u8], key: &ModelIdentity) -> Result<CompactFrame, FrameError> {
    let header = peek_compact(bytes)?;
    let n = bytes.len() - 1;
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&bytes[1..]);
    let v = u64::from_le_bytes(b);
    let k = u32::from(header.k);
    let data = (v & ((1u64 << k) - 1)) as u32;
    let c = 8 * n as u32 - k;
    if v >> k != check(key, bytes[0], n, data) & ((1u64 << c) - 1) {
        return Err(FrameError::Corrupt);
    }
    Ok(CompactFrame { header, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ModelIdentity {
        let mut a = [0u8; 32];
        for (i, v) in a.iter_mut().enumerate() {
            *v = b.wrapping_mul(37).wrapping_add(i as u8);
        }
        ModelIdentity(a)
    }

    #[test]
    fn table_round_trips_and_sizes() {
        for code in 0..64u8 {
            match CompactHeader::from_code(code) {
                Ok(h) => assert_eq!(h.code(), Some(code)),
                Err(e) => {
                    assert!(code >= 56);
                    assert_eq!(e, FrameError::UnknownMode(code));
                }
            }
        }
        assert_eq!(compact_len(1), 3);
        assert_eq!(compact_len(8), 3);
        assert_eq!(compact_len(10), 4);
        assert_eq!(compact_len(16), MAX_COMPACT_LEN);
        let no = |mode, revision, k| !CompactHeader { mode, revision, k }.fits();
        assert!(no(Mode::Qa, 2, 0));
        assert!(no(Mode::Qa, 2, 17));
        assert!(no(Mode::Qa, 4, 3));
        assert!(no(Mode::Pick, 1, 3));
        assert!(no(Mode::Pick, 0, 9));
        assert!(no(Mode::Lossless, 0, 1));
    }

    #[test]
    fn round_trip_every_k() {
        let id = key(1);
        for (mode, rev, kmax) in [
            (Mode::Qa, 1, 16),
            (Mode::Qa, 2, 16),
            (Mode::Qa, 3, 16),
            (Mode::Pick, 0, 8),
        ] {
            for k in 1..=kmax {
                let h = CompactHeader {
                    mode,
                    revision: rev,
                    k,
                };
                for data in [0u32, 1, (1 << k) - 1, 0x5555 & ((1 << k) - 1)] {
                    let mut out = [0u8; 8];
                    let n = encode_compact(&h, data, &id, &mut out).unwrap();
                    assert_eq!(n, compact_len(k));
                    assert!(n <= MAX_COMPACT_LEN);
                    assert!(is_compact(&out[..n]));
                    let f = decode_compact(&out[..n], &id).unwrap();
                    assert_eq!((f.header, f.data), (h, data));
                }
            }
        }
    }

    #[test]
    fn refuses_bad_data_flips_cuts_and_other_keys() {
        let id = key(2);
        let h = CompactHeader {
            mode: Mode::Qa,
            revision: 3,
            k: 10,
        };
        let mut out = [0u8; 4];
        assert_eq!(
            encode_compact(&h, 1 << 10, &id, &mut out),
            Err(FrameError::Corrupt)
        );
        assert_eq!(
            encode_compact(&h, 0, &id, &mut out[..3]),
            Err(FrameError::Full)
        );
        let n = encode_compact(&h, 0b10_1100_1110, &id, &mut out).unwrap();
        let f = &out[..n];
        // Every single-bit flip is refused (as another header, a bad length, or the check).
        for i in 0..n * 8 {
            let mut g = [0u8; 4];
            g[..n].copy_from_slice(f);
            g[i / 8] ^= 1 << (i % 8);
            assert!(decode_compact(&g[..n], &id).is_err(), "flip {i} accepted");
        }
        for cut in 0..n {
            assert!(
                decode_compact(&f[..cut], &id).is_err(),
                "cut {cut} accepted"
            );
        }
        // Another identity (model, adapter or prompt): refused unless the 14-bit check collides;
        // over 4096 other keys the accept rate is about 2^-14 per key.
        let mut accepted = 0;
        for b in 0..4096u32 {
            let mut other = id.clone();
            other.0[(b % 32) as usize] ^= (b / 32 + 1) as u8;
            if decode_compact(f, &other).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted <= 2, "{accepted} of 4096 other keys accepted");
        assert_eq!(
            decode_compact(&[56, 0, 0], &id),
            Err(FrameError::UnknownMode(56))
        );
        // A full frame's byte 0 is never read as compact.
        assert!(!is_compact(&[0x90, 0]));
        assert_eq!(peek_compact(&[0x90, 0, 0]), Err(FrameError::Corrupt));
    }

    /// The check is part of the wire format: these bytes must never change.
    #[test]
    fn golden_compact_frames() {
        let id = key(9);
        let mut out = [0u8; 4];
        let qa = CompactHeader {
            mode: Mode::Qa,
            revision: 2,
            k: 10,
        };
        let n = encode_compact(&qa, 0b01_0110_1001, &id, &mut out).unwrap();
        assert_eq!(&out[..n], &GOLDEN_QA[..]);
        let pick = CompactHeader {
            mode: Mode::Pick,
            revision: 0,
            k: 3,
        };
        let n = encode_compact(&pick, 5, &id, &mut out).unwrap();
        assert_eq!(&out[..n], &GOLDEN_PICK[..]);
    }

    const GOLDEN_QA: [u8; 4] = [25, 105, 149, 79];
    const GOLDEN_PICK: [u8; 3] = [50, 133, 168];

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..8)) {
            let _ = peek_compact(&bytes);
            let _ = decode_compact(&bytes, &key(3));
        }
    }
}
