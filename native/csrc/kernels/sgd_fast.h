/*
 * sgd_fast.h - the fast path's operand range of the fused SGD update (sgd_update_fast.c,
 * x86/sgd_update_avx2.c, x86/sgd_update_avx512.c); internal.
 *
 * In range: a shift 1 <= s = -k <= 53 for the whole tensor, every product exact (max |acc| |m|
 * < 2^53: numpy's float64 acc * m has no rounding, so u = p 2^-s with p = acc m an int64), the
 * statistic A = sum |acc| below 2^64 whatever the order of the sum (n max |acc| < 2^64), 2 <= bits
 * <= 8 qw and qw 1, 2 or 4 (the clipped sum fits the storage). There the portable loop
 * (rctc_sgd_update_fused_portable) takes one branch for every element: fl = floor(p 2^-s),
 * f = p - fl 2^s, up = [U 2^(s-24) < f] (stochastic) or round half to even (nearest).
 */
#ifndef RCTC_SGD_FAST_H
#define RCTC_SGD_FAST_H

#include "rctc_intops.h"
#include "rctc_update.h"

/* 1 when the operands are in the fast path's range (above); *amax = max |acc| */
static inline int sgd_fast_range(size_t n, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                 uint64_t *amax) {
    const uint64_t am = m < 0 ? 0u - (uint64_t)m : (uint64_t)m;
    if (k > -1 || k < -53 || bits < 2 || (qw != 1 && qw != 2 && qw != 4) || bits > 8 * qw) return 0;
    if (am >= ((uint64_t)1 << 53)) return 0;
    const uint64_t a = rctc_iq_absmax(n, acc);
    if (am != 0u && a > (((uint64_t)1 << 53) - 1u) / am) return 0; /* a product reaches 2^53 */
    if (n != 0u && a > UINT64_MAX / n) return 0;                   /* A could pass 2^64 */
    *amax = a;
    return 1;
}

#endif /* RCTC_SGD_FAST_H */
