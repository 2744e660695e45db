/*
 * iq_hardsigmoid.c - HardSigmoid and its backward (intref.pointwise.hardsigmoid, _backward).
 *
 * Needs: rctc_intops.h; alpha = an / 2^alog2 and beta = bn / 2^blog2 exactly (float32 ratios).
 * Leaves: alpha x + beta = num / den exactly, den = 2^(alog2 + blog2 + sh), sh = max(-e, 0);
 * forward clip(num, 0, den), cut to 2^-24 by floor((num << 24) / den), one nearest rounding;
 * backward alpha dy (an dy at de - alog2) where 0 < num < den. RCTC_IQ_EOVERFLOW where intref
 * refuses (max|q| |mult| + |off| > 2^61 or den > 2^37).
 */
#include "iq.h"

#define HSIG_FRAC 24

/* mult = an 2^(blog2 + e + sh), off = bn 2^(alog2 + sh), log2 den; EOVERFLOW as intref */
static int numerator(size_t n, const void *q, int w, int e, int64_t an, int alog2, int64_t bn, int blog2,
                     int64_t *mult, int64_t *off, int *dlog2) {
    const int sh = e < 0 ? -e : 0;
    const int ms = blog2 + e + sh, os = alog2 + sh;
    uint64_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(iq_ld(q, w, i));
        m = a > m ? a : m;
    }
    *dlog2 = alog2 + blog2 + sh;
    if (*dlog2 > 61 - HSIG_FRAC) return RCTC_IQ_EOVERFLOW;
    if (an && iq_bitlen(iq_abs(an)) + ms > 63) return RCTC_IQ_EOVERFLOW;
    if (bn && iq_bitlen(iq_abs(bn)) + os > 62) return RCTC_IQ_EOVERFLOW;
    *mult = an ? iq_shl(an, ms) : 0;
    *off = bn ? iq_shl(bn, os) : 0;
    const rctc_i128 lhs = rctc_i128_add(rctc_i128_mul64((int64_t)m, (int64_t)iq_abs(*mult)),
                                        rctc_i128_from_i64((int64_t)iq_abs(*off)));
    if (m > ((uint64_t)1 << 62) || rctc_i128_cmp(lhs, rctc_i128_from_i64((int64_t)1 << 61)) > 0)
        return RCTC_IQ_EOVERFLOW;
    return RCTC_IQ_OK;
}

int rctc_iq_hardsigmoid(size_t n, const void *q, int w, int e, int64_t an, int alog2, int64_t bn, int blog2,
                        int bits, int64_t *work, void *out, int *e_out) {
    int64_t mult, off;
    int dlog2;
    const int rc = numerator(n, q, w, e, an, alog2, bn, blog2, &mult, &off, &dlog2);
    if (rc) return rc;
    const int64_t den = (int64_t)1 << dlog2;
    for (size_t i = 0; i < n; ++i) {
        const int64_t num = iq_clampv(iq_ld(q, w, i) * mult + off, 0, den);
        work[i] = iq_fdiv(num << HSIG_FRAC, den);
    }
    return rctc_iq_requantize(n, work, -HSIG_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_hardsigmoid_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de,
                                 int64_t an, int alog2, int64_t bn, int blog2, int bits, const uint32_t *rand,
                                 int64_t *work, void *dx, int *e_out) {
    int64_t mult, off;
    int dlog2;
    const int rc = numerator(n, q, qw, e, an, alog2, bn, blog2, &mult, &off, &dlog2);
    if (rc) return rc;
    const int64_t den = (int64_t)1 << dlog2;
    for (size_t i = 0; i < n; ++i) {
        const int64_t num = iq_ld(q, qw, i) * mult + off;
        work[i] = (num > 0 && num < den) ? iq_mul(iq_ld(dq, dw, i), an) : 0;
    }
    return rctc_iq_requantize(n, work, de - alog2, bits, rand, dx, e_out);
}
