/*
 * iq_relu.c - ReLU and its backward (intref.pointwise.relu, relu_backward): exact.
 *
 * Needs: rctc_intops.h. Leaves: out = max(q, 0) in q's storage, same exponent; dx = dq where
 * q > 0 else 0, in dq's storage. int8 runs the AVX2 variant where the CPU has it (same bits).
 */
#include "iq.h"
#include "rctc_kernels.h"

void rctc_iq_relu_s8_portable(size_t n, const int8_t *x, int8_t *y) {
    for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0;
}

void rctc_iq_relu_backward_s8_portable(size_t n, const int8_t *x, const int8_t *d, int8_t *y) {
    for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? d[i] : 0;
}

#if defined(__x86_64__) || defined(_M_X64)
#define IQ_AVX2 (rctc_isa_available() & (1 << RCTC_ISA_AVX2))
#else
#define IQ_AVX2 0
#endif

void rctc_iq_relu(size_t n, const void *q, int w, void *out) {
    if (w == 1) {
#if defined(__x86_64__) || defined(_M_X64)
        if (IQ_AVX2) {
            rctc_iq_relu_s8_avx2(n, (const int8_t *)q, (int8_t *)out);
            return;
        }
#endif
        rctc_iq_relu_s8_portable(n, (const int8_t *)q, (int8_t *)out);
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_ld(q, w, i);
        iq_st(out, w, i, v > 0 ? v : 0);
    }
}

void rctc_iq_relu_backward(size_t n, const void *q, int qw, const void *dq, int dw, void *dx) {
    if (qw == 1 && dw == 1) {
#if defined(__x86_64__) || defined(_M_X64)
        if (IQ_AVX2) {
            rctc_iq_relu_backward_s8_avx2(n, (const int8_t *)q, (const int8_t *)dq, (int8_t *)dx);
            return;
        }
#endif
        rctc_iq_relu_backward_s8_portable(n, (const int8_t *)q, (const int8_t *)dq, (int8_t *)dx);
        return;
    }
    for (size_t i = 0; i < n; ++i) iq_st(dx, dw, i, iq_ld(q, qw, i) > 0 ? iq_ld(dq, dw, i) : 0);
}
