/*
 * iq_reduce_to.c - the backward rules of Add / Sub / Mul (intref.arith.add_backward,
 * sub_backward, mul_backward): an exact int64 sum of a broadcast error back to an operand's
 * shape (intref.arith.reduce_to), then one rounding.
 *
 * Needs: rctc_intops.h; d C-contiguous of `shape`; red_strides address the operand (0 on its
 * broadcast axes). Leaves: work[j] = sum over the elements i mapping to j of sign d_i (m_i);
 * negation happens in d's storage (intref negates then casts to dq's dtype).
 */
#include "iq.h"

void rctc_iq_reduce_sum(int ndim, const int *shape, const void *d, int dw, int negate, const void *m, int mw,
                        const ptrdiff_t *m_strides, const ptrdiff_t *red_strides, size_t n_red, int64_t *work) {
    const size_t n = iq_prod(ndim, shape);
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    static const ptrdiff_t zeros[RCTC_IQ_MAXDIM] = {0};
    const ptrdiff_t *st[2] = {red_strides, m ? m_strides : zeros};
    for (size_t j = 0; j < n_red; ++j) work[j] = 0;
    for (size_t i = 0; i < n; ++i) {
        int64_t v = iq_ld(d, dw, i);
        if (negate) {
            int64_t t;
            iq_st(&t, dw, 0, iq_sub(0, v));
            v = iq_ld(&t, dw, 0);
        }
        if (m) v = iq_mul(v, iq_ld(m, mw, (size_t)off[1]));
        work[off[0]] = iq_add(work[off[0]], v);
        iq_next(ndim, shape, idx, 2, off, st);
    }
}

int rctc_iq_reduce_to(int ndim, const int *shape, const void *d, int dw, int negate, const void *m, int mw,
                      const ptrdiff_t *m_strides, const ptrdiff_t *red_strides, size_t n_red, int de, int bits,
                      const uint32_t *rand, int64_t *work, void *out, int *e_out) {
    rctc_iq_reduce_sum(ndim, shape, d, dw, negate, m, mw, m_strides, red_strides, n_red, work);
    return rctc_iq_requantize(n_red, work, de, bits, rand, out, e_out);
}
