//! `tenbit-edge adapter receive`: an adapter sent with `tenbit adapter send`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use tenbit_cli::link::LinkArgs;
use tenbit_cli::ModelArgs;
use tenbit_link::io::{Event, Receiver};

/// LoRA adapters: receive one sent with `tenbit adapter send`.
#[derive(Debug, Subcommand)]
pub enum Cmd {
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

pub fn run(cmd: Cmd) -> Result<()> {
    let Cmd::Receive { link, out, model } = cmd;
    receive(link, out, model)
}

/// `tenbit-edge adapter receive`: collect chunks until the file is whole and hash-checked.
fn receive(link: LinkArgs, out: PathBuf, model: ModelArgs) -> Result<()> {
    use tenbit_engine::lora::Adapter;
    use tenbit_link::transfer::Assembler;
    let cfg = link.config()?;
    let port = link.open()?;
    let mut rx = Receiver::new(port, &cfg)?;
    let mut asm = Assembler::new();
    tracing::info!(port = %link.port_name(), "waiting for an adapter");
    let bytes = loop {
        let ev = rx
            .next_event()
            .with_context(|| format!("link on {} failed", link.port_name()))?;
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
