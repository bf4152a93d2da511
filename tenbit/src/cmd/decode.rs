//! `tenbit decode`: the same decode path as `tenbit-edge decode` (tenbit-cli), on the host.

use anyhow::Result;
use tenbit_cli::{self as cli, ModelArgs, PromptArgs};

use super::FETCH;

/// Decode a tenbit frame back into text (any mode: lossless, rewrite, or QA replay).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tenbit decode answer.tb -o answer.txt\n  tenbit decode --prompt 'How do I tie a bowline?' answer.tb"
)]
pub struct Args {
    #[command(flatten)]
    decode: cli::DecodeArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: Args, quiet: bool) -> Result<()> {
    cli::decode_command(&a.decode, &a.prompt, &a.model, FETCH, quiet)
}
