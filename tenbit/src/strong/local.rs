//! A local GGUF model as the strong model, run by the project's own engine.
//!
//! Useful offline (no server to run) and in tests (`tenbit serve` puts it behind the
//! OpenAI-compatible API). Generation is deterministic: greedy with the lowest token id on ties
//! when `temperature == 0`, else sampling from a seeded SplitMix64 stream, so the same request
//! always gets the same reply.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tenbit_engine::{KvCache, Model, Session, SessionOptions, TokenId};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::generate::argmax;
use tenbit_lm::tokenizer::Tokenizer;
use tenbit_wire::rng::SplitMix64;

use super::{ChatModel, ChatRequest, ChatResponse, FinishReason, StrongError};

/// A GGUF chat model loaded into the engine.
pub struct LocalModel {
    name: String,
    model: Model,
    tok: Tokenizer,
    tmpl: ChatTemplate,
    opts: SessionOptions,
    /// The previous request's tokens and KV cache. Holding the lock also means one generation at
    /// a time: each uses every core, so running two only thrashes.
    cache: Mutex<Option<(Vec<TokenId>, KvCache)>>,
    /// Prompt tokens served from the cache so far (observability: logs and tests).
    reused: AtomicUsize,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .field("opts", &self.opts)
            .finish()
    }
}

/// Draw a token from softmax(logits / temperature). Non-finite logits never win.
fn sample(logits: &[f32], temperature: f32, rng: &mut SplitMix64) -> TokenId {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax(logits);
    }
    let t = f64::from(temperature);
    let w = |v: f32| {
        if v.is_finite() {
            ((f64::from(v) - f64::from(max)) / t).exp()
        } else {
            0.0
        }
    };
    let total: f64 = logits.iter().map(|&v| w(v)).sum();
    let mut u = rng.next_f64() * total;
    let mut last_positive = 0;
    for (i, &v) in logits.iter().enumerate() {
        let p = w(v);
        if p > 0.0 {
            last_positive = i;
            if u < p {
                return TokenId(i as u32);
            }
            u -= p;
        }
    }
    // Rounding left u just above the sum: the last token with weight takes it.
    TokenId(last_positive as u32)
}

/// Byte offset of the earliest stop string in `text`, if any.
fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

impl LocalModel {
    /// Load a GGUF chat model (llama/qwen2 with a ChatML template) with default session
    /// options (all cores, fastest kernel, 4096-position context).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, StrongError> {
        Self::load_with(path, SessionOptions::default())
    }

    /// [`load`](Self::load) with explicit engine session options (threads, kernel, context).
    pub fn load_with(path: impl AsRef<Path>, opts: SessionOptions) -> Result<Self, StrongError> {
        let path = path.as_ref();
        let err = |what: &str, e: &dyn std::fmt::Display| {
            StrongError::Local(format!("{}: {what}: {e}", path.display()))
        };
        let model = Model::load(path).map_err(|e| err("cannot load the model", &e))?;
        let tok = Tokenizer::from_gguf(model.gguf()).map_err(|e| err("tokenizer", &e))?;
        let tmpl = ChatTemplate::from_gguf(model.gguf()).map_err(|e| err("chat template", &e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into());
        Ok(LocalModel {
            name,
            model,
            tok,
            tmpl,
            opts,
            cache: Mutex::new(None),
            reused: AtomicUsize::new(0),
        })
    }

    /// Report `name` instead of the file stem.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Prompt tokens that requests so far did not have to prefill again because they repeated
    /// the previous request's prefix.
    pub fn prefix_tokens_reused(&self) -> usize {
        self.reused.load(Ordering::Relaxed)
    }

    /// The model's tokenizer (to count tokens the way the model does).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }
}

impl ChatModel for LocalModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, StrongError> {
        if req.messages.is_empty() {
            return Err(StrongError::BadRequest("no messages".into()));
        }
        for m in &req.messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(StrongError::BadRequest(format!(
                    "unknown role {:?} (system, user or assistant)",
                    m.role
                )));
            }
        }
        if !(req.temperature.is_finite() && req.temperature >= 0.0) {
            return Err(StrongError::BadRequest(format!(
                "temperature {} must be a number >= 0",
                req.temperature
            )));
        }
        let msgs: Vec<(&str, &str)> = req
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        let prompt = self.tmpl.render(&self.tok, &msgs);

        // A poisoned lock only means an earlier request panicked; the model itself is immutable.
        let mut cached = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut sess = Session::new(&self.model, self.opts.clone())
            .map_err(|e| StrongError::Local(e.to_string()))?;
        // Reuse the KV cache of the longest prefix shared with the previous request (QA judging
        // sends the same task, reference and draft with a new question each time). At least
        // the last prompt token is fed again, for its logits.
        let mut reused = 0;
        if let Some((prev, kv)) = cached.take() {
            let common = prev
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(prompt.len().saturating_sub(1));
            if common > 0 && sess.put_cache(kv).is_ok() {
                sess.truncate(common);
                reused = common;
            }
        }
        self.reused.fetch_add(reused, Ordering::Relaxed);
        tracing::debug!(reused, prompt = prompt.len(), "local strong model request");
        let cap = sess.capacity();
        if prompt.len() >= cap {
            return Err(StrongError::ContextTooLong {
                needed: prompt.len() + 1,
                capacity: cap,
            });
        }
        let max_new = req
            .max_tokens
            .map_or(usize::MAX, |n| n as usize)
            .min(cap - prompt.len());
        let eot = self.tmpl.end_of_turn(&self.tok);
        let mut rng = SplitMix64::new(req.seed.unwrap_or(0));
        let mut out: Vec<TokenId> = Vec::new();
        let mut logits = sess
            .feed(&prompt[reused..])
            .map_err(|e| StrongError::Local(e.to_string()))?
            .to_vec();
        let mut finish = FinishReason::Length;
        let mut stop_at = None;
        while out.len() < max_new {
            let next = if req.temperature == 0.0 {
                argmax(&logits)
            } else {
                sample(&logits, req.temperature, &mut rng)
            };
            if next == eot || next == self.tok.eos() || self.tok.is_special(next) {
                finish = FinishReason::Stop;
                break;
            }
            out.push(next);
            if !req.stop.is_empty() {
                let text = String::from_utf8_lossy(&self.tok.decode(&out)).into_owned();
                if let Some(i) = find_stop(&text, &req.stop) {
                    stop_at = Some(i);
                    finish = FinishReason::Stop;
                    break;
                }
            }
            if out.len() >= max_new {
                break;
            }
            logits.clear();
            logits.extend_from_slice(
                sess.feed(&[next])
                    .map_err(|e| StrongError::Local(e.to_string()))?,
            );
        }
        // The session now holds the prompt and every generated token but the last (never fed).
        let mut fed = prompt.clone();
        fed.extend_from_slice(&out[..sess.len() - prompt.len()]);
        *cached = Some((fed, sess.take_cache()));
        let mut content = String::from_utf8_lossy(&self.tok.decode(&out)).into_owned();
        if let Some(i) = stop_at {
            content.truncate(i);
        }
        Ok(ChatResponse {
            content,
            finish_reason: finish,
            model: self.name.clone(),
            prompt_tokens: u32::try_from(prompt.len()).ok(),
            completion_tokens: u32::try_from(out.len()).ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_reference_stream() {
        // Published SplitMix64 outputs for seed 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln(), f32::NAN, f32::NEG_INFINITY];
        let draw = |seed| {
            let mut r = SplitMix64::new(seed);
            (0..4000)
                .map(|_| sample(&logits, 1.0, &mut r).0)
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "same seed, same tokens");
        assert_ne!(a, draw(8));
        assert!(
            a.iter().all(|&t| t < 2),
            "non-finite logits are never drawn"
        );
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "p(1) = {ones}, want 0.75");
        // Low temperature concentrates on the maximum.
        let mut r = SplitMix64::new(1);
        assert!((0..200).all(|_| sample(&logits, 0.01, &mut r) == TokenId(1)));
    }

    #[test]
    fn stop_strings_take_the_earliest() {
        let stop = vec!["END".to_string(), "\n\n".to_string(), String::new()];
        assert_eq!(find_stop("ab\n\ncdEND", &stop), Some(2));
        assert_eq!(find_stop("abc", &stop), None);
    }
}
