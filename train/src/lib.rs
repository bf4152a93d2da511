//! LoRA training for tenbit's small model, on CPU, with candle's autograd.
//!
//! Lives in its own crate so the board binary never links candle: `tenbit-edge` only needs
//! [`tenbit_engine::lora`] to *apply* an adapter, and applying it is the engine's job.
//!
//! Train/serve consistency: the forward pass here uses the very weights the engine uses, the
//! GGUF's Q4_1/Q8_0 blocks dequantised exactly to f32 (every block value is `d*q + m` in f32),
//! the same RMSNorm, rotary pairs (ggml's adjacent pairs for llama), grouped-query attention,
//! SwiGLU and tied output, and the LoRA term at the engine's hook points with its scale
//! `alpha / rank`. What differs is float rounding only (the engine quantises activations to
//! 8 bits per block for its integer dots); the tests bound the resulting difference in loss.
//! Sequences are laid out exactly as `lm_codec` codes them (chat template, end-of-turn token),
//! so the adapter learns the distribution the range coder will actually be driven by.

#![deny(missing_docs)]

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use tenbit_engine::gguf::GgmlType;
use tenbit_engine::lora::{Adapter, AdapterError, Dtype, LoraPair, Target};
use tenbit_engine::quant::{dequant_q4_1_row, dequant_q8_0_row};
use tenbit_engine::{Model, TokenId};
use tenbit_lm::chat::ChatTemplate;
use tenbit_lm::tokenizer::Tokenizer;
use tenbit_wire::rng::XorShift64Star;

/// Why training stopped; each variant names the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The autograd library failed (shape error, allocation).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The adapter could not be built or written.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The model's tokenizer could not be read.
    #[error(transparent)]
    Tokenizer(#[from] tenbit_lm::tokenizer::TokenizerError),
    /// The model's chat template could not be read.
    #[error(transparent)]
    Chat(#[from] tenbit_lm::chat::ChatError),
    /// The GGUF file is malformed or lacks a tensor training needs.
    #[error(transparent)]
    Gguf(#[from] tenbit_engine::gguf::GgufError),
    /// A training file could not be read.
    #[error("cannot read training data {path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The data directory holds nothing to train on.
    #[error("no training text found in {0} (plain text files, or NAME.prompt.txt + NAME.response.txt pairs)")]
    NoData(String),
    /// The model's architecture or tensor types are not supported by the trainer.
    #[error("unsupported model for training: {0}")]
    Unsupported(String),
    /// The loss became NaN or infinite at this step.
    #[error("training diverged at step {0} (loss is not finite); lower --lr")]
    Diverged(usize),
}

/// Training hyper-parameters.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// LoRA rank r: the adapter adds r x (in + out) weights per projection.
    pub rank: usize,
    /// LoRA alpha; the update is scaled by alpha / rank, as the engine applies it.
    pub alpha: f32,
    /// Projections that get an adapter pair.
    pub targets: Vec<Target>,
    /// Optimiser steps (one sequence per step).
    pub steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Tokens per training sequence (context included).
    pub seq_len: usize,
    /// Seed of the deterministic RNG (initialisation and sequence sampling).
    pub seed: u64,
    /// How the adapter file stores weights.
    pub dtype: Dtype,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            rank: 8,
            alpha: 16.0,
            targets: vec![Target::Q, Target::V],
            steps: 200,
            lr: 1e-3,
            seq_len: 256,
            seed: 1,
            dtype: Dtype::F16,
        }
    }
}

/// One training document, as token ids laid out the way `lm_codec` codes it.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Context the coder feeds but does not code (chat prefixes, the known prompt).
    pub context: Vec<TokenId>,
    /// Tokens the coder codes: the text, then the end-of-turn token.
    pub body: Vec<TokenId>,
}

/// Build the documents of a directory: `NAME.prompt.txt` + `NAME.response.txt` become a
/// prompt-known exchange, every other regular file is a response without prompt.
pub fn load_docs(dir: &Path, tok: &Tokenizer, chat: &ChatTemplate) -> Result<Vec<Doc>, TrainError> {
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |source| TrainError::Io { path: p, source }
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".prompt.txt") {
            continue;
        }
        let text = std::fs::read(p).map_err(io(p))?;
        let prompt_path = name
            .strip_suffix(".response.txt")
            .map(|stem| dir.join(format!("{stem}.prompt.txt")))
            .filter(|pp| pp.exists());
        let prompt = match prompt_path {
            Some(pp) => Some(std::fs::read(&pp).map_err(io(&pp))?),
            None => None,
        };
        docs.push(doc_for(tok, chat, prompt.as_deref(), &text));
    }
    if docs.iter().all(|d| d.body.len() < 2) {
        return Err(TrainError::NoData(dir.display().to_string()));
    }
    Ok(docs)
}

/// The token layout `lm_codec` uses for (prompt known, text) or (no prompt, text).
pub fn doc_for(tok: &Tokenizer, chat: &ChatTemplate, prompt: Option<&[u8]>, text: &[u8]) -> Doc {
    let eot = chat.end_of_turn(tok);
    let real = |v: Vec<TokenId>| -> Vec<TokenId> {
        // Bytes without a token are coded as the escape token (plus raw bits): model that.
        v.into_iter()
            .map(|t| {
                if tok.virtual_byte(t).is_some() {
                    tok.escape()
                } else {
                    t
                }
            })
            .collect()
    };
    let context = match prompt {
        Some(p) => {
            let mut c = chat.user_prefix(tok, None);
            c.extend(real(tok.encode(p)));
            c.push(eot);
            c.extend(chat.assistant_prefix(tok));
            c
        }
        None => chat.bare_assistant_prefix(tok, None),
    };
    let mut body = real(tok.encode(text));
    body.push(eot);
    Doc { context, body }
}

/// A training sequence: tokens, and from which position on the loss counts.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Chat-templated tokens, context first, exactly as the codec sees them.
    pub tokens: Vec<TokenId>,
    /// Index of the first token whose *prediction* is scored (>= 1).
    pub first_scored: usize,
}

/// Deterministic xorshift64* (the project's one copy, in `tenbit_wire::rng`): training is
/// reproducible from the seed.
#[derive(Debug, Clone)]
pub struct Rng(XorShift64Star);

impl Rng {
    /// A generator whose whole stream follows from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(XorShift64Star::new(seed))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Sample a sequence: a document (weighted by length), then a window of its body. A window
/// at the body's start keeps the document's context, as the coder sees it; later windows
/// start with the bare context plus the window (the coder's sliding window is 2048, much longer,
/// so mid-document windows are a training approximation of long-range context).
pub fn sample_sequence(docs: &[Doc], seq_len: usize, rng: &mut Rng) -> Sequence {
    let total: usize = docs.iter().map(|d| d.body.len()).sum();
    let mut pick = rng.below(total);
    let mut di = 0;
    while pick >= docs[di].body.len() {
        pick -= docs[di].body.len();
        di += 1;
    }
    let d = &docs[di];
    let room = seq_len.saturating_sub(d.context.len()).max(2);
    let start = if d.body.len() <= room || rng.below(4) == 0 {
        0
    } else {
        rng.below(d.body.len() - room + 1)
    };
    let mut tokens = d.context.clone();
    let first_scored = tokens.len();
    tokens.extend_from_slice(&d.body[start..(start + room).min(d.body.len())]);
    Sequence {
        tokens,
        first_scored,
    }
}

struct LayerW {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// Transposed weights (in × out), contiguous: `x.matmul(w)` is `x Wᵀ`.
    w: [Tensor; 7],
}

/// The frozen base model as f32 candle tensors (the engine's quantised weights, dequantised).
pub struct BaseModel {
    n_embd: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    n_rot: usize,
    rms_eps: f64,
    rope_theta: f64,
    tok_embd: Tensor,
    output_t: Tensor,
    output_norm: Tensor,
    layers: Vec<LayerW>,
    dev: Device,
}

fn dequant(model: &Model, name: &str, cols: usize) -> Result<Vec<f32>, TrainError> {
    let g = model.gguf();
    let t = g.tensor(name)?;
    let data = g.tensor_data(t);
    let n = t.n_elements() as usize;
    let mut out = vec![0.0f32; n];
    match t.ggml_type {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::Q8_0 => {
            let rb = cols / 32 * 34;
            for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                dequant_q8_0_row(&data[r * rb..(r + 1) * rb], o);
            }
        }
        GgmlType::Q4_1 => {
            let rb = cols / 32 * 20;
            for (r, o) in out.chunks_exact_mut(cols).enumerate() {
                dequant_q4_1_row(&data[r * rb..(r + 1) * rb], o);
            }
        }
        other => {
            return Err(TrainError::Unsupported(format!(
                "tensor {name} has type {other:?}"
            )))
        }
    }
    Ok(out)
}

impl BaseModel {
    /// Dequantise the engine's frozen weights into f32 tensors (exactly, block by block).
    pub fn from_engine(model: &Model) -> Result<BaseModel, TrainError> {
        let cfg = model.config();
        if cfg.arch != "llama" {
            return Err(TrainError::Unsupported(format!(
                "architecture {} (training supports llama)",
                cfg.arch
            )));
        }
        let dev = Device::Cpu;
        let (d, kv, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
        let vec1 = |name: &str, n: usize| -> Result<Tensor, TrainError> {
            Ok(Tensor::from_vec(dequant(model, name, n)?, n, &dev)?)
        };
        let mat_t = |name: &str, cols: usize, rows: usize| -> Result<Tensor, TrainError> {
            let w = Tensor::from_vec(dequant(model, name, cols)?, (rows, cols), &dev)?;
            Ok(w.t()?.contiguous()?)
        };
        let mut layers = Vec::new();
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            if model.gguf().tensor(&format!("blk.{i}.attn_q.bias")).is_ok() {
                return Err(TrainError::Unsupported("attention biases".into()));
            }
            layers.push(LayerW {
                attn_norm: vec1(&n("attn_norm"), d)?,
                ffn_norm: vec1(&n("ffn_norm"), d)?,
                w: [
                    mat_t(&n("attn_q"), d, d)?,
                    mat_t(&n("attn_k"), d, kv)?,
                    mat_t(&n("attn_v"), d, kv)?,
                    mat_t(&n("attn_output"), d, d)?,
                    mat_t(&n("ffn_gate"), d, ff)?,
                    mat_t(&n("ffn_up"), d, ff)?,
                    mat_t(&n("ffn_down"), ff, d)?,
                ],
            });
        }
        let tok_embd = Tensor::from_vec(
            dequant(model, "token_embd.weight", d)?,
            (cfg.n_vocab, d),
            &dev,
        )?;
        let output_t = if model.gguf().tensor("output.weight").is_ok() {
            mat_t("output.weight", d, cfg.n_vocab)?
        } else {
            tok_embd.t()?.contiguous()?
        };
        Ok(BaseModel {
            n_embd: d,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim: cfg.head_dim(),
            n_rot: cfg.n_rot,
            rms_eps: cfg.rms_eps as f64,
            rope_theta: cfg.rope_theta as f64,
            tok_embd,
            output_t,
            output_norm: vec1("output_norm.weight", d)?,
            layers,
            dev,
        })
    }

    fn rmsnorm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.rms_eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(w)
    }

    /// Adjacent-pair rotary embedding on (T, H, hd), as the engine does for llama.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (t, h, hd) = x.dims3()?;
        let pairs = self.n_rot / 2;
        let rot = x.narrow(2, 0, self.n_rot)?.reshape((t, h, pairs, 2))?;
        let x0 = rot.narrow(3, 0, 1)?;
        let x1 = rot.narrow(3, 1, 1)?;
        let c = cos.reshape((t, 1, pairs, 1))?;
        let s = sin.reshape((t, 1, pairs, 1))?;
        let r0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&s)?)?;
        let r1 = (x0.broadcast_mul(&s)? + x1.broadcast_mul(&c)?)?;
        let rot = Tensor::cat(&[r0, r1], 3)?.reshape((t, h, self.n_rot))?;
        if self.n_rot == hd {
            Ok(rot)
        } else {
            Tensor::cat(&[rot, x.narrow(2, self.n_rot, hd - self.n_rot)?], 2)
        }
    }

    /// Logits (T × vocab) of a sequence, with the LoRA pairs applied where present.
    pub fn forward(&self, tokens: &[TokenId], lora: &Lora) -> candle_core::Result<Tensor> {
        let t = tokens.len();
        let ids: Vec<u32> = tokens.iter().map(|t| t.0).collect();
        let ids = Tensor::from_vec(ids, t, &self.dev)?;
        let mut x = self.tok_embd.index_select(&ids, 0)?;
        let pairs = self.n_rot / 2;
        let mut cs = Vec::with_capacity(t * pairs);
        let mut sn = Vec::with_capacity(t * pairs);
        for p in 0..t {
            for i in 0..pairs {
                let th = self.rope_theta.powf(-2.0 * i as f64 / self.n_rot as f64);
                let a = p as f64 * th;
                cs.push(a.cos() as f32);
                sn.push(a.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cs, (t, pairs), &self.dev)?;
        let sin = Tensor::from_vec(sn, (t, pairs), &self.dev)?;
        let mut mask = vec![0.0f32; t * t];
        for i in 0..t {
            for j in i + 1..t {
                mask[i * t + j] = -1e9;
            }
        }
        let mask = Tensor::from_vec(mask, (1, t, t), &self.dev)?;
        let (nh, nkv, hd) = (self.n_head, self.n_head_kv, self.head_dim);
        let group = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, l) in self.layers.iter().enumerate() {
            let proj = |x: &Tensor, ti: usize| -> candle_core::Result<Tensor> {
                let y = x.matmul(&l.w[ti])?;
                match lora.pair(li, ti) {
                    Some((a, b)) => y + x.matmul(a)?.affine(lora.scale, 0.0)?.matmul(b)?,
                    None => Ok(y),
                }
            };
            let xn = self.rmsnorm(&x, &l.attn_norm)?;
            let q = proj(&xn, 0)?.reshape((t, nh, hd))?;
            let k = proj(&xn, 1)?.reshape((t, nkv, hd))?;
            let v = proj(&xn, 2)?.reshape((t, nkv, hd))?;
            let q = self.rope(&q, &cos, &sin)?.transpose(0, 1)?.contiguous()?; // (nh, T, hd)
            let k = self.rope(&k, &cos, &sin)?;
            let expand = |z: &Tensor| -> candle_core::Result<Tensor> {
                z.reshape((t, nkv, 1, hd))?
                    .broadcast_as((t, nkv, group, hd))?
                    .contiguous()?
                    .reshape((t, nh, hd))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let k = expand(&k)?;
            let v = expand(&v)?;
            let s = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let p = candle_nn::ops::softmax(&s, D::Minus1)?;
            let att = p
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, self.n_embd))?;
            x = (x + proj(&att, 3)?)?;
            let xn = self.rmsnorm(&x, &l.ffn_norm)?;
            let g = proj(&xn, 4)?.silu()?;
            let u = proj(&xn, 5)?;
            x = (x + proj(&(g * u)?, 6)?)?;
        }
        let xn = self.rmsnorm(&x, &self.output_norm)?;
        xn.matmul(&self.output_t)
    }

    /// Mean next-token cross-entropy (nats) over the scored positions of a sequence.
    pub fn loss(&self, seq: &Sequence, lora: &Lora) -> candle_core::Result<Tensor> {
        let n = seq.tokens.len();
        let logits = self.forward(&seq.tokens[..n - 1], lora)?;
        let from = seq.first_scored - 1;
        let logits = logits.narrow(0, from, n - 1 - from)?;
        let targets: Vec<u32> = seq.tokens[from + 1..].iter().map(|t| t.0).collect();
        let targets = Tensor::from_vec(targets, n - 1 - from, &self.dev)?;
        candle_nn::loss::cross_entropy(&logits, &targets)
    }
}

/// Trainable LoRA pairs: per layer, per projection (engine order q k v o gate up down),
/// `a` is stored transposed (in × rank) and `b` transposed (rank × out) for row-vector math.
pub struct Lora {
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale alpha / rank).
    pub alpha: f32,
    scale: f64,
    targets: Vec<Target>,
    pairs: Vec<[Option<(Var, Var)>; 7]>,
}

impl Lora {
    /// Standard LoRA start: A uniform in ±1/sqrt(in), B zero (so training starts at the base).
    pub fn new(model: &Model, cfg: &TrainConfig, rng: &mut Rng) -> Result<Lora, TrainError> {
        let dims = model.adapter_dims();
        let dev = Device::Cpu;
        let mut pairs = Vec::new();
        for _ in 0..dims.n_layer {
            let mut l: [Option<(Var, Var)>; 7] = Default::default();
            for (ti, t) in Target::ALL.iter().enumerate() {
                if !cfg.targets.contains(t) {
                    continue;
                }
                let (i, o) = t.dims(&dims);
                let bound = 1.0 / (i as f32).sqrt();
                let a: Vec<f32> = (0..i * cfg.rank).map(|_| rng.unit() * bound).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (i, cfg.rank), &dev)?)?;
                let b = Var::zeros((cfg.rank, o), DType::F32, &dev)?;
                l[ti] = Some((a, b));
            }
            pairs.push(l);
        }
        let mut targets = cfg.targets.clone();
        targets.sort_by_key(|t| t.bit());
        targets.dedup();
        Ok(Lora {
            rank: cfg.rank,
            alpha: cfg.alpha,
            scale: (cfg.alpha / cfg.rank as f32) as f64,
            targets,
            pairs,
        })
    }

    /// No adapter at all (the base model's loss).
    pub fn none() -> Lora {
        Lora {
            rank: 1,
            alpha: 1.0,
            scale: 1.0,
            targets: Vec::new(),
            pairs: Vec::new(),
        }
    }

    fn pair(&self, layer: usize, ti: usize) -> Option<(&Tensor, &Tensor)> {
        self.pairs
            .get(layer)?
            .get(ti)?
            .as_ref()
            .map(|(a, b)| (a.as_tensor(), b.as_tensor()))
    }

    /// Every trainable tensor, for the optimiser.
    pub fn vars(&self) -> Vec<Var> {
        self.pairs
            .iter()
            .flatten()
            .flatten()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect()
    }

    /// The engine-side adapter (A as rank × in, B as out × rank, rounded to `dtype`).
    pub fn to_adapter(&self, model: &Model, dtype: Dtype) -> Result<Adapter, TrainError> {
        let dims = model.adapter_dims();
        let mut layers = Vec::new();
        for l in &self.pairs {
            let mut v = Vec::new();
            for (a, b) in l.iter().flatten() {
                let a = a
                    .as_tensor()
                    .t()?
                    .contiguous()?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let b = b
                    .as_tensor()
                    .t()?
                    .contiguous()?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                v.push(LoraPair { a, b });
            }
            layers.push(v);
        }
        Ok(Adapter::new(
            model.content_hash(),
            self.rank,
            self.alpha,
            dtype,
            self.targets.clone(),
            dims,
            layers,
        )?)
    }
}

/// What the progress callback sees after each step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Steps done so far (1-based).
    pub step: usize,
    /// Steps in the whole run.
    pub steps: usize,
    /// Mean cross-entropy of this step's scored tokens, in nats.
    pub loss: f32,
    /// Tokens processed so far, for tokens/s.
    pub tokens: usize,
}

/// Train an adapter on `docs`; `progress` is called after every step.
pub fn train(
    model: &Model,
    docs: &[Doc],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(StepReport),
) -> Result<Adapter, TrainError> {
    let base = BaseModel::from_engine(model)?;
    let mut rng = Rng::new(cfg.seed);
    let lora = Lora::new(model, cfg, &mut rng)?;
    let mut opt = AdamW::new(
        lora.vars(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let warmup = (cfg.steps / 10).max(1);
    for step in 0..cfg.steps {
        // Linear warm-up, then cosine decay to 10% of the peak rate.
        let lr = if step < warmup {
            cfg.lr * (step + 1) as f64 / warmup as f64
        } else {
            let p = (step - warmup) as f64 / (cfg.steps - warmup).max(1) as f64;
            cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
        };
        opt.set_learning_rate(lr);
        let seq = sample_sequence(docs, cfg.seq_len, &mut rng);
        let loss = base.loss(&seq, &lora)?;
        let lv = loss.to_scalar::<f32>()?;
        if !lv.is_finite() {
            return Err(TrainError::Diverged(step));
        }
        opt.backward_step(&loss)?;
        progress(StepReport {
            step: step + 1,
            steps: cfg.steps,
            loss: lv,
            tokens: seq.tokens.len(),
        });
    }
    lora.to_adapter(model, cfg.dtype)
}
