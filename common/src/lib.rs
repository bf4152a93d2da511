//! tenbit-common: the part of tenbit that must fit everywhere, from the x86_64 host down to a
//! Cortex-M relay. Integer-only range coding, the logits-to-frequency mapping, the frame format
//! and the packet link layer. No floating-point arithmetic happens in this crate, so the coder is
//! bit-identical on every target by construction.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod checksum;
pub mod coder;
pub mod frame;
pub mod freq;
pub mod link;
pub mod token;

pub use token::TokenId;
