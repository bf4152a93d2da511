//! `tenbit send`: encode (or take a ready frame) and transmit it over a link.

use std::path::PathBuf;

use anyhow::{Context, Result};
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
tenbit send --frame --link lora-sf10-eu868 --broadcast --port /dev/ttyUSB0 answer.tb"
)]
pub struct Args {
    /// Text to send ('-' or absent: stdin), or a frame with --frame.
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
    /// Largest input accepted, in bytes.
    #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
    max_size: usize,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: Args, quiet: bool) -> Result<()> {
    let data = read_input(a.input.as_deref(), a.max_size as u64)?;
    let frame = if a.frame {
        data
    } else {
        let prompt = a.prompt.load()?;
        let use_prompt = prompt_use(prompt.as_deref(), a.send_prompt)?;
        let m = a.model.load(FETCH)?;
        let codec = LmCodec::new(&m, a.model.session_options())?;
        codec.encode_message(use_prompt, &data, Mode::Lossless, &mut |_, _| {})?
    };
    let cfg = a.link.config()?;
    let (est, packets) = tenbit_link::io::estimate_airtime(&cfg, frame.len())?;
    eprintln!(
        "frame {} bytes -> {packets} packet(s) on {}, estimated airtime {}",
        frame.len(),
        a.link.link,
        fmt_airtime(est)
    );
    if a.dry_run {
        return Ok(());
    }
    let mut port = a.link.open()?;
    let pb = spinner(quiet, None, "sending");
    let report = tenbit_link::io::send_message(&mut port, &cfg, &frame, |p| {
        pb.set_message(format!(
            "sending: {}/{} fragments, airtime {}",
            p.done_shards,
            p.total_shards,
            fmt_airtime(p.airtime_us)
        ));
    })
    .with_context(|| format!("sending over {} failed", a.link.port))?;
    pb.finish_and_clear();
    eprintln!(
        "sent: {} packets ({} retransmitted), {} bytes on air, airtime {}, {:.1} s",
        report.packets_sent,
        report.retransmissions,
        report.wire_bytes,
        fmt_airtime(report.airtime_us),
        report.elapsed_ms as f64 / 1000.0
    );
    Ok(())
}
