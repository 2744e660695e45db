/*
 * random_words_mt.c - a node's Philox words on several threads (rctc_random_words split).
 *
 * Needs: rctc_rng.h (the counter-based generator), parallel.c. Leaves: out[0 .. count) equal to
 * rctc_random_words(seed, step, node_id, start, count, out) for every thread count: the stream is
 * counter-based, so each chunk (fixed boundaries at multiples of 4 words, one Philox block)
 * computes its own words; below RCTC_WORDS_PER_THREAD words a call stays on one thread. Each
 * chunk runs rctc_random_words_fast: the AVX-512 / AVX2 variant where the CPU has it (same words).
 */
#include "internal.h"
#include "rctc_intops.h"
#include "rctc_kernels.h"
#include "rctc_rng.h"

void rctc_random_words_fast(uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start, size_t count,
                            uint32_t *out) {
#if defined(__x86_64__) || defined(_M_X64)
    const int isa = rctc_isa_available();
    if (isa & (1 << RCTC_ISA_AVX512VNNI)) {
        rctc_random_words_avx512(seed, step, node_id, start, count, out);
        return;
    }
    if (isa & (1 << RCTC_ISA_AVX2)) {
        rctc_random_words_avx2(seed, step, node_id, start, count, out);
        return;
    }
#endif
    rctc_random_words(seed, step, node_id, start, count, out);
}

/* words per thread below which a second thread does not pay: ~20 us to start one, a word ~2 ns
 * portable but ~0.1-0.2 ns with AVX2 / AVX-512 (2^17 words: ~15-25 us a thread; was 2^20, see
 * iq_requant_s32.c for the measurement of the change) */
#define RCTC_WORDS_PER_THREAD (rctc_random_words_simd() ? 131072u : 32768u)

static int rctc_random_words_simd(void) {
#if defined(__x86_64__) || defined(_M_X64)
    return (rctc_isa_available() & ((1 << RCTC_ISA_AVX2) | (1 << RCTC_ISA_AVX512VNNI))) != 0;
#else
    return 0;
#endif
}

typedef struct {
    uint64_t seed, start;
    uint32_t step, node_id;
    uint32_t *out;
} words_task;

static void words_chunk(void *ctx, int begin, int end) {
    const words_task *t = (const words_task *)ctx;
    rctc_random_words_fast(t->seed, t->step, t->node_id, t->start + (uint64_t)begin, (size_t)(end - begin),
                      t->out + begin);
}

void rctc_random_words_mt(int nthreads, uint64_t seed, uint32_t step, uint32_t node_id, uint64_t start,
                          size_t count, uint32_t *out) {
    const int t = rctc_threads_for_elements(nthreads, count, RCTC_WORDS_PER_THREAD);
    if (t <= 1 || count > (size_t)INT32_MAX) {
        rctc_random_words_fast(seed, step, node_id, start, count, out);
        return;
    }
    words_task task = {seed, start, step, node_id, out};
    rctc_parallel_for((int)count, 4, t, words_chunk, &task);
}
