/*
 * iq_avgpool.c - AveragePool 2-D and its backward (intref.pool.avgpool2d, avgpool2d_backward).
 *
 * Needs: rctc_intops.h. Leaves: per window the exact int64 sum S times R = round(2^32 / n)
 * (n = kh kw with include_pad, else the non-pad count) at e - 32, one nearest rounding;
 * |S| >= 2^30 is RCTC_IQ_EOVERFLOW and a window of no element RCTC_IQ_EDOMAIN, as intref.
 * Backward: each input gets sum over its windows of dy_w R_w (exact), one rounding.
 */
#include "iq.h"

#define RECIP_FRAC 32

static int64_t recip_at(const rctc_iq_pool *p, int oy, int ox, int include_pad) {
    int64_t cnt = (int64_t)p->kh * p->kw;
    if (!include_pad) {
        cnt = 0;
        for (int i = 0; i < p->kh; ++i) {
            const int y = oy * p->sh - p->pt + i;
            for (int j = 0; j < p->kw; ++j) {
                const int x = ox * p->sw - p->pl + j;
                cnt += y >= 0 && y < p->h && x >= 0 && x < p->w;
            }
        }
    }
    return cnt ? (int64_t)rctc_iq_recip_fixed((uint64_t)cnt, RECIP_FRAC) : 0;
}

int rctc_iq_avgpool2d(const rctc_iq_pool *p, const void *q, int w, int e, int include_pad, int bits,
                      int64_t *work, void *out, int *e_out) {
    const size_t planes = (size_t)p->n * (size_t)p->c, ohw = (size_t)p->oh * (size_t)p->ow;
    uint64_t m = 0;
    for (size_t pl = 0; pl < planes; ++pl)
        for (int oy = 0; oy < p->oh; ++oy)
            for (int ox = 0; ox < p->ow; ++ox) {
                int64_t s = 0;
                for (int i = 0; i < p->kh; ++i) {
                    const int y = oy * p->sh - p->pt + i;
                    if (y < 0 || y >= p->h) continue;
                    for (int j = 0; j < p->kw; ++j) {
                        const int x = ox * p->sw - p->pl + j;
                        if (x >= 0 && x < p->w)
                            s = iq_add(s, iq_ld(q, w, (pl * (size_t)p->h + (size_t)y) * (size_t)p->w + (size_t)x));
                    }
                }
                const uint64_t a = iq_abs(s);
                m = a > m ? a : m;
                work[pl * ohw + (size_t)oy * (size_t)p->ow + (size_t)ox] = s;
            }
    if (m >= ((uint64_t)1 << 30)) return RCTC_IQ_EOVERFLOW;
    for (int oy = 0; oy < p->oh; ++oy)
        for (int ox = 0; ox < p->ow; ++ox) {
            const int64_t r = recip_at(p, oy, ox, include_pad);
            if (!r && planes) return RCTC_IQ_EDOMAIN;
            for (size_t pl = 0; pl < planes; ++pl) work[pl * ohw + (size_t)oy * (size_t)p->ow + (size_t)ox] *= r;
        }
    return rctc_iq_requantize(planes * ohw, work, e - RECIP_FRAC, bits, NULL, out, e_out);
}

int rctc_iq_avgpool2d_backward(const rctc_iq_pool *p, const void *dq, int dw, int de, int include_pad, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const size_t planes = (size_t)p->n * (size_t)p->c, hw = (size_t)p->h * (size_t)p->w;
    for (size_t i = 0; i < planes * hw; ++i) work[i] = 0;
    for (int oy = 0; oy < p->oh; ++oy)
        for (int ox = 0; ox < p->ow; ++ox) {
            const int64_t r = recip_at(p, oy, ox, include_pad);
            if (!r && planes) return RCTC_IQ_EDOMAIN;
            for (size_t pl = 0; pl < planes; ++pl) {
                const int64_t g = iq_mul(iq_ld(dq, dw, (pl * (size_t)p->oh + (size_t)oy) * (size_t)p->ow + (size_t)ox), r);
                for (int i = 0; i < p->kh; ++i) {
                    const int y = oy * p->sh - p->pt + i;
                    if (y < 0 || y >= p->h) continue;
                    for (int j = 0; j < p->kw; ++j) {
                        const int x = ox * p->sw - p->pl + j;
                        if (x < 0 || x >= p->w) continue;
                        int64_t *t = work + pl * hw + (size_t)y * (size_t)p->w + (size_t)x;
                        *t = iq_add(*t, g);
                    }
                }
            }
        }
    return rctc_iq_requantize(planes * hw, work, de - RECIP_FRAC, bits, rand, dx, e_out);
}
