/*
 * philox.c - Philox4x32-10 and rctc's random word stream (see include/rctc_rng.h).
 *
 * Only 32x32 -> 64-bit unsigned products (UMULL on Cortex-M), xors and 32-bit additions; the
 * same arithmetic as rctc/rng.py, so every backend and the device draw the same words.
 *
 * Needs: <stdint.h>, <stddef.h>. Leaves: no state, no libc calls.
 */
#include "rctc_rng.h"

/* Ten rounds on x, in place; the key is bumped before rounds 2..10 (Random123's schedule). */
static void philox_rounds(uint32_t x[4], uint32_t k0, uint32_t k1)
{
    int r;
    for (r = 0; r < RCTC_PHILOX_ROUNDS; ++r) {
        uint64_t p0;
        uint64_t p1;
        uint32_t x1;
        uint32_t x3;
        if (r != 0) {
            k0 += RCTC_PHILOX_W0;
            k1 += RCTC_PHILOX_W1;
        }
        p0 = (uint64_t)RCTC_PHILOX_M0 * x[0];
        p1 = (uint64_t)RCTC_PHILOX_M1 * x[2];
        x1 = x[1];
        x3 = x[3];
        x[0] = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
        x[1] = (uint32_t)p1;
        x[2] = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x[3] = (uint32_t)p0;
    }
}

void rctc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t x[4];
    x[0] = ctr[0];
    x[1] = ctr[1];
    x[2] = ctr[2];
    x[3] = ctr[3];
    philox_rounds(x, key[0], key[1]);
    out[0] = x[0];
    out[1] = x[1];
    out[2] = x[2];
    out[3] = x[3];
}

void rctc_random_words(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                       uint32_t *out)
{
    const uint32_t k0 = (uint32_t)seed;
    const uint32_t k1 = (uint32_t)(seed >> 32);
    uint64_t block = start >> 2;
    unsigned lane = (unsigned)(start & 3u);
    uint32_t x[4];

    while (count != 0u) {
        x[0] = (uint32_t)block;
        x[1] = (uint32_t)(block >> 32);
        x[2] = step;
        x[3] = node_id;
        philox_rounds(x, k0, k1);
        if (lane == 0u && count >= 4u) { /* a whole block */
            out[0] = x[0];
            out[1] = x[1];
            out[2] = x[2];
            out[3] = x[3];
            out += 4;
            count -= 4u;
        } else { /* the partial first or last block */
            for (; lane < 4u && count != 0u; ++lane, --count) {
                *out++ = x[lane];
            }
        }
        lane = 0u;
        ++block;
    }
}
