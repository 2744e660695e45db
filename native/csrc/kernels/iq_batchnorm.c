/*
 * iq_batchnorm.c - training-mode BatchNormalization with the running-statistics update
 * (intref.norm.batchnorm_train).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c. Leaves: per channel (a group of B S integers) xhat in
 * Q16, y = requantize(gamma xhat at e_gamma - 16, bias beta); running mean / var updated by
 * r <- (MU r + (2^16 - MU) b) / 2^16 with the batch mean round(S1 2^16 / N) at e - 16 and
 * variance round(D 2^16 / N^2) at 2e - 16 (int16 results). Streamed: the channel sums read the
 * input in place (with each channel's min and max), the requantisation's max is gamma xhat + beta
 * at those two ends (a pass over the elements when gamma is wider than 16 bits), then gamma xhat
 * + beta is formed and rounded RCTC_IQ_NORM_CHUNK elements at a time: the work is O(C), not
 * O(B C S).
 */
#include "iq.h"
#include "iq_norm.h"

/* buf[0 .. n) = gamma xhat + b of the run q[off ..] of channel c (one channel's scalars) */
static void affine_run(const void *q, int w, size_t off, size_t n, int64_t nn, int64_t a1, int64_t mm, int sh,
                       int64_t g, int64_t b, int64_t *buf) {
    iq_ld_run(q, w, off, n, buf);
    for (size_t i = 0; i < n; ++i) buf[i] = iq_add(iq_mul(iq_norm_xhat(nn, buf[i], a1, mm, sh), g), b);
}

int rctc_iq_batchnorm_train(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                            const void *beta, int bw, int be, const int16_t *rmean, int rme, const int16_t *rvar,
                            int rve, int64_t eps_num, int eps_log2, int64_t mu, int bits, int64_t *work, void *out,
                            int *e_out, int16_t *rmean_out, int *rme_out, int16_t *rvar_out, int *rve_out) {
    const size_t N = (size_t)B * (size_t)S, SS = (size_t)S, K = RCTC_IQ_NORM_CHUNK;
    int64_t *s1 = work, *d = s1 + C, *m = d + C, *f = m + C, *bm = f + C, *bv = bm + C, *scratch = bv + C,
            *bc = scratch + 2 * C, *buf = bc + C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    int rc = iq_norm_stats_bgs(B, C, S, q, w, e, eps_num, eps_log2, s1, d, m, f, bm, bv); /* lo, hi */
    if (rc) return rc;
    /* the bias brought to the accumulator's exponent ge - 16 (rctc_iq_requantize_bias) */
    const int e_acc = ge - 16, k = be - e_acc;
    rc = iq_norm_shifted_bias(C, beta, bw, k, bc);
    if (rc) return rc;
    const int64_t nn = (int64_t)N;
    uint64_t mx = 0;
    /* gamma xhat + b is monotone in q within a channel (m > 0; |xhat| < 2^31 as |z| < sqrt(N) and
     * N < 2^29, so with |gamma| < 2^15 nothing wraps): its max |.| is at the channel's min or max q */
    const int ends = gw <= 2;
    for (int c = 0; ends && c < C; ++c) {
        const int64_t g = iq_ld(gamma, gw, (size_t)c), x[2] = {bm[c], bv[c]};
        for (int k2 = 0; k2 < 2; ++k2) {
            const uint64_t a = iq_abs(iq_add(iq_mul(iq_norm_xhat(nn, x[k2], s1[c], m[c], (int)f[c] - 16), g), bc[c]));
            mx = a > mx ? a : mx;
        }
    }
    for (int pass = ends; pass < 2; ++pass) {
        const int s = pass ? rctc_iq_requant_shift(mx, bits, 0) : 0, wo = rctc_iq_width(bits);
        if (pass && s > 0 && mx > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
        for (int b = 0; b < B; ++b)
            for (int c = 0; c < C; ++c) {
                const int64_t g = iq_ld(gamma, gw, (size_t)c);
                const size_t row = ((size_t)b * (size_t)C + (size_t)c) * SS;
                for (size_t i0 = 0; i0 < SS; i0 += K) {
                    const size_t n = SS - i0 < K ? SS - i0 : K;
                    affine_run(q, w, row + i0, n, nn, s1[c], m[c], (int)f[c] - 16, g, bc[c], buf);
                    if (!pass) {
                        const uint64_t a = rctc_iq_absmax(n, buf);
                        mx = a > mx ? a : mx;
                    } else {
                        rctc_iq_round_store(n, buf, s, NULL, (char *)out + (row + i0) * (size_t)wo, wo);
                    }
                }
            }
        if (pass) *e_out = e_acc + s;
    }
    return iq_norm_running_update(C, nn, s1, d, e, mu, rmean, rme, rvar, rve, rmean_out, rme_out, rvar_out, rve_out,
                                  bm, bv, scratch);
}
