//! Consistent Overhead Byte Stuffing: turns a packet into bytes with no zero, so that a single
//! `0x00` delimits packets on a raw byte stream and a receiver that joins mid-stream (or loses
//! bytes) resynchronises at the next zero. Overhead: one byte per 254 plus the delimiter.

use super::packet::PacketError;
use super::rxbuf::{Ended, RxBuf};

/// Largest COBS encoding of `n` raw bytes (without the trailing delimiter).
pub const fn max_encoded_len(n: usize) -> usize {
    n + n / 254 + 1
}

/// Encodes `src` into `dst` (no delimiter); returns the encoded length.
pub fn encode(src: &[u8], dst: &mut [u8]) -> Result<usize, PacketError> {
    if dst.len() < max_encoded_len(src.len()) {
        return Err(PacketError::BufferTooSmall);
    }
    let mut code_pos = 0usize;
    let mut out = 1usize;
    let mut code: u8 = 1;
    for &b in src {
        if b == 0 {
            dst[code_pos] = code;
            code_pos = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = b;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_pos] = code;
                code_pos = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_pos] = code;
    Ok(out)
}

/// Decodes a COBS block (without delimiter) in place; returns the decoded length.
/// Rejects zeros inside the block and codes that run past its end.
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, PacketError> {
    let mut read = 0usize;
    let mut write = 0usize;
    while read < buf.len() {
        let code = buf[read] as usize;
        if code == 0 || read + code > buf.len() {
            return Err(PacketError::Framing);
        }
        read += 1;
        for _ in 1..code {
            let b = buf[read];
            if b == 0 {
                return Err(PacketError::Framing);
            }
            buf[write] = b;
            write += 1;
            read += 1;
        }
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Ok(write)
}

/// Streaming packet splitter: feed it bytes as they arrive, it yields decoded packets.
///
/// Memory is bounded by `N`: a run of bytes longer than `N` without a delimiter is discarded
/// up to the next zero and reported once as [`PacketError::Oversized`].
#[derive(Debug)]
pub struct CobsDecoder<const N: usize> {
    rx: RxBuf<N>,
}

impl<const N: usize> Default for CobsDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CobsDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        CobsDecoder { rx: RxBuf::new() }
    }

    /// Feeds one byte. Returns `None` while a packet is incomplete, `Some(Ok(()))` when a
    /// delimiter closes a valid block (read it with [`Self::packet`]), `Some(Err(_))` for a
    /// damaged or oversized one. Empty blocks (two zeros in a row) are skipped silently:
    /// senders may use them as preambles.
    pub fn push_byte(&mut self, byte: u8) -> Option<Result<(), PacketError>> {
        if byte != 0 {
            self.rx.push(byte);
            return None;
        }
        match self.rx.end() {
            Ended::Empty => None,
            Ended::Oversized => Some(Err(PacketError::Oversized)),
            Ended::Bytes(bytes) => match decode_in_place(bytes) {
                Ok(n) => {
                    self.rx.keep(n);
                    Some(Ok(()))
                }
                Err(e) => Some(Err(e)),
            },
        }
    }

    /// The packet completed by the last [`Self::push_byte`] that returned `Some(Ok(()))`.
    pub fn packet(&self) -> &[u8] {
        self.rx.last()
    }

    /// Feeds one byte; returns the completed packet, if any (see [`Self::push_byte`]).
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], PacketError>> {
        match self.push_byte(byte)? {
            Ok(()) => Some(Ok(self.packet())),
            Err(e) => Some(Err(e)),
        }
    }

    /// Forgets a partial packet (e.g. after a long silence on the line).
    pub fn reset(&mut self) {
        self.rx.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &[u8]) {
        let mut enc = [0u8; 1200];
        let n = encode(src, &mut enc).unwrap();
        assert!(n <= max_encoded_len(src.len()));
        assert!(!enc[..n].contains(&0), "encoding must be zero-free");
        let n2 = decode_in_place(&mut enc[..n]).unwrap();
        assert_eq!(&enc[..n2], src);
    }

    #[test]
    fn roundtrips_edge_cases() {
        roundtrip(&[]);
        roundtrip(&[0]);
        roundtrip(&[0, 0]);
        roundtrip(&[1, 0, 2]);
        let long: [u8; 600] = core::array::from_fn(|i| (i % 255) as u8 + 1);
        roundtrip(&long[..253]);
        roundtrip(&long[..254]);
        roundtrip(&long[..255]);
        roundtrip(&long);
        let mixed: [u8; 600] = core::array::from_fn(|i| (i % 7) as u8);
        roundtrip(&mixed);
    }

    #[test]
    fn known_vectors() {
        // Examples from the COBS paper / Wikipedia.
        let mut out = [0u8; 16];
        let n = encode(&[0x11, 0x22, 0x00, 0x33], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x03, 0x11, 0x22, 0x02, 0x33]);
        let n = encode(&[0x00], &mut out).unwrap();
        assert_eq!(&out[..n], &[0x01, 0x01]);
    }

    #[test]
    fn stream_decoder_resyncs_and_bounds_memory() {
        let mut d = CobsDecoder::<8>::new();
        // Garbage longer than the buffer, then a delimiter: one Oversized error.
        let mut errs = 0;
        for _ in 0..20 {
            assert!(d.push(7).is_none());
        }
        if let Some(Err(PacketError::Oversized)) = d.push(0) {
            errs += 1;
        }
        assert_eq!(errs, 1);
        // A good packet afterwards decodes.
        let mut enc = [0u8; 8];
        let n = encode(&[5, 0, 6], &mut enc).unwrap();
        let mut got = None;
        for &b in &enc[..n] {
            assert!(d.push(b).is_none());
        }
        if let Some(Ok(p)) = d.push(0) {
            got = Some([p[0], p[1], p[2]]);
        }
        assert_eq!(got, Some([5, 0, 6]));
    }
}
