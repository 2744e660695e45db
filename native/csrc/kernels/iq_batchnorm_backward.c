/*
 * iq_batchnorm_backward.c - BatchNormalization's backward (intref.norm.batchnorm_backward).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c. Leaves: dx = gamma inv_std (dy - mean dy - xhat
 * mean(dy xhat)) per channel (one multiplier per channel on a common exponent, cut to at most
 * 31 bits), one rounding to bits (stochastic with rand, words in dx's (B, C, S) order);
 * dgamma = sum dy xhat (exact, at de - 16) and dbeta = sum dy (exact, at de).
 */
#include <string.h>

#include "iq.h"
#include "iq_norm.h"

int rctc_iq_batchnorm_backward(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, N = (size_t)B * (size_t)S, SS = (size_t)S;
    int64_t *x = work, *dy = work + T, *xhat = dy + T, *acc = xhat + T, *s1 = acc + T, *d = s1 + C, *m = d + C,
            *f = m + C, *gm = f + C, *mult = gm + C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c) {
            const size_t src = ((size_t)b * (size_t)C + (size_t)c) * SS, dst = (size_t)c * N + (size_t)b * SS;
            iq_ld_run(q, w, src, SS, x + dst);
            iq_ld_run(dq, dw, src, SS, dy + dst);
        }
    int rc = iq_norm_stats(C, (int)N, x, e, eps_num, eps_log2, xhat, s1, d, m, f);
    if (rc) return rc;
    for (int c = 0; c < C; ++c) {
        gm[c] = iq_ld(gamma, gw, (size_t)c);
        int64_t sg = 0, sb = 0;
        for (size_t i = 0; i < N; ++i) {
            sg = iq_add(sg, iq_mul(dy[(size_t)c * N + i], xhat[(size_t)c * N + i]));
            sb = iq_add(sb, dy[(size_t)c * N + i]);
        }
        dgamma[c] = sg;
        dbeta[c] = sb;
    }
    int off;
    rc = iq_norm_dx(C, (int)N, dy, xhat, gm, m, f, acc, mult, &off);
    if (rc) return rc;
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c)
            memcpy(x + ((size_t)b * (size_t)C + (size_t)c) * SS, acc + (size_t)c * N + (size_t)b * SS,
                   SS * sizeof(int64_t));
    return rctc_iq_requantize(T, x, de + ge - e + off, bits, rand, dx, e_out);
}
