/*
 * bitwidth.c - the bitwidth controller's statistic, window, decision and rescale (rctc_bitwidth.h).
 *
 * Needs: iq.h (loads / stores by width, shifts), the 128-bit helpers of iq_i128.c. Leaves exactly
 * what rctc/bitwidth_rule.py computes, in integers only (tests/native/test_bitwidth_c.py).
 */
#include "rctc_bitwidth.h"

#include "iq.h"

static rctc_i128 u128(uint64_t v) {
    rctc_i128 r;
    r.lo = v;
    r.hi = 0;
    return r;
}

uint64_t rctc_bw_gavg(uint64_t a, int64_t m, int k, uint64_t n) {
    if (n == 0 || a == 0 || m == 0) return 0;
    /* a * |m| < 2^64 * 2^63 = 2^127: exact and non-negative as a signed 128-bit value */
    rctc_i128 num = rctc_i128_mul_u64(u128(a), iq_abs(m));
    const int s = k + RCTC_BW_FRAC_BITS;
    if (s >= 0) {
        /* num << s >= 2^126 past this, and 2^126 / n >= 2^62 for n < 2^64: the cap */
        if (rctc_i128_bitlen(num) + s > 126) return RCTC_BW_G_CAP;
        num = rctc_i128_shl(num, s);
    } else {
        if (-s >= 127) return 0; /* num < 2^127 */
        num = rctc_i128_sar(num, -s); /* floor(floor(x / 2^t) / n) == floor(x / (2^t n)) */
    }
    const rctc_i128 g = rctc_i128_divfloor(num, n);
    return (g.hi != 0 || g.lo > RCTC_BW_G_CAP) ? RCTC_BW_G_CAP : g.lo;
}

int rctc_bw_observe(rctc_bw_window *w, uint64_t g, uint64_t s, uint64_t n) {
    if (g > RCTC_BW_G_CAP || s > n || w->sum_n + n < w->sum_n) return RCTC_IQ_EDOMAIN;
    w->count += 1;
    w->sum_g = rctc_i128_add(w->sum_g, u128(g));
    w->sum_s += s;
    w->sum_n += n;
    return RCTC_IQ_OK;
}

int rctc_bw_decide(const rctc_bw_window *w, uint64_t low, uint64_t high, int bits, int min_bits, int max_bits) {
    if (w->count == 0) return RCTC_BW_KEEP;
    /* every product below is < 2^127 (s <= n < 2^64, thresholds <= 2^62 + 1): exact */
    const rctc_i128 sat = rctc_i128_mul_u64(u128(w->sum_s), RCTC_BW_SAT_DEN);
    const rctc_i128 lim = rctc_i128_mul_u64(u128(w->sum_n), RCTC_BW_SAT_NUM);
    if (rctc_i128_cmp(sat, lim) > 0 && bits < max_bits) return RCTC_BW_SATURATION;
    if (rctc_i128_cmp(w->sum_g, rctc_i128_mul_u64(u128(low), w->count)) < 0 && bits < max_bits)
        return RCTC_BW_UNDERFLOW;
    if (rctc_i128_cmp(w->sum_g, rctc_i128_mul_u64(u128(high), w->count)) > 0 && bits > min_bits)
        return RCTC_BW_WASTED;
    return RCTC_BW_KEEP;
}

void rctc_bw_rescale(int action, size_t n, void *q, int qw, int *bits, int *exp) {
    if (action == RCTC_BW_SATURATION) {
        *bits += 1;
    } else if (action == RCTC_BW_UNDERFLOW) {
        /* lossless: |q| <= 2^(bits-1) - 1 and the storage holds max_bits > bits */
        for (size_t i = 0; i < n; ++i) iq_st(q, qw, i, iq_shl(iq_ld(q, qw, i), 1));
        *bits += 1;
        *exp -= 1;
    } else if (action == RCTC_BW_WASTED) {
        const int64_t qmax = ((int64_t)1 << (*bits - 2)) - 1;
        for (size_t i = 0; i < n; ++i) {
            const int64_t v = iq_ld(q, qw, i);
            const int64_t h = iq_sar(v, 1);
            iq_st(q, qw, i, iq_clampv(h + (v & h & 1), -qmax, qmax)); /* q / 2, half to even */
        }
        *bits -= 1;
        *exp += 1;
    }
}

int rctc_bw_adjust(rctc_bw_window *w, uint64_t low, uint64_t high, int min_bits, int max_bits, size_t n, void *q,
                   int qw, int *bits, int *exp) {
    const int action = rctc_bw_decide(w, low, high, *bits, min_bits, max_bits);
    rctc_bw_rescale(action, n, q, qw, bits, exp);
    w->count = 0;
    w->sum_g = u128(0);
    w->sum_s = 0;
    w->sum_n = 0;
    return action;
}
