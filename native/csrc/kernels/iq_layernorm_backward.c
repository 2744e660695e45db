/*
 * iq_layernorm_backward.c - LayerNormalization's backward (intref.norm.layernorm_backward).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c; rows (G, N). Leaves: g = dy gamma rounded (nearest)
 * to 16 bits first, then BatchNorm's dx construction with g for dy and gamma = 1, one rounding
 * to bits (stochastic with rand); dgamma = sum over rows of dy xhat (at de - 16), dbeta = sum of
 * dy (at de), both exact int64 of length N. Passes over the rows: (1) sums, scalars, xhat and
 * max |dy gamma|, then dgamma / dbeta column by column; (2) g at 16 bits, its row means and the
 * dx accumulator with its max; (3) the per-row multipliers and their max, then one rounding. The
 * products and sums wrap as intref's int64 arithmetic does (so dgamma / dbeta do not depend on
 * the order they are summed in); the error codes come in intref's order. The _mt entry splits
 * each pass into one contiguous part of rows (or columns) a thread: the same bits at any count.
 */
#include "internal.h"
#include "iq.h"
#include "iq_norm.h"
#include "rctc_kernels.h"

typedef struct {
    int G, N, w, parts, cparts, ok[RCTC_MAX_THREADS], rc[RCTC_MAX_THREADS];
    int s16;
    const iq_norm_loops_t *L;
    const void *q, *dq;
    const uint32_t *rand;
    void *dx;
    int dw, rs, rw;
    int64_t *dy;
    const int64_t *gam, *mult;
    int64_t *x, *xhat, *g, *acc, *m, *f, *dgamma, *dbeta;
    int16_t *g16;
    uint64_t mx[RCTC_MAX_THREADS];
    iq_norm_eps_table eps;
} lnb_task;

/* pass 1 on one row: x widened, the scalars, xhat, max |dy gamma| into *mg; or an error code */
static int row_pass1(const lnb_task *t, size_t r, uint64_t *mg) {
    const size_t n = (size_t)t->N, i0 = r * n;
    int64_t *x = t->x + i0, *xh = t->xhat + i0;
    const int64_t *dy = t->dy + i0;
    int64_t a1 = 0, a2 = 0, lo = INT64_MAX, hi = INT64_MIN, d;
    t->L->sums_run(n, t->q, t->w, i0, &a1, &a2, &lo, &hi);
    t->L->load(n, t->q, t->w, i0, x);
    t->L->load(n, t->dq, t->dw, i0, t->dy + i0);
    const int rc = iq_norm_group_sums_tab(t->N, a1, a2, &t->eps, &d, &t->m[r], &t->f[r]);
    if (rc) return rc;
    const int s = (int)t->f[r] - 16;
    const int64_t mm = t->m[r];
    uint64_t mx = *mg;
    for (size_t j = 0; j < n; ++j) {
        xh[j] = iq_norm_xhat(t->N, x[j], a1, mm, s);
        const uint64_t a = iq_abs(iq_mul(dy[j], t->gam[j]));
        mx = a > mx ? a : mx;
    }
    *mg = mx;
    return RCTC_IQ_OK;
}

static void pass1(void *ctx, int p0, int p1) {
    lnb_task *t = (lnb_task *)ctx;
    for (int p = p0; p < p1; ++p) {
        uint64_t mg = 0;
        int rc = RCTC_IQ_OK;
        for (size_t r = iq_norm_part_at((size_t)t->G, t->parts, p); r < iq_norm_part_at((size_t)t->G, t->parts, p + 1) && !rc; ++r)
            rc = row_pass1(t, r, &mg);
        t->rc[p] = rc;
        t->mx[p] = mg;
    }
}

/* dgamma / dbeta over the columns of parts p0 .. p1 - 1, 64 columns at a time in local sums */
static void columns(void *ctx, int p0, int p1) {
    lnb_task *t = (lnb_task *)ctx;
    const size_t n = (size_t)t->N, j0 = iq_norm_part_at(n, t->cparts, p0), j1 = iq_norm_part_at(n, t->cparts, p1);
    for (size_t b0 = j0; b0 < j1; b0 += 64) {
        const size_t c = j1 - b0 < 64 ? j1 - b0 : 64;
        int64_t sg[64] = {0}, sb[64] = {0};
        for (size_t r = 0; r < (size_t)t->G; ++r) {
            const int64_t *dy = t->dy + r * n + b0, *xh = t->xhat + r * n + b0;
            for (size_t j = 0; j < c; ++j) {
                sg[j] = iq_add(sg[j], iq_mul(dy[j], xh[j]));
                sb[j] = iq_add(sb[j], dy[j]);
            }
        }
        for (size_t j = 0; j < c; ++j) {
            t->dgamma[b0 + j] = sg[j];
            t->dbeta[b0 + j] = sb[j];
        }
    }
}

/* pass 2: g at 16 bits, its row means, the dx accumulator and its max */
static void pass2(void *ctx, int p0, int p1) {
    lnb_task *t = (lnb_task *)ctx;
    const size_t nn = (size_t)t->N;
    for (int p = p0; p < p1; ++p) {
        uint64_t ma = 0;
        int ok = 1;
        const size_t r0 = iq_norm_part_at((size_t)t->G, t->parts, p), r1 = iq_norm_part_at((size_t)t->G, t->parts, p + 1);
        for (size_t r = r0; r < r1; ++r)
            for (size_t j = 0, i0 = r * nn; j < nn; ++j) t->g[i0 + j] = iq_mul(t->dy[i0 + j], t->gam[j]);
        rctc_iq_round_store((r1 - r0) * nn, t->g + r0 * nn, t->s16, NULL, t->g16 + r0 * nn, 2); /* the part's rows */
        for (size_t r = r0; r < r1; ++r) {
            const size_t i0 = r * nn;
            int64_t *gr = t->g + i0, *ar = t->acc + i0;
            const int64_t *xh = t->xhat + i0;
            int64_t t1 = 0, t2 = 0;
            for (size_t j = 0; j < nn; ++j) {
                gr[j] = t->g16[i0 + j];
                t1 = iq_add(t1, gr[j]);
                t2 = iq_add(t2, iq_mul(gr[j], xh[j]));
            }
            const int64_t m1 = iq_norm_div_round(t1, 16, t->N, &ok), m2 = iq_norm_div_round(t2, 0, t->N, &ok);
            for (size_t j = 0; j < nn; ++j) {
                const int64_t term = iq_sar(iq_add(iq_mul(xh[j], m2), (int64_t)1 << 15), 16);
                ar[j] = iq_sub(iq_sub(iq_shl(gr[j], 16), m1), term);
                const uint64_t a = iq_abs(ar[j]);
                ma = a > ma ? a : ma;
            }
        }
        t->ok[p] = ok;
        t->mx[p] = ma;
    }
}

/* pass 3: the accumulator times its row's multiplier, and the max */
static void pass3(void *ctx, int p0, int p1) {
    lnb_task *t = (lnb_task *)ctx;
    const size_t nn = (size_t)t->N;
    for (int p = p0; p < p1; ++p) {
        uint64_t mx = 0;
        for (size_t r = iq_norm_part_at((size_t)t->G, t->parts, p); r < iq_norm_part_at((size_t)t->G, t->parts, p + 1); ++r) {
            int64_t *ar = t->acc + r * nn;
            const int64_t k = t->mult[r];
            for (size_t j = 0; j < nn; ++j) {
                ar[j] = iq_mul(ar[j], k);
                const uint64_t a = iq_abs(ar[j]);
                mx = a > mx ? a : mx;
            }
        }
        t->mx[p] = mx;
    }
}

/* the final rounding of the part's rows (rand read at each element's own index) */
static void pass4(void *ctx, int p0, int p1) {
    lnb_task *t = (lnb_task *)ctx;
    const size_t nn = (size_t)t->N;
    for (int p = p0; p < p1; ++p) {
        const size_t i0 = iq_norm_part_at((size_t)t->G, t->parts, p) * nn, i1 = iq_norm_part_at((size_t)t->G, t->parts, p + 1) * nn;
        rctc_iq_round_store(i1 - i0, t->acc + i0, t->rs, t->rand ? t->rand + i0 : NULL,
                            (char *)t->dx + i0 * (size_t)t->rw, t->rw);
    }
}

static uint64_t max_of(const lnb_task *t) {
    uint64_t m = 0;
    for (int p = 0; p < t->parts; ++p) m = t->mx[p] > m ? t->mx[p] : m;
    return m;
}

int rctc_iq_layernorm_backward_mt(int nthreads, int G, int N, const void *q, int w, int e, const void *gamma, int gw,
                                  int ge, const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                                  const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                                  int64_t *dbeta) {
    const size_t T = (size_t)G * (size_t)N, nn = (size_t)N;
    if (G < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * rctc_iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    /* 5 T + 8 G int64: x (then g), xhat, acc, dy, m, f, ones, mult, gamma widened (N <= T), g16 (T int16) */
    int64_t *x = work, *xhat = x + T, *acc = xhat + T, *dy = acc + T, *m = dy + T, *f = m + G, *ones = f + G,
            *mult = ones + G, *gam = mult + G;
    lnb_task t;
    t.parts = iq_norm_row_parts(nthreads, G, T);
    t.L = iq_norm_loops();
    t.cparts = t.parts < N ? t.parts : N;
    t.G = G;
    t.N = N;
    t.w = w;
    iq_norm_eps_table_init(&t.eps, eps_num, eps_log2, N, e);
    t.q = q;
    t.dy = dy;
    t.dq = dq;
    t.dw = dw;
    t.rand = rand;
    t.dx = dx;
    t.rw = rctc_iq_width(bits);
    t.gam = gam;
    t.mult = mult;
    t.x = x;
    t.g = x; /* x is not read after pass 1 */
    t.xhat = xhat;
    t.acc = acc;
    t.m = m;
    t.f = f;
    t.dgamma = dgamma;
    t.dbeta = dbeta;
    t.g16 = (int16_t *)(void *)(gam + nn);
    t.L->load(nn, gamma, gw, 0, gam);
    rctc_parallel_for(t.parts, 1, t.parts, pass1, &t);
    for (int p = 0; p < t.parts; ++p)
        if (t.rc[p]) return t.rc[p]; /* the first failing row's error, as one pass in row order */
    const uint64_t mg = max_of(&t);
    rctc_parallel_for(t.cparts, 1, t.cparts, columns, &t);
    t.s16 = rctc_iq_requant_shift(mg, 16, 0);
    if (t.s16 > 0 && mg > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    const int gexp = de + ge + t.s16;
    rctc_parallel_for(t.parts, 1, t.parts, pass2, &t);
    for (int p = 0; p < t.parts; ++p)
        if (!t.ok[p]) return RCTC_IQ_EOVERFLOW;
    const int bl = iq_bitlen(max_of(&t)), mbits = 61 - bl < 31 ? 61 - bl : 31;
    for (int c = 0; c < G; ++c) ones[c] = 1;
    int goff;
    const int rc = iq_norm_multipliers(G, ones, N, m, f, mbits, mult, &goff);
    if (rc) return rc;
    rctc_parallel_for(t.parts, 1, t.parts, pass3, &t);
    const uint64_t mx = max_of(&t);
    const int s = rctc_iq_requant_shift(mx, bits, rand != NULL);
    if (s > 0 && mx > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    t.rs = s;
    rctc_parallel_for(t.parts, 1, t.parts, pass4, &t);
    *e_out = gexp - e + goff - 16 + s;
    return RCTC_IQ_OK;
}

int rctc_iq_layernorm_backward(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta) {
    return rctc_iq_layernorm_backward_mt(1, G, N, q, w, e, gamma, gw, ge, dq, dw, de, eps_num, eps_log2, bits, rand,
                                         work, dx, e_out, dgamma, dbeta);
}
