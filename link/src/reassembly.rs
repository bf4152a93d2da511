//! Receiver side of a message: places shards, rebuilds lost ones from parity, checks the
//! end-to-end trailer, filters duplicates, and says when to acknowledge.
//!
//! Memory is fixed at construction (`SLOTS` messages in progress of at most `BUF` shard bytes
//! each, plus a short list of recently completed ids): nothing that arrives can make it grow.

use super::message::MessageError;
use super::message::{check_body, Plan};
use super::packet::{full_mask, AckPacket, DataPacket, FLAG_ACK_REQ};
use super::SHARD_BUF;

/// How many completed messages are remembered for duplicate suppression.
const RECENT: usize = 16;

/// Counters (all saturating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Shard packets accepted into a message.
    pub shards: u32,
    /// Shards already held, or for an already-delivered message.
    pub duplicates: u32,
    /// Messages delivered.
    pub delivered: u32,
    /// Messages given up (evicted, expired or failing their end-to-end check).
    pub lost: u32,
    /// Of `lost`: messages whose shards were all present but whose trailer did not match.
    pub corrupt: u32,
    /// Shards whose message would not fit the buffer.
    pub oversized: u32,
    /// Shards rebuilt from parity.
    pub recovered: u32,
}

/// A message that was delivered.
#[derive(Debug)]
pub struct Delivered<'a> {
    /// Message id.
    pub msg_id: u8,
    /// Packet flags of the message (e.g. sealed).
    pub flags: u8,
    /// The payload; mutable so that a sealed message can be opened in place.
    pub payload: &'a mut [u8],
}

/// What one packet caused.
#[derive(Debug, Default)]
pub struct Handled<'a> {
    /// An acknowledgement to send back (only when the packet asked for one).
    pub ack: Option<AckPacket>,
    /// A message completed by this packet.
    pub delivered: Option<Delivered<'a>>,
    /// Message ids given up because of this packet (evicted or corrupt).
    pub lost: heapless::Vec<u8, 2>,
}

#[derive(Clone, Copy, Debug)]
struct Recent {
    id: u8,
    k: u8,
    m: u8,
    len: usize,
    at_ms: u64,
}

struct Slot<const BUF: usize> {
    active: bool,
    id: u8,
    plan: Plan,
    flags: u8,
    have: u128,
    last_ms: u64,
    buf: [u8; BUF],
}

impl<const BUF: usize> Slot<BUF> {
    fn new() -> Self {
        Slot {
            active: false,
            id: 0,
            plan: Plan {
                data_shards: 1,
                parity_shards: 0,
                shard_len: 1,
            },
            flags: 0,
            have: 0,
            last_ms: 0,
            buf: [0; BUF],
        }
    }
    fn data_bits(&self) -> u128 {
        self.have & full_mask(self.plan.data_shards)
    }
}

/// Reassembles messages from shard packets. `BUF` bounds one message's shard bytes, `SLOTS`
/// how many messages may be in progress at once (the oldest is given up when a new one starts).
pub struct Reassembler<const BUF: usize = SHARD_BUF, const SLOTS: usize = 2> {
    slots: [Slot<BUF>; SLOTS],
    recent: heapless::Deque<Recent, RECENT>,
    stats: ReassemblyStats,
    /// Give up a message when no shard arrived for this long.
    pub idle_timeout_ms: u64,
    /// Remember delivered ids this long (longer than any sender retries).
    pub dedup_ttl_ms: u64,
}

impl<const BUF: usize, const SLOTS: usize> Default for Reassembler<BUF, SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

fn inc(c: &mut u32) {
    *c = c.saturating_add(1);
}

impl<const BUF: usize, const SLOTS: usize> Reassembler<BUF, SLOTS> {
    /// An empty reassembler: 10 min idle timeout and duplicate memory (LoRa at 1% duty cycle
    /// needs minutes per message; callers on fast links may shorten both).
    pub fn new() -> Self {
        Reassembler {
            slots: core::array::from_fn(|_| Slot::new()),
            recent: heapless::Deque::new(),
            stats: ReassemblyStats::default(),
            idle_timeout_ms: 600_000,
            dedup_ttl_ms: 600_000,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    fn find_recent(&self, p: &DataPacket<'_>, now_ms: u64) -> bool {
        self.recent.iter().any(|r| {
            r.id == p.msg_id
                && r.k == p.data_shards
                && r.m == p.parity_shards
                && r.len == p.payload.len()
                && now_ms.saturating_sub(r.at_ms) <= self.dedup_ttl_ms
        })
    }

    fn remember(&mut self, r: Recent) {
        if self.recent.is_full() {
            self.recent.pop_front();
        }
        let _ = self.recent.push_back(r);
    }

    /// Feeds one shard packet received at `now_ms`.
    ///
    /// A packet whose fields no parser would produce (no data shards, more than
    /// [`MAX_SHARDS`](super::MAX_SHARDS) shards, an index beyond them, an empty shard of a
    /// multi-shard message, unknown flags) is refused with [`MessageError::BadShard`]:
    /// `DataPacket` has public fields, so the reassembler checks them itself rather than
    /// trusting [`Packet::parse`](super::Packet::parse) to have run.
    ///
    /// A single-packet message (`k = 1`, `m = 0`) is delivered as it is: its integrity was
    /// checked by the packet's CRC-32 in [`Packet::parse`](super::Packet::parse), so a caller
    /// that builds one by hand vouches for its bytes. Multi-shard messages are checked here,
    /// against their trailer.
    pub fn handle(&mut self, now_ms: u64, p: &DataPacket<'_>) -> Result<Handled<'_>, MessageError> {
        if !p.is_consistent() {
            return Err(MessageError::BadShard);
        }
        let mut out = Handled::default();
        let want_ack = p.flags & FLAG_ACK_REQ != 0;
        let ack_all = |p: &DataPacket<'_>| AckPacket {
            msg_id: p.msg_id,
            data_shards: p.data_shards,
            received: full_mask(p.data_shards),
        };
        if self.find_recent(p, now_ms) {
            inc(&mut self.stats.duplicates);
            if want_ack {
                out.ack = Some(ack_all(p));
            }
            return Ok(out);
        }
        let plan = Plan {
            data_shards: p.data_shards,
            parity_shards: p.parity_shards,
            shard_len: p.payload.len(),
        };
        if plan.total_len() > BUF {
            inc(&mut self.stats.oversized);
            return Err(MessageError::TooLarge);
        }
        let flags = p.flags & !FLAG_ACK_REQ;
        // The slot of this message, or a fresh one (evicting the stalest).
        let idx = match self.slots.iter().position(|s| s.active && s.id == p.msg_id) {
            Some(i) if self.slots[i].plan == plan && self.slots[i].flags == flags => i,
            Some(i) => {
                // Same id, different shape: the sender restarted and reused the id.
                inc(&mut self.stats.lost);
                let _ = out.lost.push(self.slots[i].id);
                self.slots[i].active = false;
                i
            }
            None => match self.slots.iter().position(|s| !s.active) {
                Some(i) => i,
                None => {
                    let i = (0..SLOTS)
                        .min_by_key(|&i| self.slots[i].last_ms)
                        .ok_or(MessageError::BufferTooSmall)?;
                    inc(&mut self.stats.lost);
                    let _ = out.lost.push(self.slots[i].id);
                    self.slots[i].active = false;
                    i
                }
            },
        };
        let slot = &mut self.slots[idx];
        if !slot.active {
            slot.active = true;
            slot.id = p.msg_id;
            slot.plan = plan;
            slot.flags = flags;
            slot.have = 0;
        }
        slot.last_ms = now_ms;
        let bit = 1u128 << p.index;
        if slot.have & bit != 0 {
            inc(&mut self.stats.duplicates);
        } else {
            let l = plan.shard_len;
            let at = p.index as usize * l;
            slot.buf[at..at + l].copy_from_slice(p.payload);
            slot.have |= bit;
            inc(&mut self.stats.shards);
        }
        let k = plan.data_shards;
        let mut complete = slot.data_bits() == full_mask(k);
        if !complete
            && plan.parity_shards > 0
            && slot.have.count_ones() >= u32::from(k)
            && super::fec_reconstruct(&mut slot.buf, &plan, slot.have).is_ok()
        {
            let missing = (full_mask(k) & !slot.data_bits()).count_ones();
            self.stats.recovered = self.stats.recovered.saturating_add(missing);
            slot.have |= full_mask(k);
            complete = true;
        }
        if !complete {
            if want_ack {
                out.ack = Some(AckPacket {
                    msg_id: p.msg_id,
                    data_shards: k,
                    received: slot.data_bits(),
                });
            }
            return Ok(out);
        }
        slot.active = false;
        let body_len = plan.body_len();
        let checked = if plan.is_single() {
            Ok(body_len)
        } else {
            check_body(&slot.buf[..body_len])
        };
        match checked {
            Ok(len) => {
                let rec = Recent {
                    id: p.msg_id,
                    k,
                    m: plan.parity_shards,
                    len: plan.shard_len,
                    at_ms: now_ms,
                };
                inc(&mut self.stats.delivered);
                if want_ack {
                    out.ack = Some(ack_all(p));
                }
                self.remember(rec);
                let slot = &mut self.slots[idx];
                out.delivered = Some(Delivered {
                    msg_id: p.msg_id,
                    flags,
                    payload: &mut slot.buf[..len],
                });
            }
            Err(_) => {
                inc(&mut self.stats.lost);
                inc(&mut self.stats.corrupt);
                let _ = out.lost.push(p.msg_id);
                // Tell an ARQ sender we hold nothing: it starts the message over.
                if want_ack {
                    out.ack = Some(AckPacket {
                        msg_id: p.msg_id,
                        data_shards: k,
                        received: 0,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Gives up a message idle for longer than [`Self::idle_timeout_ms`]; returns its id.
    /// Call it periodically (e.g. on every read timeout).
    pub fn expire(&mut self, now_ms: u64) -> Option<u8> {
        let timeout = self.idle_timeout_ms;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.active && now_ms.saturating_sub(s.last_ms) > timeout)?;
        slot.active = false;
        inc(&mut self.stats.lost);
        Some(slot.id)
    }

    /// Ids of the messages in progress (for diagnostics).
    pub fn in_progress(&self) -> impl Iterator<Item = u8> + '_ {
        self.slots.iter().filter(|s| s.active).map(|s| s.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the link_fuzz `reassembler-raw` harness: shard fields that `Packet::parse`
    /// never produces (the struct's fields are public) overflowed the shard bitmap shift or
    /// indexed past the slot buffer.
    #[test]
    fn impossible_shard_fields_are_refused() {
        let mut r = Reassembler::<512, 2>::new();
        let payload = [7u8; 10];
        let ok = DataPacket {
            msg_id: 1,
            index: 0,
            data_shards: 2,
            parity_shards: 0,
            flags: 0,
            payload: &payload,
        };
        for bad in [
            DataPacket { index: 200, ..ok },
            DataPacket { index: 2, ..ok },
            DataPacket {
                index: 100,
                data_shards: 1,
                ..ok
            },
            DataPacket {
                data_shards: 0,
                ..ok
            },
            DataPacket {
                data_shards: 100,
                parity_shards: 100,
                ..ok
            },
            DataPacket { payload: &[], ..ok },
        ] {
            assert_eq!(
                r.handle(0, &bad).err(),
                Some(MessageError::BadShard),
                "{bad:?}"
            );
        }
        assert_eq!(r.stats().shards, 0);
        assert!(r.handle(0, &ok).unwrap().delivered.is_none());
        assert_eq!(r.stats().shards, 1);
    }
}
