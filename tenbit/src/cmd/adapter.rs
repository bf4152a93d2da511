//! `tenbit adapter`: inspect an adapter file, or send one to a board.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use tenbit_cli::link::{fmt_airtime, LinkArgs};
use tenbit_cli::{self as cli};

use super::spinner;

/// LoRA adapter files: show one, or send one to a board over a link.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show an adapter file's header and identity.
    Info { file: PathBuf },
    /// Send an adapter file to a board (`tenbit-edge adapter receive` on the other end), in
    /// chunks over the link's ARQ/fragmentation path; the receiver checks the sha256.
    #[command(
        after_help = "Example:\n  tenbit adapter send --link serial-115200 --port /dev/ttyUSB0 python.tbl"
    )]
    Send {
        file: PathBuf,
        #[command(flatten)]
        link: LinkArgs,
    },
}

pub fn run(cmd: Cmd, quiet: bool) -> Result<()> {
    match cmd {
        Cmd::Info { file } => info(&file),
        Cmd::Send { file, link } => send(&file, &link, quiet),
    }
}

fn info(file: &std::path::Path) -> Result<()> {
    let a = tenbit_engine::lora::Adapter::load(file)?;
    let id = tenbit_lm::codec::identity_of(&a.base_model, Some(&a.content_hash()));
    let params: usize = a
        .layers
        .iter()
        .flatten()
        .map(|p| p.a.len() + p.b.len())
        .sum();
    println!("file       {} ({} bytes)", file.display(), a.file_len());
    println!("format     tenbit LoRA v{}", tenbit_engine::lora::VERSION);
    println!("sha256     {}", hex::encode(a.content_hash()));
    println!("base model {}", hex::encode(a.base_model));
    println!(
        "shape      rank {}, alpha {} (scale {}), {} layers, {} parameters ({:?})",
        a.rank,
        a.alpha,
        a.scale(),
        a.dims.n_layer,
        params,
        a.dtype
    );
    println!(
        "targets    {}",
        tenbit_engine::lora::Target::list(&a.targets)
    );
    println!(
        "identity   {} (frame tag 0x{:02x})",
        hex::encode(id.0),
        id.tag()
    );
    Ok(())
}

/// `tenbit adapter send`: the file in link-message-sized chunks, each through the same
/// ARQ/fragmentation path as `tenbit send`.
fn send(file: &std::path::Path, link: &LinkArgs, quiet: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Refuse to send something the receiver would refuse anyway.
    let a = tenbit_engine::lora::Adapter::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid adapter", file.display()))?;
    let cfg = link.config()?;
    // The largest message this link configuration carries (sealing and small MTUs leave
    // less than MAX_MESSAGE): halve until the link layer accepts it.
    let mut size = tenbit_link::MAX_MESSAGE - 64;
    let est = loop {
        match tenbit_link::io::estimate_airtime(&cfg, size) {
            Ok((est, _)) => break est,
            Err(_) if size > 256 => size /= 2,
            Err(e) => return Err(e.into()),
        }
    };
    let chunks = tenbit_link::transfer::chunks(&bytes, size)?;
    eprintln!(
        "adapter {} ({} bytes) -> {} messages on {}, estimated airtime up to {}",
        cli::short_hash(&a.content_hash()),
        bytes.len(),
        chunks.len(),
        link.link,
        fmt_airtime(est * chunks.len() as u64)
    );
    let mut port = link.open()?;
    let mut sender = tenbit_link::io::Sender::new(cfg)?;
    let pb = spinner(quiet, Some(chunks.len() as u64), "sending");
    let (mut packets, mut retx, mut air) = (0u64, 0u64, 0u64);
    for c in &chunks {
        let r = sender
            .send(&mut port, c, |_| {})
            .with_context(|| format!("sending over {} failed", link.port_name()))?;
        packets += r.packets_sent as u64;
        retx += r.retransmissions as u64;
        air += r.airtime_us;
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!(
        "sent adapter: {} messages, {packets} packets ({retx} retransmitted), airtime {}",
        chunks.len(),
        fmt_airtime(air)
    );
    Ok(())
}
