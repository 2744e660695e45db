/*
 * gemm.c - portable C99 integer GEMM, C(m,n) [+]= sum_k A(m,k) B(k,n), strided operands.
 *
 * Needs: rctc_kernels.h for the argument convention, parallel.c for threads.
 * Leaves: every C element the exact sum (s64) or the sum modulo 2^32 (s32: accumulated in
 * uint32, the same wrap-around as the SIMD variants); rows are split between threads, so the
 * result does not depend on nthreads.
 */
#include "rctc_kernels.h"
#include "internal.h"

/* One row-range task. When A's rows and B's columns are both K-contiguous (a_cs == b_rs == 1,
 * the weight-gradient layout) each element is a contiguous dot product; otherwise the loop
 * order m, k, n streams B and C rows. Either way the compiler vectorises the inner loop, and
 * the sum is the same exact (or modulo 2^32) integer. */
#define RCTC_DEFINE_GEMM_PORTABLE(NAME, TA, TB, TC, TU)                                           \
    typedef struct {                                                                              \
        int N, K;                                                                                 \
        const TA *A;                                                                              \
        ptrdiff_t a_rs, a_cs;                                                                     \
        const TB *B;                                                                              \
        ptrdiff_t b_rs, b_cs;                                                                     \
        TC *C;                                                                                    \
        ptrdiff_t c_rs, c_cs;                                                                     \
        int accumulate;                                                                           \
    } NAME##_args;                                                                                \
    static void NAME##_rows(void *vctx, int m0, int m1) {                                         \
        const NAME##_args *p = (const NAME##_args *)vctx;                                         \
        for (int m = m0; m < m1; ++m) {                                                           \
            TC *c = p->C + (ptrdiff_t)m * p->c_rs;                                                \
            const TA *am = p->A + (ptrdiff_t)m * p->a_rs;                                         \
            if (p->a_cs == 1 && p->b_rs == 1) {                                                   \
                for (int n = 0; n < p->N; ++n) {                                                  \
                    const TB *bn = p->B + (ptrdiff_t)n * p->b_cs;                                 \
                    TU sum = p->accumulate ? (TU)c[n * p->c_cs] : 0;                              \
                    for (int k = 0; k < p->K; ++k) sum += (TU)(int64_t)am[k] * (TU)(int64_t)bn[k]; \
                    c[n * p->c_cs] = (TC)sum;                                                     \
                }                                                                                 \
                continue;                                                                         \
            }                                                                                     \
            if (!p->accumulate)                                                                   \
                for (int n = 0; n < p->N; ++n) c[n * p->c_cs] = 0;                                \
            const TA *a = p->A + (ptrdiff_t)m * p->a_rs;                                          \
            for (int k = 0; k < p->K; ++k) {                                                      \
                const TU av = (TU)(int64_t)a[k * p->a_cs];                                        \
                const TB *b = p->B + (ptrdiff_t)k * p->b_rs;                                      \
                for (int n = 0; n < p->N; ++n)                                                    \
                    c[n * p->c_cs] = (TC)((TU)c[n * p->c_cs] + av * (TU)(int64_t)b[n * p->b_cs]); \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    void NAME(RCTC_GEMM_ARGS(TA, TB, TC)) {                                                       \
        NAME##_args p;                                                                            \
        if (M <= 0 || N <= 0) return;                                                             \
        p.N = N; p.K = K < 0 ? 0 : K;                                                             \
        p.A = A; p.a_rs = a_rs; p.a_cs = a_cs;                                                    \
        p.B = B; p.b_rs = b_rs; p.b_cs = b_cs;                                                    \
        p.C = C; p.c_rs = c_rs; p.c_cs = c_cs;                                                    \
        p.accumulate = accumulate;                                                                \
        rctc_parallel_for(M, 1, rctc_threads_for(nthreads, (uint64_t)M * (uint64_t)N * (uint64_t)p.K), NAME##_rows, &p); \
    }

/* s32: products and sums in uint32 (defined wrap-around); s64: exact in int64. */
RCTC_DEFINE_GEMM_PORTABLE(rctc_gemm_s8s8s32_portable, int8_t, int8_t, int32_t, uint32_t)
RCTC_DEFINE_GEMM_PORTABLE(rctc_gemm_s8s8s64_portable, int8_t, int8_t, int64_t, uint64_t)
RCTC_DEFINE_GEMM_PORTABLE(rctc_gemm_s16s8s32_portable, int16_t, int8_t, int32_t, uint32_t)
RCTC_DEFINE_GEMM_PORTABLE(rctc_gemm_s16s8s64_portable, int16_t, int8_t, int64_t, uint64_t)
