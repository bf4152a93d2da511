//! `tenbit send`: encode (or take a ready frame) and transmit it over a link.

use std::path::PathBuf;

use anyhow::Result;
use tenbit_cli::delivery::{self, RnsArgs, SpoolArgs};
use tenbit_cli::io::read_input;
use tenbit_cli::link::{fmt_airtime, LinkArgs};
use tenbit_cli::{self as cli, ModelArgs, PromptArgs};
use tenbit_lm::codec::LmCodec;
use tenbit_wire::frame::Mode;

use super::encode::prompt_use;
use super::{spinner, FETCH};

/// Encode a text (or take a ready frame) and send it over a serial cable or radio modem.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tenbit send --link lora-sf9 --port /dev/ttyUSB0 answer.txt\n  \
tenbit send --link serial-115200 --port /dev/ttyACM0 --prompt 'Weather?' answer.txt\n  \
tenbit send --frame --link lora-sf10-eu868 --broadcast --port /dev/ttyUSB0 answer.tb\n  \
tenbit send --link kiss --port tcp:127.0.0.1:8001 answer.txt            # KISS TNC\n  \
tenbit send --link rnode:/dev/ttyUSB0 --freq 868.1e6 --sf 9 --bw 125 --cr 5 --txp 14 answer.txt\n  \
tenbit send --reticulum 4faf1b2e0a7c5d3e9b8f6a1c2d3e4f50 answer.txt    # to tenbit-edge listen --reticulum\n  \
tenbit send --spool /var/spool/tenbit --queue answer.txt                # add to the outbox\n  \
tenbit send --spool /var/spool/tenbit --daemon --port /dev/ttyUSB0       # deliver it, survive crashes"
)]
pub struct Args {
    /// Text to send ('-' or absent: stdin; with --spool, absent means only resend the spool),
    /// or a frame with --frame.
    input: Option<PathBuf>,
    /// The input is already a tenbit frame: send it as is.
    #[arg(long)]
    frame: bool,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Carry the prompt inside the frame.
    #[arg(long)]
    send_prompt: bool,
    /// Only print the frame size and estimated airtime; send nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    spool: SpoolArgs,
    /// Send to this Reticulum destination (32 hex digits, what `tenbit-edge listen
    /// --reticulum` prints) through the reference rns stack, instead of --port.
    #[arg(long, value_name = "DEST_HASH")]
    reticulum: Option<String>,
    #[command(flatten)]
    rns: RnsArgs,
    /// Largest input accepted, in bytes.
    #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
    max_size: usize,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: Args, quiet: bool) -> Result<()> {
    // With --spool and no INPUT, only what is already spooled is sent ('-' reads stdin).
    let frame = if a.spool.spool.is_some() && a.input.is_none() {
        None
    } else {
        let data = read_input(a.input.as_deref(), a.max_size as u64)?;
        Some(if a.frame {
            data
        } else {
            let prompt = a.prompt.load()?;
            let use_prompt = prompt_use(prompt.as_deref(), a.send_prompt)?;
            let m = a.model.load(FETCH)?;
            let codec = LmCodec::new(&m, a.model.session_options())?;
            codec.encode_message(use_prompt, &data, Mode::Lossless, &mut |_, _| {})?
        })
    };
    if let (Some(f), None) = (&frame, &a.reticulum) {
        let cfg = a.link.config()?;
        let (est, packets) = tenbit_link::io::estimate_airtime(&cfg, f.len())?;
        eprintln!(
            "frame {} bytes -> {packets} packet(s) on {}, estimated airtime {}",
            f.len(),
            a.link.link,
            fmt_airtime(est)
        );
    }
    if a.dry_run {
        return Ok(());
    }
    let pb = spinner(quiet || a.spool.daemon, None, "sending");
    let res = delivery::send(&a.link, &a.spool, &a.rns, a.reticulum.as_deref(), frame);
    pb.finish_and_clear();
    res
}
