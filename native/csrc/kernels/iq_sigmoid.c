/*
 * iq_sigmoid.c - Sigmoid and its backward (intref.expo.sigmoid, sigmoid_backward).
 *
 * Needs: rctc_intops.h. Leaves: E = iexp(-|X|), s = round(E 2^16 / (2^16 + E)), mirrored for
 * X >= 0 (Q16), rounded once; backward dy s (2^16 - s) at de - 32, one rounding.
 */
#include "iq.h"

#define ONE ((int64_t)1 << 16)

static int sigmoid_q16(size_t n, const void *q, int w, int e, int64_t *out) {
    const int rc = rctc_iq_to_fixed(n, q, w, e, 16, out);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = out[i];
        int64_t ex = -(x < 0 ? -x : x);
        (void)rctc_iq_iexp(1, &ex, &ex);
        const int64_t den = ONE + ex;
        const int64_t s = iq_fdiv((ex << 16) + (den >> 1), den);
        out[i] = x >= 0 ? ONE - s : s;
    }
    return RCTC_IQ_OK;
}

int rctc_iq_sigmoid(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out) {
    const int rc = sigmoid_q16(n, q, w, e, work);
    return rc ? rc : rctc_iq_requantize(n, work, -16, bits, NULL, out, e_out);
}

int rctc_iq_sigmoid_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                             const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int rc = sigmoid_q16(n, q, qw, e, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) work[i] = iq_mul(iq_ld(dq, dw, i), work[i] * (ONE - work[i]));
    return rctc_iq_requantize(n, work, de - 32, bits, rand, dx, e_out);
}
