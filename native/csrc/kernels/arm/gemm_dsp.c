/*
 * arm/gemm_dsp.c - the GEMMs with the Arm DSP extension (Cortex-M4 / M7 / M33: SMLAD, SMLALD).
 *
 * Needs: __ARM_FEATURE_DSP (arm_acle.h); elsewhere this file defines nothing. Leaves the same
 * bits as gemm.c's portable kernels (tested under QEMU against int64 numpy:
 * tests/native/test_gemm_dsp.py). Where A is K-contiguous (a_cs == 1) each C element is one dot
 * product: against B directly where B is K-contiguous too (b_rs == 1: the weight gradients, a
 * GEMM against a stored weight), else against one column of B packed on the stack, RCTC_K_BLOCK
 * k at a time, once per column for all M rows (the forward conv's row-major im2col columns);
 * four k at a time: SXTB16 widens int8 pairs (k, k+2) and (k+1, k+3) to int16, an int16
 * A is repacked into the same pairs, and SMLAD (s32: the sum modulo 2^32, as the portable
 * kernel's uint32 sum) or SMLALD (s64: exact) adds both products of a pair. A strided A (the
 * conv data gradient's transposed weight) is packed too: RCTC_N_BLOCK columns of B, then each
 * pair of A rows once per block (at most 2 KB of stack in all). Rows of A go in pairs: B's
 * pairs are widened once for two dot products. Single-threaded (the device has
 * one core): nthreads is not read.
 */
#include "rctc_kernels.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#include <string.h>

static inline uint32_t ld32(const void *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline uint32_t ror8(uint32_t w)
{
    return (w >> 8) | (w << 24);
}

/* int8 a[k..k+3] as int16 pairs (a0, a2) and (a1, a3) */
#define RCTC_PAIRS_S8(P, LO, HI)                                                                  \
    do {                                                                                          \
        const uint32_t w_ = ld32(P);                                                              \
        LO = (int32_t)__sxtb16((int32_t)w_);                                                      \
        HI = (int32_t)__sxtb16((int32_t)ror8(w_));                                                \
    } while (0)

/* int16 a[k..k+3] as pairs (a0, a2) and (a1, a3) */
#define RCTC_PAIRS_S16(P, LO, HI)                                                                 \
    do {                                                                                          \
        const uint32_t w01_ = ld32(P), w23_ = ld32((P) + 2);                                      \
        LO = (int32_t)((w01_ & 0xFFFFu) | (w23_ << 16));                                          \
        HI = (int32_t)((w01_ >> 16) | (w23_ & 0xFFFF0000u));                                      \
    } while (0)

/* K_BLOCK int8 of a strided B column are packed on the stack (the forward conv's row-major columns) */
#define RCTC_K_BLOCK 256
#define RCTC_N_BLOCK 4 /* columns of B packed at once for a strided A (1 KB of stack) */
/* rows of A go in pairs: one widening of B's pairs serves both */

#define RCTC_DEFINE_GEMM_DSP(NAME, TA, TC, PAIRS_A, MAC, SUMT)                                    \
    static SUMT NAME##_dot(const TA *a, const int8_t *b, int K, SUMT sum)                         \
    {                                                                                             \
        int k = 0;                                                                                \
        for (; k + 4 <= K; k += 4) {                                                              \
            int32_t a02, a13, b02, b13;                                                           \
            PAIRS_A(a + k, a02, a13);                                                             \
            RCTC_PAIRS_S8(b + k, b02, b13);                                                       \
            sum = MAC(a02, b02, sum);                                                             \
            sum = MAC(a13, b13, sum);                                                             \
        }                                                                                         \
        for (; k < K; ++k) sum += (SUMT)((int32_t)a[k] * (int32_t)b[k]);                         \
        return sum;                                                                               \
    }                                                                                             \
                                                                                                  \
    /* rows a0 and a1 against one column b (b's pairs widened once for both): c0, c1 */          \
    static void NAME##_dot2(const TA *a0, const TA *a1, const int8_t *b, int K, TC *c0, TC *c1,   \
                            int from_c)                                                           \
    {                                                                                             \
        SUMT s0 = from_c ? (SUMT)*c0 : 0, s1 = from_c ? (SUMT)*c1 : 0;                            \
        int k = 0;                                                                                \
        for (; k + 4 <= K; k += 4) {                                                              \
            int32_t x02, x13, y02, y13, b02, b13;                                                 \
            RCTC_PAIRS_S8(b + k, b02, b13);                                                       \
            PAIRS_A(a0 + k, x02, x13);                                                            \
            PAIRS_A(a1 + k, y02, y13);                                                            \
            s0 = MAC(x02, b02, s0);                                                               \
            s0 = MAC(x13, b13, s0);                                                               \
            s1 = MAC(y02, b02, s1);                                                               \
            s1 = MAC(y13, b13, s1);                                                               \
        }                                                                                         \
        for (; k < K; ++k) {                                                                      \
            s0 += (SUMT)((int32_t)a0[k] * (int32_t)b[k]);                                         \
            s1 += (SUMT)((int32_t)a1[k] * (int32_t)b[k]);                                         \
        }                                                                                         \
        *c0 = (TC)s0;                                                                             \
        *c1 = (TC)s1;                                                                             \
    }                                                                                             \
                                                                                                  \
    /* column n of C (rows 0..M-1, A rows a_rs apart) from one K-contiguous column b, rows paired */ \
    static void NAME##_column(int M, const TA *A, ptrdiff_t a_rs, const int8_t *b, int K, TC *c,  \
                              ptrdiff_t c_rs, int from_c)                                         \
    {                                                                                             \
        int m = 0;                                                                                \
        for (; m + 2 <= M; m += 2)                                                                \
            NAME##_dot2(A + (ptrdiff_t)m * a_rs, A + (ptrdiff_t)(m + 1) * a_rs, b, K,             \
                        c + (ptrdiff_t)m * c_rs, c + (ptrdiff_t)(m + 1) * c_rs, from_c);          \
        if (m < M) {                                                                              \
            TC *cm = c + (ptrdiff_t)m * c_rs;                                                     \
            *cm = (TC)NAME##_dot(A + (ptrdiff_t)m * a_rs, b, K, from_c ? (SUMT)*cm : 0);          \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* A strided along K: RCTC_N_BLOCK columns of B and then one row of A at a time packed */     \
    static void NAME##_strided(int M, int N, int K, const TA *A, ptrdiff_t a_rs, ptrdiff_t a_cs,  \
                               const int8_t *B, ptrdiff_t b_rs, ptrdiff_t b_cs, TC *C,            \
                               ptrdiff_t c_rs, ptrdiff_t c_cs, int accumulate)                    \
    {                                                                                             \
        int8_t cols[RCTC_N_BLOCK][RCTC_K_BLOCK];                                                  \
        TA rows[2][RCTC_K_BLOCK];                                                                 \
        for (int n0 = 0; n0 < N; n0 += RCTC_N_BLOCK) {                                            \
            const int nb = N - n0 < RCTC_N_BLOCK ? N - n0 : RCTC_N_BLOCK;                         \
            for (int k0 = 0; k0 < K || k0 == 0; k0 += RCTC_K_BLOCK) {                             \
                const int kn = K - k0 < RCTC_K_BLOCK ? K - k0 : RCTC_K_BLOCK;                     \
                for (int j = 0; j < nb; ++j) {                                                    \
                    const int8_t *bn = B + (ptrdiff_t)k0 * b_rs + (ptrdiff_t)(n0 + j) * b_cs;     \
                    for (int k = 0; k < kn; ++k) cols[j][k] = bn[(ptrdiff_t)k * b_rs];            \
                }                                                                                 \
                for (int m = 0; m < M; m += 2) {                                                  \
                    const int mb = M - m < 2 ? M - m : 2;                                         \
                    for (int i = 0; i < mb; ++i) {                                                \
                        const TA *am = A + (ptrdiff_t)(m + i) * a_rs + (ptrdiff_t)k0 * a_cs;      \
                        for (int k = 0; k < kn; ++k) rows[i][k] = am[(ptrdiff_t)k * a_cs];        \
                    }                                                                             \
                    for (int j = 0; j < nb; ++j)                                                  \
                        NAME##_column(mb, rows[0], RCTC_K_BLOCK, cols[j], kn,                     \
                                      C + (ptrdiff_t)m * c_rs + (ptrdiff_t)(n0 + j) * c_cs, c_rs, \
                                      k0 > 0 || accumulate);                                      \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    void NAME##_dsp(RCTC_GEMM_ARGS(TA, int8_t, TC))                                               \
    {                                                                                             \
        (void)nthreads;                                                                           \
        if (a_cs != 1) {                                                                          \
            NAME##_strided(M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, c_cs, accumulate);     \
            return;                                                                               \
        }                                                                                         \
        if (b_rs == 1) {                                                                          \
            for (int n = 0; n < N; ++n)                                                           \
                NAME##_column(M, A, a_rs, B + (ptrdiff_t)n * b_cs, K, C + (ptrdiff_t)n * c_cs,    \
                              c_rs, accumulate);                                                  \
            return;                                                                               \
        }                                                                                         \
        int8_t col[RCTC_K_BLOCK];                                                                 \
        for (int n = 0; n < N; ++n)                                                               \
            for (int k0 = 0; k0 < K || k0 == 0; k0 += RCTC_K_BLOCK) {                             \
                const int kn = K - k0 < RCTC_K_BLOCK ? K - k0 : RCTC_K_BLOCK;                     \
                const int8_t *bn = B + (ptrdiff_t)k0 * b_rs + (ptrdiff_t)n * b_cs;                \
                for (int k = 0; k < kn; ++k) col[k] = bn[(ptrdiff_t)k * b_rs];                    \
                NAME##_column(M, A + k0, a_rs, col, kn, C + (ptrdiff_t)n * c_cs, c_rs,            \
                              k0 > 0 || accumulate);                                              \
            }                                                                                     \
    }

/* s32: SMLAD's 32-bit sum wraps as the portable kernel's uint32 sum does */
#define RCTC_MAC32(A_, B_, S_) ((uint32_t)__smlad((int16x2_t)(A_), (int16x2_t)(B_), (int32_t)(S_)))
#define RCTC_MAC64(A_, B_, S_) ((int64_t)__smlald((int16x2_t)(A_), (int16x2_t)(B_), (int64_t)(S_)))

RCTC_DEFINE_GEMM_DSP(rctc_gemm_s8s8s32, int8_t, int32_t, RCTC_PAIRS_S8, RCTC_MAC32, uint32_t)
RCTC_DEFINE_GEMM_DSP(rctc_gemm_s8s8s64, int8_t, int64_t, RCTC_PAIRS_S8, RCTC_MAC64, int64_t)
RCTC_DEFINE_GEMM_DSP(rctc_gemm_s16s8s32, int16_t, int32_t, RCTC_PAIRS_S16, RCTC_MAC32, uint32_t)
RCTC_DEFINE_GEMM_DSP(rctc_gemm_s16s8s64, int16_t, int64_t, RCTC_PAIRS_S16, RCTC_MAC64, int64_t)

#else
typedef int rctc_gemm_dsp_not_built; /* no DSP extension here: the portable kernels serve */
#endif
