//! KISS framing (K. Chepponis and P. Karn, "The KISS TNC", 1987): the host protocol of packet
//! radio TNCs and of RNode LoRa radios.
//!
//! A frame is `FEND command escaped(data) FEND`. `FEND` (0xC0) inside the data becomes
//! `FESC TFEND` (0xDB 0xDC), `FESC` becomes `FESC TFESC` (0xDB 0xDD). The command byte's high
//! nibble is the TNC port, the low nibble the command; `0x00` is "data on port 0", the only
//! command a plain TNC needs. RNode radios add configuration commands ([`super::rnode`]).
//!
//! On a KISS link tenbit's raw packets (header, payload, CRC: see [`super::packet`]) travel one
//! per data frame: the TNC strips the framing, so only the packet goes on air.
//!
//! [`KissDecoder`] is a bounded streaming parser: garbage before the first `FEND` is skipped,
//! a frame longer than `N` bytes is discarded and reported once as
//! [`PacketError::Oversized`], an invalid or truncated escape as [`PacketError::Framing`]. It
//! never panics and never allocates.

use super::packet::PacketError;
use super::rxbuf::{Ended, RxBuf};

/// Frame end.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Transposed frame end (after `FESC`).
pub const TFEND: u8 = 0xDC;
/// Transposed frame escape (after `FESC`).
pub const TFESC: u8 = 0xDD;
/// Command: data frame on port 0.
pub const CMD_DATA: u8 = 0x00;

/// Largest encoding of a frame with `n` data bytes (every byte escaped, the command too).
pub const fn max_encoded_len(n: usize) -> usize {
    2 + 2 * (n + 1)
}

fn put(out: &mut [u8], at: &mut usize, b: u8) -> Result<(), PacketError> {
    let (first, second) = match b {
        FEND => (FESC, Some(TFEND)),
        FESC => (FESC, Some(TFESC)),
        b => (b, None),
    };
    let need = 1 + usize::from(second.is_some());
    if *at + need > out.len() {
        return Err(PacketError::BufferTooSmall);
    }
    out[*at] = first;
    if let Some(s) = second {
        out[*at + 1] = s;
    }
    *at += need;
    Ok(())
}

/// Writes `FEND command escaped(data) FEND` into `out`; returns the length.
pub fn encode(command: u8, data: &[u8], out: &mut [u8]) -> Result<usize, PacketError> {
    if out.is_empty() {
        return Err(PacketError::BufferTooSmall);
    }
    out[0] = FEND;
    let mut at = 1;
    put(out, &mut at, command)?;
    for &b in data {
        put(out, &mut at, b)?;
    }
    if at >= out.len() {
        return Err(PacketError::BufferTooSmall);
    }
    out[at] = FEND;
    Ok(at + 1)
}

/// One decoded KISS frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Command byte (high nibble port, low nibble command; `0x00` = data on port 0).
    pub command: u8,
    /// Unescaped frame data.
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// Data on port 0: what a plain TNC transmits.
    pub fn is_data(&self) -> bool {
        self.command == CMD_DATA
    }
}

/// Streaming KISS parser with a fixed buffer of `N` bytes (command byte included).
#[derive(Debug)]
pub struct KissDecoder<const N: usize> {
    rx: RxBuf<N>,
    in_frame: bool,
    escape: bool,
    bad_escape: bool,
}

impl<const N: usize> Default for KissDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> KissDecoder<N> {
    /// An empty decoder (outside any frame: bytes before the first `FEND` are skipped).
    pub const fn new() -> Self {
        KissDecoder {
            rx: RxBuf::new(),
            in_frame: false,
            escape: false,
            bad_escape: false,
        }
    }

    /// Feeds one byte. `Some(Ok(()))` when a `FEND` closes a non-empty, valid frame (read it
    /// with [`Self::frame`]), `Some(Err(_))` when it closes a damaged or oversized one, `None`
    /// otherwise. Empty frames (`FEND FEND`, used as preambles) are skipped.
    pub fn push_byte(&mut self, byte: u8) -> Option<Result<(), PacketError>> {
        if byte == FEND {
            let was = core::mem::replace(&mut self.in_frame, true);
            let escape = core::mem::replace(&mut self.escape, false);
            let bad = core::mem::replace(&mut self.bad_escape, false);
            let len = match self.rx.end() {
                _ if !was => return None,
                Ended::Oversized => return Some(Err(PacketError::Oversized)),
                _ if bad || escape => return Some(Err(PacketError::Framing)),
                Ended::Empty => return None,
                Ended::Bytes(bytes) => bytes.len(),
            };
            self.rx.keep(len);
            return Some(Ok(()));
        }
        if !self.in_frame {
            return None;
        }
        let b = if self.escape {
            self.escape = false;
            match byte {
                TFEND => FEND,
                TFESC => FESC,
                _ => {
                    self.bad_escape = true;
                    return None;
                }
            }
        } else if byte == FESC {
            self.escape = true;
            return None;
        } else {
            byte
        };
        self.rx.push(b);
        None
    }

    /// The frame completed by the last [`Self::push_byte`] that returned `Some(Ok(()))`.
    /// (Valid until the next byte is pushed.)
    pub fn frame(&self) -> Frame<'_> {
        match self.rx.last().split_first() {
            Some((&command, data)) => Frame { command, data },
            None => Frame {
                command: CMD_DATA,
                data: &[],
            },
        }
    }

    /// Feeds one byte; returns the completed frame, if any (see [`Self::push_byte`]).
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame<'_>, PacketError>> {
        match self.push_byte(byte)? {
            Ok(()) => Some(Ok(self.frame())),
            Err(e) => Some(Err(e)),
        }
    }

    /// Forgets a partial frame and waits for the next `FEND`.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all<const N: usize>(
        d: &mut KissDecoder<N>,
        bytes: &[u8],
    ) -> [Option<(u8, usize)>; 4] {
        let mut got = [None; 4];
        let mut i = 0;
        for &b in bytes {
            if let Some(r) = d.push(b) {
                if i < 4 {
                    got[i] = r.ok().map(|f| (f.command, f.data.len()));
                    i += 1;
                }
            }
        }
        got
    }

    #[test]
    fn roundtrip_with_escapes() {
        let data = [0xC0, 0xDB, 0x00, 0xDC, 0xDD, 0x41];
        let mut out = [0u8; 32];
        let n = encode(CMD_DATA, &data, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[0xC0, 0x00, 0xDB, 0xDC, 0xDB, 0xDD, 0x00, 0xDC, 0xDD, 0x41, 0xC0]
        );
        assert!(n <= max_encoded_len(data.len()));
        let mut d = KissDecoder::<16>::new();
        let mut frame = None;
        for &b in &out[..n] {
            if let Some(Ok(f)) = d.push(b) {
                frame = Some((f.command, f.data.len(), f.data[0], f.data[1]));
            }
        }
        assert_eq!(frame, Some((0, 6, 0xC0, 0xDB)));
    }

    #[test]
    fn garbage_truncated_escapes_and_oversize() {
        let mut d = KissDecoder::<8>::new();
        // Leading garbage is skipped; a bad escape and a truncated escape are errors; an
        // oversized frame is one error; a good frame afterwards decodes.
        let stream = [
            0x11, 0x22, FEND, 0x00, FESC, 0x01, FEND, 0x00, 0x41, FESC, FEND, 0x00, 1, 2, 3, 4, 5,
            6, 7, 8, 9, FEND, 0x00, 0x55, FEND,
        ];
        let mut results = [0u8; 4];
        let mut i = 0;
        for &b in &stream {
            if let Some(r) = d.push(b) {
                results[i] = match r {
                    Err(PacketError::Framing) => 1,
                    Err(PacketError::Oversized) => 2,
                    Ok(f) if f.data == [0x55] => 3,
                    _ => 9,
                };
                i += 1;
            }
        }
        assert_eq!(results, [1, 1, 2, 3]);
        // Empty frames are preambles.
        assert_eq!(
            decode_all(&mut KissDecoder::<8>::new(), &[FEND, FEND, FEND]),
            [None; 4]
        );
    }
}
