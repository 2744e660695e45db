/*
 * iq_add.c - Add / Sub with exponent alignment (intref.arith.add, sub).
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape. Leaves: both
 * operands brought to intref.core.align's exponent (exact left shifts unless that passes 2^61,
 * then nearest), summed (or subtracted) exactly, one rounding to bits (stochastic with rand).
 * Operands of the output's own dense layout (no broadcast) take typed loops without the
 * per-element multi-index; the same integers either way.
 */
#include "iq.h"

static int64_t shifted(int64_t v, int k) {
    if (k >= 0) return k > 63 ? 0 : iq_shl(v, k);
    return -k > 62 ? 0 : iq_sar(v + ((int64_t)1 << (-k - 1)), -k);
}

/* whether strides st read shape's elements in C order, one after another (no broadcast) */
static int dense(int ndim, const int *shape, const ptrdiff_t *st) {
    ptrdiff_t want = 1;
    for (int d = ndim - 1; d >= 0; --d) {
        if (shape[d] != 1 && st[d] != want) return 0;
        want *= shape[d];
    }
    return 1;
}

#define RCTC_TYPED(W, BODY)                                                                                   \
    switch (W) {                                                                                              \
    case 1: { const int8_t *x = (const int8_t *)p; BODY; } break;                                           \
    case 2: { const int16_t *x = (const int16_t *)p; BODY; } break;                                         \
    case 4: { const int32_t *x = (const int32_t *)p; BODY; } break;                                         \
    default: { const int64_t *x = (const int64_t *)p; BODY; } break;                                        \
    }

/* dst (op 0: =, 1: +=, 2: -=) the dense operand p shifted by k as shifted() does */
static void shift_into(const void *p, int w, size_t n, int k, int op, int64_t *dst) {
    if (k >= 0) {
        const int z = k > 63, sh = z ? 0 : k;
        if (op == 0) RCTC_TYPED(w, for (size_t i = 0; i < n; ++i) dst[i] = z ? 0 : iq_shl(x[i], sh))
        else if (op == 1) RCTC_TYPED(w, for (size_t i = 0; i < n; ++i) dst[i] = iq_add(dst[i], z ? 0 : iq_shl(x[i], sh)))
        else RCTC_TYPED(w, for (size_t i = 0; i < n; ++i) dst[i] = iq_sub(dst[i], z ? 0 : iq_shl(x[i], sh)))
    } else {
        for (size_t i0 = 0; i0 < n; i0 += 256) {
            const size_t c = n - i0 < 256 ? n - i0 : 256;
            int64_t v[256];
            RCTC_TYPED(w, for (size_t i = 0; i < c; ++i) v[i] = shifted(x[i0 + i], k))
            if (op == 0) for (size_t i = 0; i < c; ++i) dst[i0 + i] = v[i];
            else if (op == 1) for (size_t i = 0; i < c; ++i) dst[i0 + i] = iq_add(dst[i0 + i], v[i]);
            else for (size_t i = 0; i < c; ++i) dst[i0 + i] = iq_sub(dst[i0 + i], v[i]);
        }
    }
}

int rctc_iq_add_exps(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                     int bw, const ptrdiff_t *bs, int eb, int *ka, int *kb, int *ec) {
    const size_t n = iq_prod(ndim, shape);
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    const ptrdiff_t *st[2] = {as, bs};
    uint64_t m[2] = {0, 0};
    const int fast = dense(ndim, shape, as) && dense(ndim, shape, bs);
    if (fast) {
        m[0] = iq_absmax_w(a, aw, n);
        m[1] = iq_absmax_w(b, bw, n);
    }
    for (size_t i = 0; !fast && i < n; ++i) {
        const uint64_t x = iq_abs(iq_ld(a, aw, (size_t)off[0])), y = iq_abs(iq_ld(b, bw, (size_t)off[1]));
        m[0] = x > m[0] ? x : m[0];
        m[1] = y > m[1] ? y : m[1];
        iq_next(ndim, shape, idx, 2, off, st);
    }
    const int exps[2] = {ea, eb};
    *ec = rctc_iq_align_exp(2, m, exps, 61);
    *ka = ea - *ec;
    *kb = eb - *ec;
    for (int o = 0; o < 2; ++o) {
        const int k = o ? *kb : *ka;
        if (k > 0 && m[o] > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
        if (k < 0 && m[o] > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    }
    return RCTC_IQ_OK;
}

void rctc_iq_add_range(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ka,
                       const void *b, int bw, const ptrdiff_t *bs, int kb, int subtract, size_t start, size_t count,
                       int64_t *dst) {
    if (dense(ndim, shape, as) && dense(ndim, shape, bs)) {
        shift_into((const char *)a + start * (size_t)aw, aw, count, ka, 0, dst);
        shift_into((const char *)b + start * (size_t)bw, bw, count, kb, subtract ? 2 : 1, dst);
        return;
    }
    int idx[RCTC_IQ_MAXDIM] = {0};
    ptrdiff_t off[2] = {0, 0};
    const ptrdiff_t *st[2] = {as, bs};
    size_t rest = start;
    for (int d = ndim - 1; d >= 0; --d) { /* the multi-index of element start */
        idx[d] = (int)(rest % (size_t)shape[d]);
        rest /= (size_t)shape[d];
        off[0] += idx[d] * as[d];
        off[1] += idx[d] * bs[d];
    }
    for (size_t i = 0; i < count; ++i) {
        const int64_t x = shifted(iq_ld(a, aw, (size_t)off[0]), ka), y = shifted(iq_ld(b, bw, (size_t)off[1]), kb);
        dst[i] = subtract ? iq_sub(x, y) : iq_add(x, y);
        iq_next(ndim, shape, idx, 2, off, st);
    }
}

int rctc_iq_add(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand, int64_t *work,
                void *out, int *e_out) {
    const size_t n = iq_prod(ndim, shape);
    int ka, kb, ec;
    const int rc = rctc_iq_add_exps(ndim, shape, a, aw, as, ea, b, bw, bs, eb, &ka, &kb, &ec);
    if (rc) return rc;
    if (aw == 1 && bw == 1 && ka >= 0 && kb >= 0 && ka <= 22 && kb <= 22 && rctc_iq_width(bits) == 1 &&
        dense(ndim, shape, as) && dense(ndim, shape, bs)) {
        /* dense int8 operands shifted left by at most 22: |sum| <= 2^30, exact in int32; the int32
         * requantise (AVX2 passes) gives rctc_iq_requantize's bits for the same values */
        const int8_t *x = (const int8_t *)a, *y = (const int8_t *)b;
        int32_t *v = (int32_t *)(void *)work;
        const int32_t sg = subtract ? -1 : 1;
        for (size_t i = 0; i < n; ++i)
            v[i] = (int32_t)((uint32_t)(int32_t)x[i] << ka) + sg * (int32_t)((uint32_t)(int32_t)y[i] << kb);
        return rctc_iq_requantize_s32(n, v, ec, bits, rand, out, e_out);
    }
    rctc_iq_add_range(ndim, shape, a, aw, as, ka, b, bw, bs, kb, subtract, 0, n, work);
    return rctc_iq_requantize(n, work, ec, bits, rand, out, e_out);
}
