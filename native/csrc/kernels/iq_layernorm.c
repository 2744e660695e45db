/*
 * iq_layernorm.c - LayerNormalization (intref.norm.layernorm).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c; the normalised axes flattened into rows (G, N).
 * Leaves: per row xhat in Q16, y = requantize(gamma xhat at e_gamma - 16, bias beta), gamma and
 * beta broadcast along the row. One pass over the rows: each row's sums, scalars, xhat and
 * gamma xhat + beta (the products wrap as intref's int64 arithmetic does) with their max, then
 * one rounding; the error codes in intref's order (the rows', the bias', the accumulator's).
 * rctc_iq_layernorm_mt splits the rows into one contiguous part a thread (each row's values do
 * not depend on the split, the max and the first error are taken over the parts in order): the
 * same bits at any thread count.
 */
#include "internal.h"
#include "iq.h"
#include "iq_norm.h"
#include "rctc_kernels.h"

/* v = gamma xhat + b along one row, returning max |v| (x of type T, gamma of type TG) */
#define ROW_AFFINE(T, TG)                                                                                     \
    {                                                                                                         \
        const T *p = (const T *)row;                                                                          \
        const TG *g = (const TG *)gamma;                                                                      \
        for (size_t i = 0; i < n; ++i) {                                                                      \
            const int64_t xh = iq_norm_xhat(N, p[i], a1, mm, s);                                              \
            v[i] = iq_add(iq_mul(xh, g[i]), b[i]);                                                            \
            const uint64_t a = iq_abs(v[i]);                                                                  \
            mx = a > mx ? a : mx;                                                                             \
        }                                                                                                     \
    }                                                                                                         \
    break;
#define ROW_AFFINE_G(T)                                                                                       \
    switch (gw) {                                                                                             \
    case 1: ROW_AFFINE(T, int8_t)                                                                             \
    case 2: ROW_AFFINE(T, int16_t)                                                                            \
    case 4: ROW_AFFINE(T, int32_t)                                                                            \
    default: ROW_AFFINE(T, int64_t)                                                                           \
    }                                                                                                         \
    break;

static uint64_t row_affine(const void *row, int w, size_t n, int64_t N, int64_t a1, int64_t mm, int s,
                           const void *gamma, int gw, const int64_t *b, int64_t *v) {
    uint64_t mx = 0;
    switch (w) {
    case 1: ROW_AFFINE_G(int8_t)
    case 2: ROW_AFFINE_G(int16_t)
    case 4: ROW_AFFINE_G(int32_t)
    default: ROW_AFFINE_G(int64_t)
    }
    return mx;
}

typedef struct {
    int G, N, w, gw, parts, rc[RCTC_MAX_THREADS];
    const iq_norm_loops_t *L;
    const void *q, *gamma;
    const int64_t *b;
    int64_t *v;
    uint64_t mx[RCTC_MAX_THREADS];
    iq_norm_eps_table eps;
} ln_task;

/* parts p0 .. p1 - 1: each part's rows in order, its first error (intref's order within the part)
 * and its max |gamma xhat + beta| */
static void ln_parts(void *ctx, int p0, int p1) {
    ln_task *t = (ln_task *)ctx;
    const size_t nn = (size_t)t->N;
    for (int p = p0; p < p1; ++p) {
        uint64_t mx = 0;
        int rc = RCTC_IQ_OK;
        const size_t r1 = iq_norm_part_at((size_t)t->G, t->parts, p + 1);
        for (size_t r = iq_norm_part_at((size_t)t->G, t->parts, p); r < r1 && !rc; ++r) {
            const void *row = (const char *)t->q + r * nn * (size_t)t->w;
            int64_t a1 = 0, a2 = 0, lo = INT64_MAX, hi = INT64_MIN, d, mm, f;
            t->L->sums_run(nn, t->q, t->w, r * nn, &a1, &a2, &lo, &hi);
            rc = iq_norm_group_sums_tab(t->N, a1, a2, &t->eps, &d, &mm, &f);
            if (rc || !t->b) continue; /* no b: the bias refused, only the rows' own errors are wanted */
            const uint64_t m = row_affine(row, t->w, nn, t->N, a1, mm, (int)f - 16, t->gamma, t->gw, t->b, t->v + r * nn);
            mx = m > mx ? m : mx;
        }
        t->rc[p] = rc;
        t->mx[p] = mx;
    }
}

int rctc_iq_layernorm_mt(int nthreads, int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                         const void *beta, int bw, int be, int64_t eps_num, int eps_log2, int bits, int64_t *work,
                         void *out, int *e_out) {
    const size_t T = (size_t)G * (size_t)N;
    int64_t *v = work, *b = work + T;
    if (G < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * rctc_iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    const int e_acc = ge - 16, rc_bias = iq_norm_shifted_bias(N, beta, bw, be - e_acc, b);
    ln_task t;
    t.parts = iq_norm_row_parts(nthreads, G, T);
    t.L = iq_norm_loops();
    t.G = G;
    t.N = N;
    t.w = w;
    t.gw = gw;
    iq_norm_eps_table_init(&t.eps, eps_num, eps_log2, N, e);
    t.q = q;
    t.gamma = gamma;
    t.b = rc_bias ? NULL : b;
    t.v = v;
    rctc_parallel_for(t.parts, 1, t.parts, ln_parts, &t);
    uint64_t mx = 0;
    for (int p = 0; p < t.parts; ++p) {
        if (t.rc[p]) return t.rc[p]; /* the first failing row's error, as one pass in row order */
        mx = t.mx[p] > mx ? t.mx[p] : mx;
    }
    if (rc_bias) return rc_bias;
    const int s = rctc_iq_requant_shift(mx, bits, 0);
    if (s > 0 && mx > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    rctc_iq_round_store(T, v, s, NULL, out, rctc_iq_width(bits));
    *e_out = e_acc + s;
    return RCTC_IQ_OK;
}

int rctc_iq_layernorm(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge, const void *beta,
                      int bw, int be, int64_t eps_num, int eps_log2, int bits, int64_t *work, void *out,
                      int *e_out) {
    return rctc_iq_layernorm_mt(1, G, N, q, w, e, gamma, gw, ge, beta, bw, be, eps_num, eps_log2, bits, work, out,
                                e_out);
}
