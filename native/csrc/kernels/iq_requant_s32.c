/*
 * iq_requant_s32.c - requantise of an int32 accumulator without widening it first
 * (rctc_iq_requantize's bits for the same values read as int64).
 *
 * Needs: rctc_intops.h, rctc_kernels.h (the int32 max magnitude, the ISA check), parallel.c.
 * Leaves: out and *e_out exactly as rctc_iq_requantize(n, (int64) acc, ...) gives them: the shift
 * from max |acc| (below 2^32, so never past the 2^62 overflow bound and never above 31), then
 * one rounding per element. To int8 the rounding stays in 32-bit lanes (the AVX2 variant,
 * x86/iq_requant_s32_avx2.c, where the CPU has it, with its max magnitude); other widths go
 * through a small int64 block on the stack. The _mt entry splits both passes into fixed parts
 * (each part's max, then each part's rounding), so the bits never depend on the thread count.
 * The _words_mt entry takes the node's stream (seed, step, node) instead of its words: each part
 * draws word i for element i (draw 0, start 0, as rctc_random_words) a block of WORDS_BLOCK at a
 * time into a buffer on its thread's stack, just before rounding that block, so the n words never
 * go to memory and back (the same words, so the same bits as the _mt entry given them).
 */
#include "internal.h"
#include "iq.h"
#include "rctc_kernels.h"
#include "rctc_rng.h"

#define BLOCK 512
/* elements per thread below which a second thread does not pay (the AVX2 passes run at memory
 * speed, ~0.1 ms for 2^19 elements). Was 2^20, which kept every bundled model on one thread; at
 * 2^17 (with random_words_mt.c's 2^17) MobileNet's native step medians fell from 44-50 to 36-42 ms
 * in interleaved runs on a shared 2-vCPU Xeon, ResNet-20's stayed within noise */
#define RCTC_RQ_PER_THREAD 131072u
#define RCTC_RQ_PARTS 64
/* words drawn at a time by the _words_mt entry: 16 KiB, in L1 with the block's accumulator */
#define WORDS_BLOCK 4096

#if defined(__x86_64__) || defined(_M_X64)
static int have_avx2(void) { return (rctc_isa_available() & (1 << RCTC_ISA_AVX2)) != 0; }
static int have_avx512(void) { return (rctc_isa_available() & (1 << RCTC_ISA_AVX512VNNI)) != 0; }
#endif

void rctc_iq_round_s32_s8_portable(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out) {
    for (size_t i = 0; i < n; ++i) {
        const int64_t r = rand ? (int64_t)(rand[i] >> (32 - s)) : (int64_t)1 << (s - 1);
        out[i] = (int8_t)iq_sar((int64_t)acc[i] + r, s);
    }
}

static uint32_t absmax32(size_t n, const int32_t *acc) {
#if defined(__x86_64__) || defined(_M_X64)
    if (have_avx512()) return rctc_absmax_s32_avx512(n, acc);
    if (have_avx2()) return rctc_absmax_s32_avx2(n, acc);
#endif
    return rctc_absmax_s32(n, acc);
}

/* elements [i0, i1) rounded at shift s (>= 1) into width w */
static void round_range(size_t i0, size_t i1, const int32_t *acc, int s, const uint32_t *rand, int w, void *out) {
    if (w == 1 && s <= 31) {
#if defined(__x86_64__) || defined(_M_X64)
        if (have_avx512()) {
            rctc_iq_round_s32_s8_avx512(i1 - i0, acc + i0, s, rand ? rand + i0 : NULL, (int8_t *)out + i0);
            return;
        }
        if (have_avx2()) {
            rctc_iq_round_s32_s8_avx2(i1 - i0, acc + i0, s, rand ? rand + i0 : NULL, (int8_t *)out + i0);
            return;
        }
#endif
        rctc_iq_round_s32_s8_portable(i1 - i0, acc + i0, s, rand ? rand + i0 : NULL, (int8_t *)out + i0);
        return;
    }
    int64_t x[BLOCK];
    for (size_t b = i0; b < i1; b += BLOCK) {
        const size_t c = i1 - b < BLOCK ? i1 - b : BLOCK;
        for (size_t i = 0; i < c; ++i) x[i] = acc[b + i];
        iq_round_block(c, x, s, rand ? rand + b : NULL, w, (unsigned char *)out + b * (size_t)w);
    }
}

void rctc_iq_round_s32_range(size_t n, const int32_t *acc, int s, const uint32_t *rand, int w, void *out) {
    if (s == 0) {
        for (size_t i = 0; i < n; ++i) iq_st(out, w, i, acc[i]);
        return;
    }
    round_range(0, n, acc, s, rand, w, out);
}

typedef struct {
    size_t n;
    int parts, s, w;
    const int32_t *acc;
    const uint32_t *rand;
    void *out;
    int draws; /* 1: rand is NULL and the words come from (seed, step, node) */
    uint64_t seed;
    uint32_t step, node;
    uint32_t maxima[RCTC_RQ_PARTS];
} rq_task;

static size_t part_at(const rq_task *t, int p) { return t->n / (size_t)t->parts * (size_t)p; }
static size_t part_end(const rq_task *t, int p) { return p + 1 == t->parts ? t->n : part_at(t, p + 1); }

static void max_parts(void *ctx, int p0, int p1) {
    rq_task *t = (rq_task *)ctx;
    for (int p = p0; p < p1; ++p) t->maxima[p] = absmax32(part_end(t, p) - part_at(t, p), t->acc + part_at(t, p));
}

/* elements [i0, i1) of t rounded with the words of its stream, drawn a block at a time */
static void round_drawn(const rq_task *t, size_t i0, size_t i1) {
    uint32_t words[WORDS_BLOCK];
    for (size_t b = i0; b < i1; b += WORDS_BLOCK) {
        const size_t c = i1 - b < WORDS_BLOCK ? i1 - b : WORDS_BLOCK;
        rctc_random_words_fast(t->seed, t->step, t->node, (uint64_t)b, c, words);
        round_range(0, c, t->acc + b, t->s, words, t->w, (unsigned char *)t->out + b * (size_t)t->w);
    }
}

static void round_parts(void *ctx, int p0, int p1) {
    const rq_task *t = (const rq_task *)ctx;
    for (int p = p0; p < p1; ++p) {
        if (t->draws)
            round_drawn(t, part_at(t, p), part_end(t, p));
        else
            round_range(part_at(t, p), part_end(t, p), t->acc, t->s, t->rand, t->w, t->out);
    }
}

/* the rounding of t (its fields but s set) at the shift of max |acc| = m, on threads */
static int rq_finish(rq_task *t, int threads, uint64_t m, int e_acc, int bits, int *e_out) {
    t->s = rctc_iq_requant_shift(m, bits, t->rand != NULL || t->draws);
    if (t->s == 0) {
        for (size_t i = 0; i < t->n; ++i) iq_st(t->out, t->w, i, t->acc[i]);
    } else {
        rctc_parallel_for(t->parts, 1, threads, round_parts, t);
    }
    *e_out = e_acc + t->s;
    return RCTC_IQ_OK;
}

static void rq_init(rq_task *t, int threads, size_t n, const int32_t *acc, int bits, const uint32_t *rand, void *out) {
    t->n = n;
    t->parts = threads > 1 ? RCTC_RQ_PARTS : 1;
    t->acc = acc;
    t->rand = rand;
    t->out = out;
    t->w = rctc_iq_width(bits);
    t->draws = 0;
}

/* the max |acc| of t's parts on threads, then its rounding (rq_finish) */
static int rq_run(rq_task *t, int threads, int e_acc, int bits, int *e_out) {
    rctc_parallel_for(t->parts, 1, threads, max_parts, t);
    uint64_t m = 0;
    for (int p = 0; p < t->parts; ++p) m = t->maxima[p] > m ? t->maxima[p] : m;
    return rq_finish(t, threads, m, e_acc, bits, e_out);
}

int rctc_iq_requantize_s32_mt(int nthreads, size_t n, const int32_t *acc, int e_acc, int bits, const uint32_t *rand,
                              void *out, int *e_out) {
    const int threads = rctc_threads_for_elements(nthreads, n, RCTC_RQ_PER_THREAD);
    rq_task t;
    rq_init(&t, threads, n, acc, bits, rand, out);
    return rq_run(&t, threads, e_acc, bits, e_out);
}

int rctc_iq_requantize_s32_words_mt(int nthreads, size_t n, const int32_t *acc, int e_acc, int bits, uint64_t seed,
                                    uint32_t step, uint32_t node_id, void *out, int *e_out) {
    const int threads = rctc_threads_for_elements(nthreads, n, RCTC_RQ_PER_THREAD);
    rq_task t;
    rq_init(&t, threads, n, acc, bits, NULL, out);
    t.draws = 1;
    t.seed = seed;
    t.step = step;
    t.node = node_id;
    return rq_run(&t, threads, e_acc, bits, e_out);
}

int rctc_iq_requantize_s32_max_mt(int nthreads, size_t n, const int32_t *acc, uint32_t amax, int e_acc, int bits,
                                  const uint32_t *rand, void *out, int *e_out) {
    const int threads = rctc_threads_for_elements(nthreads, n, RCTC_RQ_PER_THREAD);
    rq_task t;
    rq_init(&t, threads, n, acc, bits, rand, out);
    return rq_finish(&t, threads, amax, e_acc, bits, e_out);
}

int rctc_iq_requantize_s32(size_t n, const int32_t *acc, int e_acc, int bits, const uint32_t *rand, void *out,
                           int *e_out) {
    return rctc_iq_requantize_s32_mt(1, n, acc, e_acc, bits, rand, out, e_out);
}
