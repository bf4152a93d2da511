//! LoRA adapters: the file format, and their bit-exact application inside the engine.
//!
//! A domain adapter makes the small model predict a domain's text better, so frames get
//! smaller; but both ends must apply it to the same bits, or the range decoder derails. So the
//! adapter term `y += B (s * (A x))` is computed by [`Adapter::apply`] alone: plain scalar f32
//! loops in index order, no FMA (Rust never contracts `a*b+c`), the same for every token of a
//! batch, on one thread. At rank 8 this costs ~1% of a forward pass, so no SIMD is worth the risk.
//!
//! The adapter's identity is the sha256 of its file; frames name `(model, adapter)` through
//! `tenbit_lm::codec::identity_of`, so a frame coded with an adapter never decodes without it.
//!
//! ## File format, version 1 (all integers and floats little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TBLORA\0\x01` |
//! | 2 | format version (1) |
//! | 1 | weight dtype: 0 = f32, 1 = f16 (IEEE half) |
//! | 1 | target bit mask, bit i = [`Target::ALL`]`[i]` (q k v o gate up down) |
//! | 32 | sha256 of the base model's GGUF file |
//! | 2 | rank r |
//! | 2 | number of layers |
//! | 4 | alpha (f32); the scale is `alpha / r` |
//! | 4 × 3 | model width, key/value width, feed-forward width (u32) |
//! | ... | per layer, per target in mask order: A (r × in, row-major), then B (out × r) |
//!
//! Nothing follows the weights; a file of any other length is refused.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::quant::f16_to_f32;

/// First bytes of every adapter file.
pub const MAGIC: [u8; 8] = *b"TBLORA\0\x01";
/// The adapter format version this build writes (and the newest it reads).
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 1 + 1 + 32 + 2 + 2 + 4 + 12;

#[derive(Debug, thiserror::Error)]
/// Errors of loading or applying an adapter: each says what to do about it.
pub enum AdapterError {
    #[error("cannot read adapter {path}: {source}")]
    /// The file could not be read or written.
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    #[error("not a tenbit LoRA adapter (bad magic)")]
    /// Not an adapter file.
    BadMagic,
    #[error("adapter format version {0} is newer than this build supports ({VERSION}); upgrade")]
    /// Made by a newer tenbit.
    NewerVersion(u16),
    #[error("adapter is corrupt: {0}")]
    /// Lengths or values that cannot be right.
    Corrupt(String),
    #[error("adapter was trained for base model sha256 {expected}, but the loaded model is {found}; load the matching model")]
    /// Made for another base model file (sha256 hex of both).
    WrongBase {
        /// sha256 (hex) of the model the adapter was made for.
        expected: String,
        /// sha256 (hex) of the loaded model.
        found: String,
    },
    #[error("adapter shape ({0}) does not match the loaded model")]
    /// Widths or layer count differ from the base model's.
    Shape(String),
}

/// The projections an adapter can modify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// FFN gate projection.
    Gate,
    /// FFN up projection.
    Up,
    /// FFN down projection.
    Down,
}

impl Target {
    /// Mask-bit order, also the order of weights in the file.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The name used on command lines and in `tenbit lora info`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// `q,v,o`-style list, the spelling `--targets` takes and `adapter info` prints.
    pub fn list(targets: &[Target]) -> String {
        targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// This target's bit in the file's target mask.
    pub fn bit(self) -> u8 {
        1 << Target::ALL.iter().position(|t| *t == self).unwrap()
    }

    /// (input width, output width) of the projection for a model of these dimensions.
    pub fn dims(self, d: &AdapterDims) -> (usize, usize) {
        match self {
            Target::Q | Target::O => (d.n_embd, d.n_embd),
            Target::K | Target::V => (d.n_embd, d.kv_dim),
            Target::Gate | Target::Up => (d.n_embd, d.n_ff),
            Target::Down => (d.n_ff, d.n_embd),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown LoRA target `{s}` (q, k, v, o, gate, up, down)"))
    }
}

/// The base model's widths an adapter was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterDims {
    /// Transformer layers.
    pub n_layer: usize,
    /// Model width.
    pub n_embd: usize,
    /// Width of the key/value projections.
    pub kv_dim: usize,
    /// FFN hidden width.
    pub n_ff: usize,
}

/// How weights are stored in the file. f16 halves the size (what goes over a link); loading
/// widens to f32 exactly, so the engine computes the same with either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit floats.
    F32,
    /// IEEE halves (half the size).
    F16,
}

/// One projection's low-rank pair: `a` is rank × in, `b` is out × rank, both row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// The down-projection, rank x in, row-major.
    pub a: Vec<f32>,
    /// The up-projection, out x rank, row-major.
    pub b: Vec<f32>,
}

/// A loaded adapter (weights widened to f32) with its content hash.
#[derive(Debug, Clone)]
pub struct Adapter {
    hash: [u8; 32],
    /// sha256 of the base model file it was made for.
    pub base_model: [u8; 32],
    /// Rank of every pair.
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    pub alpha: f32,
    /// How the weights are stored in the file.
    pub dtype: Dtype,
    /// The adapted projections, in mask-bit order.
    pub targets: Vec<Target>,
    /// The base model's widths.
    pub dims: AdapterDims,
    /// `layers[l][i]` is the pair for `targets[i]` in layer l.
    pub layers: Vec<Vec<LoraPair>>,
    file_len: usize,
}

impl Adapter {
    /// Build an adapter from weights (training, tests). Weights are rounded to `dtype` first, so
    /// the result computes exactly what the same adapter loaded from its file computes.
    pub fn new(
        base_model: [u8; 32],
        rank: usize,
        alpha: f32,
        dtype: Dtype,
        targets: Vec<Target>,
        dims: AdapterDims,
        layers: Vec<Vec<LoraPair>>,
    ) -> Result<Adapter, AdapterError> {
        let mut targets = targets;
        targets.sort_by_key(|t| t.bit());
        targets.dedup();
        let bytes = encode(base_model, rank, alpha, dtype, &targets, &dims, &layers)?;
        Adapter::from_bytes(&bytes)
    }

    /// Read and check an adapter file.
    pub fn load(path: impl AsRef<Path>) -> Result<Adapter, AdapterError> {
        let p = path.as_ref();
        let bytes = std::fs::read(p).map_err(|source| AdapterError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Adapter::from_bytes(&bytes)
    }

    /// Parse and check an adapter from its file bytes (every length checked before use).
    pub fn from_bytes(buf: &[u8]) -> Result<Adapter, AdapterError> {
        if buf.len() < 8 || buf[..8] != MAGIC {
            return Err(AdapterError::BadMagic);
        }
        if buf.len() < HEADER_LEN {
            return Err(AdapterError::Corrupt(format!(
                "{} bytes, shorter than the header",
                buf.len()
            )));
        }
        let u16_at = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let version = u16_at(8);
        if version > VERSION {
            return Err(AdapterError::NewerVersion(version));
        }
        if version == 0 {
            return Err(AdapterError::Corrupt("version 0".into()));
        }
        let dtype = match buf[10] {
            0 => Dtype::F32,
            1 => Dtype::F16,
            d => return Err(AdapterError::Corrupt(format!("unknown dtype {d}"))),
        };
        let mask = buf[11];
        if mask == 0 || mask & 0x80 != 0 {
            return Err(AdapterError::Corrupt(format!("target mask {mask:#x}")));
        }
        let targets: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| mask & t.bit() != 0)
            .collect();
        let mut base_model = [0u8; 32];
        base_model.copy_from_slice(&buf[12..44]);
        let rank = u16_at(44) as usize;
        let n_layer = u16_at(46) as usize;
        let alpha = f32::from_bits(u32_at(48));
        let dims = AdapterDims {
            n_layer,
            n_embd: u32_at(52) as usize,
            kv_dim: u32_at(56) as usize,
            n_ff: u32_at(60) as usize,
        };
        if rank == 0 || n_layer == 0 || !alpha.is_finite() {
            return Err(AdapterError::Corrupt(format!(
                "rank {rank}, {n_layer} layers, alpha {alpha}"
            )));
        }
        let esize = match dtype {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        };
        let per_layer: usize = targets
            .iter()
            .map(|t| {
                let (i, o) = t.dims(&dims);
                rank * (i + o)
            })
            .sum();
        let expected = (per_layer as u64) * (n_layer as u64) * esize as u64 + HEADER_LEN as u64;
        if buf.len() as u64 != expected {
            return Err(AdapterError::Corrupt(format!(
                "{} bytes, the header implies {expected}",
                buf.len()
            )));
        }
        let mut off = HEADER_LEN;
        let mut read = |n: usize| -> Vec<f32> {
            let v = buf[off..off + n * esize]
                .chunks_exact(esize)
                .map(|c| match dtype {
                    Dtype::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    Dtype::F16 => f16_to_f32(u16::from_le_bytes([c[0], c[1]])),
                })
                .collect();
            off += n * esize;
            v
        };
        let mut layers = Vec::with_capacity(n_layer);
        for _ in 0..n_layer {
            let mut l = Vec::with_capacity(targets.len());
            for t in &targets {
                let (i, o) = t.dims(&dims);
                let a = read(rank * i);
                let b = read(o * rank);
                l.push(LoraPair { a, b });
            }
            layers.push(l);
        }
        if layers
            .iter()
            .flatten()
            .any(|p| p.a.iter().chain(&p.b).any(|v| !v.is_finite()))
        {
            return Err(AdapterError::Corrupt("non-finite weight".into()));
        }
        Ok(Adapter {
            hash: Sha256::digest(buf).into(),
            base_model,
            rank,
            alpha,
            dtype,
            targets,
            dims,
            layers,
            file_len: buf.len(),
        })
    }

    /// The file's bytes (re-encoded; identical to the file it was loaded from).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(
            self.base_model,
            self.rank,
            self.alpha,
            self.dtype,
            &self.targets,
            &self.dims,
            &self.layers,
        )
        .expect("a loaded adapter re-encodes")
    }

    /// Write the adapter's file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), AdapterError> {
        let p = path.as_ref();
        std::fs::write(p, self.to_bytes()).map_err(|source| AdapterError::Io {
            path: p.display().to_string(),
            source,
        })
    }

    /// sha256 of the file: the adapter's identity in frames.
    pub fn content_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Size of the adapter's file in bytes (what shipping it to the board costs).
    pub fn file_len(&self) -> usize {
        self.file_len
    }

    /// `alpha / rank`, one correctly rounded f32 division.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Refuse a model this adapter was not made for.
    pub fn check_base(
        &self,
        model_hash: &[u8; 32],
        dims: &AdapterDims,
    ) -> Result<(), AdapterError> {
        if &self.base_model != model_hash {
            return Err(AdapterError::WrongBase {
                expected: hex::encode(self.base_model),
                found: hex::encode(model_hash),
            });
        }
        if &self.dims != dims {
            return Err(AdapterError::Shape(format!(
                "adapter {:?}, model {:?}",
                self.dims, dims
            )));
        }
        Ok(())
    }

    fn pair(&self, layer: usize, target: Target) -> Option<&LoraPair> {
        let i = self.targets.iter().position(|t| *t == target)?;
        Some(&self.layers[layer][i])
    }

    /// Whether `target` is adapted (so the engine keeps its input).
    pub fn has(&self, target: Target) -> bool {
        self.targets.contains(&target)
    }

    /// `y[t] += B (scale * (A x[t]))` for each of the `b` tokens, `x` being b × in and `y`
    /// b × out. The one fixed float sequence of adapters: every sum runs in index order on one
    /// thread, identically for every token of a batch, so prefill equals decode everywhere.
    pub fn apply(&self, layer: usize, target: Target, x: &[f32], y: &mut [f32], b: usize) {
        let Some(p) = self.pair(layer, target) else {
            return;
        };
        let (n_in, n_out) = target.dims(&self.dims);
        let r = self.rank;
        let scale = self.scale();
        debug_assert!(x.len() >= b * n_in && y.len() >= b * n_out);
        let mut h = vec![0.0f32; r];
        for t in 0..b {
            let xt = &x[t * n_in..(t + 1) * n_in];
            for (k, hk) in h.iter_mut().enumerate() {
                let ak = &p.a[k * n_in..(k + 1) * n_in];
                let mut acc = 0.0f32;
                for i in 0..n_in {
                    acc += ak[i] * xt[i];
                }
                *hk = acc * scale;
            }
            let yt = &mut y[t * n_out..(t + 1) * n_out];
            for (o, yo) in yt.iter_mut().enumerate() {
                let bo = &p.b[o * r..(o + 1) * r];
                let mut acc = 0.0f32;
                for k in 0..r {
                    acc += bo[k] * h[k];
                }
                *yo += acc;
            }
        }
    }
}

fn encode(
    base_model: [u8; 32],
    rank: usize,
    alpha: f32,
    dtype: Dtype,
    targets: &[Target],
    dims: &AdapterDims,
    layers: &[Vec<LoraPair>],
) -> Result<Vec<u8>, AdapterError> {
    let bad = |m: String| Err(AdapterError::Shape(m));
    if rank == 0 || rank > u16::MAX as usize || dims.n_layer > u16::MAX as usize {
        return bad(format!("rank {rank}, {} layers", dims.n_layer));
    }
    if layers.len() != dims.n_layer || targets.is_empty() {
        return bad(format!(
            "{} layers given for {}",
            layers.len(),
            dims.n_layer
        ));
    }
    let mask = targets.iter().fold(0u8, |m, t| m | t.bit());
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
    });
    out.push(mask);
    out.extend_from_slice(&base_model);
    out.extend_from_slice(&(rank as u16).to_le_bytes());
    out.extend_from_slice(&(dims.n_layer as u16).to_le_bytes());
    out.extend_from_slice(&alpha.to_bits().to_le_bytes());
    for w in [dims.n_embd, dims.kv_dim, dims.n_ff] {
        out.extend_from_slice(&(w as u32).to_le_bytes());
    }
    debug_assert_eq!(out.len(), HEADER_LEN);
    for (li, l) in layers.iter().enumerate() {
        if l.len() != targets.len() {
            return bad(format!(
                "layer {li}: {} pairs for {} targets",
                l.len(),
                targets.len()
            ));
        }
        for (t, p) in targets.iter().zip(l) {
            let (i, o) = t.dims(dims);
            if p.a.len() != rank * i || p.b.len() != o * rank {
                return bad(format!(
                    "layer {li} {}: A {} B {}",
                    t.name(),
                    p.a.len(),
                    p.b.len()
                ));
            }
            for &v in p.a.iter().chain(&p.b) {
                match dtype {
                    Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
                    Dtype::F16 => out.extend_from_slice(&f32_to_f16(v).to_le_bytes()),
                }
            }
        }
    }
    Ok(out)
}

/// f32 -> IEEE half, round to nearest even (overflow to infinity, which loading then refuses).
pub fn f32_to_f16(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal half: shift the full mantissa (with its implicit 1) into place, rounding.
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = rem > mid || (rem == mid && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = rem > 0x1000 || (rem == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (half + round as u32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> AdapterDims {
        AdapterDims {
            n_layer: 2,
            n_embd: 8,
            kv_dim: 4,
            n_ff: 12,
        }
    }

    fn sample(dtype: Dtype) -> Adapter {
        let d = dims();
        let targets = vec![Target::V, Target::Q, Target::Down];
        let mut s = 1u32;
        let mut rnd = || {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((s >> 8) as f32 / (1u32 << 24) as f32) - 0.5
        };
        let mut sorted = targets.clone();
        sorted.sort_by_key(|t| t.bit());
        let layers = (0..d.n_layer)
            .map(|_| {
                sorted
                    .iter()
                    .map(|t| {
                        let (i, o) = t.dims(&d);
                        LoraPair {
                            a: (0..2 * i).map(|_| rnd()).collect(),
                            b: (0..o * 2).map(|_| rnd()).collect(),
                        }
                    })
                    .collect()
            })
            .collect();
        Adapter::new([7; 32], 2, 4.0, dtype, targets, d, layers).unwrap()
    }

    #[test]
    fn round_trips_and_hash_is_of_the_file() {
        for dt in [Dtype::F32, Dtype::F16] {
            let a = sample(dt);
            let bytes = a.to_bytes();
            let b = Adapter::from_bytes(&bytes).unwrap();
            assert_eq!(b.layers, a.layers);
            assert_eq!(b.targets, vec![Target::Q, Target::V, Target::Down]);
            assert_eq!(b.content_hash(), <[u8; 32]>::from(Sha256::digest(&bytes)));
            assert_eq!(b.to_bytes(), bytes);
        }
        assert_ne!(
            sample(Dtype::F32).content_hash(),
            sample(Dtype::F16).content_hash()
        );
    }

    #[test]
    fn refuses_bad_files() {
        let bytes = sample(Dtype::F16).to_bytes();
        assert!(matches!(
            Adapter::from_bytes(b"GGUF1234"),
            Err(AdapterError::BadMagic)
        ));
        assert!(matches!(
            Adapter::from_bytes(&bytes[..bytes.len() - 1]),
            Err(AdapterError::Corrupt(_))
        ));
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert!(matches!(
            Adapter::from_bytes(&newer),
            Err(AdapterError::NewerVersion(9))
        ));
        let a = sample(Dtype::F16);
        let err = a.check_base(&[8; 32], &dims()).unwrap_err();
        assert!(err.to_string().contains("base model"), "{err}");
        a.check_base(&[7; 32], &dims()).unwrap();
    }

    #[test]
    fn f16_rounding_matches_reference_points() {
        for (v, h) in [
            (1.0f32, 0x3c00u16),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (5.960_464_5e-8, 0x0001),
            (0.333_333_34, 0x3555),
            (1.0 + 1.0 / 2048.0, 0x3c00), // tie -> even
            (1.0 + 3.0 / 2048.0, 0x3c02), // tie -> even (up)
        ] {
            assert_eq!(f32_to_f16(v), h, "{v}");
        }
        for h in (0u16..0x7c00).step_by(7) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h);
        }
    }

    #[test]
    fn apply_matches_a_direct_product_and_zero_b_is_identity() {
        let a = sample(Dtype::F32);
        let d = dims();
        let x: Vec<f32> = (0..2 * d.n_embd).map(|i| i as f32 * 0.25 - 1.0).collect();
        let mut y = vec![1.0f32; 2 * d.n_embd];
        a.apply(1, Target::Q, &x, &mut y, 2);
        let p = &a.layers[1][0];
        for t in 0..2 {
            for o in 0..d.n_embd {
                let mut want = 0.0f64;
                for k in 0..2 {
                    let ax: f64 = (0..d.n_embd)
                        .map(|i| p.a[k * d.n_embd + i] as f64 * x[t * d.n_embd + i] as f64)
                        .sum();
                    want += p.b[o * 2 + k] as f64 * ax * 2.0;
                }
                assert!((y[t * d.n_embd + o] as f64 - 1.0 - want).abs() < 1e-4);
            }
        }
        // An unadapted target leaves y alone.
        let mut z = vec![3.0f32; 2 * d.kv_dim];
        a.apply(0, Target::K, &x, &mut z, 2);
        assert!(z.iter().all(|v| *v == 3.0));
    }
}
