//! tenbit-link: the link layer. It carries tenbit frames (messages of up to [`MAX_MESSAGE`] bytes) over byte
//! streams that lose, damage, duplicate and reorder data: UART/USB serial cables and LoRa
//! modems in transparent mode (a serial port whose every burst becomes one radio packet of at
//! most ~50-255 bytes, under airtime and duty-cycle limits).
//!
//! A message is delivered exactly or reported lost, never delivered corrupted: every packet
//! carries a CRC-16, every message a length + CRC-32 trailer, and sealed messages a Poly1305 tag.
//!
//! # Layers
//! - [`cobs`]: packets are COBS-stuffed and end with `0x00`, so a receiver resynchronises at
//!   the next zero whatever it missed ([`cobs::CobsDecoder`], bounded buffer).
//! - [`packet`]: header + payload + CRC-16 (table below).
//! - [`message`]: a message is cut into `k` equal shards (+ `m` Reed-Solomon parity shards with
//!   feature `fec`, [`fec`]); [`reassembly::Reassembler`] rebuilds it in fixed memory, drops
//!   duplicates, and answers `ACK_REQ` with a bitmap.
//! - [`arq::ArqSender`]: selective-repeat ARQ with exponential backoff and deterministic
//!   jitter, as a clock-free state machine (`now_ms` passed in).
//! - [`profile`]: `serial-<baud>` / `lora-sf<7-12>[-bw..][-cr4/..][-eu868|-us915|-none]`
//!   ([`LinkProfile`] implements `FromStr`), Semtech AN1200.13 time on air, EU868 1% duty
//!   cycle via [`Pacer`], US915 400 ms dwell limit on the MTU.
//! - `seal` (feature `crypto`): ChaCha20-Poly1305 per message, nonce = sender id ‖ boot epoch
//!   ‖ counter, replay windows per sender.
//! - `io` (feature `std`): blocking [`io::Sender`] / [`io::Receiver`] over any
//!   `std::io::Read + Write`; `io::open_serial` (feature `serial`). `sim` (feature `std`):
//!   seeded channel simulator.
//!
//! Everything except `fec`, `io` and `sim` is `no_std` without `alloc`.
//!
//! # Wire format
//! On the wire: `COBS(packet) ‖ 0x00`. Multi-byte fields little-endian.
//!
//! | byte(s)        | DATA (ARQ, m = 0)          | FEC shard (m > 0)        | ACK                         |
//! |----------------|----------------------------|--------------------------|-----------------------------|
//! | 0              | `01 00 ffff` version/kind/flags | `01 01 ffff`        | `01 10 0000`                |
//! | 1              | message id                 | message id               | message id                  |
//! | 2              | shard index                | shard index (`k..` parity) | `k` data shards           |
//! | 3              | `k` data shards            | `k`                      | bitmap, `ceil(k/8)` bytes   |
//! | 4              | payload (L bytes)          | `m` parity shards        | ...                         |
//! | 5..            | ...                        | payload (L bytes)        |                             |
//! | last 2         | CRC-16/CCITT-FALSE of all before | same               | same                        |
//!
//! Flags: bit 0 `ACK_REQ` (answer with an ACK), bit 1 `SEALED`. At most [`MAX_SHARDS`] shards.
//! Overhead per packet: 4 (ARQ) or 5 (FEC) header + 2 CRC + 1 COBS + 1 delimiter bytes; per
//! message a 6-byte trailer (`len u16 ‖ crc32`), less than one padding byte per shard, and when
//! sealed 6-13 bytes of nonce header + 16 bytes of tag.
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
#![allow(clippy::module_name_repetitions)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod arq;
pub mod cobs;
pub mod crc;
#[cfg(feature = "fec")]
pub mod fec;
#[cfg(feature = "std")]
pub mod io;
pub mod message;
pub mod packet;
pub mod profile;
pub mod reassembly;
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

/// Everything that can go wrong on the link. Parsers return these, never panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(thiserror::Error))]
#[non_exhaustive]
pub enum LinkError {
    /// A COBS block was malformed.
    #[cfg_attr(feature = "std", error("malformed packet framing"))]
    BadFraming,
    /// More bytes arrived without a delimiter than any packet can have.
    #[cfg_attr(feature = "std", error("oversized packet discarded"))]
    Oversized,
    /// A packet failed its CRC.
    #[cfg_attr(feature = "std", error("packet CRC mismatch"))]
    BadCrc,
    /// A packet's header or length was invalid.
    #[cfg_attr(feature = "std", error("malformed packet"))]
    BadPacket,
    /// An output buffer was too small.
    #[cfg_attr(feature = "std", error("buffer too small"))]
    BufferTooSmall,
    /// A message exceeded [`MAX_MESSAGE`] or [`MAX_SHARDS`] at this MTU.
    #[cfg_attr(
        feature = "std",
        error("message too large for the link (max {MAX_MESSAGE} bytes, {MAX_SHARDS} packets)")
    )]
    MessageTooLarge,
    /// A reassembled message failed its end-to-end check.
    #[cfg_attr(feature = "std", error("message failed its end-to-end check"))]
    Corrupt,
    /// The link profile string or its parameters are invalid.
    #[cfg_attr(feature = "std", error("invalid link profile (try serial-115200 or lora-sf9[-bw125][-cr4/5][-eu868|-us915|-none])"))]
    BadProfile,
    /// The MTU is too small to carry data or breaks the profile's dwell-time limit.
    #[cfg_attr(feature = "std", error("MTU too small or above the profile's limit"))]
    BadMtu,
    /// Inconsistent configuration (e.g. parity over 100%).
    #[cfg_attr(feature = "std", error("invalid link configuration"))]
    BadConfig,
    /// Parity shards were requested but the `fec` feature is off.
    #[cfg_attr(
        feature = "std",
        error("forward error correction needs the `fec` feature")
    )]
    FecUnavailable,
    /// A sealed message failed authentication (wrong key, forged or damaged).
    #[cfg_attr(feature = "std", error("message failed authentication"))]
    AuthFailed,
    /// A sealed message was already seen (replay).
    #[cfg_attr(feature = "std", error("replayed message rejected"))]
    Replay,
    /// The nonce counter is exhausted for this boot epoch: restart to take a new epoch.
    #[cfg_attr(feature = "std", error("nonce space exhausted for this epoch"))]
    NonceExhausted,
    /// The ARQ sender gave up: the message is lost.
    #[cfg_attr(
        feature = "std",
        error("message {msg_id} lost: no acknowledgement after {tries} tries")
    )]
    MessageLost {
        /// Message id.
        msg_id: u8,
        /// Consecutive unanswered rounds.
        tries: u8,
    },
    /// The peer closed the port (EOF or hang-up).
    #[cfg_attr(feature = "std", error("link closed"))]
    Closed,
    /// No message arrived within the idle timeout.
    #[cfg_attr(feature = "std", error("timed out waiting for a message"))]
    Timeout,
    /// An I/O error (std side), with the operation and the OS message.
    #[cfg(feature = "std")]
    #[error("{0}")]
    Io(String),
}

#[cfg(feature = "fec")]
pub(crate) fn fec_encode(shards: &mut [u8], plan: &Plan) -> Result<(), LinkError> {
    fec::encode(shards, plan)
}
#[cfg(not(feature = "fec"))]
pub(crate) fn fec_encode(_shards: &mut [u8], _plan: &Plan) -> Result<(), LinkError> {
    Err(LinkError::FecUnavailable)
}
#[cfg(feature = "fec")]
pub(crate) fn fec_reconstruct(
    shards: &mut [u8],
    plan: &Plan,
    present: u128,
) -> Result<(), LinkError> {
    fec::reconstruct(shards, plan, present)
}
#[cfg(not(feature = "fec"))]
pub(crate) fn fec_reconstruct(_: &mut [u8], _: &Plan, _: u128) -> Result<(), LinkError> {
    Err(LinkError::FecUnavailable)
}
