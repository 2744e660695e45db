/*
 * iq_softmax_xent.c - Softmax + cross-entropy loss and its backward
 * (intref.expo.softmax_cross_entropy, softmax_cross_entropy_backward).
 *
 * Needs: rctc_intops.h, iq_softmax.c's parts; (B, C) logits; labels in [-C, C) (numpy indexing),
 * else RCTC_IQ_EDOMAIN. Leaves: per row ln(S 2^-16) + (max - x_label) in Q16 (ilog2 times
 * ln 2 in Q32), loss = round(sum / B) half up at 2^-16; backward p = (E R + 2^15) >> 16 in Q30,
 * minus 2^30 at the label, times round(2^24 / B) at 2^-54, one rounding.
 */
#include "iq.h"

#define FRAC 16
#define LN2_Q32 2977044472LL

static int label_of(const int64_t *labels, int b, int C, int64_t *lab) {
    int64_t l = labels[b];
    if (l < 0) l += C;
    if (l < 0 || l >= C) return RCTC_IQ_EDOMAIN;
    *lab = l;
    return RCTC_IQ_OK;
}

int rctc_iq_softmax_cross_entropy(int B, int C, const void *q, int w, int e, const int64_t *labels, int64_t *work,
                                  int64_t *loss, int *e_out) {
    int64_t total = 0;
    for (int b = 0; b < B; ++b) {
        int64_t lab, mx = INT64_MIN, s = 0;
        if (label_of(labels, b, C, &lab)) return RCTC_IQ_EDOMAIN;
        const size_t base = (size_t)b * (size_t)C;
        for (int c = 0; c < C; ++c) mx = iq_max(mx, iq_ld(q, w, base + (size_t)c));
        int64_t *t = work + base;
        for (int c = 0; c < C; ++c) t[c] = rctc_iq_to_fixed1(iq_ld(q, w, base + (size_t)c) - mx, e, FRAC);
        if (rctc_iq_iexp((size_t)C, t, t)) return RCTC_IQ_EDOMAIN; /* the row in one call */
        for (int c = 0; c < C; ++c) s += t[c];
        int64_t lg;
        if (rctc_iq_ilog2(1, &s, &lg)) return RCTC_IQ_EDOMAIN;
        lg -= (int64_t)FRAC << FRAC;
        const int64_t ln = iq_sar(lg * LN2_Q32 + ((int64_t)1 << 31), 32);
        const int64_t gap = rctc_iq_to_fixed1(mx - iq_ld(q, w, base + (size_t)lab), e, FRAC);
        total += ln + gap;
    }
    *loss = B ? iq_fdiv(2 * total + B, 2 * (int64_t)B) : 0;
    *e_out = -FRAC;
    return B ? RCTC_IQ_OK : RCTC_IQ_EDOMAIN;
}

int rctc_iq_softmax_cross_entropy_backward(int B, int C, const void *q, int w, int e, const int64_t *labels, int bits,
                                           const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const size_t n = (size_t)B * (size_t)C;
    if (B < 1) return RCTC_IQ_EDOMAIN;
    const int rc = rctc_iq_softmax_parts((size_t)B, (size_t)C, 1, q, w, e, work + n, work);
    if (rc) return rc;
    const int64_t rb = (int64_t)rctc_iq_recip_fixed((uint64_t)B, 24);
    for (size_t i = 0; i < n; ++i) work[i] = iq_sar(work[i] + ((int64_t)1 << 15), 16);
    for (int b = 0; b < B; ++b) {
        int64_t lab;
        if (label_of(labels, b, C, &lab)) return RCTC_IQ_EDOMAIN;
        work[(size_t)b * (size_t)C + (size_t)lab] -= (int64_t)1 << 30;
    }
    for (size_t i = 0; i < n; ++i) work[i] *= rb;
    return rctc_iq_requantize(n, work, -54, bits, rand, dx, e_out);
}
