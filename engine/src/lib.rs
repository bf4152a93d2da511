//! tenbit-engine: the bit-exact small-model engine.
//!
//! The one law of tenbit: encoder (x86_64) and decoder (aarch64) must compute the same logits,
//! bit for bit, whatever the SIMD level, thread count or batch shape. How this engine keeps it:
//!
//! * **Integer block dot products.** Weights stay in ggml blocks; activations are quantised to
//!   8 bits per block by one scalar routine ([`quant::quantize_row`]). Block dots are exact
//!   integers however they are computed, and the float combination per block is one fixed
//!   sequence shared by all kernels ([`kernels`]).
//! * **Fixed reduction orders.** Every sum (norms, attention scores, softmax, weighted values)
//!   runs sequentially in index order. Threads split *output rows* and *heads*, never a sum.
//! * **No FMA, no libm.** Rust never contracts `a*b+c` by itself and this code never asks.
//!   `exp`, `sin`, `cos`, `pow` come from [`math`] (only +,-,*,/ and floor, in f64); `sqrt`
//!   and division are correctly rounded by IEEE-754 and so identical everywhere.
//! * **Prefill == decode.** A batch runs the same per-(row, token) arithmetic as a single
//!   token, and token t of a batch attends to positions 0..=t exactly as an incremental step.
//!
//! Weights are borrowed from the memory-mapped GGUF: the decoder's resident memory is the
//! pages it touches plus the KV cache, which grows only as far as a message needs.
//!
//! # API
//!
//! * [`Model::load`] maps a GGUF file (llama or qwen2 architecture).
//! * [`Session`]: one sequence. [`Session::feed`] runs tokens (a prefill is one call) and
//!   returns the logits after the last; [`Session::feed_all`] hands over every position's.
//! * [`Batch`]: up to `max_seqs` independent sequences, each with its own cache and position.
//!   [`Batch::step`] feeds any of them any number of tokens in one pass over the weights, and
//!   [`Batch::logits`] reads each one's next-token logits: bit-identical to running that
//!   sequence alone in a `Session`. [`Batch::fork`] copies a sequence (shared prompt, many
//!   candidates). A sequence that would overflow its cache fails alone with
//!   [`EngineError::ContextFull`]; the others step on.
//! * [`SessionOptions`]: threads (0 = all cores; more than the cores is refused unless
//!   `oversubscribe`), kernel level, cache capacity. None of them changes a result.
//!
//! # Threads
//!
//! Each session or batch owns a persistent pool (`pool`): its workers spin between the
//! parallel sections of a step and park when idle, so a section costs an atomic hand-off,
//! not a wake-up. Each matrix's rows are split among the workers once, when the session is
//! made; a worker always computes whole rows (and whole attention heads), so no sum ever
//! depends on the thread count.

#![deny(missing_docs)]

mod forward;
pub mod gguf;
pub mod kernels;
pub mod lora;
pub mod math;
mod model;
mod pool;
pub mod quant;
mod session;

use sha2::{Digest, Sha256};
pub use tenbit_wire::TokenId;

use crate::gguf::GgufError;
pub use kernels::KernelLevel;
pub use model::{Model, ModelConfig};
pub use session::{Batch, KvCache, SeqId, Session, SessionOptions};

/// Errors of the engine: loading a model, starting a session, feeding tokens.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be read or parsed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The file is a valid GGUF this engine cannot run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The tokens fed do not fit the remaining cache positions.
    #[error("the context is full ({capacity} positions)")]
    ContextFull {
        /// Positions the cache holds.
        capacity: usize,
    },
    /// A token id at or beyond the vocabulary size.
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    /// The requested kernel level cannot run on this CPU.
    #[error("kernel level `{0}` is not available on this CPU (available: {1})")]
    KernelUnavailable(String, String),
    /// The operating system refused to start the worker threads.
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    /// More worker threads than cores were asked for (see [`SessionOptions::threads`]).
    #[error("{requested} threads requested, but this machine has {cores} cores (0 = all cores)")]
    TooManyThreads {
        /// Threads asked for.
        requested: usize,
        /// Cores available to this process.
        cores: usize,
    },
    /// A batch already holds its maximum number of live sequences.
    #[error("the batch is full ({max} sequences at most)")]
    BatchFull {
        /// The batch's configured maximum.
        max: usize,
    },
    /// A sequence id that is not (or no longer) in this batch.
    #[error("no such sequence in this batch")]
    UnknownSeq,
    /// One step listed the same sequence twice.
    #[error("a sequence is listed twice in one step")]
    DuplicateSeq,
}

/// sha256 over the little-endian bit patterns of logits: the bit-exactness probe.
pub fn logits_hash(logits: &[f32]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in logits {
        h.update(v.to_bits().to_le_bytes());
    }
    h.finalize().into()
}
