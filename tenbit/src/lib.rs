//! Library face of the `tenbit` host crate, so integration tests can reach its modules.
#![deny(missing_docs)]

pub mod eval;
pub mod strong;
