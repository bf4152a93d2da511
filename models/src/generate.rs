//! Deterministic generation with the bit-exact engine.
//!
//! Greedy decoding over bit-exact logits is itself bit-exact: the encoder can run the small
//! model's side of a conversation (QA mode) and the edge reproduces it token for token. Ties
//! break to the lowest token id so no platform-dependent ordering sneaks in.

use tenbit_common::TokenId;

use tenbit_common::freq::{logits_to_cdf_with, symbol_for, Calibration, TOTAL};

use crate::engine::{EngineError, Session};

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

/// A session that remembers what it has fed, so a growing conversation only pays for new tokens.
pub struct Conversation<'m> {
    sess: Session<'m>,
    fed: Vec<TokenId>,
    last_logits: Vec<f32>,
}

impl<'m> Conversation<'m> {
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
        let mut next = argmax(self.sync(context)?);
        let mut out = Vec::new();
        while !stop.contains(&next) && out.len() < max_new {
            if self.sess.len() >= self.sess.capacity() {
                break;
            }
            out.push(next);
            let l = self.sess.feed(&[next])?;
            self.fed.push(next);
            next = argmax(l);
            self.last_logits.clear();
            self.last_logits.extend_from_slice(l);
        }
        Ok(out)
    }

    /// Sample a continuation at temperature 0.5, reproducibly on every platform: the logits are
    /// doubled (exact in binary floating point), the probabilities are the codec's integer CDF
    /// ([`tenbit_common::freq`], no floating-point exp) and the draws come from a SplitMix64
    /// stream seeded with `seed`. QA uses it when greedy decoding keeps repeating a question.
    pub fn sample_seeded(
        &mut self,
        context: &[TokenId],
        stop: &[TokenId],
        max_new: usize,
        seed: u64,
    ) -> Result<Vec<TokenId>, EngineError> {
        let mut rng = seed;
        let mut draw = move || {
            rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (mut cdf, mut sharp) = (Vec::new(), Vec::new());
        let mut pick = |l: &[f32]| -> Result<TokenId, EngineError> {
            cdf.resize(l.len() + 1, 0);
            sharp.clear();
            sharp.extend(l.iter().map(|v| v * 2.0));
            logits_to_cdf_with(Calibration::Plain, &sharp, &mut cdf)
                .map_err(|e| EngineError::Unsupported(format!("sampling CDF: {e:?}")))?;
            // Drop the one free count per token (it keeps any text codable, but sampled it
            // would pick a uniformly random token ~1% of the time with a 150k vocabulary).
            for (i, c) in cdf.iter_mut().enumerate() {
                *c -= i as u32;
            }
            let spare = u64::from(TOTAL) - l.len() as u64;
            let target = ((draw() >> 32) % spare) as u32;
            Ok(TokenId(symbol_for(&cdf, target) as u32))
        };
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

    #[test]
    fn argmax_is_first_maximum_and_ignores_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), TokenId(1));
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.25]), TokenId(1));
        assert_eq!(argmax(&[-2.0]), TokenId(0));
    }
}
