//! Block formats and the one activation quantiser.
//!
//! Weights stay in ggml's block layouts, read in place from the mmap. Activations entering a
//! matrix product are quantised to 8 bits per 32-element block by [`quantize_row`], the single
//! scalar routine every kernel level shares: integer block dot products are then exact, so the
//! only floating-point work left is a fixed sequence of per-block multiply-adds (see `kernels`).

use crate::gguf::GgmlType;
use crate::kernels::{q4_1, q4_k, q5_0, q6_k, q8_0};
pub use crate::kernels::{Q4_1_BYTES, Q8_0_BYTES};

/// Elements per block (Q4_0/Q4_1/Q5_0/Q8_0 and our activation blocks).
pub const QK: usize = 32;

/// Exact IEEE half -> single conversion by bit manipulation (every f16 is exactly an f32).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal half: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Read a little-endian f16 at `b[0..2]`.
#[inline(always)]
pub fn read_f16(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// Quantised activations: per block of 32 a scale `d`, the codes' integer sum, `s = d * sum`
/// (the min terms of Q4_1 / Q4_K) and the 32 i8 codes.
#[derive(Debug, Clone, Default)]
pub struct QRow {
    /// The codes, 32 per block, in element order.
    pub q: Vec<i8>,
    /// Per block: the scale (`x ~ d * q`).
    pub d: Vec<f32>,
    /// Per block: `d * sum`, rounded once.
    pub s: Vec<f32>,
    /// Per block: the exact sum of the codes (offset corrections of unsigned weight codes).
    pub sum: Vec<i32>,
}

impl QRow {
    /// Number of 32-element blocks.
    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

/// Quantise `x` (length a multiple of 32) into `out`. The reference and only implementation.
pub fn quantize_row(x: &[f32], out: &mut QRow) {
    debug_assert!(x.len().is_multiple_of(QK));
    let nb = x.len() / QK;
    out.q.resize(x.len(), 0);
    out.d.resize(nb, 0.0);
    out.s.resize(nb, 0.0);
    out.sum.resize(nb, 0);
    for (b, xb) in x.chunks_exact(QK).enumerate() {
        let mut amax = 0.0f32;
        for &v in xb {
            let a = v.abs();
            if a > amax {
                amax = a;
            }
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (j, &v) in xb.iter().enumerate() {
            let q = round_clamp_127(v * id);
            out.q[b * QK + j] = q;
            sum += q as i32;
        }
        out.d[b] = d;
        out.s[b] = d * sum as f32;
        out.sum[b] = sum;
    }
}

/// `x.round().clamp(-127.0, 127.0) as i8` (round half away from zero), without the libm call
/// `f32::round` compiles to on baseline x86_64. The same value for every input: clamping first
/// cannot change the result (|x| >= 127.5 rounds beyond 127 and clamps back to 127; 127 < |x| <
/// 127.5 rounds to 127), truncation to integer is exact in range, `x - trunc(x)` is exact
/// (Sterbenz), and NaN gives 0 on both paths (`as` maps NaN to 0).
#[inline(always)]
fn round_clamp_127(x: f32) -> i8 {
    let x = x.clamp(-127.0, 127.0);
    let t = x as i32;
    let f = x - t as f32;
    (if f >= 0.5 {
        t + 1
    } else if f <= -0.5 {
        t - 1
    } else {
        t
    }) as i8
}

/// Dequantise one Q8_0 row (token embedding lookup).
pub fn dequant_q8_0_row(row: &[u8], out: &mut [f32]) {
    q8_0::dequant(row, out)
}

/// Dequantise one Q4_1 row (tests and references).
pub fn dequant_q4_1_row(row: &[u8], out: &mut [f32]) {
    q4_1::dequant(row, out)
}

/// Dequantise one row of any type the engine reads (token embeddings, tests, references), in
/// ggml's float order (the same bits as the PyPI `gguf` package's dequantisers).
///
/// # Panics
///
/// On a type the engine does not read (the model loader refuses those first).
pub fn dequant_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::Q8_0 => q8_0::dequant(row, out),
        GgmlType::Q4_1 => q4_1::dequant(row, out),
        GgmlType::Q5_0 => q5_0::dequant(row, out),
        GgmlType::Q4K => q4_k::dequant(row, out),
        GgmlType::Q6K => q6_k::dequant(row, out),
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        other => panic!("dequant_row: unsupported type {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        // Every normal half round-trips through f32 -> f16 arithmetic: check monotonicity.
        let mut prev = f16_to_f32(0);
        for h in 1..0x7c00u16 {
            let v = f16_to_f32(h);
            assert!(v > prev, "{h:#x}");
            prev = v;
        }
    }

    #[test]
    fn rounding_without_libm_equals_round_then_clamp() {
        let reference = |x: f32| x.round().clamp(-127.0, 127.0) as i8;
        let mut specials = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.499_999_97,
            -0.499_999_97,
            126.5,
            -126.5,
            127.0,
            127.49,
            127.5,
            128.0,
            -127.5,
            -128.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            1e-40,
        ];
        // Every f32 between -130 and 130 at a stride, plus the neighbours of each half.
        let mut x = -130.0f32;
        while x < 130.0 {
            specials.push(x);
            x += 0.000_976_562_5 * 3.0;
        }
        for k in -260..=260 {
            let h = k as f32 * 0.5;
            specials.extend([
                h,
                f32::from_bits(h.to_bits() + 1),
                f32::from_bits(h.to_bits().wrapping_sub(1)),
            ]);
        }
        for v in specials {
            assert_eq!(
                round_clamp_127(v),
                reference(v),
                "{v:e} ({:#x})",
                v.to_bits()
            );
        }
    }

    #[test]
    fn quantiser_error_is_bounded() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.37)
            .collect();
        let mut q = QRow::default();
        quantize_row(&x, &mut q);
        for (b, xb) in x.chunks(QK).enumerate() {
            for (j, &v) in xb.iter().enumerate() {
                let back = q.d[b] * q.q[b * QK + j] as f32;
                assert!((back - v).abs() <= q.d[b] * 0.5001, "{v} -> {back}");
            }
        }
        let zeros = vec![0.0f32; 32];
        quantize_row(&zeros, &mut q);
        assert_eq!(q.d, vec![0.0]);
        assert!(q.q.iter().all(|&v| v == 0));
    }
}
