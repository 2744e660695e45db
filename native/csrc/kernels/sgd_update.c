/*
 * sgd_update.c - the fused integer SGD update with its stochastic rounding (rctc_update.h).
 *
 * Needs: iq.h (floor shift, widths). Leaves: out = clip(q + round(acc * m * 2^k)) with
 * FusedIntUpdate's rounding, bit for bit, and the bitwidth controller's statistics A = sum |acc|
 * and S = #{|out| == qmax} (rctc/bitwidth_rule.py); no floating point, no allocation.
 */
#include "iq.h"
#include "rctc_intops.h"
#include "rctc_update.h"

#define P53 ((int64_t)1 << 53)

int rctc_sgd_update_fused(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                          const uint32_t *rand, void *out, uint64_t *stats) {
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    uint64_t am = iq_abs(m);
    uint64_t sum_abs = 0, saturated = 0;
    if (k < -53 || bits < 2 || bits > 32) return RCTC_IQ_EDOMAIN;
    for (size_t i = 0; i < n; ++i) {
        uint64_t aa = iq_abs(acc[i]);
        if (aa != 0 && (am == 0 ? 0 : aa > (uint64_t)(P53 - 1) / am)) return RCTC_IQ_EDOMAIN;
        if (stats != NULL && sum_abs + aa < sum_abs) return RCTC_IQ_EDOMAIN; /* A >= 2^64 */
        sum_abs += aa;
        int64_t p = iq_mul(acc[i], m); /* |p| < 2^53: exact, and exactly numpy's float64 u * 2^-k */
        int64_t fl;
        int up = 0;
        if (k >= 0) {
            /* an integer update: anything past 2^40 clips, so saturate there (no overflow) */
            const int64_t lim = (int64_t)1 << 40;
            if (k >= 40 || iq_abs(p) > (uint64_t)(lim >> k)) fl = p > 0 ? lim : p < 0 ? -lim : 0;
            else fl = iq_shl(p, k);
        } else {
            int s = -k;
            fl = iq_sar(p, s);
            int64_t f = iq_sub(p, iq_shl(fl, s)); /* frac(u) * 2^s, in [0, 2^s) */
            if (rand == NULL) {
                int64_t half = (int64_t)1 << (s - 1);
                up = f > half || (f == half && (fl & 1));
            } else if (f > 0) {
                uint32_t u24 = rand[i] >> 8;
                /* U < f * 2^(24 - s)  <=>  U * 2^(s - 24) < f */
                up = s <= 24 ? (int64_t)u24 < iq_shl(f, 24 - s) : (int64_t)u24 <= ((f - 1) >> (s - 24));
            }
        }
        int64_t v = iq_add(iq_add(iq_ld(q, qw, i), fl), up);
        if (v > qmax) v = qmax;
        if (v < -qmax) v = -qmax;
        if (v == qmax || v == -qmax) ++saturated;
        iq_st(out, qw, i, v);
    }
    if (stats != NULL) {
        stats[0] = sum_abs;
        stats[1] = saturated;
    }
    return RCTC_IQ_OK;
}
