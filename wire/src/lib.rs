//! tenbit-wire: what is on the wire, and nothing else.
//!
//! A tenbit message is a *frame*: a small header, a range-coded payload and a CRC-32 keyed with
//! the identity of the model that coded it. Both ends turn the small model's logits into the same
//! integer CDF and drive the same integer range coder with it, so the decoder recovers the
//! encoder's tokens exactly. This crate holds every piece of that contract that does not need a
//! model:
//!
//! * [`coder`]: the 32-bit integer range coder (encoder, decoder, raw bits).
//! * [`freq`]: logits (as f32 bit patterns) to a cumulative frequency table, [`freq::Cdf`],
//!   with integer arithmetic only; the calibration constant of each frame version.
//! * [`frame`]: the frame header, modes, flags, the model identity and the keyed CRC.
//! * [`compact`]: QA and pick frames of at most 4 bytes for K <= 16 (a shorter keyed check).
//! * [`checksum`]: the one CRC-32 of the project (frames here, link messages in `tenbit-link`).
//! * [`rng`]: the seeded generators whose streams both ends replay (QA re-asks, pick mode).
//! * [`token`]: the token-id newtype shared by tokenizer, engine and coder.
//!
//! # Why a crate of its own
//! The wire format is the one thing host, board and a microcontroller relay must agree on
//! byte for byte. Keeping it `no_std`, free of `unsafe` and free of floating-point arithmetic
//! makes it identical on every target by construction, and means a change to the format touches
//! this crate and the codec driver in `tenbit-lm`, nowhere else.
#![deny(missing_docs)]
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod checksum;
pub mod coder;
pub mod compact;
pub mod frame;
pub mod freq;
pub mod rng;
pub mod token;

pub use token::TokenId;
