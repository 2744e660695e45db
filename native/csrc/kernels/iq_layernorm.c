/*
 * iq_layernorm.c - LayerNormalization (intref.norm.layernorm).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c; the normalised axes flattened into rows (G, N).
 * Leaves: per row xhat in Q16, y = requantize(gamma xhat at e_gamma - 16, bias beta), gamma and
 * beta broadcast along the row.
 */
#include "iq.h"
#include "iq_norm.h"

int rctc_iq_layernorm(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge, const void *beta,
                      int bw, int be, int64_t eps_num, int eps_log2, int bits, int64_t *work, void *out,
                      int *e_out) {
    const size_t T = (size_t)G * (size_t)N, nn = (size_t)N;
    int64_t *x = work, *xhat = work + T, *s1 = xhat + T, *d = s1 + G, *m = d + G, *f = m + G;
    if (G < 1) return RCTC_IQ_EDOMAIN;
    for (size_t i = 0; i < T; ++i) x[i] = iq_ld(q, w, i);
    const int rc = iq_norm_stats(G, N, x, e, eps_num, eps_log2, xhat, s1, d, m, f);
    if (rc) return rc;
    for (size_t r = 0; r < (size_t)G; ++r) /* gamma along the row: no index modulo per element */
        for (size_t j = 0, i = r * nn; j < nn; ++j, ++i) x[i] = iq_mul(xhat[i], iq_ld(gamma, gw, j));
    return rctc_iq_requantize_bias((size_t)G, nn, 1, x, ge - 16, beta, bw, be, bits, NULL, out, e_out);
}
