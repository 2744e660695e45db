/*
 * iq_add_avx2.c - AVX2 variant of IntAdd's dense int8 sum (compiled with -mavx2, called only when
 * the CPU has AVX2): v = (x << ka) +- (y << kb) in int32 lanes and the largest |v|.
 *
 * Needs: rctc_intops.h, <immintrin.h>; ka, kb >= 0 and max|x| << ka + max|y| << kb < 2^31 (no lane
 * overflows).
 * Leaves: exactly rctc_iq_add_s8_s32_portable's v and max (16 elements a step, the tail portable).
 */
#include <immintrin.h>

#include "rctc_intops.h"

uint32_t rctc_iq_add_s8_s32_avx2(size_t n, const int8_t *x, int ka, const int8_t *y, int kb, int subtract,
                                 int32_t *v) {
    const __m128i ca = _mm_cvtsi32_si128(ka), cb = _mm_cvtsi32_si128(kb);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i xa = _mm_loadu_si128((const __m128i *)(x + i)), ya = _mm_loadu_si128((const __m128i *)(y + i));
        const __m256i x0 = _mm256_sll_epi32(_mm256_cvtepi8_epi32(xa), ca);
        const __m256i x1 = _mm256_sll_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(xa, 8)), ca);
        const __m256i y0 = _mm256_sll_epi32(_mm256_cvtepi8_epi32(ya), cb);
        const __m256i y1 = _mm256_sll_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(ya, 8)), cb);
        const __m256i s0 = subtract ? _mm256_sub_epi32(x0, y0) : _mm256_add_epi32(x0, y0);
        const __m256i s1 = subtract ? _mm256_sub_epi32(x1, y1) : _mm256_add_epi32(x1, y1);
        _mm256_storeu_si256((__m256i *)(v + i), s0);
        _mm256_storeu_si256((__m256i *)(v + i + 8), s1);
        m0 = _mm256_max_epu32(m0, _mm256_abs_epi32(s0));
        m1 = _mm256_max_epu32(m1, _mm256_abs_epi32(s1));
    }
    m0 = _mm256_max_epu32(m0, m1);
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, m0);
    uint32_t m = 0;
    for (int k = 0; k < 8; ++k) m = lanes[k] > m ? lanes[k] : m;
    if (i < n) {
        const uint32_t t = rctc_iq_add_s8_s32_portable(n - i, x + i, ka, y + i, kb, subtract, v + i);
        m = t > m ? t : m;
    }
    return m;
}
