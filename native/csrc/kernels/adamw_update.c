/*
 * adamw_update.c - rct AdamW on integer state (runtime/intref/adamw.py, docs/numerics.md
 * "AdamW in rct mode"), bit for bit: m and v (int32, each with a per-tensor exponent), the
 * int64 step count, the parameter's stochastically rounded step.
 *
 * Needs: iq.h (shifts, floor division, bit lengths), rctc_intops.h (align_exp, requant_shift,
 * isqrt, rsqrt_fixed), rctc_rng.h (the node's words: draws 0 / 1 / 2 for m / v / q, element i's
 * word at draw * 2^40 + i, generated here in chunks, so no scratch). Leaves: mq_out / vq_out /
 * q_out and *me, *ve, *t updated (outputs may not alias inputs), stats[0] = A = sum |u| (u the
 * step on its 2^-28 grid), stats[1] = S = the clipped count. The per-tensor maxima are found by
 * recomputing element values in extra passes instead of storing them. No allocation, no float.
 */
#include "iq.h"
#include "rctc_intops.h"
#include "rctc_update.h"
#include "update_int.h"

#define Q30 ((int64_t)1 << 30)

static int64_t pow_q30(int64_t b, int64_t t) {
    int64_t r = Q30, base = b;
    while (t) {
        if (t & 1) r = (r * base + ((int64_t)1 << 29)) >> 30;
        base = (base * base + ((int64_t)1 << 29)) >> 30;
        t >>= 1;
    }
    return r;
}

/* adamw._norm: x in [2^(bits-1), 2^bits] times 2^s */
static uint64_t norm(uint64_t x, int bits, int *s) {
    if (x == 0) { *s = 0; return 0; }
    const int k = iq_bitlen(x) - bits;
    *s = k;
    if (k <= 0) return x << -k;
    return (x + ((uint64_t)1 << (k - 1))) >> k;
}

static int64_t grad(const int64_t *gq, size_t i, int s) { return upd_sround(gq[i], s, NULL); }

int rctc_adamw_update(size_t n, const void *q, int qw, int e, int bits, const int64_t *gq, int ge,
                      const int32_t *mq, const int32_t *vq, int32_t *me, int32_t *ve, int64_t *t,
                      int64_t lr_m, int lr_k, const int64_t *c, uint64_t seed, uint32_t step, uint32_t node,
                      int stochastic, void *q_out, int32_t *mq_out, int32_t *vq_out, uint64_t *stats) {
    const int64_t b1 = c[0], b2 = c[1], c1 = c[2], c2 = c[4], w = c[6], em = c[8];
    const int f1 = (int)c[3], f2 = (int)c[5], fw = (int)c[7], ee = (int)c[9];
    upd_words ws;
    upd_words_init(&ws, stochastic, seed, step, node);
    if (bits < 2 || bits > 32 || lr_m <= 0) return RCTC_IQ_EDOMAIN;
    /* 1. the gradient at 22 bits */
    const uint64_t ag = rctc_iq_absmax(n, gq);
    if (ag > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    const int s = iq_bitlen(ag) > 22 ? iq_bitlen(ag) - 22 : 0;
    const int eg = ge + s;
    uint64_t gmax = 0, mmax = 0, vmax = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(grad(gq, i, s));
        if (a > gmax) gmax = a;
        if (iq_abs(mq[i]) > mmax) mmax = iq_abs(mq[i]);
        if (iq_abs(vq[i]) > vmax) vmax = iq_abs(vq[i]);
    }
    /* 2. / 3. the moments: align, add, requantise to 32 bits */
    for (int which = 0; which < 2; ++which) {
        const int32_t *old = which ? vq : mq;
        int32_t *nw = which ? vq_out : mq_out;
        int32_t *ex = which ? ve : me;
        const int64_t bk = which ? b2 : b1, ck = which ? c2 : c1;
        const int ea = *ex - 30, eb = which ? 2 * eg - f2 : eg - f1;
        const uint64_t mx[2] = {(which ? vmax : mmax) * (uint64_t)bk,
                                (which ? gmax * gmax : gmax) * (uint64_t)ck};
        const int exps[2] = {ea, eb};
        const int ec = rctc_iq_align_exp(2, mx, exps, 61);
        uint64_t smax = 0;
        for (size_t i = 0; i < n; ++i) {
            const int64_t g = grad(gq, i, s);
            const int64_t v = upd_shift((int64_t)old[i] * bk, ea - ec) + upd_shift((which ? g * g : g) * ck, eb - ec);
            if (iq_abs(v) > smax) smax = iq_abs(v);
        }
        const int sq = rctc_iq_requant_shift(smax, 32, stochastic);
        int any = 0;
        for (size_t i = 0; i < n; ++i) {
            const int64_t g = grad(gq, i, s);
            const int64_t v = upd_shift((int64_t)old[i] * bk, ea - ec) + upd_shift((which ? g * g : g) * ck, eb - ec);
            const int64_t r = upd_sround(v, sq, upd_word(&ws, which, i));
            nw[i] = (int32_t)r;
            any |= r != 0;
        }
        if (any) *ex = ec + sq;
    }
    /* 4. bias corrections and the step's scalars (adamw.step_scalars) */
    const int64_t tn = *t + 1;
    const int64_t bc1 = Q30 - pow_q30(b1, tn), bc2 = Q30 - pow_q30(b2, tn);
    int sl, slw;
    const uint64_t l = norm((((uint64_t)lr_m << 36) + (uint64_t)(bc1 >> 1)) / (uint64_t)bc1, 30, &sl);
    const int fl = lr_k - 6 + sl;
    uint64_t mr;
    int fr;
    if (rctc_iq_rsqrt_fixed(rctc_i128_from_i64(bc2), &mr, &fr) != RCTC_IQ_OK) return RCTC_IQ_EDOMAIN;
    const int64_t r30 = (int64_t)((mr + 2) >> 2);
    const int kr = 17 - fr;
    const uint64_t lw = norm((uint64_t)lr_m * (uint64_t)w, 30, &slw);
    const int klw = lr_k - fw + slw;
    /* 5. the denominator sqrt(v_hat) + eps at exponent ed, normalised to 31 bits */
    int ev = *ve;
    const int odd = ev % 2 != 0;
    if (odd) ev -= 1;
    int ed = iq_fdiv(ev, 2) - 15 + kr;
    const int over = iq_bitlen((uint64_t)em) + ee - ed - 61;
    if (over > 0) ed += over;
    const int64_t eps = upd_shift(em, ee - ed);
    uint64_t dmax = 0;
    for (size_t i = 0; i < n; ++i) {
        int64_t v = vq_out[i] > 1 ? vq_out[i] : 1;
        if (odd) v <<= 1;
        int64_t d = (int64_t)rctc_iq_isqrt((uint64_t)v << 30) * r30;
        if (over > 0) d = upd_sround(d, over, NULL);
        const uint64_t den = (uint64_t)(d + eps);
        if (den > dmax) dmax = den;
    }
    const int kd = iq_bitlen(dmax) > 31 ? iq_bitlen(dmax) - 31 : 0;
    ed += kd;
    /* 6. the step on the 2^-28 grid, its rounding onto q, the statistics */
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    const int ku = fl + *me - ed - e - 14 + 28;
    uint64_t sum = 0, sat = 0;
    for (size_t i = 0; i < n; ++i) {
        int64_t v = vq_out[i] > 1 ? vq_out[i] : 1;
        if (odd) v <<= 1;
        int64_t d = (int64_t)rctc_iq_isqrt((uint64_t)v << 30) * r30;
        if (over > 0) d = upd_sround(d, over, NULL);
        int64_t den = upd_sround(d + eps, kd, NULL);
        if (den < 1) den = 1;
        const int64_t x = (int64_t)mq_out[i] * (int64_t)l;
        const int64_t a = iq_fdiv(x, den);
        const int64_t r = x - a * den;
        const int64_t quot = iq_shl(a, 14) + iq_fdiv(iq_shl(r, 15) + den, 2 * den);
        const int64_t qi = iq_ld(q, qw, i);
        int64_t u = -upd_sat_shift(quot, ku);
        if (w) u -= upd_sat_shift(qi * (int64_t)lw, klw + 28);
        int64_t nq;
        if (upd_apply(u, qi, qmax, upd_word(&ws, 2, i), &sum, &sat, &nq)) return RCTC_IQ_EDOMAIN;
        iq_st(q_out, qw, i, nq);
    }
    *t = tn;
    upd_stats(stats, sum, sat);
    return RCTC_IQ_OK;
}
