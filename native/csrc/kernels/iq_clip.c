/*
 * iq_clip.c - Clip / ReLU6 and the backward mask (intref.pointwise.clip_bounds, clip,
 * clip_backward): exact.
 *
 * Needs: rctc_intops.h; each bound as the exact ratio num / 2^log2den of its float32 attribute
 * (intref.core.exact_ratio, compile time). Leaves: bounds on the input's grid inward,
 * lo_q = ceil(lo / 2^e), hi_q = floor(hi / 2^e); a bound past +-2^62 is saturated there (no
 * stored integer reaches it, so the result is intref's).
 */
#include "iq.h"

#define SAT ((int64_t)1 << 62)

static int64_t on_grid(int64_t num, int log2den, int e, int up) {
    const int t = log2den + e; /* bound = num * 2^-t */
    if (t <= 0) {
        if (num == 0) return 0;
        if (-t >= 62 || iq_abs(num) > ((uint64_t)SAT >> -t)) return num > 0 ? SAT : -SAT;
        return iq_shl(num, -t);
    }
    if (up) { /* ceil(num / 2^t) = -floor(-num / 2^t) */
        if (t > 62) return num > 0 ? 1 : 0;
        return -iq_sar(-num, t);
    }
    if (t > 62) return num < 0 ? -1 : 0;
    return iq_sar(num, t);
}

void rctc_iq_clip_bounds(int e, int has_lo, int64_t lo_num, int lo_log2den, int has_hi, int64_t hi_num,
                         int hi_log2den, int64_t *lq, int64_t *hq) {
    *lq = has_lo ? on_grid(lo_num, lo_log2den, e, 1) : INT64_MIN;
    *hq = has_hi ? on_grid(hi_num, hi_log2den, e, 0) : INT64_MAX;
}

/* a bound clamped into [-256, 256]: compared with int8 values it decides the same */
static int16_t near8(int64_t b) { return (int16_t)(b < -256 ? -256 : b > 256 ? 256 : b); }

void rctc_iq_clip(size_t n, const void *q, int w, int e, int has_lo, int64_t lo_num, int lo_log2den,
                  int has_hi, int64_t hi_num, int hi_log2den, void *out) {
    int64_t lq, hq;
    rctc_iq_clip_bounds(e, has_lo, lo_num, lo_log2den, has_hi, hi_num, hi_log2den, &lq, &hq);
    /* int8 with both bounds reaching the int8 range: every result is in [-128, 127], so the same
     * max-then-min in int16 lanes (vectorised); a bound past the range wraps as intref's astype */
    if (w == 1 && lq <= 127 && hq >= -128) {
        const int16_t lo = near8(lq), hi = near8(hq);
        const int8_t *x = (const int8_t *)q;
        int8_t *y = (int8_t *)out;
        for (size_t i = 0; i < n; ++i) {
            int16_t v = x[i];
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            y[i] = (int8_t)v;
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        int64_t v = iq_ld(q, w, i);
        v = v < lq ? lq : v; /* max first, then min: numpy's order when lo > hi */
        v = v > hq ? hq : v;
        iq_st(out, w, i, v);
    }
}

void rctc_iq_clip_backward(size_t n, const void *q, int qw, int e, int has_lo, int64_t lo_num, int lo_log2den,
                           int has_hi, int64_t hi_num, int hi_log2den, const void *dq, int dw, void *dx) {
    int64_t lq, hq;
    rctc_iq_clip_bounds(e, has_lo, lo_num, lo_log2den, has_hi, hi_num, hi_log2den, &lq, &hq);
    if (qw == 1 && dw == 1) { /* int8: the mask from int16 compares, dy kept by an and (vectorised) */
        const int16_t lo = near8(lq), hi = near8(hq);
        const int8_t *x = (const int8_t *)q, *d = (const int8_t *)dq;
        int8_t *y = (int8_t *)dx;
        for (size_t i = 0; i < n; ++i) {
            const int16_t v = x[i];
            y[i] = (int8_t)(d[i] & -(int8_t)((v >= lo) & (v <= hi)));
        }
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_ld(q, qw, i);
        iq_st(dx, dw, i, (v >= lq && v <= hq) ? iq_ld(dq, dw, i) : 0);
    }
}
