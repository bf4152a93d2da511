//! tenbit-engine: the bit-exact small-model engine.
//!
//! The one law of tenbit: encoder (x86_64) and decoder (aarch64) must compute the same logits,
//! bit for bit, whatever the SIMD level, thread count or batch shape. How this engine keeps it:
//!
//! * **Integer block dot products.** Weights stay in ggml blocks; activations are quantised to
//!   8 bits per block by one scalar routine ([`quant::quantize_row`]). Block dots are exact
//!   integers however they are computed, and the float combination per block is one fixed
//!   sequence shared by all kernels ([`kernels`]).
//! * **Fixed reduction orders.** Every sum (norms, attention scores, softmax, weighted values)
//!   runs sequentially in index order. Threads split *output rows* and *heads*, never a sum.
//! * **No FMA, no libm.** Rust never contracts `a*b+c` by itself and this code never asks.
//!   `exp`, `sin`, `cos`, `pow` come from [`math`] (only +,-,*,/ and floor, in f64); `sqrt`
//!   and division are correctly rounded by IEEE-754 and so identical everywhere.
//! * **Prefill == decode.** A batch runs the same per-(row, token) arithmetic as a single
//!   token, and token t of a batch attends to positions 0..=t exactly as an incremental step.
//!
//! Weights are borrowed from the memory-mapped GGUF: the decoder's resident memory is the
//! pages it touches plus the KV cache, which grows only as far as a message needs.

pub mod gguf;
pub mod kernels;
pub mod kquant;
pub mod lora;
pub mod math;
pub mod quant;

use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest, Sha256};
pub use tenbit_wire::TokenId;

use crate::gguf::{GgmlType, Gguf, GgufError, TensorInfo};
use crate::lora::{Adapter, AdapterDims, AdapterError, Target};
pub use kernels::KernelLevel;
use kernels::Kernels;
use kquant::KKernels;
use quant::{quantize_row, QRow, QK};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("the context is full ({capacity} positions)")]
    ContextFull { capacity: usize },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("kernel level `{0}` is not available on this CPU (available: {1})")]
    KernelUnavailable(String, String),
    #[error("cannot start worker threads: {0}")]
    Threads(String),
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_rot: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_head_kv
    }
}

/// A weight matrix: location in the mapped file and its shape.
#[derive(Debug, Clone)]
struct Mat {
    off: usize,
    rows: usize,
    cols: usize,
    ty: GgmlType,
    row_bytes: usize,
}

impl Mat {
    fn from_info(t: &TensorInfo, cols: usize, rows: usize) -> Result<Mat, EngineError> {
        if t.dims.len() != 2 || t.dims[0] as usize != cols || t.dims[1] as usize != rows {
            return Err(EngineError::Unsupported(format!(
                "tensor {} has shape {:?}, expected [{cols}, {rows}]",
                t.name, t.dims
            )));
        }
        let row_bytes = match t.ggml_type {
            GgmlType::Q4_1 => cols / QK * quant::Q4_1_BYTES,
            GgmlType::Q8_0 => cols / QK * quant::Q8_0_BYTES,
            other => kquant::row_bytes(other, cols).ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "tensor {} has type {other:?} with rows of {cols}; this engine supports \
                     Q4_1, Q8_0, Q5_0, Q4_K and Q6_K matrices",
                    t.name
                ))
            })?,
        };
        if cols % QK != 0 {
            return Err(EngineError::Unsupported(format!(
                "tensor {}: row length {cols} not a multiple of 32",
                t.name
            )));
        }
        Ok(Mat {
            off: t.offset,
            rows,
            cols,
            ty: t.ggml_type,
            row_bytes,
        })
    }

    #[inline]
    fn row<'a>(&self, file: &'a [u8], r: usize) -> &'a [u8] {
        let o = self.off + r * self.row_bytes;
        &file[o..o + self.row_bytes]
    }

    /// Rows `r0 .. r0 + n`, back to back.
    #[inline]
    fn rows<'a>(&self, file: &'a [u8], r0: usize, n: usize) -> &'a [u8] {
        let o = self.off + r0 * self.row_bytes;
        &file[o..o + n * self.row_bytes]
    }

    /// `out[j] = row (r0 + j) . a` with the multi-row kernel of this matrix's format (the
    /// K-quant and Q5_0 formats go row by row through their own kernels).
    #[inline]
    fn dot_rows(
        &self,
        k: &Kernels,
        kq: &KKernels,
        file: &[u8],
        r0: usize,
        a: &QRow,
        out: &mut [f32],
    ) {
        match self.ty {
            GgmlType::Q4_1 => k.dot_rows_q4_1(self.rows(file, r0, out.len()), a, out),
            GgmlType::Q8_0 => k.dot_rows_q8_0(self.rows(file, r0, out.len()), a, out),
            ty => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = kq.dot(ty, self.row(file, r0 + j), a);
                }
            }
        }
    }
}

/// Rows per multi-row kernel call in batched products: one group's weights stay in L1 while
/// every token of the batch runs over them.
const ROW_GROUP: usize = 8;

struct Layer {
    attn_norm: Vec<f32>,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    wo: Mat,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Mat,
    up: Mat,
    down: Mat,
}

/// A loaded model: config, content hash and weight locations in the mapped file.
pub struct Model {
    gguf: Gguf,
    cfg: ModelConfig,
    hash: [u8; 32],
    tok_embd: Mat,
    output: Mat,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// NEOX rope pairs (i, i + n_rot/2) instead of ggml's normal (2i, 2i+1).
    rope_neox: bool,
    /// theta_i = base^(-2i/n_rot), computed deterministically in f64.
    rope_freqs: Vec<f64>,
    /// LoRA adapter applied after the projections it targets (see [`crate::lora`]).
    adapter: Option<Adapter>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.cfg)
            .field("hash", &hex::encode(self.hash))
            .finish()
    }
}

fn f32_vec(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
    let t = g.tensor(name)?;
    if t.ggml_type != GgmlType::F32 || t.n_elements() as usize != len {
        return Err(EngineError::Unsupported(format!(
            "tensor {name}: expected {len} f32 values, got {:?} {:?}",
            t.ggml_type, t.dims
        )));
    }
    Ok(g.tensor_data(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn opt_f32_vec(g: &Gguf, name: &str, len: usize) -> Result<Option<Vec<f32>>, EngineError> {
    match g.tensor(name) {
        Ok(_) => Ok(Some(f32_vec(g, name, len)?)),
        Err(GgufError::MissingTensor(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Model {
    pub fn load(path: impl AsRef<Path>) -> Result<Model, EngineError> {
        let gguf = Gguf::open(path)?;
        let arch = gguf.architecture()?.to_string();
        let rope_neox = match arch.as_str() {
            "llama" => false,
            "qwen2" => true,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "architecture `{other}` (supported: llama, qwen2)"
                )))
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = gguf.get_u64(&key("embedding_length"))? as usize;
        let n_head = gguf.get_u64(&key("attention.head_count"))? as usize;
        let n_head_kv = gguf
            .get_u64(&key("attention.head_count_kv"))
            .unwrap_or(n_head as u64) as usize;
        let n_layer = gguf.get_u64(&key("block_count"))? as usize;
        let n_ff = gguf.get_u64(&key("feed_forward_length"))? as usize;
        let n_ctx_train = gguf.get_u64(&key("context_length"))? as usize;
        let rope_theta = gguf.get_f32(&key("rope.freq_base")).unwrap_or(10000.0);
        let rms_eps = gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        if n_head == 0 || n_head_kv == 0 || n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::Unsupported(format!(
                "head layout {n_head}/{n_head_kv} for width {n_embd}"
            )));
        }
        let head_dim = n_embd / n_head;
        let n_rot = gguf
            .get_u64(&key("rope.dimension_count"))
            .unwrap_or(head_dim as u64) as usize;
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::Unsupported(format!("rope dimension {n_rot}")));
        }
        let tok_t = gguf.tensor("token_embd.weight")?;
        let n_vocab = tok_t.dims.get(1).copied().unwrap_or(0) as usize;
        let tok_embd = Mat::from_info(tok_t, n_embd, n_vocab)?;
        let output = match gguf.tensor("output.weight") {
            Ok(t) => Mat::from_info(t, n_embd, n_vocab)?,
            Err(GgufError::MissingTensor(_)) => tok_embd.clone(),
            Err(e) => return Err(e.into()),
        };
        let cfg = ModelConfig {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            n_rot,
            rope_theta,
            rms_eps,
        };
        let kv = cfg.kv_dim();
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let t = |n: &str| gguf.tensor(&format!("blk.{i}.{n}.weight"));
            layers.push(Layer {
                attn_norm: f32_vec(&gguf, &format!("blk.{i}.attn_norm.weight"), n_embd)?,
                wq: Mat::from_info(t("attn_q")?, n_embd, n_embd)?,
                wk: Mat::from_info(t("attn_k")?, n_embd, kv)?,
                wv: Mat::from_info(t("attn_v")?, n_embd, kv)?,
                wo: Mat::from_info(t("attn_output")?, n_embd, n_embd)?,
                bq: opt_f32_vec(&gguf, &format!("blk.{i}.attn_q.bias"), n_embd)?,
                bk: opt_f32_vec(&gguf, &format!("blk.{i}.attn_k.bias"), kv)?,
                bv: opt_f32_vec(&gguf, &format!("blk.{i}.attn_v.bias"), kv)?,
                ffn_norm: f32_vec(&gguf, &format!("blk.{i}.ffn_norm.weight"), n_embd)?,
                gate: Mat::from_info(t("ffn_gate")?, n_embd, n_ff)?,
                up: Mat::from_info(t("ffn_up")?, n_embd, n_ff)?,
                down: Mat::from_info(t("ffn_down")?, n_ff, n_embd)?,
            });
        }
        let output_norm = f32_vec(&gguf, "output_norm.weight", n_embd)?;
        let rope_freqs = (0..n_rot / 2)
            .map(|i| math::pow_f64(rope_theta as f64, -2.0 * i as f64 / n_rot as f64))
            .collect();
        let hash: [u8; 32] = Sha256::digest(gguf.bytes()).into();
        Ok(Model {
            gguf,
            cfg,
            hash,
            tok_embd,
            output,
            output_norm,
            layers,
            rope_neox,
            rope_freqs,
            adapter: None,
        })
    }

    /// Widths an adapter for this model must have.
    pub fn adapter_dims(&self) -> AdapterDims {
        AdapterDims {
            n_layer: self.cfg.n_layer,
            n_embd: self.cfg.n_embd,
            kv_dim: self.cfg.kv_dim(),
            n_ff: self.cfg.n_ff,
        }
    }

    /// Apply a LoRA adapter in every later session (refused unless made for this model file).
    /// Frames coded with it name (model, adapter), so only a receiver holding it decodes them.
    pub fn set_adapter(&mut self, adapter: Adapter) -> Result<(), AdapterError> {
        adapter.check_base(&self.hash, &self.adapter_dims())?;
        self.adapter = Some(adapter);
        Ok(())
    }

    pub fn clear_adapter(&mut self) {
        self.adapter = None;
    }

    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// sha256 of the whole model file: what frames name the model by.
    pub fn content_hash(&self) -> [u8; 32] {
        self.hash
    }
}

/// Options of a session. `threads` and `kernel` never change results, only speed.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Worker threads; 0 = all available cores.
    pub threads: usize,
    /// Kernel level; `None` = `TENBIT_KERNEL` from the environment if set, else the fastest.
    pub kernel: Option<KernelLevel>,
    /// KV-cache capacity in positions (capped at the model's training context).
    pub max_ctx: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 0,
            kernel: None,
            max_ctx: 4096,
        }
    }
}

/// Largest batch pushed through the layers at once (bounds scratch memory in long prefills).
const UBATCH: usize = 32;

/// An inference session: KV cache, scratch buffers and a worker pool.
pub struct Session<'m> {
    model: &'m Model,
    k: Kernels,
    kq: KKernels,
    pool: Option<rayon::ThreadPool>,
    cap: usize,
    n_past: usize,
    kcache: Vec<Vec<f32>>,
    vcache: Vec<Vec<f32>>,
    /// (cos, sin) per position and rotary pair, grown with the cache.
    rope: Vec<(f32, f32)>,
    logits: Vec<f32>,
}

/// A session's KV cache detached from its model borrow (see [`Session::take_cache`]).
///
/// It remembers which `Model` value filled it (by address, valid while that model lives), so
/// it cannot be restored into a session of another model of the same shape.
pub struct KvCache {
    model: usize,
    n_past: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.n_past
    }

    pub fn is_empty(&self) -> bool {
        self.n_past == 0
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("n_past", &self.n_past)
            .finish()
    }
}

/// sha256 over the little-endian bit patterns of logits: the bit-exactness probe.
pub fn logits_hash(logits: &[f32]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in logits {
        h.update(v.to_bits().to_le_bytes());
    }
    h.finalize().into()
}

impl<'m> Session<'m> {
    pub fn new(model: &'m Model, opts: SessionOptions) -> Result<Self, EngineError> {
        let level = match opts.kernel {
            Some(l) => l,
            None => match std::env::var("TENBIT_KERNEL") {
                Ok(s) if !s.is_empty() => s
                    .parse()
                    .map_err(|e: String| EngineError::KernelUnavailable(e, avail()))?,
                _ => KernelLevel::detect(),
            },
        };
        let k = Kernels::new(level)
            .ok_or_else(|| EngineError::KernelUnavailable(level.to_string(), avail()))?;
        let kq = KKernels::new(level)
            .ok_or_else(|| EngineError::KernelUnavailable(level.to_string(), avail()))?;
        let threads = match opts.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("tenbit-engine-{i}"))
                    .build()
                    .map_err(|e| EngineError::Threads(e.to_string()))?,
            )
        } else {
            None
        };
        let cap = opts.max_ctx.min(model.cfg.n_ctx_train).max(1);
        let nl = model.cfg.n_layer;
        Ok(Session {
            model,
            k,
            kq,
            pool,
            cap,
            n_past: 0,
            kcache: vec![Vec::new(); nl],
            vcache: vec![Vec::new(); nl],
            rope: Vec::new(),
            logits: vec![0.0; model.cfg.n_vocab],
        })
    }

    pub fn kernel(&self) -> KernelLevel {
        self.k.level
    }

    pub fn len(&self) -> usize {
        self.n_past
    }

    pub fn is_empty(&self) -> bool {
        self.n_past == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Forget positions >= n (the cache keeps its allocation).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.n_past {
            return;
        }
        let kv = self.model.cfg.kv_dim();
        for l in 0..self.model.cfg.n_layer {
            self.kcache[l].truncate(n * kv);
            self.vcache[l].truncate(n * kv);
        }
        self.n_past = n;
    }

    /// Move the KV cache out, leaving this session empty.
    ///
    /// A session borrows its model, so a long-lived owner such as the strong-model server cannot
    /// keep one between requests; it keeps the cache instead and puts it into the next request's
    /// session, re-feeding only what differs from the cached prefix. Because prefill chunking
    /// never changes the engine's results, the reply is the same as from a fresh session.
    pub fn take_cache(&mut self) -> KvCache {
        let kv = KvCache {
            model: self.model as *const Model as usize,
            n_past: self.n_past,
            k: std::mem::replace(&mut self.kcache, vec![Vec::new(); self.model.cfg.n_layer]),
            v: std::mem::replace(&mut self.vcache, vec![Vec::new(); self.model.cfg.n_layer]),
        };
        self.n_past = 0;
        kv
    }

    /// Restore a cache from [`take_cache`](Self::take_cache) of a session on this same `Model`
    /// value. Refuses (and hands back) a cache of another model or one that does not fit this
    /// session's capacity. The logits of the last cached position are not kept: feed at least
    /// one token before reading them.
    pub fn put_cache(&mut self, kv: KvCache) -> Result<(), KvCache> {
        let cfg = &self.model.cfg;
        let per = kv.n_past * cfg.kv_dim();
        let fits = kv.model == self.model as *const Model as usize
            && kv.n_past <= self.cap
            && kv.k.len() == cfg.n_layer
            && kv.v.len() == cfg.n_layer
            && kv.k.iter().chain(&kv.v).all(|l| l.len() == per);
        if !fits {
            return Err(kv);
        }
        self.n_past = kv.n_past;
        self.kcache = kv.k;
        self.vcache = kv.v;
        Ok(())
    }

    /// Feed tokens as one batch; return the logits after the last one.
    pub fn feed(&mut self, tokens: &[TokenId]) -> Result<&[f32], EngineError> {
        let n = tokens.len();
        if n == 0 {
            return Ok(&self.logits);
        }
        let mut last = Vec::new();
        self.run(
            tokens,
            &mut |i, l| {
                if i + 1 == n {
                    last = l.to_vec();
                }
            },
            false,
        )?;
        self.logits = last;
        Ok(&self.logits)
    }

    /// Feed tokens as one batch, handing each position's logits to `f(i, logits)` in order.
    pub fn feed_all(
        &mut self,
        tokens: &[TokenId],
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), EngineError> {
        let n = tokens.len();
        let mut keep_last = Vec::new();
        self.run(
            tokens,
            &mut |i, l| {
                if i + 1 == n {
                    keep_last = l.to_vec();
                }
                f(i, l)
            },
            true,
        )?;
        if n > 0 {
            self.logits = keep_last;
        }
        Ok(())
    }

    fn run(
        &mut self,
        tokens: &[TokenId],
        f: &mut dyn FnMut(usize, &[f32]),
        all: bool,
    ) -> Result<(), EngineError> {
        if let Some(t) = tokens.iter().find(|t| t.index() >= self.model.cfg.n_vocab) {
            return Err(EngineError::BadToken(t.0));
        }
        if self.n_past + tokens.len() > self.cap {
            return Err(EngineError::ContextFull { capacity: self.cap });
        }
        let n = tokens.len();
        let nv = self.model.cfg.n_vocab;
        let mut done = 0;
        for chunk in tokens.chunks(UBATCH) {
            let last_chunk = done + chunk.len() == n;
            if all {
                let logits = self.forward(chunk, Need::All)?;
                for (j, l) in logits.chunks_exact(nv).enumerate() {
                    f(done + j, l);
                }
            } else if last_chunk {
                let logits = self.forward(chunk, Need::Last)?;
                f(n - 1, &logits);
            } else {
                self.forward(chunk, Need::Nothing)?;
            }
            done += chunk.len();
        }
        Ok(())
    }

    fn grow_rope(&mut self, upto: usize) {
        let pairs = self.model.cfg.n_rot / 2;
        while self.rope.len() < upto * pairs {
            let pos = (self.rope.len() / pairs) as f64;
            for &th in &self.model.rope_freqs {
                let (s, c) = math::sin_cos_f64(pos * th);
                self.rope.push((c as f32, s as f32));
            }
        }
    }

    /// Several products of the same activations in one parallel region (q/k/v, gate/up): one
    /// hand-off to the workers instead of one per matrix, which matters at one token per step.
    /// Each row is still computed whole by one task, so results equal separate `matmul`s.
    fn matmul_many(&self, jobs: &mut [(&Mat, &mut Vec<f32>)], acts: &[QRow]) {
        let Some(pool) = self.pool.as_ref().filter(|_| acts.len() == 1) else {
            for (m, out) in jobs.iter_mut() {
                self.matmul(m, acts, out);
            }
            return;
        };
        let file = self.model.gguf.bytes();
        let (k, kq) = (self.k, self.kq);
        let workers = pool.current_num_threads();
        let mut tasks: Vec<(&Mat, usize, &mut [f32])> = Vec::new();
        for (m, out) in jobs.iter_mut() {
            debug_assert!(acts[0].blocks() * QK == m.cols);
            out.clear();
            out.resize(m.rows, 0.0);
            let rpt = rows_per_task(m.rows, workers);
            for (ci, chunk) in out.chunks_mut(rpt).enumerate() {
                tasks.push((*m, ci * rpt, chunk));
            }
        }
        pool.install(|| {
            tasks
                .into_par_iter()
                .for_each(|(m, r0, chunk)| m.dot_rows(&k, &kq, file, r0, &acts[0], chunk))
        });
    }

    /// `out[t * rows + r] = W[r] . a[t]` for every token t, rows split across threads.
    fn matmul(&self, m: &Mat, acts: &[QRow], out: &mut Vec<f32>) {
        let file = self.model.gguf.bytes();
        let b = acts.len();
        debug_assert!(acts.iter().all(|a| a.blocks() * QK == m.cols));
        let rpt = rows_per_task(
            m.rows,
            self.pool.as_ref().map_or(1, |p| p.current_num_threads()),
        );
        out.clear();
        out.resize(b * m.rows, 0.0);
        let (k, kq) = (self.k, self.kq);
        if b == 1 {
            let body = |(ci, chunk): (usize, &mut [f32])| {
                m.dot_rows(&k, &kq, file, ci * rpt, &acts[0], chunk);
            };
            match &self.pool {
                Some(p) => p.install(|| out.par_chunks_mut(rpt).enumerate().for_each(body)),
                None => out.chunks_mut(rpt).enumerate().for_each(body),
            }
            return;
        }
        // Row-major by weight row so each task owns a contiguous slice; transposed afterwards.
        let mut tmp = vec![0.0f32; b * m.rows];
        let body = |(ci, chunk): (usize, &mut [f32])| {
            let mut buf = [0.0f32; ROW_GROUP];
            for (gi, o) in chunk.chunks_mut(ROW_GROUP * b).enumerate() {
                let r0 = ci * rpt + gi * ROW_GROUP;
                let n = o.len() / b;
                for (t, a) in acts.iter().enumerate() {
                    m.dot_rows(&k, &kq, file, r0, a, &mut buf[..n]);
                    for (j, v) in buf[..n].iter().enumerate() {
                        o[j * b + t] = *v;
                    }
                }
            }
        };
        match &self.pool {
            Some(p) => p.install(|| tmp.par_chunks_mut(rpt * b).enumerate().for_each(body)),
            None => tmp.chunks_mut(rpt * b).enumerate().for_each(body),
        }
        for r in 0..m.rows {
            for t in 0..b {
                out[t * m.rows + r] = tmp[r * b + t];
            }
        }
    }

    /// Normalise and quantise `b` rows; the float rows also land in `keep` when given (an
    /// adapter's input is the normalised activation before quantisation).
    fn rmsnorm_quant(
        &self,
        x: &[f32],
        w: &[f32],
        b: usize,
        acts: &mut Vec<QRow>,
        mut keep: Option<&mut Vec<f32>>,
    ) {
        let d = self.model.cfg.n_embd;
        let eps = self.model.cfg.rms_eps;
        acts.resize(b, QRow::default());
        let mut tmp = vec![0.0f32; d];
        if let Some(k) = keep.as_deref_mut() {
            k.clear();
        }
        for t in 0..b {
            rmsnorm(&x[t * d..(t + 1) * d], w, eps, &mut tmp);
            quantize_row(&tmp, &mut acts[t]);
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&tmp);
            }
        }
    }

    /// Run a batch through the network; returns logits for every position if `all`, else only
    /// for the last (as one `n_vocab` slice).
    fn forward(&mut self, toks: &[TokenId], need: Need) -> Result<Vec<f32>, EngineError> {
        let cfg = &self.model.cfg;
        let (d, kvd, hd, nh, nkv, nff) = (
            cfg.n_embd,
            cfg.kv_dim(),
            cfg.head_dim(),
            cfg.n_head,
            cfg.n_head_kv,
            cfg.n_ff,
        );
        let b = toks.len();
        let p0 = self.n_past;
        self.grow_rope(p0 + b);
        let file = self.model.gguf.bytes();
        let mut x = vec![0.0f32; b * d];
        for (t, tok) in toks.iter().enumerate() {
            kquant::dequant_row(
                self.model.tok_embd.ty,
                self.model.tok_embd.row(file, tok.index()),
                &mut x[t * d..(t + 1) * d],
            );
        }
        let mut acts: Vec<QRow> = Vec::new();
        let (mut q, mut k, mut v, mut att, mut tmp, mut g, mut u) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            vec![0.0f32; b * d],
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let pairs = cfg.n_rot / 2;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let ad = self.model.adapter.as_ref();
        // Adapter inputs: normalised rows (q/k/v, gate/up), attention output (o), ffn hidden (down).
        let mut xn = Vec::new();
        let lora = |li: usize, t: Target, x: &[f32], y: &mut [f32]| {
            if let Some(a) = ad {
                a.apply(li, t, x, y, b);
            }
        };
        for (li, layer) in self.model.layers.iter().enumerate() {
            self.rmsnorm_quant(&x, &layer.attn_norm, b, &mut acts, ad.map(|_| &mut xn));
            self.matmul_many(
                &mut [
                    (&layer.wq, &mut q),
                    (&layer.wk, &mut k),
                    (&layer.wv, &mut v),
                ],
                &acts,
            );
            lora(li, Target::Q, &xn, &mut q);
            lora(li, Target::K, &xn, &mut k);
            lora(li, Target::V, &xn, &mut v);
            for (bias, dst, w) in [
                (&layer.bq, &mut q, d),
                (&layer.bk, &mut k, kvd),
                (&layer.bv, &mut v, kvd),
            ] {
                if let Some(bias) = bias {
                    for row in dst.chunks_exact_mut(w) {
                        for (o, bb) in row.iter_mut().zip(bias) {
                            *o += *bb;
                        }
                    }
                }
            }
            for t in 0..b {
                let rope = &self.rope[(p0 + t) * pairs..(p0 + t + 1) * pairs];
                for h in 0..nh {
                    apply_rope(
                        &mut q[t * d + h * hd..t * d + (h + 1) * hd],
                        rope,
                        self.model.rope_neox,
                    );
                }
                for h in 0..nkv {
                    apply_rope(
                        &mut k[t * kvd + h * hd..t * kvd + (h + 1) * hd],
                        rope,
                        self.model.rope_neox,
                    );
                }
            }
            self.kcache[li].extend_from_slice(&k);
            self.vcache[li].extend_from_slice(&v);
            let (kc, vc) = (&self.kcache[li], &self.vcache[li]);
            // Attention: one task per (token, head); each is a fixed sequential computation.
            let task = |idx: usize, out: &mut [f32]| {
                let (t, h) = (idx / nh, idx % nh);
                let n = p0 + t + 1;
                let kh = h / group;
                let qh = &q[t * d + h * hd..t * d + (h + 1) * hd];
                let mut s = vec![0.0f32; n];
                let mut mx = f32::NEG_INFINITY;
                for (p, sp) in s.iter_mut().enumerate() {
                    let kp = &kc[p * kvd + kh * hd..p * kvd + (kh + 1) * hd];
                    let mut acc = 0.0f32;
                    for i in 0..hd {
                        acc += qh[i] * kp[i];
                    }
                    *sp = acc * scale;
                    if *sp > mx {
                        mx = *sp;
                    }
                }
                let mut sum = 0.0f32;
                for sp in s.iter_mut() {
                    *sp = math::exp_f32(*sp - mx);
                    sum += *sp;
                }
                out.iter_mut().for_each(|o| *o = 0.0);
                for (p, &w) in s.iter().enumerate() {
                    let vp = &vc[p * kvd + kh * hd..p * kvd + (kh + 1) * hd];
                    for i in 0..hd {
                        out[i] += w * vp[i];
                    }
                }
                for o in out.iter_mut() {
                    *o /= sum;
                }
            };
            match &self.pool {
                Some(pool) if b * nh > 1 && p0 + b > 64 => pool.install(|| {
                    att.par_chunks_mut(hd)
                        .enumerate()
                        .for_each(|(i, o)| task(i, o))
                }),
                _ => att.chunks_mut(hd).enumerate().for_each(|(i, o)| task(i, o)),
            }
            acts.resize(b, QRow::default());
            for t in 0..b {
                quantize_row(&att[t * d..(t + 1) * d], &mut acts[t]);
            }
            self.matmul(&layer.wo, &acts, &mut tmp);
            lora(li, Target::O, &att, &mut tmp);
            for (xi, ti) in x.iter_mut().zip(&tmp) {
                *xi += *ti;
            }
            self.rmsnorm_quant(&x, &layer.ffn_norm, b, &mut acts, ad.map(|_| &mut xn));
            self.matmul_many(&mut [(&layer.gate, &mut g), (&layer.up, &mut u)], &acts);
            lora(li, Target::Gate, &xn, &mut g);
            lora(li, Target::Up, &xn, &mut u);
            for (gi, ui) in g.iter_mut().zip(&u) {
                *gi = math::silu(*gi) * *ui;
            }
            for t in 0..b {
                quantize_row(&g[t * nff..(t + 1) * nff], &mut acts[t]);
            }
            self.matmul(&layer.down, &acts, &mut tmp);
            lora(li, Target::Down, &g, &mut tmp);
            for (xi, ti) in x.iter_mut().zip(&tmp) {
                *xi += *ti;
            }
        }
        self.n_past += b;
        let first = match need {
            Need::Nothing => return Ok(Vec::new()),
            Need::All => 0,
            Need::Last => b - 1,
        };
        let tail = &x[first * d..];
        self.rmsnorm_quant(tail, &self.model.output_norm, b - first, &mut acts, None);
        let mut logits = Vec::new();
        self.matmul(&self.model.output, &acts[..b - first], &mut logits);
        Ok(logits)
    }
}

/// Rows per parallel task: a few tasks per worker (load balance) but no more, because every
/// task costs a rayon hand-off and a decode step runs ~200 matrix products. Results never
/// depend on it: each row is computed whole by one task.
fn rows_per_task(rows: usize, workers: usize) -> usize {
    rows.div_ceil(workers.max(1) * 2).max(16)
}

/// Which logits a forward pass must produce (the output matrix is the largest single cost).
#[derive(Clone, Copy)]
enum Need {
    Nothing,
    Last,
    All,
}

fn avail() -> String {
    KernelLevel::available()
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// RMSNorm with a sequential sum of squares: `out = x * (1/sqrt(mean(x^2) + eps)) * w`.
fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * wi;
    }
}

fn apply_rope(x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
    let half = cs.len();
    for (i, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}
