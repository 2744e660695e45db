/*
 * iq_concat.c - Concat and its backward (intref.arith.concat, concat_backward).
 *
 * Needs: rctc_intops.h; input i is C-contiguous (outer, sizes[i], inner). Leaves: every input
 * aligned to intref.core.align's exponent, concatenated along the middle axis, one nearest
 * rounding; the backward splits dy exactly (same storage, same exponent).
 */
#include "iq.h"

int rctc_iq_concat(int k, const void *const *xs, const int *ws, const int *exps, size_t outer, const int *sizes,
                   size_t inner, int bits, int64_t *work, void *out, int *e_out) {
    uint64_t m[64];
    size_t total = 0;
    if (k < 1 || k > 64) return RCTC_IQ_EDOMAIN;
    for (int t = 0; t < k; ++t) {
        const size_t len = outer * (size_t)sizes[t] * inner;
        m[t] = 0;
        for (size_t i = 0; i < len; ++i) {
            const uint64_t a = iq_abs(iq_ld(xs[t], ws[t], i));
            m[t] = a > m[t] ? a : m[t];
        }
        total += (size_t)sizes[t];
    }
    const int ec = rctc_iq_align_exp(k, m, exps, 61);
    for (int t = 0; t < k; ++t) {
        const int sh = exps[t] - ec;
        if (sh > 0 && m[t] > (sh > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> sh)) return RCTC_IQ_EOVERFLOW;
        if (sh < 0 && m[t] > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    }
    size_t col = 0;
    for (int t = 0; t < k; ++t) {
        const int sh = exps[t] - ec;
        const size_t row = (size_t)sizes[t] * inner;
        for (size_t o = 0; o < outer; ++o) {
            int64_t *dst = work + (o * total + col) * inner;
            for (size_t i = 0; i < row; ++i) {
                const int64_t v = iq_ld(xs[t], ws[t], o * row + i);
                dst[i] = sh >= 0 ? (sh > 63 ? 0 : iq_shl(v, sh))
                                 : (-sh > 62 ? 0 : iq_sar(v + ((int64_t)1 << (-sh - 1)), -sh));
            }
        }
        col += (size_t)sizes[t];
    }
    return rctc_iq_requantize(outer * total * inner, work, ec, bits, NULL, out, e_out);
}

void rctc_iq_concat_backward(const void *dq, int dw, size_t outer, int k, const int *sizes, size_t inner,
                             void *const *dxs) {
    size_t total = 0, col = 0;
    for (int t = 0; t < k; ++t) total += (size_t)sizes[t];
    for (int t = 0; t < k; ++t) {
        const size_t row = (size_t)sizes[t] * inner;
        for (size_t o = 0; o < outer; ++o)
            for (size_t i = 0; i < row; ++i) iq_st(dxs[t], dw, o * row + i, iq_ld(dq, dw, (o * total + col) * inner + i));
        col += (size_t)sizes[t];
    }
}
