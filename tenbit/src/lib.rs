//! Library face of the `tenbit` host crate, so integration tests can reach its modules.

pub mod eval;
pub mod strong;
