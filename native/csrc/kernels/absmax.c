/*
 * absmax.c - max |x| of an accumulator (the reduction requantise takes its shift from).
 *
 * Needs: nothing. Leaves: the exact maximum magnitude as an unsigned value, so |INT32_MIN| and
 * |INT64_MIN| are represented (0 for n == 0).
 */
#include "rctc_kernels.h"

uint32_t rctc_absmax_s32(size_t n, const int32_t *x) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint32_t u = (uint32_t)x[i];
        const uint32_t a = x[i] < 0 ? 0u - u : u;
        m = a > m ? a : m;
    }
    return m;
}

uint64_t rctc_absmax_s64(size_t n, const int64_t *x) {
    uint64_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t u = (uint64_t)x[i];
        const uint64_t a = x[i] < 0 ? 0u - u : u;
        m = a > m ? a : m;
    }
    return m;
}
