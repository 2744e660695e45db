/*
 * iq_round_avx512.c - AVX-512 variants of requantise's loops to int8 (compiled with the AVX-512
 * flags; called only at the avx512vnni level, which has AVX-512 F, BW and VL): the int64 and int32
 * accumulators' rounding and the int32 max magnitude.
 *
 * Needs: rctc_intops.h, <immintrin.h>; 1 <= s <= 62 (int64) or 31 (int32), |acc| <= 2^62 and every
 * rounded value in [-128, 127] (what requantize's shift guarantees). Leaves: exactly the portable
 * loops' bits: (acc + r) >> s by vpsraq (the floor shift) on int64 lanes; on int32 lanes without
 * overflow as (acc >> s) + (((acc & (2^s - 1)) + r) >> s), as x86/iq_requant_s32_avx2.c; the low
 * byte of each lane by vpmovqb / vpmovdb (the value itself, as it fits int8); |x| as unsigned
 * (2^31 for INT32_MIN).
 */
#if defined(__x86_64__) || defined(_M_X64)
/* The device project's host build adds only -mavx2 to its x86 files: enable the ISA here then. */
#if !defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f,avx512bw,avx512vl")
#elif !defined(__AVX512F__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512bw,avx512vl"))), apply_to = function)
#define RCTC_CLANG_TARGET_PUSHED 1
#endif
#include <immintrin.h>

#include "rctc_intops.h"

/* eight rounded lanes as eight bytes */
static inline __m128i round8(const int64_t *acc, const uint32_t *rand, __m128i cnt, __m128i rcnt, int up,
                             __m512i half) {
    __m512i r = half;
    if (rand) {
        const __m512i w = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)rand));
        r = up ? _mm512_sll_epi64(w, rcnt) : _mm512_srl_epi64(w, rcnt);
    }
    const __m512i v = _mm512_add_epi64(_mm512_loadu_si512((const void *)acc), r);
    return _mm512_cvtepi64_epi8(_mm512_sra_epi64(v, cnt));
}

void rctc_iq_round_s8_avx512(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out) {
    const __m128i cnt = _mm_cvtsi32_si128(s), rcnt = _mm_cvtsi32_si128(s <= 32 ? 32 - s : s - 32);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (s - 1));
    const int up = s > 32;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i a = round8(acc + i, rand ? rand + i : NULL, cnt, rcnt, up, half);
        const __m128i b = round8(acc + i + 8, rand ? rand + i + 8 : NULL, cnt, rcnt, up, half);
        _mm_storeu_si128((__m128i *)(out + i), _mm_unpacklo_epi64(a, b));
    }
    rctc_iq_round_s8_portable(n - i, acc + i, s, rand ? rand + i : NULL, out + i);
}
/* sixteen rounded int32 lanes as sixteen bytes */
static inline __m128i round16(const int32_t *acc, const uint32_t *rand, __m128i cnt, __m128i rcnt, __m512i low,
                              __m512i half) {
    const __m512i a = _mm512_loadu_si512((const void *)acc);
    const __m512i r = rand ? _mm512_srl_epi32(_mm512_loadu_si512((const void *)rand), rcnt) : half;
    const __m512i carry = _mm512_srl_epi32(_mm512_add_epi32(_mm512_and_si512(a, low), r), cnt);
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_sra_epi32(a, cnt), carry));
}

void rctc_iq_round_s32_s8_avx512(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out) {
    const __m128i cnt = _mm_cvtsi32_si128(s), rcnt = _mm_cvtsi32_si128(32 - s);
    const __m512i low = _mm512_set1_epi32((int)(((uint32_t)1 << s) - 1u));
    const __m512i half = _mm512_set1_epi32((int)((uint32_t)1 << (s - 1)));
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m128i a = round16(acc + i, rand ? rand + i : NULL, cnt, rcnt, low, half);
        const __m128i b = round16(acc + i + 16, rand ? rand + i + 16 : NULL, cnt, rcnt, low, half);
        _mm_storeu_si128((__m128i *)(out + i), a);
        _mm_storeu_si128((__m128i *)(out + i + 16), b);
    }
    if (i < n) rctc_iq_round_s32_s8_portable(n - i, acc + i, s, rand ? rand + i : NULL, out + i);
}

uint32_t rctc_absmax_s32_avx512(size_t n, const int32_t *x) {
    __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_epu32(m0, _mm512_abs_epi32(_mm512_loadu_si512((const void *)(x + i))));
        m1 = _mm512_max_epu32(m1, _mm512_abs_epi32(_mm512_loadu_si512((const void *)(x + i + 16))));
    }
    uint32_t m = _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
    for (; i < n; ++i) {
        const uint32_t u = (uint32_t)x[i], a = x[i] < 0 ? 0u - u : u;
        m = a > m ? a : m;
    }
    return m;
}
#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_iq_round_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
