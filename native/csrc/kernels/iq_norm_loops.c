/*
 * iq_norm_loops.c - the per-element loops of the BatchNorm kernels (iq_batchnorm.c,
 * iq_batchnorm_backward.c) on runs of one channel, portable; x86/iq_norm_loops_avx2.c and
 * x86/iq_norm_loops_avx512.c (F + DQ) are the SIMD variants with the same results, and
 * iq_norm_loops() picks the best one this CPU runs.
 *
 * Needs: iq.h, iq_norm.h. Leaves: numpy's wrapping int64 arithmetic (xhat's product is the plain
 * one of intref, exact under the caller's N max|x| < 2^29 check); sums wrap modulo 2^64, so any
 * order of adding gives the same value; maxima as unsigned magnitudes.
 */
#include "iq.h"
#include "iq_norm.h"
#include "rctc_kernels.h"

#define RCTC_NORM_TABLE(V, TABLES)                                                                            \
    {rctc_norm_affine_##V, rctc_norm_scale_##V, rctc_norm_load_##V, rctc_norm_sums_run_##V,            \
     rctc_norm_xhat_dot_run_##V, rctc_norm_dx_x_run_##V, TABLES}

const iq_norm_loops_t *iq_norm_loops(void) {
    static const iq_norm_loops_t portable = RCTC_NORM_TABLE(portable, 1);
#if defined(__x86_64__) || defined(_M_X64)
    static const iq_norm_loops_t avx2 = RCTC_NORM_TABLE(avx2, 1), avx512 = RCTC_NORM_TABLE(avx512, 0);
    const int isa = rctc_isa_available();
    if ((isa & (1 << RCTC_ISA_AVX512VNNI)) && rctc_cpu_has_avx512dq()) return &avx512;
    if (isa & (1 << RCTC_ISA_AVX2)) return &avx2;
#endif
    return &portable;
}

void rctc_norm_sums_portable(size_t n, const int64_t *x, int64_t *s1, int64_t *s2) {
    int64_t a1 = 0, a2 = 0;
    for (size_t i = 0; i < n; ++i) {
        a1 += x[i];
        a2 += x[i] * x[i];
    }
    *s1 = a1;
    *s2 = a2;
}

void rctc_norm_xhat_dot_portable(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                                 int64_t *xh, int64_t *sg, int64_t *sb) {
    int64_t g = 0, b = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_norm_xhat(N, x[i], s1, m, sh);
        xh[i] = v;
        g = iq_add(g, iq_mul(dy[i], v));
        b = iq_add(b, dy[i]);
    }
    *sg = g;
    *sb = b;
}

uint64_t rctc_norm_dx_x_portable(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                                 int64_t m1, int64_t m2, int64_t *acc) {
    uint64_t mx = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t h = iq_norm_xhat(N, x[i], s1, m, sh);
        const int64_t term = iq_sar(iq_add(iq_mul(h, m2), (int64_t)1 << 15), 16);
        const int64_t v = iq_sub(iq_sub(iq_shl(dy[i], 16), m1), term);
        const uint64_t u = iq_abs(v);
        acc[i] = v;
        mx = u > mx ? u : mx;
    }
    return mx;
}

uint64_t rctc_norm_affine_portable(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, int64_t g,
                                   int64_t bias, int64_t *acc) {
    uint64_t mx = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_add(iq_mul(iq_norm_xhat(N, x[i], s1, m, sh), g), bias);
        const uint64_t u = iq_abs(v);
        acc[i] = v;
        mx = u > mx ? u : mx;
    }
    return mx;
}

void rctc_norm_load_portable(size_t n, const void *p, int w, size_t off, int64_t *dst) { iq_ld_run(p, w, off, n, dst); }

void rctc_norm_scale_portable(size_t n, const int64_t *acc, int64_t mult, int64_t *out) {
    for (size_t i = 0; i < n; ++i) out[i] = iq_mul(acc[i], mult);
}

void rctc_norm_sums_run_portable(size_t n, const void *p, int w, size_t off, int64_t *s1, int64_t *s2, int64_t *lo,
                                 int64_t *hi) {
    uint64_t a1 = (uint64_t)*s1, a2 = (uint64_t)*s2;
    int64_t l = *lo, h = *hi;
    for (size_t i = 0; i < n; ++i) {
        const int64_t v = iq_ld(p, w, off + i);
        a1 += (uint64_t)v;
        a2 += (uint64_t)v * (uint64_t)v;
        l = v < l ? v : l;
        h = v > h ? v : h;
    }
    *s1 = (int64_t)a1;
    *s2 = (int64_t)a2;
    *lo = l;
    *hi = h;
}

/* elements widened on the stack at a time by the _blocks loops (2 x 2 KiB) */
#define RUN_BLOCK 256

void iq_norm_xhat_dot_blocks(iq_norm_load_fn *ld, iq_norm_xhat_dot_fn *fn, size_t n, const void *x, int w,
                             const void *dy, int dw, size_t off, int N, int64_t s1, int64_t m, int sh, int64_t *sg,
                             int64_t *sb) {
    int64_t xb[RUN_BLOCK], db[RUN_BLOCK];
    uint64_t g = 0, b = 0;
    for (size_t i0 = 0; i0 < n; i0 += RUN_BLOCK) {
        const size_t k = n - i0 < RUN_BLOCK ? n - i0 : RUN_BLOCK;
        int64_t pg, pb;
        ld(k, x, w, off + i0, xb);
        ld(k, dy, dw, off + i0, db);
        fn(k, xb, N, s1, m, sh, db, xb, &pg, &pb);
        g += (uint64_t)pg;
        b += (uint64_t)pb;
    }
    *sg = (int64_t)g;
    *sb = (int64_t)b;
}

uint64_t iq_norm_dx_x_blocks(iq_norm_load_fn *ld, iq_norm_dx_x_fn *fn, size_t n, const void *x, int w, const void *dy,
                             int dw, size_t off, int N, int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2,
                             int64_t *acc) {
    int64_t xb[RUN_BLOCK], db[RUN_BLOCK];
    uint64_t mx = 0;
    for (size_t i0 = 0; i0 < n; i0 += RUN_BLOCK) {
        const size_t k = n - i0 < RUN_BLOCK ? n - i0 : RUN_BLOCK;
        ld(k, x, w, off + i0, xb);
        ld(k, dy, dw, off + i0, db);
        const uint64_t u = fn(k, xb, N, s1, m, sh, db, m1, m2, acc ? acc + i0 : xb);
        mx = u > mx ? u : mx;
    }
    return mx;
}

void rctc_norm_xhat_dot_run_portable(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                     int64_t s1, int64_t m, int sh, int64_t *sg, int64_t *sb) {
    iq_norm_xhat_dot_blocks(rctc_norm_load_portable, rctc_norm_xhat_dot_portable, n, x, w, dy, dw, off, N, s1, m, sh,
                            sg, sb);
}

uint64_t rctc_norm_dx_x_run_portable(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                     int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2, int64_t *acc) {
    return iq_norm_dx_x_blocks(rctc_norm_load_portable, rctc_norm_dx_x_portable, n, x, w, dy, dw, off, N, s1, m, sh,
                               m1, m2, acc);
}
