/*
 * iq_hardswish.c - HardSwish and its backward (intref.pointwise.hardswish, _backward).
 *
 * Needs: rctc_intops.h. Leaves: on the grid 2^-sh (sh = max(-e, 0)) with three = 3 2^sh:
 * forward floor((xs clip(xs + three, 0, 2 three) << 24) / 6) at -2 sh - 24, one nearest
 * rounding; backward slope floor(((2 xs + three) << 24) / (6 2^sh)) inside (-3, 3), 2^24 at
 * x >= 3, 0 below, times dy at de - 24, one rounding. RCTC_IQ_EOVERFLOW where intref refuses
 * ((max|x| << (e + sh)) (6 << sh) >= 2^38).
 */
#include "iq.h"

#define HSIG_FRAC 24

static int check(size_t n, const void *q, int w, int e, int sh) {
    uint64_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(iq_ld(q, w, i));
        m = a > m ? a : m;
    }
    if (!m) return RCTC_IQ_OK;
    const int bl = iq_bitlen(m) + (e + sh) + 3 + sh; /* bitlen(6 << sh) = 3 + sh */
    if (bl - 1 >= 62 - HSIG_FRAC + 1) return RCTC_IQ_EOVERFLOW;
    const uint64_t prod = (m << (e + sh)) * ((uint64_t)6 << sh);
    return prod >= ((uint64_t)1 << (62 - HSIG_FRAC)) ? RCTC_IQ_EOVERFLOW : RCTC_IQ_OK;
}

int rctc_iq_hardswish(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out) {
    const int sh = e < 0 ? -e : 0;
    const int64_t three = (int64_t)3 << sh;
    const int rc = check(n, q, w, e, sh);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) {
        const int64_t xs = iq_shl(iq_ld(q, w, i), e + sh);
        const int64_t t = iq_clampv(xs + three, 0, 2 * three);
        work[i] = iq_fdiv(iq_shl(xs * t, HSIG_FRAC), 6);
    }
    return rctc_iq_requantize(n, work, -2 * sh - HSIG_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_hardswish_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int sh = e < 0 ? -e : 0;
    const int64_t three = (int64_t)3 << sh;
    const int rc = check(n, q, qw, e, sh);
    if (rc) return rc;
    const int64_t den = (int64_t)6 << sh;
    for (size_t i = 0; i < n; ++i) {
        const int64_t xs = iq_shl(iq_ld(q, qw, i), e + sh);
        int64_t slope;
        if (xs >= three)
            slope = (int64_t)1 << HSIG_FRAC;
        else if (xs > -three)
            slope = iq_fdiv(iq_shl(2 * xs + three, HSIG_FRAC), den);
        else
            slope = 0;
        work[i] = iq_mul(iq_ld(dq, dw, i), slope);
    }
    return rctc_iq_requantize(n, work, de - HSIG_FRAC, bits, rand, dx, e_out);
}
