/*
 * rctc_rng.h - rctc's random number generator: Philox4x32-10, counter-based, 32-bit arithmetic.
 *
 * The C twin of rctc/rng.py; both produce the same words, bit for bit (tested). The bijection is
 * Random123's philox4x32_R with R = 10 (Salmon, Moraes, Dror, Shaw, SC'11). The stream of one
 * (seed, step, node_id) is
 *
 *     key     = { (uint32_t)seed, (uint32_t)(seed >> 32) }
 *     counter = { (uint32_t)block, (uint32_t)(block >> 32), step, node_id }
 *     word j  = lane j % 4 of rctc_philox4x32(counter(block = j / 4), key)
 *
 * so any range of words can be computed on its own (threads may split a range in any order).
 *
 * Needs: a C99 compiler with <stdint.h> and <stddef.h> only (no libc calls), so it builds for
 * Cortex-M with arm-none-eabi-gcc. Leaves: pure functions; no state, no allocation.
 */
#ifndef RCTC_RNG_H
#define RCTC_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rounds of the bijection, round multipliers and key-schedule increments (Random123's values). */
#define RCTC_PHILOX_ROUNDS 10
#define RCTC_PHILOX_M0 0xD2511F53u
#define RCTC_PHILOX_M1 0xCD9E8D57u
#define RCTC_PHILOX_W0 0x9E3779B9u
#define RCTC_PHILOX_W1 0xBB67AE85u

/* Philox4x32-10 of one 128-bit counter under a 64-bit key: out may alias ctr. */
void rctc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/*
 * Words start .. start + count - 1 of the stream of (seed, step, node_id), into out[0..count-1].
 * The caller keeps start + count <= 2^64 (the stream's length; rctc/rng.py refuses more).
 */
void rctc_random_words(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                       uint32_t *out);
/* the same words from the fastest variant this CPU runs (kernels/random_words_mt.c: the AVX-512
 * or AVX2 file under kernels/x86/, as rctc_isa_available allows, else rctc_random_words) */
void rctc_random_words_fast(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                            uint32_t *out);
void rctc_random_words_avx2(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                            uint32_t *out);
void rctc_random_words_avx512(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                              uint32_t *out);
/* the same words split over up to nthreads threads (kernels/random_words_mt.c): equal to
 * rctc_random_words for every thread count */
void rctc_random_words_mt(int nthreads, uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start,
                          size_t count, uint32_t *out);

/*
 * The top k bits of a word (1 <= k <= 32): a uniform integer in [0, 2^k), as rctc/rng.py's
 * uniform_bits. Total for safety: k == 0 gives 0 and k > 32 gives the whole word.
 */
static inline uint32_t rctc_uniform_bits(uint32_t word, unsigned k)
{
    if (k == 0u) {
        return 0u;
    }
    return k >= 32u ? word : word >> (32u - k);
}

#ifdef __cplusplus
}
#endif

#endif /* RCTC_RNG_H */
