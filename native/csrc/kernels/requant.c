/*
 * requant.c - requantise an int32 / int64 accumulator to bits-bit integers (int8 storage).
 *
 * Needs: the contract in rctc_kernels.h (shift from rctc_requant_shift, 0 <= shift <= 62,
 * 2 <= bits <= 8; rand == NULL for nearest rounding, else one uint32 word per element).
 * Leaves: out[i] = clip(floor((acc[i] + r_i) / 2^shift), -qmax, qmax), computed without
 * overflow for every int64 input; the numpy reference in the tests states the same formula.
 */
#include "rctc_kernels.h"

int rctc_requant_shift(uint64_t absmax, int bits) {
    /* qmax << s never wraps before it reaches absmax <= 2^63 (qmax < 2^7, s <= 57). */
    const uint64_t qmax = ((uint64_t)1 << (bits - 1)) - 1;
    int s = 0;
    while (absmax > (qmax << s)) ++s;
    return s;
}

/* floor((x + r) / 2^s) without forming x + r: (x >> s) + ((x mod 2^s) + r) >> s. */
static inline int64_t shift_round(int64_t x, int s, uint64_t r) {
    const uint64_t low = (uint64_t)x & (((uint64_t)1 << s) - 1);
    const int64_t hi = x >= 0 ? x >> s : -(int64_t)((~(uint64_t)x) >> s) - 1; /* floor, no UB */
    return hi + (int64_t)((low + r) >> s);
}

static inline uint64_t rand_add(const uint32_t *rand, size_t i, int s) {
    if (!rand) return (uint64_t)1 << (s - 1);
    return s <= 32 ? (uint64_t)(rand[i] >> (32 - s)) : (uint64_t)rand[i] << (s - 32);
}

static inline int8_t clip_q(int64_t v, int64_t qmax) {
    return (int8_t)(v > qmax ? qmax : v < -qmax ? -qmax : v);
}

void rctc_requant_s64_s8(size_t n, const int64_t *acc, int shift, int bits, const uint32_t *rand, int8_t *out) {
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    if (shift == 0) {
        for (size_t i = 0; i < n; ++i) out[i] = clip_q(acc[i], qmax);
        return;
    }
    for (size_t i = 0; i < n; ++i) out[i] = clip_q(shift_round(acc[i], shift, rand_add(rand, i, shift)), qmax);
}

void rctc_requant_s32_s8(size_t n, const int32_t *acc, int shift, int bits, const uint32_t *rand, int8_t *out) {
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    if (shift == 0) {
        for (size_t i = 0; i < n; ++i) out[i] = clip_q(acc[i], qmax);
        return;
    }
    if (shift <= 31) { /* |acc| < 2^31, r < 2^31: the int64 sum cannot overflow */
        if (!rand) {
            const int64_t half = (int64_t)1 << (shift - 1);
            for (size_t i = 0; i < n; ++i) out[i] = clip_q(((int64_t)acc[i] + half) >> shift, qmax);
        } else {
            for (size_t i = 0; i < n; ++i)
                out[i] = clip_q(((int64_t)acc[i] + (int64_t)(rand[i] >> (32 - shift))) >> shift, qmax);
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) out[i] = clip_q(shift_round(acc[i], shift, rand_add(rand, i, shift)), qmax);
}
