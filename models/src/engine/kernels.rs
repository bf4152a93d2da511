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
//! quantiser. No level reorders, fuses (FMA) or vectorises that float sequence; they differ only
//! in how `isum` is computed (scalar loop, SSE2 `pmaddwd`, AVX2 `pmaddubsw`, AVX-512 VNNI
//! `vpdpbusd`, NEON `smull`/`sadalp`). Tests compare every level against scalar on random data
//! and on the real model.

use std::sync::OnceLock;

use super::quant::{f16_to_f32, QRow, Q4_1_BYTES, Q8_0_BYTES, QK};

/// Every f16 bit pattern as f32 (256 KiB). Built from the exact software conversion, so a
/// lookup is bit-identical to converting; it just skips the per-block bit twiddling.
fn f16_lut() -> &'static [f32] {
    static LUT: OnceLock<Box<[f32]>> = OnceLock::new();
    LUT.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

#[inline(always)]
fn lut_f16(lut: &[f32], b: &[u8]) -> f32 {
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

/// The kernels of one level. Constructed only through [`Kernels::new`], which checks that the
/// CPU supports the level: that check is what makes calling the `unsafe fn`s sound.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub level: KernelLevel,
    q4_1: RowFn,
    q8_0: RowFn,
}

impl Kernels {
    pub fn new(level: KernelLevel) -> Option<Kernels> {
        if !level.is_available() {
            return None;
        }
        let (q4_1, q8_0): (RowFn, RowFn) = match level {
            KernelLevel::Scalar => (scalar::q4_1, scalar::q8_0),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Sse2 => (x86::q4_1_sse2, x86::q8_0_sse2),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx2 => (x86::q4_1_avx2, x86::q8_0_avx2),
            #[cfg(target_arch = "x86_64")]
            KernelLevel::Avx512 => (x86::q4_1_vnni, x86::q8_0_vnni),
            #[cfg(target_arch = "aarch64")]
            KernelLevel::Neon => (arm::q4_1_neon, arm::q8_0_neon),
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(Kernels { level, q4_1, q8_0 })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::quant::quantize_row;

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
            crate::engine::quant::dequant_q4_1_row(&r4, &mut deq);
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

    #[test]
    fn levels_parse_and_unavailable_ones_are_refused() {
        assert_eq!("AVX2".parse::<KernelLevel>().unwrap(), KernelLevel::Avx2);
        assert!("mmx".parse::<KernelLevel>().is_err());
        assert!(KernelLevel::Scalar.is_available());
        #[cfg(target_arch = "x86_64")]
        assert!(Kernels::new(KernelLevel::Neon).is_none());
    }
}
