//! `tenbit encode`: text in, frame out, in one of three modes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use indicatif::ProgressBar;
use tenbit_cli::io::{read_input, write_output};
use tenbit_cli::{self as cli, ModelArgs, PromptArgs};
use tenbit_lm::codec::{LmCodec, PromptUse};
use tenbit_wire::frame::Mode;

use super::{spinner, StrongArgs, FETCH};

/// What the frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Exact bytes back.
    Lossless,
    /// The strong model rewrites the text succinctly (all facts and the final answer kept);
    /// the rewrite is coded losslessly. Needs a strong model.
    Rewrite,
    /// Question-asking: the small model answers the prompt and asks K yes/no questions; the
    /// strong model's answers are the only payload (K bits). Needs --prompt, --bits and a
    /// strong model; the input text, if any, is given to the strong model as its reference
    /// answer.
    Qa,
    /// Seeded selection: both ends can draw the same 2^K candidate answers from the small
    /// model; the strong model chooses the best and only its index (K bits) travels. When none
    /// is good, the frame is the strong answer itself (rewrite mode; lossless of the input text
    /// when one is given). Needs --prompt, --bits (1..=6) and a strong model.
    Pick,
}

/// Encode text (a file or stdin) into a tenbit frame.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  tenbit encode answer.txt -o answer.tb\n  \
tenbit encode --prompt 'How do I tie a bowline?' answer.txt -o answer.tb\n  \
llm-cli ask ... | tenbit encode > msg.tb\n  \
tenbit encode --mode qa --bits 10 --strong http://127.0.0.1:8080 --prompt 'What is 17*23?' -o q.tb")]
pub struct Args {
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
    /// Number of yes/no questions in QA mode, or index bits in pick mode (bits sent).
    #[arg(long, default_value_t = 10, value_name = "K")]
    bits: usize,
    /// Largest K accepted (each question costs a strong-model call).
    #[arg(long, default_value_t = 16, value_name = "K")]
    max_bits: usize,
    /// Token limit of the strong model's rewrite (and, in QA mode without an input text, of
    /// its own solution, which it answers the questions from).
    #[arg(long, default_value_t = 1024)]
    rewrite_max_tokens: u32,
    /// QA conversation revision (1, 2 or 3; default: the current one, 3). Older revisions
    /// stay available so their frames can be reproduced; decoders replay whichever a frame
    /// names.
    #[arg(long, value_name = "N", hide = true)]
    qa_protocol: Option<u8>,
    /// Largest input accepted, in bytes.
    #[arg(long, default_value_t = cli::DEFAULT_MAX_SIZE)]
    max_size: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// How the prompt is used, from `--prompt`/`--prompt-file` and `--send-prompt`.
pub fn prompt_use(prompt: Option<&[u8]>, send_prompt: bool) -> Result<PromptUse<'_>> {
    Ok(match (prompt, send_prompt) {
        (None, true) => anyhow::bail!("--send-prompt needs --prompt or --prompt-file"),
        (None, false) => PromptUse::None,
        (Some(p), false) => PromptUse::Known(p),
        (Some(p), true) => PromptUse::Sent(p),
    })
}

pub fn run(a: Args, quiet: bool) -> Result<()> {
    let mut text = if matches!(a.mode, ModeArg::Qa | ModeArg::Pick) && a.input.is_none() {
        Vec::new()
    } else {
        read_input(a.input.as_deref(), a.max_size as u64)?
    };
    let prompt = a.prompt.load()?;
    let m = a.model.load(FETCH)?;
    let codec = LmCodec::new(&m, a.model.session_options())?;
    let mode = match a.mode {
        ModeArg::Qa => return qa(&a, &codec, prompt.as_deref(), &text),
        ModeArg::Pick => return pick(&a, &codec, prompt.as_deref(), &text),
        ModeArg::Lossless => Mode::Lossless,
        ModeArg::Rewrite => {
            let (sm, _) = a.strong.open("--mode rewrite")?;
            let original =
                String::from_utf8(text.clone()).context("rewrite mode needs UTF-8 text")?;
            let task = prompt
                .as_deref()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let rw = tenbit::strong::prompts::rewrite(
                sm.as_ref(),
                task.as_deref(),
                &original,
                a.rewrite_max_tokens,
            )?;
            tracing::info!(original = original.len(), rewrite = rw.len(), "rewritten");
            text = rw.into_bytes();
            Mode::Rewrite
        }
    };
    let use_prompt = prompt_use(prompt.as_deref(), a.send_prompt)?;
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
    write_output(a.output.as_deref(), &frame)?;
    Ok(())
}

/// `--mode qa`: only the strong model's answer bits travel.
fn qa(a: &Args, codec: &LmCodec<'_>, prompt: Option<&[u8]>, text: &[u8]) -> Result<()> {
    let p = prompt
        .context("QA mode needs --prompt or --prompt-file (the receiver must know it too)")?;
    let p = std::str::from_utf8(p).context("QA mode needs a UTF-8 prompt")?;
    tenbit::strong::check_k(a.bits, a.max_bits)?;
    let protocol = match a.qa_protocol {
        None => tenbit_lm::qa::Protocol::CURRENT,
        Some(n) => tenbit_lm::qa::Protocol::from_number(n)
            .with_context(|| format!("--qa-protocol {n}: this build knows 1, 2 and 3"))?,
    };
    let (sm, _) = a.strong.open("--mode qa")?;
    // The strong model answers the questions from a reference: the input text when given,
    // else its own solution (one call before any question).
    let reference = if text.is_empty() {
        tenbit::strong::solve(sm.as_ref(), p, a.rewrite_max_tokens)?
    } else {
        String::from_utf8_lossy(text).into_owned()
    };
    let (frame, t) = tenbit::strong::encode_qa_with(
        codec,
        sm.as_ref(),
        p,
        a.bits,
        a.max_bits,
        protocol,
        Some(&reference),
    )
    .map_err(tenbit::strong::QaEncodeError::into_anyhow)?;
    eprintln!(
        "QA: {} questions, frame {} bytes; final answer:\n{}",
        t.questions.len(),
        frame.len(),
        t.final_answer
    );
    write_output(a.output.as_deref(), &frame)?;
    Ok(())
}

/// `--mode pick`: only the index of the strong model's choice among the seeded candidates
/// travels (or the strong answer's own frame when none is good).
fn pick(a: &Args, codec: &LmCodec<'_>, prompt: Option<&[u8]>, text: &[u8]) -> Result<()> {
    let p = prompt
        .context("pick mode needs --prompt or --prompt-file (the receiver must know it too)")?;
    let p = std::str::from_utf8(p).context("pick mode needs a UTF-8 prompt")?;
    let k = u32::try_from(a.bits).unwrap_or(u32::MAX);
    tenbit_lm::pick::check_bits(k).map_err(tenbit_lm::codec::CodecError::from)?;
    let (sm, _) = a.strong.open("--mode pick")?;
    let reference = (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned());
    // Unwrap the error so the exit status sees its cause (7 for a strong-model outage).
    let r = tenbit::strong::pick::encode_pick(codec, sm.as_ref(), p, k, reference.as_deref())
        .map_err(tenbit::strong::QaEncodeError::into_anyhow)?;
    match r.index {
        Some(i) => eprintln!(
            "pick: candidate {i} of {}, frame {} bytes; answer:\n{}",
            r.outcome.candidates.len(),
            r.frame.len(),
            r.outcome.candidates[i as usize]
        ),
        None => eprintln!(
            "pick: none of the {} candidates agrees with the strong answer; sent the strong \
             answer itself ({} bytes)",
            r.outcome.candidates.len(),
            r.frame.len()
        ),
    }
    write_output(a.output.as_deref(), &r.frame)?;
    Ok(())
}
