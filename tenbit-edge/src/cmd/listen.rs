//! `tenbit-edge listen`: receive frames on a link and decode each message.

use std::path::PathBuf;

use anyhow::Result;
use tenbit_cli::delivery::{listen, Output, RnsArgs, StateArgs};
use tenbit_cli::link::LinkArgs;
use tenbit_cli::{self as cli, ModelArgs, PromptArgs};
use tenbit_lm::codec::LmCodec;

/// Receive frames from a serial port or radio modem and decode each message.
///
/// Each decoded text goes to stdout (followed by a blank line) or into --out-dir. A frame that
/// fails (corrupt, wrong model) is logged and counted; the listener keeps going.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tenbit-edge listen --port /dev/ttyAMA0 --link lora-sf9\n  \
tenbit-edge listen --port /dev/ttyUSB0 --out-dir /var/lib/tenbit/messages\n  \
tenbit-edge listen --link rnode:/dev/ttyACM0 --freq 868.1e6 --sf 9 --bw 125 --cr 5 --txp 14\n  \
tenbit-edge listen --link kiss --port /dev/ttyUSB0                # KISS TNC\n  \
tenbit-edge listen --reticulum --rns-config /etc/tenbit/reticulum  # prints the destination hash\n  \
tenbit-edge listen --port /dev/ttyAMA0 --state /var/lib/tenbit --out-dir /var/lib/tenbit/messages  # exactly once"
)]
pub struct Args {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    state: StateArgs,
    /// Receive over Reticulum instead of --port: announce a `tenbit.edge` destination (its
    /// identity kept in the Reticulum config dir) and decode every frame sent to it.
    #[arg(long)]
    reticulum: bool,
    #[command(flatten)]
    rns: RnsArgs,
    /// Write each frame as received, undecoded (.tb files; no model is loaded): for relays,
    /// archives and link tests.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Write each message to DIR/msg-<n>.txt (with --state: DIR/<stream>-<seq>.txt) instead of
    /// stdout.
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
}

pub fn run(a: Args) -> Result<()> {
    if a.raw {
        let out = Output {
            dir: a.out_dir,
            written: 0,
            ext: "tb",
        };
        return listen(&a.link, &a.state, &a.rns, a.reticulum, out, a.count, |f| {
            Ok(f.to_vec())
        });
    }
    let prompt = a.prompt.load()?;
    let m = a.model.load(None)?;
    let codec = LmCodec::new(&m, a.model.session_options())?;
    let out = Output {
        dir: a.out_dir,
        written: 0,
        ext: "txt",
    };
    let max_size = a.max_size;
    listen(&a.link, &a.state, &a.rns, a.reticulum, out, a.count, |f| {
        Ok(cli::decode_frame_bytes(&codec, f, prompt.as_deref(), max_size)?.text)
    })
}
