/*
 * iq_add.c - Add / Sub with exponent alignment (intref.arith.add, sub).
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape. Leaves: both
 * operands brought to intref.core.align's exponent (exact left shifts unless that passes 2^61,
 * then nearest), summed (or subtracted) exactly, one rounding to bits (stochastic with rand).
 */
#include "iq.h"

static int64_t shifted(int64_t v, int k) {
    if (k >= 0) return k > 63 ? 0 : iq_shl(v, k);
    return -k > 62 ? 0 : iq_sar(v + ((int64_t)1 << (-k - 1)), -k);
}

int rctc_iq_add(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand, int64_t *work,
                void *out, int *e_out) {
    const size_t n = iq_prod(ndim, shape);
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    const ptrdiff_t *st[2] = {as, bs};
    uint64_t m[2] = {0, 0};
    for (size_t i = 0; i < n; ++i) {
        const uint64_t x = iq_abs(iq_ld(a, aw, (size_t)off[0])), y = iq_abs(iq_ld(b, bw, (size_t)off[1]));
        m[0] = x > m[0] ? x : m[0];
        m[1] = y > m[1] ? y : m[1];
        iq_next(ndim, shape, idx, 2, off, st);
    }
    const int exps[2] = {ea, eb};
    const int ec = rctc_iq_align_exp(2, m, exps, 61);
    const int ka = ea - ec, kb = eb - ec;
    for (int o = 0; o < 2; ++o) {
        const int k = o ? kb : ka;
        if (k > 0 && m[o] > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
        if (k < 0 && m[o] > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    }
    off[0] = off[1] = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = shifted(iq_ld(a, aw, (size_t)off[0]), ka), y = shifted(iq_ld(b, bw, (size_t)off[1]), kb);
        work[i] = subtract ? iq_sub(x, y) : iq_add(x, y);
        iq_next(ndim, shape, idx, 2, off, st);
    }
    return rctc_iq_requantize(n, work, ec, bits, rand, out, e_out);
}
