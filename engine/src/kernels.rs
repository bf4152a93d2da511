//! Row-times-activation kernels, one per instruction-set level, all bit-identical.
//!
//! The split that makes this possible: a block's dot product of weight codes and activation
//! codes is an *integer* (exact, whatever the instructions), and everything in floating point
//! happens in one shared, fixed sequence per block:
//!
//! ```text
//! Q4_1:  acc = acc + (d_w * (d_a * isum) + m_w * s_a)     blocks in order 0..nb
//! Q8_0:  acc = acc + d_w * (d_a * isum)
//! ```
//!
//! with `d_w`, `m_w` the block's f16 scale/min, `d_a`, `s_a = d_a * sum(q_a)` from the activation
//! quantiser. No level reorders or fuses (FMA) that float sequence; they differ only in how
//! `isum` is computed (scalar loop, SSE2 `pmaddwd`, AVX2 `pmaddubsw`, AVX-512 VNNI `vpdpbusd`,
//! NEON `smull`/`sadalp`). The multi-row kernels ([`RowsFn`]) run several rows' sequences side
//! by side, on x86 one row per SIMD lane (`mulps`/`addps` per lane are the same IEEE operations
//! as the scalar ones). Tests compare every level and the multi-row kernels against scalar on
//! random data and on the real model.

use std::sync::OnceLock;

use super::quant::{f16_to_f32, QRow, Q4_1_BYTES, Q8_0_BYTES, QK};

/// Every f16 bit pattern as f32 (256 KiB). Built from the exact software conversion, so a
/// lookup is bit-identical to converting; it just skips the per-block bit twiddling.
pub(super) fn f16_lut() -> &'static [f32] {
    static LUT: OnceLock<Box<[f32]>> = OnceLock::new();
    LUT.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

#[inline(always)]
pub(super) fn lut_f16(lut: &[f32], b: &[u8]) -> f32 {
    lut[u16::from_le_bytes([b[0], b[1]]) as usize]
}

/// Instruction-set level of the integer block kernels. Never changes results, only speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelLevel {
    Scalar,
    Sse2,
    Avx2,
    Avx512,
    Neon,
}

impl KernelLevel {
    pub const ALL: [KernelLevel; 5] = [
        KernelLevel::Scalar,
        KernelLevel::Sse2,
        KernelLevel::Avx2,
        KernelLevel::Avx512,
        KernelLevel::Neon,
    ];

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
            #[allow(unreachable_patterns)]
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
/// one of the [`RowFn`] of the same level (same IEEE operations, same order); only the integer
/// block dots are shared across rows and several rows' float chains run side by side (in SIMD
/// lanes or interleaved), which hides latency and shares the activation loads.
pub type RowsFn = unsafe fn(&[u8], &QRow, &mut [f32]);

/// The kernels of one level. Constructed only through [`Kernels::new`], which checks that the
/// CPU supports the level: that check is what makes calling the `unsafe fn`s sound.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub level: KernelLevel,
    q4_1: RowFn,
    q8_0: RowFn,
    q4_1_rows: RowsFn,
    q8_0_rows: RowsFn,
}

impl Kernels {
    pub fn new(level: KernelLevel) -> Option<Kernels> {
        if !level.is_available() {
            return None;
        }
        #[rustfmt::skip]
        let (q4_1, q8_0, q4_1_rows, q8_0_rows): (RowFn, RowFn, RowsFn, RowsFn) = match level {
            KernelLevel::Scalar => (scalar::q4_1, scalar::q8_0, scalar::q4_1_rows, scalar::q8_0_rows),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Sse2 => (x86::q4_1_sse2, x86::q8_0_sse2, x86::q4_1_rows_sse2, x86::q8_0_rows_sse2),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => (x86::q4_1_avx2, x86::q8_0_avx2, x86::q4_1_rows_avx2, x86::q8_0_rows_avx2),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => (x86::q4_1_vnni, x86::q8_0_vnni, x86::q4_1_rows_vnni, x86::q8_0_rows_vnni),
            #[cfg(target_arch = "aarch64")]
            KernelLevel::Neon => (arm::q4_1_neon, arm::q8_0_neon, arm::q4_1_rows_neon, arm::q8_0_rows_neon),
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(Kernels {
            level,
            q4_1,
            q8_0,
            q4_1_rows,
            q8_0_rows,
        })
    }

    /// Dot of a Q4_1 row with `a`. Lengths are checked here, once, for every level.
    #[inline]
    pub fn dot_q4_1(&self, row: &[u8], a: &QRow) -> f32 {
        assert_eq!(row.len() / Q4_1_BYTES, a.blocks());
        assert!(
            row.len() % Q4_1_BYTES == 0 && a.q.len() == a.blocks() * QK && a.s.len() == a.blocks()
        );
        // SAFETY: `Kernels::new` verified the CPU features of `self.level`; lengths checked above.
        unsafe { (self.q4_1)(row, a) }
    }

    #[inline]
    pub fn dot_q8_0(&self, row: &[u8], a: &QRow) -> f32 {
        assert_eq!(row.len() / Q8_0_BYTES, a.blocks());
        assert!(row.len() % Q8_0_BYTES == 0 && a.q.len() == a.blocks() * QK);
        // SAFETY: as above.
        unsafe { (self.q8_0)(row, a) }
    }

    /// `out[r] = dot_q4_1(row r, a)` for `out.len()` Q4_1 rows stored back to back in `rows`;
    /// bit-identical to calling [`Kernels::dot_q4_1`] per row.
    #[inline]
    pub fn dot_rows_q4_1(&self, rows: &[u8], a: &QRow, out: &mut [f32]) {
        assert_eq!(rows.len(), out.len() * a.blocks() * Q4_1_BYTES);
        assert!(a.q.len() == a.blocks() * QK && a.s.len() == a.blocks());
        // SAFETY: `Kernels::new` verified the CPU features of `self.level`; lengths checked above.
        unsafe { (self.q4_1_rows)(rows, a, out) }
    }

    /// `out[r] = dot_q8_0(row r, a)` for `out.len()` Q8_0 rows stored back to back in `rows`.
    #[inline]
    pub fn dot_rows_q8_0(&self, rows: &[u8], a: &QRow, out: &mut [f32]) {
        assert_eq!(rows.len(), out.len() * a.blocks() * Q8_0_BYTES);
        assert!(a.q.len() == a.blocks() * QK);
        // SAFETY: as above.
        unsafe { (self.q8_0_rows)(rows, a, out) }
    }
}

/// Stamp out a row function from a block integer-dot expression, keeping the float sequence
/// textually identical for every level.
macro_rules! row_fns {
    ($(#[$attr:meta])* $q41:ident, $q80:ident, $isum41:path, $isum80:path) => {
        $(#[$attr])*
        pub(super) unsafe fn $q41(row: &[u8], a: &QRow) -> f32 {
            let lut = f16_lut();
            let mut acc = 0.0f32;
            for (b, blk) in row.chunks_exact(Q4_1_BYTES).enumerate() {
                let dw = lut_f16(lut, blk);
                let mw = lut_f16(lut, &blk[2..]);
                let isum = $isum41(&blk[4..20], &a.q[b * QK..b * QK + QK]);
                acc += dw * (a.d[b] * isum as f32) + mw * a.s[b];
            }
            acc
        }
        $(#[$attr])*
        pub(super) unsafe fn $q80(row: &[u8], a: &QRow) -> f32 {
            let lut = f16_lut();
            let mut acc = 0.0f32;
            for (b, blk) in row.chunks_exact(Q8_0_BYTES).enumerate() {
                let dw = lut_f16(lut, blk);
                let isum = $isum80(&blk[2..34], &a.q[b * QK..b * QK + QK]);
                acc += dw * (a.d[b] * isum as f32);
            }
            acc
        }
    };
}

/// Stamp out generic multi-row functions from the block integer dots: rows in groups of
/// [`GROUP`], block by block, each row with its own accumulator and exactly the float sequence
/// of `row_fns!` (the chains are independent, so they overlap in the pipeline).
macro_rules! rows_fns {
    ($(#[$attr:meta])* $q41:ident, $q80:ident, $isum41:path, $isum80:path) => {
        $(#[$attr])*
        pub(super) unsafe fn $q41(rows: &[u8], a: &QRow, out: &mut [f32]) {
            let lut = f16_lut();
            let nb = a.blocks();
            let rb = nb * Q4_1_BYTES;
            for (g, o) in rows.chunks(GROUP * rb).zip(out.chunks_mut(GROUP)) {
                let mut acc = [0.0f32; GROUP];
                for b in 0..nb {
                    let q = &a.q[b * QK..b * QK + QK];
                    let (d, s) = (a.d[b], a.s[b]);
                    for (r, acc) in acc.iter_mut().enumerate().take(o.len()) {
                        let blk = &g[r * rb + b * Q4_1_BYTES..r * rb + (b + 1) * Q4_1_BYTES];
                        let dw = lut_f16(lut, blk);
                        let mw = lut_f16(lut, &blk[2..]);
                        let isum = $isum41(&blk[4..20], q);
                        *acc += dw * (d * isum as f32) + mw * s;
                    }
                }
                o.copy_from_slice(&acc[..o.len()]);
            }
        }
        $(#[$attr])*
        pub(super) unsafe fn $q80(rows: &[u8], a: &QRow, out: &mut [f32]) {
            let lut = f16_lut();
            let nb = a.blocks();
            let rb = nb * Q8_0_BYTES;
            for (g, o) in rows.chunks(GROUP * rb).zip(out.chunks_mut(GROUP)) {
                let mut acc = [0.0f32; GROUP];
                for b in 0..nb {
                    let q = &a.q[b * QK..b * QK + QK];
                    let d = a.d[b];
                    for (r, acc) in acc.iter_mut().enumerate().take(o.len()) {
                        let blk = &g[r * rb + b * Q8_0_BYTES..r * rb + (b + 1) * Q8_0_BYTES];
                        let dw = lut_f16(lut, blk);
                        let isum = $isum80(&blk[2..34], q);
                        *acc += dw * (d * isum as f32);
                    }
                }
                o.copy_from_slice(&acc[..o.len()]);
            }
        }
    };
}

/// Rows per group of the generic multi-row kernels.
const GROUP: usize = 4;

pub(crate) mod scalar {
    use super::*;

    #[inline(always)]
    pub(crate) fn isum_q4_1(nib: &[u8], q: &[i8]) -> i32 {
        let mut s = 0i32;
        for j in 0..16 {
            s += (nib[j] & 0x0f) as i32 * q[j] as i32 + (nib[j] >> 4) as i32 * q[j + 16] as i32;
        }
        s
    }

    #[inline(always)]
    pub(crate) fn isum_q8_0(w: &[u8], q: &[i8]) -> i32 {
        let mut s = 0i32;
        for j in 0..32 {
            s += (w[j] as i8) as i32 * q[j] as i32;
        }
        s
    }

    row_fns!(q4_1, q8_0, isum_q4_1, isum_q8_0);
    rows_fns!(q4_1_rows, q8_0_rows, isum_q4_1, isum_q8_0);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "sse2")]
    fn hsum128(v: __m128i) -> i32 {
        let s = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum256(v: __m256i) -> i32 {
        hsum128(_mm_add_epi32(
            _mm256_castsi256_si128(v),
            _mm256_extracti128_si256(v, 1),
        ))
    }

    /// i8 x16 -> two i16 x8 halves (sign-extended).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn widen_i8(v: __m128i) -> (__m128i, __m128i) {
        let sign = _mm_cmpgt_epi8(_mm_setzero_si128(), v);
        (_mm_unpacklo_epi8(v, sign), _mm_unpackhi_epi8(v, sign))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn isum_q4_1_sse2(nib: &[u8], q: &[i8]) -> i32 {
        let raw = _mm_loadu_si128(nib.as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(raw, m);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
        let z = _mm_setzero_si128();
        let (a0l, a0h) = widen_i8(_mm_loadu_si128(q.as_ptr() as *const __m128i));
        let (a1l, a1h) = widen_i8(_mm_loadu_si128(q.as_ptr().add(16) as *const __m128i));
        let s = _mm_add_epi32(
            _mm_add_epi32(
                _mm_madd_epi16(_mm_unpacklo_epi8(lo, z), a0l),
                _mm_madd_epi16(_mm_unpackhi_epi8(lo, z), a0h),
            ),
            _mm_add_epi32(
                _mm_madd_epi16(_mm_unpacklo_epi8(hi, z), a1l),
                _mm_madd_epi16(_mm_unpackhi_epi8(hi, z), a1h),
            ),
        );
        hsum128(s)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn isum_q8_0_sse2(w: &[u8], q: &[i8]) -> i32 {
        let mut s = _mm_setzero_si128();
        for h in 0..2 {
            let (wl, wh) = widen_i8(_mm_loadu_si128(w.as_ptr().add(16 * h) as *const __m128i));
            let (al, ah) = widen_i8(_mm_loadu_si128(q.as_ptr().add(16 * h) as *const __m128i));
            s = _mm_add_epi32(
                s,
                _mm_add_epi32(_mm_madd_epi16(wl, al), _mm_madd_epi16(wh, ah)),
            );
        }
        hsum128(s)
    }

    /// The 32 Q4_1 codes as unsigned bytes: elements 0..15 in the low lane, 16..31 high.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q4_codes(nib: &[u8]) -> __m256i {
        let raw = _mm_loadu_si128(nib.as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), m),
            _mm_and_si128(raw, m),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_q4_1_avx2(nib: &[u8], q: &[i8]) -> i32 {
        let w = q4_codes(nib);
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        // u8 (0..15) * i8 pairs summed to i16: |sum| <= 2*15*127, no saturation.
        let p16 = _mm256_maddubs_epi16(w, a);
        hsum256(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_q8_0_avx2(w: &[u8], q: &[i8]) -> i32 {
        let w = _mm256_loadu_si256(w.as_ptr() as *const __m256i);
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        // |w| as u8 times a with w's sign: pairs <= 2*128*127 < 2^15, no saturation.
        let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        hsum256(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn isum_q4_1_vnni(nib: &[u8], q: &[i8]) -> i32 {
        let w = q4_codes(nib);
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        hsum256(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn isum_q8_0_vnni(w: &[u8], q: &[i8]) -> i32 {
        let w = _mm256_loadu_si256(w.as_ptr() as *const __m256i);
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        hsum256(_mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(w, w),
            _mm256_sign_epi8(a, w),
        ))
    }

    /// Two rows' Q4_1 codes of one block, row 0 in the low 128-bit lane and row 1 in the high:
    /// `(low nibbles = elements 0..15, high nibbles = elements 16..31)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q4_pair(p0: *const u8, p1: *const u8) -> (__m256i, __m256i) {
        let raw = _mm256_loadu2_m128i(p1 as *const __m128i, p0 as *const __m128i);
        let m = _mm256_set1_epi8(0x0f);
        (
            _mm256_and_si256(raw, m),
            _mm256_and_si256(_mm256_srli_epi16(raw, 4), m),
        )
    }

    /// Integer dots of a row pair (see [`q4_pair`]) with the activation halves broadcast to both
    /// lanes: four partial sums per row, `[row 0 | row 1]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q4_pair_dot_avx2(lo: __m256i, hi: __m256i, alo: __m256i, ahi: __m256i) -> __m256i {
        // Each maddubs pair is <= 2*15*127 = 3810, the sum of two <= 7620: no i16 overflow.
        let p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
        _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn q4_pair_dot_vnni(lo: __m256i, hi: __m256i, alo: __m256i, ahi: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo),
            hi,
            ahi,
        )
    }

    /// One Q8_0 row block (32 i8 at `w`) times the activation block: eight partial sums.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q8_dot_avx2(w: *const u8, a: __m256i) -> __m256i {
        let w = _mm256_loadu_si256(w as *const __m256i);
        let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn q8_dot_vnni(w: *const u8, a: __m256i) -> __m256i {
        let w = _mm256_loadu_si256(w as *const __m256i);
        _mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(w, w),
            _mm256_sign_epi8(a, w),
        )
    }

    /// Prefetch `len` bytes (whole cache lines) at `p`: the next row group's weights, spread
    /// over the blocks of the current group. A prefetch never faults, so `p` may lie past the
    /// end of the matrix.
    #[inline(always)]
    fn prefetch_span(p: *const u8, len: usize) {
        let mut o = 0;
        while o < len {
            // SAFETY: prefetching is a hint and never faults; `wrapping_add` keeps the pointer
            // arithmetic defined.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(o) as *const i8) };
            o += 64;
        }
    }

    /// Four row pairs' partial sums (`[row 2k | row 2k+1]`, four lanes each) to the eight row
    /// totals `[r0, .., r7]`. Integer adds: exact in any order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce_pairs(p: [__m256i; 4]) -> __m256i {
        let h01 = _mm256_hadd_epi32(p[0], p[1]); // [r0 r0 r2 r2 | r1 r1 r3 r3]
        let h23 = _mm256_hadd_epi32(p[2], p[3]); // [r4 r4 r6 r6 | r5 r5 r7 r7]
        let h = _mm256_hadd_epi32(h01, h23); // [r0 r2 r4 r6 | r1 r3 r5 r7]
        _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// Eight rows' partial sums (eight lanes each) to the row totals `[r0, .., r7]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce8(v: [__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(v[0], v[1]);
        let h23 = _mm256_hadd_epi32(v[2], v[3]);
        let h45 = _mm256_hadd_epi32(v[4], v[5]);
        let h67 = _mm256_hadd_epi32(v[6], v[7]);
        let a = _mm256_hadd_epi32(h01, h23); // [r0 r1 r2 r3 (lo halves) | (hi halves)]
        let b = _mm256_hadd_epi32(h45, h67); // [r4 r5 r6 r7 (lo halves) | (hi halves)]
        _mm256_add_epi32(
            _mm256_permute2x128_si256(a, b, 0x20),
            _mm256_permute2x128_si256(a, b, 0x31),
        )
    }

    /// The f16 words at `base + r * rb` (low half) and 2 bytes further (high half) for rows
    /// r = 0..8, converted through the same table as the single-row kernels.
    ///
    /// SAFETY: the caller guarantees `base + r * rb .. + 4` is readable for r = 0..8.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn f16_pairs(base: *const u8, rb: usize, lut: &[f32]) -> (__m256, __m256) {
        // Plain loads, not a gather: in decode these are the first touches of each row's cache
        // line, and a gather waiting on eight misses stalls the pipeline.
        let ld = |r: usize| (base.add(r * rb) as *const i32).read_unaligned();
        let w = _mm256_setr_epi32(ld(0), ld(1), ld(2), ld(3), ld(4), ld(5), ld(6), ld(7));
        let lo = _mm256_and_si256(w, _mm256_set1_epi32(0xffff));
        let hi = _mm256_srli_epi32(w, 16);
        // SAFETY: indices are u16 values, the table has 65536 entries.
        (
            _mm256_i32gather_ps::<4>(lut.as_ptr(), lo),
            _mm256_i32gather_ps::<4>(lut.as_ptr(), hi),
        )
    }

    /// Eight-row kernels: integer dots of eight rows per block share the activation loads and
    /// one horizontal reduction; the eight rows' float sequences run one per SIMD lane with
    /// plain `mul`/`add` (never FMA), in the order of `row_fns!`:
    /// `acc = acc + (dw * (d * isum) + mw * s)`. Fewer than eight rows left: the generic tail.
    macro_rules! simd_rows {
        ($(#[$attr:meta])* $q41:ident, $q80:ident, $tail41:path, $tail80:path, $pair:path, $q8dot:path) => {
            $(#[$attr])*
            pub(super) unsafe fn $q41(rows: &[u8], a: &QRow, out: &mut [f32]) {
                let lut = f16_lut();
                let nb = a.blocks();
                let rb = nb * Q4_1_BYTES;
                let full = out.len() / 8 * 8;
                for g in 0..full / 8 {
                    // SAFETY: rows g*8 .. g*8+8 lie inside `rows` (checked by the caller).
                    let base = rows.as_ptr().add(g * 8 * rb);
                    let mut acc = _mm256_setzero_ps();
                    let next = base.wrapping_add(8 * rb);
                    let step = (8 * rb).div_ceil(nb).next_multiple_of(64);
                    for b in 0..nb {
                        prefetch_span(next.wrapping_add(b * step), step);
                        let qp = a.q.as_ptr().add(b * QK);
                        let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp as *const __m128i));
                        let ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add(16) as *const __m128i));
                        let mut p = [_mm256_setzero_si256(); 4];
                        for (k, pk) in p.iter_mut().enumerate() {
                            let p0 = base.add(2 * k * rb + b * Q4_1_BYTES + 4);
                            let (lo, hi) = q4_pair(p0, p0.add(rb));
                            *pk = $pair(lo, hi, alo, ahi);
                        }
                        let isum = reduce_pairs(p);
                        let (dw, mw) = f16_pairs(base.add(b * Q4_1_BYTES), rb, lut);
                        let t = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                        let u = _mm256_mul_ps(mw, _mm256_set1_ps(a.s[b]));
                        acc = _mm256_add_ps(acc, _mm256_add_ps(t, u));
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
                }
                $tail41(&rows[full * rb..], a, &mut out[full..]);
            }
            $(#[$attr])*
            pub(super) unsafe fn $q80(rows: &[u8], a: &QRow, out: &mut [f32]) {
                let lut = f16_lut();
                let nb = a.blocks();
                let rb = nb * Q8_0_BYTES;
                let full = out.len() / 8 * 8;
                for g in 0..full / 8 {
                    // SAFETY: as above.
                    let base = rows.as_ptr().add(g * 8 * rb);
                    let mut acc = _mm256_setzero_ps();
                    let next = base.wrapping_add(8 * rb);
                    let step = (8 * rb).div_ceil(nb).next_multiple_of(64);
                    for b in 0..nb {
                        prefetch_span(next.wrapping_add(b * step), step);
                        let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
                        let mut v = [_mm256_setzero_si256(); 8];
                        for (r, vr) in v.iter_mut().enumerate() {
                            *vr = $q8dot(base.add(r * rb + b * Q8_0_BYTES + 2), av);
                        }
                        let isum = reduce8(v);
                        // The low f16 of each gathered word is the block scale (a block is 34
                        // bytes, so the 4-byte read stays inside it).
                        let (dw, _) = f16_pairs(base.add(b * Q8_0_BYTES), rb, lut);
                        let t = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                        acc = _mm256_add_ps(acc, t);
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
                }
                $tail80(&rows[full * rb..], a, &mut out[full..]);
            }
        };
    }

    rows_fns!(
        #[target_feature(enable = "sse2")]
        q4_1_rows_sse2,
        q8_0_rows_sse2,
        isum_q4_1_sse2,
        isum_q8_0_sse2
    );
    rows_fns!(
        #[target_feature(enable = "avx2")]
        q4_1_rows_tail_avx2,
        q8_0_rows_tail_avx2,
        isum_q4_1_avx2,
        isum_q8_0_avx2
    );
    rows_fns!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        q4_1_rows_tail_vnni,
        q8_0_rows_tail_vnni,
        isum_q4_1_vnni,
        isum_q8_0_vnni
    );
    simd_rows!(
        #[target_feature(enable = "avx2")]
        q4_1_rows_avx2,
        q8_0_rows_avx2,
        q4_1_rows_tail_avx2,
        q8_0_rows_tail_avx2,
        q4_pair_dot_avx2,
        q8_dot_avx2
    );
    simd_rows!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        q4_1_rows_vnni,
        q8_0_rows_vnni,
        q4_1_rows_tail_vnni,
        q8_0_rows_tail_vnni,
        q4_pair_dot_vnni,
        q8_dot_vnni
    );

    row_fns!(
        #[target_feature(enable = "sse2")]
        q4_1_sse2,
        q8_0_sse2,
        isum_q4_1_sse2,
        isum_q8_0_sse2
    );
    row_fns!(
        #[target_feature(enable = "avx2")]
        q4_1_avx2,
        q8_0_avx2,
        isum_q4_1_avx2,
        isum_q8_0_avx2
    );
    row_fns!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        q4_1_vnni,
        q8_0_vnni,
        isum_q4_1_vnni,
        isum_q8_0_vnni
    );
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use std::arch::aarch64::*;

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_q4_1_neon(nib: &[u8], q: &[i8]) -> i32 {
        let v = vld1q_u8(nib.as_ptr());
        let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
        let hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        let a0 = vld1q_s8(q.as_ptr());
        let a1 = vld1q_s8(q.as_ptr().add(16));
        let mut acc = vdupq_n_s32(0);
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(lo), vget_low_s8(a0)));
        acc = vpadalq_s16(acc, vmull_high_s8(lo, a0));
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(hi), vget_low_s8(a1)));
        acc = vpadalq_s16(acc, vmull_high_s8(hi, a1));
        vaddvq_s32(acc)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_q8_0_neon(w: &[u8], q: &[i8]) -> i32 {
        let w0 = vld1q_s8(w.as_ptr() as *const i8);
        let w1 = vld1q_s8(w.as_ptr().add(16) as *const i8);
        let a0 = vld1q_s8(q.as_ptr());
        let a1 = vld1q_s8(q.as_ptr().add(16));
        let mut acc = vdupq_n_s32(0);
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w0), vget_low_s8(a0)));
        acc = vpadalq_s16(acc, vmull_high_s8(w0, a0));
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(a1)));
        acc = vpadalq_s16(acc, vmull_high_s8(w1, a1));
        vaddvq_s32(acc)
    }

    row_fns!(
        #[target_feature(enable = "neon")]
        q4_1_neon,
        q8_0_neon,
        isum_q4_1_neon,
        isum_q8_0_neon
    );
    rows_fns!(
        #[target_feature(enable = "neon")]
        q4_1_rows_neon,
        q8_0_rows_neon,
        isum_q4_1_neon,
        isum_q8_0_neon
    );
}

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

    #[test]
    fn every_level_matches_scalar_bit_for_bit() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let nb = 48;
        for trial in 0..50 {
            let x: Vec<f32> = (0..nb * QK)
                .map(|_| (rng(&mut s) % 20001) as f32 / 1000.0 - 10.0)
                .collect();
            let mut a = QRow::default();
            quantize_row(&x, &mut a);
            let mut r4 = vec![0u8; nb * Q4_1_BYTES];
            let mut r8 = vec![0u8; nb * Q8_0_BYTES];
            r4.iter_mut()
                .chain(r8.iter_mut())
                .for_each(|b| *b = rng(&mut s) as u8);
            // Keep scales finite and sane (f16 0x2000..0x3bff), as real models do.
            for b in 0..nb {
                for o in [b * Q4_1_BYTES, b * Q4_1_BYTES + 2] {
                    let h = (0x2000 + (rng(&mut s) % 0x1bff) as u16)
                        | if trial % 2 == 0 { 0 } else { 0x8000 };
                    r4[o..o + 2].copy_from_slice(&h.to_le_bytes());
                }
                let h = 0x2000 + (rng(&mut s) % 0x1bff) as u16;
                r8[b * Q8_0_BYTES..b * Q8_0_BYTES + 2].copy_from_slice(&h.to_le_bytes());
            }
            let base = Kernels::new(KernelLevel::Scalar).unwrap();
            let want4 = base.dot_q4_1(&r4, &a);
            let want8 = base.dot_q8_0(&r8, &a);
            // Cross-check scalar against a plain dequantised sum (correctness, not bit-exactness).
            let mut deq = vec![0f32; nb * QK];
            crate::quant::dequant_q4_1_row(&r4, &mut deq);
            let approx: f64 = deq.iter().zip(&x).map(|(w, v)| *w as f64 * *v as f64).sum();
            let scale: f64 = deq
                .iter()
                .zip(&x)
                .map(|(w, v)| (*w as f64 * *v as f64).abs())
                .sum();
            assert!(
                (approx - want4 as f64).abs() <= 0.02 * scale + 1e-3,
                "{approx} vs {want4}"
            );
            for level in KernelLevel::available() {
                let k = Kernels::new(level).unwrap();
                assert_eq!(
                    k.dot_q4_1(&r4, &a).to_bits(),
                    want4.to_bits(),
                    "{level} q4_1"
                );
                assert_eq!(
                    k.dot_q8_0(&r8, &a).to_bits(),
                    want8.to_bits(),
                    "{level} q8_0"
                );
            }
        }
    }

    /// `n` random rows of `nb` blocks in each format, with sane f16 scales (as real models).
    fn random_rows(s: &mut u64, n: usize, nb: usize, neg: bool) -> (Vec<u8>, Vec<u8>) {
        let mut r4 = vec![0u8; n * nb * Q4_1_BYTES];
        let mut r8 = vec![0u8; n * nb * Q8_0_BYTES];
        r4.iter_mut()
            .chain(r8.iter_mut())
            .for_each(|b| *b = rng(s) as u8);
        for b in 0..n * nb {
            for o in [b * Q4_1_BYTES, b * Q4_1_BYTES + 2] {
                let h = (0x2000 + (rng(s) % 0x1bff) as u16) | if neg { 0x8000 } else { 0 };
                r4[o..o + 2].copy_from_slice(&h.to_le_bytes());
            }
            let h = (0x2000 + (rng(s) % 0x1bff) as u16) | if rng(s) % 2 == 0 { 0x8000 } else { 0 };
            r8[b * Q8_0_BYTES..b * Q8_0_BYTES + 2].copy_from_slice(&h.to_le_bytes());
        }
        (r4, r8)
    }

    #[test]
    fn multi_row_kernels_equal_single_row_scalar_bit_for_bit() {
        let mut s = 0x1234_5678_9ABC_DEF1u64;
        for (trial, &(n, nb)) in [
            (1, 18),
            (3, 18),
            (8, 18),
            (9, 48),
            (16, 1),
            (21, 18),
            (40, 5),
        ]
        .iter()
        .enumerate()
        {
            let x: Vec<f32> = (0..nb * QK)
                .map(|_| (rng(&mut s) % 20001) as f32 / 1000.0 - 10.0)
                .collect();
            let mut a = QRow::default();
            quantize_row(&x, &mut a);
            // Extreme codes too: all-max activations and weights hit the integer bounds.
            if trial == 5 {
                a.q.iter_mut().for_each(|v| *v = -127);
            }
            let (mut r4, mut r8) = random_rows(&mut s, n, nb, trial % 2 == 1);
            if trial == 5 {
                for (i, v) in r8.iter_mut().enumerate() {
                    if i % Q8_0_BYTES >= 2 {
                        *v = 0x80;
                    }
                }
                for (i, v) in r4.iter_mut().enumerate() {
                    if i % Q4_1_BYTES >= 4 {
                        *v = 0xff;
                    }
                }
            }
            let base = Kernels::new(KernelLevel::Scalar).unwrap();
            let rb4 = nb * Q4_1_BYTES;
            let rb8 = nb * Q8_0_BYTES;
            let want4: Vec<u32> = r4
                .chunks(rb4)
                .map(|r| base.dot_q4_1(r, &a).to_bits())
                .collect();
            let want8: Vec<u32> = r8
                .chunks(rb8)
                .map(|r| base.dot_q8_0(r, &a).to_bits())
                .collect();
            for level in KernelLevel::available() {
                let k = Kernels::new(level).unwrap();
                let mut o = vec![0f32; n];
                k.dot_rows_q4_1(&r4, &a, &mut o);
                let got: Vec<u32> = o.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want4, "{level} q4_1 rows, n={n} nb={nb}");
                k.dot_rows_q8_0(&r8, &a, &mut o);
                let got: Vec<u32> = o.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want8, "{level} q8_0 rows, n={n} nb={nb}");
            }
        }
    }

    #[test]
    fn levels_parse_and_unavailable_ones_are_refused() {
        assert_eq!("AVX2".parse::<KernelLevel>().unwrap(), KernelLevel::Avx2);
        assert!("mmx".parse::<KernelLevel>().is_err());
        assert!(KernelLevel::Scalar.is_available());
        #[cfg(target_arch = "x86_64")]
        assert!(Kernels::new(KernelLevel::Neon).is_none());
    }
}
