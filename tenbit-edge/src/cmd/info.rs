//! `tenbit-edge info`: what frames must name to be accepted here.

use anyhow::Result;
use tenbit_cli::ModelArgs;
use tenbit_lm::codec::LmCodec;

/// Print the model's identity (what frames must name to be accepted here).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(a: Args) -> Result<()> {
    let model = a.model;
    let m = model.load(None)?;
    let codec = LmCodec::new(&m, model.session_options())?;
    println!("model     {}", model.resolve(None)?.display());
    println!("sha256    {}", hex::encode(m.content_hash()));
    if let Some(ad) = m.adapter() {
        println!(
            "adapter   {} (rank {}, {})",
            hex::encode(ad.content_hash()),
            ad.rank,
            tenbit_engine::lora::Target::list(&ad.targets)
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
    Ok(())
}
