//! Q8_0: 32 values in 34 bytes, `f16 d | 32 i8`, x = d * q.
//!
//! Per block: `isum = sum q * q_a` (exact), then `acc = acc + d * (d_a * isum)`.

use super::{block_kernels, lut_f16};
use crate::quant::{QRow, QK};

/// Bytes of a Q8_0 block.
pub const Q8_0_BYTES: usize = 34;

/// The one float sequence of a Q8_0 block, given its exact integer dot.
#[inline(always)]
fn step(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32], isum: i32) -> f32 {
    acc + lut_f16(lut, blk) * (a.d[b] * isum as f32)
}

/// The scalar integer dot: the reference.
#[inline(always)]
fn isum_scalar(w: &[u8], q: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..32 {
        s += (w[j] as i8) as i32 * q[j] as i32;
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
        isum_scalar(&blk[2..34], &a.q[b * QK..b * QK + QK]),
    )
}

block_kernels!(scalar_row, scalar_rows, Q8_0_BYTES, step_scalar);

/// Dequantise one Q8_0 row (token embedding lookup).
pub fn dequant(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = crate::quant::read_f16(blk);
        for j in 0..QK {
            o[j] = d * (blk[2 + j] as i8) as f32;
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
    unsafe fn isum_sse2(w: &[u8], q: &[i8]) -> i32 {
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

    /// One block (32 i8 at `w`) times the activation block: eight partial sums. |w| as u8
    /// times a with w's sign: pairs <= 2*128*127 < 2^15, no saturation.
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(w: *const u8, a: __m256i) -> __m256i {
        let w = _mm256_loadu_si256(w as *const __m256i);
        _mm256_madd_epi16(dot_i8_pairs(w, a), _mm256_set1_epi16(1))
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn dot_vnni(w: *const u8, a: __m256i) -> __m256i {
        let w = _mm256_loadu_si256(w as *const __m256i);
        _mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(w, w),
            _mm256_sign_epi8(a, w),
        )
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
            isum_sse2(&blk[2..34], &a.q[b * QK..b * QK + QK]),
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
        let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
        step(
            acc,
            blk,
            a,
            b,
            lut,
            hsum256(dot_avx2(blk.as_ptr().add(2), av)),
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
        let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
        step(
            acc,
            blk,
            a,
            b,
            lut,
            hsum256(dot_vnni(blk.as_ptr().add(2), av)),
        )
    }

    block_kernels!(
        #[target_feature(enable = "sse2")]
        sse2_row,
        sse2_rows,
        Q8_0_BYTES,
        step_sse2
    );
    block_kernels!(
        #[target_feature(enable = "avx2")]
        avx2_row,
        avx2_tail,
        Q8_0_BYTES,
        step_avx2
    );
    block_kernels!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_row,
        vnni_tail,
        Q8_0_BYTES,
        step_vnni
    );

    /// Eight-row kernels: eight rows' integer dots per block share the activation load and one
    /// horizontal reduction; their float sequences run one per lane, in the order of [`step`].
    macro_rules! eight_rows {
        ($(#[$attr:meta])* $name:ident, $tail:path, $dot:path) => {
            /// # Safety
            ///
            /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
            /// table is built only for levels the CPU has), and every block it reads must lie
            /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
            $(#[$attr])*
            pub(crate) unsafe fn $name(rows: &[u8], a: &QRow, out: &mut [f32]) {
                let lut = f16_lut();
                let nb = a.blocks();
                let rb = nb * Q8_0_BYTES;
                let full = out.len() / 8 * 8;
                for g in 0..full / 8 {
                    // SAFETY: rows g*8 .. g*8+8 lie inside `rows` (checked by the caller).
                    let base = rows.as_ptr().add(g * 8 * rb);
                    let mut acc = _mm256_setzero_ps();
                    let next = base.wrapping_add(8 * rb);
                    let span = (8 * rb).div_ceil(nb).next_multiple_of(64);
                    for b in 0..nb {
                        prefetch_span(next.wrapping_add(b * span), span);
                        let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
                        let mut v = [_mm256_setzero_si256(); 8];
                        for (r, vr) in v.iter_mut().enumerate() {
                            *vr = $dot(base.add(r * rb + b * Q8_0_BYTES + 2), av);
                        }
                        let isum = reduce8(v);
                        // The low f16 of each 4-byte word is the block scale (a block is 34
                        // bytes, so the read stays inside it).
                        let (dw, _) = f16_pairs(base.add(b * Q8_0_BYTES), rb, lut);
                        let t = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                        acc = _mm256_add_ps(acc, t);
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
                }
                if full < out.len() {
                    $tail(&rows[full * rb..], a, &mut out[full..]);
                }
            }
        };
    }

    /// Tile kernels: per block the eight rows' weights and scales are loaded once, then each
    /// token of the tile does its dots, reduction and float sequence exactly as `eight_rows`.
    macro_rules! tile {
        ($(#[$attr:meta])* $name:ident, $dot:path) => {
            /// # Safety
            ///
            /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
            /// table is built only for levels the CPU has), and every block it reads must lie
            /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
            $(#[$attr])*
            pub(crate) unsafe fn $name(rows: &[u8], acts: &[QRow], out: &mut [f32]) {
                let lut = f16_lut();
                let nb = acts[0].blocks();
                let rb = nb * Q8_0_BYTES;
                let base = rows.as_ptr();
                for (ac, oc) in acts.chunks(TILE_TOKENS).zip(out.chunks_mut(TILE_TOKENS * 8)) {
                    let mut acc = [_mm256_setzero_ps(); TILE_TOKENS];
                    for b in 0..nb {
                        let mut w = [_mm256_setzero_si256(); 8];
                        for (r, wr) in w.iter_mut().enumerate() {
                            *wr = _mm256_loadu_si256(base.add(r * rb + b * Q8_0_BYTES + 2) as *const __m256i);
                        }
                        let (dw, _) = f16_pairs(base.add(b * Q8_0_BYTES), rb, lut);
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let Some(a) = ac.get(t) else { break };
                            let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
                            let mut v = [_mm256_setzero_si256(); 8];
                            for (vr, wr) in v.iter_mut().zip(&w) {
                                *vr = $dot(*wr, av);
                            }
                            let isum = reduce8(v);
                            let x = _mm256_mul_ps(dw, _mm256_mul_ps(_mm256_set1_ps(a.d[b]), _mm256_cvtepi32_ps(isum)));
                            *acc = _mm256_add_ps(*acc, x);
                        }
                    }
                    for (o, acc) in oc.chunks_exact_mut(8).zip(&acc) {
                        _mm256_storeu_ps(o.as_mut_ptr(), *acc);
                    }
                }
            }
        };
    }

    /// Signed weights times activations as eight i32 partial sums, from loaded vectors.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn wdot_avx2(w: __m256i, a: __m256i) -> __m256i {
        _mm256_madd_epi16(dot_i8_pairs(w, a), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    fn wdot_vnni(w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_sign_epi8(w, w),
            _mm256_sign_epi8(a, w),
        )
    }

    tile!(
        #[target_feature(enable = "avx2")]
        avx2_tile,
        wdot_avx2
    );
    tile!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_tile,
        wdot_vnni
    );

    eight_rows!(
        #[target_feature(enable = "avx2")]
        avx2_rows,
        avx2_tail,
        dot_avx2
    );
    eight_rows!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_rows,
        vnni_tail,
        dot_vnni
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
    unsafe fn isum_neon(w: &[u8], q: &[i8]) -> i32 {
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
            isum_neon(&blk[2..34], &a.q[b * QK..b * QK + QK]),
        )
    }

    block_kernels!(
        #[target_feature(enable = "neon")]
        neon_row,
        neon_rows,
        Q8_0_BYTES,
        step_neon
    );
}
