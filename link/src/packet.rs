//! Packet codec: the bytes between two COBS delimiters. See the wire-format table in the
//! [module docs](super).

use super::cobs;
use super::crc::crc16;
use super::{LinkError, MAX_MTU, MAX_RAW_PACKET, MAX_SHARDS};

const VERSION: u8 = 0b01;
const KIND_DATA: u8 = 0;
const KIND_FEC: u8 = 1;
const KIND_ACK: u8 = 2;

/// Flag bit: the sender waits for an acknowledgement after this packet.
pub const FLAG_ACK_REQ: u8 = 0b0001;
/// Flag bit: the message is sealed (ChaCha20-Poly1305); only a keyed receiver can open it.
pub const FLAG_SEALED: u8 = 0b0010;
const KNOWN_FLAGS: u8 = FLAG_ACK_REQ | FLAG_SEALED;

/// Header length of a data packet without parity shards (ARQ mode).
pub const DATA_HEADER: usize = 4;
/// Header length of a data/parity packet of an FEC-coded message.
pub const FEC_HEADER: usize = 5;
/// Packet CRC length.
pub const CRC_LEN: usize = 2;

/// One shard of a message: a data fragment or (with parity shards) a Reed-Solomon parity shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPacket<'a> {
    /// Message id (wraps at 256); all shards of one message share it.
    pub msg_id: u8,
    /// Shard index: `0..data_shards` are data, `data_shards..data_shards+parity_shards` parity.
    pub index: u8,
    /// Number of data shards `k` (the message is rebuilt from any `k` shards).
    pub data_shards: u8,
    /// Number of parity shards `m`; zero on ARQ links.
    pub parity_shards: u8,
    /// [`FLAG_ACK_REQ`] | [`FLAG_SEALED`].
    pub flags: u8,
    /// Shard bytes; every shard of a message has the same length.
    pub payload: &'a [u8],
}

/// Selective acknowledgement: which data shards of a message the receiver holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckPacket {
    /// Message id being acknowledged.
    pub msg_id: u8,
    /// Number of data shards of that message (sizes the bitmap).
    pub data_shards: u8,
    /// Bit `i` set: data shard `i` received (all bits set once the message is delivered).
    pub received: u128,
}

/// A parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A shard of a message.
    Data(DataPacket<'a>),
    /// An acknowledgement.
    Ack(AckPacket),
}

fn header_byte(kind: u8, flags: u8) -> u8 {
    (VERSION << 6) | (kind << 4) | (flags & 0x0F)
}

/// Mask with the low `k` bits set.
pub fn full_mask(k: u8) -> u128 {
    if k as usize >= 128 {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

impl Packet<'_> {
    /// Parses one decoded (un-stuffed) packet. Never panics; every malformed input is an error.
    pub fn parse(raw: &[u8]) -> Result<Packet<'_>, LinkError> {
        if raw.len() < 1 + CRC_LEN || raw.len() > MAX_RAW_PACKET {
            return Err(LinkError::BadPacket);
        }
        let (body, crc) = raw.split_at(raw.len() - CRC_LEN);
        if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
            return Err(LinkError::BadCrc);
        }
        let h = body[0];
        if h >> 6 != VERSION || h & 0x0F & !KNOWN_FLAGS != 0 {
            return Err(LinkError::BadPacket);
        }
        let flags = h & 0x0F;
        match (h >> 4) & 0b11 {
            KIND_DATA | KIND_FEC => {
                let fec = (h >> 4) & 0b11 == KIND_FEC;
                let hl = if fec { FEC_HEADER } else { DATA_HEADER };
                if body.len() <= hl {
                    return Err(LinkError::BadPacket);
                }
                let (msg_id, index, k) = (body[1], body[2], body[3]);
                let m = if fec { body[4] } else { 0 };
                let total = k as usize + m as usize;
                if k == 0 || (fec && m == 0) || total > MAX_SHARDS || index as usize >= total {
                    return Err(LinkError::BadPacket);
                }
                Ok(Packet::Data(DataPacket {
                    msg_id,
                    index,
                    data_shards: k,
                    parity_shards: m,
                    flags,
                    payload: &body[hl..],
                }))
            }
            KIND_ACK => {
                if body.len() < 3 || flags != 0 {
                    return Err(LinkError::BadPacket);
                }
                let (msg_id, k) = (body[1], body[2]);
                let nbytes = (k as usize).div_ceil(8);
                if k == 0 || k as usize > MAX_SHARDS || body.len() != 3 + nbytes {
                    return Err(LinkError::BadPacket);
                }
                let mut bytes = [0u8; 16];
                bytes[..nbytes].copy_from_slice(&body[3..]);
                let received = u128::from_le_bytes(bytes);
                if received & !full_mask(k) != 0 {
                    return Err(LinkError::BadPacket);
                }
                Ok(Packet::Ack(AckPacket {
                    msg_id,
                    data_shards: k,
                    received,
                }))
            }
            _ => Err(LinkError::BadPacket),
        }
    }

    /// Serialises the packet (header, payload, CRC) into `out`, without COBS; returns the length.
    pub fn write_raw(&self, out: &mut [u8]) -> Result<usize, LinkError> {
        let mut n;
        match self {
            Packet::Data(d) => {
                let total = d.data_shards as usize + d.parity_shards as usize;
                if d.data_shards == 0
                    || total > MAX_SHARDS
                    || d.index as usize >= total
                    || d.flags & !KNOWN_FLAGS != 0
                    || d.payload.is_empty()
                {
                    return Err(LinkError::BadPacket);
                }
                let fec = d.parity_shards > 0;
                let hl = if fec { FEC_HEADER } else { DATA_HEADER };
                let len = hl + d.payload.len() + CRC_LEN;
                if len > out.len() || len > MAX_RAW_PACKET {
                    return Err(LinkError::BufferTooSmall);
                }
                let kind = if fec { KIND_FEC } else { KIND_DATA };
                out[0] = header_byte(kind, d.flags);
                out[1] = d.msg_id;
                out[2] = d.index;
                out[3] = d.data_shards;
                if fec {
                    out[4] = d.parity_shards;
                }
                out[hl..hl + d.payload.len()].copy_from_slice(d.payload);
                n = hl + d.payload.len();
            }
            Packet::Ack(a) => {
                if a.data_shards == 0 || a.data_shards as usize > MAX_SHARDS {
                    return Err(LinkError::BadPacket);
                }
                let nbytes = (a.data_shards as usize).div_ceil(8);
                let len = 3 + nbytes + CRC_LEN;
                if len > out.len() {
                    return Err(LinkError::BufferTooSmall);
                }
                out[0] = header_byte(KIND_ACK, 0);
                out[1] = a.msg_id;
                out[2] = a.data_shards;
                let bits = (a.received & full_mask(a.data_shards)).to_le_bytes();
                out[3..3 + nbytes].copy_from_slice(&bits[..nbytes]);
                n = 3 + nbytes;
            }
        }
        let crc = crc16(&out[..n]).to_le_bytes();
        out[n..n + 2].copy_from_slice(&crc);
        n += 2;
        Ok(n)
    }

    /// Serialises and COBS-stuffs the packet, with the trailing `0x00` delimiter: exactly the
    /// bytes to put on the wire. Returns the length.
    pub fn write_wire(&self, out: &mut [u8]) -> Result<usize, LinkError> {
        let mut raw = [0u8; MAX_RAW_PACKET];
        let n = self.write_raw(&mut raw)?;
        let e = cobs::encode(&raw[..n], out)?;
        if e >= out.len() {
            return Err(LinkError::BufferTooSmall);
        }
        out[e] = 0;
        Ok(e + 1)
    }
}

/// Wire bytes (COBS and delimiter included) of a packet whose raw length is `raw_len`.
pub const fn wire_len(raw_len: usize) -> usize {
    cobs::max_encoded_len(raw_len) + 1
}

/// The largest shard payload that fits an MTU of `mtu` wire bytes, for the given header length.
/// `None` if the MTU cannot carry even one byte.
pub fn max_shard_payload(mtu: usize, header: usize) -> Option<usize> {
    let mtu = mtu.min(MAX_MTU);
    let mut raw = MAX_RAW_PACKET;
    while raw > 0 && wire_len(raw) > mtu {
        raw -= 1;
    }
    raw.checked_sub(header + CRC_LEN).filter(|&p| p > 0)
}

/// Wire size of an ACK for a message of `k` data shards.
pub const fn ack_wire_len(k: usize) -> usize {
    wire_len(3 + k.div_ceil(8) + CRC_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_ack_roundtrip() {
        let payload = [0u8, 1, 2, 0, 255];
        for parity in [0u8, 3] {
            let p = Packet::Data(DataPacket {
                msg_id: 200,
                index: 2,
                data_shards: 4,
                parity_shards: parity,
                flags: FLAG_ACK_REQ,
                payload: &payload,
            });
            let mut raw = [0u8; 64];
            let n = p.write_raw(&mut raw).unwrap();
            let hl = if parity > 0 { FEC_HEADER } else { DATA_HEADER };
            assert_eq!(n, hl + payload.len() + CRC_LEN);
            assert_eq!(Packet::parse(&raw[..n]).unwrap(), p);
        }
        let a = Packet::Ack(AckPacket {
            msg_id: 7,
            data_shards: 100,
            received: (1u128 << 99) | 5,
        });
        let mut raw = [0u8; 64];
        let n = a.write_raw(&mut raw).unwrap();
        assert_eq!(n, 3 + 13 + 2);
        assert_eq!(Packet::parse(&raw[..n]).unwrap(), a);
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let payload = *b"hello, lora";
        let p = Packet::Data(DataPacket {
            msg_id: 1,
            index: 0,
            data_shards: 1,
            parity_shards: 0,
            flags: 0,
            payload: &payload,
        });
        let mut raw = [0u8; 64];
        let n = p.write_raw(&mut raw).unwrap();
        for bit in 0..n * 8 {
            let mut r = raw;
            r[bit / 8] ^= 1 << (bit % 8);
            assert!(Packet::parse(&r[..n]).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn mtu_arithmetic() {
        // 58-byte module limit (Ebyte E32 class): 56 raw bytes, 4 header, 2 CRC -> 50 payload.
        assert_eq!(max_shard_payload(58, DATA_HEADER), Some(50));
        assert_eq!(max_shard_payload(255, DATA_HEADER), Some(247));
        assert_eq!(max_shard_payload(8, DATA_HEADER), None);
        for mtu in 9..=300 {
            if let Some(p) = max_shard_payload(mtu, FEC_HEADER) {
                assert!(wire_len(p + FEC_HEADER + CRC_LEN) <= mtu.min(MAX_MTU));
            }
        }
    }
}
