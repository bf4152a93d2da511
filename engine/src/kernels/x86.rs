//! x86_64 helpers shared by the format kernels: horizontal integer sums (exact in any order),
//! row-group reductions, f16 scale loads, prefetch and an 8x8 float transpose (moves only).

use std::arch::x86_64::*;

/// Sum of the four i32 lanes.
#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn hsum128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum256(v: __m256i) -> i32 {
    hsum128(_mm_add_epi32(
        _mm256_castsi256_si128(v),
        _mm256_extracti128_si256(v, 1),
    ))
}

/// i8 x16 -> two i16 x8 halves (sign-extended).
#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn widen_i8(v: __m128i) -> (__m128i, __m128i) {
    let sign = _mm_cmpgt_epi8(_mm_setzero_si128(), v);
    (_mm_unpacklo_epi8(v, sign), _mm_unpackhi_epi8(v, sign))
}

/// Unsigned weight codes (u8) times signed activations (i8), as eight i32 partial sums
/// (AVX2: `pmaddubsw` pairs then `pmaddwd` by one; the caller guarantees the i16 pair sums
/// cannot saturate, i.e. codes <= 128).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_u8i8_avx2(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

/// The same with one `vpdpbusd` (no intermediate i16, so no saturation at all).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) fn dot_u8i8_vnni(w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a)
}

/// Signed i8 weights (|w| <= 128) times i8 activations, pairwise summed to i16
/// (|pair| <= 2 * 128 * 127 < 2^15: no saturation).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_i8_pairs(w: __m256i, a: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

/// Eight vectors' lane sums: lane i of the result is the sum of `v[i]`'s eight lanes.
/// Integer additions only, so the grouping cannot change a result.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn reduce8(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let a = _mm256_hadd_epi32(h01, h23); // [v0 v1 v2 v3 (lo halves) | (hi halves)]
    let b = _mm256_hadd_epi32(h45, h67); // [v4 v5 v6 v7 (lo halves) | (hi halves)]
    _mm256_add_epi32(
        _mm256_permute2x128_si256(a, b, 0x20),
        _mm256_permute2x128_si256(a, b, 0x31),
    )
}

/// Four row pairs' partial sums (`[row 2k | row 2k+1]`, four lanes each) to the eight row
/// totals `[r0, .., r7]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn reduce_pairs(p: [__m256i; 4]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]); // [r0 r0 r2 r2 | r1 r1 r3 r3]
    let h23 = _mm256_hadd_epi32(p[2], p[3]); // [r4 r4 r6 r6 | r5 r5 r7 r7]
    let h = _mm256_hadd_epi32(h01, h23); // [r0 r2 r4 r6 | r1 r3 r5 r7]
    _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// The f16 words at `base + r * rb` (low half) and 2 bytes further (high half) for rows
/// r = 0..8, converted through the same table as the single-row kernels.
///
/// # Safety
///
/// `base + r * rb .. + 4` must be readable for r = 0..8, and the CPU must have AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f16_pairs(base: *const u8, rb: usize, lut: &[f32]) -> (__m256, __m256) {
    // Plain loads, not a gather: in decode these are the first touches of each row's cache
    // line, and a gather waiting on eight misses stalls the pipeline.
    // SAFETY: readable per the contract above.
    let ld = |r: usize| unsafe { (base.add(r * rb) as *const i32).read_unaligned() };
    let w = _mm256_setr_epi32(ld(0), ld(1), ld(2), ld(3), ld(4), ld(5), ld(6), ld(7));
    let lo = _mm256_and_si256(w, _mm256_set1_epi32(0xffff));
    let hi = _mm256_srli_epi32(w, 16);
    assert!(lut.len() == 1 << 16);
    // SAFETY: indices are u16 values and the table has 65536 entries (checked).
    unsafe {
        (
            _mm256_i32gather_ps::<4>(lut.as_ptr(), lo),
            _mm256_i32gather_ps::<4>(lut.as_ptr(), hi),
        )
    }
}

/// Prefetch `len` bytes (whole cache lines) at `p`: the next row group's weights, spread
/// over the blocks of the current group. A prefetch never faults, so `p` may lie past the end
/// of the matrix.
#[inline(always)]
pub(super) fn prefetch_span(p: *const u8, len: usize) {
    let mut o = 0;
    while o < len {
        // SAFETY: prefetching is a hint and never faults; `wrapping_add` keeps the pointer
        // arithmetic defined. SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(o) as *const i8) };
        o += 64;
    }
}

/// Transpose an 8x8 matrix of f32 held as eight row vectors (data moves only: bits unchanged).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// The per-sub-block terms of eight rows (`t[r]`, lane j = term of sub-block j of row r)
/// added to the eight rows' accumulators (lane r) in sub-block order j = 0..8: each lane
/// receives exactly the sequence of scalar additions `acc = acc + t[r][j]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn add_terms_in_order(acc: __m256, t: [__m256; 8]) -> __m256 {
    let c = transpose8(t);
    let mut acc = acc;
    for cj in c {
        acc = _mm256_add_ps(acc, cj);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_ordered_adds_match_scalar() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let m: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        // SAFETY: AVX2 checked above; loads and stores stay inside `m` / `out`.
        unsafe {
            let rows: [__m256; 8] = std::array::from_fn(|r| _mm256_loadu_ps(m.as_ptr().add(8 * r)));
            let t = transpose8(rows);
            for (j, tj) in t.iter().enumerate() {
                let mut out = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), *tj);
                for (r, &v) in out.iter().enumerate() {
                    assert_eq!(v.to_bits(), m[8 * r + j].to_bits());
                }
            }
            let acc = add_terms_in_order(_mm256_set1_ps(0.1), rows);
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), acc);
            for (r, &v) in out.iter().enumerate() {
                let mut want = 0.1f32;
                for j in 0..8 {
                    want += m[8 * r + j];
                }
                assert_eq!(v.to_bits(), want.to_bits());
            }
        }
    }
}
