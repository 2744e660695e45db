/*
 * iq_batchnorm_backward_mt.c - BatchNormalization's backward (intref.norm.batchnorm_backward) for
 * the host step: threads and the SIMD loops of iq_norm_loops() (the plan / range parts of
 * iq_batchnorm_backward.c are the device's; the same bits).
 *
 * Needs: rctc_intops.h, iq_norm_stats.c, parallel.c. Leaves: dx = gamma inv_std (dy - mean dy -
 * xhat mean(dy xhat)) per channel (one multiplier per channel on a common exponent, cut to at
 * most 31 bits), one rounding to bits (stochastic with rand, words in dx's (B, C, S) order);
 * dgamma = sum dy xhat (exact, at de - 16) and dbeta = sum dy (exact, at de).
 *
 * Two passes, each split over threads (channels, then (b, c) rows; every value is computed by
 * one thread, so the bits never depend on the thread count), reading x and dy in place (int8; other
 * widths in blocks widened on the stack) and storing nothing per element but dx (pass 2 widens each
 * block of the accumulator on the stack): xhat and the accumulator are formed again
 * wherever they are needed (a few vector products an element cost less than writing and reading
 * back 8 bytes an element, twice, through a buffer larger than L2). Pass 1, per channel: the group
 * statistics, then dgamma / dbeta (= the means' sums, wrapping sums in any grouping), then the dx
 * accumulator's max magnitude. Then the common multiplier exponent from those maxima, and
 * requantize's shift from max |acc| |mult_c| (exact: the product of two magnitudes whose bit
 * lengths sum to at most 63 does not wrap; otherwise the accumulator is formed in full in the work
 * buffer, multiplied and requantised as intref does). Pass 2 forms, multiplies and rounds each row.
 * Where iq_norm_uses_tables (int8 inputs, at least 1024 values a channel, the portable and AVX2
 * loops), xhat and dx's centring term come from per-channel tables of the input's values
 * instead (see "Tables" below): the same integers, fewer 64-bit products.
 * Error codes are intref's, in its order (the input's range, then the first channel whose
 * statistics fail, then the means' range, then the multipliers').
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
/* elements widened on the stack at a time: 4 KiB a block (this host-only kernel runs on default
 * thread stacks; the device's streamed kernel keeps its own small chunks). 512 rather than 128:
 * each SIMD loop call then spends less on its set-up and final reductions */
#define BLOCK 512
/* the tables' entry of an int8 value (where iq_norm_uses_tables; see the tables below) */
#define TIX(v) IQ_NORM_TIX(v)

typedef struct {
    int B, C, S, N, w, dw, e, eps_log2, s, wt;
    const void *q, *dq;
    int64_t eps_num;
    int64_t *m, *f, *amax, *st, *mult, *s1, *m1, *m2, *dgamma, *dbeta;
    const uint32_t *rand;
    void *out;
    /* NULL, or 256 int64 a channel: cen[TIX(v)] = m1 + ((xhat(v) m2 + 2^15) >> 16) for every value v
     * of the channel's input (written by pass 1) */
    int64_t *cen;
} bn_bwd;

/* Tables (int8 inputs): xhat depends on an element only through its channel and its value, so pass 1
 * forms xhat(v) once for each v in [min x, max x] of the channel (xh), then the centring term
 * m1 + ((xhat m2 + 2^15) >> 16) of each (cen); the element loops read them by the value. In wrapping
 * int64 arithmetic (dy << 16) - m1 - term = (dy << 16) - (m1 + term), so every sum, maximum and
 * accumulator is the integer the per-element loops form. int8 dy is read in place, wider dy widened
 * a block at a time. Pass 2 reads cen times the channel's multiplier (set between the passes). */

/* GCC's SSE2 vectorisation of the table loops (gathers and 64-bit products emulated lane by lane)
 * costs more than it saves: they are scalar */
#if defined(__GNUC__) && !defined(__clang__)
#define SCALAR_LOOPS __attribute__((optimize("no-tree-vectorize")))
#else
#define SCALAR_LOOPS
#endif

/* sum dy xhat and sum dy over elements at .. at + n - 1 (wrapping), xhat read from xh */
SCALAR_LOOPS static void sums_tabled(const bn_bwd *t, const int64_t *xh, size_t at, size_t n, uint64_t *sg,
                                     uint64_t *sb) {
    const int8_t *xp = (const int8_t *)t->q + at;
    uint64_t g = *sg, b = *sb;
    if (t->dw == 1)
        for (size_t i = 0; i < n; ++i) {
            const int64_t d = ((const int8_t *)t->dq)[at + i];
            g += (uint64_t)d * (uint64_t)xh[TIX(xp[i])];
            b += (uint64_t)d;
        }
    else {
        int64_t db[BLOCK];
        for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
            const size_t k = n - i0 < BLOCK ? n - i0 : BLOCK;
            iq_norm_loops()->load(k, t->dq, t->dw, at + i0, db);
            for (size_t i = 0; i < k; ++i) {
                g += (uint64_t)db[i] * (uint64_t)xh[TIX(xp[i0 + i])];
                b += (uint64_t)db[i];
            }
        }
    }
    *sg = g;
    *sb = b;
}

/* max |(dy << 16) - cen[x]| over elements at .. at + n - 1 (n <= BLOCK): the accumulator's magnitude */
SCALAR_LOOPS static uint64_t max_tabled(const bn_bwd *t, const int64_t *cen, size_t at, size_t n) {
    const int8_t *xp = (const int8_t *)t->q + at;
    int64_t db[BLOCK];
    uint64_t mx = 0;
    if (t->dw == 1)
        for (size_t i = 0; i < n; ++i) {
            const uint64_t u = iq_abs(iq_sub(iq_shl(((const int8_t *)t->dq)[at + i], 16), cen[TIX(xp[i])]));
            mx = u > mx ? u : mx;
        }
    else {
        iq_norm_loops()->load(n, t->dq, t->dw, at, db);
        for (size_t i = 0; i < n; ++i) {
            const uint64_t u = iq_abs(iq_sub(iq_shl(db[i], 16), cen[TIX(xp[i])]));
            mx = u > mx ? u : mx;
        }
    }
    return mx;
}

/* out = dy M16 - cen[x] of elements at .. at + n - 1 (n <= BLOCK): the accumulator times the channel's
 * multiplier when cen holds (m1 + term) mult and M16 = mult << 16 (wrapping: the same integer) */
SCALAR_LOOPS static void scaled_tabled(const bn_bwd *t, const int64_t *cen, int64_t m16, size_t at, size_t n,
                                       int64_t *out) {
    const int8_t *xp = (const int8_t *)t->q + at;
    if (t->dw == 1) {
        const int8_t *dp = (const int8_t *)t->dq + at;
        for (size_t i = 0; i < n; ++i) out[i] = iq_sub(iq_mul(dp[i], m16), cen[TIX(xp[i])]);
        return;
    }
    iq_norm_loops()->load(n, t->dq, t->dw, at, out);
    for (size_t i = 0; i < n; ++i) out[i] = iq_sub(iq_mul(out[i], m16), cen[TIX(xp[i])]);
}

static void pass1(void *ctx, int c0, int c1) {
    const bn_bwd *t = (const bn_bwd *)ctx;
    const size_t S = (size_t)t->S, C = (size_t)t->C;
    const iq_norm_loops_t *L = iq_norm_loops();
    for (int c = c0; c < c1; ++c) {
        /* the channel's runs (one per image), read in place */
        int64_t a1 = 0, a2 = 0, lo = INT64_MAX, hi = INT64_MIN;
        for (int b = 0; b < t->B; ++b) L->sums_run(S, t->q, t->w, ((size_t)b * C + (size_t)c) * S, &a1, &a2, &lo, &hi);
        int64_t d;
        const int rc = iq_norm_group_sums(t->N, a1, a2, t->e, t->eps_num, t->eps_log2, &t->s1[c],
                                          &d, &t->m[c], &t->f[c]);
        t->st[2 * c] = rc;
        if (rc) continue;
        const int sh = (int)t->f[c] - 16;
        const int64_t mc = t->m[c], s1 = t->s1[c];
        int64_t xh[256];
        uint64_t sg = 0, sb = 0, mx = 0;
        /* the sums (xhat from the table, or formed on the fly) */
        if (t->cen) {
            for (int64_t v = lo; v <= hi; ++v) xh[TIX(v)] = iq_norm_xhat(t->N, v, s1, mc, sh);
            for (int b = 0; b < t->B; ++b) sums_tabled(t, xh, ((size_t)b * C + (size_t)c) * S, S, &sg, &sb);
        } else
            for (int b = 0; b < t->B; ++b) {
                int64_t pg, pb;
                L->xhat_dot_run(S, t->q, t->w, t->dq, t->dw, ((size_t)b * C + (size_t)c) * S, t->N, s1, mc, sh, &pg,
                                &pb);
                sg += (uint64_t)pg;
                sb += (uint64_t)pb;
            }
        int ok = 1;
        const int64_t m1 = t->m1[c] = iq_norm_div_round((int64_t)sb, 16, t->N, &ok);
        const int64_t m2 = t->m2[c] = iq_norm_div_round((int64_t)sg, 0, t->N, &ok);
        t->dgamma[c] = (int64_t)sg;
        t->dbeta[c] = (int64_t)sb;
        t->st[2 * c + 1] = ok;
        if (!ok) continue;
        /* the accumulator's max magnitude (its values are formed again in pass 2, not stored) */
        if (t->cen) {
            int64_t *cen = t->cen + (size_t)c * 256;
            for (int v = -128; v < 128; ++v) /* values the channel does not hold: 0 (never read) */
                cen[TIX(v)] = v < lo || v > hi ? 0
                              : iq_add(m1, iq_sar(iq_add(iq_mul(xh[TIX(v)], m2), (int64_t)1 << 15), 16));
            for (int b = 0; b < t->B; ++b)
                for (size_t i0 = 0, at = ((size_t)b * C + (size_t)c) * S; i0 < S; i0 += BLOCK) {
                    const uint64_t u = max_tabled(t, cen, at + i0, S - i0 < BLOCK ? S - i0 : BLOCK);
                    mx = u > mx ? u : mx;
                }
        } else
            for (int b = 0; b < t->B; ++b) {
                const uint64_t u = L->dx_x_run(S, t->q, t->w, t->dq, t->dw, ((size_t)b * C + (size_t)c) * S, t->N, s1,
                                               mc, sh, m1, m2, NULL);
                mx = u > mx ? u : mx;
            }
        t->amax[c] = (int64_t)mx;
    }
}

static void pass2(void *ctx, int r0, int r1) {
    const bn_bwd *t = (const bn_bwd *)ctx;
    const size_t S = (size_t)t->S;
    const iq_norm_loops_t *L = iq_norm_loops();
    int64_t xb[BLOCK];
    for (int r = r0; r < r1; ++r) {
        const int c = r % t->C;
        for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
            const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = (size_t)r * S + i0;
            if (t->cen)
                scaled_tabled(t, t->cen + (size_t)c * 256, iq_shl(t->mult[c], 16), at, n, xb);
            else {
                L->dx_x_run(n, t->q, t->w, t->dq, t->dw, at, t->N, t->s1[c], t->m[c], (int)t->f[c] - 16, t->m1[c],
                            t->m2[c], xb);
                L->scale(n, xb, t->mult[c], xb);
            }
            rctc_iq_round_store(n, xb, t->s, t->rand ? t->rand + at : NULL,
                                (unsigned char *)t->out + at * (size_t)t->wt, t->wt);
        }
    }
}

int rctc_iq_batchnorm_backward_mt(int nthreads, int B, int C, int S, const void *q, int w, int e, const void *gamma,
                                  int gw, int ge, const void *dq, int dw, int de, int64_t eps_num, int eps_log2,
                                  int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                                  int64_t *dbeta) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, N = (size_t)B * (size_t)S, c = (size_t)C;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * rctc_iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    /* work: the accumulator (T, written only when a product may wrap), then per channel m, f, max,
     * two status words, the multiplier, gamma, s1, m1, m2 */
    int64_t *acc = work, *pc = work + T;
    bn_bwd t = {B, C, S, (int)N, w, dw, e, eps_log2, 0, rctc_iq_width(bits), q, dq, eps_num, pc, pc + c, pc + 2 * c,
                pc + 3 * c, pc + 5 * c, pc + 7 * c, pc + 8 * c, pc + 9 * c, dgamma, dbeta, rand, dx, NULL};
    /* the tables in the accumulator's space (T = N C >= 256 C int64; it is written in full only on
     * the wrap path below, which reads no table) */
    if (iq_norm_uses_tables(iq_norm_loops(), w, N)) t.cen = acc;
    const int threads = rctc_threads_for_elements(nthreads, T, RCTC_NORM_PER_THREAD);
    rctc_parallel_for(C, 1, threads, pass1, &t);
    for (int k = 0; k < C; ++k)
        if (t.st[2 * k]) return (int)t.st[2 * k];
    uint64_t mx = 0;
    for (int k = 0; k < C; ++k) {
        if (!t.st[2 * k + 1]) return RCTC_IQ_EOVERFLOW;
        mx = (uint64_t)t.amax[k] > mx ? (uint64_t)t.amax[k] : mx;
    }
    int64_t *gm = pc + 6 * c;
    for (int k = 0; k < C; ++k) gm[k] = iq_ld(gamma, gw, (size_t)k);
    const int bl = iq_bitlen(mx);
    const int mbits = 61 - bl < 31 ? 61 - bl : 31;
    int g;
    int rc = iq_norm_multipliers(C, gm, (int64_t)N, t.m, t.f, mbits, t.mult, &g);
    if (rc) return rc;
    const int e_acc = de + ge - e + g - 16;
    uint64_t pm = 0;
    for (int k = 0; k < C; ++k) {
        const uint64_t a = (uint64_t)t.amax[k], u = iq_abs(t.mult[k]);
        if (a != 0 && u != 0 && iq_bitlen(a) + iq_bitlen(u) > 63) { /* a product may wrap: as intref, in full */
            const iq_norm_loops_t *L = iq_norm_loops();
            for (size_t r = 0; r < (size_t)B * c; ++r) {
                const size_t ch = r % c, at = r * (size_t)S;
                L->dx_x_run((size_t)S, q, w, dq, dw, at, (int)N, t.s1[ch], t.m[ch], (int)t.f[ch] - 16, t.m1[ch], t.m2[ch],
                            acc + at);
                for (size_t i = 0; i < (size_t)S; ++i) acc[at + i] = iq_mul(acc[at + i], t.mult[ch]);
            }
            return rctc_iq_requantize(T, acc, e_acc, bits, rand, dx, e_out);
        }
        pm = a * u > pm ? a * u : pm;
    }
    t.s = rctc_iq_requant_shift(pm, bits, rand != NULL);
    if (t.s > 0 && pm > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    if (t.cen) /* the tables times each channel's multiplier (pass 2 reads (m1 + term) mult) */
        for (size_t i = 0; i < c * 256; ++i) t.cen[i] = iq_mul(t.cen[i], t.mult[i / 256]);
    rctc_parallel_for(B * C, 1, threads, pass2, &t);
    *e_out = e_acc + t.s;
    return RCTC_IQ_OK;
}
