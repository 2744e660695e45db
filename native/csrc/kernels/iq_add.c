/*
 * iq_add.c - Add / Sub with exponent alignment (intref.arith.add, sub).
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape. Leaves: both
 * operands brought to intref.core.align's exponent (exact left shifts unless that passes 2^61,
 * then nearest), summed (or subtracted) exactly, one rounding to bits (stochastic with rand).
 * Operands of the output's own dense layout (no broadcast) take typed loops without the
 * per-element multi-index, over blocks of the sum that are made twice (for its max, then for
 * the rounding) instead of one int64 copy of the whole sum; int8 operands whose shifts keep the
 * sum within 2^30 are summed in int32 and requantised by the int32 kernel. The same integers
 * every way.
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

#define BLOCK 256

/* v[0 .. c) = elements i0 .. i0 + c - 1 of the aligned sum (or difference) of two dense operands */
static void sum_block(const void *a, int aw, int ka, const void *b, int bw, int kb, int subtract, size_t i0,
                      size_t c, int64_t *v) {
    shift_into((const unsigned char *)a + i0 * (size_t)aw, aw, c, ka, 0, v);
    shift_into((const unsigned char *)b + i0 * (size_t)bw, bw, c, kb, subtract ? 2 : 1, v);
}

int rctc_iq_add(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand, int64_t *work,
                void *out, int *e_out) {
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
    const int ec = rctc_iq_align_exp(2, m, exps, 61);
    const int ka = ea - ec, kb = eb - ec;
    for (int o = 0; o < 2; ++o) {
        const int k = o ? kb : ka;
        if (k > 0 && m[o] > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
        if (k < 0 && m[o] > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    }
    if (fast && aw == 1 && bw == 1 && ka >= 0 && kb >= 0 && ka <= 22 && kb <= 22 && rctc_iq_width(bits) == 1) {
        /* int8 operands shifted left by at most 22: |sum| <= 2^30, exact in int32; the int32
         * requantise (AVX2 passes) gives rctc_iq_requantize's bits for the same values */
        const int8_t *x = (const int8_t *)a, *y = (const int8_t *)b;
        int32_t *v = (int32_t *)(void *)work;
        const int32_t sg = subtract ? -1 : 1;
        for (size_t i = 0; i < n; ++i)
            v[i] = (int32_t)((uint32_t)(int32_t)x[i] << ka) + sg * (int32_t)((uint32_t)(int32_t)y[i] << kb);
        return rctc_iq_requantize_s32(n, v, ec, bits, rand, out, e_out);
    }
    if (fast) { /* twice over blocks of the sum, never stored whole: its max, then its rounding */
        const int w = rctc_iq_width(bits);
        int64_t v[BLOCK];
        uint64_t mv = 0;
        for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
            const size_t c = n - i0 < BLOCK ? n - i0 : BLOCK;
            sum_block(a, aw, ka, b, bw, kb, subtract, i0, c, v);
            const uint64_t mb = rctc_iq_absmax(c, v);
            mv = mb > mv ? mb : mv;
        }
        const int s = rctc_iq_requant_shift(mv, bits, rand != NULL);
        if (s > 0 && mv > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
        for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
            const size_t c = n - i0 < BLOCK ? n - i0 : BLOCK;
            sum_block(a, aw, ka, b, bw, kb, subtract, i0, c, v);
            if (s == 0)
                for (size_t i = 0; i < c; ++i) iq_st(out, w, i0 + i, v[i]);
            else if (s > 62)
                for (size_t i = 0; i < c; ++i) iq_st(out, w, i0 + i, 0);
            else
                iq_round_block(c, v, s, rand ? rand + i0 : NULL, w, (unsigned char *)out + i0 * (size_t)w);
        }
        *e_out = ec + s;
        return RCTC_IQ_OK;
    }
    off[0] = off[1] = 0;
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = shifted(iq_ld(a, aw, (size_t)off[0]), ka), y = shifted(iq_ld(b, bw, (size_t)off[1]), kb);
        work[i] = subtract ? iq_sub(x, y) : iq_add(x, y);
        iq_next(ndim, shape, idx, 2, off, st);
    }
    return rctc_iq_requantize(n, work, ec, bits, rand, out, e_out);
}
