/*
 * bias_add.c - add a per-channel bias (at the accumulator's exponent) to an accumulator.
 *
 * Needs: acc laid out (outer, channels, inner) (NCHW: outer = N, inner = H*W; a GEMM output
 * (M, N): outer = M, channels = N, inner = 1). Leaves: acc += bias[c], modulo 2^32 for s32.
 */
#include "rctc_kernels.h"

void rctc_bias_add_s32(size_t outer, size_t channels, size_t inner, int32_t *acc, const int32_t *bias) {
    for (size_t o = 0; o < outer; ++o)
        for (size_t c = 0; c < channels; ++c) {
            int32_t *a = acc + (o * channels + c) * inner;
            const uint32_t b = (uint32_t)bias[c];
            for (size_t i = 0; i < inner; ++i) a[i] = (int32_t)((uint32_t)a[i] + b);
        }
}

void rctc_bias_add_s64(size_t outer, size_t channels, size_t inner, int64_t *acc, const int64_t *bias) {
    for (size_t o = 0; o < outer; ++o)
        for (size_t c = 0; c < channels; ++c) {
            int64_t *a = acc + (o * channels + c) * inner;
            const uint64_t b = (uint64_t)bias[c];
            for (size_t i = 0; i < inner; ++i) a[i] = (int64_t)((uint64_t)a[i] + b);
        }
}
