/*
 * iq_batchnorm_inference.c - inference-mode BatchNormalization from the integer running
 * statistics (intref.norm.batchnorm_inference).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c. Leaves: x and the running mean aligned (headroom 29),
 * the running variance made an even exponent, per channel (m, f) = rsqrt_fixed(v 4^P + eps),
 * gamma m as one multiplier per channel on a common exponent (at most 31 bits), times
 * (x - mean), plus beta, one nearest rounding.
 */
#include "iq.h"
#include "iq_norm.h"

static rctc_i128 rshift_i(int64_t v, int s) {
    if (s <= 0 && -s >= 64 && v) return rctc_i128_shl(rctc_i128_from_i64(v), -s > 126 ? 126 : -s);
    return rctc_i128_rshift_round(rctc_i128_from_i64(v), s);
}

int rctc_iq_batchnorm_inference(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw,
                                int ge, const void *beta, int bw, int be, const void *rmean, int rmw, int rme,
                                const void *rvar, int rvw, int rve, int64_t eps_num, int eps_log2, int bits,
                                int64_t *work, void *out, int *e_out) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, SS = (size_t)S;
    int64_t *diff = work, *m = work + T, *f = m + C, *gm = f + C, *mult = gm + C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    uint64_t mx[2] = {0, 0};
    for (size_t i = 0; i < T; ++i) mx[0] = iq_abs(iq_ld(q, w, i)) > mx[0] ? iq_abs(iq_ld(q, w, i)) : mx[0];
    for (int c = 0; c < C; ++c) mx[1] = iq_abs(iq_ld(rmean, rmw, (size_t)c)) > mx[1] ? iq_abs(iq_ld(rmean, rmw, (size_t)c)) : mx[1];
    const int exps[2] = {e, rme};
    const int ed = rctc_iq_align_exp(2, mx, exps, 29);
    const int kx = e - ed, km = rme - ed;
    if ((kx > 0 && mx[0] > (kx > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> kx)) || (km > 0 && mx[1] > (km > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> km)))
        return RCTC_IQ_EOVERFLOW;
    int rc = rctc_iq_shift((size_t)C, rmean, rmw, km, NULL, mult); /* aligned mean, temporarily */
    if (rc) return rc;
    for (size_t i = 0; i < T; ++i) {
        const size_t c = (i / SS) % (size_t)C;
        int64_t v;
        rc = rctc_iq_shift(1, (const char *)q + i * (size_t)w, w, kx, NULL, &v);
        if (rc) return rc;
        diff[i] = iq_sub(v, mult[c]);
    }
    int ev = rve;
    const int odd = ev % 2 != 0;
    if (odd) ev -= 1;
    for (int c = 0; c < C; ++c) {
        int64_t v = iq_ld(rvar, rvw, (size_t)c);
        if (odd) v = iq_shl(v, 1);
        const rctc_i128 eps0 = rshift_i(eps_num, eps_log2 + ev);
        const int p = iq_norm_headroom(iq_bitlen(iq_abs(v)), rctc_i128_bitlen(eps0));
        rctc_i128 t = rctc_i128_add(rctc_i128_shl(rctc_i128_from_i64(v), 2 * p), rshift_i(eps_num, eps_log2 + ev - 2 * p));
        if (rctc_i128_cmp(t, rctc_i128_from_i64(1)) < 0) t = rctc_i128_from_i64(1);
        uint64_t mm;
        int ff;
        rc = rctc_iq_rsqrt_fixed(t, &mm, &ff);
        if (rc) return rc;
        m[c] = (int64_t)mm;
        f[c] = ff - p;
        gm[c] = iq_ld(gamma, gw, (size_t)c);
    }
    const int bl = iq_bitlen(rctc_iq_absmax(T, diff));
    const int mbits = 61 - bl < 31 ? 61 - bl : 31;
    int g;
    rc = iq_norm_multipliers(C, gm, 1, m, f, mbits, mult, &g);
    if (rc) return rc;
    for (size_t i = 0; i < T; ++i) diff[i] = iq_mul(diff[i], mult[(i / SS) % (size_t)C]);
    const int evh = ev >= 0 ? ev / 2 : -((-ev) / 2);
    return rctc_iq_requantize_bias((size_t)B, (size_t)C, SS, diff, ge + ed - evh + g, beta, bw, be, bits, NULL, out,
                                   e_out);
}
