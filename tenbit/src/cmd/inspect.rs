//! `tenbit inspect`: a frame's header, without the model.

use std::path::PathBuf;

use anyhow::Result;
use tenbit_cli::{self as cli, io::read_input};
use tenbit_wire::compact::{self, compact_len};
use tenbit_wire::frame::{peek_header, Flags};

/// Show a frame's header without decoding it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Frame ('-' or absent: stdin).
    input: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let frame = read_input(a.input.as_deref(), cli::DEFAULT_MAX_SIZE as u64)?;
    if compact::is_compact(&frame) {
        // A compact QA/pick frame has no model tag or prompt flags: its keyed check covers the
        // model, adapter and prompt, and only the decoder (which has them) can verify it.
        let h = compact::peek_compact(&frame)?;
        let check_bits = 8 * (compact_len(h.k) - 1) - usize::from(h.k);
        println!("version   compact");
        println!("mode      {:?}", h.mode);
        println!("revision  {}", h.revision);
        println!("bits      {} (K)", h.k);
        println!("check     {check_bits} bits keyed on model, adapter and prompt");
        println!("size      {} bytes", frame.len());
        return Ok(());
    }
    let h = peek_header(&frame)?;
    println!("version   {}", h.version);
    println!("mode      {:?}", h.mode);
    println!(
        "prompt    {}",
        if h.flags.contains(Flags::HAS_PROMPT) {
            "carried in the frame"
        } else if h.flags.contains(Flags::PROMPT_KNOWN) {
            "known to both ends (receiver must supply it)"
        } else {
            "none"
        }
    );
    println!("model tag 0x{:02x}", h.model_tag);
    println!("size      {} bytes", frame.len());
    Ok(())
}
