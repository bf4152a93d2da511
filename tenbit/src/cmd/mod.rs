//! One module per `tenbit` subcommand; each has an `Args` (its flags, with `--help` text and
//! examples) and a `run`. What several commands share lives here: the host's model fetch
//! step, progress bars, and how a strong model is named on the command line.

pub mod adapter;
pub mod bench;
pub mod decode;
pub mod demo;
pub mod encode;
pub mod eval;
pub mod inspect;
pub mod lora;
pub mod models;
pub mod send;
pub mod serve;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tenbit::strong::{self, ChatModel};
use tenbit_catalogue as catalogue;
use tenbit_cli as cli;

/// The host's fetch step for models it lacks (pip, pinned sha256): what `--model NAME` uses.
fn fetch_model(spec: &'static catalogue::ModelSpec) -> Result<PathBuf, catalogue::CatalogueError> {
    catalogue::ensure(spec, &mut |ev| tracing::info!(?ev, "model fetch"))
}

/// Passed to [`cli::ModelArgs::load`]: the host may download a catalogue model it lacks.
pub const FETCH: cli::Fetch<'static> = Some(&fetch_model);

/// A progress bar on stderr (never mixed with data on stdout); hidden with `--quiet`.
/// `len` gives a bar with ETA, `None` a spinner.
pub fn spinner(quiet: bool, len: Option<u64>, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Which model plays the strong role, spelled the same way by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StrongArgs {
    /// Strong model: an OpenAI-compatible server URL (llama.cpp's llama-server, vLLM, Ollama,
    /// a hosted API, `tenbit serve`), or a local GGUF path or catalogue name run by tenbit's
    /// engine. Default: TENBIT_STRONG_URL.
    #[arg(long, value_name = "URL|GGUF|NAME")]
    pub strong: Option<String>,
    /// With a URL: the model name sent to the server (TENBIT_STRONG_MODEL; the API key is read
    /// from TENBIT_STRONG_API_KEY and never logged). Without --strong: a local GGUF path or
    /// catalogue name, as if given to --strong.
    #[arg(long, value_name = "NAME")]
    pub strong_model: Option<String>,
}

impl StrongArgs {
    /// Open the strong model; `what` names the command that needs it, for the error message.
    pub fn open(&self, what: &str) -> Result<(Box<dyn ChatModel>, String)> {
        let env_url = || {
            std::env::var(tenbit::strong::openai::ENV_URL)
                .ok()
                .filter(|s| !s.is_empty())
        };
        let (target, server_model) = match (&self.strong, &self.strong_model) {
            (Some(t), m) => (t.clone(), m.as_deref()),
            (None, Some(local)) if env_url().is_none() => (local.clone(), None),
            (None, m) => match env_url() {
                Some(url) => (url, m.as_deref()),
                None => anyhow::bail!(
                    "{what} needs a strong model: --strong URL|GGUF|NAME, --strong-model GGUF|NAME, \
                     or TENBIT_STRONG_URL"
                ),
            },
        };
        Ok(strong::open(&target, server_model)?)
    }
}
