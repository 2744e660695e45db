/*
 * iq_batchnorm.c - training-mode BatchNormalization with the running-statistics update
 * (intref.norm.batchnorm_train).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c. Leaves: per channel (a group of B S integers) xhat in
 * Q16, y = requantize(gamma xhat at e_gamma - 16, bias beta); running mean / var updated by
 * r <- (MU r + (2^16 - MU) b) / 2^16 with the batch mean round(S1 2^16 / N) at e - 16 and
 * variance round(D 2^16 / N^2) at 2e - 16 (int16 results).
 */
#include "iq.h"
#include "iq_norm.h"

int rctc_iq_batchnorm_train(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                            const void *beta, int bw, int be, const int16_t *rmean, int rme, const int16_t *rvar,
                            int rve, int64_t eps_num, int eps_log2, int64_t mu, int bits, int64_t *work, void *out,
                            int *e_out, int16_t *rmean_out, int *rme_out, int16_t *rvar_out, int *rve_out) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, N = (size_t)B * (size_t)S, SS = (size_t)S;
    int64_t *x = work, *xhat = work + T, *s1 = work + 2 * T, *d = s1 + C, *m = d + C, *f = m + C, *bm = f + C,
            *bv = bm + C, *scratch = bv + C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c)
            iq_ld_run(q, w, ((size_t)b * (size_t)C + (size_t)c) * SS, SS, x + (size_t)c * N + (size_t)b * SS);
    int rc = iq_norm_stats(C, (int)N, x, e, eps_num, eps_log2, xhat, s1, d, m, f);
    if (rc) return rc;
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c) {
            const int64_t g = iq_ld(gamma, gw, (size_t)c);
            for (size_t s = 0; s < SS; ++s)
                x[((size_t)b * (size_t)C + (size_t)c) * SS + s] = iq_mul(xhat[(size_t)c * N + (size_t)b * SS + s], g);
        }
    rc = rctc_iq_requantize_bias((size_t)B, (size_t)C, SS, x, ge - 16, beta, bw, be, bits, NULL, out, e_out);
    if (rc) return rc;
    const int64_t nn = (int64_t)N;
    for (int c = 0; c < C; ++c) {
        const rctc_i128 v = rctc_i128_shl(rctc_i128_from_i64(s1[c]), 16);
        bm[c] = (int64_t)rctc_i128_divfloor(rctc_i128_add(rctc_i128_shl(v, 1), rctc_i128_from_i64(nn)), 2 * (uint64_t)nn).lo;
        const rctc_i128 dv = rctc_i128_shl(rctc_i128_from_i64(d[c]), 16);
        const rctc_i128 n2 = rctc_i128_mul64(nn, nn);
        bv[c] = (int64_t)rctc_i128_divfloor(rctc_i128_add(rctc_i128_shl(dv, 1), n2), 2 * n2.lo).lo;
    }
    rc = iq_norm_update(C, rmean, rme, bm, e - 16, mu, rmean_out, rme_out, scratch);
    if (rc) return rc;
    return iq_norm_update(C, rvar, rve, bv, 2 * e - 16, mu, rvar_out, rve_out, scratch);
}
