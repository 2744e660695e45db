/*
 * iq_reduce_mean.c - ReduceMean / GlobalAveragePool and the backward (intref.pool.reduce_mean,
 * reduce_mean_backward, global_avgpool, global_avgpool_backward).
 *
 * Needs: rctc_intops.h; the reduced axes made the middle axis of (outer, red, inner) by the
 * caller. Leaves: exact int64 sum times R = round(2^32 / red) at e - 32, one nearest rounding
 * (|sum| >= 2^30: RCTC_IQ_EOVERFLOW); backward dy R broadcast over the reduced axis, one
 * rounding (stochastic with rand, one word per input element).
 */
#include "iq.h"

#define RECIP_FRAC 32

int rctc_iq_reduce_mean(size_t outer, size_t red, size_t inner, const void *q, int w, int e, int bits,
                        int64_t *work, void *out, int *e_out) {
    const int64_t r = (int64_t)rctc_iq_recip_fixed(red, RECIP_FRAC);
    uint64_t m = 0;
    for (size_t o = 0; o < outer; ++o)
        for (size_t i = 0; i < inner; ++i) {
            int64_t s = 0;
            for (size_t k = 0; k < red; ++k) s = iq_add(s, iq_ld(q, w, (o * red + k) * inner + i));
            const uint64_t a = iq_abs(s);
            m = a > m ? a : m;
            work[o * inner + i] = s;
        }
    if (m >= ((uint64_t)1 << 30)) return RCTC_IQ_EOVERFLOW;
    for (size_t j = 0; j < outer * inner; ++j) work[j] *= r;
    return rctc_iq_requantize(outer * inner, work, e - RECIP_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_reduce_mean_backward(size_t outer, size_t red, size_t inner, const void *dq, int dw, int de, int bits,
                                 const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int64_t r = (int64_t)rctc_iq_recip_fixed(red, RECIP_FRAC);
    for (size_t o = 0; o < outer; ++o)
        for (size_t k = 0; k < red; ++k)
            for (size_t i = 0; i < inner; ++i) work[(o * red + k) * inner + i] = iq_mul(iq_ld(dq, dw, o * inner + i), r);
    return rctc_iq_requantize(outer * red * inner, work, de - RECIP_FRAC, bits, rand, dx, e_out);
}
