/*
 * philox_avx2.c - AVX2 variant of rctc's Philox word stream (rctc_random_words; compiled with
 * -mavx2, called only when the CPU has AVX2).
 *
 * Needs: rctc_rng.h, <immintrin.h>. Leaves: exactly rctc_random_words's words. Two
 * Philox blocks per ymm in their natural word order (x0 x1 x2 x3 | x0 x1 x2 x3), so the output
 * is a plain store: one round is vpmuludq of the even words (x0 * M0, x2 * M1 as 64-bit
 * products), a word shuffle (hi p1, lo p1, hi p0, lo p0), and xors with (x1, 0, x3, 0) (a 64-bit
 * shift) and the round key (k0, 0, k1, 0). Four independent ymm (8 blocks, 32 words) a step;
 * a partial first block and the last < 32 words go through the portable loop.
 */
#include <immintrin.h>

#include "rctc_rng.h"

#define LANES 8u /* blocks per step: 4 ymm of 2 */

static inline __m256i round1(__m256i x, __m256i mul, __m256i key) {
    const __m256i p = _mm256_mul_epu32(x, mul);
    return _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p, 0x1B), _mm256_srli_epi64(x, 32)), key);
}

void rctc_random_words_avx2(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
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
        __m256i keys[RCTC_PHILOX_ROUNDS];
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int r = 0; r < RCTC_PHILOX_ROUNDS; ++r) {
            if (r != 0) {
                k0 += RCTC_PHILOX_W0;
                k1 += RCTC_PHILOX_W1;
            }
            keys[r] = _mm256_setr_epi32((int)k0, 0, (int)k1, 0, (int)k0, 0, (int)k1, 0);
        }
        const __m256i mul = _mm256_setr_epi32((int)RCTC_PHILOX_M0, 0, (int)RCTC_PHILOX_M1, 0, (int)RCTC_PHILOX_M0, 0,
                                              (int)RCTC_PHILOX_M1, 0);
        const long long sn = (long long)(((uint64_t)node_id << 32) | step), b = (long long)(start >> 2);
        __m256i c0 = _mm256_setr_epi64x(b, sn, b + 1, sn), c1 = _mm256_setr_epi64x(b + 2, sn, b + 3, sn);
        __m256i c2 = _mm256_setr_epi64x(b + 4, sn, b + 5, sn), c3 = _mm256_setr_epi64x(b + 6, sn, b + 7, sn);
        const __m256i inc = _mm256_setr_epi64x((long long)LANES, 0, (long long)LANES, 0);
        for (; count >= 4u * LANES; count -= 4u * LANES, out += 4u * LANES, start += 4u * LANES) {
            __m256i x0 = c0, x1 = c1, x2 = c2, x3 = c3;
            for (int r = 0; r < RCTC_PHILOX_ROUNDS; ++r) {
                x0 = round1(x0, mul, keys[r]);
                x1 = round1(x1, mul, keys[r]);
                x2 = round1(x2, mul, keys[r]);
                x3 = round1(x3, mul, keys[r]);
            }
            _mm256_storeu_si256((__m256i *)out, x0);
            _mm256_storeu_si256((__m256i *)(out + 8), x1);
            _mm256_storeu_si256((__m256i *)(out + 16), x2);
            _mm256_storeu_si256((__m256i *)(out + 24), x3);
            c0 = _mm256_add_epi64(c0, inc);
            c1 = _mm256_add_epi64(c1, inc);
            c2 = _mm256_add_epi64(c2, inc);
            c3 = _mm256_add_epi64(c3, inc);
        }
    }
    if (count != 0u) rctc_random_words(seed, step, node_id, start, count, out);
}
