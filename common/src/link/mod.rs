//! TODO docs
#![allow(clippy::module_name_repetitions)]

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
