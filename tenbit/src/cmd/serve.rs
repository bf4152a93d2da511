//! `tenbit serve`: a local GGUF model as an OpenAI-compatible server (the strong role).

use anyhow::Result;
use tenbit::strong::LocalModel;

/// Serve a local GGUF model as an OpenAI-compatible chat-completions server (the strong role
/// for tests and air-gapped setups): POST /v1/chat/completions, GET /v1/models, /health.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  tenbit serve --model qwen2.5-coder-1.5b --addr 127.0.0.1:8080")]
pub struct Args {
    /// GGUF model path or catalogue name (e.g. qwen2.5-coder-1.5b).
    #[arg(long, short = 'm')]
    model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
}

pub fn run(a: Args) -> Result<()> {
    let path = tenbit_catalogue::resolve(&a.model)?;
    let local = LocalModel::load(&path)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    eprintln!(
        "serving {} on http://{}/v1/chat/completions",
        path.display(),
        a.addr
    );
    tenbit::strong::serve::serve(std::sync::Arc::new(local), a.addr, &stop)?;
    Ok(())
}
