/*
 * iq_iexp.c - Q16 fixed point and I-BERT's integer exponential (intref.expo.to_fixed, iexp,
 * _iexp_parts) plus the element-wise Exp op and its backward (intref.expo.exp, exp_backward).
 *
 * Needs: rctc_intops.h. Leaves: X = round(x 2^16) (nearest, |x| clamped at 2^24);
 * z = floor(-X / LN2) (a real floor division), p = X + z LN2, E_p = (A (p + B)^2 + C 2^32 +
 * 2^31) >> 32, exp = E_p >> z with nearest rounding; Exp aligns every element to the largest
 * (shift z - zmin) and rounds once.
 */
#include "iq.h"

#define FRAC 16
#define LN2 45426
#define IEXP_A 23495
#define IEXP_B 88670
#define IEXP_C 22544
#define CLAMP ((int64_t)1 << 24)
#define Z_MAX 62

int64_t rctc_iq_to_fixed1(int64_t x, int e, int frac) {
    const int k = e + frac;
    const int64_t big = CLAMP << frac;
    if (k > 0) {
        const int64_t lim = k > 62 ? 0 : big >> k;
        return iq_shl(iq_clampv(x, -lim, lim), k > 63 ? 0 : k);
    }
    const int s = -k;
    int64_t v = s == 0 ? x : s > 62 ? 0 : iq_sar(x + ((int64_t)1 << (s - 1)), s);
    return iq_clampv(v, -big, big);
}

int rctc_iq_to_fixed(size_t n, const void *q, int w, int e, int frac, int64_t *out) {
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = iq_ld(q, w, i);
        if (e + frac < 0 && iq_abs(x) > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
        out[i] = rctc_iq_to_fixed1(x, e, frac);
    }
    return RCTC_IQ_OK;
}

/* exp(x) ~= E_p 2^-16 2^-z for Q16 x (any sign) */
static inline int64_t iexp_parts(int64_t x, int64_t *z) {
    *z = iq_fdiv(-x, LN2);
    const int64_t p = x + *z * LN2;
    const int64_t t = p + IEXP_B;
    const int64_t poly = IEXP_A * t * t + ((int64_t)IEXP_C << 32);
    return iq_sar(poly + ((int64_t)1 << 31), 32);
}

static inline int64_t rshift_var(int64_t x, int64_t z) { return iq_round_shift(x, (int)z); }

int rctc_iq_iexp(size_t n, const int64_t *x, int64_t *out) {
    for (size_t i = 0; i < n; ++i)
        if (x[i] > 0) return RCTC_IQ_EDOMAIN;
    for (size_t i = 0; i < n; ++i) {
        int64_t z;
        const int64_t ep = iexp_parts(x[i], &z);
        out[i] = rshift_var(ep, iq_min(z, Z_MAX));
    }
    return RCTC_IQ_OK;
}

/* intref.expo._exp_aligned: acc (into work) and its exponent */
static int exp_aligned(size_t n, const void *q, int w, int e, int64_t *work, int *e_acc) {
    const int rc = rctc_iq_to_fixed(n, q, w, e, FRAC, work);
    if (rc) return rc;
    int64_t zmin = INT64_MAX;
    for (size_t i = 0; i < n; ++i) {
        int64_t z;
        (void)iexp_parts(work[i], &z);
        zmin = z < zmin ? z : zmin;
    }
    for (size_t i = 0; i < n; ++i) {
        int64_t z;
        const int64_t ep = iexp_parts(work[i], &z);
        work[i] = rshift_var(ep, iq_min(z - zmin, Z_MAX));
    }
    *e_acc = n ? -FRAC - (int)zmin : -FRAC;
    return RCTC_IQ_OK;
}

int rctc_iq_exp(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out) {
    int ea;
    const int rc = exp_aligned(n, q, w, e, work, &ea);
    return rc ? rc : rctc_iq_requantize(n, work, ea, bits, NULL, out, e_out);
}

int rctc_iq_exp_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                         const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    int ea;
    const int rc = exp_aligned(n, q, qw, e, work, &ea);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) work[i] = iq_mul(iq_ld(dq, dw, i), work[i]);
    return rctc_iq_requantize(n, work, de + ea, bits, rand, dx, e_out);
}
