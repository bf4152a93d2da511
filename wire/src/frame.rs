//! The tenbit frame: what travels over a link or sits in a `.tb` file.
//!
//! ```text
//! +--------+-----------+------------------------+-----------------+
//! | byte 0 | byte 1    | payload (range-coded)  | CRC-32 (LE, 4)  |
//! +--------+-----------+------------------------+-----------------+
//!  byte 0 = version (2 bits) << 6 | mode (3 bits) << 3 | flags (3 bits)
//!  byte 1 = model tag: first byte of the (model, adapter) identity
//! ```
//!
//! Six bytes of overhead in all, because short radio messages die by headers. The header is
//! serialised with postcard (two `u8` fields, no varints). The payload needs no length: the
//! link layer delimits frames, and the coded stream carries its own end-of-turn terminator.
//! The CRC covers the 32-byte identity, the header and the payload, so a frame coded with
//! another model or adapter never passes, even when the 1-byte tag collides; the tag only lets
//! the decoder say *which* problem it is. Version 3 is reserved for "extended header follows".

use serde::{Deserialize, Serialize};

use crate::checksum::Crc32;
use crate::coder::{ByteSink, CoderError};

/// Current frame format version.
///
/// Version 1 coded with the model's plain distribution, version 2 with the calibrated one
/// ([`crate::freq::Calibration`]); decoders read both. The header layout is the same.
pub const FRAME_VERSION: u8 = 2;
/// Bytes a frame adds to its payload.
pub const FRAME_OVERHEAD: usize = 6;

/// What the payload means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Mode {
    /// The exact text, coded with the small model.
    Lossless = 0,
    /// A strong model's succinct rewrite, coded losslessly.
    Rewrite = 1,
    /// Question-asking: the strong model's yes/no answer bits only.
    Qa = 2,
    /// Seeded selection: the index (K bits) of the best of 2^K candidates both ends can draw
    /// from the small model; the edge draws only that one.
    Pick = 3,
}

impl Mode {
    /// The mode of a header's three mode bits, if it is one this build knows.
    pub fn from_bits(v: u8) -> Option<Mode> {
        match v {
            0 => Some(Mode::Lossless),
            1 => Some(Mode::Rewrite),
            2 => Some(Mode::Qa),
            3 => Some(Mode::Pick),
            _ => None,
        }
    }
}

/// Three flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(u8);

impl Flags {
    /// The payload codes the prompt before the response.
    pub const HAS_PROMPT: Flags = Flags(1);
    /// Both ends know the prompt; the CRC key covers it.
    pub const PROMPT_KNOWN: Flags = Flags(2);
    /// Reserved for future use; must be zero in versions 1 and 2.
    pub const RESERVED: Flags = Flags(4);

    /// The three flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Flags from a header's low three bits.
    pub const fn from_bits(b: u8) -> Flags {
        Flags(b & 7)
    }
    #[must_use]
    /// These flags and `f`.
    pub const fn with(self, f: Flags) -> Flags {
        Flags(self.0 | f.0)
    }
    /// Whether every flag of `f` is set.
    pub const fn contains(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }
}

/// Identity of the (model, adapter) pair: sha256 computed by the models crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity(pub [u8; 32]);

impl ModelIdentity {
    /// The byte carried in frames.
    pub fn tag(&self) -> u8 {
        self.0[0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
/// The two header bytes, parsed.
pub struct FrameHeader {
    /// Format version (1..=[`FRAME_VERSION`]); it names the calibration of the CDF.
    pub version: u8,
    /// What the payload means.
    pub mode: Mode,
    /// How the prompt is used.
    pub flags: Flags,
    /// First byte of the identity the frame was coded with.
    pub model_tag: u8,
}

/// The two header bytes as postcard sees them.
#[derive(Serialize, Deserialize)]
struct WireHeader {
    vmf: u8,
    tag: u8,
}

/// A checked frame borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The checked header.
    pub header: FrameHeader,
    /// The payload between header and checksum.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
/// Why a frame was refused (or could not be written).
pub enum FrameError {
    /// Shorter than a header and a checksum.
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Made by a newer tenbit.
    NewerVersion {
        /// The frame's version.
        found: u8,
        /// The newest this build reads.
        supported: u8,
    },
    /// A mode this build does not know.
    UnknownMode(u8),
    /// Coded with another model or adapter (the tag differs).
    ModelMismatch {
        /// The frame's tag.
        frame_tag: u8,
        /// This decoder's tag.
        local_tag: u8,
    },
    /// The checksum does not match: damaged, or another identity whose tag collides.
    Corrupt,
    /// The output buffer is full.
    Full,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::Truncated { len } => {
                write!(f, "frame is truncated ({len} bytes; a frame has at least {FRAME_OVERHEAD})")
            }
            FrameError::NewerVersion { found, supported } => write!(
                f,
                "frame version {found} is newer than this decoder (supports {supported}); upgrade tenbit-edge"
            ),
            FrameError::UnknownMode(m) => write!(f, "frame has unknown mode {m}; it is corrupt or from a newer tenbit"),
            FrameError::ModelMismatch { frame_tag, local_tag } => write!(
                f,
                "frame was coded with a different model or adapter (tag 0x{frame_tag:02x}), this decoder has 0x{local_tag:02x}; load the matching model"
            ),
            FrameError::Corrupt => f.write_str(
                "frame is corrupted (checksum mismatch) - or coded with a different model/adapter whose tag collides",
            ),
            FrameError::Full => f.write_str("output buffer too small for the frame"),
        }
    }
}

impl core::error::Error for FrameError {}

impl From<CoderError> for FrameError {
    fn from(_: CoderError) -> Self {
        FrameError::Full
    }
}

fn pack(h: &FrameHeader) -> Result<[u8; 2], FrameError> {
    let wire = WireHeader {
        vmf: (h.version.min(3) << 6) | ((h.mode as u8) << 3) | h.flags.bits(),
        tag: h.model_tag,
    };
    let mut buf = [0u8; 2];
    let used = postcard::to_slice(&wire, &mut buf).map_err(|_| FrameError::Full)?;
    debug_assert_eq!(used.len(), 2);
    Ok(buf)
}

fn unpack(b: &[u8]) -> Result<FrameHeader, FrameError> {
    let wire: WireHeader =
        postcard::from_bytes(b).map_err(|_| FrameError::Truncated { len: b.len() })?;
    let version = wire.vmf >> 6;
    if version > FRAME_VERSION {
        return Err(FrameError::NewerVersion {
            found: version,
            supported: FRAME_VERSION,
        });
    }
    if version == 0 {
        return Err(FrameError::Corrupt);
    }
    let m = (wire.vmf >> 3) & 7;
    let mode = Mode::from_bits(m).ok_or(FrameError::UnknownMode(m))?;
    let flags = Flags::from_bits(wire.vmf);
    if flags.contains(Flags::RESERVED) {
        return Err(FrameError::Corrupt);
    }
    Ok(FrameHeader {
        version,
        mode,
        flags,
        model_tag: wire.tag,
    })
}

fn crc(id: &ModelIdentity, header: &[u8], payload: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&id.0);
    c.update(header);
    c.update(payload);
    c.finish()
}

/// Total frame size for a payload.
pub const fn frame_len(payload_len: usize) -> usize {
    payload_len + FRAME_OVERHEAD
}

/// Write a frame into `sink`.
pub fn encode_frame<S: ByteSink>(
    header: &FrameHeader,
    id: &ModelIdentity,
    payload: &[u8],
    sink: &mut S,
) -> Result<(), FrameError> {
    let h = pack(header)?;
    for &b in h.iter().chain(payload) {
        sink.push(b)?;
    }
    for b in crc(id, &h, payload).to_le_bytes() {
        sink.push(b)?;
    }
    Ok(())
}

/// Read the header (version and mode checked) without verifying the checksum.
pub fn peek_header(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
    if bytes.len() < FRAME_OVERHEAD {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    unpack(&bytes[..2])
}

/// Verify and split a frame. Checks, in order: length, version, mode, model tag, checksum.
pub fn decode_frame<'a>(bytes: &'a [u8], id: &ModelIdentity) -> Result<Frame<'a>, FrameError> {
    verify_frame(bytes, peek_header(bytes)?, id)
}

/// [`decode_frame`] for a caller that has already read the header with [`peek_header`] (to
/// choose the identity to check against): model tag and checksum, without parsing it again.
pub fn verify_frame<'a>(
    bytes: &'a [u8],
    header: FrameHeader,
    id: &ModelIdentity,
) -> Result<Frame<'a>, FrameError> {
    if bytes.len() < FRAME_OVERHEAD {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    if header.model_tag != id.tag() {
        return Err(FrameError::ModelMismatch {
            frame_tag: header.model_tag,
            local_tag: id.tag(),
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc(id, &body[..2], &body[2..]) != want {
        return Err(FrameError::Corrupt);
    }
    Ok(Frame {
        header,
        payload: &body[2..],
    })
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn id(b: u8) -> ModelIdentity {
        let mut a = [0u8; 32];
        for (i, v) in a.iter_mut().enumerate() {
            *v = b.wrapping_mul(31).wrapping_add(i as u8);
        }
        ModelIdentity(a)
    }

    fn header(id: &ModelIdentity) -> FrameHeader {
        FrameHeader {
            version: FRAME_VERSION,
            mode: Mode::Lossless,
            flags: Flags::default().with(Flags::PROMPT_KNOWN),
            model_tag: id.tag(),
        }
    }

    fn frame(payload: &[u8], id: &ModelIdentity) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&header(id), id, payload, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_with_six_bytes_overhead() {
        let k = id(1);
        for len in [0usize, 1, 5, 200, 5000] {
            let p: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let f = frame(&p, &k);
            assert_eq!(f.len(), p.len() + 6);
            assert_eq!(frame_len(p.len()), f.len());
            let d = decode_frame(&f, &k).unwrap();
            assert_eq!(d.payload, &p[..]);
            assert_eq!(d.header, header(&k));
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_rejected() {
        let k = id(2);
        let f = frame(b"hello, radio", &k);
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            assert!(decode_frame(&g, &k).is_err(), "flip {i} accepted");
        }
        for cut in 0..f.len() {
            assert!(decode_frame(&f[..cut], &k).is_err(), "cut {cut} accepted");
        }
    }

    #[test]
    fn other_identity_is_named_or_caught_by_the_checksum() {
        let k = id(3);
        let f = frame(b"payload", &k);
        let other = id(4);
        assert_ne!(other.tag(), k.tag());
        assert!(matches!(
            decode_frame(&f, &other),
            Err(FrameError::ModelMismatch { .. })
        ));
        let mut collide = k.clone();
        collide.0[31] ^= 1;
        assert_eq!(decode_frame(&f, &collide), Err(FrameError::Corrupt));
    }

    #[test]
    fn versions_and_modes() {
        let k = id(5);
        let mut f = frame(b"x", &k);
        f[0] = (f[0] & 0x3f) | (3 << 6);
        assert_eq!(
            peek_header(&f),
            Err(FrameError::NewerVersion {
                found: 3,
                supported: 2
            })
        );
        let mut old = frame(b"x", &k);
        old[0] = (old[0] & 0x3f) | (1 << 6);
        assert_eq!(peek_header(&old).map(|h| h.version), Ok(1));
        let mut g = frame(b"x", &k);
        g[0] = (g[0] & !0x38) | (5 << 3);
        let mut pick = frame(b"x", &k);
        pick[0] = (pick[0] & !0x38) | (3 << 3);
        assert_eq!(peek_header(&pick).map(|h| h.mode), Ok(Mode::Pick));
        assert_eq!(peek_header(&g), Err(FrameError::UnknownMode(5)));
        let msg = alloc::format!(
            "{}",
            FrameError::NewerVersion {
                found: 3,
                supported: 2
            }
        );
        assert!(msg.contains("upgrade"));
    }

    #[test]
    fn heapless_sink_too_small() {
        let k = id(6);
        let mut small = heapless::Vec::<u8, 8>::new();
        assert_eq!(
            encode_frame(&header(&k), &k, &[0u8; 10], &mut small),
            Err(FrameError::Full)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let k = id(7);
            let _ = peek_header(&bytes);
            let _ = decode_frame(&bytes, &k);
        }
    }
}
