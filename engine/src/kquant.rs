//! ggml's Q5_0, Q4_K and Q6_K weight blocks (Qwen2.5 Q4_K_M files), in the engine's design.
//!
//! Layouts (ggml block formats, written from the format description):
//!
//! ```text
//! Q5_0  32 values, 22 bytes: f16 d | u32 qh (LE) | 16 bytes qs
//!       code[i] = nibble(i) | bit i of qh << 4, nibble(i) = qs[i] & 15 (i < 16), qs[i-16] >> 4;
//!       x = d * (code - 16)
//! Q4_K  256 values, 144 bytes: f16 d | f16 dmin | 12 bytes packed 6-bit (scale, min) x 8 | 128 qs
//!       sub-block j (32 values) = low (j even) or high (j odd) nibbles of qs[32*(j/2)..][..32];
//!       x = d * sc_j * q - dmin * m_j
//! Q6_K  256 values, 210 bytes: 128 ql | 64 qh | 16 i8 scales | f16 d
//!       value v = 128n + 32k + l (n < 2, k < 4, l < 32):
//!       low 4 bits: ql[64n + 32(k & 1) + l] >> 4(k >> 1), high 2 bits: qh[32n + l] >> 2k;
//!       x = d * sc[v / 16] * (code - 32)
//! ```
//!
//! The same split as `kernels`: per 32 values (one activation block `b`) an exact integer is
//! computed by whatever instructions the level has, and the float work is one fixed sequence:
//!
//! ```text
//! Q5_0:  acc = acc + d * (d_a * isum)                         isum = sum (code - 16) * q_a
//! Q4_K:  acc = acc + (d * (d_a * (sc_j * isum)) - dmin * (m_j * s_a))   isum = sum q * q_a
//! Q6_K:  acc = acc + d * (d_a * isum)    isum = sc[2j] * sum_{l<16} (c-32) q_a + sc[2j+1] * sum_{l>=16} ...
//! ```
//!
//! blocks in order, sub-blocks in order. All integers are far inside i32 (Q6_K's worst case
//! 2 * 128 * 16 * 32 * 127 < 2^24.1; `isum as f32` rounds the same way on every CPU).
//! Levels: scalar (the reference), AVX2 (also used at the AVX-512 level), NEON; the SSE2 level
//! uses the scalar integer code for these types. Tests hold every level to scalar bit for bit.

use super::kernels::{f16_lut, lut_f16, KernelLevel, RowFn};
use super::quant::{f16_to_f32, QRow, QK};
use crate::gguf::GgmlType;

pub const Q5_0_BYTES: usize = 22;
/// Values per K-quant super-block.
pub const QK_K: usize = 256;
pub const Q4_K_BYTES: usize = 144;
pub const Q6_K_BYTES: usize = 210;

/// Whether this module handles matrices of type `ty`.
pub fn handles(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K)
}

/// Bytes of one row of `cols` values, or `None` if `ty` is not ours or `cols` does not fit
/// its block size.
pub fn row_bytes(ty: GgmlType, cols: usize) -> Option<usize> {
    let (per, bytes) = match ty {
        GgmlType::Q5_0 => (QK, Q5_0_BYTES),
        GgmlType::Q4K => (QK_K, Q4_K_BYTES),
        GgmlType::Q6K => (QK_K, Q6_K_BYTES),
        _ => return None,
    };
    cols.is_multiple_of(per).then_some(cols / per * bytes)
}

/// The 6-bit (scale, min) of sub-block `j` (0..8) from a Q4_K block's 12 packed bytes:
/// j < 4: low 6 bits of bytes j and j+4; j >= 4: a nibble of byte j+4 plus the top two bits
/// of bytes j-4 (scale) and j (min).
#[inline(always)]
pub fn q4k_scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 63, sc[j + 4] & 63)
    } else {
        (
            (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4),
            (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
        )
    }
}

/// Dequantise one row of any type the engine reads (token embeddings, tests, references).
/// Float order as in ggml / `gguf.quants`: Q4_K `(d*sc)*q - dmin*m`, Q6_K `(d*sc)*q`.
pub fn dequant_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::Q8_0 => super::quant::dequant_q8_0_row(row, out),
        GgmlType::Q4_1 => super::quant::dequant_q4_1_row(row, out),
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::Q5_0 => {
            for (blk, o) in row.chunks_exact(Q5_0_BYTES).zip(out.chunks_exact_mut(QK)) {
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                let mut c = [0u8; 32];
                q5_0_codes(&blk[2..], &mut c);
                for j in 0..QK {
                    o[j] = d * (c[j] as i32 - 16) as f32;
                }
            }
        }
        GgmlType::Q4K => {
            for (blk, o) in row.chunks_exact(Q4_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                let dmin = f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]));
                for j in 0..8 {
                    let (s, m) = q4k_scale_min(&blk[4..16], j);
                    let (d1, m1) = (d * s as f32, dmin * m as f32);
                    let qs = &blk[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32];
                    for l in 0..32 {
                        let q = if j % 2 == 0 { qs[l] & 15 } else { qs[l] >> 4 };
                        o[32 * j + l] = d1 * q as f32 - m1;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (blk, o) in row.chunks_exact(Q6_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let d = f16_to_f32(u16::from_le_bytes([blk[208], blk[209]]));
                for jb in 0..8 {
                    let mut c = [0u8; 32];
                    q6k_codes(blk, jb, &mut c);
                    for (l, &cl) in c.iter().enumerate() {
                        let v = 32 * jb + l;
                        let sc = blk[192 + v / 16] as i8;
                        o[v] = (d * sc as f32) * (cl as i32 - 32) as f32;
                    }
                }
            }
        }
        other => panic!("dequant_row: unsupported type {other:?}"),
    }
}

/// The 32 unsigned 5-bit codes of a Q5_0 block (`b` = qh then qs).
#[inline(always)]
fn q5_0_codes(b: &[u8], c: &mut [u8; 32]) {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let qs = &b[4..20];
    for j in 0..16 {
        c[j] = (qs[j] & 15) | ((((qh >> j) & 1) as u8) << 4);
        c[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
}

/// Where 32-value group `jb` (0..8) of a Q6_K block lives: (ql offset, low shift, qh offset,
/// high shift).
#[inline(always)]
fn q6k_place(jb: usize) -> (usize, u32, usize, u32) {
    let (n, k) = (jb / 4, jb % 4);
    (
        64 * n + 32 * (k & 1),
        4 * (k >> 1) as u32,
        128 + 32 * n,
        2 * k as u32,
    )
}

/// The 32 unsigned 6-bit codes of group `jb` of a Q6_K block.
#[inline(always)]
fn q6k_codes(blk: &[u8], jb: usize, c: &mut [u8; 32]) {
    let (lo, ls, hi, hs) = q6k_place(jb);
    for l in 0..32 {
        c[l] = ((blk[lo + l] >> ls) & 15) | (((blk[hi + l] >> hs) & 3) << 4);
    }
}

/// The K-quant/Q5_0 kernels of one level. Built only by [`KKernels::new`], which checks the
/// CPU features: that check is what makes calling the `unsafe fn`s sound.
#[derive(Clone, Copy)]
pub struct KKernels {
    pub level: KernelLevel,
    q5_0: RowFn,
    q4_k: RowFn,
    q6_k: RowFn,
}

impl KKernels {
    pub fn new(level: KernelLevel) -> Option<KKernels> {
        if !level.is_available() {
            return None;
        }
        let (q5_0, q4_k, q6_k): (RowFn, RowFn, RowFn) = match level {
            KernelLevel::Scalar | KernelLevel::Sse2 => (scalar::q5_0, scalar::q4_k, scalar::q6_k),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 | KernelLevel::Avx512 => (x86::q5_0, x86::q4_k, x86::q6_k),
            #[cfg(target_arch = "aarch64")]
            KernelLevel::Neon => (arm::q5_0, arm::q4_k, arm::q6_k),
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(KKernels {
            level,
            q5_0,
            q4_k,
            q6_k,
        })
    }

    /// Dot of one row of type `ty` (Q5_0, Q4_K or Q6_K) with `a`. Lengths checked here, once.
    #[inline]
    pub fn dot(&self, ty: GgmlType, row: &[u8], a: &QRow) -> f32 {
        let nb = a.blocks();
        assert!(a.q.len() == nb * QK && a.s.len() == nb);
        let f = match ty {
            GgmlType::Q5_0 => {
                assert!(row.len() == nb * Q5_0_BYTES);
                self.q5_0
            }
            GgmlType::Q4K => {
                assert!(nb.is_multiple_of(8) && row.len() == nb / 8 * Q4_K_BYTES);
                self.q4_k
            }
            GgmlType::Q6K => {
                assert!(nb.is_multiple_of(8) && row.len() == nb / 8 * Q6_K_BYTES);
                self.q6_k
            }
            other => panic!("KKernels::dot: unsupported type {other:?}"),
        };
        // SAFETY: `new` verified the CPU features of `self.level`; lengths checked above.
        unsafe { f(row, a) }
    }
}

/// Stamp out the row functions from integer-dot expressions; the float sequence is textually
/// the same for every level.
///
/// * `$i50(qh_qs: &[u8] /*20*/, q: &[i8] /*32*/) -> i32`: sum (code - 16) * q
/// * `$i4k(blk: &[u8], q: &[i8] /*256*/) -> [i32; 8]`: per sub-block j, sum q_j * q_a
/// * `$i6k(blk: &[u8], q: &[i8] /*256*/) -> [i32; 8]`: per 32 values, the scale-weighted
///   sum (code - 32) * q_a
macro_rules! k_row_fns {
    ($(#[$attr:meta])* $q50:ident, $q4k:ident, $q6k:ident, $i50:path, $i4k:path, $i6k:path) => {
        $(#[$attr])*
        pub(super) unsafe fn $q50(row: &[u8], a: &QRow) -> f32 {
            let lut = f16_lut();
            let mut acc = 0.0f32;
            for (b, blk) in row.chunks_exact(Q5_0_BYTES).enumerate() {
                let dw = lut_f16(lut, blk);
                let isum = $i50(&blk[2..22], &a.q[b * QK..b * QK + QK]);
                acc += dw * (a.d[b] * isum as f32);
            }
            acc
        }
        $(#[$attr])*
        pub(super) unsafe fn $q4k(row: &[u8], a: &QRow) -> f32 {
            let lut = f16_lut();
            let mut acc = 0.0f32;
            for (sb, blk) in row.chunks_exact(Q4_K_BYTES).enumerate() {
                let d = lut_f16(lut, blk);
                let dmin = lut_f16(lut, &blk[2..]);
                let sc = &blk[4..16];
                let isums = $i4k(blk, &a.q[sb * QK_K..(sb + 1) * QK_K]);
                for (j, &isum) in isums.iter().enumerate() {
                    let (s, m) = q4k_scale_min(sc, j);
                    let b = sb * 8 + j;
                    acc += d * (a.d[b] * (s as i32 * isum) as f32) - dmin * (m as f32 * a.s[b]);
                }
            }
            acc
        }
        $(#[$attr])*
        pub(super) unsafe fn $q6k(row: &[u8], a: &QRow) -> f32 {
            let lut = f16_lut();
            let mut acc = 0.0f32;
            for (sb, blk) in row.chunks_exact(Q6_K_BYTES).enumerate() {
                let d = lut_f16(lut, &blk[208..]);
                let isums = $i6k(blk, &a.q[sb * QK_K..(sb + 1) * QK_K]);
                for (jb, &isum) in isums.iter().enumerate() {
                    let b = sb * 8 + jb;
                    acc += d * (a.d[b] * isum as f32);
                }
            }
            acc
        }
    };
}

pub(crate) mod scalar {
    use super::*;

    #[inline(always)]
    pub(crate) fn isum_q5_0(b: &[u8], q: &[i8]) -> i32 {
        let mut c = [0u8; 32];
        q5_0_codes(b, &mut c);
        let mut s = 0i32;
        for j in 0..32 {
            s += (c[j] as i32 - 16) * q[j] as i32;
        }
        s
    }

    #[inline(always)]
    pub(crate) fn isum_q4_k(qs: &[u8], q: &[i8]) -> (i32, i32) {
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            lo += (qs[l] & 15) as i32 * q[l] as i32;
            hi += (qs[l] >> 4) as i32 * q[32 + l] as i32;
        }
        (lo, hi)
    }

    #[inline(always)]
    pub(crate) fn isum_q6_k(blk: &[u8], jb: usize, q: &[i8]) -> i32 {
        let mut c = [0u8; 32];
        q6k_codes(blk, jb, &mut c);
        let (mut s0, mut s1) = (0i32, 0i32);
        for l in 0..16 {
            s0 += (c[l] as i32 - 32) * q[l] as i32;
            s1 += (c[16 + l] as i32 - 32) * q[16 + l] as i32;
        }
        (blk[192 + 2 * jb] as i8) as i32 * s0 + (blk[193 + 2 * jb] as i8) as i32 * s1
    }

    #[inline(always)]
    pub(crate) fn sb_q4_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let mut r = [0i32; 8];
        for i in 0..4 {
            (r[2 * i], r[2 * i + 1]) =
                isum_q4_k(&blk[16 + 32 * i..48 + 32 * i], &q[64 * i..64 * i + 64]);
        }
        r
    }

    #[inline(always)]
    pub(crate) fn sb_q6_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let mut r = [0i32; 8];
        for (jb, o) in r.iter_mut().enumerate() {
            *o = isum_q6_k(blk, jb, &q[32 * jb..32 * jb + 32]);
        }
        r
    }

    k_row_fns!(q5_0, q4_k, q6_k, isum_q5_0, sb_q4_k, sb_q6_k);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum256(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// Signed i8 weights (|w| <= 128) times i8 activations, pairwise summed to i16
    /// (|pair| <= 2 * 128 * 127 < 2^15: no saturation).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot_i8_pairs(w: __m256i, a: __m256i) -> __m256i {
        _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_q5_0(b: &[u8], q: &[i8]) -> i32 {
        let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let raw = _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i);
        let m4 = _mm_set1_epi8(0x0f);
        let nib = _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), m4),
            _mm_and_si128(raw, m4),
        );
        // Byte i gets byte i/8 of qh, then tests bit i%8.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0x0000_0000_0000_0000,
            ),
        );
        let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bits), bits);
        let codes = _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
        let w = _mm256_sub_epi8(codes, _mm256_set1_epi8(16));
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        hsum256(_mm256_madd_epi16(dot_i8_pairs(w, a), _mm256_set1_epi16(1)))
    }

    /// The eight lane sums of eight vectors at once: `out[i] = sum of v[i]'s i32 lanes`.
    /// Integer additions only, so the grouping cannot change a result.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum8(v: [__m256i; 8]) -> [i32; 8] {
        let h01 = _mm256_hadd_epi32(v[0], v[1]);
        let h23 = _mm256_hadd_epi32(v[2], v[3]);
        let h45 = _mm256_hadd_epi32(v[4], v[5]);
        let h67 = _mm256_hadd_epi32(v[6], v[7]);
        // Per 128-bit lane: partial sums of [v0, v1, v2, v3] (resp. v4..v7).
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        let s0 = _mm_add_epi32(
            _mm256_castsi256_si128(h0123),
            _mm256_extracti128_si256(h0123, 1),
        );
        let s1 = _mm_add_epi32(
            _mm256_castsi256_si128(h4567),
            _mm256_extracti128_si256(h4567, 1),
        );
        let mut out = [0i32; 8];
        // SAFETY: `out` has room for 2 x 4 i32 (unaligned stores).
        unsafe {
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s0);
            _mm_storeu_si128(out.as_mut_ptr().add(4) as *mut __m128i, s1);
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_q4_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let m4 = _mm256_set1_epi8(0x0f);
        let one = _mm256_set1_epi16(1);
        let mut v = [_mm256_setzero_si256(); 8];
        for i in 0..4 {
            let raw = _mm256_loadu_si256(blk.as_ptr().add(16 + 32 * i) as *const __m256i);
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            let a0 = _mm256_loadu_si256(q.as_ptr().add(64 * i) as *const __m256i);
            let a1 = _mm256_loadu_si256(q.as_ptr().add(64 * i + 32) as *const __m256i);
            // u8 (0..15) * i8 pairs: |pair| <= 2 * 15 * 128, no saturation.
            v[2 * i] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), one);
            v[2 * i + 1] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), one);
        }
        hsum8(v)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_q6_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let mut v = [_mm256_setzero_si256(); 8];
        for (jb, o) in v.iter_mut().enumerate() {
            *o = q6_k_lanes(blk, jb, &q[32 * jb..32 * jb + 32]);
        }
        hsum8(v)
    }

    /// Group `jb`'s scale-weighted products as eight i32 lanes (summed by `hsum8`).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q6_k_lanes(blk: &[u8], jb: usize, q: &[i8]) -> __m256i {
        let (lo, ls, hi, hs) = q6k_place(jb);
        let l = _mm256_loadu_si256(blk.as_ptr().add(lo) as *const __m256i);
        let h = _mm256_loadu_si256(blk.as_ptr().add(hi) as *const __m256i);
        let l = _mm256_and_si256(
            _mm256_srl_epi16(l, _mm_cvtsi32_si128(ls as i32)),
            _mm256_set1_epi8(0x0f),
        );
        let h = _mm256_and_si256(
            _mm256_srl_epi16(h, _mm_cvtsi32_si128(hs as i32)),
            _mm256_set1_epi8(3),
        );
        let codes = _mm256_or_si256(l, _mm256_slli_epi16(h, 4));
        let w = _mm256_sub_epi8(codes, _mm256_set1_epi8(32));
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        // i16 lanes 0..7 hold values 0..15 (scale 2jb), lanes 8..15 values 16..31 (2jb+1);
        // |pair * scale| <= 8128 * 128, exact in the i32 sums.
        let sc = _mm256_set_m128i(
            _mm_set1_epi16((blk[193 + 2 * jb] as i8) as i16),
            _mm_set1_epi16((blk[192 + 2 * jb] as i8) as i16),
        );
        _mm256_madd_epi16(dot_i8_pairs(w, a), sc)
    }

    k_row_fns!(
        #[target_feature(enable = "avx2")]
        q5_0,
        q4_k,
        q6_k,
        isum_q5_0,
        isum_q4_k,
        isum_q6_k
    );
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use std::arch::aarch64::*;

    /// Sum of w[i] * a[i] over 16 lanes, exact in i32.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot16(w: int8x16_t, a: int8x16_t) -> i32 {
        let acc = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
        let acc = vpadalq_s16(acc, vmull_high_s8(w, a));
        vaddvq_s32(acc)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_q5_0(b: &[u8], q: &[i8]) -> i32 {
        let raw = vld1q_u8(b.as_ptr().add(4));
        let bits = vld1q_u8([1u8, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128].as_ptr());
        let h0 = vtstq_u8(vcombine_u8(vdup_n_u8(b[0]), vdup_n_u8(b[1])), bits);
        let h1 = vtstq_u8(vcombine_u8(vdup_n_u8(b[2]), vdup_n_u8(b[3])), bits);
        let sixteen = vdupq_n_u8(0x10);
        let c0 = vorrq_u8(vandq_u8(raw, vdupq_n_u8(0x0f)), vandq_u8(h0, sixteen));
        let c1 = vorrq_u8(vshrq_n_u8(raw, 4), vandq_u8(h1, sixteen));
        let w0 = vsubq_s8(vreinterpretq_s8_u8(c0), vdupq_n_s8(16));
        let w1 = vsubq_s8(vreinterpretq_s8_u8(c1), vdupq_n_s8(16));
        dot16(w0, vld1q_s8(q.as_ptr())) + dot16(w1, vld1q_s8(q.as_ptr().add(16)))
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_q4_k(qs: &[u8], q: &[i8]) -> (i32, i32) {
        let m4 = vdupq_n_u8(0x0f);
        let r0 = vld1q_u8(qs.as_ptr());
        let r1 = vld1q_u8(qs.as_ptr().add(16));
        let lo0 = vreinterpretq_s8_u8(vandq_u8(r0, m4));
        let lo1 = vreinterpretq_s8_u8(vandq_u8(r1, m4));
        let hi0 = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
        let hi1 = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
        let p = q.as_ptr();
        (
            dot16(lo0, vld1q_s8(p)) + dot16(lo1, vld1q_s8(p.add(16))),
            dot16(hi0, vld1q_s8(p.add(32))) + dot16(hi1, vld1q_s8(p.add(48))),
        )
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_q6_k(blk: &[u8], jb: usize, q: &[i8]) -> i32 {
        let (lo, ls, hi, hs) = q6k_place(jb);
        let lsh = vdupq_n_s8(-(ls as i8));
        let hsh = vdupq_n_s8(-(hs as i8));
        let mut s = [0i32; 2];
        for (h, sh) in s.iter_mut().enumerate() {
            let l = vandq_u8(
                vshlq_u8(vld1q_u8(blk.as_ptr().add(lo + 16 * h)), lsh),
                vdupq_n_u8(15),
            );
            let x = vandq_u8(
                vshlq_u8(vld1q_u8(blk.as_ptr().add(hi + 16 * h)), hsh),
                vdupq_n_u8(3),
            );
            let c = vorrq_u8(l, vshlq_n_u8(x, 4));
            let w = vsubq_s8(vreinterpretq_s8_u8(c), vdupq_n_s8(32));
            *sh = dot16(w, vld1q_s8(q.as_ptr().add(16 * h)));
        }
        (blk[192 + 2 * jb] as i8) as i32 * s[0] + (blk[193 + 2 * jb] as i8) as i32 * s[1]
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn sb_q4_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let mut r = [0i32; 8];
        for i in 0..4 {
            (r[2 * i], r[2 * i + 1]) =
                isum_q4_k(&blk[16 + 32 * i..48 + 32 * i], &q[64 * i..64 * i + 64]);
        }
        r
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn sb_q6_k(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let mut r = [0i32; 8];
        for (jb, o) in r.iter_mut().enumerate() {
            *o = isum_q6_k(blk, jb, &q[32 * jb..32 * jb + 32]);
        }
        r
    }

    k_row_fns!(
        #[target_feature(enable = "neon")]
        q5_0,
        q4_k,
        q6_k,
        isum_q5_0,
        sb_q4_k,
        sb_q6_k
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

    /// Random blocks with finite f16 scales in 0x2000..0x3bff (sign by `neg`), as real models.
    fn random_row(ty: GgmlType, nb: usize, s: &mut u64, neg: bool) -> Vec<u8> {
        let bytes = row_bytes(ty, nb * QK).unwrap();
        let mut r: Vec<u8> = (0..bytes).map(|_| rng(s) as u8).collect();
        let half = |s: &mut u64| {
            ((0x2000 + (rng(s) % 0x1bff) as u16) | if neg { 0x8000 } else { 0 }).to_le_bytes()
        };
        match ty {
            GgmlType::Q5_0 => {
                for b in r.chunks_exact_mut(Q5_0_BYTES) {
                    b[..2].copy_from_slice(&half(s));
                }
            }
            GgmlType::Q4K => {
                for b in r.chunks_exact_mut(Q4_K_BYTES) {
                    b[..2].copy_from_slice(&half(s));
                    b[2..4].copy_from_slice(&half(s));
                }
            }
            GgmlType::Q6K => {
                for b in r.chunks_exact_mut(Q6_K_BYTES) {
                    b[208..].copy_from_slice(&half(s));
                }
            }
            _ => unreachable!(),
        }
        r
    }

    #[test]
    fn every_level_matches_scalar_bit_for_bit() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let nb = 48; // 6 super-blocks
        let base = KKernels::new(KernelLevel::Scalar).unwrap();
        for trial in 0..60 {
            let x: Vec<f32> = (0..nb * QK)
                .map(|_| (rng(&mut s) % 20001) as f32 / 1000.0 - 10.0)
                .collect();
            let mut a = QRow::default();
            quantize_row(&x, &mut a);
            // Extreme activations too: every code at +-127.
            if trial % 10 == 9 {
                for (i, v) in a.q.iter_mut().enumerate() {
                    *v = if (i + trial) % 3 == 0 { -127 } else { 127 };
                }
                // Keep the quantiser's invariant s = d * sum(q) (the Q4_K min term reads it).
                for b in 0..nb {
                    let sum: i32 = a.q[b * QK..(b + 1) * QK].iter().map(|&v| v as i32).sum();
                    a.s[b] = a.d[b] * sum as f32;
                }
            }
            for ty in [GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K] {
                let mut row = random_row(ty, nb, &mut s, trial % 2 == 1);
                if trial % 10 == 8 {
                    // Extreme weights: all code bits set, Q6_K scales at -128.
                    for (i, b) in row.iter_mut().enumerate() {
                        let keep = match ty {
                            GgmlType::Q5_0 => i % Q5_0_BYTES < 2,
                            GgmlType::Q4K => i % Q4_K_BYTES < 4,
                            _ => i % Q6_K_BYTES >= 208,
                        };
                        if !keep {
                            *b = if ty == GgmlType::Q6K && (192..208).contains(&(i % Q6_K_BYTES)) {
                                0x80
                            } else {
                                0xff
                            };
                        }
                    }
                }
                let want = base.dot(ty, &row, &a);
                // Scalar against a plain dequantised sum (correctness, not bit-exactness).
                let mut deq = vec![0f32; nb * QK];
                dequant_row(ty, &row, &mut deq);
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
                    (approx - want as f64).abs() <= 1e-5 * scale + 1e-3,
                    "{ty:?}: {approx} vs {want}"
                );
                for level in KernelLevel::available() {
                    let k = KKernels::new(level).unwrap();
                    assert_eq!(
                        k.dot(ty, &row, &a).to_bits(),
                        want.to_bits(),
                        "{level} {ty:?} trial {trial}"
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
        dequant_row(GgmlType::Q5_0, &b, &mut out);
        assert_eq!(out, (0..32).map(|i| i as f32 - 16.0).collect::<Vec<_>>());
        // Q4_K scale packing: sub-block j gets scale j+1 and min 2j+1 (needs the high bits).
        let mut sc = [0u8; 12];
        for j in 0..8 {
            let (s, m) = (
                (j + 1) as u8 + if j >= 4 { 40 } else { 0 },
                (2 * j + 1) as u8,
            );
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
            let want = (
                (j + 1) as u8 + if j >= 4 { 40 } else { 0 },
                (2 * j + 1) as u8,
            );
            assert_eq!(q4k_scale_min(&sc, j), want, "sub-block {j}");
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
        dequant_row(GgmlType::Q6K, &blk, &mut out);
        assert_eq!(
            out[229],
            (229 / 16 - 8) as f32 * ((0xA | 0b10 << 4) - 32) as f32
        );
        assert_eq!(out[228], (229 / 16 - 8) as f32 * -32.0);
    }
}
