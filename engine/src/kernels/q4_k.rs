//! Q4_K: 256 values in 144 bytes, `f16 d | f16 dmin | 12 bytes packed 6-bit (scale, min) x 8 |
//! 128 bytes qs`; sub-block j (32 values) = low (j even) or high (j odd) nibbles of
//! `qs[32 * (j / 2)..][..32]`; x = d * sc_j * q - dmin * m_j.
//!
//! Per sub-block j (one activation block b): `isum = sum q * q_a` (exact), then
//! `acc = acc + (d * (d_a * (sc_j * isum)) - dmin * (m_j * s_a))`, sub-blocks in order.

use super::{block_kernels, dots16_scalar, k_tile, lut_f16, QK_K};
use crate::quant::{QRow, QK};

/// Bytes of a Q4_K super-block.
pub const Q4_K_BYTES: usize = 144;

/// The 6-bit (scale, min) of sub-block `j` (0..8) from a block's 12 packed bytes:
/// j < 4: low 6 bits of bytes j and j+4; j >= 4: a nibble of byte j+4 plus the top two bits
/// of bytes j-4 (scale) and j (min).
#[inline(always)]
pub fn scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 63, sc[j + 4] & 63)
    } else {
        (
            (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4),
            (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
        )
    }
}

/// The one float sequence of a super-block, given its eight exact sub-block dots.
#[inline(always)]
fn step(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32], isums: [i32; 8]) -> f32 {
    let d = lut_f16(lut, blk);
    let dmin = lut_f16(lut, &blk[2..]);
    let sc = &blk[4..16];
    let mut acc = acc;
    for (j, &isum) in isums.iter().enumerate() {
        let (s, m) = scale_min(sc, j);
        let b = sb * 8 + j;
        acc += d * (a.d[b] * (s as i32 * isum) as f32) - dmin * (m as f32 * a.s[b]);
    }
    acc
}

/// The scalar sub-block dots: the reference.
#[inline(always)]
fn isums_scalar(blk: &[u8], q: &[i8]) -> [i32; 8] {
    let mut r = [0i32; 8];
    for i in 0..4 {
        let qs = &blk[16 + 32 * i..48 + 32 * i];
        let q = &q[64 * i..64 * i + 64];
        let (mut lo, mut hi) = (0i32, 0i32);
        for l in 0..32 {
            lo += (qs[l] & 15) as i32 * q[l] as i32;
            hi += (qs[l] >> 4) as i32 * q[32 + l] as i32;
        }
        (r[2 * i], r[2 * i + 1]) = (lo, hi);
    }
    r
}

#[inline(always)]
fn step_scalar(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
    step(
        acc,
        blk,
        a,
        sb,
        lut,
        isums_scalar(blk, &a.q[sb * QK_K..(sb + 1) * QK_K]),
    )
}

block_kernels!(scalar_row, scalar_rows, Q4_K_BYTES, step_scalar);

/// A super-block's 256 codes (0..15) in value order, for the generic tile kernels.
#[inline(always)]
fn unpack(blk: &[u8], w: &mut [i8; QK_K]) {
    for i in 0..4 {
        let qs = &blk[16 + 32 * i..48 + 32 * i];
        for l in 0..32 {
            w[64 * i + l] = (qs[l] & 15) as i8;
            w[64 * i + 32 + l] = (qs[l] >> 4) as i8;
        }
    }
}

/// [`step`] from the sixteen 16-value partial dots (sub-block j = halves 2j and 2j + 1).
#[inline(always)]
fn step16(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32], p: [i32; 16]) -> f32 {
    step(
        acc,
        blk,
        a,
        sb,
        lut,
        std::array::from_fn(|j| p[2 * j] + p[2 * j + 1]),
    )
}

k_tile!(scalar_tile, Q4_K_BYTES, unpack, dots16_scalar, step16);

/// Dequantise one Q4_K row (float order as ggml / `gguf.quants`: `(d*sc)*q - dmin*m`).
pub fn dequant(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q4_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
        let d = crate::quant::read_f16(blk);
        let dmin = crate::quant::read_f16(&blk[2..]);
        for j in 0..8 {
            let (s, m) = scale_min(&blk[4..16], j);
            let (d1, m1) = (d * s as f32, dmin * m as f32);
            let qs = &blk[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32];
            for l in 0..32 {
                let q = if j % 2 == 0 { qs[l] & 15 } else { qs[l] >> 4 };
                o[32 * j + l] = d1 * q as f32 - m1;
            }
        }
    }
}

const _: () = assert!(QK_K == 8 * QK);

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::kernels::x86::*;
    use crate::kernels::{f16_lut, K_TILE_TOKENS as TILE_TOKENS};
    use std::arch::x86_64::*;

    /// The eight sub-block dots of one row's super-block at `blk` (pointer) as one vector
    /// (lane j = sub-block j), with the u8 x i8 dot `$dot`. Codes are <= 15: no `pmaddubsw`
    /// saturation. A macro so that it expands inside each level's target-feature function.
    macro_rules! isums {
        ($blk:expr, $q:expr, $dot:path) => {{
            let (blk, q): (*const u8, *const i8) = ($blk, $q);
            let m4 = _mm256_set1_epi8(0x0f);
            let mut v = [_mm256_setzero_si256(); 8];
            for i in 0..4 {
                let raw = _mm256_loadu_si256(blk.add(16 + 32 * i) as *const __m256i);
                let lo = _mm256_and_si256(raw, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                let a0 = _mm256_loadu_si256(q.add(64 * i) as *const __m256i);
                let a1 = _mm256_loadu_si256(q.add(64 * i + 32) as *const __m256i);
                v[2 * i] = $dot(lo, a0);
                v[2 * i + 1] = $dot(hi, a1);
            }
            reduce8(v)
        }};
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
        let v = isums!(blk.as_ptr(), a.q.as_ptr().add(sb * QK_K), dot_u8i8_avx2);
        step(
            acc,
            blk,
            a,
            sb,
            lut,
            std::mem::transmute::<__m256i, [i32; 8]>(v),
        )
    }
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn step_vnni(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
        let v = isums!(blk.as_ptr(), a.q.as_ptr().add(sb * QK_K), dot_u8i8_vnni);
        step(
            acc,
            blk,
            a,
            sb,
            lut,
            std::mem::transmute::<__m256i, [i32; 8]>(v),
        )
    }

    block_kernels!(
        #[target_feature(enable = "avx2")]
        avx2_row,
        avx2_tail,
        Q4_K_BYTES,
        step_avx2
    );
    block_kernels!(
        #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
        vnni_row,
        vnni_tail,
        Q4_K_BYTES,
        step_vnni
    );

    /// (scales, mins) of the eight sub-blocks as i32 lanes, unpacked from the 12 bytes at `sc`
    /// (ggml's mask-and-shift form of [`scale_min`], for all eight at once).
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn scales_mins(sc: *const u8) -> (__m256i, __m256i) {
        let u = [
            (sc as *const u32).read_unaligned(),
            (sc.add(4) as *const u32).read_unaligned(),
            (sc.add(8) as *const u32).read_unaligned(),
        ];
        const K1: u32 = 0x3f3f_3f3f;
        const K2: u32 = 0x0f0f_0f0f;
        const K3: u32 = 0x0303_0303;
        let s_lo = u[0] & K1;
        let s_hi = (u[2] & K2) | (((u[0] >> 6) & K3) << 4);
        let m_lo = u[1] & K1;
        let m_hi = ((u[2] >> 4) & K2) | (((u[1] >> 6) & K3) << 4);
        let s = _mm_set_epi32(0, 0, s_hi as i32, s_lo as i32);
        let m = _mm_set_epi32(0, 0, m_hi as i32, m_lo as i32);
        (_mm256_cvtepu8_epi32(s), _mm256_cvtepu8_epi32(m))
    }

    /// Eight-row kernels: per super-block and row, the eight sub-block dots form one vector
    /// (lane j), the terms `d * (d_a * (sc * isum)) - dmin * (m * s_a)` are computed lane-wise
    /// with plain `mul`/`sub` (never FMA), and [`add_terms_in_order`] adds each row's eight
    /// terms to its accumulator (lane r) in sub-block order: exactly [`step`] per row.
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
                let nsb = a.blocks() / 8;
                let rb = nsb * Q4_K_BYTES;
                let full = out.len() / 8 * 8;
                for g in 0..full / 8 {
                    // SAFETY: rows g*8 .. g*8+8 lie inside `rows` (checked by the caller).
                    let base = rows.as_ptr().add(g * 8 * rb);
                    let next = base.wrapping_add(8 * rb);
                    let span = (8 * rb).div_ceil(nsb).next_multiple_of(64);
                    let mut acc = _mm256_setzero_ps();
                    for sb in 0..nsb {
                        prefetch_span(next.wrapping_add(sb * span), span);
                        let q = a.q.as_ptr().add(sb * QK_K);
                        let ad = _mm256_loadu_ps(a.d.as_ptr().add(sb * 8));
                        let as_ = _mm256_loadu_ps(a.s.as_ptr().add(sb * 8));
                        let mut t = [_mm256_setzero_ps(); 8];
                        for (r, tr) in t.iter_mut().enumerate() {
                            let blk = base.add(r * rb + sb * Q4_K_BYTES);
                            let isum = isums!(blk, q, $dot);
                            let (s, m) = scales_mins(blk.add(4));
                            let d = _mm256_set1_ps(lut[(blk as *const u16).read_unaligned() as usize]);
                            let dmin = _mm256_set1_ps(lut[(blk.add(2) as *const u16).read_unaligned() as usize]);
                            let x = _mm256_mul_ps(d, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(_mm256_mullo_epi32(s, isum))));
                            let y = _mm256_mul_ps(dmin, _mm256_mul_ps(_mm256_cvtepi32_ps(m), as_));
                            *tr = _mm256_sub_ps(x, y);
                        }
                        acc = add_terms_in_order(acc, t);
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
                }
                if full < out.len() {
                    $tail(&rows[full * rb..], a, &mut out[full..]);
                }
            }
        };
    }

    /// Tile kernels: per super-block, each of the eight rows' codes, (scale, min) lanes and
    /// f16 scales are unpacked once for a tile of tokens; per token the eight sub-block dots,
    /// their reduction and the lane-wise terms are those of `eight_rows`, and each token's
    /// eight rows' terms are added to its accumulators in sub-block order
    /// ([`add_terms_in_order`]): exactly [`step`] per (row, token).
    macro_rules! tile {
        ($(#[$attr:meta])* $name:ident, $dot:path) => {
            /// # Safety
            ///
            /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
            /// table is built only for levels the CPU has), and `rows` must hold eight whole
            /// rows of the activations' length (the caller checks).
            $(#[$attr])*
            pub(crate) unsafe fn $name(rows: &[u8], acts: &[QRow], out: &mut [f32]) {
                let lut = f16_lut();
                let nsb = acts[0].blocks() / 8;
                let rb = nsb * Q4_K_BYTES;
                let base = rows.as_ptr();
                let m4 = _mm256_set1_epi8(0x0f);
                for (ac, oc) in acts.chunks(TILE_TOKENS).zip(out.chunks_mut(TILE_TOKENS * 8)) {
                    let mut acc = [_mm256_setzero_ps(); TILE_TOKENS];
                    for sb in 0..nsb {
                        let mut t = [[_mm256_setzero_ps(); 8]; TILE_TOKENS];
                        for r in 0..8 {
                            // SAFETY: row r's super-block sb lies inside `rows` (checked).
                            let blk = base.add(r * rb + sb * Q4_K_BYTES);
                            let mut w = [_mm256_setzero_si256(); 8];
                            for i in 0..4 {
                                let raw = _mm256_loadu_si256(blk.add(16 + 32 * i) as *const __m256i);
                                w[2 * i] = _mm256_and_si256(raw, m4);
                                w[2 * i + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                            }
                            let (s, m) = scales_mins(blk.add(4));
                            let mf = _mm256_cvtepi32_ps(m);
                            let d = _mm256_set1_ps(lut[(blk as *const u16).read_unaligned() as usize]);
                            let dmin = _mm256_set1_ps(lut[(blk.add(2) as *const u16).read_unaligned() as usize]);
                            for (tk, a) in t.iter_mut().zip(ac) {
                                let q = a.q.as_ptr().add(sb * QK_K);
                                let mut v = [_mm256_setzero_si256(); 8];
                                for (j, vj) in v.iter_mut().enumerate() {
                                    *vj = $dot(w[j], _mm256_loadu_si256(q.add(32 * j) as *const __m256i));
                                }
                                let isum = reduce8(v);
                                let ad = _mm256_loadu_ps(a.d.as_ptr().add(sb * 8));
                                let as_ = _mm256_loadu_ps(a.s.as_ptr().add(sb * 8));
                                let x = _mm256_mul_ps(d, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(_mm256_mullo_epi32(s, isum))));
                                let y = _mm256_mul_ps(dmin, _mm256_mul_ps(mf, as_));
                                tk[r] = _mm256_sub_ps(x, y);
                            }
                        }
                        for (acc, tk) in acc.iter_mut().zip(&t).take(ac.len()) {
                            *acc = add_terms_in_order(*acc, *tk);
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
    unsafe fn isums_neon(blk: &[u8], q: &[i8]) -> [i32; 8] {
        let m4 = vdupq_n_u8(0x0f);
        let mut r = [0i32; 8];
        for i in 0..4 {
            let qs = blk.as_ptr().add(16 + 32 * i);
            let p = q.as_ptr().add(64 * i);
            let r0 = vld1q_u8(qs);
            let r1 = vld1q_u8(qs.add(16));
            let lo0 = vreinterpretq_s8_u8(vandq_u8(r0, m4));
            let lo1 = vreinterpretq_s8_u8(vandq_u8(r1, m4));
            let hi0 = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
            let hi1 = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
            r[2 * i] = dot16(lo0, vld1q_s8(p)) + dot16(lo1, vld1q_s8(p.add(16)));
            r[2 * i + 1] = dot16(hi0, vld1q_s8(p.add(32))) + dot16(hi1, vld1q_s8(p.add(48)));
        }
        r
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn step_neon(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
        step(
            acc,
            blk,
            a,
            sb,
            lut,
            isums_neon(blk, &a.q[sb * QK_K..(sb + 1) * QK_K]),
        )
    }

    block_kernels!(
        #[target_feature(enable = "neon")]
        neon_row,
        neon_rows,
        Q4_K_BYTES,
        step_neon
    );

    k_tile!(
        #[target_feature(enable = "neon")]
        neon_tile,
        Q4_K_BYTES,
        unpack,
        crate::kernels::arm::dots16,
        step16
    );
}
