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
#include "rctc_kernels.h"

#define RECIP_FRAC 32
/* the backward's block of copies for rows shorter than 16 (stack int64s; smaller on bare metal) */
#ifdef RCTC_THREADS
#define RCTC_RM_BLOCK 2048u
#else
#define RCTC_RM_BLOCK 256u
#endif

/* work[0 .. inner) += row (w bytes an element; the width switch outside the loop) */
static void add_row(const void *row, int w, size_t inner, int64_t *work) {
    switch (w) {
    case 1: for (size_t i = 0; i < inner; ++i) work[i] = iq_add(work[i], ((const int8_t *)row)[i]); break;
    case 2: for (size_t i = 0; i < inner; ++i) work[i] = iq_add(work[i], ((const int16_t *)row)[i]); break;
    case 4: for (size_t i = 0; i < inner; ++i) work[i] = iq_add(work[i], ((const int32_t *)row)[i]); break;
    default: for (size_t i = 0; i < inner; ++i) work[i] = iq_add(work[i], ((const int64_t *)row)[i]); break;
    }
}

/* *acc += the sum of p[off .. off + n) */
static void add_run(const void *p, int w, size_t off, size_t n, int64_t *acc) {
    int64_t s = 0;
    switch (w) {
    case 1: for (size_t i = 0; i < n; ++i) s += ((const int8_t *)p)[off + i]; break;
    case 2: for (size_t i = 0; i < n; ++i) s += ((const int16_t *)p)[off + i]; break;
    case 4: for (size_t i = 0; i < n; ++i) s += ((const int32_t *)p)[off + i]; break;
    default: for (size_t i = 0; i < n; ++i) s = iq_add(s, ((const int64_t *)p)[off + i]); break;
    }
    *acc = iq_add(*acc, s);
}

int rctc_iq_reduce_mean(size_t outer, size_t red, size_t inner, const void *q, int w, int e, int bits,
                        int64_t *work, void *out, int *e_out) {
    const int64_t r = (int64_t)rctc_iq_recip_fixed(red, RECIP_FRAC);
    for (size_t o = 0; o < outer; ++o) { /* the sums row by row along the reduced axis */
        int64_t *acc = work + o * inner;
        if (inner == 1) { /* a contiguous run (GlobalAveragePool) */
            acc[0] = 0;
            add_run(q, w, o * red, red, acc);
            continue;
        }
        for (size_t i = 0; i < inner; ++i) acc[i] = 0;
        for (size_t k = 0; k < red; ++k) add_row((const char *)q + (o * red + k) * inner * (size_t)w, w, inner, acc);
    }
    if (rctc_iq_absmax(outer * inner, work) >= ((uint64_t)1 << 30)) return RCTC_IQ_EOVERFLOW;
    for (size_t j = 0; j < outer * inner; ++j) work[j] *= r;
    return rctc_iq_requantize(outer * inner, work, e - RECIP_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_reduce_mean_backward(size_t outer, size_t red, size_t inner, const void *dq, int dw, int de, int bits,
                                 const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    /* dy R once per (outer, inner) element: the broadcast copies share its max, so requantize's
     * shift comes from these; each copy then rounds with its own word (a row of 16 or more at a
     * time, or a stack block of an outer index's copies) */
    const int64_t r = (int64_t)rctc_iq_recip_fixed(red, RECIP_FRAC);
    const size_t n = outer * inner;
    for (size_t j = 0; j < n; ++j) work[j] = iq_mul(iq_ld(dq, dw, j), r);
    const uint64_t m = rctc_iq_absmax(n, work);
    const int s = rctc_iq_requant_shift(m, bits, rand != NULL), ow = rctc_iq_width(bits);
    if (s > 0 && m > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    if (inner < 16) { /* short rows (GlobalAveragePool's inner 1): a stack block of copies at a time */
        const size_t per = RCTC_RM_BLOCK / inner; /* rows of copies a block holds */
        int64_t blk[RCTC_RM_BLOCK];
        for (size_t o = 0; o < outer; ++o) {
            const int64_t *src = work + o * inner;
            const size_t rows = red < per ? red : per;
            for (size_t j = 0, i = 0; j < rows * inner; ++j) { /* a wrapping index: no copy call a row */
                blk[j] = src[i];
                i = i + 1 == inner ? 0 : i + 1;
            }
            for (size_t k0 = 0; k0 < red; k0 += rows) {
                const size_t c = red - k0 < rows ? red - k0 : rows, at = (o * red + k0) * inner;
                rctc_iq_round_store(c * inner, blk, s, rand ? rand + at : NULL, (char *)dx + at * (size_t)ow, ow);
            }
        }
    } else {
        for (size_t o = 0; o < outer; ++o)
            for (size_t k = 0; k < red; ++k) {
                const size_t at = (o * red + k) * inner;
                rctc_iq_round_store(inner, work + o * inner, s, rand ? rand + at : NULL, (char *)dx + at * (size_t)ow,
                                    ow);
            }
    }
    *e_out = de - RECIP_FRAC + s;
    return RCTC_IQ_OK;
}
