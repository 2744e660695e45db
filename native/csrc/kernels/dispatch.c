/*
 * dispatch.c - the public kernel entry points, bound at run time to the fastest variant.
 *
 * Needs: the portable kernels; on x86-64 the AVX2 files (compiled with -mavx2) and the
 * compiler's __builtin_cpu_supports (GCC, Clang).
 * Leaves: a variant is called only when this CPU (and OS) supports its instructions. The choice
 * is made once, on first use, and is the same for every thread (a benign race: each racer
 * computes the same value).
 */
#include "rctc_kernels.h"

static int rctc_isa_mask = -1;

int rctc_isa_available(void) {
    int mask = rctc_isa_mask;
    if (mask < 0) {
        mask = 1 << RCTC_ISA_PORTABLE;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) mask |= 1 << RCTC_ISA_AVX2;
#endif
        rctc_isa_mask = mask;
    }
    return mask;
}

static int rctc_isa(void) { return (rctc_isa_available() & (1 << RCTC_ISA_AVX2)) ? RCTC_ISA_AVX2 : RCTC_ISA_PORTABLE; }

const char *rctc_isa_name(void) { return rctc_isa() == RCTC_ISA_AVX2 ? "avx2" : "portable"; }

#if defined(__x86_64__) || defined(_M_X64)
#define RCTC_PICK(NAME) (rctc_isa() == RCTC_ISA_AVX2 ? NAME##_avx2 : NAME##_portable)
#elif defined(__ARM_FEATURE_DSP) && !defined(RCTC_PORTABLE_GEMM)
#define RCTC_PICK(NAME) NAME##_dsp /* arm/gemm_dsp.c: built for this core, always available */
#else
#define RCTC_PICK(NAME) NAME##_portable
#endif

#define RCTC_GEMM_CALL M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, c_cs, accumulate, nthreads

void rctc_gemm_s8s8s32(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t)) { RCTC_PICK(rctc_gemm_s8s8s32)(RCTC_GEMM_CALL); }
void rctc_gemm_s8s8s64(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t)) { RCTC_PICK(rctc_gemm_s8s8s64)(RCTC_GEMM_CALL); }
void rctc_gemm_s16s8s32(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t)) { RCTC_PICK(rctc_gemm_s16s8s32)(RCTC_GEMM_CALL); }
void rctc_gemm_s16s8s64(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t)) { RCTC_PICK(rctc_gemm_s16s8s64)(RCTC_GEMM_CALL); }

/* s8 x s16 is the transposed s16 x s8 product: C^T(n, m) = sum_k B^T(n, k) A^T(k, m). */
void rctc_gemm_s8s16s32(RCTC_GEMM_ARGS(int8_t, int16_t, int32_t)) {
    rctc_gemm_s16s8s32(N, M, K, B, b_cs, b_rs, A, a_cs, a_rs, C, c_cs, c_rs, accumulate, nthreads);
}
void rctc_gemm_s8s16s64(RCTC_GEMM_ARGS(int8_t, int16_t, int64_t)) {
    rctc_gemm_s16s8s64(N, M, K, B, b_cs, b_rs, A, a_cs, a_rs, C, c_cs, c_rs, accumulate, nthreads);
}
