/*
 * iq_layernorm_backward.c - LayerNormalization's backward (intref.norm.layernorm_backward).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c; rows (G, N). Leaves: g = dy gamma rounded (nearest)
 * to 16 bits first, then BatchNorm's dx construction with g for dy and gamma = 1, one rounding
 * to bits (stochastic with rand); dgamma = sum over rows of dy xhat (at de - 16), dbeta = sum of
 * dy (at de), both exact int64 of length N. Three passes over the rows: (1) sums, scalars, xhat,
 * dgamma / dbeta and max |dy gamma|; (2) g at 16 bits, its row means and the dx accumulator with
 * its max; (3) the per-row multipliers and their max, then one rounding. The products and sums
 * wrap as intref's int64 arithmetic does; the error codes come in intref's order.
 */
#include "iq.h"
#include "iq_norm.h"
#include "rctc_kernels.h"

/* out = p[0 .. n) widened to int64 (the width switch outside the loop) */
static void widen(const void *p, int w, size_t n, int64_t *out) {
    switch (w) {
    case 1: for (size_t i = 0; i < n; ++i) out[i] = ((const int8_t *)p)[i]; break;
    case 2: for (size_t i = 0; i < n; ++i) out[i] = ((const int16_t *)p)[i]; break;
    case 4: for (size_t i = 0; i < n; ++i) out[i] = ((const int32_t *)p)[i]; break;
    default: for (size_t i = 0; i < n; ++i) out[i] = ((const int64_t *)p)[i]; break;
    }
}

/* one row of pass 1 from x (widened): xhat, dgamma += dy xhat, dbeta += dy, and max |dy gamma|;
 * or an RCTC_IQ_E* code from the row's scalars */
static int row_pass1(int N, const int64_t *x, const int64_t *dy, const int64_t *gam, int e, int64_t eps_num,
                     int eps_log2, int64_t *xh, int64_t *dgamma, int64_t *dbeta, int64_t *m, int64_t *f,
                     uint64_t *mg) {
    const size_t n = (size_t)N;
    int64_t a1 = 0, a2 = 0, s1, d;
    for (size_t j = 0; j < n; ++j) {
        a1 += x[j];
        a2 += x[j] * x[j];
    }
    const int rc = iq_norm_group_sums(N, a1, a2, e, eps_num, eps_log2, &s1, &d, m, f);
    if (rc) return rc;
    const int s = (int)*f - 16;
    uint64_t mx = *mg;
    for (size_t j = 0; j < n; ++j) {
        xh[j] = iq_norm_xhat(N, x[j], a1, *m, s);
        dgamma[j] = iq_add(dgamma[j], iq_mul(dy[j], xh[j]));
        dbeta[j] = iq_add(dbeta[j], dy[j]);
        const uint64_t a = iq_abs(iq_mul(dy[j], gam[j]));
        mx = a > mx ? a : mx;
    }
    *mg = mx;
    return RCTC_IQ_OK;
}

int rctc_iq_layernorm_backward(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta) {
    const size_t T = (size_t)G * (size_t)N, nn = (size_t)N;
    int64_t *xhat = work, *g = xhat + T, *acc = g + T, *dy = acc + T, *m = dy + T, *f = m + G, *ones = f + G,
            *mult = ones + G, *gam = mult + G; /* gam: gamma widened */
    int16_t *g16 = (int16_t *)(void *)(gam + nn); /* T int16: 4 T + 4 G + N + T / 4 of the 5 T + 8 G int64 */
    if (G < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * rctc_iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    for (size_t j = 0; j < nn; ++j) dgamma[j] = dbeta[j] = 0;
    uint64_t mg = 0;
    widen(gamma, gw, nn, gam);
    widen(dq, dw, T, dy);
    for (size_t r = 0; r < (size_t)G; ++r) { /* pass 1; x widened into acc, free until pass 2 */
        const size_t i0 = r * nn;
        widen((const char *)q + i0 * (size_t)w, w, nn, acc);
        const int rc = row_pass1(N, acc, dy + i0, gam, e, eps_num, eps_log2, xhat + i0, dgamma, dbeta, &m[r], &f[r],
                                 &mg);
        if (rc) return rc;
    }
    const int s16 = rctc_iq_requant_shift(mg, 16, 0);
    if (s16 > 0 && mg > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    const int gexp = de + ge + s16;
    int ok = 1;
    uint64_t ma = 0;
    for (size_t r = 0; r < (size_t)G; ++r) { /* pass 2 */
        const size_t i0 = r * nn;
        int64_t *gr = g + i0, *ar = acc + i0;
        const int64_t *xh = xhat + i0;
        for (size_t j = 0; j < nn; ++j) gr[j] = iq_mul(dy[i0 + j], gam[j]);
        rctc_iq_round_store(nn, gr, s16, NULL, g16 + i0, 2);
        int64_t t1 = 0, t2 = 0;
        for (size_t j = 0; j < nn; ++j) {
            gr[j] = g16[i0 + j];
            t1 = iq_add(t1, gr[j]);
            t2 = iq_add(t2, iq_mul(gr[j], xh[j]));
        }
        const int64_t m1 = iq_norm_div_round(t1, 16, N, &ok), m2 = iq_norm_div_round(t2, 0, N, &ok);
        for (size_t j = 0; j < nn; ++j) {
            const int64_t term = iq_sar(iq_add(iq_mul(xh[j], m2), (int64_t)1 << 15), 16);
            ar[j] = iq_sub(iq_sub(iq_shl(gr[j], 16), m1), term);
            const uint64_t a = iq_abs(ar[j]);
            ma = a > ma ? a : ma;
        }
    }
    if (!ok) return RCTC_IQ_EOVERFLOW;
    const int bl = iq_bitlen(ma), mbits = 61 - bl < 31 ? 61 - bl : 31;
    for (int c = 0; c < G; ++c) ones[c] = 1;
    int goff;
    int rc = iq_norm_multipliers(G, ones, N, m, f, mbits, mult, &goff);
    if (rc) return rc;
    uint64_t mx = 0;
    for (size_t r = 0; r < (size_t)G; ++r) { /* pass 3 */
        int64_t *ar = acc + r * nn;
        const int64_t k = mult[r];
        for (size_t j = 0; j < nn; ++j) {
            ar[j] = iq_mul(ar[j], k);
            const uint64_t a = iq_abs(ar[j]);
            mx = a > mx ? a : mx;
        }
    }
    const int s = rctc_iq_requant_shift(mx, bits, rand != NULL);
    if (s > 0 && mx > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    rctc_iq_round_store(T, acc, s, rand, dx, rctc_iq_width(bits));
    *e_out = gexp - e + goff - 16 + s;
    return RCTC_IQ_OK;
}
