//! Deterministic transcendental functions.
//!
//! Platform libms disagree in the last bit of `exp`, `sin`, `powf`; one ulp is enough to derail
//! an arithmetic decoder. Everything here uses only IEEE-754 operations that are correctly
//! rounded by definition (+, -, *, /, floor, conversions), in a fixed order, in f64, so x86_64
//! and aarch64 produce the same bits. Rust never fuses `a * b + c` into an FMA on its own, and
//! this module never asks it to.

// The digits are fdlibm's, kept verbatim; each literal rounds to the intended f64.
#[allow(clippy::excessive_precision)]
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
#[allow(clippy::excessive_precision)]
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const LOG2E: f64 = core::f64::consts::LOG2_E;

/// 2^k for integer k in the normal range, built from bits.
#[inline(always)]
fn pow2i(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// e^x in f64 for |x| <= ~700; deterministic, accurate to a few ulp.
#[inline]
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -708.0 {
        return 0.0;
    }
    let k = (x * LOG2E + 0.5).floor();
    let r = (x - k * LN2_HI) - k * LN2_LO; // |r| <= ~0.35
                                           // Taylor series to degree 13: |r|^14/14! < 1e-17.
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    p * pow2i(k as i64)
}

/// e^x rounded to f32 (softmax, SiLU). The hot path: one f64 evaluation per call.
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    exp_f64(x as f64) as f32
}

/// SiLU(x) = x * sigmoid(x), deterministic.
#[inline]
pub fn silu(x: f32) -> f32 {
    let e = exp_f64(-(x as f64));
    (x as f64 / (1.0 + e)) as f32
}

/// Natural log in f64 for x > 0 (used only to build RoPE tables).
pub fn ln_f64(x: f64) -> f64 {
    // Written negated so that NaN takes this branch too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let bad = !(x > 0.0) || x.is_infinite();
    if bad {
        return f64::NAN;
    }
    // x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut t = 0.0;
    let mut k = 41.0;
    while k > 1.0 {
        t = t * s2 + 1.0 / k;
        k -= 2.0;
    }
    let lnm = 2.0 * s * (t * s2 + 1.0);
    e as f64 * LN2_HI + (e as f64 * LN2_LO + lnm)
}

/// base^y for base > 0 (RoPE frequencies), deterministic.
pub fn pow_f64(base: f64, y: f64) -> f64 {
    exp_f64(y * ln_f64(base))
}

/// (sin x, cos x) in f64, deterministic. Cody-Waite reduction by pi/2 in three parts; accurate
/// to ~1e-15 for |x| up to ~1e6, far beyond the RoPE angles (position * 1.0).
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    // fdlibm's digits, kept verbatim (each literal rounds to the intended f64).
    #[allow(clippy::excessive_precision)]
    const PIO2_1: f64 = 1.570_796_326_734_125_614_17;
    #[allow(clippy::excessive_precision)]
    const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11;
    #[allow(clippy::excessive_precision)]
    const PIO2_3: f64 = 2.022_266_248_711_166_455_79e-21;
    const TWO_OVER_PI: f64 = core::f64::consts::FRAC_2_PI;
    let n = (x * TWO_OVER_PI + 0.5).floor();
    let r = ((x - n * PIO2_1) - n * PIO2_2) - n * PIO2_3;
    let r2 = r * r;
    // Taylor to degree 21/20 on |r| <= pi/4.
    let mut s = 0.0;
    let mut c = 0.0;
    let mut fact_s = [0.0f64; 11];
    let mut fact_c = [0.0f64; 11];
    let mut f = 1.0f64;
    for i in 1..=21u32 {
        f *= i as f64;
        if i % 2 == 1 {
            fact_s[(i as usize - 1) / 2] = if (i / 2) % 2 == 0 { 1.0 / f } else { -1.0 / f };
        } else {
            fact_c[i as usize / 2] = if (i / 2) % 2 == 0 { 1.0 / f } else { -1.0 / f };
        }
    }
    fact_c[0] = 1.0;
    for i in (0..11).rev() {
        s = s * r2 + fact_s[i];
        c = c * r2 + fact_c[i];
    }
    let s = s * r;
    match (n as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut x = -80.0f64;
        while x < 80.0 {
            let (a, b) = (exp_f64(x), x.exp());
            assert!(((a - b) / b).abs() < 4e-15, "exp({x}) = {a} vs {b}");
            x += 0.0137;
        }
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(-1000.0), 0.0);
        assert!(exp_f64(f64::NAN).is_nan());
    }

    #[test]
    fn ln_pow_sin_cos_are_accurate() {
        for &v in &[1e-5, 0.1, 0.5, 1.0, 2.0, 10.0, 1e5, 1e6, 123456.789] {
            assert!(
                (ln_f64(v) - v.ln()).abs() < 1e-14 * v.ln().abs().max(1.0),
                "ln {v}"
            );
        }
        for i in 0..32 {
            let y = -2.0 * i as f64 / 64.0;
            let (a, b) = (pow_f64(1e5, y), 1e5f64.powf(y));
            assert!(((a - b) / b).abs() < 1e-13, "pow {y}");
        }
        let mut x = 0.0f64;
        while x < 9000.0 {
            let (s, c) = sin_cos_f64(x);
            assert!(
                (s - x.sin()).abs() < 1e-12 && (c - x.cos()).abs() < 1e-12,
                "sincos {x}"
            );
            x += 0.731;
        }
    }

    #[test]
    fn silu_matches_definition() {
        for i in -200..200 {
            let x = i as f32 * 0.11;
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            assert!((silu(x) as f64 - want).abs() <= want.abs() * 1e-6 + 1e-30);
        }
    }
}
