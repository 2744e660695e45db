/*
 * iq_mul.c - Mul (intref.arith.mul): the exact product at ea + eb, one rounding.
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape.
 */
#include "iq.h"

int rctc_iq_mul(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int bits, const uint32_t *rand, int64_t *work, void *out,
                int *e_out) {
    const size_t n = iq_prod(ndim, shape);
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    const ptrdiff_t *st[2] = {as, bs};
    for (size_t i = 0; i < n; ++i) {
        work[i] = iq_mul(iq_ld(a, aw, (size_t)off[0]), iq_ld(b, bw, (size_t)off[1]));
        iq_next(ndim, shape, idx, 2, off, st);
    }
    return rctc_iq_requantize(n, work, ea + eb, bits, rand, out, e_out);
}
