/*
 * iq_round_avx2.c - AVX2 variant of requantise's rounding loop to int8 (compiled with -mavx2;
 * called only when the CPU has AVX2).
 *
 * Needs: rctc_intops.h, <immintrin.h>; 1 <= s <= 62, |acc| <= 2^62 and every rounded value in
 * [-128, 127] (what rctc_iq_requantize guarantees for s = requant_shift). Leaves: exactly the
 * portable loop's bits: (acc + r) >> s as a floor shift on int64 lanes (AVX2 has no 64-bit
 * arithmetic shift: floor(v / 2^s) = ((v ^ m) >>> s) ^ m with m the sign mask), 16 per step.
 */
#include <immintrin.h>
#include <string.h>

#include "rctc_intops.h"

static inline __m256i round4(const int64_t *acc, const uint32_t *rand, int s, __m128i cnt, __m128i rcnt,
                             __m256i half) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)acc);
    __m256i r = half;
    if (rand) {
        const __m256i w = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)rand));
        r = s <= 32 ? _mm256_srl_epi64(w, rcnt) : _mm256_sll_epi64(w, rcnt);
    }
    const __m256i v = _mm256_add_epi64(x, r);
    const __m256i m = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    const __m256i q = _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(v, m), cnt), m);
    /* the low 32 bits of the four lanes into the low half */
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

void rctc_iq_round_s8_avx2(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out) {
    const __m128i cnt = _mm_cvtsi32_si128(s), rcnt = _mm_cvtsi32_si128(s <= 32 ? 32 - s : s - 32);
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << (s - 1));
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint32_t *rr = rand ? rand + i : NULL;
        const __m128i a = _mm256_castsi256_si128(round4(acc + i, rr, s, cnt, rcnt, half));
        const __m128i b = _mm256_castsi256_si128(round4(acc + i + 4, rr ? rr + 4 : NULL, s, cnt, rcnt, half));
        const __m128i c = _mm256_castsi256_si128(round4(acc + i + 8, rr ? rr + 8 : NULL, s, cnt, rcnt, half));
        const __m128i d = _mm256_castsi256_si128(round4(acc + i + 12, rr ? rr + 12 : NULL, s, cnt, rcnt, half));
        _mm_storeu_si128((__m128i *)(out + i), _mm_packs_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d)));
    }
    rctc_iq_round_s8_portable(n - i, acc + i, s, rand ? rand + i : NULL, out + i);
}
