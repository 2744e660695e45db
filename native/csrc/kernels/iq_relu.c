/*
 * iq_relu.c - ReLU and its backward (intref.pointwise.relu, relu_backward): exact.
 *
 * Needs: rctc_intops.h. Leaves: out = max(q, 0) in q's storage, same exponent; dx = dq where
 * q > 0 else 0, in dq's storage. The int8 loops are plain enough for the compiler to vectorise.
 */
#include "iq.h"

void rctc_iq_relu(size_t n, const void *q, int w, void *out) {
    if (w == 1) {
        const int8_t *x = (const int8_t *)q;
        int8_t *y = (int8_t *)out;
        for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0;
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_ld(q, w, i);
        iq_st(out, w, i, v > 0 ? v : 0);
    }
}

void rctc_iq_relu_backward(size_t n, const void *q, int qw, const void *dq, int dw, void *dx) {
    if (qw == 1 && dw == 1) {
        const int8_t *x = (const int8_t *)q, *d = (const int8_t *)dq;
        int8_t *y = (int8_t *)dx;
        for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? d[i] : 0;
        return;
    }
    for (size_t i = 0; i < n; ++i) iq_st(dx, dw, i, iq_ld(q, qw, i) > 0 ? iq_ld(dq, dw, i) : 0);
}
