//! tenbit-link: the link layer. It carries tenbit frames (messages of up to [`MAX_MESSAGE`] bytes) over byte
//! streams that lose, damage, duplicate and reorder data: UART/USB serial cables and LoRa
//! modems in transparent mode (a serial port whose every burst becomes one radio packet of at
//! most ~50-255 bytes, under airtime and duty-cycle limits).
//!
//! A message is delivered exactly or reported lost, never delivered corrupted: a single-packet
//! message carries a CRC-32 over its whole packet; a multi-shard message a CRC-16 per packet
//! and a length + CRC-32 trailer; sealed messages a Poly1305 tag as well.
//!
//! # Layers (each with its own error enum)
//! - framing: [`cobs`] (`COBS(packet) ‖ 0x00`: transparent modems and cables; a receiver
//!   resynchronises at the next zero, [`cobs::CobsDecoder`]) or [`kiss`] (KISS data frames on
//!   port 0: TNCs and RNode radios, [`kiss::KissDecoder`]), chosen by [`packet::Framing`];
//!   [`port::PacketPort`] does the byte I/O over any `embedded-io` `Read + Write` (a UART HAL
//!   on a board, `port::FromStd` on a host). Errors: [`PacketError`] (and `port::PortError`
//!   around the transport's own error).
//! - [`packet`]: header + payload + CRC (table below). [`PacketError`].
//! - [`message`]: a message is one SINGLE packet when it fits, else `k` equal shards (+ `m`
//!   Reed-Solomon parity shards with feature `fec`, [`fec`]); [`reassembly::Reassembler`]
//!   rebuilds it in fixed memory, drops duplicates, and answers `ACK_REQ` with a bitmap.
//!   [`MessageError`].
//! - [`arq::ArqSender`]: selective-repeat ARQ with exponential backoff and deterministic
//!   jitter, as a clock-free state machine (`now_ms` passed in). [`ArqError`].
//! - [`profile`]: `serial-<baud>` / `lora-sf<7-12>[-bw..][-cr4/..][-eu868|-us915|-none]`
//!   ([`LinkProfile`] implements `FromStr`), Semtech AN1200.13 time on air, EU868 1% duty
//!   cycle via [`Pacer`], US915 400 ms dwell limit on the MTU. [`ProfileError`].
//! - [`rnode`]: RNode radio configuration (KISS commands, validation of the radio's echo);
//!   the same parameters give the airtime profile. [`RnodeError`].
//! - `seal` (feature `crypto`): ChaCha20-Poly1305 per message, nonce = sender id ‖ boot epoch
//!   ‖ counter, replay windows per sender. `SealError`.
//! - `io` (feature `std`): blocking `io::Sender` / `io::Receiver` over any
//!   `std::io::Read + Write`; `io::open_serial` (feature `serial`), `io::open_tcp`; its error
//!   is [`LinkError`], the sum of the layers' errors plus `io::IoError` (which keeps the
//!   `std::io::Error` and so its `ErrorKind`). `durable` (feature `std`): the crash-safe
//!   outbox and the receiver's persistent de-duplication window. `sim` (feature `std`): seeded
//!   channel simulator.
//!
//! Everything except `fec`, `io`, `durable`, `sim` and `transfer` is `no_std` without `alloc`.
//! Features: `std` (host ports, files, clocks), `fec`, `crypto` (sealing), `serial`,
//! `transfer`; `link-full` is what the binaries use.
//!
//! # Wire format
//! On a COBS link: `COBS(packet) ‖ 0x00`; on a KISS link: `C0 00 escaped(packet) C0`.
//! Multi-byte fields little-endian. Header byte: version `10` (bits 7-6), kind (5-4), flags (3-0).
//!
//! | byte(s)   | SINGLE (k = 1, m = 0) | DATA (k >= 2, m = 0) | FEC shard (m > 0)   | ACK                         |
//! |-----------|-----------------------|----------------------|---------------------|-----------------------------|
//! | 0         | `10 11 ffff`          | `10 00 ffff`         | `10 01 ffff`        | `10 10 00oc` (o: k = 1, c: complete) |
//! | 1         | message id            | message id           | message id          | message id                  |
//! | 2         | payload (L bytes)     | shard index          | shard index (`k..` parity) | `k` (absent when o)  |
//! | 3         | ...                   | `k` data shards      | `k`                 | bitmap, `ceil(k/8)` bytes (absent when c) |
//! | 4         |                       | payload (L bytes)    | `m` parity shards   | ...                         |
//! | 5..       |                       | ...                  | payload (L bytes)   |                             |
//! | last 4/2  | CRC-32 of all before  | CRC-16/CCITT-FALSE   | CRC-16              | CRC-16                      |
//!
//! Data flags: bit 0 `ACK_REQ` (answer with an ACK), bit 1 `SEALED`. At most [`MAX_SHARDS`]
//! shards. Every packet has one canonical form (a one-shard message is always SINGLE, a full
//! bitmap always the short ACK), so whatever parses re-serialises to the same bytes.
//! Overhead on a COBS link: a single-packet message 2 header + 4 CRC + 1 COBS + 1 delimiter =
//! 8 bytes, its ACK 6 bytes; a multi-shard message 4 (ARQ) or 5 (FEC) header + 2 CRC + 2
//! COBS/delimiter per packet plus a 6-byte trailer (`len u16 ‖ crc32`) and less than one padding
//! byte per shard. On a KISS link the framing stays on the serial line (an RNode adds its own
//! 1-byte header on air). Sealed: 6-13 bytes of nonce header + 16 bytes of tag per message.
//!
//! # Example (std)
//! ```no_run
//! # #[cfg(all(feature = "serial", feature = "crypto"))]
//! # fn main() -> Result<(), tenbit_link::LinkError> {
//! use tenbit_link::io::{open_serial, LinkConfig, Receiver, Sender};
//! let mut cfg = LinkConfig::new("lora-sf9".parse()?);
//! cfg.mtu = 58; // module buffer limit; default is the profile's maximum
//! // Host: `tenbit send --link lora-sf9 --port /dev/ttyUSB0 FILE`
//! let mut port = open_serial("/dev/ttyUSB0", 9600)?;
//! let (air_us, packets) = tenbit_link::io::estimate_airtime(&cfg, 300)?;
//! eprintln!("~{} ms airtime in {packets} packets", air_us / 1000);
//! let report = Sender::new(cfg.clone())?.send(&mut port, b"frame bytes", |p| {
//!     eprintln!("{}/{} shards, waiting {} ms for duty cycle", p.done_shards, p.total_shards, p.pacing_wait_ms)
//! })?;
//! eprintln!("{} packets, {} bytes on air", report.packets_sent, report.wire_bytes);
//! // Board: `tenbit-edge listen --port /dev/ttyAMA0`
//! let mut rx = Receiver::new(open_serial("/dev/ttyAMA0", 9600)?, &cfg)?;
//! loop {
//!     let msg = rx.next_message()?; // exact payload; lost ones are counted in rx.stats()
//!     println!("{} bytes", msg.payload.len());
//! }
//! # }
//! # #[cfg(not(all(feature = "serial", feature = "crypto")))]
//! # fn main() {}
//! ```
//! On stdin/stdout use `io::stdio_port()`; for one-way links set
//! `cfg.mode = io::Mode::Broadcast { parity_percent: 50 }`; to seal, set `cfg.key` and
//! `cfg.epoch_file` (both ends share the key; each sender keeps its own epoch file).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::module_name_repetitions)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arq;
pub mod cobs;
pub mod crc;
#[cfg(feature = "std")]
pub mod durable;
#[cfg(feature = "fec")]
pub mod fec;
#[cfg(feature = "std")]
pub mod io;
pub mod kiss;
pub mod message;
pub mod packet;
pub mod port;
pub mod profile;
pub mod reassembly;
#[cfg(feature = "reticulum")]
pub mod reticulum;
pub mod rnode;
mod rxbuf;
#[cfg(feature = "crypto")]
pub mod seal;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(feature = "transfer")]
pub mod transfer;

pub use arq::{ArqAction, ArqConfig, ArqSender};
pub use message::{OutgoingMessage, Plan};
pub use packet::{AckPacket, DataPacket, Packet};
pub use profile::{LinkProfile, LoraParams, Pacer, Region};
pub use reassembly::{Handled, Reassembler, ReassemblyStats};

/// Largest message payload (a tenbit frame) the link carries.
pub const MAX_MESSAGE: usize = 4096;
/// Most shards (data + parity) in one message; sizes the 128-bit ACK bitmap.
pub const MAX_SHARDS: usize = 128;
/// Largest packet on the wire, COBS and delimiter included (LoRa's 255-byte payload limit).
pub const MAX_MTU: usize = 255;
/// Largest un-stuffed packet that fits [`MAX_MTU`].
pub const MAX_RAW_PACKET: usize = 253;
/// Bytes needed to hold every shard of the largest message (parity at most 100%).
pub const SHARD_BUF: usize = 2 * (MAX_MESSAGE + message::TRAILER_LEN + MAX_SHARDS);

/// The driver's error: which layer failed, with that layer's own error inside. Each layer's
/// functions return their own enum ([`PacketError`], [`MessageError`], [`ArqError`],
/// [`ProfileError`], `SealError`, [`RnodeError`], `IoError`); this sum is what the blocking
/// driver in `io` returns, and what the CLIs map to exit code 6.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Framing or packet layer (COBS, KISS, header, CRC).
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// Message layer (planning, reassembly, end-to-end check, FEC).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// ARQ: a message was given up.
    #[error(transparent)]
    Arq(#[from] ArqError),
    /// Link profile or MTU.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Sealing (authentication, replay, nonce space).
    #[cfg(feature = "crypto")]
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    /// An RNode radio refused or ignored its configuration.
    #[error(transparent)]
    Rnode(#[from] RnodeError),
    /// The operating system's I/O error, with its `std::io::ErrorKind` kept.
    #[cfg(feature = "std")]
    #[error(transparent)]
    Io(#[from] io::IoError),
    /// The Reticulum sidecar failed (see `reticulum`).
    #[cfg(feature = "reticulum")]
    #[error(transparent)]
    Reticulum(#[from] reticulum::ReticulumError),
    /// The spool or the receiver's state on local storage (not the link itself: a full or
    /// read-only disk, a damaged state file).
    #[cfg(feature = "std")]
    #[error(transparent)]
    Storage(#[from] durable::DurableError),
    /// The peer closed the port (EOF or hang-up).
    #[error("link closed")]
    Closed,
    /// No message arrived within the idle timeout.
    #[error("timed out waiting for a message")]
    Timeout,
}

pub use arq::ArqError;
pub use message::MessageError;
pub use packet::PacketError;
pub use profile::ProfileError;
pub use rnode::RnodeError;

#[cfg(feature = "fec")]
pub(crate) fn fec_encode(shards: &mut [u8], plan: &Plan) -> Result<(), MessageError> {
    fec::encode(shards, plan)
}
#[cfg(not(feature = "fec"))]
pub(crate) fn fec_encode(_shards: &mut [u8], _plan: &Plan) -> Result<(), MessageError> {
    Err(MessageError::FecUnavailable)
}
#[cfg(feature = "fec")]
pub(crate) fn fec_reconstruct(
    shards: &mut [u8],
    plan: &Plan,
    present: u128,
) -> Result<(), MessageError> {
    fec::reconstruct(shards, plan, present)
}
#[cfg(not(feature = "fec"))]
pub(crate) fn fec_reconstruct(_: &mut [u8], _: &Plan, _: u128) -> Result<(), MessageError> {
    Err(MessageError::FecUnavailable)
}
