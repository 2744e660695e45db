/*
 * philox_avx512.c - AVX-512 variant of rctc's Philox word stream (rctc_random_words; compiled
 * with the AVX-512 flags, called only when the CPU has AVX-512 F, BW, VL and VNNI: the
 * dispatch's avx512vnni level; only AVX-512 F instructions are used).
 *
 * Needs: rctc_rng.h, <immintrin.h>. Leaves: exactly rctc_random_words's words: the
 * AVX2 variant's round (x86/philox_avx2.c) on four blocks per zmm, four independent zmm
 * (16 blocks, 64 words) a step; a partial first block and the last < 64 words portable.
 */
#if defined(__x86_64__) || defined(_M_X64)
/* The device project's host build adds only -mavx2 to its x86 files: enable the ISA here then. */
#if !defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f")
#elif !defined(__AVX512F__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f"))), apply_to = function)
#define RCTC_CLANG_TARGET_PUSHED 1
#endif
#include <immintrin.h>

#include "rctc_rng.h"

#define LANES 16u /* blocks per step: 4 zmm of 4 */

static inline __m512i round1(__m512i x, __m512i mul, __m512i key) {
    const __m512i p = _mm512_mul_epu32(x, mul);
    return _mm512_xor_si512(_mm512_xor_si512(_mm512_shuffle_epi32(p, (_MM_PERM_ENUM)0x1B), _mm512_srli_epi64(x, 32)),
                            key);
}

static inline __m512i counters(long long b, long long sn) {
    return _mm512_setr_epi64(b, sn, b + 1, sn, b + 2, sn, b + 3, sn);
}

void rctc_random_words_avx512(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                              uint32_t *out) {
    const unsigned lane = (unsigned)(start & 3u);
    if (lane != 0u) { /* the partial first block */
        const size_t head = count < 4u - lane ? count : 4u - lane;
        rctc_random_words(seed, step, node_id, start, head, out);
        start += head;
        out += head;
        count -= head;
    }
    if (count >= 4u * LANES) {
        __m512i keys[RCTC_PHILOX_ROUNDS];
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int r = 0; r < RCTC_PHILOX_ROUNDS; ++r) {
            if (r != 0) {
                k0 += RCTC_PHILOX_W0;
                k1 += RCTC_PHILOX_W1;
            }
            keys[r] = _mm512_set4_epi32(0, (int)k1, 0, (int)k0);
        }
        const __m512i mul = _mm512_set4_epi32(0, (int)RCTC_PHILOX_M1, 0, (int)RCTC_PHILOX_M0);
        const long long sn = (long long)(((uint64_t)node_id << 32) | step), b = (long long)(start >> 2);
        __m512i c0 = counters(b, sn), c1 = counters(b + 4, sn), c2 = counters(b + 8, sn), c3 = counters(b + 12, sn);
        const __m512i inc = _mm512_set4_epi64(0, (long long)LANES, 0, (long long)LANES);
        for (; count >= 4u * LANES; count -= 4u * LANES, out += 4u * LANES, start += 4u * LANES) {
            __m512i x0 = c0, x1 = c1, x2 = c2, x3 = c3;
            for (int r = 0; r < RCTC_PHILOX_ROUNDS; ++r) {
                x0 = round1(x0, mul, keys[r]);
                x1 = round1(x1, mul, keys[r]);
                x2 = round1(x2, mul, keys[r]);
                x3 = round1(x3, mul, keys[r]);
            }
            _mm512_storeu_si512((void *)out, x0);
            _mm512_storeu_si512((void *)(out + 16), x1);
            _mm512_storeu_si512((void *)(out + 32), x2);
            _mm512_storeu_si512((void *)(out + 48), x3);
            c0 = _mm512_add_epi64(c0, inc);
            c1 = _mm512_add_epi64(c1, inc);
            c2 = _mm512_add_epi64(c2, inc);
            c3 = _mm512_add_epi64(c3, inc);
        }
    }
    if (count != 0u) rctc_random_words(seed, step, node_id, start, count, out);
}
#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_philox_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
