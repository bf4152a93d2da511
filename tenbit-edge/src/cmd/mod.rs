//! One module per `tenbit-edge` subcommand (decode and hash-logits are tenbit-cli's, shared
//! with the host).

pub mod adapter;
pub mod info;
pub mod listen;
