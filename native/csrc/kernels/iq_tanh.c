/*
 * iq_tanh.c - Tanh and its backward (intref.expo.tanh, tanh_backward).
 *
 * Needs: rctc_intops.h. Leaves: E = iexp(-2|X|), t = max(round((2^16 - E) 2^16 / (2^16 + E)),
 * 0) (a floor division: the numerator may be negative), signed (Q16), rounded once; backward
 * dy (2^32 - t^2) at de - 32, one rounding.
 */
#include "iq.h"

#define ONE ((int64_t)1 << 16)

static int tanh_q16(size_t n, const void *q, int w, int e, int64_t *out) {
    const int rc = rctc_iq_to_fixed(n, q, w, e, 16, out);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = out[i];
        int64_t ex = -2 * (x < 0 ? -x : x);
        (void)rctc_iq_iexp(1, &ex, &ex);
        const int64_t den = ONE + ex;
        const int64_t t = iq_max(iq_fdiv(iq_shl(ONE - ex, 16) + (den >> 1), den), 0);
        out[i] = iq_sign(x) * t;
    }
    return RCTC_IQ_OK;
}

int rctc_iq_tanh(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out) {
    const int rc = tanh_q16(n, q, w, e, work);
    return rc ? rc : rctc_iq_requantize(n, work, -16, bits, NULL, out, e_out);
}

int rctc_iq_tanh_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                          const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int rc = tanh_q16(n, q, qw, e, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) work[i] = iq_mul(iq_ld(dq, dw, i), (ONE << 16) - work[i] * work[i]);
    return rctc_iq_requantize(n, work, de - 32, bits, rand, dx, e_out);
}
