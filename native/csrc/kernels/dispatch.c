/*
 * dispatch.c - the public kernel entry points, bound at run time to the fastest variant.
 *
 * Needs: the portable kernels; on x86-64 the AVX2 files (compiled with -mavx2), the AVX-512
 * VNNI files (-mavx512f -mavx512bw -mavx512vl -mavx512vnni) and GCC / Clang (<cpuid.h>,
 * inline assembly for xgetbv).
 * Leaves: a variant is called only when this CPU supports its instructions AND the OS saves
 * their register state (XCR0: bits 1-2 for AVX2's ymm, bits 1-2 and 5-7 for AVX-512's opmask
 * and zmm registers). Preference: avx512vnni > avx2 > portable. The environment variable
 * RCTC_ISA=portable|avx2|avx512vnni caps the choice (variants above it count as absent, for
 * every kernel that dispatches, not only the GEMMs); another value, or a variant this CPU
 * lacks, leaves the best one available. The choice is made once, on first use, and is the
 * same for every thread (a benign race: each racer computes the same value).
 */
#include "rctc_kernels.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define RCTC_X86_DETECT 1
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

/* The OS-enabled state components (XCR0), 0 when the OS has not enabled XSAVE. */
static unsigned long long xcr0(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* Hardware mask of the x86 variants (1 << RCTC_ISA_*), from cpuid and XCR0. */
static int x86_mask(void) {
    unsigned a, b, c, d;
    int mask = 0;
    const unsigned long long x = xcr0();
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int ymm_os = (x & 0x6) == 0x6, zmm_os = (x & 0xE6) == 0xE6;
    if (ymm_os && (b & (1u << 5))) mask |= 1 << RCTC_ISA_AVX2;
    const unsigned avx512 = (1u << 16) | (1u << 30) | (1u << 31); /* F, BW, VL (leaf 7 EBX) */
    if (zmm_os && (mask & (1 << RCTC_ISA_AVX2)) && (b & avx512) == avx512 && (c & (1u << 11))) /* VNNI (ECX) */
        mask |= 1 << RCTC_ISA_AVX512VNNI;
    return mask;
}
#endif

#ifdef RCTC_X86_DETECT
/* The highest variant RCTC_ISA allows (RCTC_ISA_AVX512VNNI when unset or unknown). Only where
 * there are variants to choose from: a bare-metal build makes no libc call here. */
static int isa_cap(void) {
    const char *env = getenv("RCTC_ISA");
    if (env == NULL) return RCTC_ISA_AVX512VNNI;
    if (strcmp(env, "portable") == 0) return RCTC_ISA_PORTABLE;
    if (strcmp(env, "avx2") == 0) return RCTC_ISA_AVX2;
    return RCTC_ISA_AVX512VNNI;
}
#endif

static int rctc_isa_mask = -1;

int rctc_isa_available(void) {
    int mask = rctc_isa_mask;
    if (mask < 0) {
        mask = 1 << RCTC_ISA_PORTABLE;
#ifdef RCTC_X86_DETECT
        mask |= x86_mask();
        mask &= (2 << isa_cap()) - 1;
#endif
        rctc_isa_mask = mask;
    }
    return mask;
}

static int rctc_isa(void) {
    const int mask = rctc_isa_available();
    return (mask & (1 << RCTC_ISA_AVX512VNNI)) ? RCTC_ISA_AVX512VNNI
           : (mask & (1 << RCTC_ISA_AVX2))     ? RCTC_ISA_AVX2
                                               : RCTC_ISA_PORTABLE;
}

int rctc_cpu_has_avx512dq(void) {
#ifdef RCTC_X86_DETECT
    static int dq = -1; /* a benign race: each racer computes the same value */
    if (dq < 0) {
        unsigned a, b, c, d;
        dq = 0;
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, a, b, c, d);
            dq = (b >> 17) & 1u;
        }
    }
    return dq;
#else
    return 0;
#endif
}

const char *rctc_isa_name(void) {
    static const char *const names[] = {"portable", "avx2", "avx512vnni"};
    return names[rctc_isa()];
}

#if defined(__x86_64__) || defined(_M_X64)
#define RCTC_PICK(NAME) (rctc_isa() == RCTC_ISA_AVX512VNNI ? NAME##_avx512vnni : rctc_isa() == RCTC_ISA_AVX2 ? NAME##_avx2 : NAME##_portable)
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
