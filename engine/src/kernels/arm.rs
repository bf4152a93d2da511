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
