/*
 * iq_requant_s32_avx2.c - AVX2 variants of requantise's int32 passes (compiled with -mavx2,
 * called only when the CPU has AVX2): the max magnitude of an int32 accumulator and its rounding
 * to int8.
 *
 * Needs: rctc_intops.h, <immintrin.h>; for the rounding 1 <= s <= 31 and every rounded value in
 * [-128, 127] (what requantize's shift guarantees). Leaves: exactly the portable loops' results:
 * |x| as unsigned (2^31 for INT32_MIN: vpabsd's 0x80000000 read unsigned), and
 * floor((acc + r) / 2^s) computed in 32-bit lanes without overflow as (acc >> s) +
 * (((acc & (2^s - 1)) + r) >> s) (the low part and r are below 2^s, their sum below 2^32),
 * r = 2^(s-1) or rand >> (32 - s); 32 values a step, packed to int8.
 */
#include <immintrin.h>

#include "rctc_intops.h"

uint32_t rctc_absmax_s32_avx2(size_t n, const int32_t *x) {
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_epu32(m0, _mm256_abs_epi32(_mm256_loadu_si256((const __m256i *)(x + i))));
        m1 = _mm256_max_epu32(m1, _mm256_abs_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 8))));
    }
    m0 = _mm256_max_epu32(m0, m1);
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, m0);
    uint32_t m = 0;
    for (int k = 0; k < 8; ++k) m = lanes[k] > m ? lanes[k] : m;
    for (; i < n; ++i) {
        const uint32_t u = (uint32_t)x[i], a = x[i] < 0 ? 0u - u : u;
        m = a > m ? a : m;
    }
    return m;
}

static inline __m256i round8(const int32_t *acc, const uint32_t *rand, __m128i cnt, __m128i rcnt, __m256i low,
                             __m256i half) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)acc);
    const __m256i r = rand ? _mm256_srl_epi32(_mm256_loadu_si256((const __m256i *)rand), rcnt) : half;
    const __m256i carry = _mm256_srl_epi32(_mm256_add_epi32(_mm256_and_si256(a, low), r), cnt);
    return _mm256_add_epi32(_mm256_sra_epi32(a, cnt), carry);
}

void rctc_iq_round_s32_s8_avx2(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out) {
    const __m128i cnt = _mm_cvtsi32_si128(s), rcnt = _mm_cvtsi32_si128(32 - s);
    const __m256i low = _mm256_set1_epi32((int)(((uint32_t)1 << s) - 1u));
    const __m256i half = _mm256_set1_epi32((int)((uint32_t)1 << (s - 1)));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const uint32_t *rr = rand ? rand + i : NULL;
        const __m256i q0 = round8(acc + i, rr, cnt, rcnt, low, half);
        const __m256i q1 = round8(acc + i + 8, rr ? rr + 8 : NULL, cnt, rcnt, low, half);
        const __m256i q2 = round8(acc + i + 16, rr ? rr + 16 : NULL, cnt, rcnt, low, half);
        const __m256i q3 = round8(acc + i + 24, rr ? rr + 24 : NULL, cnt, rcnt, low, half);
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permutevar8x32_epi32(p, order));
    }
    if (i < n) rctc_iq_round_s32_s8_portable(n - i, acc + i, s, rand ? rand + i : NULL, out + i);
}
