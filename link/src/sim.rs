//! Channel simulator in virtual time: loss, corruption, duplication, reordering, latency, and
//! bandwidth/airtime from the link profile, all driven by a seeded generator so every run is
//! reproducible. [`simulate_transfer`] runs the real packet codec, ARQ state machine, FEC and
//! reassembler end to end over a pair of such channels (data one way, ACKs the other), with
//! duty-cycle pacing on both sides, and reports what arrived and what it cost.

use std::collections::BinaryHeap;

use super::arq::{ArqAction, ArqConfig, ArqSender};
use super::cobs::CobsDecoder;
use super::message::OutgoingMessage;
use super::packet::Packet;
use super::profile::{LinkProfile, Pacer};
use super::reassembly::Reassembler;
use super::{LinkError, MAX_MTU};

/// Deterministic xorshift64* generator (the project's one copy lives in `tenbit_wire::rng`;
/// this adds the simulator's draws on top of it).
#[derive(Clone, Debug)]
pub struct Rng(tenbit_wire::rng::XorShift64Star);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(tenbit_wire::rng::XorShift64Star::new(seed))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// True with probability `ppm` / 1e6.
    pub fn chance(&mut self, ppm: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(ppm)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}

/// Impairments of one direction, probabilities in parts per million per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Packet dropped.
    pub loss_ppm: u32,
    /// One random bit of the packet flipped.
    pub corrupt_ppm: u32,
    /// Packet delivered twice.
    pub duplicate_ppm: u32,
    /// Packet held back by up to `reorder_ms` extra (so later packets overtake it).
    pub reorder_ppm: u32,
    /// Maximum extra delay of a reordered packet.
    pub reorder_ms: u64,
    /// Propagation / modem latency added to the airtime.
    pub latency_ms: u64,
}

#[derive(PartialEq, Eq)]
struct InFlight {
    at_ms: u64,
    seq: u64,
    bytes: Vec<u8>,
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at_ms, o.seq).cmp(&(self.at_ms, self.seq)) // min-heap
    }
}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// One direction of a simulated link.
pub struct Channel {
    cfg: ChannelConfig,
    rng: Rng,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    /// Packets offered / dropped / corrupted / duplicated.
    pub counts: [u64; 4],
}

impl Channel {
    /// A channel with impairments `cfg` and generator seed `seed`.
    pub fn new(cfg: ChannelConfig, seed: u64) -> Self {
        Channel {
            cfg,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            counts: [0; 4],
        }
    }

    /// Offers a packet whose transmission starts at `now_ms` and lasts `airtime_ms`.
    pub fn send(&mut self, now_ms: u64, airtime_ms: u64, bytes: &[u8]) {
        self.counts[0] += 1;
        if self.rng.chance(self.cfg.loss_ppm) {
            self.counts[1] += 1;
            return;
        }
        let mut b = bytes.to_vec();
        if self.rng.chance(self.cfg.corrupt_ppm) && !b.is_empty() {
            self.counts[2] += 1;
            let bit = self.rng.below(b.len() as u64 * 8) as usize;
            b[bit / 8] ^= 1 << (bit % 8);
        }
        let copies = if self.rng.chance(self.cfg.duplicate_ppm) {
            self.counts[3] += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now_ms + airtime_ms + self.cfg.latency_ms;
            if self.rng.chance(self.cfg.reorder_ppm) {
                at += 1 + self.rng.below(self.cfg.reorder_ms.max(1));
            }
            self.seq += 1;
            self.queue.push(InFlight {
                at_ms: at,
                seq: self.seq,
                bytes: b.clone(),
            });
        }
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|p| p.at_ms)
    }

    /// A packet that has arrived by `now_ms`.
    pub fn recv(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.queue.peek()?.at_ms <= now_ms {
            self.queue.pop().map(|p| p.bytes)
        } else {
            None
        }
    }
}

/// Sender-side settings of a simulated transfer.
#[derive(Clone, Copy, Debug)]
pub struct SimLink {
    /// Profile (airtime, duty cycle).
    pub profile: LinkProfile,
    /// Wire bytes per packet.
    pub mtu: usize,
    /// 0 = ARQ; otherwise broadcast with this much parity.
    pub parity_percent: u8,
    /// ARQ tuning.
    pub arq: ArqConfig,
    /// Respect the duty cycle.
    pub pace: bool,
}

/// What a simulated transfer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimOutcome {
    /// The receiver delivered the payload exactly.
    pub delivered: bool,
    /// The receiver delivered something else (must never happen).
    pub corrupted: bool,
    /// The sender believed the message delivered (ARQ).
    pub sender_confirmed: bool,
    /// Data packets sent (retransmissions included).
    pub data_packets: u32,
    /// ACK packets sent.
    pub ack_packets: u32,
    /// Bytes on air both ways, all overhead included.
    pub wire_bytes: u64,
    /// Of `wire_bytes`: the acknowledgements (the receiver's transmissions).
    pub ack_wire_bytes: u64,
    /// Airtime both ways, microseconds.
    pub airtime_us: u64,
    /// Virtual time from first packet to completion, milliseconds.
    pub elapsed_ms: u64,
}

struct RxSide {
    dec: CobsDecoder<{ MAX_MTU + 8 }>,
    reasm: Box<Reassembler>,
    pacer: Pacer,
    got: Option<Vec<u8>>,
}

/// Runs one message `payload` (id `msg_id`) from a sender to a fresh-state receiver `rx`
/// starting at virtual time `start_ms`. `fwd` carries data, `back` carries ACKs.
pub fn simulate_transfer(
    payload: &[u8],
    msg_id: u8,
    link: &SimLink,
    fwd: &mut Channel,
    back: &mut Channel,
    start_ms: u64,
) -> Result<SimOutcome, LinkError> {
    let msg = OutgoingMessage::new(msg_id, payload, link.mtu, link.parity_percent, 0)?;
    let pkt_air_us = link.profile.airtime_us(msg.packet_wire_len());
    let pkt_air_ms = pkt_air_us.div_ceil(1000);
    let mut out = SimOutcome::default();
    let mut tx_pacer = Pacer::new(&link.profile);
    let mut rx = RxSide {
        dec: CobsDecoder::new(),
        reasm: Box::default(),
        pacer: Pacer::new(&link.profile),
        got: None,
    };
    let mut ack_dec = CobsDecoder::<{ MAX_MTU + 8 }>::new();
    let mut now = start_ms;
    let mut wire = [0u8; MAX_MTU + 8];

    // Transmit one shard at (or after, when pacing) `now`; returns the end of its airtime.
    let mut send = |now: &mut u64,
                    index: u8,
                    ack_req: bool,
                    out: &mut SimOutcome,
                    fwd: &mut Channel|
     -> Result<u64, LinkError> {
        let n = msg.packet(index, ack_req)?.write_wire(&mut wire)?;
        if link.pace {
            *now += tx_pacer.wait_us(*now * 1000).div_ceil(1000);
        }
        tx_pacer.record(*now * 1000, pkt_air_us);
        fwd.send(*now, pkt_air_ms, &wire[..n]);
        out.data_packets += 1;
        out.wire_bytes += n as u64;
        out.airtime_us += pkt_air_us;
        Ok(*now + pkt_air_ms)
    };
    // Deliver everything due by `now` on the forward channel; send ACKs on `back`.
    let deliver = |now: u64,
                   rx: &mut RxSide,
                   fwd: &mut Channel,
                   back: &mut Channel,
                   out: &mut SimOutcome|
     -> Result<(), LinkError> {
        while let Some(bytes) = fwd.recv(now) {
            for b in bytes {
                let Some(Ok(raw)) = rx.dec.push(b) else {
                    continue;
                };
                let Ok(Packet::Data(d)) = Packet::parse(raw) else {
                    continue;
                };
                let Ok(h) = rx.reasm.handle(now, &d) else {
                    continue;
                };
                if let Some(dl) = h.delivered {
                    if dl.payload == payload {
                        out.delivered = true;
                    } else {
                        out.corrupted = true;
                    }
                    rx.got = Some(dl.payload.to_vec());
                }
                if let Some(a) = h.ack {
                    let mut w = [0u8; 64];
                    let n = Packet::Ack(a).write_wire(&mut w)?;
                    let air = link.profile.airtime_us(n);
                    let mut t = now;
                    if link.pace {
                        t += rx.pacer.wait_us(t * 1000).div_ceil(1000);
                    }
                    rx.pacer.record(t * 1000, air);
                    back.send(t, air.div_ceil(1000), &w[..n]);
                    out.ack_packets += 1;
                    out.wire_bytes += n as u64;
                    out.ack_wire_bytes += n as u64;
                    out.airtime_us += air;
                }
            }
        }
        Ok(())
    };

    if link.parity_percent > 0 {
        for i in 0..msg.plan.total_shards() {
            now = send(&mut now, i as u8, false, &mut out, fwd)?;
        }
        while let Some(t) = fwd.next_due() {
            now = now.max(t);
            deliver(now, &mut rx, fwd, back, &mut out)?;
        }
    } else {
        let mut arq = ArqSender::new(msg_id, msg.plan.data_shards, link.arq);
        loop {
            match arq.poll(now) {
                ArqAction::Transmit { index, ack_req } => {
                    let end = send(&mut now, index, ack_req, &mut out, fwd)?;
                    arq.transmitted(end);
                    // The sender is busy transmitting; deliver what lands meanwhile.
                    deliver(now, &mut rx, fwd, back, &mut out)?;
                }
                ArqAction::WaitUntil(t) => {
                    let next = [Some(t), fwd.next_due(), back.next_due()]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(t);
                    now = now.max(next);
                    deliver(now, &mut rx, fwd, back, &mut out)?;
                    while let Some(bytes) = back.recv(now) {
                        for b in bytes {
                            if let Some(Ok(raw)) = ack_dec.push(b) {
                                if let Ok(Packet::Ack(a)) = Packet::parse(raw) {
                                    arq.on_ack(&a);
                                }
                            }
                        }
                    }
                }
                ArqAction::Delivered => {
                    out.sender_confirmed = true;
                    break;
                }
                ArqAction::Lost => break,
            }
        }
    }
    out.elapsed_ms = now - start_ms;
    Ok(out)
}
