/*
 * iq_core.c - the number format's small helpers: storage width, floor division and shift,
 * max magnitude (intref.core.storage_dtype, numpy's // and >>, intref.core.absmax; the AVX2
 * variant of the max magnitude where the CPU has it, same result).
 *
 * Needs: rctc_intops.h. Leaves: C's truncating / and implementation-defined >> of negative
 * values are never relied on; every result is numpy's.
 */
#include "iq.h"
#include "rctc_kernels.h"

int rctc_iq_width(int bits) { return bits <= 8 ? 1 : bits <= 16 ? 2 : 4; }

int64_t rctc_iq_floordiv(int64_t a, int64_t b) { return iq_fdiv(a, b); }

int64_t rctc_iq_sar(int64_t x, int s) { return iq_sar(x, s); }

uint64_t rctc_iq_absmax(size_t n, const int64_t *x) {
#if defined(__x86_64__) || defined(_M_X64)
    if (n >= 16 && (rctc_isa_available() & (1 << RCTC_ISA_AVX2))) return rctc_iq_absmax_avx2(n, x);
#endif
    return rctc_iq_absmax_portable(n, x);
}

uint64_t rctc_iq_absmax_portable(size_t n, const int64_t *x) {
    uint64_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint64_t a = iq_abs(x[i]);
        m = a > m ? a : m;
    }
    return m;
}
