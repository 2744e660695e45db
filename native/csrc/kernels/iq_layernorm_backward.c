/*
 * iq_layernorm_backward.c - LayerNormalization's backward (intref.norm.layernorm_backward).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c; rows (G, N). Leaves: g = dy gamma rounded (nearest)
 * to 16 bits first, then BatchNorm's dx construction with g for dy and gamma = 1, one rounding
 * to bits (stochastic with rand); dgamma = sum over rows of dy xhat (at de - 16), dbeta = sum of
 * dy (at de), both exact int64 of length N.
 */
#include "iq.h"
#include "iq_norm.h"

int rctc_iq_layernorm_backward(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta) {
    const size_t T = (size_t)G * (size_t)N, nn = (size_t)N;
    int64_t *x = work, *xhat = x + T, *gp = xhat + T, *acc = gp + T, *g16 = acc + T, *s1 = g16 + T, *d = s1 + G,
            *m = d + G, *f = m + G, *ones = f + G, *mult = ones + G;
    if (G < 1) return RCTC_IQ_EDOMAIN;
    for (size_t i = 0; i < T; ++i) x[i] = iq_ld(q, w, i);
    int rc = iq_norm_stats(G, N, x, e, eps_num, eps_log2, xhat, s1, d, m, f);
    if (rc) return rc;
    for (size_t j = 0; j < nn; ++j) dgamma[j] = dbeta[j] = 0;
    for (size_t r = 0; r < (size_t)G; ++r) { /* row by row: no index modulo per element */
        for (size_t j = 0, i = r * nn; j < nn; ++j, ++i) {
            const int64_t v = iq_ld(dq, dw, i);
            dgamma[j] = iq_add(dgamma[j], iq_mul(v, xhat[i]));
            dbeta[j] = iq_add(dbeta[j], v);
            gp[i] = iq_mul(v, iq_ld(gamma, gw, j));
        }
    }
    int gexp;
    rc = rctc_iq_requantize(T, gp, de + ge, 16, NULL, g16, &gexp);
    if (rc) return rc;
    for (size_t i = 0; i < T; ++i) gp[i] = ((const int16_t *)g16)[i];
    for (int c = 0; c < G; ++c) ones[c] = 1;
    int off;
    rc = iq_norm_dx(G, N, gp, xhat, ones, m, f, acc, mult, &off);
    if (rc) return rc;
    return rctc_iq_requantize(T, acc, gexp - e + off, bits, rand, dx, e_out);
}
