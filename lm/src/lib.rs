//! tenbit-lm: the small model as a language model, and the codec driver built on it.
//!
//! `tenbit-engine` turns token ids into logits, bit for bit the same on every machine; this crate
//! turns text into token ids and back, lays conversations out as the model was trained to read
//! them, and drives the wire crate's range coder with the engine's predictions:
//!
//! * [`tokenizer`] is the byte-level BPE tokenizer rebuilt from the GGUF metadata, with escape
//!   tokens for the bytes a vocabulary lacks, so any byte string round-trips.
//! * [`chat`] formats prompts with the model's chat template (ChatML).
//! * [`codec`] is the codec driver: text in, frame out, and one decode entry point that routes on
//!   the frame's mode, used by both binaries.
//! * [`generate`] is deterministic generation (greedy, and seeded sampling from the integer CDF).
//! * [`qa`] runs the small model's side of question-asking, replayable bit for bit.
//!
//! Nothing here is `unsafe`, and nothing here computes a probability in floating point outside
//! the engine: a CDF comes from `tenbit_wire::freq` and nowhere else.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod codec;
pub mod generate;
pub mod pick;
pub mod qa;
pub mod tokenizer;
