/*
 * update_int.h - element helpers shared by the integer-state updates (adamw_update.c,
 * momentum_update.c): runtime/intref/core.py's shift / shift_round and adamw.sat_shift of one
 * element, and the node's random words drawn in chunks (draw d's element i is word d * 2^40 + i
 * of the (seed, step, node) stream, so no scratch is needed). Internal to the kernel library.
 */
#ifndef RCTC_UPDATE_INT_H
#define RCTC_UPDATE_INT_H

#include "iq.h"
#include "rctc_rng.h"

#define UPD_SAT ((int64_t)1 << 61)
#define UPD_DRAW ((uint64_t)1 << 40)
#define UPD_CHUNK 256

/* intref.core.shift of one element: x 2^k (exact left shift, k >= 0) or nearest right shift */
static inline int64_t upd_shift(int64_t x, int k) {
    if (k >= 0) return iq_shl(x, k);
    if (-k > 62) return 0;
    return iq_round_shift(x, -k);
}

/* intref.core.shift_round of one element, stochastic with a word (w != NULL) */
static inline int64_t upd_sround(int64_t x, int s, const uint32_t *w) {
    if (s == 0) return x;
    if (s > 62) return 0;
    if (w == NULL) return iq_sar(iq_add(x, (int64_t)1 << (s - 1)), s);
    const int64_t r = s <= 32 ? (int64_t)(*w >> (32 - s)) : iq_shl((int64_t)*w, s - 32);
    return iq_sar(iq_add(x, r), s);
}

/* adamw.sat_shift: x 2^k, a left shift saturating at +-2^61, or a nearest right shift */
static inline int64_t upd_sat_shift(int64_t x, int k) {
    if (k <= 0) return -k > 62 ? 0 : (k == 0 ? x : iq_round_shift(x, -k));
    if (k >= 61) return x > 0 ? UPD_SAT : x < 0 ? -UPD_SAT : 0;
    const int64_t lim = UPD_SAT >> k;
    return iq_shl(iq_clampv(x, -lim, lim), k);
}

/* the node's words, UPD_CHUNK at a time; w == NULL: nearest rounding, no words */
typedef struct {
    const uint32_t *w;
    uint32_t buf[UPD_CHUNK];
    uint64_t seed, start;
    uint32_t step, node;
} upd_words;

static inline void upd_words_init(upd_words *ws, int stochastic, uint64_t seed, uint32_t step, uint32_t node) {
    ws->w = stochastic ? ws->buf : NULL;
    ws->seed = seed;
    ws->step = step;
    ws->node = node;
    ws->start = UINT64_MAX - UPD_CHUNK;
}

/* element i's word of draw d (NULL when nearest) */
static inline const uint32_t *upd_word(upd_words *ws, int draw, size_t i) {
    if (!ws->w) return NULL;
    const uint64_t want = (uint64_t)draw * UPD_DRAW + i;
    if (want < ws->start || want >= ws->start + UPD_CHUNK) {
        ws->start = want;
        rctc_random_words_fast(ws->seed, ws->step, ws->node, want, UPD_CHUNK, ws->buf);
    }
    return &ws->buf[want - ws->start];
}

/* one element's step u (2^-28 grid) onto qi: A += |u| (nonzero when A would pass 2^64: the
 * caller returns RCTC_IQ_EDOMAIN), *nq = clip(qi + SR_28(u, w), +-qmax), the clipped count */
static inline int upd_apply(int64_t u, int64_t qi, int64_t qmax, const uint32_t *w, uint64_t *sum, uint64_t *sat,
                            int64_t *nq) {
    const uint64_t au = iq_abs(u);
    if (*sum + au < *sum) return 1; /* A >= 2^64 */
    *sum += au;
    *nq = iq_clampv(qi + upd_sround(u, 28, w), -qmax, qmax);
    *sat += *nq == qmax || *nq == -qmax;
    return 0;
}

/* the statistics entry (NULL: none): A, the clipped count */
static inline void upd_stats(uint64_t *stats, uint64_t sum, uint64_t sat) {
    if (stats) {
        stats[0] = sum;
        stats[1] = sat;
    }
}

#endif /* RCTC_UPDATE_INT_H */
