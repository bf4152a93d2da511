//! `tenbit lora train`: LoRA domain adapters for the small model, trained on CPU.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use tenbit_cli::ModelArgs;

use super::FETCH;

/// Train LoRA domain adapters for the small model (CPU): frames of that domain's text get
/// smaller. Both ends then load the adapter with --adapter.
#[derive(Debug, Subcommand)]
pub enum Cmd {
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
    Train(TrainArgs),
}

/// Flags of `tenbit lora train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
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
}

pub fn run(cmd: Cmd, quiet: bool) -> Result<()> {
    let Cmd::Train(a) = cmd;
    let cfg = tenbit_train::TrainConfig {
        rank: a.rank,
        alpha: a.alpha,
        targets: a.targets,
        steps: a.steps,
        lr: a.lr,
        seq_len: a.seq_len,
        seed: a.seed,
        dtype: if a.f32 {
            tenbit_engine::lora::Dtype::F32
        } else {
            tenbit_engine::lora::Dtype::F16
        },
    };
    train(&a.data, &a.output, &cfg, &a.model, quiet)
}

/// `tenbit lora train`: candle-based training with a progress bar (loss, tokens/s).
fn train(
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
