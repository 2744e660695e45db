/*
 * iq_batchnorm_mt.c - training-mode BatchNormalization with the running-statistics update
 * (intref.norm.batchnorm_train) for the host step: threads and the SIMD loops of iq_norm_loops()
 * (the streamed rctc_iq_batchnorm_train of iq_batchnorm.c is the device's; the same bits).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c, parallel.c. Leaves: per channel (a group of B S
 * integers) xhat in Q16, y = requantize(gamma xhat at e_gamma - 16, bias beta); running mean /
 * var updated by r <- (MU r + (2^16 - MU) b) / 2^16 with the batch mean round(S1 2^16 / N) at
 * e - 16 and variance round(D 2^16 / N^2) at 2e - 16 (int16 results).
 *
 * Two passes split over threads (channels, then (b, c) rows; each value is computed by one
 * thread, so the bits never depend on the thread count), over runs in blocks widened on the stack
 * (nothing per element is stored but y): per channel, the group statistics and x's extremes (one
 * read of the int8 run), then the max magnitude of gamma xhat + the shifted bias, from the two
 * extremes where no product can wrap (the map is then monotone in x), else from every element;
 * then requantize's shift from the maxima, and per row the
 * accumulator formed again and rounded (cheaper than an int64 buffer written and read back).
 * Where iq_norm_uses_tables (int8 inputs, at least 1024 values a channel, the portable and AVX2
 * loops), a pass between the two rounds y of each value the channel holds into a table
 * and pass 2 maps every element through it (y is rounded to nearest: a function of the value).
 * Error codes in intref's order: the input's range, the first failing channel, the bias's range,
 * the accumulator's.
 */
#include "internal.h"
#include "iq.h"
#include "rctc_kernels.h"
#include "iq_norm.h"

/* elements per thread below which a second thread does not pay: a 2^17 element BatchNorm takes
 * ~0.1-0.2 ms with the AVX-512 loops. Was 2^20 (a descheduled partner on a loaded machine costs
 * more than it saves); at 2^17 three interleaved runs of benchmarks/native_step_quick.py-style
 * steps on a shared 2-vCPU Xeon gave lower medians in every pair (MobileNet 62.8 / 62.1 / 59.4 ->
 * 56.0 / 49.0 / 53.4 ms, ResNet-20 124.7 / 118.9 / 120.6 -> 116.8 / 98.0 / 92.3 ms) */
#define RCTC_NORM_PER_THREAD 131072u

typedef struct {
    int B, C, S, N, w, e, eps_log2, gw, s, wt;
    const void *q, *gamma;
    int64_t eps_num;
    int64_t *s1, *d, *m, *f, *bias, *amax, *st, *lo, *hi;
    void *out;
    /* NULL, or 256 outputs (wt bytes each) a channel: tab[TIX(v)] = y of the int8 input value v, for
     * every v the channel holds (written by the tables pass) */
    unsigned char *tab;
} bn_fwd;

/* the tables' entry of an int8 value (where iq_norm_uses_tables: y is rounded to nearest, so it
 * depends on an element only through its channel and its value) */
#define TIX(v) IQ_NORM_TIX(v)

/* elements widened on the stack at a time: 4 KiB a block (this host-only kernel runs on default
 * thread stacks; the device's streamed kernel keeps its own small chunks). 512 rather than 128:
 * each SIMD loop call then spends less on its set-up and final reductions */
#define BLOCK 512

/* whether gamma xhat + bias takes no product or sum past 63 bits for any x in [lo, hi]: xhat fits
 * 32 bits for the largest |N x - s1| there (iq_norm_xhat_fits32), |g| < 2^31 keeps xhat g within
 * 2^62 and |bias| < 2^62 the sum within 2^63 */
static int affine_is_monotone(int N, int64_t s1, int64_t lo, int64_t hi, int64_t m, int sh, int64_t g, int64_t bias) {
    const uint64_t dl = iq_abs(N * lo - s1), dh = iq_abs(N * hi - s1);
    return lo <= hi && iq_norm_xhat_fits32(dl > dh ? dl : dh, m, sh) && iq_abs(g) < ((uint64_t)1 << 31) &&
           iq_abs(bias) < ((uint64_t)1 << 62);
}

static void pass1(void *ctx, int c0, int c1) {
    const bn_fwd *t = (const bn_fwd *)ctx;
    const size_t S = (size_t)t->S, C = (size_t)t->C;
    const iq_norm_loops_t *L = iq_norm_loops();
    int64_t xb[BLOCK];
    for (int c = c0; c < c1; ++c) {
        /* the channel's runs (one per image), read in place: sums and extremes */
        int64_t a1 = 0, a2 = 0, lo = INT64_MAX, hi = INT64_MIN;
        for (int b = 0; b < t->B; ++b) L->sums_run(S, t->q, t->w, ((size_t)b * C + (size_t)c) * S, &a1, &a2, &lo, &hi);
        const int rc = iq_norm_group_sums(t->N, a1, a2, t->e, t->eps_num, t->eps_log2, &t->s1[c], &t->d[c], &t->m[c],
                                          &t->f[c]);
        t->st[c] = rc;
        if (rc) continue;
        const int sh = (int)t->f[c] - 16;
        const int64_t s1 = t->s1[c], mc = t->m[c], g = iq_ld(t->gamma, t->gw, (size_t)c), bc = t->bias[c];
        uint64_t mx = 0;
        if (affine_is_monotone(t->N, s1, lo, hi, mc, sh, g, bc)) {
            /* no product wraps, so gamma xhat + bias is monotone in x: its largest magnitude is at x's min or max */
            const uint64_t ul = iq_abs(iq_add(iq_mul(iq_norm_xhat(t->N, lo, s1, mc, sh), g), bc));
            const uint64_t uh = iq_abs(iq_add(iq_mul(iq_norm_xhat(t->N, hi, s1, mc, sh), g), bc));
            mx = ul > uh ? ul : uh;
        } else {
            for (int b = 0; b < t->B; ++b)
                for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
                    const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = ((size_t)b * C + (size_t)c) * S + i0;
                    L->load(n, t->q, t->w, at, xb);
                    const uint64_t u = L->affine(n, xb, t->N, s1, mc, sh, g, bc, xb);
                    mx = u > mx ? u : mx;
                }
        }
        t->amax[c] = (int64_t)mx;
        t->lo[c] = lo;
        t->hi[c] = hi;
    }
}

/* each channel's table: y of every value in [min x, max x], rounded as pass 2 rounds the elements */
static void tables(void *ctx, int c0, int c1) {
    const bn_fwd *t = (const bn_fwd *)ctx;
    int64_t acc[256];
    for (int c = c0; c < c1; ++c) {
        const int64_t lo = t->lo[c], hi = t->hi[c], g = iq_ld(t->gamma, t->gw, (size_t)c);
        const int sh = (int)t->f[c] - 16;
        for (int64_t v = lo; v <= hi; ++v)
            acc[v - lo] = iq_add(iq_mul(iq_norm_xhat(t->N, v, t->s1[c], t->m[c], sh), g), t->bias[c]);
        unsigned char *row = t->tab + ((size_t)c * 256 + (size_t)TIX(lo)) * (size_t)t->wt;
        rctc_iq_round_store((size_t)(hi - lo + 1), acc, t->s, NULL, row, t->wt);
    }
}

/* y of elements at .. at + n - 1 of channel c read from its table */
static void map_tabled(const bn_fwd *t, int c, size_t at, size_t n) {
    const int8_t *xp = (const int8_t *)t->q + at;
    const unsigned char *tb = t->tab + (size_t)c * 256 * (size_t)t->wt;
    switch (t->wt) {
    case 1: {
        int8_t *o = (int8_t *)t->out + at;
        for (size_t i = 0; i < n; ++i) o[i] = ((const int8_t *)tb)[TIX(xp[i])];
        break;
    }
    case 2: {
        int16_t *o = (int16_t *)t->out + at;
        for (size_t i = 0; i < n; ++i) o[i] = ((const int16_t *)tb)[TIX(xp[i])];
        break;
    }
    default: {
        int32_t *o = (int32_t *)t->out + at;
        for (size_t i = 0; i < n; ++i) o[i] = ((const int32_t *)tb)[TIX(xp[i])];
        break;
    }
    }
}

static void pass2(void *ctx, int r0, int r1) {
    const bn_fwd *t = (const bn_fwd *)ctx;
    const size_t S = (size_t)t->S;
    const iq_norm_loops_t *L = iq_norm_loops();
    int64_t xb[BLOCK];
    for (int r = r0; r < r1; ++r) {
        const int c = r % t->C;
        if (t->tab) {
            map_tabled(t, c, (size_t)r * S, S);
            continue;
        }
        const int64_t g = iq_ld(t->gamma, t->gw, (size_t)c);
        for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
            const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = (size_t)r * S + i0;
            L->load(n, t->q, t->w, at, xb);
            L->affine(n, xb, t->N, t->s1[c], t->m[c], (int)t->f[c] - 16, g, t->bias[c], xb);
            rctc_iq_round_store(n, xb, t->s, NULL, (unsigned char *)t->out + at * (size_t)t->wt, t->wt);
        }
    }
}

int rctc_iq_batchnorm_train_mt(int nthreads, int B, int C, int S, const void *q, int w, int e, const void *gamma,
                               int gw, int ge, const void *beta, int bw, int be, const int16_t *rmean, int rme,
                               const int16_t *rvar, int rve, int64_t eps_num, int eps_log2, int64_t mu, int bits,
                               int64_t *work, void *out, int *e_out, int16_t *rmean_out, int *rme_out,
                               int16_t *rvar_out, int *rve_out) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, N = (size_t)B * (size_t)S;
    int64_t *s1 = work, *d = s1 + C, *m = d + C, *f = m + C, *bm = f + C, *bv = bm + C, *scratch = bv + C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * rctc_iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    /* per channel: bias (bm), max magnitude (bv), status (scratch): free until the statistics update */
    const int e_acc = ge - 16;
    const int rc_bias = iq_norm_shifted_bias(C, beta, bw, be - e_acc, bm);
    if (rc_bias)
        for (int c = 0; c < C; ++c) bm[c] = 0;
    bn_fwd t = {B, C, S, (int)N, w, e, eps_log2, gw, 0, rctc_iq_width(bits), q, gamma, eps_num, s1,
                d, m, f, bm, bv, scratch, work + 8 * C, work + 9 * C, out, NULL};
    if (iq_norm_uses_tables(iq_norm_loops(), w, N)) t.tab = (unsigned char *)(work + 10 * C);
    const int threads = rctc_threads_for_elements(nthreads, T, RCTC_NORM_PER_THREAD);
    rctc_parallel_for(C, 1, threads, pass1, &t);
    uint64_t mx = 0;
    for (int c = 0; c < C; ++c) {
        if (scratch[c]) return (int)scratch[c];
        mx = (uint64_t)bv[c] > mx ? (uint64_t)bv[c] : mx;
    }
    if (rc_bias) return rc_bias;
    t.s = rctc_iq_requant_shift(mx, bits, 0);
    if (t.s > 0 && mx > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    if (t.tab) rctc_parallel_for(C, 1, threads, tables, &t);
    rctc_parallel_for(B * C, 1, threads, pass2, &t);
    *e_out = e_acc + t.s;
    const int64_t nn = (int64_t)N;
    return iq_norm_running_update(C, nn, s1, d, e, mu, rmean, rme, rvar, rve, rmean_out, rme_out, rvar_out, rve_out,
                                  bm, bv, scratch);
}
