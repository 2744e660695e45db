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

typedef struct {
    int B, C, S, N, w, dw, e, eps_log2, s, wt;
    const void *q, *dq;
    int64_t eps_num;
    int64_t *m, *f, *amax, *st, *mult, *s1, *m1, *m2, *dgamma, *dbeta;
    const uint32_t *rand;
    void *out;
} bn_bwd;

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
        uint64_t sg = 0, sb = 0, mx = 0;
        /* the sums (xhat formed on the fly) */
        for (int b = 0; b < t->B; ++b) {
            int64_t pg, pb;
            L->xhat_dot_run(S, t->q, t->w, t->dq, t->dw, ((size_t)b * C + (size_t)c) * S, t->N, s1, mc, sh, &pg, &pb);
            sg += (uint64_t)pg;
            sb += (uint64_t)pb;
        }
        int ok = 1;
        t->m1[c] = iq_norm_div_round((int64_t)sb, 16, t->N, &ok);
        t->m2[c] = iq_norm_div_round((int64_t)sg, 0, t->N, &ok);
        t->dgamma[c] = (int64_t)sg;
        t->dbeta[c] = (int64_t)sb;
        t->st[2 * c + 1] = ok;
        if (!ok) continue;
        /* the accumulator's max magnitude (its values are formed again in pass 2, not stored) */
        for (int b = 0; b < t->B; ++b) {
            const uint64_t u = L->dx_x_run(S, t->q, t->w, t->dq, t->dw, ((size_t)b * C + (size_t)c) * S, t->N, s1, mc,
                                           sh, t->m1[c], t->m2[c], NULL);
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
            L->dx_x_run(n, t->q, t->w, t->dq, t->dw, at, t->N, t->s1[c], t->m[c], (int)t->f[c] - 16, t->m1[c], t->m2[c],
                        xb);
            L->scale(n, xb, t->mult[c], xb);
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
                pc + 3 * c, pc + 5 * c, pc + 7 * c, pc + 8 * c, pc + 9 * c, dgamma, dbeta, rand, dx};
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
    rctc_parallel_for(B * C, 1, threads, pass2, &t);
    *e_out = e_acc + t.s;
    return RCTC_IQ_OK;
}
