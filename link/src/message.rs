//! Message layout: how a payload becomes `k` equal data shards (+ `m` parity shards).
//!
//! ```text
//! body = payload ‖ zero padding (< k bytes) ‖ len: u16 LE ‖ crc32(payload ‖ len): u32 LE
//! ```
//! The body is cut into `k` shards of `L = ceil((len + 6) / k)` bytes, so every shard of a
//! message has the same length (the receiver places shard `i` at `i * L` whatever order shards
//! arrive in) and padding costs less than one byte per shard. The trailer is the end-to-end
//! check: a message is delivered only if it matches.
//!
//! A message that fits one packet on an ARQ link (`len + 6 <= max raw packet`) is sent as a
//! single SINGLE packet instead: the body is the payload alone (`k = 1`, `L = len`) and the
//! packet's CRC-32 over header and payload replaces both the CRC-16 and the trailer. That is
//! 8 bytes of overhead on a COBS link instead of 14, and what puts a typical 100-250 byte tenbit
//! frame within 1.1x of its size on air.

use super::crc::Crc32;
use super::packet::{
    shard_payload_for_raw, DataPacket, Framing, Packet, DATA_HEADER, FEC_HEADER, SINGLE_OVERHEAD,
};
use super::{MAX_MESSAGE, MAX_SHARDS, SHARD_BUF};

/// Errors of the message layer: planning, shard bookkeeping, the end-to-end check, FEC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A message exceeded [`MAX_MESSAGE`] or [`MAX_SHARDS`] at this MTU.
    #[error("message too large for the link (max {MAX_MESSAGE} bytes, {MAX_SHARDS} packets)")]
    TooLarge,
    /// A reassembled message failed its end-to-end check.
    #[error("message failed its end-to-end check")]
    Corrupt,
    /// The MTU is too small to carry data.
    #[error("MTU too small to carry a message")]
    BadMtu,
    /// Parity over 100%.
    #[error("parity must be 0-100%")]
    BadParity,
    /// Parity shards were requested but the `fec` feature is off.
    #[error("forward error correction needs the `fec` feature")]
    FecUnavailable,
    /// A shard whose fields no parser would produce (no data shards, an index beyond them, more
    /// than [`MAX_SHARDS`], an empty shard of a multi-shard message).
    #[error("impossible shard fields")]
    BadShard,
    /// An output buffer was too small.
    #[error("buffer too small for the message")]
    BufferTooSmall,
}

/// Length of the message trailer (payload length and CRC-32).
pub const TRAILER_LEN: usize = 6;

/// How a message is cut into shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Data shards `k`.
    pub data_shards: u8,
    /// Parity shards `m` (0 on ARQ links).
    pub parity_shards: u8,
    /// Bytes per shard `L`.
    pub shard_len: usize,
}

impl Plan {
    /// Plans a message of `payload_len` bytes for COBS packets of at most `mtu` wire bytes,
    /// with `parity_percent` parity shards per 100 data shards (0 = ARQ, no parity; at least one
    /// parity shard otherwise; at most 100%).
    pub fn new(payload_len: usize, mtu: usize, parity_percent: u8) -> Result<Plan, MessageError> {
        Self::for_raw(payload_len, Framing::Cobs.max_raw(mtu), parity_percent)
    }

    /// As [`Plan::new`], for raw packets of at most `max_raw` bytes (any framing).
    pub fn for_raw(
        payload_len: usize,
        max_raw: usize,
        parity_percent: u8,
    ) -> Result<Plan, MessageError> {
        if payload_len > MAX_MESSAGE {
            return Err(MessageError::TooLarge);
        }
        if parity_percent > 100 {
            return Err(MessageError::BadParity);
        }
        if parity_percent == 0 && payload_len + SINGLE_OVERHEAD <= max_raw {
            return Ok(Plan {
                data_shards: 1,
                parity_shards: 0,
                shard_len: payload_len,
            });
        }
        let header = if parity_percent > 0 {
            FEC_HEADER
        } else {
            DATA_HEADER
        };
        let p = shard_payload_for_raw(max_raw, header).ok_or(MessageError::BadMtu)?;
        let body = payload_len + TRAILER_LEN;
        let k = body.div_ceil(p);
        let m = if parity_percent == 0 {
            0
        } else {
            (k * parity_percent as usize).div_ceil(100).max(1)
        };
        if k + m > MAX_SHARDS {
            return Err(MessageError::TooLarge);
        }
        Ok(Plan {
            data_shards: k as u8,
            parity_shards: m as u8,
            shard_len: body.div_ceil(k),
        })
    }

    /// Bytes of the padded body (`k * L`).
    pub fn body_len(&self) -> usize {
        self.data_shards as usize * self.shard_len
    }

    /// Bytes of all shards, parity included.
    pub fn total_len(&self) -> usize {
        self.total_shards() * self.shard_len
    }

    /// `k + m`.
    pub fn total_shards(&self) -> usize {
        self.data_shards as usize + self.parity_shards as usize
    }

    /// One shard, no parity: the body is the payload itself, checked by the packet's CRC-32.
    pub fn is_single(&self) -> bool {
        self.data_shards == 1 && self.parity_shards == 0
    }

    /// Raw bytes of one packet of this message (all shards have the same length).
    pub fn packet_raw_len(&self) -> usize {
        use super::packet::{CRC_LEN, SINGLE_OVERHEAD};
        if self.is_single() {
            SINGLE_OVERHEAD + self.shard_len
        } else if self.parity_shards > 0 {
            FEC_HEADER + self.shard_len + CRC_LEN
        } else {
            DATA_HEADER + self.shard_len + CRC_LEN
        }
    }
}

/// Writes `payload` as a padded body with trailer into `out[..plan.body_len()]` (for a single
/// packet message: the payload alone).
pub fn write_body(payload: &[u8], plan: &Plan, out: &mut [u8]) -> Result<(), MessageError> {
    let body_len = plan.body_len();
    if plan.is_single() {
        if out.len() < body_len || payload.len() != body_len {
            return Err(MessageError::BufferTooSmall);
        }
        out[..body_len].copy_from_slice(payload);
        return Ok(());
    }
    if out.len() < body_len || payload.len() + TRAILER_LEN > body_len {
        return Err(MessageError::BufferTooSmall);
    }
    let len = u16::try_from(payload.len()).map_err(|_| MessageError::TooLarge)?;
    out[..payload.len()].copy_from_slice(payload);
    out[payload.len()..body_len - TRAILER_LEN].fill(0);
    let lb = len.to_le_bytes();
    let mut crc = Crc32::new();
    crc.update(payload);
    crc.update(&lb);
    out[body_len - 6..body_len - 4].copy_from_slice(&lb);
    out[body_len - 4..body_len].copy_from_slice(&crc.finish().to_le_bytes());
    Ok(())
}

/// Checks a reassembled body and returns the payload range. Any mismatch (length out of range,
/// non-zero padding, CRC) means the message is lost, never delivered.
pub fn check_body(body: &[u8]) -> Result<usize, MessageError> {
    let n = body.len();
    if n < TRAILER_LEN {
        return Err(MessageError::Corrupt);
    }
    let len = u16::from_le_bytes([body[n - 6], body[n - 5]]) as usize;
    let crc = u32::from_le_bytes([body[n - 4], body[n - 3], body[n - 2], body[n - 1]]);
    if len > n - TRAILER_LEN || body[len..n - TRAILER_LEN].iter().any(|&b| b != 0) {
        return Err(MessageError::Corrupt);
    }
    let mut c = Crc32::new();
    c.update(&body[..len]);
    c.update(&body[n - 6..n - 4]);
    if c.finish() != crc {
        return Err(MessageError::Corrupt);
    }
    Ok(len)
}

/// A message ready to send: all its shards (parity computed) in one bounded buffer.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    /// Message id.
    pub msg_id: u8,
    /// Shard layout.
    pub plan: Plan,
    /// Packet flags common to every shard (e.g. [`super::packet::FLAG_SEALED`]).
    pub flags: u8,
    shards: heapless::Vec<u8, SHARD_BUF>,
}

impl OutgoingMessage {
    /// Cuts `payload` into shards for COBS packets of `mtu` wire bytes (see [`Plan::new`]) and
    /// computes parity shards.
    pub fn new(
        msg_id: u8,
        payload: &[u8],
        mtu: usize,
        parity_percent: u8,
        flags: u8,
    ) -> Result<Self, MessageError> {
        Self::for_raw(
            msg_id,
            payload,
            Framing::Cobs.max_raw(mtu),
            parity_percent,
            flags,
        )
    }

    /// As [`OutgoingMessage::new`], for raw packets of at most `max_raw` bytes.
    pub fn for_raw(
        msg_id: u8,
        payload: &[u8],
        max_raw: usize,
        parity_percent: u8,
        flags: u8,
    ) -> Result<Self, MessageError> {
        let plan = Plan::for_raw(payload.len(), max_raw, parity_percent)?;
        let mut shards = heapless::Vec::new();
        shards
            .resize(plan.total_len(), 0)
            .map_err(|_| MessageError::TooLarge)?;
        write_body(payload, &plan, &mut shards)?;
        if plan.parity_shards > 0 {
            super::fec_encode(&mut shards, &plan)?;
        }
        Ok(OutgoingMessage {
            msg_id,
            plan,
            flags,
            shards,
        })
    }

    /// Shard `index` as a packet (`ack_req` asks the receiver for an acknowledgement).
    pub fn packet(&self, index: u8, ack_req: bool) -> Result<Packet<'_>, MessageError> {
        let l = self.plan.shard_len;
        let i = index as usize;
        if i >= self.plan.total_shards() {
            return Err(MessageError::BadShard);
        }
        let flags = self.flags
            | if ack_req {
                super::packet::FLAG_ACK_REQ
            } else {
                0
            };
        Ok(Packet::Data(DataPacket {
            msg_id: self.msg_id,
            index,
            data_shards: self.plan.data_shards,
            parity_shards: self.plan.parity_shards,
            flags,
            payload: &self.shards[i * l..(i + 1) * l],
        }))
    }

    /// Wire bytes of one COBS packet of this message (all shards have the same length).
    pub fn packet_wire_len(&self) -> usize {
        super::packet::wire_len(self.plan.packet_raw_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::max_shard_payload;

    #[test]
    fn plan_pads_less_than_one_byte_per_shard() {
        for len in [0usize, 1, 43, 44, 45, 300, 1000, 4096] {
            for mtu in [24usize, 58, 100, 255] {
                let max = max_shard_payload(mtu, DATA_HEADER).unwrap();
                let p = match Plan::new(len, mtu, 0) {
                    Ok(p) => p,
                    Err(e) => {
                        assert_eq!(e, MessageError::TooLarge);
                        assert!((len + TRAILER_LEN).div_ceil(max) > MAX_SHARDS);
                        continue;
                    }
                };
                if p.is_single() {
                    assert_eq!(p.body_len(), len);
                    assert!(p.packet_raw_len() <= Framing::Cobs.max_raw(mtu));
                    continue;
                }
                assert!(p.body_len() >= len + TRAILER_LEN);
                assert!(p.body_len() - (len + TRAILER_LEN) < p.data_shards as usize);
                assert!(p.shard_len <= max);
            }
        }
        assert!(Plan::new(MAX_MESSAGE + 1, 255, 0).is_err());
        assert_eq!(Plan::new(400, 58, 50).unwrap().parity_shards, 5);
    }

    #[test]
    fn body_roundtrip_and_damage_detection() {
        let payload = b"the quick brown fox";
        let plan = Plan::new(payload.len(), 16, 0).unwrap();
        assert!(!plan.is_single());
        let mut buf = [0u8; 128];
        write_body(payload, &plan, &mut buf).unwrap();
        let body = &mut buf[..plan.body_len()];
        assert_eq!(&body[..check_body(body).unwrap()], payload);
        for i in 0..body.len() {
            body[i] ^= 0x40;
            assert!(check_body(body).is_err(), "byte {i}");
            body[i] ^= 0x40;
        }
    }
}
