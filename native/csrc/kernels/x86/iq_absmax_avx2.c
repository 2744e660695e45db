/*
 * iq_absmax_avx2.c - AVX2 variants of the int64 max magnitude (rctc_iq_absmax) and of the int8 one
 * (IntAdd's operands; rctc_absmax_s8_avx2); compiled with -mavx2, called only when the CPU has AVX2.
 *
 * Needs: rctc_intops.h, <immintrin.h>. Leaves: exactly the portable loop's result, max |x_i| as
 * an unsigned value (|INT64_MIN| = 2^63 included, 0 for n == 0): |x| = (x ^ m) - m with m the sign
 * mask, compared as unsigned through a 2^63 bias (AVX2 has no 64-bit abs or unsigned max),
 * 8 elements a step in two independent chains.
 */
#include <immintrin.h>

#include "rctc_intops.h"

static inline __m256i biased_abs(const int64_t *x, __m256i bias) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)x);
    const __m256i m = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    return _mm256_xor_si256(_mm256_sub_epi64(_mm256_xor_si256(v, m), m), bias);
}

static inline __m256i max_biased(__m256i a, __m256i b) {
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a));
}

uint64_t rctc_iq_absmax_avx2(size_t n, const int64_t *x) {
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    __m256i m0 = bias, m1 = bias; /* biased 0 */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = max_biased(m0, biased_abs(x + i, bias));
        m1 = max_biased(m1, biased_abs(x + i + 4, bias));
    }
    if (i + 4 <= n) {
        m0 = max_biased(m0, biased_abs(x + i, bias));
        i += 4;
    }
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_xor_si256(max_biased(m0, m1), bias));
    uint64_t m = 0;
    for (int k = 0; k < 4; ++k) m = (uint64_t)lanes[k] > m ? (uint64_t)lanes[k] : m;
    for (; i < n; ++i) {
        const uint64_t u = (uint64_t)x[i];
        const uint64_t a = x[i] < 0 ? 0u - u : u;
        m = a > m ? a : m;
    }
    return m;
}

/* max |x_i| of int8 values (128 for -128: vpabsb's 0x80 read unsigned), 64 a step, the tail scalar */
uint32_t rctc_absmax_s8_avx2(size_t n, const int8_t *x) {
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm256_max_epu8(m0, _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(x + i))));
        m1 = _mm256_max_epu8(m1, _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(x + i + 32))));
    }
    uint8_t lanes[32];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_max_epu8(m0, m1));
    uint32_t m = 0;
    for (int k = 0; k < 32; ++k) m = lanes[k] > m ? lanes[k] : m;
    for (; i < n; ++i) {
        const uint32_t a = (uint32_t)(x[i] < 0 ? -(int32_t)x[i] : (int32_t)x[i]);
        m = a > m ? a : m;
    }
    return m;
}
