/*
 * col2im.c - convolution columns -> NCHW image, the adjoint of im2col (data gradient).
 *
 * Needs: the same geometry as the im2col it inverts; cols from the data-gradient GEMM.
 * Leaves: dx (c x h x w) overwritten with, at every pixel, the sum of the column entries that
 * read it (modulo 2^32 for s32, exact for s64); padding entries are dropped. The *_add variants
 * add the same sums to dx (a band of output rows at a time: the conv emitter's tiles). Per
 * kernel tap only the column range inside the image is visited (rctc_conv_cols), so the inner
 * loop is a plain strided add (contiguous, vectorised, at stride 1).
 */
#include <string.h>

#include "internal.h"
#include "rctc_kernels.h"

#define RCTC_DEFINE_COL2IM(NAME, T, TU)                                                              \
    void NAME(const rctc_conv2d *g, const T *cols, ptrdiff_t ld, T *dx) {                            \
        memset(dx, 0, sizeof(T) * (size_t)((ptrdiff_t)g->h * g->w * g->c));                         \
        NAME##_add(g, cols, ld, dx);                                                                 \
    }                                                                                                \
    void NAME##_add(const rctc_conv2d *g, const T *cols, ptrdiff_t ld, T *dx) {                      \
        const ptrdiff_t plane = (ptrdiff_t)g->h * g->w;                                              \
        const ptrdiff_t sw = g->stride_w;                                                            \
        int los[16], his[16]; /* a tap's column range depends on j only: once per call */           \
        for (int j = 0; j < g->kw && j < 16; ++j)                                                    \
            rctc_conv_cols(j * g->dil_w - g->pad_l, g->stride_w, g->w, g->ow, &los[j], &his[j]);     \
        for (int ci = 0; ci < g->c; ++ci)                                                            \
            for (int i = 0; i < g->kh; ++i)                                                          \
                for (int j = 0; j < g->kw; ++j) {                                                    \
                    const T *row = cols + ((ptrdiff_t)(ci * g->kh + i) * g->kw + j) * ld;            \
                    T *img = dx + ci * plane;                                                        \
                    const int ix0 = j * g->dil_w - g->pad_l;                                         \
                    int lo = j < 16 ? los[j] : 0, hi = j < 16 ? his[j] : 0;                          \
                    if (j >= 16) rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);            \
                    for (int oy = 0; oy < g->oh; ++oy) {                                             \
                        const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;                   \
                        if (iy < 0 || iy >= g->h || lo >= hi) continue;                              \
                        const T *in = row + (ptrdiff_t)oy * g->ow + lo;                              \
                        T *dst = img + (ptrdiff_t)iy * g->w + (ptrdiff_t)lo * sw + ix0;              \
                        if (sw == 1)                                                                 \
                            for (int k = 0; k < hi - lo; ++k) dst[k] = (T)((TU)dst[k] + (TU)in[k]);  \
                        else                                                                         \
                            for (int k = 0; k < hi - lo; ++k)                                        \
                                dst[k * sw] = (T)((TU)dst[k * sw] + (TU)in[k]);                      \
                    }                                                                                \
                }                                                                                    \
    }

RCTC_DEFINE_COL2IM(rctc_col2im_s32, int32_t, uint32_t)
RCTC_DEFINE_COL2IM(rctc_col2im_s64, int64_t, uint64_t)
