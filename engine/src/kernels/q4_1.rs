//! Q4_1: 32 values in 20 bytes, `f16 d | f16 m | 16 bytes of nibbles`, x = d * q + m
//! (element j < 16 in the low nibble of byte j, element j + 16 in its high nibble).
//!
//! Per block: `isum = sum q * q_a` (exact), then `acc = acc + (d * (d_a * isum) + m * s_a)`.

use super::{block_kernels, lut_f16};
use crate::quant::{QRow, QK};

/// Bytes of a Q4_1 block.
pub const Q4_1_BYTES: usize = 20;

/// The one float sequence of a Q4_1 block, given its exact integer dot.
#[inline(always)]
fn step(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32], isum: i32) -> f32 {
    let dw = lut_f16(lut, blk);
    let mw = lut_f16(lut, &blk[2..]);
    acc + (dw * (a.d[b] * isum as f32) + mw * a.s[b])
}

/// The scalar integer dot: the reference.
#[inline(always)]
fn isum_scalar(nib: &[u8], q: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..16 {
        s += (nib[j] & 0x0f) as i32 * q[j] as i32 + (nib[j] >> 4) as i32 * q[j + 16] as i32;
    }
    s
}

#[inline(always)]
fn step_scalar(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
    step(
        acc,
        blk,
        a,
        b,
        lut,
        isum_scalar(&blk[4..20], &a.q[b * QK..b * QK + QK]),
    )
}

block_kernels!(scalar_row, scalar_rows, Q4_1_BYTES, step_scalar);

/// Dequantise one Q4_1 row (tests and references).
pub fn dequant(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q4_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = crate::quant::read_f16(blk);
        let m = crate::quant::read_f16(&blk[2..]);
        for j in 0..16 {
            o[j] = d * (blk[4 + j] & 0x0f) as f32 + m;
            o[j + 16] = d * (blk[4 + j] >> 4) as f32 + m;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::kernels::x86::*;
    use crate::kernels::{f16_lut, TILE_TOKENS};
    use std::arch::x86_64::*;

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn isum_sse2(nib: &[u8], q: &[i8]) -> i32 {
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

    /// The 32 codes as unsigned bytes: elements 0..15 in the low lane, 16..31 high.
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(nib: &[u8]) -> __m256i {
        let raw = _mm_loadu_si128(nib.as_ptr() as *const __m128i);
        let m = _mm_set1_epi8(0x0f);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), m),
            _mm_and_si128(raw, m),
        )
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isum_avx2(nib: &[u8], q: &[i8]) -> i32 {
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        // u8 (0..15) * i8 pairs summed to i16: |sum| <= 2*15*127, no saturation.
        hsum256(dot_u8i8_avx2(codes(nib), a))
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn isum_vnni(nib: &[u8], q: &[i8]) -> i32 {
        let a = _mm256_loadu_si256(q.as_ptr() as *const __m256i);
        hsum256(dot_u8i8_vnni(codes(nib), a))
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn step_sse2(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
        step(
            acc,
            blk,
            a,
            b,
            lut,
            isum_sse2(&blk[4..20], &a.q[b * QK..b * QK + QK]),
        )
    }
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
        step(
            acc,
            blk,
            a,
            b,
            lut,
            isum_avx2(&blk[4..20], &a.q[b * QK..b * QK + QK]),
        )
    }
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn step_vnni(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
        step(
            acc,
            blk,
            a,
            b,
            lut,
            isum_vnni(&blk[4..20], &a.q[b * QK..b * QK + QK]),
        )
    }

    block_kernels!(
        #[target_feature(enable = "sse2")]
        sse2_row,
        sse2_rows,
        Q4_1_BYTES,
        step_sse2
    );
    block_kernels!(
        #[target_feature(enable = "avx2")]
        avx2_row,
        avx2_tail,
        Q4_1_BYTES,
        step_avx2
    );
    block_kernels!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_row,
        vnni_tail,
        Q4_1_BYTES,
        step_vnni
    );

    /// Two rows' codes of one block, row 0 in the low 128-bit lane and row 1 in the high:
    /// `(low nibbles = elements 0..15, high nibbles = elements 16..31)`.
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pair(p0: *const u8, p1: *const u8) -> (__m256i, __m256i) {
        let raw = _mm256_loadu2_m128i(p1 as *const __m128i, p0 as *const __m128i);
        let m = _mm256_set1_epi8(0x0f);
        (
            _mm256_and_si256(raw, m),
            _mm256_and_si256(_mm256_srli_epi16(raw, 4), m),
        )
    }

    /// Integer dots of a row pair (see [`pair`]) with the activation halves broadcast to both
    /// lanes: four partial sums per row, `[row 0 | row 1]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_dot_avx2(lo: __m256i, hi: __m256i, alo: __m256i, ahi: __m256i) -> __m256i {
        // Each maddubs pair is <= 2*15*127 = 3810, the sum of two <= 7620: no i16 overflow.
        let p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
        _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    fn pair_dot_vnni(lo: __m256i, hi: __m256i, alo: __m256i, ahi: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo),
            hi,
            ahi,
        )
    }

    /// Eight-row kernels: the integer dots of eight rows per block share the activation loads
    /// and one horizontal reduction; the eight rows' float sequences run one per SIMD lane with
    /// plain `mul`/`add` (never FMA) in the order of [`step`]:
    /// `acc = acc + (dw * (d * isum) + mw * s)`. Fewer than eight rows left: the generic tail.
    macro_rules! eight_rows {
        ($(#[$attr:meta])* $name:ident, $tail:path, $pair_dot:path) => {
            /// # Safety
            ///
            /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
            /// table is built only for levels the CPU has), and every block it reads must lie
            /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
            $(#[$attr])*
            pub(crate) unsafe fn $name(rows: &[u8], a: &QRow, out: &mut [f32]) {
                let lut = f16_lut();
                let nb = a.blocks();
                let rb = nb * Q4_1_BYTES;
                let full = out.len() / 8 * 8;
                for g in 0..full / 8 {
                    // SAFETY: rows g*8 .. g*8+8 lie inside `rows` (checked by the caller).
                    let base = rows.as_ptr().add(g * 8 * rb);
                    let mut acc = _mm256_setzero_ps();
                    let next = base.wrapping_add(8 * rb);
                    let span = (8 * rb).div_ceil(nb).next_multiple_of(64);
                    for b in 0..nb {
                        prefetch_span(next.wrapping_add(b * span), span);
                        let qp = a.q.as_ptr().add(b * QK);
                        let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp as *const __m128i));
                        let ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add(16) as *const __m128i));
                        let mut p = [_mm256_setzero_si256(); 4];
                        for (k, pk) in p.iter_mut().enumerate() {
                            let p0 = base.add(2 * k * rb + b * Q4_1_BYTES + 4);
                            let (lo, hi) = pair(p0, p0.add(rb));
                            *pk = $pair_dot(lo, hi, alo, ahi);
                        }
                        let isum = reduce_pairs(p);
                        let (dw, mw) = f16_pairs(base.add(b * Q4_1_BYTES), rb, lut);
                        let t = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                        let u = _mm256_mul_ps(mw, _mm256_set1_ps(a.s[b]));
                        acc = _mm256_add_ps(acc, _mm256_add_ps(t, u));
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
                }
                if full < out.len() {
                    $tail(&rows[full * rb..], a, &mut out[full..]);
                }
            }
        };
    }

    /// Tile kernels: per block the eight rows' codes (as four row pairs) and scales are
    /// unpacked once, then each token of the tile does its dots, reduction and float sequence
    /// exactly as `eight_rows`.
    macro_rules! tile {
        ($(#[$attr:meta])* $name:ident, $pair_dot:path) => {
            /// # Safety
            ///
            /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
            /// table is built only for levels the CPU has), and every block it reads must lie
            /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
            $(#[$attr])*
            pub(crate) unsafe fn $name(rows: &[u8], acts: &[QRow], out: &mut [f32]) {
                let lut = f16_lut();
                let nb = acts[0].blocks();
                let rb = nb * Q4_1_BYTES;
                let base = rows.as_ptr();
                for (ac, oc) in acts.chunks(TILE_TOKENS).zip(out.chunks_mut(TILE_TOKENS * 8)) {
                    let mut acc = [_mm256_setzero_ps(); TILE_TOKENS];
                    for b in 0..nb {
                        let mut w = [(_mm256_setzero_si256(), _mm256_setzero_si256()); 4];
                        for (k, wk) in w.iter_mut().enumerate() {
                            let p0 = base.add(2 * k * rb + b * Q4_1_BYTES + 4);
                            *wk = pair(p0, p0.add(rb));
                        }
                        let (dw, mw) = f16_pairs(base.add(b * Q4_1_BYTES), rb, lut);
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let Some(a) = ac.get(t) else { break };
                            let qp = a.q.as_ptr().add(b * QK);
                            let alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp as *const __m128i));
                            let ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(qp.add(16) as *const __m128i));
                            let mut p = [_mm256_setzero_si256(); 4];
                            for (pk, (lo, hi)) in p.iter_mut().zip(&w) {
                                *pk = $pair_dot(*lo, *hi, alo, ahi);
                            }
                            let isum = reduce_pairs(p);
                            let x = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                            let u = _mm256_mul_ps(mw, _mm256_set1_ps(a.s[b]));
                            *acc = _mm256_add_ps(*acc, _mm256_add_ps(x, u));
                        }
                    }
                    for (o, acc) in oc.chunks_exact_mut(8).zip(&acc) {
                        _mm256_storeu_ps(o.as_mut_ptr(), *acc);
                    }
                }
            }
        };
    }

    tile!(
        #[target_feature(enable = "avx2")]
        avx2_tile,
        pair_dot_avx2
    );
    tile!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_tile,
        pair_dot_vnni
    );

    eight_rows!(
        #[target_feature(enable = "avx2")]
        avx2_rows,
        avx2_tail,
        pair_dot_avx2
    );
    eight_rows!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_rows,
        vnni_tail,
        pair_dot_vnni
    );
}

#[cfg(target_arch = "aarch64")]
pub(crate) use arm::*;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use std::arch::aarch64::*;

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_neon(nib: &[u8], q: &[i8]) -> i32 {
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

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn step_neon(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
        step(
            acc,
            blk,
            a,
            b,
            lut,
            isum_neon(&blk[4..20], &a.q[b * QK..b * QK + QK]),
        )
    }

    block_kernels!(
        #[target_feature(enable = "neon")]
        neon_row,
        neon_rows,
        Q4_1_BYTES,
        step_neon
    );
}
