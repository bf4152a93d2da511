//! Block formats and the one activation quantiser.
//!
//! Weights stay in ggml's block layouts, read in place from the mmap. Activations entering a
//! matrix product are quantised to 8 bits per 32-element block by [`quantize_row`], the single
//! scalar routine every kernel level shares: integer block dot products are then exact, so the
//! only floating-point work left is a fixed sequence of per-block multiply-adds (see `kernels`).

/// Elements per block (Q4_0/Q4_1/Q5_0/Q8_0 and our activation blocks).
pub const QK: usize = 32;
/// Bytes of a Q4_1 block: f16 d, f16 m, 16 bytes of nibbles (x = d*q + m).
pub const Q4_1_BYTES: usize = 20;
/// Bytes of a Q8_0 block: f16 d, 32 i8 (x = d*q).
pub const Q8_0_BYTES: usize = 34;

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

/// Quantised activations: per block a scale `d`, `s = d * sum(q)` (the Q4_1 min term), and 32 i8.
#[derive(Debug, Clone, Default)]
pub struct QRow {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl QRow {
    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

/// Quantise `x` (length a multiple of 32) into `out`. The reference and only implementation.
pub fn quantize_row(x: &[f32], out: &mut QRow) {
    debug_assert!(x.len() % QK == 0);
    let nb = x.len() / QK;
    out.q.resize(x.len(), 0);
    out.d.resize(nb, 0.0);
    out.s.resize(nb, 0.0);
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
            let q = (v * id).round().clamp(-127.0, 127.0) as i8;
            out.q[b * QK + j] = q;
            sum += q as i32;
        }
        out.d[b] = d;
        out.s[b] = d * sum as f32;
    }
}

/// Dequantise one Q8_0 row (token embedding lookup).
pub fn dequant_q8_0_row(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(blk);
        for j in 0..QK {
            o[j] = d * (blk[2 + j] as i8) as f32;
        }
    }
}

/// Dequantise one Q4_1 row (tests and references).
pub fn dequant_q4_1_row(row: &[u8], out: &mut [f32]) {
    for (blk, o) in row.chunks_exact(Q4_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = read_f16(blk);
        let m = read_f16(&blk[2..]);
        for j in 0..16 {
            o[j] = d * (blk[4 + j] & 0x0f) as f32 + m;
            o[j + 16] = d * (blk[4 + j] >> 4) as f32 + m;
        }
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
