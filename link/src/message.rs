//! Message layout: how a payload becomes `k` equal data shards (+ `m` parity shards).
//!
//! ```text
//! body = payload ‖ zero padding (< k bytes) ‖ len: u16 LE ‖ crc32(payload ‖ len): u32 LE
//! ```
//! The body is cut into `k` shards of `L = ceil((len + 6) / k)` bytes, so every shard of a
//! message has the same length (the receiver places shard `i` at `i * L` whatever order shards
//! arrive in) and padding costs less than one byte per shard. The trailer is the end-to-end
//! check: a message is delivered only if it matches.

use super::crc::Crc32;
use super::packet::{max_shard_payload, DataPacket, Packet, DATA_HEADER, FEC_HEADER};
use super::{LinkError, MAX_MESSAGE, MAX_SHARDS, SHARD_BUF};

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
    /// Plans a message of `payload_len` bytes for packets of at most `mtu` wire bytes, with
    /// `parity_percent` parity shards per 100 data shards (0 = ARQ, no parity; at least one
    /// parity shard otherwise; at most 100%).
    pub fn new(payload_len: usize, mtu: usize, parity_percent: u8) -> Result<Plan, LinkError> {
        if payload_len > MAX_MESSAGE {
            return Err(LinkError::MessageTooLarge);
        }
        if parity_percent > 100 {
            return Err(LinkError::BadConfig);
        }
        let header = if parity_percent > 0 {
            FEC_HEADER
        } else {
            DATA_HEADER
        };
        let p = max_shard_payload(mtu, header).ok_or(LinkError::BadMtu)?;
        let body = payload_len + TRAILER_LEN;
        let k = body.div_ceil(p);
        let m = if parity_percent == 0 {
            0
        } else {
            (k * parity_percent as usize).div_ceil(100).max(1)
        };
        if k + m > MAX_SHARDS {
            return Err(LinkError::MessageTooLarge);
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
}

/// Writes `payload` as a padded body with trailer into `out[..plan.body_len()]`.
pub fn write_body(payload: &[u8], plan: &Plan, out: &mut [u8]) -> Result<(), LinkError> {
    let body_len = plan.body_len();
    if out.len() < body_len || payload.len() + TRAILER_LEN > body_len {
        return Err(LinkError::BufferTooSmall);
    }
    let len = u16::try_from(payload.len()).map_err(|_| LinkError::MessageTooLarge)?;
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
pub fn check_body(body: &[u8]) -> Result<usize, LinkError> {
    let n = body.len();
    if n < TRAILER_LEN {
        return Err(LinkError::Corrupt);
    }
    let len = u16::from_le_bytes([body[n - 6], body[n - 5]]) as usize;
    let crc = u32::from_le_bytes([body[n - 4], body[n - 3], body[n - 2], body[n - 1]]);
    if len > n - TRAILER_LEN || body[len..n - TRAILER_LEN].iter().any(|&b| b != 0) {
        return Err(LinkError::Corrupt);
    }
    let mut c = Crc32::new();
    c.update(&body[..len]);
    c.update(&body[n - 6..n - 4]);
    if c.finish() != crc {
        return Err(LinkError::Corrupt);
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
    /// Cuts `payload` into shards for `mtu` (see [`Plan::new`]) and computes parity shards.
    pub fn new(
        msg_id: u8,
        payload: &[u8],
        mtu: usize,
        parity_percent: u8,
        flags: u8,
    ) -> Result<Self, LinkError> {
        let plan = Plan::new(payload.len(), mtu, parity_percent)?;
        let mut shards = heapless::Vec::new();
        shards
            .resize(plan.total_len(), 0)
            .map_err(|_| LinkError::MessageTooLarge)?;
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
    pub fn packet(&self, index: u8, ack_req: bool) -> Result<Packet<'_>, LinkError> {
        let l = self.plan.shard_len;
        let i = index as usize;
        if i >= self.plan.total_shards() {
            return Err(LinkError::BadPacket);
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

    /// Wire bytes of one packet of this message (all shards have the same length).
    pub fn packet_wire_len(&self) -> usize {
        let h = if self.plan.parity_shards > 0 {
            FEC_HEADER
        } else {
            DATA_HEADER
        };
        super::packet::wire_len(h + self.plan.shard_len + super::packet::CRC_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_pads_less_than_one_byte_per_shard() {
        for len in [0usize, 1, 43, 44, 45, 300, 1000, 4096] {
            for mtu in [24usize, 58, 100, 255] {
                let max = max_shard_payload(mtu, DATA_HEADER).unwrap();
                let p = match Plan::new(len, mtu, 0) {
                    Ok(p) => p,
                    Err(e) => {
                        assert_eq!(e, LinkError::MessageTooLarge);
                        assert!((len + TRAILER_LEN).div_ceil(max) > MAX_SHARDS);
                        continue;
                    }
                };
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
