/*
 * iq_leaky_relu.c - LeakyReLU and its backward (intref.pointwise.leaky_relu, _backward).
 *
 * Needs: rctc_intops.h; alpha_q = fixed_point(alpha, 24). Leaves: accumulator x << 24 (x >= 0;
 * backward: q > 0) or alpha_q x at e - 24, one rounding to bits (stochastic with rand).
 */
#include "iq.h"

#define SLOPE_FRAC 24

int rctc_iq_leaky_relu(size_t n, const void *q, int w, int e, int64_t alpha_q, int bits, int64_t *work,
                       void *out, int *e_out) {
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = iq_ld(q, w, i);
        work[i] = x >= 0 ? iq_shl(x, SLOPE_FRAC) : iq_mul(x, alpha_q);
    }
    return rctc_iq_requantize(n, work, e - SLOPE_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_leaky_relu_backward(size_t n, const void *q, int qw, const void *dq, int dw, int de, int64_t alpha_q,
                                int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    for (size_t i = 0; i < n; ++i) {
        const int64_t d = iq_ld(dq, dw, i);
        work[i] = iq_ld(q, qw, i) > 0 ? iq_shl(d, SLOPE_FRAC) : iq_mul(d, alpha_q);
    }
    return rctc_iq_requantize(n, work, de - SLOPE_FRAC, bits, rand, dx, e_out);
}
