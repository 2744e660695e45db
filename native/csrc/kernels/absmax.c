/*
 * absmax.c - max |x| of an accumulator (the reduction requantise takes its shift from).
 *
 * Needs: iq.h (iq_absmax_w). Leaves: the exact maximum magnitude as an unsigned value, so
 * |INT32_MIN| and |INT64_MIN| are represented (0 for n == 0). rctc_iq_absmax_w is iq_absmax_w with
 * int8 data on AVX2 where the CPU has it (x86/iq_absmax_avx2.c: the same value).
 */
#include "iq.h"
#include "rctc_intops.h"
#include "rctc_kernels.h"

uint64_t rctc_iq_absmax_w(const void *p, int w, size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
    if (w == 1 && (rctc_isa_available() & (1 << RCTC_ISA_AVX2))) return rctc_absmax_s8_avx2(n, (const int8_t *)p);
#endif
    return iq_absmax_w(p, w, n);
}

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
