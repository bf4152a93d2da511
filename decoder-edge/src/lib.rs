//! tenbit-edge: the decoding side, shared by the board binary `tenbit-edge` and the host CLI.
//!
//! Keeping the decode path in one library means `tenbit decode` on a laptop and `tenbit-edge
//! decode` on a Raspberry Pi run literally the same code; the board binary just links less.

pub mod cli;
pub mod io;
pub mod link_cli;
