//! Q6_K: 256 values in 210 bytes, `128 ql | 64 qh | 16 i8 scales | f16 d`; value
//! v = 128n + 32k + l (n < 2, k < 4, l < 32): low 4 bits `ql[64n + 32(k & 1) + l] >> 4(k >> 1)`,
//! high 2 bits `qh[32n + l] >> 2k`; x = d * sc[v / 16] * (code - 32).
//!
//! Per 32 values jb (one activation block b): `isum = sc[2jb] * sum_{l<16} (c - 32) q_a +
//! sc[2jb+1] * sum_{l>=16} (c - 32) q_a` (exact, |isum| < 2^24.1), then
//! `acc = acc + d * (d_a * isum)`, groups in order.

use super::{block_kernels, dots16_scalar, k_tile, lut_f16, QK_K};
use crate::quant::{QRow, QK};

/// Bytes of a Q6_K super-block.
pub const Q6_K_BYTES: usize = 210;

/// Where 32-value group `jb` (0..8) lives: (ql offset, low shift, qh offset, high shift).
#[inline(always)]
fn place(jb: usize) -> (usize, u32, usize, u32) {
    let (n, k) = (jb / 4, jb % 4);
    (
        64 * n + 32 * (k & 1),
        4 * (k >> 1) as u32,
        128 + 32 * n,
        2 * k as u32,
    )
}

/// The 32 unsigned 6-bit codes of group `jb`.
#[inline(always)]
fn codes(blk: &[u8], jb: usize, c: &mut [u8; 32]) {
    let (lo, ls, hi, hs) = place(jb);
    for l in 0..32 {
        c[l] = ((blk[lo + l] >> ls) & 15) | (((blk[hi + l] >> hs) & 3) << 4);
    }
}

/// The one float sequence of a super-block, given its eight exact group dots.
#[inline(always)]
fn step(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32], isums: [i32; 8]) -> f32 {
    let d = lut_f16(lut, &blk[208..]);
    let mut acc = acc;
    for (jb, &isum) in isums.iter().enumerate() {
        acc += d * (a.d[sb * 8 + jb] * isum as f32);
    }
    acc
}

/// The scalar group dots: the reference.
#[inline(always)]
fn isums_scalar(blk: &[u8], q: &[i8]) -> [i32; 8] {
    let mut r = [0i32; 8];
    for (jb, o) in r.iter_mut().enumerate() {
        let q = &q[32 * jb..32 * jb + 32];
        let mut c = [0u8; 32];
        codes(blk, jb, &mut c);
        let (mut s0, mut s1) = (0i32, 0i32);
        for l in 0..16 {
            s0 += (c[l] as i32 - 32) * q[l] as i32;
            s1 += (c[16 + l] as i32 - 32) * q[16 + l] as i32;
        }
        *o = (blk[192 + 2 * jb] as i8) as i32 * s0 + (blk[193 + 2 * jb] as i8) as i32 * s1;
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

block_kernels!(scalar_row, scalar_rows, Q6_K_BYTES, step_scalar);

/// A super-block's 256 signed codes (`code - 32`, -32..31) in value order, for the generic
/// tile kernels.
#[inline(always)]
fn unpack(blk: &[u8], w: &mut [i8; QK_K]) {
    let mut c = [0u8; 32];
    for jb in 0..8 {
        codes(blk, jb, &mut c);
        for (w, &c) in w[32 * jb..32 * jb + 32].iter_mut().zip(&c) {
            *w = c as i8 - 32;
        }
    }
}

/// [`step`] from the sixteen 16-value partial dots (group jb = halves 2jb and 2jb + 1, each
/// weighted by its scale as in the scalar reference).
#[inline(always)]
fn step16(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32], p: [i32; 16]) -> f32 {
    let sc = |h: usize| (blk[192 + h] as i8) as i32;
    step(
        acc,
        blk,
        a,
        sb,
        lut,
        std::array::from_fn(|jb| sc(2 * jb) * p[2 * jb] + sc(2 * jb + 1) * p[2 * jb + 1]),
    )
}

k_tile!(scalar_tile, Q6_K_BYTES, unpack, dots16_scalar, step16);

/// Dequantise one Q6_K row (float order as ggml / `gguf.quants`: `(d*sc)*(code-32)`).
pub fn dequant(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q6_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
        let d = crate::quant::read_f16(&blk[208..]);
        for jb in 0..8 {
            let mut c = [0u8; 32];
            codes(blk, jb, &mut c);
            for (l, &cl) in c.iter().enumerate() {
                let v = 32 * jb + l;
                let sc = blk[192 + v / 16] as i8;
                o[v] = (d * sc as f32) * (cl as i32 - 32) as f32;
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

    /// Group `jb`'s scale-weighted products as eight i32 lanes (their sum is the group dot).
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes(blk: *const u8, jb: usize, q: *const i8) -> __m256i {
        let (lo, ls, hi, hs) = place(jb);
        let l = _mm256_loadu_si256(blk.add(lo) as *const __m256i);
        let h = _mm256_loadu_si256(blk.add(hi) as *const __m256i);
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
        let a = _mm256_loadu_si256(q as *const __m256i);
        // i16 lanes 0..7 hold values 0..15 (scale 2jb), lanes 8..15 values 16..31 (2jb+1);
        // |pair * scale| <= 8128 * 128, exact in the i32 sums.
        let sc = _mm256_set_m128i(
            _mm_set1_epi16((*blk.add(193 + 2 * jb) as i8) as i16),
            _mm_set1_epi16((*blk.add(192 + 2 * jb) as i8) as i16),
        );
        _mm256_madd_epi16(dot_i8_pairs(w, a), sc)
    }

    /// The eight group dots of one super-block as one vector (lane jb).
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn isums(blk: *const u8, q: *const i8) -> __m256i {
        let mut v = [_mm256_setzero_si256(); 8];
        for (jb, o) in v.iter_mut().enumerate() {
            *o = lanes(blk, jb, q.add(32 * jb));
        }
        reduce8(v)
    }

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
        let v = isums(blk.as_ptr(), a.q.as_ptr().add(sb * QK_K));
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
        Q6_K_BYTES,
        step_avx2
    );

    /// Tile kernel: per super-block and row, the eight groups' signed codes (as |w| and w for
    /// the sign trick of [`dot_i8_pairs`]), 16-value scale lanes and f16 scale are unpacked
    /// once for a tile of tokens; per token the group dots, their reduction and the lane-wise
    /// terms are those of [`avx2_rows`], and each token's eight rows' terms are added to its
    /// accumulators in group order ([`add_terms_in_order`]): exactly [`step`] per (row, token).
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and `rows` must hold eight whole rows of
    /// the activations' length (the caller checks).
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn avx2_tile(rows: &[u8], acts: &[QRow], out: &mut [f32]) {
        let lut = f16_lut();
        let nsb = acts[0].blocks() / 8;
        let rb = nsb * Q6_K_BYTES;
        let base = rows.as_ptr();
        for (ac, oc) in acts
            .chunks(TILE_TOKENS)
            .zip(out.chunks_mut(TILE_TOKENS * 8))
        {
            let mut acc = [_mm256_setzero_ps(); TILE_TOKENS];
            for sb in 0..nsb {
                let mut t = [[_mm256_setzero_ps(); 8]; TILE_TOKENS];
                for r in 0..8 {
                    // SAFETY: row r's super-block sb lies inside `rows` (checked).
                    let blk = base.add(r * rb + sb * Q6_K_BYTES);
                    let mut aw = [_mm256_setzero_si256(); 8];
                    let mut sw = [_mm256_setzero_si256(); 8];
                    let mut sc = [_mm256_setzero_si256(); 8];
                    for jb in 0..8 {
                        let (lo, ls, hi, hs) = place(jb);
                        let l = _mm256_loadu_si256(blk.add(lo) as *const __m256i);
                        let h = _mm256_loadu_si256(blk.add(hi) as *const __m256i);
                        let l = _mm256_and_si256(
                            _mm256_srl_epi16(l, _mm_cvtsi32_si128(ls as i32)),
                            _mm256_set1_epi8(0x0f),
                        );
                        let h = _mm256_and_si256(
                            _mm256_srl_epi16(h, _mm_cvtsi32_si128(hs as i32)),
                            _mm256_set1_epi8(3),
                        );
                        let w = _mm256_sub_epi8(
                            _mm256_or_si256(l, _mm256_slli_epi16(h, 4)),
                            _mm256_set1_epi8(32),
                        );
                        aw[jb] = _mm256_sign_epi8(w, w);
                        sw[jb] = w;
                        sc[jb] = _mm256_set_m128i(
                            _mm_set1_epi16((*blk.add(193 + 2 * jb) as i8) as i16),
                            _mm_set1_epi16((*blk.add(192 + 2 * jb) as i8) as i16),
                        );
                    }
                    let d =
                        _mm256_set1_ps(lut[(blk.add(208) as *const u16).read_unaligned() as usize]);
                    for (tk, a) in t.iter_mut().zip(ac) {
                        let q = a.q.as_ptr().add(sb * QK_K);
                        let mut v = [_mm256_setzero_si256(); 8];
                        for (jb, vj) in v.iter_mut().enumerate() {
                            let av = _mm256_loadu_si256(q.add(32 * jb) as *const __m256i);
                            // = dot_i8_pairs(w, av), with |w| computed once above.
                            let p = _mm256_maddubs_epi16(aw[jb], _mm256_sign_epi8(av, sw[jb]));
                            *vj = _mm256_madd_epi16(p, sc[jb]);
                        }
                        let isum = reduce8(v);
                        let ad = _mm256_loadu_ps(a.d.as_ptr().add(sb * 8));
                        tk[r] = _mm256_mul_ps(d, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(isum)));
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

    /// Eight-row kernel: per super-block and row, the eight group dots form one vector
    /// (lane jb), the terms `d * (d_a * isum)` are computed lane-wise, and
    /// [`add_terms_in_order`] adds each row's terms to its accumulator (lane r) in group
    /// order: exactly [`step`] per row.
    ///
    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn avx2_rows(rows: &[u8], a: &QRow, out: &mut [f32]) {
        let lut = f16_lut();
        let nsb = a.blocks() / 8;
        let rb = nsb * Q6_K_BYTES;
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
                let mut t = [_mm256_setzero_ps(); 8];
                for (r, tr) in t.iter_mut().enumerate() {
                    let blk = base.add(r * rb + sb * Q6_K_BYTES);
                    let isum = isums(blk, q);
                    let d =
                        _mm256_set1_ps(lut[(blk.add(208) as *const u16).read_unaligned() as usize]);
                    *tr = _mm256_mul_ps(d, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(isum)));
                }
                acc = add_terms_in_order(acc, t);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
        }
        if full < out.len() {
            avx2_tail(&rows[full * rb..], a, &mut out[full..]);
        }
    }
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
    unsafe fn isum_neon(blk: &[u8], jb: usize, q: &[i8]) -> i32 {
        let (lo, ls, hi, hs) = place(jb);
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

    /// # Safety
    ///
    /// The CPU must have this function's target features (the [`Kernels`](crate::kernels::Kernels)
    /// table is built only for levels the CPU has), and every block it reads must lie
    /// inside the slices or pointers given (callers pass whole blocks of length-checked rows).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn step_neon(acc: f32, blk: &[u8], a: &QRow, sb: usize, lut: &[f32]) -> f32 {
        let q = &a.q[sb * QK_K..(sb + 1) * QK_K];
        let mut r = [0i32; 8];
        for (jb, o) in r.iter_mut().enumerate() {
            *o = isum_neon(blk, jb, &q[32 * jb..32 * jb + 32]);
        }
        step(acc, blk, a, sb, lut, r)
    }

    block_kernels!(
        #[target_feature(enable = "neon")]
        neon_row,
        neon_rows,
        Q6_K_BYTES,
        step_neon
    );

    k_tile!(
        #[target_feature(enable = "neon")]
        neon_tile,
        Q6_K_BYTES,
        unpack,
        crate::kernels::arm::dots16,
        step16
    );
}
