//! A loaded model: hyper-parameters, weight locations in the mapped file, adapter.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::gguf::{GgmlType, Gguf, GgufError, TensorInfo};
use crate::lora::{Adapter, AdapterDims, AdapterError};
use crate::quant::QK;
use crate::{kernels, math, EngineError};

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`: `llama` or `qwen2`.
    pub arch: String,
    /// Vocabulary size (rows of the embedding and output matrices).
    pub n_vocab: usize,
    /// Training context length: the most positions a cache may hold.
    pub n_ctx_train: usize,
    /// Model width.
    pub n_embd: usize,
    /// Transformer layers.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention).
    pub n_head_kv: usize,
    /// FFN hidden width.
    pub n_ff: usize,
    /// Rotary dimensions per head.
    pub n_rot: usize,
    /// RoPE frequency base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
}

impl ModelConfig {
    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
    /// Width of the key/value projections (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_head_kv
    }
}

/// A weight matrix: location in the mapped file and its shape.
#[derive(Debug, Clone)]
pub(crate) struct Mat {
    pub(crate) off: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) ty: GgmlType,
    pub(crate) row_bytes: usize,
}

impl Mat {
    pub(crate) fn from_info(t: &TensorInfo, cols: usize, rows: usize) -> Result<Mat, EngineError> {
        if t.dims.len() != 2 || t.dims[0] as usize != cols || t.dims[1] as usize != rows {
            return Err(EngineError::Unsupported(format!(
                "tensor {} has shape {:?}, expected [{cols}, {rows}]",
                t.name, t.dims
            )));
        }
        let row_bytes = kernels::row_bytes(t.ggml_type, cols).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "tensor {} has type {:?} with rows of {cols}; this engine supports \
                 Q4_1, Q8_0, Q5_0, Q4_K and Q6_K matrices",
                t.name, t.ggml_type
            ))
        })?;
        if !cols.is_multiple_of(QK) {
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
    pub(crate) fn row<'a>(&self, file: &'a [u8], r: usize) -> &'a [u8] {
        let o = self.off + r * self.row_bytes;
        &file[o..o + self.row_bytes]
    }

    /// Rows `r0 .. r0 + n`, back to back.
    #[inline]
    pub(crate) fn rows<'a>(&self, file: &'a [u8], r0: usize, n: usize) -> &'a [u8] {
        let o = self.off + r0 * self.row_bytes;
        &file[o..o + n * self.row_bytes]
    }
}

pub(crate) struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) wq: Mat,
    pub(crate) wk: Mat,
    pub(crate) wv: Mat,
    pub(crate) wo: Mat,
    pub(crate) bq: Option<Vec<f32>>,
    pub(crate) bk: Option<Vec<f32>>,
    pub(crate) bv: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) gate: Mat,
    pub(crate) up: Mat,
    pub(crate) down: Mat,
}

/// A loaded model: config, content hash and weight locations in the mapped file.
pub struct Model {
    gguf: Gguf,
    pub(crate) cfg: ModelConfig,
    hash: [u8; 32],
    pub(crate) tok_embd: Mat,
    pub(crate) output: Mat,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) layers: Vec<Layer>,
    /// NEOX rope pairs (i, i + n_rot/2) instead of ggml's normal (2i, 2i+1).
    pub(crate) rope_neox: bool,
    /// theta_i = base^(-2i/n_rot), computed deterministically in f64.
    pub(crate) rope_freqs: Vec<f64>,
    /// LoRA adapter applied after the projections it targets (see [`crate::lora`]).
    pub(crate) adapter: Option<Adapter>,
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
    /// Map a GGUF file and check every tensor the forward pass reads (shape, type); hashes the file (its identity in frames).
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
        if n_head == 0
            || n_head_kv == 0
            || !n_embd.is_multiple_of(n_head)
            || !n_head.is_multiple_of(n_head_kv)
        {
            return Err(EngineError::Unsupported(format!(
                "head layout {n_head}/{n_head_kv} for width {n_embd}"
            )));
        }
        let head_dim = n_embd / n_head;
        let n_rot = gguf
            .get_u64(&key("rope.dimension_count"))
            .unwrap_or(head_dim as u64) as usize;
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
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

    /// Run the base model again in later sessions.
    pub fn clear_adapter(&mut self) {
        self.adapter = None;
    }

    /// The adapter applied, if any.
    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The mapped file (tokenizer and template metadata live there too).
    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// sha256 of the whole model file: what frames name the model by.
    pub fn content_hash(&self) -> [u8; 32] {
        self.hash
    }
}
