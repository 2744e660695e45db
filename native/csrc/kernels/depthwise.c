/*
 * depthwise.c - depthwise 2-D convolutions (group == channels, one filter per channel) of one
 * NCHW image, and their data and weight gradients, without im2col.
 *
 * Needs: a geometry as for im2col (g->c = channels, each its own kh x kw filter); int8
 * activations / errors, int8 or int16 weights.
 * Leaves: exact integer sums (s32: modulo 2^32, as the GEMMs; s64 exact). Per kernel tap and
 * output row the in-image columns are one range (rctc_conv_cols), so every inner loop is a
 * plain multiply-add over a contiguous (stride 1) or strided row, which the compiler
 * vectorises; a GEMM per channel would have M = 1 and pay its packing once per channel.
 *   forward       y[c][oy][ox]  = sum_{i,j} w[c][i][j] x[c][oy*sh - pt + i*dh][ox*sw - pl + j*dw]
 *   data grad     dx[c][iy][ix] = sum over the (oy, ox, i, j) reading (iy, ix) of w[c][i][j] dy[c][oy][ox]
 *   weight grad   dw[c][i][j]  (+)= sum_{oy,ox} dy[c][oy][ox] x[c][...] (int64)
 */
#include <string.h>

#include "internal.h"
#include "rctc_kernels.h"


/* Stride 1, one channel: the image placed in a zero-padded grid xp (hp x wp, the extent the
 * windows read) makes every tap ONE contiguous run over the flat grid, acc[q] += w_t xp[q + off_t]
 * for q < (oh - 1) * wp + ow; the outputs are acc[oy * wp + ox]. flip reads the filter rotated by
 * 180 degrees (the data gradient as a correlation of the padded error). Returns 0 when the
 * begin pads are negative (then the caller's row loop runs). */
#define RCTC_DEFINE_DW_FLAT(SUF, TW, TC, TU)                                                         \
    static int dw_flat_##SUF(const rctc_conv2d *g, const int8_t *x, const TW *w, int flip, void *work, \
                             TC *y) {                                                                \
        const int hp = g->oh + (g->kh - 1) * g->dil_h, wp = g->ow + (g->kw - 1) * g->dil_w;          \
        if (g->stride_h != 1 || g->stride_w != 1 || g->pad_t < 0 || g->pad_l < 0) return 0;          \
        const ptrdiff_t len = (ptrdiff_t)(g->oh - 1) * wp + g->ow, kk = (ptrdiff_t)g->kh * g->kw;   \
        TC *restrict acc = (TC *)work;                                                               \
        int8_t *restrict xp = (int8_t *)(acc + len);                                                 \
        const int rows = g->h < hp - g->pad_t ? g->h : hp - g->pad_t;                                \
        const int cols = g->w < wp - g->pad_l ? g->w : wp - g->pad_l;                                \
        for (int c = 0; c < g->c; ++c) {                                                             \
            memset(xp, 0, (size_t)hp * (size_t)wp);                                                  \
            for (int iy = 0; iy < rows && cols > 0; ++iy)                                            \
                memcpy(xp + (ptrdiff_t)(iy + g->pad_t) * wp + g->pad_l,                              \
                       x + ((ptrdiff_t)c * g->h + iy) * g->w, (size_t)cols);                         \
            memset(acc, 0, sizeof(TC) * (size_t)len);                                                \
            for (int i = 0; i < g->kh; ++i)                                                          \
                for (int j = 0; j < g->kw; ++j) {                                                    \
                    const ptrdiff_t t = flip ? kk - 1 - ((ptrdiff_t)i * g->kw + j) : (ptrdiff_t)i * g->kw + j; \
                    const TU wv = (TU)w[(ptrdiff_t)c * kk + t];                                      \
                    const int8_t *restrict src = xp + (ptrdiff_t)i * g->dil_h * wp + (ptrdiff_t)j * g->dil_w; \
                    for (ptrdiff_t q = 0; q < len; ++q)                                              \
                        acc[q] = (TC)((TU)acc[q] + wv * (TU)(int64_t)src[q]);                                \
                }                                                                                    \
            TC *out = y + (ptrdiff_t)c * g->oh * g->ow;                                              \
            for (int oy = 0; oy < g->oh; ++oy)                                                       \
                memcpy(out + (ptrdiff_t)oy * g->ow, acc + (ptrdiff_t)oy * wp, sizeof(TC) * (size_t)g->ow); \
        }                                                                                            \
        return 1;                                                                                    \
    }

/* otherwise per tap and output row: y row += wv * x[ox * sw + ix0] for ox in [lo, hi) */
#define RCTC_DEFINE_DWCONV(SUF, TW, TC, TU)                                                          \
    RCTC_DEFINE_DW_FLAT(SUF, TW, TC, TU)                                                             \
    void rctc_dwconv_##SUF(const rctc_conv2d *g, const int8_t *x, const TW *w, void *work, TC *y) {  \
        const ptrdiff_t hw = (ptrdiff_t)g->h * g->w, p = (ptrdiff_t)g->oh * g->ow, sw = g->stride_w; \
        if (dw_flat_##SUF(g, x, w, 0, work, y)) return;                                              \
        memset(y, 0, sizeof(TC) * (size_t)(p * g->c));                                               \
        for (int c = 0; c < g->c; ++c)                                                               \
            for (int i = 0; i < g->kh; ++i)                                                          \
                for (int j = 0; j < g->kw; ++j) {                                                    \
                    const TU wv = (TU)(int64_t)w[((ptrdiff_t)c * g->kh + i) * g->kw + j];            \
                    const int ix0 = j * g->dil_w - g->pad_l;                                         \
                    int lo, hi;                                                                      \
                    rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);                         \
                    for (int oy = 0; oy < g->oh; ++oy) {                                             \
                        const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;                   \
                        if (iy < 0 || iy >= g->h || lo >= hi) continue;                              \
                        const int8_t *restrict src = x + c * hw + (ptrdiff_t)iy * g->w + (ptrdiff_t)lo * sw + ix0; \
                        TC *restrict dst = y + c * p + (ptrdiff_t)oy * g->ow + lo;                            \
                        if (sw == 1)                                                                 \
                            for (int k = 0; k < hi - lo; ++k)                                        \
                                dst[k] = (TC)((TU)dst[k] + wv * (TU)(int64_t)src[k]);                \
                        else                                                                         \
                            for (int k = 0; k < hi - lo; ++k)                                        \
                                dst[k] = (TC)((TU)dst[k] + wv * (TU)(int64_t)src[k * sw]);           \
                    }                                                                                \
                }                                                                                    \
    }                                                                                                \
    void rctc_dwconv_grad_input_##SUF(const rctc_conv2d *g, const int8_t *dy, const TW *w, void *work, \
                                      TC *dx) {                                                      \
        const ptrdiff_t hw = (ptrdiff_t)g->h * g->w, p = (ptrdiff_t)g->oh * g->ow, sw = g->stride_w; \
        if (g->stride_h == 1 && g->stride_w == 1) { /* a correlation of dy with the rotated filter */ \
            const rctc_conv2d t = {g->c, g->oh, g->ow, g->kh, g->kw, 1, 1, (g->kh - 1) * g->dil_h - g->pad_t, \
                                   (g->kw - 1) * g->dil_w - g->pad_l, g->dil_h, g->dil_w, g->h, g->w}; \
            if (dw_flat_##SUF(&t, dy, w, 1, work, dx)) return;                                       \
        }                                                                                            \
        memset(dx, 0, sizeof(TC) * (size_t)(hw * g->c));                                             \
        for (int c = 0; c < g->c; ++c)                                                               \
            for (int i = 0; i < g->kh; ++i)                                                          \
                for (int j = 0; j < g->kw; ++j) {                                                    \
                    const TU wv = (TU)(int64_t)w[((ptrdiff_t)c * g->kh + i) * g->kw + j];            \
                    const int ix0 = j * g->dil_w - g->pad_l;                                         \
                    int lo, hi;                                                                      \
                    rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);                         \
                    for (int oy = 0; oy < g->oh; ++oy) {                                             \
                        const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;                   \
                        if (iy < 0 || iy >= g->h || lo >= hi) continue;                              \
                        const int8_t *restrict src = dy + c * p + (ptrdiff_t)oy * g->ow + lo;                 \
                        TC *restrict dst = dx + c * hw + (ptrdiff_t)iy * g->w + (ptrdiff_t)lo * sw + ix0;     \
                        if (sw == 1)                                                                 \
                            for (int k = 0; k < hi - lo; ++k)                                        \
                                dst[k] = (TC)((TU)dst[k] + wv * (TU)(int64_t)src[k]);                \
                        else                                                                         \
                            for (int k = 0; k < hi - lo; ++k)                                        \
                                dst[k * sw] = (TC)((TU)dst[k * sw] + wv * (TU)(int64_t)src[k]);      \
                    }                                                                                \
                }                                                                                    \
    }

RCTC_DEFINE_DWCONV(s8s32, int8_t, int32_t, uint32_t)
RCTC_DEFINE_DWCONV(s8s64, int8_t, int64_t, uint64_t)
RCTC_DEFINE_DWCONV(s16s32, int16_t, int32_t, uint32_t)
RCTC_DEFINE_DWCONV(s16s64, int16_t, int64_t, uint64_t)

/* Row dot products in int32 are exact: |dy * x| <= 2^14 and a row has ow < 2^17 terms. */
void rctc_dwconv_grad_weight_s64(const rctc_conv2d *g, const int8_t *dy, const int8_t *x, int64_t *dw,
                                 int accumulate) {
    const ptrdiff_t hw = (ptrdiff_t)g->h * g->w, p = (ptrdiff_t)g->oh * g->ow, sw = g->stride_w;
    if (!accumulate) memset(dw, 0, sizeof(int64_t) * (size_t)(g->c * g->kh * g->kw));
    for (int c = 0; c < g->c; ++c)
        for (int i = 0; i < g->kh; ++i)
            for (int j = 0; j < g->kw; ++j) {
                const int ix0 = j * g->dil_w - g->pad_l;
                int lo, hi;
                rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);
                int64_t sum = 0;
                for (int oy = 0; oy < g->oh; ++oy) {
                    const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;
                    if (iy < 0 || iy >= g->h || lo >= hi) continue;
                    const int8_t *a = dy + c * p + (ptrdiff_t)oy * g->ow + lo;
                    const int8_t *b = x + c * hw + (ptrdiff_t)iy * g->w + (ptrdiff_t)lo * sw + ix0;
                    int32_t row = 0;
                    if (sw == 1)
                        for (int k = 0; k < hi - lo; ++k) row += (int32_t)a[k] * (int32_t)b[k];
                    else
                        for (int k = 0; k < hi - lo; ++k) row += (int32_t)a[k] * (int32_t)b[k * sw];
                    sum += row;
                }
                dw[((ptrdiff_t)c * g->kh + i) * g->kw + j] += sum;
            }
}
