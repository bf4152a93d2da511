//! Selective-repeat ARQ for one message, as a clock-free state machine: the caller passes
//! `now_ms` and does the I/O, so the same code runs on a host, a board and in the simulator.
//!
//! Round structure: send every shard not yet acknowledged, the last one flagged `ACK_REQ`;
//! the receiver answers with a bitmap of the shards it holds (authoritative: if it dropped the
//! message, the bitmap empties and everything is resent). A missing ACK triggers a timeout,
//! after which only one probe (the highest unacknowledged shard, flagged) is resent, so a lost
//! ACK costs one packet, not a burst. Timeouts back off exponentially with deterministic
//! jitter. The sender gives up after `max_failures` consecutive rounds without progress.

use super::packet::{full_mask, AckPacket};

/// Errors of the ARQ layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArqError {
    /// The sender gave up: the message is lost.
    #[error("message {msg_id} lost: no acknowledgement after {tries} tries")]
    Lost {
        /// Message id.
        msg_id: u8,
        /// Consecutive unanswered rounds.
        tries: u8,
    },
}

/// ARQ tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArqConfig {
    /// Consecutive rounds without progress before the message is reported lost.
    pub max_failures: u8,
    /// First ACK timeout, counted from the end of the flagged packet's transmission.
    pub base_timeout_ms: u64,
    /// Upper bound of the backed-off timeout (before jitter).
    pub max_timeout_ms: u64,
    /// Seed of the jitter generator (deterministic, so runs are reproducible).
    pub seed: u64,
}

impl Default for ArqConfig {
    fn default() -> Self {
        ArqConfig {
            max_failures: 8,
            base_timeout_ms: 1_000,
            max_timeout_ms: 60_000,
            seed: 0x007E_4B17,
        }
    }
}

/// What the sender should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArqAction {
    /// Transmit shard `index` (flag it `ACK_REQ` if `ack_req`), then call
    /// [`ArqSender::transmitted`] with the time its transmission ended.
    Transmit {
        /// Shard index.
        index: u8,
        /// Ask for an acknowledgement.
        ack_req: bool,
    },
    /// Nothing to send before this time (feed ACKs as they arrive).
    WaitUntil(u64),
    /// Every shard acknowledged.
    Delivered,
    /// Given up.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sending,
    AwaitSent { ack_req: bool },
    Waiting { deadline: u64 },
    Done { delivered: bool },
}

/// ARQ state of one message with `k` data shards.
#[derive(Clone, Debug)]
pub struct ArqSender {
    msg_id: u8,
    k: u8,
    acked: u128,
    best: u32,
    queue: u128,
    failures: u8,
    phase: Phase,
    rng: u64,
    cfg: ArqConfig,
    rounds: u32,
}

impl ArqSender {
    /// A sender for message `msg_id` of `k` data shards.
    pub fn new(msg_id: u8, k: u8, cfg: ArqConfig) -> Self {
        ArqSender {
            msg_id,
            k,
            acked: 0,
            best: 0,
            queue: full_mask(k),
            failures: 0,
            phase: Phase::Sending,
            // splitmix the seed so that nearby seeds give unrelated jitter sequences
            rng: splitmix(cfg.seed ^ u64::from(msg_id)) | 1,
            cfg,
            rounds: 0,
        }
    }

    /// The next step at time `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> ArqAction {
        match self.phase {
            Phase::Done { delivered: true } => ArqAction::Delivered,
            Phase::Done { delivered: false } => ArqAction::Lost,
            Phase::AwaitSent { .. } => ArqAction::WaitUntil(now_ms),
            Phase::Waiting { deadline } if now_ms < deadline => ArqAction::WaitUntil(deadline),
            Phase::Waiting { .. } => {
                self.fail();
                if let Phase::Done { .. } = self.phase {
                    return ArqAction::Lost;
                }
                // Probe: the highest unacknowledged shard, flagged.
                let missing = full_mask(self.k) & !self.acked;
                self.queue = 1u128 << (127 - missing.leading_zeros());
                self.phase = Phase::Sending;
                self.poll(now_ms)
            }
            Phase::Sending => {
                self.queue &= !self.acked;
                if self.queue == 0 {
                    let missing = full_mask(self.k) & !self.acked;
                    if missing == 0 {
                        self.phase = Phase::Done { delivered: true };
                        return ArqAction::Delivered;
                    }
                    self.queue = 1u128 << (127 - missing.leading_zeros());
                }
                let index = self.queue.trailing_zeros() as u8;
                self.queue &= !(1u128 << index);
                let ack_req = self.queue == 0;
                if ack_req {
                    self.rounds += 1;
                }
                self.phase = Phase::AwaitSent { ack_req };
                ArqAction::Transmit { index, ack_req }
            }
        }
    }

    /// Reports that the shard from the last [`ArqAction::Transmit`] finished going out at
    /// `now_ms` (after any duty-cycle wait and its airtime).
    pub fn transmitted(&mut self, now_ms: u64) {
        if let Phase::AwaitSent { ack_req } = self.phase {
            self.phase = if ack_req {
                Phase::Waiting {
                    deadline: now_ms.saturating_add(self.timeout_ms()),
                }
            } else {
                Phase::Sending
            };
        }
    }

    /// Feeds an acknowledgement; returns false if it is not for this message.
    pub fn on_ack(&mut self, ack: &AckPacket) -> bool {
        if ack.msg_id != self.msg_id || ack.data_shards != self.k {
            return false;
        }
        if let Phase::Done { .. } = self.phase {
            return true;
        }
        self.acked = ack.received & full_mask(self.k);
        if self.acked == full_mask(self.k) {
            self.phase = Phase::Done { delivered: true };
            return true;
        }
        let count = self.acked.count_ones();
        if count > self.best {
            self.best = count;
            self.failures = 0;
        } else {
            self.fail();
        }
        if let Phase::Waiting { .. } = self.phase {
            self.queue = full_mask(self.k) & !self.acked;
            self.phase = Phase::Sending;
        }
        true
    }

    fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.cfg.max_failures {
            self.phase = Phase::Done { delivered: false };
        }
    }

    /// Current ACK timeout: `base * 2^failures` (capped), plus up to 50% jitter.
    pub fn timeout_ms(&mut self) -> u64 {
        let shift = u32::from(self.failures.min(16));
        let t = self
            .cfg
            .base_timeout_ms
            .saturating_mul(1u64 << shift)
            .min(self.cfg.max_timeout_ms)
            .max(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        t + self.rng % (t / 2 + 1)
    }

    /// Bitmap of acknowledged shards.
    pub fn acked(&self) -> u128 {
        self.acked
    }

    /// Consecutive rounds without progress.
    pub fn failures(&self) -> u8 {
        self.failures
    }

    /// Rounds (flagged packets) sent so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Message id.
    pub fn msg_id(&self) -> u8 {
        self.msg_id
    }
}

/// The first SplitMix64 output for seed `z`: a well-mixed jitter seed per message.
fn splitmix(z: u64) -> u64 {
    tenbit_wire::rng::SplitMix64::new(z).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: u8, k: u8, bits: u128) -> AckPacket {
        AckPacket {
            msg_id: id,
            data_shards: k,
            received: bits,
        }
    }

    #[test]
    fn clean_round_delivers() {
        let mut s = ArqSender::new(3, 3, ArqConfig::default());
        for i in 0..3u8 {
            assert_eq!(
                s.poll(0),
                ArqAction::Transmit {
                    index: i,
                    ack_req: i == 2
                }
            );
            s.transmitted(10);
        }
        assert!(matches!(s.poll(10), ArqAction::WaitUntil(t) if t > 10));
        assert!(!s.on_ack(&ack(4, 3, 0b111)), "other message ignored");
        assert!(s.on_ack(&ack(3, 3, 0b111)));
        assert_eq!(s.poll(20), ArqAction::Delivered);
    }

    #[test]
    fn selective_repeat_and_probe() {
        let mut s = ArqSender::new(0, 4, ArqConfig::default());
        for _ in 0..4 {
            assert!(matches!(s.poll(0), ArqAction::Transmit { .. }));
            s.transmitted(0);
        }
        // Receiver lost shards 1 and 3 (3 carried the flag, so no ACK): timeout -> probe 3.
        let ArqAction::WaitUntil(t) = s.poll(0) else {
            panic!()
        };
        assert_eq!(
            s.poll(t),
            ArqAction::Transmit {
                index: 3,
                ack_req: true
            }
        );
        s.transmitted(t);
        s.on_ack(&ack(0, 4, 0b1101));
        assert_eq!(
            s.poll(t),
            ArqAction::Transmit {
                index: 1,
                ack_req: true
            }
        );
        s.transmitted(t);
        s.on_ack(&ack(0, 4, 0b1111));
        assert_eq!(s.poll(t), ArqAction::Delivered);
    }

    #[test]
    fn gives_up_with_growing_timeouts() {
        let cfg = ArqConfig {
            max_failures: 5,
            base_timeout_ms: 100,
            max_timeout_ms: 10_000,
            seed: 1,
        };
        let mut s = ArqSender::new(0, 2, cfg);
        let mut now = 0;
        let mut waits = [0u64; 8];
        let mut n = 0;
        loop {
            match s.poll(now) {
                ArqAction::Transmit { .. } => s.transmitted(now),
                ArqAction::WaitUntil(t) => {
                    waits[n] = t - now;
                    n += 1;
                    now = t;
                }
                ArqAction::Lost => break,
                ArqAction::Delivered => panic!("nothing was acknowledged"),
            }
        }
        assert_eq!(n, 5);
        for w in waits[..n].windows(2) {
            // 2x backoff with at most 50% jitter: each wait exceeds the previous base.
            assert!(w[1] >= w[0] * 2 / 3 * 2 / 2, "{waits:?}");
        }
        assert!(waits[4] >= 1600 && waits[0] < 160, "{waits:?}");
    }
}
