/*
 * iq_relu_avx2.c - AVX2 variants of the int8 ReLU and its backward mask (compiled with -mavx2;
 * called only when the CPU has AVX2).
 *
 * Needs: rctc_intops.h, <immintrin.h>. Leaves: exactly the portable kernels' bits (integer
 * max / compare / and), 32 bytes per step and the portable loop for the tail.
 */
#include <immintrin.h>

#include "rctc_intops.h"

void rctc_iq_relu_s8_avx2(size_t n, const int8_t *x, int8_t *y) {
    const __m256i z = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(x + i)), z));
    for (; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0;
}

void rctc_iq_relu_backward_s8_avx2(size_t n, const int8_t *x, const int8_t *d, int8_t *y) {
    const __m256i z = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i keep = _mm256_cmpgt_epi8(_mm256_loadu_si256((const __m256i *)(x + i)), z);
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_and_si256(keep, _mm256_loadu_si256((const __m256i *)(d + i))));
    }
    for (; i < n; ++i) y[i] = x[i] > 0 ? d[i] : 0;
}
