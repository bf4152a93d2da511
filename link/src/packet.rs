//! Packet codec: the bytes between two COBS delimiters (or inside one KISS data frame). See
//! the wire-format table in the [module docs](super).

use super::cobs;
use super::crc::{crc16, Crc32};
use super::{MAX_MTU, MAX_RAW_PACKET, MAX_SHARDS};

/// Errors of the framing and packet layer: what a damaged byte stream produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A COBS block or KISS escape was malformed.
    #[error("malformed packet framing")]
    Framing,
    /// More bytes arrived without a delimiter than any packet can have.
    #[error("oversized packet discarded")]
    Oversized,
    /// A packet failed its CRC.
    #[error("packet CRC mismatch")]
    BadCrc,
    /// A packet's header or length was invalid (or not in its one canonical form).
    #[error("malformed packet")]
    Malformed,
    /// An output buffer was too small.
    #[error("buffer too small for the packet")]
    BufferTooSmall,
}

const VERSION: u8 = 0b10;
const KIND_DATA: u8 = 0;
const KIND_FEC: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_SINGLE: u8 = 3;

/// Flag bit: the sender waits for an acknowledgement after this packet.
pub const FLAG_ACK_REQ: u8 = 0b0001;
/// Flag bit: the message is sealed (ChaCha20-Poly1305); only a keyed receiver can open it.
pub const FLAG_SEALED: u8 = 0b0010;
/// Flag bit: the message starts with a durable envelope (stream id, sequence number; see
/// `durable`), for de-duplication across restarts.
pub const FLAG_DURABLE: u8 = 0b0100;
const KNOWN_FLAGS: u8 = FLAG_ACK_REQ | FLAG_SEALED | FLAG_DURABLE;
/// ACK flag: every data shard is held; no bitmap follows.
const ACK_COMPLETE: u8 = 0b0001;
/// ACK flag (with [`ACK_COMPLETE`]): the message had one shard; no shard count follows.
const ACK_ONE: u8 = 0b0010;

/// Header length of a data packet of a multi-shard message without parity (ARQ mode).
pub const DATA_HEADER: usize = 4;
/// Header length of a data/parity packet of an FEC-coded message.
pub const FEC_HEADER: usize = 5;
/// Header length of a single-packet message (ARQ, one shard): kind/flags and message id.
pub const SINGLE_HEADER: usize = 2;
/// Packet CRC length (CRC-16) of DATA, FEC and ACK packets.
pub const CRC_LEN: usize = 2;
/// CRC length (CRC-32) of a single-packet message: it is both the packet and the end-to-end
/// check, so the message needs no separate trailer.
pub const SINGLE_CRC_LEN: usize = 4;
/// All overhead of a single-packet message inside its raw packet.
pub const SINGLE_OVERHEAD: usize = SINGLE_HEADER + SINGLE_CRC_LEN;

/// How raw packets are delimited on the byte stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// `COBS(packet) ‖ 0x00`: for transparent modems and serial cables, where every byte
    /// written is transmitted. Costs 2 bytes per packet of up to 253 bytes.
    #[default]
    Cobs,
    /// KISS data frames on port 0 (`FEND 0x00 escaped(packet) FEND`): for KISS TNCs, which
    /// strip the framing and transmit the packet alone.
    Kiss,
    /// KISS to an RNode radio: as [`Framing::Kiss`], and the radio sends each packet behind a
    /// 1-byte RNode header of its own.
    Rnode,
}

impl Framing {
    /// Bytes the medium carries for a raw packet of `raw` bytes: with COBS the whole stuffed
    /// packet and its delimiter; with KISS the packet alone (the TNC removes the framing).
    pub const fn on_air_len(self, raw: usize) -> usize {
        match self {
            Framing::Cobs => wire_len(raw),
            Framing::Kiss => raw,
            Framing::Rnode => raw + 1,
        }
    }

    /// Whether packets travel in KISS frames.
    pub const fn is_kiss(self) -> bool {
        matches!(self, Framing::Kiss | Framing::Rnode)
    }

    /// The largest raw packet whose [`Self::on_air_len`] fits `mtu`, at most
    /// [`MAX_RAW_PACKET`].
    pub fn max_raw(self, mtu: usize) -> usize {
        let mtu = mtu.min(MAX_MTU);
        let mut raw = MAX_RAW_PACKET;
        while raw > 0 && self.on_air_len(raw) > mtu {
            raw -= 1;
        }
        raw
    }
}

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
    /// Shard bytes; every shard of a message has the same length. A one-shard ARQ message
    /// (`k = 1`, `m = 0`) travels as a single packet whose shard is the message itself (no
    /// trailer: the packet's CRC-32 is the end-to-end check), and may be empty.
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

fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

impl DataPacket<'_> {
    /// Whether the fields are ones a parser can produce (checked before writing, and by the
    /// reassembler, since the fields are public).
    pub fn is_consistent(&self) -> bool {
        let total = self.data_shards as usize + self.parity_shards as usize;
        self.data_shards > 0
            && total <= MAX_SHARDS
            && (self.index as usize) < total
            && self.flags & !KNOWN_FLAGS == 0
            && (self.is_single() || !self.payload.is_empty())
    }

    /// A one-shard message without parity: sent as one SINGLE packet.
    pub fn is_single(&self) -> bool {
        self.data_shards == 1 && self.parity_shards == 0
    }
}

impl Packet<'_> {
    /// Parses one decoded (un-stuffed) packet. Never panics; every malformed input is an error,
    /// and every accepted packet re-serialises to exactly the same bytes.
    pub fn parse(raw: &[u8]) -> Result<Packet<'_>, PacketError> {
        if raw.len() < 1 + CRC_LEN || raw.len() > MAX_RAW_PACKET {
            return Err(PacketError::Malformed);
        }
        let h = raw[0];
        if h >> 6 != VERSION {
            return Err(PacketError::Malformed);
        }
        let flags = h & 0x0F;
        let kind = (h >> 4) & 0b11;
        if kind == KIND_SINGLE {
            if raw.len() < SINGLE_OVERHEAD {
                return Err(PacketError::Malformed);
            }
            let (body, crc) = raw.split_at(raw.len() - SINGLE_CRC_LEN);
            if crc32(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
                return Err(PacketError::BadCrc);
            }
            if flags & !KNOWN_FLAGS != 0 {
                return Err(PacketError::Malformed);
            }
            return Ok(Packet::Data(DataPacket {
                msg_id: body[1],
                index: 0,
                data_shards: 1,
                parity_shards: 0,
                flags,
                payload: &body[SINGLE_HEADER..],
            }));
        }
        let (body, crc) = raw.split_at(raw.len() - CRC_LEN);
        if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
            return Err(PacketError::BadCrc);
        }
        match kind {
            KIND_DATA | KIND_FEC => {
                let fec = kind == KIND_FEC;
                let hl = if fec { FEC_HEADER } else { DATA_HEADER };
                if body.len() <= hl || flags & !KNOWN_FLAGS != 0 {
                    return Err(PacketError::Malformed);
                }
                let (msg_id, index, k) = (body[1], body[2], body[3]);
                let m = if fec { body[4] } else { 0 };
                let total = k as usize + m as usize;
                // One shard without parity is a SINGLE packet, never a DATA packet.
                let min_k = if fec { 1 } else { 2 };
                if k < min_k || (fec && m == 0) || total > MAX_SHARDS || index as usize >= total {
                    return Err(PacketError::Malformed);
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
            _ => {
                // ACK: `hdr id` (complete, one shard), `hdr id k` (complete), `hdr id k bitmap`.
                if body.len() < 2 {
                    return Err(PacketError::Malformed);
                }
                let msg_id = body[1];
                match flags {
                    f if f == ACK_COMPLETE | ACK_ONE && body.len() == 2 => {
                        Ok(Packet::Ack(AckPacket {
                            msg_id,
                            data_shards: 1,
                            received: 1,
                        }))
                    }
                    ACK_COMPLETE if body.len() == 3 && body[2] >= 2 => {
                        let k = body[2];
                        if k as usize > MAX_SHARDS {
                            return Err(PacketError::Malformed);
                        }
                        Ok(Packet::Ack(AckPacket {
                            msg_id,
                            data_shards: k,
                            received: full_mask(k),
                        }))
                    }
                    0 if body.len() >= 3 => {
                        let k = body[2];
                        let nbytes = (k as usize).div_ceil(8);
                        if k == 0 || k as usize > MAX_SHARDS || body.len() != 3 + nbytes {
                            return Err(PacketError::Malformed);
                        }
                        let mut bytes = [0u8; 16];
                        bytes[..nbytes].copy_from_slice(&body[3..]);
                        let received = u128::from_le_bytes(bytes);
                        // A full bitmap has its own, shorter form.
                        if received & !full_mask(k) != 0 || received == full_mask(k) {
                            return Err(PacketError::Malformed);
                        }
                        Ok(Packet::Ack(AckPacket {
                            msg_id,
                            data_shards: k,
                            received,
                        }))
                    }
                    _ => Err(PacketError::Malformed),
                }
            }
        }
    }

    /// Serialises the packet (header, payload, CRC) into `out`, without framing; returns the
    /// length.
    pub fn write_raw(&self, out: &mut [u8]) -> Result<usize, PacketError> {
        let mut n;
        match self {
            Packet::Data(d) => {
                if !d.is_consistent() {
                    return Err(PacketError::Malformed);
                }
                if d.is_single() {
                    let len = SINGLE_OVERHEAD + d.payload.len();
                    if len > out.len() || len > MAX_RAW_PACKET {
                        return Err(PacketError::BufferTooSmall);
                    }
                    out[0] = header_byte(KIND_SINGLE, d.flags);
                    out[1] = d.msg_id;
                    out[2..2 + d.payload.len()].copy_from_slice(d.payload);
                    let n = 2 + d.payload.len();
                    let crc = crc32(&out[..n]).to_le_bytes();
                    out[n..n + 4].copy_from_slice(&crc);
                    return Ok(len);
                }
                let fec = d.parity_shards > 0;
                let hl = if fec { FEC_HEADER } else { DATA_HEADER };
                let len = hl + d.payload.len() + CRC_LEN;
                if len > out.len() || len > MAX_RAW_PACKET {
                    return Err(PacketError::BufferTooSmall);
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
                let k = a.data_shards;
                if k == 0 || k as usize > MAX_SHARDS {
                    return Err(PacketError::Malformed);
                }
                let received = a.received & full_mask(k);
                let complete = received == full_mask(k);
                let nbytes = if complete {
                    0
                } else {
                    (k as usize).div_ceil(8)
                };
                let head = if complete && k == 1 { 2 } else { 3 };
                let len = head + nbytes + CRC_LEN;
                if len > out.len() {
                    return Err(PacketError::BufferTooSmall);
                }
                let flags = match (complete, k) {
                    (true, 1) => ACK_COMPLETE | ACK_ONE,
                    (true, _) => ACK_COMPLETE,
                    _ => 0,
                };
                out[0] = header_byte(KIND_ACK, flags);
                out[1] = a.msg_id;
                if head == 3 {
                    out[2] = k;
                }
                let bits = received.to_le_bytes();
                out[head..head + nbytes].copy_from_slice(&bits[..nbytes]);
                n = head + nbytes;
            }
        }
        let crc = crc16(&out[..n]).to_le_bytes();
        out[n..n + 2].copy_from_slice(&crc);
        n += 2;
        Ok(n)
    }

    /// Serialises and COBS-stuffs the packet, with the trailing `0x00` delimiter: exactly the
    /// bytes to put on a COBS link. Returns the length.
    pub fn write_wire(&self, out: &mut [u8]) -> Result<usize, PacketError> {
        let mut raw = [0u8; MAX_RAW_PACKET];
        let n = self.write_raw(&mut raw)?;
        let e = cobs::encode(&raw[..n], out)?;
        if e >= out.len() {
            return Err(PacketError::BufferTooSmall);
        }
        out[e] = 0;
        Ok(e + 1)
    }

    /// Serialises the packet framed for `framing` (COBS + delimiter, or a KISS data frame).
    pub fn write_framed(&self, framing: Framing, out: &mut [u8]) -> Result<usize, PacketError> {
        match framing {
            Framing::Cobs => self.write_wire(out),
            Framing::Kiss | Framing::Rnode => {
                let mut raw = [0u8; MAX_RAW_PACKET];
                let n = self.write_raw(&mut raw)?;
                super::kiss::encode(super::kiss::CMD_DATA, &raw[..n], out)
            }
        }
    }
}

/// Wire bytes (COBS and delimiter included) of a packet whose raw length is `raw_len`.
pub const fn wire_len(raw_len: usize) -> usize {
    cobs::max_encoded_len(raw_len) + 1
}

/// The largest shard payload that fits an MTU of `mtu` wire bytes, for the given header length.
/// `None` if the MTU cannot carry even one byte.
pub fn max_shard_payload(mtu: usize, header: usize) -> Option<usize> {
    shard_payload_for_raw(Framing::Cobs.max_raw(mtu), header)
}

/// The largest shard payload in a raw packet of at most `max_raw` bytes (CRC-16 packets).
pub fn shard_payload_for_raw(max_raw: usize, header: usize) -> Option<usize> {
    max_raw.checked_sub(header + CRC_LEN).filter(|&p| p > 0)
}

/// Raw size of the largest ACK for a message of `k` data shards (a partial bitmap).
pub const fn ack_raw_len(k: usize) -> usize {
    3 + k.div_ceil(8) + CRC_LEN
}

/// Wire size (COBS) of the largest ACK for a message of `k` data shards.
pub const fn ack_wire_len(k: usize) -> usize {
    wire_len(ack_raw_len(k))
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
    fn single_packet_messages_and_short_acks() {
        let payload = [9u8; 135];
        let p = Packet::Data(DataPacket {
            msg_id: 3,
            index: 0,
            data_shards: 1,
            parity_shards: 0,
            flags: FLAG_ACK_REQ,
            payload: &payload,
        });
        let mut raw = [0u8; 255];
        let n = p.write_raw(&mut raw).unwrap();
        assert_eq!(n, 135 + SINGLE_OVERHEAD);
        assert_eq!(Packet::parse(&raw[..n]).unwrap(), p);
        let mut wire = [0u8; 300];
        assert_eq!(
            p.write_wire(&mut wire).unwrap(),
            135 + 8,
            "2 header + 4 CRC + 2 COBS"
        );
        // Empty single message.
        let e = Packet::Data(DataPacket {
            payload: &[],
            ..match p {
                Packet::Data(d) => d,
                _ => unreachable!(),
            }
        });
        let n = e.write_raw(&mut raw).unwrap();
        assert_eq!(n, SINGLE_OVERHEAD);
        assert_eq!(Packet::parse(&raw[..n]).unwrap(), e);
        // ACK forms: complete one-shard (2 + CRC), complete (3 + CRC), partial bitmap.
        for (k, received, len) in [
            (1u8, 1u128, 4usize),
            (5, 0b11111, 5),
            (5, 0b10111, 6),
            (1, 0, 6),
        ] {
            let a = Packet::Ack(AckPacket {
                msg_id: 9,
                data_shards: k,
                received,
            });
            let n = a.write_raw(&mut raw).unwrap();
            assert_eq!(n, len, "k {k} received {received:b}");
            assert_eq!(Packet::parse(&raw[..n]).unwrap(), a);
        }
        // Non-canonical forms are refused: a DATA packet with one shard, a full bitmap.
        let mut v = [0u8; 16];
        v[..6].copy_from_slice(&[header_byte(KIND_DATA, 0), 1, 0, 1, 42, 0]);
        let c = crc16(&v[..5]).to_le_bytes();
        v[5..7].copy_from_slice(&c);
        assert_eq!(Packet::parse(&v[..7]), Err(PacketError::Malformed));
        v[..4].copy_from_slice(&[header_byte(KIND_ACK, 0), 1, 1, 1]);
        let c = crc16(&v[..4]).to_le_bytes();
        v[4..6].copy_from_slice(&c);
        assert_eq!(Packet::parse(&v[..6]), Err(PacketError::Malformed));
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
