/*
 * iq_relu_avx2.c - AVX2 variants of the int8 ReLU, its backward mask and the 2x2 / stride 2
 * max-pool row kernel (compiled with -mavx2; called only when the CPU has AVX2).
 *
 * Needs: rctc_intops.h, <immintrin.h>. Leaves: exactly the portable kernels' bits (integer
 * max / compare / and; the pool widens to int16 before the horizontal max, so nothing
 * saturates), 32 or 64 bytes per step and the portable loop for the tail.
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

/* the horizontal pair max of 32 bytes as 16 int16 */
static inline __m256i pair_max(__m256i v) {
    const __m256i even = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), odd = _mm256_srai_epi16(v, 8);
    return _mm256_max_epi16(even, odd);
}

void rctc_iq_maxpool2x2_row_s8_avx2(int ow, const int8_t *r0, const int8_t *r1, int8_t *y) {
    int ox = 0;
    for (; ox + 32 <= ow; ox += 32) {
        const __m256i a = _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(r0 + 2 * ox)),
                                          _mm256_loadu_si256((const __m256i *)(r1 + 2 * ox)));
        const __m256i b = _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(r0 + 2 * ox + 32)),
                                          _mm256_loadu_si256((const __m256i *)(r1 + 2 * ox + 32)));
        const __m256i packed = _mm256_packs_epi16(pair_max(a), pair_max(b)); /* lane-interleaved */
        _mm256_storeu_si256((__m256i *)(y + ox), _mm256_permute4x64_epi64(packed, 0xD8));
    }
    for (; ox < ow; ++ox) {
        const int8_t a = r0[2 * ox] > r0[2 * ox + 1] ? r0[2 * ox] : r0[2 * ox + 1];
        const int8_t b = r1[2 * ox] > r1[2 * ox + 1] ? r1[2 * ox] : r1[2 * ox + 1];
        y[ox] = a > b ? a : b;
    }
}
