/*
 * gemm_avx512.h - what gemm_avx512.c and its packing (gemm_pack_avx512.c) share; internal.
 *
 * Packed layouts (4-byte steps: 4 k of int8, or 2 k of int16, per 32-bit word):
 *   B block: nr-column panels (nr = 48 or 32), panel j at pb + j * steps * 4 nr; inside, step s at
 *     s * 4 nr, column c's word at 4 c: int8 B as u8 (b + 128) bytes, int16-widened B pairs for an int16 A; zero
 *     (u8 0, not 0x80) for k beyond the block. Columns past N in the last panel are not read.
 *   A block: 8-row strips, strip i at pa + i * steps * 32; step s at s * 32, row r's word at 4 r
 *     (signed int8 quads or int16 pairs, zero beyond the block and past M).
 *   An A block is read in place instead when it is K-contiguous and kc fills whole steps.
 *   corr[r]: the row's accumulator start, -128 * sum_k A(r, k) over the block (int8 A), else 0.
 */
#ifndef RCTC_GEMM_AVX512_H
#define RCTC_GEMM_AVX512_H

#include <stddef.h>
#include <stdint.h>

#define G512_MR 8
#define G512_NR_MAX 48 /* panel width nr: 48, or 32 where that wastes fewer columns */

typedef struct {
    int M, N, K;
    const void *A; /* int8, or int16 when wide */
    ptrdiff_t a_rs, a_cs;
    const int8_t *B;
    ptrdiff_t b_rs, b_cs;
    void *C;
    ptrdiff_t c_rs, c_cs;
    int accumulate, c64, wide, split_n, kc, nr;
} gemm512_args;

/* Pack B(k0 .. k0 + kc - 1, n0 .. n0 + nc - 1) (kc <= 512 int8 steps' worth) into out. */
void rctc_g512_pack_b(const gemm512_args *p, int k0, int kc, int n0, int nc, uint8_t *out);
/* Pack A(m0 .. m0 + mc - 1, k0 .. k0 + kc - 1) into out and the rows' corrections into corr. */
void rctc_g512_pack_a(const gemm512_args *p, int m0, int mc, int k0, int kc, uint8_t *out, int32_t *corr);
/* Only the corrections of rows m0 .. m0 + mc - 1 (for an A read in place). */
void rctc_g512_row_corr(const gemm512_args *p, int m0, int mc, int k0, int kc, int32_t *corr);

#endif /* RCTC_GEMM_AVX512_H */
