//! Packet I/O over any [`embedded_io`] `Read + Write`: a UART HAL on a board, a serial port or
//! socket on a host (through [`FromStd`] with feature `std`). `no_std`, no `alloc`, bounded
//! buffers.
//!
//! [`PacketPort`] frames outgoing packets (COBS or KISS, see [`Framing`]) and splits the
//! incoming byte stream back into packets. It is the I/O half of a link endpoint; the state
//! machines ([`crate::ArqSender`], [`crate::Reassembler`]) are clock-free, so a firmware loop is:
//! poll the port, feed data packets to the reassembler and ACKs to the ARQ sender, send what
//! they ask for.
//!
//! Reads that fail with `ErrorKind::TimedOut` or `Interrupted` mean "nothing yet" (a UART
//! without data, a host port with a read timeout); a read of 0 bytes, `BrokenPipe`,
//! `ConnectionReset` or `NotConnected` means the peer hung up ([`PortError::Closed`]).

use embedded_io::{Error as _, ErrorKind, Read, Write};

use super::cobs::CobsDecoder;
use super::kiss::{self, KissDecoder};
use super::packet::{Framing, Packet, PacketError};
use super::{MAX_MTU, MAX_RAW_PACKET};

/// Errors of packet I/O: the transport's own error `E`, kept as it is (on std,
/// `std::io::Error` with its `ErrorKind`).
#[derive(Debug, thiserror::Error)]
pub enum PortError<E: core::fmt::Debug> {
    /// Reading from the transport failed.
    #[error("read from link failed: {0:?}")]
    Read(E),
    /// Writing to the transport failed.
    #[error("write to link failed: {0:?}")]
    Write(E),
    /// The peer closed the transport (EOF or hang-up).
    #[error("link closed")]
    Closed,
    /// A packet could not be framed (a caller bug: an inconsistent packet).
    #[error(transparent)]
    Packet(#[from] PacketError),
}

fn is_hangup(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::NotConnected
    )
}

/// Reads what is available (or times out). `Ok(0)` means nothing arrived yet.
pub fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, PortError<R::Error>> {
    match r.read(buf) {
        Ok(0) => Err(PortError::Closed),
        Ok(n) => Ok(n),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => Ok(0),
        Err(e) if is_hangup(e.kind()) => Err(PortError::Closed),
        Err(e) => Err(PortError::Read(e)),
    }
}

/// Writes all of `bytes` and flushes.
pub fn write_all<W: Write>(w: &mut W, bytes: &[u8]) -> Result<(), PortError<W::Error>> {
    let map = |e: W::Error| {
        if is_hangup(e.kind()) {
            PortError::Closed
        } else {
            PortError::Write(e)
        }
    };
    w.write_all(bytes).map_err(map)?;
    w.flush().map_err(map)
}

/// Largest framed packet: a KISS frame with every byte escaped.
pub const MAX_FRAMED: usize = kiss::max_encoded_len(MAX_RAW_PACKET);

/// The stream splitter of one framing.
#[derive(Debug)]
pub enum Deframer<const N: usize> {
    /// COBS + `0x00` delimiters.
    Cobs(CobsDecoder<N>),
    /// KISS frames.
    Kiss(KissDecoder<N>),
}

impl<const N: usize> Deframer<N> {
    /// A splitter for `framing`.
    pub fn new(framing: Framing) -> Self {
        if framing.is_kiss() {
            Deframer::Kiss(KissDecoder::new())
        } else {
            Deframer::Cobs(CobsDecoder::new())
        }
    }

    /// Feeds one byte; `Some` when a frame (or a damaged one) is complete: read it with
    /// [`Self::incoming`].
    pub fn push_byte(&mut self, b: u8) -> Option<Result<(), PacketError>> {
        match self {
            Deframer::Cobs(d) => d.push_byte(b),
            Deframer::Kiss(d) => d.push_byte(b),
        }
    }

    /// The frame completed by the last successful [`Self::push_byte`], parsed.
    pub fn incoming(&self) -> Incoming<'_> {
        let raw = match self {
            Deframer::Cobs(d) => d.packet(),
            Deframer::Kiss(d) => {
                let f = d.frame();
                if !f.is_data() {
                    return Incoming::Command(f);
                }
                f.data
            }
        };
        match Packet::parse(raw) {
            Ok(p) => Incoming::Packet(p),
            Err(e) => Incoming::Bad(e),
        }
    }
}

/// What arrived.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A packet that parsed.
    Packet(Packet<'a>),
    /// A KISS frame that is not port-0 data (RNode reports, other TNC ports).
    Command(kiss::Frame<'a>),
    /// A damaged frame or packet (dropped; count it).
    Bad(PacketError),
}

/// A framed packet port over an `embedded-io` transport, with `N` bytes of frame buffer.
pub struct PacketPort<IO, const N: usize = { MAX_MTU + 8 }> {
    io: IO,
    framing: Framing,
    de: Deframer<N>,
    rx: [u8; 64],
    pos: usize,
    len: usize,
}

impl<IO: Read + Write, const N: usize> PacketPort<IO, N> {
    /// A port on `io` with `framing`.
    pub fn new(io: IO, framing: Framing) -> Self {
        PacketPort {
            io,
            framing,
            de: Deframer::new(framing),
            rx: [0; 64],
            pos: 0,
            len: 0,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Frames and writes one packet; returns the bytes written to the transport.
    pub fn send(&mut self, p: &Packet<'_>) -> Result<usize, PortError<IO::Error>> {
        let mut out = [0u8; MAX_FRAMED];
        let n = p.write_framed(self.framing, &mut out)?;
        write_all(&mut self.io, &out[..n])?;
        Ok(n)
    }

    /// Writes bytes as they are (e.g. RNode configuration commands).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), PortError<IO::Error>> {
        write_all(&mut self.io, bytes)
    }

    /// Reads at most once from the transport and returns the next complete frame, if one is
    /// complete by then. Call it in a loop; `Ok(None)` means nothing more yet.
    pub fn poll(&mut self) -> Result<Option<Incoming<'_>>, PortError<IO::Error>> {
        let mut read = false;
        loop {
            if self.pos == self.len {
                if read {
                    return Ok(None);
                }
                read = true;
                self.pos = 0;
                self.len = 0;
                let n = read_some(&mut self.io, &mut self.rx)?;
                if n == 0 {
                    return Ok(None);
                }
                self.len = n;
            }
            let b = self.rx[self.pos];
            self.pos += 1;
            match self.de.push_byte(b) {
                None => {}
                Some(Err(e)) => return Ok(Some(Incoming::Bad(e))),
                Some(Ok(())) => break,
            }
        }
        Ok(Some(self.de.incoming()))
    }

    /// Whether bytes already read are waiting to be split (poll again before sleeping).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.len
    }

    /// The transport.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// The transport, giving up the port.
    pub fn into_inner(self) -> IO {
        self.io
    }
}

/// A `std::io` stream as an `embedded-io` transport. `embedded-io` has no `WouldBlock`: a
/// read timeout that the OS reports as `WouldBlock` (sockets) becomes `TimedOut` ("nothing
/// yet"); EIO (what a pty returns once its other side hung up) and `UnexpectedEof` become
/// `BrokenPipe`, so they read as [`PortError::Closed`]. The original error stays inside.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FromStd<T>(pub T);

#[cfg(feature = "std")]
fn hangup_as_broken_pipe(e: std::io::Error) -> std::io::Error {
    use std::io::ErrorKind as K;
    if e.kind() == K::WouldBlock {
        std::io::Error::new(K::TimedOut, e)
    } else if e.raw_os_error() == Some(5) || e.kind() == K::UnexpectedEof {
        std::io::Error::new(K::BrokenPipe, e)
    } else {
        e
    }
}

#[cfg(feature = "std")]
impl<T> embedded_io::ErrorType for FromStd<T> {
    type Error = std::io::Error;
}

#[cfg(feature = "std")]
impl<T: std::io::Read> Read for FromStd<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        self.0.read(buf).map_err(hangup_as_broken_pipe)
    }
}

#[cfg(feature = "std")]
impl<T: std::io::Write> Write for FromStd<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.0.write(buf).map_err(hangup_as_broken_pipe)
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        self.0.flush().map_err(hangup_as_broken_pipe)
    }
}
