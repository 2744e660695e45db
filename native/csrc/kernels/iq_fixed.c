/*
 * iq_fixed.c - fixed-point reciprocal and reciprocal square root (intref.core.recip_fixed,
 * rsqrt_fixed) and the exact integer square root they need.
 *
 * Needs: rctc_intops.h. Leaves: recip = round(2^frac / d) half up; rsqrt: k = floor((62 -
 * bitlen v) / 2), s = isqrt(v 4^k) in [2^30, 2^31), m = round(2^62 / s), f = 62 - k, exactly
 * as intref (the argument may be a 128-bit per-group scalar). isqrt by Newton's iteration where the
 * CPU divides 64-bit integers (x86-64, AArch64), else digit by digit (Cortex-M: no 64-bit divide).
 */
#include "iq.h"

uint64_t rctc_iq_recip_fixed(uint64_t d, int frac_bits) {
    return (((uint64_t)1 << frac_bits) + (d >> 1)) / d;
}

uint64_t rctc_iq_isqrt(uint64_t v) {
#if (defined(__x86_64__) || defined(_M_X64) || defined(__aarch64__)) && (defined(__GNUC__) || defined(__clang__))
    /* hardware 64-bit division: Newton's iteration from above (x0 = 2^ceil(bitlen / 2) >= sqrt v),
     * y = (x + v / x) / 2 while it decreases, ends at floor(sqrt v); x + v / x <= 2x <= 2^33 */
    if (v < 2u) return v;
    uint64_t x = (uint64_t)1 << ((65 - __builtin_clzll(v)) / 2);
    for (;;) {
        const uint64_t y = (x + v / x) >> 1;
        if (y >= x) return x;
        x = y;
    }
#else
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) { /* digit by digit; the choice as a mask (its outcome is data: no branch to mispredict) */
        const uint64_t t = r + bit, take = 0u - (uint64_t)(v >= t);
        v -= t & take;
        r = (r >> 1) + (bit & take);
        bit >>= 2;
    }
    return r;
#endif
}

int rctc_iq_rsqrt_fixed(rctc_i128 v, uint64_t *m, int *f) {
    const rctc_i128 zero = {0, 0};
    if (rctc_i128_cmp(v, zero) <= 0) return RCTC_IQ_EDOMAIN;
    const int bl = rctc_i128_bitlen(v);
    if (bl > 126) return RCTC_IQ_EOVERFLOW;
    const int num = 62 - bl;
    const int k = num >= 0 ? num / 2 : -((-num + 1) / 2); /* floor */
    const rctc_i128 arg = k >= 0 ? rctc_i128_shl(v, 2 * k) : rctc_i128_sar(v, -2 * k);
    const uint64_t s = rctc_iq_isqrt(arg.lo);
    *m = (((uint64_t)1 << 62) + (s >> 1)) / s;
    *f = 62 - k;
    return RCTC_IQ_OK;
}
