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
 * one thread, so the bits never depend on the thread count). Pass 1, per channel, over its runs
 * in blocks widened on the stack (no channel copies): the group statistics, then xhat (kept in
 * the accumulator's place) and dgamma / dbeta (= the means' sums, wrapping sums in any grouping),
 * then the dx accumulator over that xhat, in the (B, C, S) layout, with its max magnitude. Then
 * the common multiplier exponent from those maxima, and requantize's shift from max |acc| |mult_c| (exact:
 * the product of two magnitudes whose bit lengths sum to at most 63 does not wrap; otherwise
 * the accumulator is multiplied in place and requantised as before). Pass 2 multiplies and
 * rounds each row. Error codes are intref's, in its order (the input's range, then the first
 * channel whose statistics fail, then the means' range, then the multipliers').
 */
#include "internal.h"
#include "iq.h"
#include "iq_norm.h"

/* elements per thread below which a second thread does not pay: a 2^17 element BatchNorm takes
 * ~0.1-0.2 ms with the AVX-512 loops. Was 2^20 (a descheduled partner on a loaded machine costs
 * more than it saves); at 2^17 three interleaved runs of benchmarks/native_step_quick.py-style
 * steps on a shared 2-vCPU Xeon gave lower medians in every pair (MobileNet 62.8 / 62.1 / 59.4 ->
 * 56.0 / 49.0 / 53.4 ms, ResNet-20 124.7 / 118.9 / 120.6 -> 116.8 / 98.0 / 92.3 ms) */
#define RCTC_NORM_PER_THREAD 131072u
/* elements widened on the stack at a time (2 blocks in pass 1, 1 in pass 2: a few KiB of a
 * Cortex-M's 8 KiB stack) */
#define BLOCK 128

typedef struct {
    int B, C, S, N, w, dw, e, eps_log2, s, wt;
    const void *q, *dq;
    int64_t eps_num;
    int64_t *acc, *m, *f, *amax, *st, *mult, *dgamma, *dbeta;
    const uint32_t *rand;
    void *out;
} bn_bwd;

static void pass1(void *ctx, int c0, int c1) {
    const bn_bwd *t = (const bn_bwd *)ctx;
    const size_t S = (size_t)t->S, C = (size_t)t->C;
    const iq_norm_loops_t *L = iq_norm_loops();
    int64_t xb[BLOCK], db[BLOCK];
    for (int c = c0; c < c1; ++c) {
        /* the channel's runs (one per image) in blocks widened on the stack: no channel copies */
        uint64_t a1 = 0, a2 = 0;
        for (int b = 0; b < t->B; ++b)
            for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
                const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = ((size_t)b * C + (size_t)c) * S + i0;
                int64_t p1, p2;
                L->load(n, t->q, t->w, at, xb);
                L->sums(n, xb, &p1, &p2);
                a1 += (uint64_t)p1;
                a2 += (uint64_t)p2;
            }
        int64_t s1, d;
        const int rc = iq_norm_group_sums(t->N, (int64_t)a1, (int64_t)a2, t->e, t->eps_num, t->eps_log2, &s1, &d,
                                          &t->m[c], &t->f[c]);
        t->st[2 * c] = rc;
        if (rc) continue;
        const int sh = (int)t->f[c] - 16;
        const int64_t mc = t->m[c];
        uint64_t sg = 0, sb = 0, mx = 0;
        /* the sums, with xhat kept in the accumulator's place (the accumulator overwrites it) */
        for (int b = 0; b < t->B; ++b)
            for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
                const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = ((size_t)b * C + (size_t)c) * S + i0;
                int64_t pg, pb;
                L->load(n, t->q, t->w, at, xb);
                L->load(n, t->dq, t->dw, at, db);
                L->xhat_dot(n, xb, t->N, s1, mc, sh, db, t->acc + at, &pg, &pb);
                sg += (uint64_t)pg;
                sb += (uint64_t)pb;
            }
        int ok = 1;
        const int64_t m1 = iq_norm_div_round((int64_t)sb, 16, t->N, &ok);
        const int64_t m2 = iq_norm_div_round((int64_t)sg, 0, t->N, &ok);
        t->dgamma[c] = (int64_t)sg;
        t->dbeta[c] = (int64_t)sb;
        t->st[2 * c + 1] = ok;
        /* the accumulator, element by element over the xhat it replaces */
        for (int b = 0; b < t->B; ++b)
            for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
                const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = ((size_t)b * C + (size_t)c) * S + i0;
                L->load(n, t->dq, t->dw, at, db);
                const uint64_t u = L->dx_acc(n, db, t->acc + at, m1, m2, t->acc + at);
                mx = u > mx ? u : mx;
            }
        t->amax[c] = (int64_t)mx;
    }
}

static void pass2(void *ctx, int r0, int r1) {
    const bn_bwd *t = (const bn_bwd *)ctx;
    const size_t S = (size_t)t->S;
    const iq_norm_loops_t *L = iq_norm_loops();
    int64_t v[BLOCK];
    for (int r = r0; r < r1; ++r) {
        const int64_t mc = t->mult[r % t->C];
        for (size_t i0 = 0; i0 < S; i0 += BLOCK) {
            const size_t n = S - i0 < BLOCK ? S - i0 : BLOCK, at = (size_t)r * S + i0;
            L->scale(n, t->acc + at, mc, v);
            rctc_iq_round_store(n, v, t->s, t->rand ? t->rand + at : NULL,
                                (unsigned char *)t->out + at * (size_t)t->wt, t->wt);
        }
    }
}

int rctc_iq_batchnorm_backward_mt(int nthreads, int B, int C, int S, const void *q, int w, int e, const void *gamma,
                                  int gw, int ge, const void *dq, int dw, int de, int64_t eps_num, int eps_log2,
                                  int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                                  int64_t *dbeta) {
    const size_t T = (size_t)B * (size_t)C * (size_t)S, N = (size_t)B * (size_t)S;
    if (C < 1) return RCTC_IQ_EDOMAIN;
    if ((uint64_t)N * iq_absmax_w(q, w, T) >= ((uint64_t)1 << 29)) return RCTC_IQ_EOVERFLOW;
    /* work: the accumulator (T), then per channel m, f, max, two status words, the multiplier, gamma */
    bn_bwd t = {B, C, S, (int)N, w, dw, e, eps_log2, 0, rctc_iq_width(bits), q, dq, eps_num, work, work + T,
                work + T + C, work + T + 2 * (size_t)C, work + T + 3 * (size_t)C, work + T + 5 * (size_t)C, dgamma,
                dbeta, rand, dx};
    const size_t most = T / RCTC_NORM_PER_THREAD > 1 ? T / RCTC_NORM_PER_THREAD : 1;
    const int threads = nthreads < 1 ? 1 : (size_t)nthreads > most ? (int)most : nthreads;
    rctc_parallel_for(C, 1, threads, pass1, &t);
    for (int c = 0; c < C; ++c)
        if (t.st[2 * c]) return (int)t.st[2 * c];
    uint64_t mx = 0;
    for (int c = 0; c < C; ++c) {
        if (!t.st[2 * c + 1]) return RCTC_IQ_EOVERFLOW;
        mx = (uint64_t)t.amax[c] > mx ? (uint64_t)t.amax[c] : mx;
    }
    int64_t *gm = work + T + 6 * (size_t)C;
    for (int c = 0; c < C; ++c) gm[c] = iq_ld(gamma, gw, (size_t)c);
    const int bl = iq_bitlen(mx);
    const int mbits = 61 - bl < 31 ? 61 - bl : 31;
    int g;
    int rc = iq_norm_multipliers(C, gm, (int64_t)N, t.m, t.f, mbits, t.mult, &g);
    if (rc) return rc;
    const int e_acc = de + ge - e + g - 16;
    uint64_t pm = 0;
    for (int c = 0; c < C; ++c) {
        const uint64_t a = (uint64_t)t.amax[c], u = iq_abs(t.mult[c]);
        if (a != 0 && u != 0 && iq_bitlen(a) + iq_bitlen(u) > 63) { /* a product may wrap: as intref, in full */
            for (size_t r = 0; r < (size_t)B * (size_t)C; ++r)
                for (size_t i = 0; i < (size_t)S; ++i)
                    t.acc[r * (size_t)S + i] = iq_mul(t.acc[r * (size_t)S + i], t.mult[r % (size_t)C]);
            return rctc_iq_requantize(T, t.acc, e_acc, bits, rand, dx, e_out);
        }
        pm = a * u > pm ? a * u : pm;
    }
    t.s = rctc_iq_requant_shift(pm, bits, rand != NULL);
    if (t.s > 0 && pm > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    rctc_parallel_for(B * C, 1, threads, pass2, &t);
    *e_out = e_acc + t.s;
    return RCTC_IQ_OK;
}
