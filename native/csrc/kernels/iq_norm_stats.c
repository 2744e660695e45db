/*
 * iq_norm_stats.c - the shared parts of the normalisations (intref.norm._eps_term, _headroom,
 * _groups_stats, _multipliers, _dx, _update).
 *
 * Needs: rctc_intops.h, iq_i128.c (the per-group scalars N^2 eps 2^-2e, gamma N m and
 * D 2^16 / N^2 exceed 64 bits for large groups). Leaves: per group of N integers: S1, D = N S2 -
 * S1^2, the headroom P, (m, f) = rsqrt_fixed(D 4^P + eps term) with f -= P, and xhat =
 * round((N q - S1) m 2^-(f-16)); the dx accumulator with both means rounded (half up) to Q16.
 */
#include "iq.h"
#include "iq_norm.h"

/* _rshift(en * n * n, s) capped at 2^62 (en * n * n as i128) */
int64_t iq_norm_eps_term(int64_t eps_num, int eps_log2, int64_t n, int e) {
    const rctc_i128 v = rctc_i128_mul_u64(rctc_i128_mul64(eps_num, n), (uint64_t)n);
    const int s = eps_log2 + 2 * e;
    const rctc_i128 cap = rctc_i128_from_i64((int64_t)1 << 62);
    rctc_i128 r;
    if (s <= 0) {
        if (rctc_i128_bitlen(v) + (-s) > 100) return (int64_t)1 << 62; /* v > 0: far past the cap */
        r = rctc_i128_shl(v, -s);
    } else {
        r = rctc_i128_rshift_round(v, s > 127 ? 127 : s);
    }
    return rctc_i128_cmp(r, cap) > 0 ? (int64_t)1 << 62 : (int64_t)r.lo;
}

int iq_norm_headroom(int bl_d, int bl_eps) {
    const int num = 61 - (bl_d > bl_eps ? bl_d : bl_eps);
    return num > 0 ? num / 2 : 0;
}

/* (m, f) of one group from its sums (N, S1 = a1, S2 = a2): d = N S2 - S1^2, the headroom P,
 * rsqrt_fixed(D 4^P + eps term) with f -= P; f - 16 checked to lie in 1 .. 62 */
static int group_scalars(int N, int64_t a1, int64_t a2, int e, int64_t eps_num, int eps_log2,
                         const iq_norm_eps_table *tab, int64_t *d, int64_t *m, int64_t *f) {
    const int64_t dd = (int64_t)N * a2 - a1 * a1;
    const int64_t eps0 = tab ? tab->at[0] : iq_norm_eps_term(eps_num, eps_log2, N, e);
    const int p = iq_norm_headroom(iq_bitlen(iq_abs(dd)), iq_bitlen((uint64_t)eps0));
    const int64_t eps_p = tab ? tab->at[p] : iq_norm_eps_term(eps_num, eps_log2, N, e - p);
    rctc_i128 v = rctc_i128_add(rctc_i128_shl(rctc_i128_from_i64(dd), 2 * p), rctc_i128_from_i64(eps_p));
    if (rctc_i128_cmp(v, rctc_i128_from_i64(1)) < 0) v = rctc_i128_from_i64(1);
    uint64_t mm;
    int ff;
    const int rc = rctc_iq_rsqrt_fixed(v, &mm, &ff);
    if (rc) return rc;
    ff -= p;
    const int s = ff - 16;
    if (s < 1) return RCTC_IQ_EDOMAIN;
    if (s > 62) return RCTC_IQ_EOVERFLOW;
    *d = dd;
    *m = (int64_t)mm;
    *f = ff;
    return RCTC_IQ_OK;
}

int iq_norm_group_sums(int N, int64_t a1, int64_t a2, int e, int64_t eps_num, int eps_log2, int64_t *s1, int64_t *d,
                       int64_t *m, int64_t *f) {
    *s1 = a1;
    return group_scalars(N, a1, a2, e, eps_num, eps_log2, NULL, d, m, f);
}

void iq_norm_eps_table_init(iq_norm_eps_table *t, int64_t eps_num, int eps_log2, int N, int e) {
    for (int p = 0; p <= IQ_NORM_MAX_HEADROOM; ++p) t->at[p] = iq_norm_eps_term(eps_num, eps_log2, N, e - p);
}

int iq_norm_group_sums_tab(int N, int64_t a1, int64_t a2, const iq_norm_eps_table *t, int64_t *d, int64_t *m,
                           int64_t *f) {
    return group_scalars(N, a1, a2, 0, 0, 0, t, d, m, f);
}

int iq_norm_stats(int G, int N, const int64_t *x, int e, int64_t eps_num, int eps_log2, int64_t *xhat, int64_t *s1,
                  int64_t *d, int64_t *m, int64_t *f) {
    const size_t nn = (size_t)N;
    const uint64_t mx = rctc_iq_absmax((size_t)G * nn, x);
    if ((uint64_t)N * mx >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    for (int c = 0; c < G; ++c) {
        const int64_t *row = x + (size_t)c * nn;
        int64_t a1 = 0, a2 = 0;
        for (size_t i = 0; i < nn; ++i) {
            a1 += row[i];
            a2 += row[i] * row[i];
        }
        const int rc = group_scalars(N, a1, a2, e, eps_num, eps_log2, NULL, &d[c], &m[c], &f[c]);
        if (rc) return rc;
        for (size_t i = 0; i < nn; ++i) xhat[(size_t)c * nn + i] = iq_norm_xhat(N, row[i], a1, m[c], (int)f[c] - 16);
        s1[c] = a1;
    }
    return RCTC_IQ_OK;
}

/* sum, sum of squares, min and max of the run p[off .. off + n) (w bytes an element; the width
 * switch outside the loop) */
#define RUN_STATS(T)                                                                                          \
    for (size_t i = 0; i < n; ++i) {                                                                          \
        const int64_t v = ((const T *)p)[off + i];                                                            \
        s += v;                                                                                               \
        s2 += v * v;                                                                                          \
        lo = v < lo ? v : lo;                                                                                 \
        hi = v > hi ? v : hi;                                                                                 \
    }

/* int8: blocks of 256 summed in int32 (256 * 127^2 < 2^31), min / max in int8: vectorisable */
static void run_stats_s8(const int8_t *p, size_t n, int64_t *acc) {
    int8_t lo = acc[2] < INT8_MIN ? INT8_MIN : (int8_t)iq_min(acc[2], INT8_MAX);
    int8_t hi = acc[3] > INT8_MAX ? INT8_MAX : (int8_t)iq_max(acc[3], INT8_MIN);
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const size_t m = n - i0 < 256 ? n - i0 : 256;
        int32_t s = 0, s2 = 0;
        for (size_t i = 0; i < m; ++i) {
            const int8_t v = p[i0 + i];
            s += v;
            s2 += (int32_t)v * v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        acc[0] += s;
        acc[1] += s2;
    }
    acc[2] = iq_min(acc[2], lo);
    acc[3] = iq_max(acc[3], hi);
}

static void run_stats(const void *p, int w, size_t off, size_t n, int64_t *acc) {
    int64_t s = 0, s2 = 0, lo = acc[2], hi = acc[3];
    switch (w) {
    case 1: run_stats_s8((const int8_t *)p + off, n, acc); return;
    case 2: RUN_STATS(int16_t) break;
    case 4: RUN_STATS(int32_t) break;
    default: RUN_STATS(int64_t) break;
    }
    acc[0] += s;
    acc[1] += s2;
    acc[2] = lo;
    acc[3] = hi;
}

int iq_norm_stats_bgs(int B, int G, int S, const void *q, int w, int e, int64_t eps_num, int eps_log2, int64_t *s1,
                      int64_t *d, int64_t *m, int64_t *f, int64_t *lo, int64_t *hi) {
    const size_t T = (size_t)B * (size_t)G * (size_t)S, SS = (size_t)S;
    const int N = B * S;
    uint64_t mx = 0;
    if (w == 1) { /* min / max in int8 (vectorisable), then the larger magnitude */
        int8_t vlo = 0, vhi = 0;
        for (size_t i = 0; i < T; ++i) {
            const int8_t v = ((const int8_t *)q)[i];
            vlo = v < vlo ? v : vlo;
            vhi = v > vhi ? v : vhi;
        }
        mx = iq_abs(vlo) > iq_abs(vhi) ? iq_abs(vlo) : iq_abs(vhi);
    } else {
        switch (w) {
        case 2: for (size_t i = 0; i < T; ++i) { const uint64_t a = iq_abs(((const int16_t *)q)[i]); mx = a > mx ? a : mx; } break;
        case 4: for (size_t i = 0; i < T; ++i) { const uint64_t a = iq_abs(((const int32_t *)q)[i]); mx = a > mx ? a : mx; } break;
        default: for (size_t i = 0; i < T; ++i) { const uint64_t a = iq_abs(((const int64_t *)q)[i]); mx = a > mx ? a : mx; } break;
        }
    }
    if ((uint64_t)N * mx >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    for (int c = 0; c < G; ++c) {
        int64_t acc[4] = {0, 0, INT64_MAX, INT64_MIN};
        for (int b = 0; b < B; ++b) run_stats(q, w, ((size_t)b * (size_t)G + (size_t)c) * SS, SS, acc);
        const int rc = group_scalars(N, acc[0], acc[1], e, eps_num, eps_log2, NULL, &d[c], &m[c], &f[c]);
        if (rc) return rc;
        s1[c] = acc[0];
        if (lo) lo[c] = acc[2];
        if (hi) hi[c] = acc[3];
    }
    return RCTC_IQ_OK;
}

/* v_c = mult_a[c] * mult_b[c] * mult_c[c] (exact, i128) */
static rctc_i128 mult_of(const int64_t *ga, int64_t n, const int64_t *mb, int c) {
    return rctc_i128_mul_u64(rctc_i128_mul64(ga[c], n), (uint64_t)mb[c]);
}

int iq_norm_multipliers(int G, const int64_t *ga, int64_t n, const int64_t *mb, const int64_t *f, int mbits,
                        int64_t *out, int *g_out) {
    int g = INT32_MIN;
    for (int c = 0; c < G; ++c) {
        const int t = rctc_i128_bitlen(mult_of(ga, n, mb, c)) - (int)f[c];
        g = t > g ? t : g;
    }
    g -= mbits;
    for (int c = 0; c < G; ++c) {
        const rctc_i128 r = rctc_i128_rshift_round(mult_of(ga, n, mb, c), (int)f[c] + g);
        if (rctc_i128_bitlen(r) > 63) return RCTC_IQ_EOVERFLOW;
        out[c] = (int64_t)r.lo;
    }
    *g_out = g;
    return RCTC_IQ_OK;
}

/* round(v / n) half up for v = t << sh (i128); *ok = 0 past 63 bits */
int64_t iq_norm_div_round(int64_t t, int sh, int64_t n, int *ok) {
    const rctc_i128 v = rctc_i128_shl(rctc_i128_from_i64(t), sh);
    const rctc_i128 r = rctc_i128_divfloor(rctc_i128_add(rctc_i128_shl(v, 1), rctc_i128_from_i64(n)), 2 * (uint64_t)n);
    if (rctc_i128_bitlen(r) > 63) *ok = 0;
    return (int64_t)r.lo;
}

int iq_norm_dx(int G, int N, const int64_t *dy, const int64_t *xhat, const int64_t *gm, const int64_t *m,
               const int64_t *f, int64_t *acc, int64_t *mult, int *off) {
    const size_t nn = (size_t)N;
    int ok = 1;
    for (int c = 0; c < G; ++c) {
        const int64_t *d = dy + (size_t)c * nn, *xh = xhat + (size_t)c * nn;
        int64_t t1 = 0, t2 = 0;
        for (size_t i = 0; i < nn; ++i) {
            t1 = iq_add(t1, d[i]);
            t2 = iq_add(t2, iq_mul(d[i], xh[i]));
        }
        const int64_t m1 = iq_norm_div_round(t1, 16, N, &ok), m2 = iq_norm_div_round(t2, 0, N, &ok);
        for (size_t i = 0; i < nn; ++i) {
            const int64_t term = iq_sar(iq_add(iq_mul(xh[i], m2), (int64_t)1 << 15), 16);
            acc[(size_t)c * nn + i] = iq_sub(iq_sub(iq_shl(d[i], 16), m1), term);
        }
    }
    if (!ok) return RCTC_IQ_EOVERFLOW;
    const int bl = iq_bitlen(rctc_iq_absmax((size_t)G * nn, acc));
    const int mbits = 61 - bl < 31 ? 61 - bl : 31;
    int g;
    const int rc = iq_norm_multipliers(G, gm, N, m, f, mbits, mult, &g);
    if (rc) return rc;
    for (int c = 0; c < G; ++c)
        for (size_t i = 0; i < nn; ++i) acc[(size_t)c * nn + i] = iq_mul(acc[(size_t)c * nn + i], mult[c]);
    *off = g - 16;
    return RCTC_IQ_OK;
}

int iq_norm_update(int C, const int16_t *old, int e_old, const int64_t *nw, int e_new, int64_t mu, int16_t *out,
                   int *e_out, int64_t *work) {
    uint64_t mx[2] = {0, 0};
    for (int c = 0; c < C; ++c) {
        mx[0] = iq_abs(old[c]) > mx[0] ? iq_abs(old[c]) : mx[0];
        mx[1] = iq_abs(nw[c]) > mx[1] ? iq_abs(nw[c]) : mx[1];
    }
    const int exps[2] = {e_old, e_new};
    const int ec = rctc_iq_align_exp(2, mx, exps, 44);
    int64_t *o = work, *b = work + C;
    int rc = rctc_iq_shift((size_t)C, old, 2, e_old - ec, NULL, o);
    if (!rc) rc = rctc_iq_shift((size_t)C, nw, 8, e_new - ec, NULL, b);
    if (rc) return rc;
    for (int c = 0; c < C; ++c) o[c] = iq_add(iq_mul(o[c], mu), iq_mul(b[c], ((int64_t)1 << 16) - mu));
    return rctc_iq_requantize((size_t)C, o, ec - 16, 16, NULL, out, e_out);
}

int iq_norm_shifted_bias(int C, const void *beta, int bw, int k, int64_t *out) {
    uint64_t m = 0;
    for (int c = 0; c < C; ++c) {
        const uint64_t a = iq_abs(iq_ld(beta, bw, (size_t)c));
        m = a > m ? a : m;
    }
    if (k > 0 && m > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
    if (k < 0 && m > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    for (int c = 0; c < C; ++c) {
        const int64_t v = iq_ld(beta, bw, (size_t)c);
        if (k >= 0)
            out[c] = k > 63 ? 0 : iq_shl(v, k);
        else
            out[c] = -k > 62 ? 0 : iq_sar(v + ((int64_t)1 << (-k - 1)), -k);
    }
    return RCTC_IQ_OK;
}

int iq_norm_running_update(int C, int64_t N, const int64_t *s1, const int64_t *d, int e, int64_t mu,
                           const int16_t *rmean, int rme, const int16_t *rvar, int rve, int16_t *rmean_out,
                           int *rme_out, int16_t *rvar_out, int *rve_out, int64_t *bm, int64_t *bv, int64_t *work) {
    for (int c = 0; c < C; ++c) {
        const rctc_i128 v = rctc_i128_shl(rctc_i128_from_i64(s1[c]), 16);
        bm[c] = (int64_t)rctc_i128_divfloor(rctc_i128_add(rctc_i128_shl(v, 1), rctc_i128_from_i64(N)), 2 * (uint64_t)N).lo;
        const rctc_i128 dv = rctc_i128_shl(rctc_i128_from_i64(d[c]), 16);
        const rctc_i128 n2 = rctc_i128_mul64(N, N);
        bv[c] = (int64_t)rctc_i128_divfloor(rctc_i128_add(rctc_i128_shl(dv, 1), n2), 2 * n2.lo).lo;
    }
    const int rc = iq_norm_update(C, rmean, rme, bm, e - 16, mu, rmean_out, rme_out, work);
    if (rc) return rc;
    return iq_norm_update(C, rvar, rve, bv, 2 * e - 16, mu, rvar_out, rve_out, work);
}
