//! Row-times-activation kernels: one file per weight format, one variant per instruction-set
//! level, one dispatch table ([`Kernels`]), all bit-identical.
//!
//! The split that makes this possible: the dot product of a block's weight codes with the
//! activation codes is an *integer* (exact, whatever the instructions), and everything in
//! floating point happens in one fixed sequence per 32 values, shared by every level:
//!
//! ```text
//! Q4_1:  acc = acc + (d_w * (d_a * isum) + m_w * s_a)                 (q4_1.rs)
//! Q8_0:  acc = acc + d_w * (d_a * isum)                               (q8_0.rs)
//! Q5_0:  acc = acc + d_w * (d_a * isum)         isum = sum (code - 16) q_a   (q5_0.rs)
//! Q4_K:  acc = acc + (d * (d_a * (sc_j * isum)) - dmin * (m_j * s_a))        (q4_k.rs)
//! Q6_K:  acc = acc + d * (d_a * isum)    isum = sum over the two 16-value halves of
//!                                               sc_h * sum (code - 32) q_a   (q6_k.rs)
//! ```
//!
//! blocks in order 0..nb. `d_a`, `s_a = d_a * sum(q_a)` come from the one activation quantiser
//! ([`crate::quant::quantize_row`]). No level reorders or fuses (FMA) a float sequence; they
//! differ only in how `isum` is computed (scalar loop, SSE2 `pmaddwd`, AVX2 `pmaddubsw`, AVX-512
//! VNNI `vpdpbusd`, NEON `smull`/`sadalp`) and in how many rows run side by side.
//!
//! Every format has a single-row kernel ([`RowFn`]) and a multi-row one ([`RowsFn`]); the
//! multi-token ones ([`TileFn`], prefill and batches: each weight block unpacked once for a
//! tile of tokens) exist for the 32-value formats from AVX2 up and for the K-quants at every
//! level (a generic unpack-once form, [`k_tile`], for scalar, SSE2 and NEON). The
//! multi-row kernels run several rows' float sequences at once: on x86 from AVX2 up, eight rows
//! in the eight lanes of a vector (`mulps`/`addps`/`subps` per lane are the same IEEE
//! operations as the scalar ones), elsewhere four rows' independent chains interleaved. Each
//! format file holds its scalar reference and its SIMD variants; the tests below hold every
//! level's single- and multi-row kernels to the scalar single-row kernel bit for bit, on random
//! and extreme blocks, for every format.
//!
//! Layout: `mod.rs` (levels, dispatch, tests), `x86.rs` / `arm.rs` (integer helpers shared by
//! the formats), and `q4_1.rs`, `q8_0.rs`, `q5_0.rs`, `q4_k.rs`, `q6_k.rs`.
//!
//! # Safety
//!
//! The SIMD kernels are `unsafe fn`s with `#[target_feature]`: calling one on a CPU without
//! the feature is undefined behaviour. They are reachable only through [`Kernels`], whose
//! constructor checks the CPU, and whose methods check every length before the call; inside,
//! the kernels use raw-pointer loads only within the lengths so checked.

use std::sync::OnceLock;

use crate::gguf::GgmlType;
use crate::quant::{f16_to_f32, QRow, QK};

#[cfg(target_arch = "aarch64")]
mod arm;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q6_k;
pub(crate) mod q8_0;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use q4_1::Q4_1_BYTES;
pub use q4_k::Q4_K_BYTES;
pub use q5_0::Q5_0_BYTES;
pub use q6_k::Q6_K_BYTES;
pub use q8_0::Q8_0_BYTES;

/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// Every f16 bit pattern as f32 (256 KiB). Built from the exact software conversion, so a
/// lookup is bit-identical to converting; it just skips the per-block bit twiddling.
pub(crate) fn f16_lut() -> &'static [f32] {
    static LUT: OnceLock<Box<[f32]>> = OnceLock::new();
    LUT.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

/// The f16 at `b[0..2]` through the table.
#[inline(always)]
pub(crate) fn lut_f16(lut: &[f32], b: &[u8]) -> f32 {
    lut[u16::from_le_bytes([b[0], b[1]]) as usize]
}

/// Instruction-set level of the integer block kernels. Never changes results, only speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelLevel {
    /// Plain Rust: the reference every other level must equal.
    Scalar,
    /// x86_64 baseline SIMD.
    Sse2,
    /// x86_64 AVX2 (`pmaddubsw`).
    Avx2,
    /// x86_64 AVX-512 VNNI (`vpdpbusd` on 256-bit vectors) with AVX2.
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl KernelLevel {
    /// Every level, slowest first per architecture.
    pub const ALL: [KernelLevel; 5] = [
        KernelLevel::Scalar,
        KernelLevel::Sse2,
        KernelLevel::Avx2,
        KernelLevel::Avx512,
        KernelLevel::Neon,
    ];

    /// The name used on command lines and in `TENBIT_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
            KernelLevel::Sse2 => "sse2",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::Avx512 => "avx512",
            KernelLevel::Neon => "neon",
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        match self {
            KernelLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(target_arch = "aarch64")]
            KernelLevel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)] // the other architecture's levels
            _ => false,
        }
    }

    /// Every level this CPU can run, slowest first.
    pub fn available() -> Vec<KernelLevel> {
        Self::ALL.into_iter().filter(|l| l.is_available()).collect()
    }

    /// The fastest level this CPU can run.
    pub fn detect() -> KernelLevel {
        *Self::available().last().unwrap_or(&KernelLevel::Scalar)
    }
}

impl std::str::FromStr for KernelLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown kernel level `{s}` (scalar, sse2, avx2, avx512, neon)"))
    }
}

impl std::fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A row kernel: dot of one weight row (ggml blocks) with quantised activations.
pub type RowFn = unsafe fn(&[u8], &QRow) -> f32;

/// A multi-row kernel: `out[r] = row r . a` for `out.len()` consecutive rows stored back to back
/// in the byte slice (each `len / out.len()` bytes). Every row's float sequence is exactly the
/// one of the [`RowFn`] of the same format (same IEEE operations, same order); only the integer
/// work is shared across rows and several rows' float chains run side by side.
pub type RowsFn = unsafe fn(&[u8], &QRow, &mut [f32]);

/// A multi-token kernel: `out[t * n + r] = row r . acts[t]` for `n = out.len() / acts.len()`
/// consecutive rows (at most [`TILE_ROWS`]) and every token t. Each (row, token) value is
/// bit-identical to the [`RowFn`]: the weights of a block are unpacked once for a tile of
/// tokens (prefill), the per-(row, token) float sequence is unchanged.
pub type TileFn = unsafe fn(&[u8], &[QRow], &mut [f32]);

/// Rows per call of a [`TileFn`].
pub const TILE_ROWS: usize = 8;

/// Tokens whose accumulators a tile kernel keeps in registers at once.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // 32-value tiles are x86-only
pub(crate) const TILE_TOKENS: usize = 4;

/// Tokens per pass of the K-quant tile kernels: unpacking a super-block row (codes, scale
/// lanes) costs more than a 32-value block's, so it is shared by more tokens; the per-token
/// terms wait on the stack (L1), not in registers.
pub(crate) const K_TILE_TOKENS: usize = 8;

/// The weight formats the kernels handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Q4_1,
    Q8_0,
    Q5_0,
    Q4K,
    Q6K,
}

impl Fmt {
    fn of(ty: GgmlType) -> Option<Fmt> {
        Some(match ty {
            GgmlType::Q4_1 => Fmt::Q4_1,
            GgmlType::Q8_0 => Fmt::Q8_0,
            GgmlType::Q5_0 => Fmt::Q5_0,
            GgmlType::Q4K => Fmt::Q4K,
            GgmlType::Q6K => Fmt::Q6K,
            _ => return None,
        })
    }

    /// (values, bytes) per block.
    fn block(self) -> (usize, usize) {
        match self {
            Fmt::Q4_1 => (QK, Q4_1_BYTES),
            Fmt::Q8_0 => (QK, Q8_0_BYTES),
            Fmt::Q5_0 => (QK, Q5_0_BYTES),
            Fmt::Q4K => (QK_K, Q4_K_BYTES),
            Fmt::Q6K => (QK_K, Q6_K_BYTES),
        }
    }
}

/// Bytes of one row of `cols` values of a matrix type the kernels handle, or `None` if the
/// type is not one of them or `cols` does not fit its block size.
pub fn row_bytes(ty: GgmlType, cols: usize) -> Option<usize> {
    let (per, bytes) = Fmt::of(ty)?.block();
    cols.is_multiple_of(per).then_some(cols / per * bytes)
}

/// The single-row, multi-row and multi-token kernels of one format at one level.
#[derive(Clone, Copy)]
struct Pair {
    row: RowFn,
    rows: RowsFn,
    /// `None`: the multi-row kernel once per token.
    tile: Option<TileFn>,
}

/// The kernels of one level, every format. Constructed only through [`Kernels::new`], which
/// checks that the CPU supports the level: that check is what makes calling the `unsafe fn`s
/// sound, together with the length checks of the methods.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// The level these kernels run at.
    pub level: KernelLevel,
    /// Indexed by `Fmt as usize`.
    table: [Pair; 5],
}

macro_rules! pair {
    ($m:ident :: $row:ident, $rows:ident) => {
        Pair {
            row: $m::$row,
            rows: $m::$rows,
            tile: None,
        }
    };
    ($m:ident :: $row:ident, $rows:ident, $tile:ident) => {
        Pair {
            row: $m::$row,
            rows: $m::$rows,
            tile: Some($m::$tile),
        }
    };
}

impl Kernels {
    /// The kernels of `level`, or `None` if this CPU cannot run it.
    pub fn new(level: KernelLevel) -> Option<Kernels> {
        if !level.is_available() {
            return None;
        }
        #[rustfmt::skip]
        let table = match level {
            // The K-quants have a multi-token tile at every level (generic unpack-once form
            // for scalar, SSE2 and NEON); the 32-value formats from AVX2 up.
            KernelLevel::Scalar => [
                pair!(q4_1::scalar_row, scalar_rows), pair!(q8_0::scalar_row, scalar_rows),
                pair!(q5_0::scalar_row, scalar_rows), pair!(q4_k::scalar_row, scalar_rows, scalar_tile),
                pair!(q6_k::scalar_row, scalar_rows, scalar_tile),
            ],
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Sse2 => [
                pair!(q4_1::sse2_row, sse2_rows), pair!(q8_0::sse2_row, sse2_rows),
                // No SSE2 code for these: the scalar integer code is the SSE2 level.
                pair!(q5_0::scalar_row, scalar_rows), pair!(q4_k::scalar_row, scalar_rows, scalar_tile),
                pair!(q6_k::scalar_row, scalar_rows, scalar_tile),
            ],
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => [
                pair!(q4_1::avx2_row, avx2_rows, avx2_tile), pair!(q8_0::avx2_row, avx2_rows, avx2_tile),
                pair!(q5_0::avx2_row, avx2_rows, avx2_tile), pair!(q4_k::avx2_row, avx2_rows, avx2_tile),
                pair!(q6_k::avx2_row, avx2_rows, avx2_tile),
            ],
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => [
                pair!(q4_1::vnni_row, vnni_rows, vnni_tile), pair!(q8_0::vnni_row, vnni_rows, vnni_tile),
                pair!(q5_0::vnni_row, vnni_rows, vnni_tile), pair!(q4_k::vnni_row, vnni_rows, vnni_tile),
                // No VNNI form: the signed, scale-weighted pairs are `pmaddwd` work either way.
                pair!(q6_k::avx2_row, avx2_rows, avx2_tile),
            ],
            #[cfg(target_arch = "aarch64")]
            KernelLevel::Neon => [
                pair!(q4_1::neon_row, neon_rows), pair!(q8_0::neon_row, neon_rows),
                pair!(q5_0::neon_row, neon_rows), pair!(q4_k::neon_row, neon_rows, neon_tile),
                pair!(q6_k::neon_row, neon_rows, neon_tile),
            ],
            #[allow(unreachable_patterns)] // the other architecture's levels
            _ => return None,
        };
        Some(Kernels { level, table })
    }

    /// The kernels of `ty` after checking that `row_len` bytes are whole rows for `a`.
    #[inline]
    fn pick(&self, ty: GgmlType, a: &QRow) -> (Pair, usize) {
        let f = Fmt::of(ty).unwrap_or_else(|| panic!("no kernel for weight type {ty:?}"));
        let nb = a.blocks();
        assert!(a.q.len() == nb * QK && a.s.len() == nb && a.sum.len() == nb);
        let (per, bytes) = f.block();
        assert!(
            (nb * QK).is_multiple_of(per),
            "{ty:?} row of {} values",
            nb * QK
        );
        (self.table[f as usize], nb * QK / per * bytes)
    }

    /// Dot of one row of type `ty` with `a`. Lengths are checked here, once, for every level.
    #[inline]
    pub fn dot(&self, ty: GgmlType, row: &[u8], a: &QRow) -> f32 {
        let (p, rb) = self.pick(ty, a);
        assert_eq!(row.len(), rb, "{ty:?} row length");
        // SAFETY: `Kernels::new` verified the CPU features of `self.level`; lengths checked.
        unsafe { (p.row)(row, a) }
    }

    /// `out[t * n + r] = dot(row r, acts[t])` for `n = out.len() / acts.len()` (at most
    /// [`TILE_ROWS`]) rows of type `ty` stored back to back in `rows`, and every token t;
    /// bit-identical to calling [`Kernels::dot`] per row and token.
    #[inline]
    pub fn dot_tile(&self, ty: GgmlType, rows: &[u8], acts: &[QRow], out: &mut [f32]) {
        let Some(a0) = acts.first() else { return };
        let (p, rb) = self.pick(ty, a0);
        let n = out.len() / acts.len();
        assert!(n <= TILE_ROWS && out.len() == n * acts.len(), "tile shape");
        assert_eq!(rows.len(), n * rb, "{ty:?} rows length");
        if n == 0 {
            return;
        }
        for a in &acts[1..] {
            assert!(
                a.blocks() == a0.blocks() && a.q.len() == a0.q.len(),
                "tile activations"
            );
            assert!(a.s.len() == a0.blocks() && a.sum.len() == a0.blocks());
        }
        match p.tile {
            // SAFETY: as in `dot_rows`; the tile kernels take exactly TILE_ROWS rows (checked).
            Some(tile) if n == TILE_ROWS => unsafe { tile(rows, acts, out) },
            _ => {
                for (a, o) in acts.iter().zip(out.chunks_exact_mut(n)) {
                    // SAFETY: as in `dot_rows` (every activation row checked above).
                    unsafe { (p.rows)(rows, a, o) }
                }
            }
        }
    }

    /// `out[r] = dot(row r, a)` for `out.len()` rows of type `ty` stored back to back in
    /// `rows`; bit-identical to calling [`Kernels::dot`] per row.
    #[inline]
    pub fn dot_rows(&self, ty: GgmlType, rows: &[u8], a: &QRow, out: &mut [f32]) {
        let (p, rb) = self.pick(ty, a);
        assert_eq!(rows.len(), out.len() * rb, "{ty:?} rows length");
        if out.is_empty() {
            return;
        }
        // SAFETY: as above.
        unsafe { (p.rows)(rows, a, out) }
    }
}

/// Rows per group of the generic (interleaved-chain) multi-row kernels.
pub(crate) const GROUP: usize = 4;

/// Stamp out a format's single-row and generic multi-row kernels from its per-block step
/// `$step(acc, block bytes, activations, block index, f16 table) -> acc`: the one float sequence of the
/// format, written once, so every kernel of a level runs it textually unchanged. The multi-row
/// kernel keeps [`GROUP`] rows' accumulators and steps them block by block (independent chains
/// that overlap in the pipeline).
macro_rules! block_kernels {
    ($(#[$attr:meta])* $row:ident, $rows:ident, $bytes:expr, $step:path) => {
        /// # Safety
        ///
        /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
        /// table is built only for levels the CPU has), and every block it reads must lie
        /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
        $(#[$attr])*
        pub(crate) unsafe fn $row(row: &[u8], a: &$crate::quant::QRow) -> f32 {
            let lut = $crate::kernels::f16_lut();
            let mut acc = 0.0f32;
            for (b, blk) in row.chunks_exact($bytes).enumerate() {
                acc = $step(acc, blk, a, b, lut);
            }
            acc
        }
        /// # Safety
        ///
        /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
        /// table is built only for levels the CPU has), and every block it reads must lie
        /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
        $(#[$attr])*
        pub(crate) unsafe fn $rows(rows: &[u8], a: &$crate::quant::QRow, out: &mut [f32]) {
            use $crate::kernels::GROUP;
            let lut = $crate::kernels::f16_lut();
            let rb = rows.len() / out.len();
            let nb = rb / $bytes;
            for (g, o) in rows.chunks(GROUP * rb).zip(out.chunks_mut(GROUP)) {
                let mut acc = [0.0f32; GROUP];
                for b in 0..nb {
                    for (r, acc) in acc.iter_mut().enumerate().take(o.len()) {
                        let o = r * rb + b * $bytes;
                        *acc = $step(*acc, &g[o..o + $bytes], a, b, lut);
                    }
                }
                o.copy_from_slice(&acc[..o.len()]);
            }
        }
    };
}
pub(crate) use block_kernels;

/// The sixteen 16-value partial dots of a K-quant super-block's unpacked weights `w` (signed,
/// in value order) with the activation codes `q` (256 of them): exact integers, the scalar
/// reference of [`k_tile`]'s inner product. Q4_K sums them in pairs, Q6_K weights each by its
/// 16-value scale.
#[inline(always)]
pub(crate) fn dots16_scalar(w: &[i8; QK_K], q: &[i8]) -> [i32; 16] {
    let q = &q[..QK_K];
    std::array::from_fn(|h| {
        let (w, q) = (&w[16 * h..16 * h + 16], &q[16 * h..16 * h + 16]);
        w.iter().zip(q).map(|(&w, &q)| w as i32 * q as i32).sum()
    })
}

/// Stamp out a K-quant multi-token kernel ([`TileFn`]) for the levels without a dedicated SIMD
/// tile (scalar, SSE2, NEON): each row's super-block is unpacked once to signed codes
/// (`$unpack(block, &mut [i8; 256])`) for a tile of [`K_TILE_TOKENS`] tokens, `$dots` (the
/// level's integer dot, [`dots16_scalar`] or a SIMD one: exact either way) gives the sixteen
/// 16-value partial dots per token, and `$step(acc, block, activations, super-block, f16
/// table, partial dots)` runs the format's one float sequence per (row, token), super-blocks in
/// order: the same operations as the single-row kernel.
macro_rules! k_tile {
    ($(#[$attr:meta])* $name:ident, $bytes:expr, $unpack:path, $dots:path, $step:path) => {
        /// # Safety
        ///
        /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
        /// table is built only for levels the CPU has), and `rows` must hold `out.len() /
        /// acts.len()` (at most [`TILE_ROWS`](crate::kernels::TILE_ROWS)) whole rows of the
        /// activations' length (the caller checks).
        $(#[$attr])*
        pub(crate) unsafe fn $name(rows: &[u8], acts: &[$crate::quant::QRow], out: &mut [f32]) {
            use $crate::kernels::{K_TILE_TOKENS as TILE_TOKENS, QK_K, TILE_ROWS};
            let lut = $crate::kernels::f16_lut();
            let n = out.len() / acts.len();
            let rb = rows.len() / n;
            let nsb = rb / $bytes;
            let mut w = [0i8; QK_K];
            for (ac, oc) in acts.chunks(TILE_TOKENS).zip(out.chunks_mut(TILE_TOKENS * n)) {
                let mut acc = [[0f32; TILE_ROWS]; TILE_TOKENS];
                for sb in 0..nsb {
                    for r in 0..n {
                        let blk = &rows[r * rb + sb * $bytes..r * rb + (sb + 1) * $bytes];
                        $unpack(blk, &mut w);
                        for (acc, a) in acc.iter_mut().zip(ac) {
                            let p = $dots(&w, &a.q[sb * QK_K..(sb + 1) * QK_K]);
                            acc[r] = $step(acc[r], blk, a, sb, lut, p);
                        }
                    }
                }
                for (o, acc) in oc.chunks_exact_mut(n).zip(&acc) {
                    o.copy_from_slice(&acc[..n]);
                }
            }
        }
    };
}
pub(crate) use k_tile;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    const TYPES: [GgmlType; 5] = [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q5_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ];

    /// `n` random rows of type `ty`, `nb` activation blocks long, with finite f16 scales in
    /// 0x2000..0x3bff (sign by `neg`, or random for Q8_0), as real models have.
    fn random_rows(ty: GgmlType, n: usize, nb: usize, s: &mut u64, neg: bool) -> Vec<u8> {
        let rb = row_bytes(ty, nb * QK).unwrap();
        let mut r: Vec<u8> = (0..n * rb).map(|_| rng(s) as u8).collect();
        let half = |s: &mut u64, neg: bool| {
            ((0x2000 + (rng(s) % 0x1bff) as u16) | if neg { 0x8000 } else { 0 }).to_le_bytes()
        };
        let (_, bytes) = Fmt::of(ty).unwrap().block();
        for b in r.chunks_exact_mut(bytes) {
            match ty {
                GgmlType::Q4_1 => {
                    b[..2].copy_from_slice(&half(s, neg));
                    b[2..4].copy_from_slice(&half(s, neg));
                }
                GgmlType::Q8_0 => {
                    let n = rng(s).is_multiple_of(2);
                    b[..2].copy_from_slice(&half(s, n));
                }
                GgmlType::Q5_0 => b[..2].copy_from_slice(&half(s, neg)),
                GgmlType::Q4K => {
                    b[..2].copy_from_slice(&half(s, neg));
                    b[2..4].copy_from_slice(&half(s, neg));
                }
                GgmlType::Q6K => b[208..].copy_from_slice(&half(s, neg)),
                _ => unreachable!(),
            }
        }
        r
    }

    /// Every code bit set (Q6_K scales at -128): the integer extremes.
    fn saturate(ty: GgmlType, rows: &mut [u8]) {
        let (_, bytes) = Fmt::of(ty).unwrap().block();
        for (i, b) in rows.iter_mut().enumerate() {
            let o = i % bytes;
            let header = match ty {
                GgmlType::Q4_1 | GgmlType::Q4K => o < 4,
                GgmlType::Q8_0 | GgmlType::Q5_0 => o < 2,
                _ => o >= 208,
            };
            if !header {
                *b = match ty {
                    GgmlType::Q6K if (192..208).contains(&o) => 0x80,
                    GgmlType::Q8_0 => 0x80,
                    _ => 0xff,
                };
            }
        }
    }

    fn activations(s: &mut u64, nb: usize, extreme: Option<usize>) -> QRow {
        let x: Vec<f32> = (0..nb * QK)
            .map(|_| (rng(s) % 20001) as f32 / 1000.0 - 10.0)
            .collect();
        let mut a = QRow::default();
        quantize_row(&x, &mut a);
        if let Some(k) = extreme {
            for (i, v) in a.q.iter_mut().enumerate() {
                *v = if (i + k) % 3 == 0 { -127 } else { 127 };
            }
            // Keep the quantiser's invariants (the min terms read them).
            for b in 0..nb {
                let sum: i32 = a.q[b * QK..(b + 1) * QK].iter().map(|&v| v as i32).sum();
                a.sum[b] = sum;
                a.s[b] = a.d[b] * sum as f32;
            }
        }
        a
    }

    #[test]
    fn scalar_kernels_approximate_the_dequantised_product() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let base = Kernels::new(KernelLevel::Scalar).unwrap();
        for trial in 0..20 {
            let nb = 16;
            let a = activations(&mut s, nb, None);
            for ty in TYPES {
                let row = random_rows(ty, 1, nb, &mut s, trial % 2 == 1);
                let want = base.dot(ty, &row, &a);
                let mut deq = vec![0f32; nb * QK];
                crate::quant::dequant_row(ty, &row, &mut deq);
                let xa: Vec<f64> = (0..nb * QK)
                    .map(|i| a.d[i / QK] as f64 * a.q[i] as f64)
                    .collect();
                let approx: f64 = deq.iter().zip(&xa).map(|(w, v)| *w as f64 * v).sum();
                let scale: f64 = deq
                    .iter()
                    .zip(&xa)
                    .map(|(w, v)| (*w as f64 * v).abs())
                    .sum();
                assert!(
                    (approx - want as f64).abs() <= 1e-4 * scale + 1e-3,
                    "{ty:?}: {approx} vs {want}"
                );
            }
        }
    }

    /// Every level's single-row and multi-row kernels equal the scalar single-row kernel bit
    /// for bit: random blocks, extreme codes, row counts around the SIMD group sizes.
    #[test]
    fn every_level_and_row_count_matches_single_row_scalar_bit_for_bit() {
        let mut s = 0x1234_5678_9ABC_DEF1u64;
        let base = Kernels::new(KernelLevel::Scalar).unwrap();
        let shapes = [(1, 8), (3, 8), (8, 16), (9, 48), (16, 8), (21, 8), (40, 24)];
        for (trial, &(n, nb)) in shapes.iter().cycle().take(28).enumerate() {
            let a = activations(&mut s, nb, (trial % 7 == 5).then_some(trial));
            for ty in TYPES {
                let mut rows = random_rows(ty, n, nb, &mut s, trial % 2 == 1);
                if trial % 7 == 4 {
                    saturate(ty, &mut rows);
                }
                let rb = rows.len() / n;
                let want: Vec<u32> = rows
                    .chunks(rb)
                    .map(|r| base.dot(ty, r, &a).to_bits())
                    .collect();
                for level in KernelLevel::available() {
                    let k = Kernels::new(level).unwrap();
                    let one: Vec<u32> = rows
                        .chunks(rb)
                        .map(|r| k.dot(ty, r, &a).to_bits())
                        .collect();
                    assert_eq!(one, want, "{level} {ty:?} single rows, n={n} nb={nb}");
                    let mut o = vec![0f32; n];
                    k.dot_rows(ty, &rows, &a, &mut o);
                    let got: Vec<u32> = o.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(
                        got, want,
                        "{level} {ty:?} rows, n={n} nb={nb} trial {trial}"
                    );
                }
            }
        }
    }

    /// Every level's multi-token kernel equals the scalar single-row kernel per (row, token),
    /// for token counts around the tile size and row counts up to a tile.
    #[test]
    fn tile_kernels_match_single_row_scalar_per_row_and_token() {
        let mut s = 0x0DDB_1A5E_5BAD_5EEDu64;
        let base = Kernels::new(KernelLevel::Scalar).unwrap();
        for (trial, &(n, nb, toks)) in [(8, 8, 1), (8, 16, 4), (8, 24, 7), (5, 8, 9), (8, 8, 13)]
            .iter()
            .enumerate()
        {
            let acts: Vec<QRow> = (0..toks)
                .map(|t| activations(&mut s, nb, (t == 2).then_some(trial)))
                .collect();
            for ty in TYPES {
                let mut rows = random_rows(ty, n, nb, &mut s, trial % 2 == 0);
                if trial == 3 {
                    saturate(ty, &mut rows);
                }
                let rb = rows.len() / n;
                let want: Vec<u32> = acts
                    .iter()
                    .flat_map(|a| rows.chunks(rb).map(|r| base.dot(ty, r, a).to_bits()))
                    .collect();
                for level in KernelLevel::available() {
                    let k = Kernels::new(level).unwrap();
                    let mut o = vec![0f32; n * toks];
                    k.dot_tile(ty, &rows, &acts, &mut o);
                    let got: Vec<u32> = o.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(
                        got, want,
                        "{level} {ty:?} tile, n={n} nb={nb} tokens={toks}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_layouts_decode_known_codes() {
        // Q5_0: code i = i (0..31) -> x = d * (i - 16).
        let mut b = vec![0u8; Q5_0_BYTES];
        b[..2].copy_from_slice(&0x3c00u16.to_le_bytes()); // d = 1
        let mut qh = 0u32;
        for i in 0..32u32 {
            if i & 16 != 0 {
                qh |= 1 << i;
            }
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
        for j in 0..16 {
            b[6 + j] = (j as u8 & 15) | (((j as u8 + 16) & 15) << 4);
        }
        let mut out = vec![0f32; 32];
        crate::quant::dequant_row(GgmlType::Q5_0, &b, &mut out);
        assert_eq!(out, (0..32).map(|i| i as f32 - 16.0).collect::<Vec<_>>());
        // Q4_K scale packing: sub-block j gets scale j+1 and min 2j+1 (needs the high bits).
        let mut sc = [0u8; 12];
        let want = |j: usize| {
            (
                (j + 1) as u8 + if j >= 4 { 40 } else { 0 },
                (2 * j + 1) as u8,
            )
        };
        for j in 0..8 {
            let (s, m) = want(j);
            if j < 4 {
                sc[j] = s;
                sc[j + 4] = m;
            } else {
                sc[j + 4] = (s & 15) | ((m & 15) << 4);
                sc[j - 4] |= (s >> 4) << 6;
                sc[j] |= (m >> 4) << 6;
            }
        }
        for j in 0..8 {
            assert_eq!(q4_k::scale_min(&sc, j), want(j), "sub-block {j}");
        }
        // Q6_K: value v's scale is sc[v/16]; codes from ql/qh placement.
        let mut blk = vec![0u8; Q6_K_BYTES];
        blk[208..].copy_from_slice(&0x3c00u16.to_le_bytes());
        for i in 0..16 {
            blk[192 + i] = (i as i8 - 8) as u8;
        }
        // value 128*1 + 32*3 + 5 = 229: ql[64 + 32 + 5] high nibble, qh[32 + 5] bits 6..7.
        blk[64 + 32 + 5] = 0xA0;
        blk[128 + 32 + 5] = 0b10 << 6;
        let mut out = vec![0f32; 256];
        crate::quant::dequant_row(GgmlType::Q6K, &blk, &mut out);
        assert_eq!(
            out[229],
            (229 / 16 - 8) as f32 * ((0xA | 0b10 << 4) - 32) as f32
        );
        assert_eq!(out[228], (229 / 16 - 8) as f32 * -32.0);
    }

    #[test]
    fn levels_parse_and_unavailable_ones_are_refused() {
        assert_eq!("AVX2".parse::<KernelLevel>().unwrap(), KernelLevel::Avx2);
        assert!("mmx".parse::<KernelLevel>().is_err());
        assert!(KernelLevel::Scalar.is_available());
        #[cfg(target_arch = "x86_64")]
        assert!(Kernels::new(KernelLevel::Neon).is_none());
        #[cfg(target_arch = "aarch64")]
        assert!(Kernels::new(KernelLevel::Avx2).is_none());
    }

    #[test]
    #[should_panic(expected = "rows length")]
    fn a_short_row_slice_is_refused_before_any_kernel_runs() {
        let mut s = 5u64;
        let a = activations(&mut s, 8, None);
        let k = Kernels::new(KernelLevel::detect()).unwrap();
        let rows = random_rows(GgmlType::Q4K, 2, 8, &mut s, false);
        let mut o = [0f32; 2];
        k.dot_rows(GgmlType::Q4K, &rows[..rows.len() - 1], &a, &mut o);
    }
}
