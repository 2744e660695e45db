/* gemm_dispatch.c: a test fixture implementing rctc_model.h that runs the dispatched integer GEMMs
 * of the kernel library (on a Cortex-M4 the Arm DSP variants of arm/gemm_dsp.c, on the host the
 * portable or AVX2 ones) on the operands of rctc_data.c, for the shapes below, in the
 * dot-product layout (both operands K-contiguous: the DSP dot products), in a row-major B layout
 * accumulating into a preset C (the DSP path packing B's columns) and with a transposed A (its rows
 * packed too). The digest is CRC-32 over every C, in order; tests/native/test_gemm_dsp.py
 * computes the same from int64 numpy products.
 */
#include <stddef.h>
#include <stdint.h>

#include "rctc_data.h"
#include "rctc_digest.h"
#include "rctc_kernels.h"
#include "rctc_model.h"

#define CASES 11
static const int shapes[CASES][3] = {{1, 1, 1}, {2, 3, 3}, {3, 2, 4}, {4, 5, 5}, {2, 2, 8},
                                     {3, 3, 63}, {2, 4, 64}, {1, 3, 577}, {4, 5, 0},
                                     {2, 5, 577}, {4, 3, 300}};

union gemm_block {
    int64_t align;
    unsigned char b[RCTC_MODEL_ARENA_BYTES];
};

union gemm_block rctc_arena;
union gemm_block rctc_state; /* RCTC_MODEL_STATE_BYTES == RCTC_MODEL_ARENA_BYTES: the running CRC */

typedef char gemm_arena_check[(RCTC_MODEL_ARENA_BYTES >= 8 * 4 * 5) ? 1 : -1];

static uint32_t crc;

void rctc_model_init(void)
{
    crc = 0u;
}

static void preset32(int32_t *c, int n)
{
    for (int i = 0; i < n; i++) c[i] = (int32_t)(i * 7 - 3);
}

static void preset64(int64_t *c, int n)
{
    for (int i = 0; i < n; i++) c[i] = (int64_t)i * 7 - 3;
}

void rctc_model_train_steps(uint32_t first_step, uint32_t n)
{
    (void)first_step;
    (void)n;
    int32_t *c32 = (int32_t *)rctc_arena.b;
    int64_t *c64 = (int64_t *)rctc_arena.b;
    for (int t = 0; t < CASES; t++) {
        const int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        const size_t n32 = (size_t)(M * N) * sizeof(int32_t), n64 = (size_t)(M * N) * sizeof(int64_t);
        /* dot-product layout: A (M, K) row-major, B(k, n) = gb8[n * K + k] */
        rctc_gemm_s8s8s32(M, N, K, ga8, K, 1, gb8, 1, K, c32, N, 1, 0, 1);
        crc = rctc_crc32(crc, c32, n32);
        rctc_gemm_s8s8s64(M, N, K, ga8, K, 1, gb8, 1, K, c64, N, 1, 0, 1);
        crc = rctc_crc32(crc, c64, n64);
        rctc_gemm_s16s8s32(M, N, K, ga16, K, 1, gb8, 1, K, c32, N, 1, 0, 1);
        crc = rctc_crc32(crc, c32, n32);
        rctc_gemm_s16s8s64(M, N, K, ga16, K, 1, gb8, 1, K, c64, N, 1, 0, 1);
        crc = rctc_crc32(crc, c64, n64);
        /* row-major B(k, n) = gb8[k * N + n], accumulating into a preset C */
        preset32(c32, M * N);
        rctc_gemm_s8s8s32(M, N, K, ga8, K, 1, gb8, N, 1, c32, N, 1, 1, 1);
        crc = rctc_crc32(crc, c32, n32);
        preset64(c64, M * N);
        rctc_gemm_s16s8s64(M, N, K, ga16, K, 1, gb8, N, 1, c64, N, 1, 1, 1);
        crc = rctc_crc32(crc, c64, n64);
        /* the dot-product layout accumulating (the DSP path's accumulate) */
        preset32(c32, M * N);
        rctc_gemm_s16s8s32(M, N, K, ga16, K, 1, gb8, 1, K, c32, N, 1, 1, 1);
        crc = rctc_crc32(crc, c32, n32);
        /* row-major B, fresh, s8 x s8 -> s64 and s16 x s8 -> s32 */
        rctc_gemm_s8s8s64(M, N, K, ga8, K, 1, gb8, N, 1, c64, N, 1, 0, 1);
        crc = rctc_crc32(crc, c64, n64);
        rctc_gemm_s16s8s32(M, N, K, ga16, K, 1, gb8, N, 1, c32, N, 1, 0, 1);
        crc = rctc_crc32(crc, c32, n32);
        /* transposed A: A(m, k) = ga[k * M + m] (rows and columns packed) */
        rctc_gemm_s16s8s32(M, N, K, ga16, 1, M, gb8, N, 1, c32, N, 1, 0, 1);
        crc = rctc_crc32(crc, c32, n32);
        rctc_gemm_s8s8s64(M, N, K, ga8, 1, M, gb8, 1, K, c64, N, 1, 0, 1);
        crc = rctc_crc32(crc, c64, n64);
    }
}

uint32_t rctc_model_digest(void)
{
    return crc;
}
