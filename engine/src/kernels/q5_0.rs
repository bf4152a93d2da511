//! Q5_0: 32 values in 22 bytes, `f16 d | u32 qh (LE) | 16 bytes qs`;
//! code[i] = nibble(i) | (bit i of qh) << 4, nibble(i) = qs[i] & 15 (i < 16), qs[i-16] >> 4;
//! x = d * (code - 16).
//!
//! Per block: `isum = sum (code - 16) * q_a` (exact; the SIMD kernels compute it as
//! `sum code * q_a - 16 * sum q_a`, the same integer), then `acc = acc + d * (d_a * isum)`.

use super::{block_kernels, lut_f16};
use crate::quant::{QRow, QK};

/// Bytes of a Q5_0 block.
pub const Q5_0_BYTES: usize = 22;

/// The one float sequence of a Q5_0 block, given its exact integer dot.
#[inline(always)]
fn step(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32], isum: i32) -> f32 {
    acc + lut_f16(lut, blk) * (a.d[b] * isum as f32)
}

/// The 32 unsigned 5-bit codes of a block (`b` = qh then qs).
#[inline(always)]
fn codes(b: &[u8], c: &mut [u8; 32]) {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let qs = &b[4..20];
    for j in 0..16 {
        c[j] = (qs[j] & 15) | ((((qh >> j) & 1) as u8) << 4);
        c[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
}

/// The scalar integer dot: the reference.
#[inline(always)]
fn isum_scalar(b: &[u8], q: &[i8]) -> i32 {
    let mut c = [0u8; 32];
    codes(b, &mut c);
    let mut s = 0i32;
    for j in 0..32 {
        s += (c[j] as i32 - 16) * q[j] as i32;
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
        isum_scalar(&blk[2..22], &a.q[b * QK..b * QK + QK]),
    )
}

block_kernels!(scalar_row, scalar_rows, Q5_0_BYTES, step_scalar);

/// Dequantise one Q5_0 row (float order as ggml: `d * (code - 16)`).
pub fn dequant(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q5_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = crate::quant::read_f16(blk);
        let mut c = [0u8; 32];
        codes(&blk[2..], &mut c);
        for j in 0..QK {
            o[j] = d * (c[j] as i32 - 16) as f32;
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

    /// The 32 unsigned codes (0..31) of the block whose qh starts at `p`, in element order.
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes_avx2(p: *const u8) -> __m256i {
        let qh = (p as *const u32).read_unaligned();
        let raw = _mm_loadu_si128(p.add(4) as *const __m128i);
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
        _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }

    // Codes are <= 31: `pmaddubsw` pairs are <= 2 * 31 * 128, no saturation.
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(acc: f32, blk: &[u8], a: &QRow, b: usize, lut: &[f32]) -> f32 {
        let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
        let isum = hsum256(dot_u8i8_avx2(codes_avx2(blk.as_ptr().add(2)), av)) - 16 * a.sum[b];
        step(acc, blk, a, b, lut, isum)
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
        let isum = hsum256(dot_u8i8_vnni(codes_avx2(blk.as_ptr().add(2)), av)) - 16 * a.sum[b];
        step(acc, blk, a, b, lut, isum)
    }

    block_kernels!(
        #[target_feature(enable = "avx2")]
        avx2_row,
        avx2_tail,
        Q5_0_BYTES,
        step_avx2
    );
    block_kernels!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_row,
        vnni_tail,
        Q5_0_BYTES,
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
                let rb = nb * Q5_0_BYTES;
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
                            *vr = $dot(codes_avx2(base.add(r * rb + b * Q5_0_BYTES + 2)), av);
                        }
                        let isum = _mm256_sub_epi32(reduce8(v), _mm256_set1_epi32(16 * a.sum[b]));
                        // The low f16 of each 4-byte word is the block scale (inside the block).
                        let (dw, _) = f16_pairs(base.add(b * Q5_0_BYTES), rb, lut);
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

    /// Tile kernels: per block the eight rows' codes and scales are unpacked once, then each
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
                let rb = nb * Q5_0_BYTES;
                let base = rows.as_ptr();
                for (ac, oc) in acts.chunks(TILE_TOKENS).zip(out.chunks_mut(TILE_TOKENS * 8)) {
                    let mut acc = [_mm256_setzero_ps(); TILE_TOKENS];
                    for b in 0..nb {
                        let mut w = [_mm256_setzero_si256(); 8];
                        for (r, wr) in w.iter_mut().enumerate() {
                            *wr = codes_avx2(base.add(r * rb + b * Q5_0_BYTES + 2));
                        }
                        let (dw, _) = f16_pairs(base.add(b * Q5_0_BYTES), rb, lut);
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let Some(a) = ac.get(t) else { break };
                            let av = _mm256_loadu_si256(a.q.as_ptr().add(b * QK) as *const __m256i);
                            let mut v = [_mm256_setzero_si256(); 8];
                            for (vr, wr) in v.iter_mut().zip(&w) {
                                *vr = $dot(*wr, av);
                            }
                            let isum = _mm256_sub_epi32(reduce8(v), _mm256_set1_epi32(16 * a.sum[b]));
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

    tile!(
        #[target_feature(enable = "avx2")]
        avx2_tile,
        dot_u8i8_avx2
    );
    tile!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_tile,
        dot_u8i8_vnni
    );

    eight_rows!(
        #[target_feature(enable = "avx2")]
        avx2_rows,
        avx2_tail,
        dot_u8i8_avx2
    );
    eight_rows!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_rows,
        vnni_tail,
        dot_u8i8_vnni
    );
}

#[cfg(target_arch = "aarch64")]
pub(crate) use arm::*;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use crate::kernels::arm::dot16;
    use std::arch::aarch64::*;

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn isum_neon(b: &[u8], q: &[i8]) -> i32 {
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
            isum_neon(&blk[2..22], &a.q[b * QK..b * QK + QK]),
        )
    }

    block_kernels!(
        #[target_feature(enable = "neon")]
        neon_row,
        neon_rows,
        Q5_0_BYTES,
        step_neon
    );
}
