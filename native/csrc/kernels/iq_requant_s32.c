/*
 * iq_requant_s32.c - requantise of an int32 accumulator without widening it first
 * (rctc_iq_requantize's bits for the same values read as int64).
 *
 * Needs: rctc_intops.h, rctc_kernels.h (the int32 max magnitude, the ISA check). Leaves: out and
 * *e_out exactly as rctc_iq_requantize(n, (int64) acc, ...) gives them: the shift from max |acc|
 * (below 2^32, so never past the 2^62 overflow bound and never above 62), then one rounding per
 * element; the int64 values go through a small block on the stack (no n-element scratch, one
 * pass over the accumulator after the maximum). The int8 rounding runs the AVX2 loop where the
 * CPU has it, as requantize does.
 */
#include "iq.h"
#include "rctc_kernels.h"

#define BLOCK 512

static void round_block(size_t n, const int64_t *x, int s, const uint32_t *rand, int w, void *out) {
    if (w == 1) {
#if defined(__x86_64__) || defined(_M_X64)
        if (rctc_isa_available() & (1 << RCTC_ISA_AVX2)) {
            rctc_iq_round_s8_avx2(n, x, s, rand, (int8_t *)out);
            return;
        }
#endif
        rctc_iq_round_s8_portable(n, x, s, rand, (int8_t *)out);
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const int64_t r = !rand ? (int64_t)1 << (s - 1)
                          : s <= 32 ? (int64_t)(rand[i] >> (32 - s)) : (int64_t)((uint64_t)rand[i] << (s - 32));
        iq_st(out, w, i, iq_sar(x[i] + r, s));
    }
}

int rctc_iq_requantize_s32(size_t n, const int32_t *acc, int e_acc, int bits, const uint32_t *rand, void *out,
                           int *e_out) {
    const uint64_t m = rctc_absmax_s32(n, acc);
    const int w = rctc_iq_width(bits);
    const int s = rctc_iq_requant_shift(m, bits, rand != NULL);
    if (s == 0) {
        for (size_t i = 0; i < n; ++i) iq_st(out, w, i, acc[i]);
    } else {
        int64_t x[BLOCK];
        for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
            const size_t c = n - i0 < BLOCK ? n - i0 : BLOCK;
            for (size_t i = 0; i < c; ++i) x[i] = acc[i0 + i];
            round_block(c, x, s, rand ? rand + i0 : NULL, w, (unsigned char *)out + i0 * (size_t)w);
        }
    }
    *e_out = e_acc + s;
    return RCTC_IQ_OK;
}
