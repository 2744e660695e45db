/*
 * momentum_update.c - rct momentum SGD on integer state (runtime/intref/momentum.py,
 * docs/numerics.md "Momentum SGD in rct mode"), bit for bit: the velocity (vw-byte integers at
 * vbits, a per-tensor exponent) and the parameter's stochastically rounded step.
 *
 * Needs: iq.h, rctc_intops.h (absmax, align_exp, requant_shift), update_int.h (element shifts,
 * the node's words: draw 0 the velocity, draw 1 the step). Leaves: vq_out and q_out written
 * (no aliasing with the inputs), *ve updated, stats[0] = A = sum |u| (u the step on its 2^-28
 * grid), stats[1] = S = the clipped count. The velocity sum is recomputed in a second pass
 * instead of stored. No allocation, no float.
 */
#include "iq.h"
#include "rctc_kernels.h"
#include "rctc_intops.h"
#include "rctc_update.h"
#include "update_int.h"

#define G_BITS 24
#define MU_BITS 30
#define HEADROOM 60

typedef struct {
    const void *vq, *q;
    const int64_t *gq;
    int vw, qw, s;                  /* widths, the gradient's rounding shift */
    int64_t mu, ca, w;              /* constants */
    int kv, kg, kq;                 /* each term's shift to the common exponent */
} vsum;

/* element i of MU vq 2^(ve-30) + CA g 2^(eg-fa) [+ W q 2^(e-fw)] at the common exponent */
static int64_t velocity_term(const vsum *t, size_t i) {
    const int64_t g = upd_sround(t->gq[i], t->s, NULL);
    int64_t x = upd_shift(iq_ld(t->vq, t->vw, i) * t->mu, t->kv) + upd_shift(g * t->ca, t->kg);
    if (t->w) x += upd_shift(iq_ld(t->q, t->qw, i) * t->w, t->kq);
    return x;
}

int rctc_momentum_update(size_t n, const void *q, int qw, int e, int bits, const int64_t *gq, int ge,
                         const void *vq, int vw, int32_t *ve, int vbits, int64_t lr_m, int lr_k, const int64_t *c,
                         uint64_t seed, uint32_t step, uint32_t node, int stochastic, void *q_out, void *vq_out,
                         uint64_t *stats) {
    const int64_t mu = c[0], ca = c[1], w = c[3];
    const int fa = (int)c[2], fw = (int)c[4];
    if (bits < 2 || bits > 32 || vbits < 2 || vbits > 32 || lr_m <= 0 || mu < 0 || mu > ((int64_t)1 << MU_BITS) ||
        ca < 0 || w < 0)
        return RCTC_IQ_EDOMAIN;
    upd_words ws;
    upd_words_init(&ws, stochastic, seed, step, node);
    /* 1. the gradient at G_BITS */
    const uint64_t ag = rctc_iq_absmax(n, gq);
    if (ag > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    const int s = iq_bitlen(ag) > G_BITS ? iq_bitlen(ag) - G_BITS : 0;
    const int eg = ge + s;
    uint64_t gmax = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(upd_sround(gq[i], s, NULL));
        if (a > gmax) gmax = a;
    }
    /* 2. the three terms at one exponent (core.align, headroom 60), their sum requantised */
    const uint64_t mx[3] = {rctc_iq_absmax_w(vq, vw, n) * (uint64_t)mu, gmax * (uint64_t)ca,
                            rctc_iq_absmax_w(q, qw, n) * (uint64_t)w};
    const int exps[3] = {*ve - MU_BITS, eg - fa, e - fw};
    const int ec = rctc_iq_align_exp(w ? 3 : 2, mx, exps, HEADROOM);
    const vsum t = {vq, q, gq, vw, qw, s, mu, ca, w, exps[0] - ec, exps[1] - ec, exps[2] - ec};
    uint64_t smax = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(velocity_term(&t, i));
        if (a > smax) smax = a;
    }
    const int sq = rctc_iq_requant_shift(smax, vbits, stochastic);
    int any = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t r = upd_sround(velocity_term(&t, i), sq, upd_word(&ws, 0, i));
        iq_st(vq_out, vw, i, r);
        any |= r != 0;
    }
    if (any) *ve = ec + sq;
    /* 3. / 4. the step on the 2^-28 grid, its rounding onto q, the statistics */
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    const int ku = lr_k + *ve - e + 28;
    uint64_t sum = 0, sat = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t u = -upd_sat_shift(iq_ld(vq_out, vw, i) * lr_m, ku);
        int64_t nq;
        if (upd_apply(u, iq_ld(q, qw, i), qmax, upd_word(&ws, 1, i), &sum, &sat, &nq)) return RCTC_IQ_EDOMAIN;
        iq_st(q_out, qw, i, nq);
    }
    upd_stats(stats, sum, sat);
    return RCTC_IQ_OK;
}
