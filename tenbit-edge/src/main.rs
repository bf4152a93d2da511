//! `tenbit-edge`: the board-side decoder. Small on purpose: it links the engine, the codec and
//! the link layer, and nothing of the host's strong-model, training or HTTP code.

mod cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tenbit_cli::{self as cli, ModelArgs, PromptArgs, EXIT_CODES_HELP};

#[derive(Parser)]
#[command(
    name = "tenbit-edge",
    version,
    about = "Decode tenbit frames back into LLM responses, on the board.",
    long_about = "Decode tenbit frames back into LLM responses, on the board.\n\n\
tenbit-edge runs the same small model as the sender and replays its arithmetic coder, so a \
response of a few kilobytes arrives as a frame of a few hundred bytes. Frames name the model \
by content hash: a frame for another model is refused, never decoded to garbage.\n\n\
Examples:\n  tenbit-edge decode reply.tb -o reply.txt\n  \
tenbit-edge listen --port /dev/ttyAMA0 --link lora-sf9          # print each message\n  \
tenbit-edge listen --port /dev/ttyUSB0 --out-dir /var/lib/tenbit  # one file per message",
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
    /// Decode a frame file (or stdin) to the original text.
    Decode {
        #[command(flatten)]
        args: cli::DecodeArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Receive frames from a serial port or radio modem and decode each message.
    Listen(cmd::listen::Args),
    /// LoRA adapters: receive one sent with `tenbit adapter send`.
    Adapter {
        #[command(subcommand)]
        cmd: cmd::adapter::Cmd,
    },
    /// Print the model's identity (what frames must name to be accepted here).
    Info(cmd::info::Args),
    /// Debug: hash the model's logits at every position of a text (cross-machine checks).
    #[command(hide = true)]
    HashLogits(cli::HashLogitsArgs),
}

fn run(cli: Cli) -> Result<()> {
    // A board never downloads: every command gets `None` as its fetch step.
    match cli.cmd {
        Cmd::Decode {
            args,
            prompt,
            model,
        } => cli::decode_command(&args, &prompt, &model, None, cli.log.quiet),
        Cmd::Listen(a) => cmd::listen::run(a),
        Cmd::Adapter { cmd } => cmd::adapter::run(cmd),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::HashLogits(a) => cli::hash_logits_command(&a, None),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    cli::finish("tenbit-edge", run(cli), cli::exit_code)
}
