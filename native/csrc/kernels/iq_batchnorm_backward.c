/*
 * iq_batchnorm_backward.c - BatchNormalization's backward (intref.norm.batchnorm_backward).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c. Leaves: dx = gamma inv_std (dy - mean dy - xhat
 * mean(dy xhat)) per channel (one multiplier per channel on a common exponent, cut to at most
 * 31 bits), one rounding to bits (stochastic with rand, words in dx's (B, C, S) order);
 * dgamma = sum dy xhat (exact, at de - 16) and dbeta = sum dy (exact, at de).
 *
 * In two parts, so a caller can round dx a range of elements at a time: the plan (per-channel
 * scalars from passes over q and dy in place, and the exact max of the final accumulator, the
 * per-channel max of the inner term times its multiplier: the products never wrap) and the
 * accumulator of any range of elements, recomputed from q and dy. The whole kernel (the host's)
 * keeps the plan's inner terms instead and multiplies them in place.
 */
#include "iq.h"
#include "iq_norm.h"

/* plan layout: s1 d m f gm mult m1 m2 amax, C int64 each */
enum { P_S1, P_D, P_M, P_F, P_GM, P_MULT, P_M1, P_M2, P_AMAX };

/* elements of q and dy widened at a time onto the stack (2 x 512 B) */
#define RUN 64

/* the per-channel scalars of channel c that every element of it needs */
typedef struct {
    int64_t nn, a1, mm, m1, m2;
    int sh;
} chan;

static chan chan_of(const int64_t *p, int C, int c, int64_t nn) {
    chan k;
    k.nn = nn;
    k.a1 = p[P_S1 * C + c];
    k.mm = p[P_M * C + c];
    k.sh = (int)p[P_F * C + c] - 16;
    k.m1 = p[P_M1 * C + c];
    k.m2 = p[P_M2 * C + c];
    return k;
}

/* inner term of one element (before the channel's multiplier) */
static inline int64_t inner(const chan *k, int64_t x, int64_t dy) {
    const int64_t xh = iq_norm_xhat(k->nn, x, k->a1, k->mm, k->sh);
    const int64_t term = iq_sar(iq_add(iq_mul(xh, k->m2), (int64_t)1 << 15), 16);
    return iq_sub(iq_sub(iq_shl(dy, 16), k->m1), term);
}

int rctc_iq_batchnorm_backward_plan(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw,
                                    const void *dq, int dw, int64_t eps_num, int eps_log2, int64_t *plan, int *off,
                                    uint64_t *amax, int64_t *dgamma, int64_t *dbeta, int64_t *inner_out) {
    const size_t SS = (size_t)S;
    const int64_t nn = (int64_t)B * (int64_t)S;
    int64_t *p = plan, x[RUN], d[RUN];
    if (C < 1) return RCTC_IQ_EDOMAIN;
    int rc = iq_norm_stats_bgs(B, C, S, q, w, e, eps_num, eps_log2, p + P_S1 * C, p + P_D * C, p + P_M * C,
                               p + P_F * C, NULL, NULL);
    if (rc) return rc;
    int ok = 1;
    for (int c = 0; c < C; ++c) {
        const int64_t a1 = p[P_S1 * C + c], mm = p[P_M * C + c];
        const int sh = (int)p[P_F * C + c] - 16;
        int64_t t1 = 0, t2 = 0;
        for (int b = 0; b < B; ++b)
            for (size_t i0 = 0; i0 < SS; i0 += RUN) {
                const size_t row = ((size_t)b * (size_t)C + (size_t)c) * SS + i0, n = SS - i0 < RUN ? SS - i0 : RUN;
                iq_ld_run(q, w, row, n, x);
                iq_ld_run(dq, dw, row, n, d);
                for (size_t j = 0; j < n; ++j) {
                    t1 = iq_add(t1, d[j]);
                    t2 = iq_add(t2, iq_mul(d[j], iq_norm_xhat(nn, x[j], a1, mm, sh)));
                }
            }
        p[P_GM * C + c] = iq_ld(gamma, gw, (size_t)c);
        dgamma[c] = t2;
        dbeta[c] = t1;
        p[P_M1 * C + c] = iq_norm_div_round(t1, 16, nn, &ok);
        p[P_M2 * C + c] = iq_norm_div_round(t2, 0, nn, &ok);
    }
    if (!ok) return RCTC_IQ_EOVERFLOW;
    uint64_t mx = 0;
    for (int c = 0; c < C; ++c) {
        const chan k = chan_of(p, C, c, nn);
        int64_t hi = 0, lo = 0; /* the extremes, not |v| per element: no branch on the sign */
        for (int b = 0; b < B; ++b)
            for (size_t i0 = 0; i0 < SS; i0 += RUN) {
                const size_t row = ((size_t)b * (size_t)C + (size_t)c) * SS + i0, n = SS - i0 < RUN ? SS - i0 : RUN;
                iq_ld_run(q, w, row, n, x);
                iq_ld_run(dq, dw, row, n, d);
                for (size_t j = 0; j < n; ++j) {
                    const int64_t v = inner(&k, x[j], d[j]);
                    hi = v > hi ? v : hi;
                    lo = v < lo ? v : lo;
                    x[j] = v;
                }
                if (inner_out)
                    for (size_t j = 0; j < n; ++j) inner_out[row + j] = x[j];
            }
        const uint64_t a = iq_abs(hi) > iq_abs(lo) ? iq_abs(hi) : iq_abs(lo);
        p[P_AMAX * C + c] = (int64_t)a;
        mx = a > mx ? a : mx;
    }
    const int bl = iq_bitlen(mx);
    const int mbits = 61 - bl < 31 ? 61 - bl : 31;
    int g;
    rc = iq_norm_multipliers(C, p + P_GM * C, nn, p + P_M * C, p + P_F * C, mbits, p + P_MULT * C, &g);
    if (rc) return rc;
    /* |inner| < 2^bl and |mult| <= 2^mbits (0 when mbits < 0), so |inner mult| < 2^62: exact */
    uint64_t top = 0;
    for (int c = 0; c < C; ++c) {
        const uint64_t v = (uint64_t)p[P_AMAX * C + c] * iq_abs(p[P_MULT * C + c]);
        top = v > top ? v : top;
    }
    *amax = top;
    *off = g - 16;
    return RCTC_IQ_OK;
}

void rctc_iq_batchnorm_backward_acc(int B, int C, int S, const void *q, int w, const void *dq, int dw,
                                    const int64_t *plan, size_t start, size_t count, int64_t *acc) {
    const size_t SS = (size_t)S, CC = (size_t)C, end = start + count;
    const int64_t nn = (int64_t)B * (int64_t)S;
    int64_t d[RUN];
    size_t i = start;
    while (i < end) {
        const int c = (int)((i / SS) % CC);
        const size_t left = SS - i % SS, run = left < end - i ? left : end - i, n = run < RUN ? run : RUN;
        const chan k = chan_of(plan, C, c, nn);
        const int64_t mult = plan[P_MULT * C + c];
        int64_t *o = acc + (i - start);
        iq_ld_run(q, w, i, n, o);
        iq_ld_run(dq, dw, i, n, d);
        for (size_t j = 0; j < n; ++j) o[j] = iq_mul(inner(&k, o[j], d[j]), mult);
        i += n;
    }
}

int rctc_iq_batchnorm_backward(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S;
    int off;
    uint64_t amax;
    int64_t *acc = work + RCTC_IQ_BN_PLAN_WORDS(C);
    const int rc = rctc_iq_batchnorm_backward_plan(B, C, S, q, w, e, gamma, gw, dq, dw, eps_num, eps_log2, work,
                                                   &off, &amax, dgamma, dbeta, acc);
    if (rc) return rc;
    /* the inner terms the plan kept, times their channel's multiplier: _acc's values */
    for (size_t r = 0; r < (size_t)B * (size_t)C; ++r) {
        const int64_t mult = work[P_MULT * C + (int)(r % (size_t)C)];
        int64_t *row = acc + r * (size_t)S;
        for (size_t i = 0; i < (size_t)S; ++i) row[i] = iq_mul(row[i], mult);
    }
    return rctc_iq_requantize(T, acc, de + ge - e + off, bits, rand, dx, e_out);
}
