//! Deterministic generation with the bit-exact engine.
//!
//! Greedy decoding over bit-exact logits is itself bit-exact: the encoder can run the small
//! model's side of a conversation (QA mode) and the edge reproduces it token for token. Ties
//! break to the lowest token id so no platform-dependent ordering sneaks in.

use tenbit_common::TokenId;

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
        self.greedy_avoiding(context, stop, max_new, &[])
    }

    /// [`greedy`](Self::greedy) whose first token is never one of `banned_first` (QA asks for
    /// another question this way when the model repeats one: greedy decoding of the same
    /// context would repeat it forever). With nothing banned it is exactly `greedy`.
    pub fn greedy_avoiding(
        &mut self,
        context: &[TokenId],
        stop: &[TokenId],
        max_new: usize,
        banned_first: &[TokenId],
    ) -> Result<Vec<TokenId>, EngineError> {
        let first = self.sync(context)?;
        let mut next = if banned_first.is_empty() {
            argmax(first)
        } else {
            let mut l = first.to_vec();
            for t in banned_first {
                if let Some(v) = l.get_mut(t.index()) {
                    *v = f32::NEG_INFINITY;
                }
            }
            argmax(&l)
        };
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
