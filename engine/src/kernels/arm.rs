//! aarch64 helpers shared by the format kernels.

use std::arch::aarch64::*;

/// Sum of w[i] * a[i] over 16 lanes, exact in i32.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn dot16(w: int8x16_t, a: int8x16_t) -> i32 {
    let acc = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
    let acc = vpadalq_s16(acc, vmull_high_s8(w, a));
    vaddvq_s32(acc)
}

/// NEON form of [`dots16_scalar`](crate::kernels::dots16_scalar): the sixteen 16-value
/// partial dots of unpacked K-quant weights with 256 activation codes (exact integers).
///
/// # Safety
///
/// `q` must hold at least 256 codes (the tile kernels pass one super-block's).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dots16(w: &[i8; crate::kernels::QK_K], q: &[i8]) -> [i32; 16] {
    assert!(q.len() >= crate::kernels::QK_K);
    let mut p = [0i32; 16];
    for (h, ph) in p.iter_mut().enumerate() {
        // SAFETY: 16 * 16 codes lie inside `w` and `q` (asserted).
        *ph = dot16(
            vld1q_s8(w.as_ptr().add(16 * h)),
            vld1q_s8(q.as_ptr().add(16 * h)),
        );
    }
    p
}
