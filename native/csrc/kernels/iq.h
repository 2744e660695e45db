/*
 * iq.h - inline helpers shared by the iq_*.c integer kernels (not part of the public API).
 *
 * Needs: rctc_intops.h. Leaves: loads / stores by element width, shifts and products without
 * C undefined behaviour (left shifts go through uint64, right shifts are floors on every
 * compiler), so every kernel reproduces numpy's int64 arithmetic.
 */
#ifndef RCTC_IQ_H
#define RCTC_IQ_H

#include "rctc_intops.h"

#define RCTC_IQ_ACC_LIMIT ((uint64_t)1 << 62)

static inline int64_t iq_ld(const void *p, int w, size_t i) {
    switch (w) {
    case 1: return ((const int8_t *)p)[i];
    case 2: return ((const int16_t *)p)[i];
    case 4: return ((const int32_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

static inline void iq_st(void *p, int w, size_t i, int64_t v) {
    switch (w) {
    case 1: ((int8_t *)p)[i] = (int8_t)v; break;
    case 2: ((int16_t *)p)[i] = (int16_t)v; break;
    case 4: ((int32_t *)p)[i] = (int32_t)v; break;
    default: ((int64_t *)p)[i] = v; break;
    }
}

/* dst[0 .. n) = elements off .. off + n - 1 of p (w bytes each), widened (the switch outside the loop) */
static inline void iq_ld_run(const void *p, int w, size_t off, size_t n, int64_t *dst) {
    switch (w) {
    case 1: for (size_t i = 0; i < n; ++i) dst[i] = ((const int8_t *)p)[off + i]; break;
    case 2: for (size_t i = 0; i < n; ++i) dst[i] = ((const int16_t *)p)[off + i]; break;
    case 4: for (size_t i = 0; i < n; ++i) dst[i] = ((const int32_t *)p)[off + i]; break;
    default: for (size_t i = 0; i < n; ++i) dst[i] = ((const int64_t *)p)[off + i]; break;
    }
}

/* x * 2^k for 0 <= k <= 63, two's complement (numpy's <<) */
static inline int64_t iq_shl(int64_t x, int k) { return (int64_t)((uint64_t)x << k); }

/* floor(x / 2^s), 0 <= s <= 63 */
static inline int64_t iq_sar(int64_t x, int s) { return x >= 0 ? x >> s : ~((~x) >> s); }

/* |x| as unsigned (2^63 for INT64_MIN), without a branch (a sign-random loop mispredicts one) */
static inline uint64_t iq_abs(int64_t x) {
    const uint64_t m = 0u - (uint64_t)(x < 0);
    return ((uint64_t)x ^ m) - m;
}

/* max |p[i]| over n elements of width w (the switch outside the loops; int8 / int16 in narrow
 * signed lanes, whose magnitudes fit them, so the loops vectorise on plain SSE2) */
static inline uint64_t iq_absmax_w(const void *p, int w, size_t n) {
    if (w == 1) {
        int16_t m = 0;
        for (size_t i = 0; i < n; ++i) {
            const int16_t v = ((const int8_t *)p)[i], a = (int16_t)(v < 0 ? -v : v);
            m = a > m ? a : m;
        }
        return (uint64_t)m;
    }
    if (w == 2) {
        int32_t m = 0;
        for (size_t i = 0; i < n; ++i) {
            const int32_t v = ((const int16_t *)p)[i], a = v < 0 ? -v : v;
            m = a > m ? a : m;
        }
        return (uint64_t)m;
    }
    uint64_t m = 0;
    if (w == 4)
        for (size_t i = 0; i < n; ++i) {
            const uint64_t a = iq_abs(((const int32_t *)p)[i]);
            m = a > m ? a : m;
        }
    else
        for (size_t i = 0; i < n; ++i) {
            const uint64_t a = iq_abs(((const int64_t *)p)[i]);
            m = a > m ? a : m;
        }
    return m;
}

static inline int iq_bitlen(uint64_t v) {
    int n = 0;
    while (v) {
        ++n;
        v >>= 1;
    }
    return n;
}

/* numpy int64 arithmetic (wraps) without signed-overflow UB */
static inline int64_t iq_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static inline int64_t iq_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t iq_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }

static inline int64_t iq_fdiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* (x + 2^(s-1)) >> s for s >= 1, per element (intref.expo._rshift_var, s <= 62) */
static inline int64_t iq_round_shift(int64_t x, int s) {
    return s > 0 ? iq_sar(iq_add(x, (int64_t)1 << (s - 1)), s) : x;
}

static inline int64_t iq_sign(int64_t x) { return (x > 0) - (x < 0); }
static inline int64_t iq_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t iq_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t iq_clampv(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

/* cross-file internals of the element-wise kernels */
/* requantize's rounding of n values at shift 1 <= s <= 62 into width w (iq_requant.c) */
void iq_round_block(size_t n, const int64_t *x, int s, const uint32_t *rand, int w, void *out);
int rctc_iq_softmax_parts(size_t outer, size_t len, size_t inner, const void *q, int w, int e, int64_t *ex,
                          int64_t *er);
int64_t rctc_iq_gauss1(int64_t x, int half);
int64_t rctc_iq_ierf1(int64_t u);
int64_t rctc_iq_erf_as1(int64_t u);

/* Step a C-order multi-index over `shape` and `nops` strided offsets (for broadcasting). */
static inline void iq_next(int ndim, const int *shape, int *idx, int nops, ptrdiff_t *off,
                           const ptrdiff_t *const *strides) {
    for (int d = ndim - 1; d >= 0; --d) {
        for (int o = 0; o < nops; ++o) off[o] += strides[o][d];
        if (++idx[d] < shape[d]) return;
        for (int o = 0; o < nops; ++o) off[o] -= strides[o][d] * shape[d];
        idx[d] = 0;
    }
}

static inline size_t iq_prod(int ndim, const int *shape) {
    size_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= (size_t)shape[d];
    return n;
}

/* the period of an operand read at strides st over shape: L when it reads element i of the output
 * at offset i % L (dense trailing dims, stride 0 or size 1 on every leading one; L = n when
 * dense), else 0 */
static inline size_t iq_period(int ndim, const int *shape, const ptrdiff_t *st) {
    size_t want = 1;
    int d = ndim - 1;
    for (; d >= 0 && (shape[d] == 1 || st[d] == (ptrdiff_t)want); --d) want *= (size_t)shape[d];
    for (; d >= 0; --d)
        if (shape[d] != 1 && st[d] != 0) return 0;
    return want;
}

#endif /* RCTC_IQ_H */
