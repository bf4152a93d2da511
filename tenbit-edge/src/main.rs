//! `tenbit-edge`: the board-side decoder. Small on purpose: it links the engine, the codec and
//! the link layer, and nothing of the host's strong-model, training or HTTP code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tenbit_cli::io::{read_input, write_output};
use tenbit_cli::link::LinkArgs;
use tenbit_cli::{self as cli, ModelArgs, PromptArgs, EXIT_CODES_HELP};
use tenbit_link::io::{Event, Receiver};
use tenbit_lm::codec::LmCodec;

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
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode a frame file (or stdin) to the original text.
    Decode {
        /// Frame to decode ('-' or absent: stdin).
        input: Option<PathBuf>,
        /// Where to write the text ('-' or absent: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Also write the prompt carried by the frame, if any, to this file.
        #[arg(long, value_name = "FILE")]
        prompt_out: Option<PathBuf>,
        /// Largest message accepted, in bytes.
        #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
        max_size: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Receive frames from a serial port or radio modem and decode each message.
    ///
    /// Each decoded text goes to stdout (followed by a blank line) or into --out-dir. A frame
    /// that fails (corrupt, wrong model) is logged and counted; the listener keeps going.
    Listen {
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        state: tenbit_cli::delivery::StateArgs,
        /// Receive over Reticulum instead of --port: announce a `tenbit.edge` destination (its
        /// identity kept in the Reticulum config dir) and decode every frame sent to it.
        #[arg(long)]
        reticulum: bool,
        #[command(flatten)]
        rns: tenbit_cli::delivery::RnsArgs,
        /// Write each frame as received, undecoded (<n>.tb files; no model is loaded): for
        /// relays, archives and link tests.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Write each message to DIR/msg-<n>.txt instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Stop after this many messages (default: run until the port closes).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Largest message accepted, in bytes.
        #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
        max_size: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// LoRA adapters: receive one sent with `tenbit adapter send`.
    Adapter {
        #[command(subcommand)]
        cmd: AdapterCmd,
    },
    /// Print the model's identity (what frames must name to be accepted here).
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Debug: hash the model's logits at every position of a text (cross-machine checks).
    #[command(hide = true)]
    HashLogits {
        input: Option<PathBuf>,
        #[arg(long)]
        prompt: Option<String>,
        /// Feed the whole text as one batch instead of token by token.
        #[arg(long)]
        batched: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Subcommand)]
enum AdapterCmd {
    /// Receive an adapter over the link, check its sha256 (and that it fits the local model,
    /// when that is installed), and write it to --out. Then decode with --adapter FILE.
    #[command(
        after_help = "Example:\n  tenbit-edge adapter receive --link serial-115200 --port /dev/ttyAMA0 -o /var/lib/tenbit/python.tbl"
    )]
    Receive {
        #[command(flatten)]
        link: LinkArgs,
        /// Where to write the adapter.
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// `tenbit-edge adapter receive`: collect chunks until the file is whole and hash-checked.
fn adapter_receive(link: LinkArgs, out: PathBuf, model: ModelArgs) -> Result<()> {
    use tenbit_engine::lora::Adapter;
    use tenbit_link::transfer::Assembler;
    let cfg = link.config()?;
    let port = link.open()?;
    let mut rx = Receiver::new(port, &cfg)?;
    let mut asm = Assembler::new();
    tracing::info!(port = %link.port, "waiting for an adapter");
    let bytes = loop {
        let ev = rx
            .next_event()
            .with_context(|| format!("link on {} failed", link.port))?;
        let msg = match ev {
            Event::Message(m) => m,
            Event::Lost { msg_id } => {
                tracing::warn!(msg_id, "message lost on the link");
                continue;
            }
        };
        match asm.push(&msg.payload) {
            Ok(Some(b)) => break b,
            Ok(None) => {
                let (have, total) = asm.progress();
                tracing::info!(have, total, "adapter chunk");
            }
            Err(e @ tenbit_link::transfer::TransferError::NotAChunk) => {
                tracing::warn!("ignoring a message that is not an adapter chunk: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    };
    let a = Adapter::from_bytes(&bytes).context("received file is not a valid adapter")?;
    match model.resolve(None) {
        Ok(p) => {
            let m = tenbit_engine::Model::load(&p)
                .with_context(|| format!("cannot load model {}", p.display()))?;
            a.check_base(&m.content_hash(), &m.adapter_dims())
                .context("received adapter does not fit the local model")?;
        }
        Err(e) => tracing::warn!("base model not checked: {e:#}"),
    }
    // Write next to the target, then rename: a reader never sees half an adapter.
    let tmp = out.with_extension("part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} bytes, sha256 {}",
        out.display(),
        bytes.len(),
        hex::encode(a.content_hash())
    );
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Decode {
            input,
            output,
            prompt,
            prompt_out,
            max_size,
            model,
        } => {
            let frame = read_input(input.as_deref(), max_size as u64)?;
            let prompt = prompt.load()?;
            let m = model.load(None)?;
            let codec = LmCodec::new(&m, model.session_options())?;
            let msg = cli::decode_frame_bytes(&codec, &frame, prompt.as_deref(), max_size)?;
            if let (Some(p), Some(pr)) = (&prompt_out, &msg.prompt) {
                write_output(Some(p), pr)?;
            }
            write_output(output.as_deref(), &msg.text)?;
        }
        Cmd::Listen {
            link,
            state,
            reticulum,
            rns,
            raw,
            prompt,
            out_dir,
            count,
            max_size,
            model,
        } => {
            use tenbit_cli::delivery::{listen, Output};
            if raw {
                let out = Output { dir: out_dir, written: 0, ext: "tb" };
                listen(&link, &state, &rns, reticulum, out, count, |f| Ok(f.to_vec()))?
            } else {
                let prompt = prompt.load()?;
                let m = model.load(None)?;
                let codec = LmCodec::new(&m, model.session_options())?;
                let out = Output { dir: out_dir, written: 0, ext: "txt" };
                listen(&link, &state, &rns, reticulum, out, count, |f| {
                    Ok(cli::decode_frame_bytes(&codec, f, prompt.as_deref(), max_size)?.text)
                })?
            }
        }
        Cmd::Adapter {
            cmd: AdapterCmd::Receive { link, out, model },
        } => adapter_receive(link, out, model)?,
        Cmd::Info { model } => {
            let m = model.load(None)?;
            let codec = LmCodec::new(&m, model.session_options())?;
            println!("model     {}", model.resolve(None)?.display());
            println!("sha256    {}", hex::encode(m.content_hash()));
            if let Some(a) = m.adapter() {
                println!(
                    "adapter   {} (rank {}, {})",
                    hex::encode(a.content_hash()),
                    a.rank,
                    tenbit_engine::lora::Target::list(&a.targets)
                );
            }
            println!(
                "identity  {} (frame tag 0x{:02x})",
                hex::encode(codec.identity().0),
                codec.identity().tag()
            );
            println!(
                "kernel    {}",
                model
                    .kernel
                    .unwrap_or_else(tenbit_engine::KernelLevel::detect)
            );
        }
        Cmd::HashLogits {
            input,
            prompt,
            batched,
            model,
        } => {
            cli::hash_logits_command(input.as_deref(), prompt.as_deref(), batched, &model, None)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenbit-edge: error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
