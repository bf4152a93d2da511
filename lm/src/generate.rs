//! Deterministic generation with the bit-exact engine.
//!
//! Greedy decoding over bit-exact logits is itself bit-exact: the encoder can run the small
//! model's side of a conversation (QA mode) and the edge reproduces it token for token. Ties
//! break to the lowest token id so no platform-dependent ordering sneaks in.

use tenbit_wire::TokenId;

use tenbit_wire::freq::{logits_to_cdf_with, Calibration, TOTAL};
use tenbit_wire::rng::SplitMix64;

use tenbit_engine::{EngineError, Session};

/// Index of the largest logit; the lowest index wins ties; NaN never wins.
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    TokenId(best as u32)
}

/// Reproducible sampling at temperature 0.5 (see [`Conversation::sample_seeded`]): integer
/// CDF, SplitMix64 draws, so every platform picks the same tokens from the same logits.
pub struct Sampler {
    rng: SplitMix64,
    scale: f32,
    cdf: Vec<u32>,
    sharp: Vec<f32>,
}

impl Sampler {
    /// A sampler whose draws are SplitMix64's stream from `seed` (part of the QA protocol).
    pub fn new(seed: u64) -> Sampler {
        Sampler::with_scale(seed, 2.0)
    }

    /// A sampler drawing from softmax(`scale` * logits), i.e. temperature 1/`scale`. Pick mode
    /// samples hotter than QA's re-asks (more diverse candidates). One IEEE multiply per logit
    /// rounds the same on every platform, so any `scale` replays; a power of two is also exact.
    pub fn with_scale(seed: u64, scale: f32) -> Sampler {
        Sampler {
            rng: SplitMix64::new(seed),
            scale,
            cdf: Vec::new(),
            sharp: Vec::new(),
        }
    }

    /// One token from softmax(scale * logits) (scale 2 for [`Sampler::new`]).
    pub fn pick(&mut self, logits: &[f32]) -> Result<TokenId, EngineError> {
        self.cdf.resize(logits.len() + 1, 0);
        self.sharp.clear();
        let scale = self.scale;
        self.sharp.extend(logits.iter().map(|v| v * scale));
        logits_to_cdf_with(Calibration::Plain, &self.sharp, &mut self.cdf)
            .map_err(|e| EngineError::Unsupported(format!("sampling CDF: {e:?}")))?;
        // Drop the one free count per token (it keeps any text codable, but sampled it would
        // pick a uniformly random token ~1% of the time with a 150k vocabulary).
        for (i, c) in self.cdf.iter_mut().enumerate() {
            *c -= i as u32;
        }
        // The table is no CDF any more (dropped counts leave zero-width symbols, which a draw
        // can never land on): find the symbol by the same rule as `Cdf::symbol_for`.
        let spare = u64::from(TOTAL) - logits.len() as u64;
        let target = ((self.rng.next_u64() >> 32) % spare) as u32;
        let p = self.cdf.partition_point(|&c| c <= target);
        Ok(TokenId(p.saturating_sub(1).min(logits.len() - 1) as u32))
    }
}

/// A session that remembers what it has fed, so a growing conversation only pays for new tokens.
pub struct Conversation<'m> {
    sess: Session<'m>,
    fed: Vec<TokenId>,
    last_logits: Vec<f32>,
}

impl<'m> Conversation<'m> {
    /// Wrap `sess`; whatever it already holds is dropped by the first [`sync`](Self::sync).
    pub fn new(sess: Session<'m>) -> Self {
        Conversation {
            sess,
            fed: Vec::new(),
            last_logits: Vec::new(),
        }
    }

    /// Make the cache hold exactly `tokens`, reusing the longest common prefix.
    /// Returns the logits after the last token.
    pub fn sync(&mut self, tokens: &[TokenId]) -> Result<&[f32], EngineError> {
        let common = self
            .fed
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Re-feed at least the last token so fresh logits exist (prefill == step, bit for bit).
        let keep = if common == tokens.len() {
            common.saturating_sub(1)
        } else {
            common
        };
        if keep < self.sess.len() {
            self.sess.truncate(keep);
        }
        self.fed.truncate(keep);
        if tokens.len() > keep {
            let l = self.sess.feed(&tokens[keep..])?;
            self.last_logits.clear();
            self.last_logits.extend_from_slice(l);
            self.fed.extend_from_slice(&tokens[keep..]);
        }
        Ok(&self.last_logits)
    }

    /// Greedy continuation of `context` until a stop token or `max_new` tokens.
    pub fn greedy(
        &mut self,
        context: &[TokenId],
        stop: &[TokenId],
        max_new: usize,
    ) -> Result<Vec<TokenId>, EngineError> {
        self.continue_with(context, stop, max_new, &mut |l| Ok(argmax(l)))
    }

    /// Sample a continuation at temperature 0.5, reproducibly on every platform: the logits are
    /// doubled (exact in binary floating point), the probabilities are the codec's integer CDF
    /// ([`tenbit_wire::freq`], no floating-point exp) and the draws come from a SplitMix64
    /// stream seeded with `seed`. QA uses it when greedy decoding keeps repeating a question.
    pub fn sample_seeded(
        &mut self,
        context: &[TokenId],
        stop: &[TokenId],
        max_new: usize,
        seed: u64,
    ) -> Result<Vec<TokenId>, EngineError> {
        let mut sampler = Sampler::new(seed);
        self.continue_with(context, stop, max_new, &mut |l| sampler.pick(l))
    }

    /// The decoding loop both [`greedy`](Self::greedy) and
    /// [`sample_seeded`](Self::sample_seeded) run: `pick` chooses each next token.
    fn continue_with(
        &mut self,
        context: &[TokenId],
        stop: &[TokenId],
        max_new: usize,
        pick: &mut dyn FnMut(&[f32]) -> Result<TokenId, EngineError>,
    ) -> Result<Vec<TokenId>, EngineError> {
        let mut next = pick(self.sync(context)?)?;
        let mut out = Vec::new();
        while !stop.contains(&next) && out.len() < max_new {
            if self.sess.len() >= self.sess.capacity() {
                break;
            }
            out.push(next);
            let l = self.sess.feed(&[next])?;
            self.fed.push(next);
            self.last_logits.clear();
            self.last_logits.extend_from_slice(l);
            next = pick(&self.last_logits)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sampler's draws from fixed logits, pinned: this unit test also runs on aarch64 under
    /// qemu (`boards/cross-test.sh`), so equal results there prove the QA retries replay.
    #[test]
    fn seeded_sampling_is_pinned_and_follows_the_distribution() {
        // Logits in steps of 1/16 (exact in f32), a few strong tokens and a long flat tail.
        let logits: Vec<f32> = (0..5000u32)
            .map(|i| match i {
                7 => 4.0,
                100 => 3.5,
                4321 => 3.0,
                _ => -((i * 37 % 97) as f32) / 16.0,
            })
            .collect();
        let mut s = Sampler::new(42);
        let draws: Vec<u32> = (0..2000).map(|_| s.pick(&logits).unwrap().0).collect();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a over the drawn ids
        for d in &draws {
            for b in d.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let count = |t: u32| draws.iter().filter(|&&d| d == t).count() as f64 / 2000.0;
        // softmax(2x): 7 : 100 : 4321 = e^8 : e^7 : e^6, the tail ~ 4997 * mean(e^(2l)).
        let tail: f64 = logits
            .iter()
            .enumerate()
            .filter(|(i, _)| ![7, 100, 4321].contains(i))
            .map(|(_, &l)| (2.0 * l as f64).exp())
            .sum();
        let z = 8f64.exp() + 7f64.exp() + 6f64.exp() + tail;
        for (t, e) in [
            (7u32, 8f64.exp() / z),
            (100, 7f64.exp() / z),
            (4321, 6f64.exp() / z),
        ] {
            assert!(
                (count(t) - e).abs() < 0.04,
                "token {t}: {} vs {e}",
                count(t)
            );
        }
        assert_eq!(h, SAMPLER_GOLDEN, "sampler draws changed (hash {h})");
        let again: Vec<u32> = {
            let mut s = Sampler::new(42);
            (0..2000).map(|_| s.pick(&logits).unwrap().0).collect()
        };
        assert_eq!(again, draws);
        let mut other = Sampler::new(43);
        assert_ne!(
            (0..50)
                .map(|_| other.pick(&logits).unwrap().0)
                .collect::<Vec<_>>(),
            draws[..50]
        );
    }

    const SAMPLER_GOLDEN: u64 = 8312467979401580759;

    #[test]
    fn argmax_is_first_maximum_and_ignores_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), TokenId(1));
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.25]), TokenId(1));
        assert_eq!(argmax(&[-2.0]), TokenId(0));
    }
}
