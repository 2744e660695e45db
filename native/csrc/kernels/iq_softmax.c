/*
 * iq_softmax.c - Softmax and its backward (intref.expo.softmax, softmax_backward).
 *
 * Needs: rctc_intops.h; the softmax axis is the middle axis of C-contiguous (outer, len, inner).
 * Leaves: E = iexp(to_fixed(x - max)), S = sum E (>= 2^16), R = round(2^46 / S), y = E R at
 * 2^-46 rounded once; backward y (dy - sum(dy y)) with dy and the sums aligned exactly by
 * intref.core.align, one rounding. int8 inputs look E up in a 256-entry table of the same values.
 */
#include "iq.h"

#define FRAC 16

/* int8 rows: x - max takes one of 256 values, so E of each is looked up in a table built once a
 * call (the same integers as the formula); below this many elements the formula runs instead */
#define RCTC_SOFTMAX_TABLE_MIN 1024u

static int softmax_parts_s8(size_t outer, size_t len, size_t inner, const int8_t *q, int e, int64_t *ex,
                            int64_t *er) {
    int64_t tab[256]; /* tab[k] = iexp(to_fixed(-k)) */
    for (int k = 0; k < 256; ++k) {
        tab[k] = rctc_iq_to_fixed1(-k, e, FRAC); /* <= 0: iexp's domain */
        (void)rctc_iq_iexp(1, tab + k, tab + k);
    }
    for (size_t o = 0; o < outer; ++o)
        for (size_t i = 0; i < inner; ++i) {
            const size_t base = o * len * inner + i;
            int mx = INT8_MIN;
            for (size_t k = 0; k < len; ++k) mx = q[base + k * inner] > mx ? q[base + k * inner] : mx;
            int64_t s = 0;
            for (size_t k = 0; k < len; ++k) {
                const size_t at = base + k * inner;
                ex[at] = tab[mx - q[at]];
                s += ex[at];
            }
            const int64_t r = (((int64_t)1 << 46) + (s >> 1)) / s;
            for (size_t k = 0; k < len; ++k) er[base + k * inner] = ex[base + k * inner] * r;
        }
    return RCTC_IQ_OK;
}

int rctc_iq_softmax_parts(size_t outer, size_t len, size_t inner, const void *q, int w, int e, int64_t *ex,
                          int64_t *er) {
    if (w == 1 && outer * len * inner >= RCTC_SOFTMAX_TABLE_MIN)
        return softmax_parts_s8(outer, len, inner, (const int8_t *)q, e, ex, er);
    for (size_t o = 0; o < outer; ++o)
        for (size_t i = 0; i < inner; ++i) {
            const size_t base = o * len * inner + i;
            int64_t mx = INT64_MIN, s = 0;
            for (size_t k = 0; k < len; ++k) mx = iq_max(mx, iq_ld(q, w, base + k * inner));
            if (inner == 1) { /* a contiguous row: one iexp call for it (the same values) */
                for (size_t k = 0; k < len; ++k) ex[base + k] = rctc_iq_to_fixed1(iq_ld(q, w, base + k) - mx, e, FRAC);
                if (rctc_iq_iexp(len, ex + base, ex + base)) return RCTC_IQ_EDOMAIN;
                for (size_t k = 0; k < len; ++k) s += ex[base + k];
            } else {
                for (size_t k = 0; k < len; ++k) {
                    const size_t at = base + k * inner;
                    ex[at] = rctc_iq_to_fixed1(iq_ld(q, w, at) - mx, e, FRAC);
                    if (ex[at] > 0) return RCTC_IQ_EDOMAIN;
                    (void)rctc_iq_iexp(1, ex + at, ex + at);
                    s += ex[at];
                }
            }
            const int64_t r = (((int64_t)1 << 46) + (s >> 1)) / s;
            for (size_t k = 0; k < len; ++k) er[base + k * inner] = ex[base + k * inner] * r;
        }
    return RCTC_IQ_OK;
}

int rctc_iq_softmax(size_t outer, size_t len, size_t inner, const void *q, int w, int e, int bits, int64_t *work,
                    void *out, int *e_out) {
    const size_t n = outer * len * inner;
    const int rc = rctc_iq_softmax_parts(outer, len, inner, q, w, e, work + n, work);
    return rc ? rc : rctc_iq_requantize(n, work, -46, bits, NULL, out, e_out);
}

/* the backward's row sums sum(dy y) and max |dy| for int8 y and dy in contiguous rows (inner 1) */
static void softmax_backward_sums_s8(size_t rows, size_t len, const int8_t *y, const int8_t *d, int64_t *sums,
                                     uint64_t *m) {
    int dmax = 0;
    uint64_t smax = 0;
    for (size_t r = 0; r < rows; ++r) {
        int64_t s = 0;
        for (size_t k = 0; k < len; ++k) {
            const int v = d[r * len + k], a = v < 0 ? -v : v;
            s += (int32_t)v * y[r * len + k];
            dmax = a > dmax ? a : dmax;
        }
        sums[r] = s;
        smax = iq_abs(s) > smax ? iq_abs(s) : smax;
    }
    m[0] = (uint64_t)dmax;
    m[1] = smax;
}

int rctc_iq_softmax_backward(size_t outer, size_t len, size_t inner, const void *qy, int yw, int ey, const void *dq,
                             int dw, int de, int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const size_t n = outer * len * inner;
    int64_t *sums = work + n; /* outer * inner */
    uint64_t m[2] = {0, 0};
    const int s8 = yw == 1 && dw == 1 && inner == 1;
    if (s8) softmax_backward_sums_s8(outer, len, (const int8_t *)qy, (const int8_t *)dq, sums, m);
    for (size_t o = 0; o < outer && !s8; ++o)
        for (size_t i = 0; i < inner; ++i) {
            int64_t s = 0;
            for (size_t k = 0; k < len; ++k) {
                const size_t at = (o * len + k) * inner + i;
                const int64_t d = iq_ld(dq, dw, at);
                s = iq_add(s, iq_mul(d, iq_ld(qy, yw, at)));
                m[0] = iq_abs(d) > m[0] ? iq_abs(d) : m[0];
            }
            sums[o * inner + i] = s;
            m[1] = iq_abs(s) > m[1] ? iq_abs(s) : m[1];
        }
    const int exps[2] = {de, de + ey};
    const int ec = rctc_iq_align_exp(2, m, exps, 61);
    const int k0 = de - ec, k1 = de + ey - ec;
    for (int t = 0; t < 2; ++t) {
        const int k = t ? k1 : k0;
        if (k > 0 && m[t] > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
        if (k < 0 && m[t] > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    }
    if (s8 && k0 >= 0 && k0 <= 40) { /* int8 y and dy << k0: y (dy << k0 - s) in int64, rows contiguous */
        const int8_t *y = (const int8_t *)qy, *d = (const int8_t *)dq;
        for (size_t r = 0; r < outer; ++r) {
            int64_t s = sums[r];
            s = k1 >= 0 ? (k1 > 63 ? 0 : iq_shl(s, k1)) : (-k1 > 62 ? 0 : iq_sar(s + ((int64_t)1 << (-k1 - 1)), -k1));
            for (size_t k = 0; k < len; ++k) {
                const size_t at = r * len + k;
                work[at] = iq_mul(y[at], iq_sub(iq_shl(d[at], k0), s));
            }
        }
        return rctc_iq_requantize(n, work, ec + ey, bits, rand, dx, e_out);
    }
    for (size_t o = 0; o < outer; ++o)
        for (size_t i = 0; i < inner; ++i) {
            int64_t s = sums[o * inner + i];
            s = k1 >= 0 ? (k1 > 63 ? 0 : iq_shl(s, k1)) : (-k1 > 62 ? 0 : iq_sar(s + ((int64_t)1 << (-k1 - 1)), -k1));
            for (size_t k = 0; k < len; ++k) {
                const size_t at = (o * len + k) * inner + i;
                int64_t d = iq_ld(dq, dw, at);
                d = k0 >= 0 ? (k0 > 63 ? 0 : iq_shl(d, k0)) : (-k0 > 62 ? 0 : iq_sar(d + ((int64_t)1 << (-k0 - 1)), -k0));
                work[at] = iq_mul(iq_ld(qy, yw, at), iq_sub(d, s));
            }
        }
    return rctc_iq_requantize(n, work, ec + ey, bits, rand, dx, e_out);
}
