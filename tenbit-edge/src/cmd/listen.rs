//! `tenbit-edge listen`: receive frames on a link and decode each message.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tenbit_cli::io::write_output;
use tenbit_cli::link::LinkArgs;
use tenbit_cli::{self as cli, ModelArgs, PromptArgs};
use tenbit_link::io::{Event, Receiver};
use tenbit_lm::codec::LmCodec;

/// Receive frames from a serial port or radio modem and decode each message.
///
/// Each decoded text goes to stdout (followed by a blank line) or into --out-dir. A frame that
/// fails (corrupt, wrong model) is logged and counted; the listener keeps going.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tenbit-edge listen --port /dev/ttyAMA0 --link lora-sf9\n  \
tenbit-edge listen --port /dev/ttyUSB0 --out-dir /var/lib/tenbit/messages"
)]
pub struct Args {
    #[command(flatten)]
    link: LinkArgs,
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
}

pub fn run(a: Args) -> Result<()> {
    let prompt = a.prompt.load()?;
    listen(a.link, prompt, a.out_dir, a.count, a.max_size, a.model)
}

fn listen(
    link: LinkArgs,
    prompt: Option<Vec<u8>>,
    out_dir: Option<PathBuf>,
    count: Option<u64>,
    max_size: usize,
    model: ModelArgs,
) -> Result<()> {
    let m = model.load(None)?;
    let codec = LmCodec::new(&m, model.session_options())?;
    let cfg = link.config()?;
    let port = link.open()?;
    if let Some(d) = &out_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    tracing::info!(port = %link.port, profile = %link.link, "listening");
    let mut rx = Receiver::new(port, &cfg)?;
    let (mut ok, mut failed) = (0u64, 0u64);
    loop {
        if count.is_some_and(|c| ok + failed >= c) {
            break;
        }
        let ev = match rx.next_event() {
            Ok(ev) => ev,
            Err(e) => {
                // The port closed or died: report what was received, fail with the link code.
                tracing::info!(ok, failed, "link ended");
                return Err(e).context(format!("link on {} failed", link.port));
            }
        };
        let msg = match ev {
            Event::Message(m) => m,
            Event::Lost { msg_id } => {
                failed += 1;
                tracing::warn!(msg_id, "message lost on the link");
                continue;
            }
        };
        match cli::decode_frame_bytes(&codec, &msg.payload, prompt.as_deref(), max_size) {
            Ok(decoded) => {
                ok += 1;
                tracing::info!(
                    msg_id = msg.msg_id,
                    frame = msg.payload.len(),
                    text = decoded.text.len(),
                    "decoded"
                );
                match &out_dir {
                    Some(d) => {
                        write_output(Some(&d.join(format!("msg-{ok:05}.txt"))), &decoded.text)?
                    }
                    None => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&decoded.text)?;
                        out.write_all(b"\n\n")?;
                        out.flush()?;
                    }
                }
            }
            Err(e) => {
                failed += 1;
                tracing::error!(msg_id = msg.msg_id, "frame refused: {e:#}");
            }
        }
    }
    let stats = rx.stats();
    tracing::info!(
        ok,
        failed,
        auth_failures = stats.auth_failures,
        replays = stats.replays,
        "done"
    );
    Ok(())
}
