/*
 * iq_mul.c - Mul (intref.arith.mul): the exact product at ea + eb, one rounding.
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape. Operands of at
 * most 16 bits that are dense or repeated along leading axes (a scalar, a row: iq_period), to at
 * most 8 bits, take int32 products (|a b| <= 2^30) in runs along each operand's period and the
 * int32 requantise at their max: rctc_iq_requantize's bits for the same values. Otherwise the
 * int64 products at every multi-index.
 */
#include "iq.h"
#include "rctc_kernels.h"

#define RCTC_MUL_RUN(TX, TY)                                                                                  \
    {                                                                                                         \
        const TX *px = (const TX *)x;                                                                         \
        const TY *py = (const TY *)y;                                                                         \
        if (scalar) {                                                                                         \
            const int32_t c = py[0];                                                                          \
            for (size_t i = 0; i < n; ++i) v[i] = (int32_t)px[i] * c;                                        \
        } else {                                                                                              \
            for (size_t i = 0; i < n; ++i) v[i] = (int32_t)px[i] * (int32_t)py[i];                           \
        }                                                                                                     \
    }                                                                                                         \
    break;

/* v = x y for int8 / int16 operands (|v| <= 2^30; scalar: y[0] for every element), max |v| */
static uint32_t mul_run_s32(size_t n, const void *x, int aw, const void *y, int bw, int scalar, int32_t *v) {
    switch (aw * 8 + bw) {
    case 1 * 8 + 1: RCTC_MUL_RUN(int8_t, int8_t)
    case 1 * 8 + 2: RCTC_MUL_RUN(int8_t, int16_t)
    case 2 * 8 + 1: RCTC_MUL_RUN(int16_t, int8_t)
    default: RCTC_MUL_RUN(int16_t, int16_t)
    }
    return rctc_absmax_s32(n, v);
}

int rctc_iq_mul(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int bits, const uint32_t *rand, int64_t *work, void *out,
                int *e_out) {
    const size_t n = iq_prod(ndim, shape);
    size_t la = iq_period(ndim, shape, as), lb = iq_period(ndim, shape, bs);
    if (n && la && lb && aw <= 2 && bw <= 2 && rctc_iq_width(bits) == 1) {
        int32_t *v = (int32_t *)(void *)work;
        const char *x = (const char *)a, *y = (const char *)b;
        if (la == 1 && lb > 1) { /* the scalar second (the product is exact: the same integers) */
            const char *t = x;
            const int tw = aw;
            x = y, y = t, aw = bw, bw = tw, la = lb, lb = 1;
        }
        uint32_t mx = 0;
        size_t ia = 0, ib = 0;
        for (size_t i = 0; i < n;) {
            size_t c = n - i;
            c = la - ia < c ? la - ia : c;
            if (lb > 1) c = lb - ib < c ? lb - ib : c; /* lb == 1: y[0] along the whole run */
            const uint32_t m = mul_run_s32(c, x + ia * (size_t)aw, aw, y + ib * (size_t)bw, bw, lb == 1, v + i);
            mx = m > mx ? m : mx;
            i += c;
            ia = ia + c == la ? 0 : ia + c;
            ib = lb == 1 || ib + c == lb ? 0 : ib + c;
        }
        return rctc_iq_requantize_s32_max_mt(1, n, v, mx, ea + eb, bits, rand, out, e_out);
    }
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    const ptrdiff_t *st[2] = {as, bs};
    for (size_t i = 0; i < n; ++i) {
        work[i] = iq_mul(iq_ld(a, aw, (size_t)off[0]), iq_ld(b, bw, (size_t)off[1]));
        iq_next(ndim, shape, idx, 2, off, st);
    }
    return rctc_iq_requantize(n, work, ea + eb, bits, rand, out, e_out);
}
