/*
 * col2im.c - convolution columns -> NCHW image, the adjoint of im2col (data gradient).
 *
 * Needs: the same geometry as the im2col it inverts; cols from the data-gradient GEMM.
 * Leaves: dx (c x h x w) overwritten with, at every pixel, the sum of the column entries that
 * read it (modulo 2^32 for s32, exact for s64); padding entries are dropped.
 */
#include "rctc_kernels.h"

#define RCTC_DEFINE_COL2IM(NAME, T, TU)                                                              \
    void NAME(const rctc_conv2d *g, const T *cols, ptrdiff_t ld, T *dx) {                            \
        const ptrdiff_t plane = (ptrdiff_t)g->h * g->w;                                              \
        for (ptrdiff_t q = 0; q < plane * g->c; ++q) dx[q] = 0;                                      \
        for (int ci = 0; ci < g->c; ++ci)                                                            \
            for (int i = 0; i < g->kh; ++i)                                                          \
                for (int j = 0; j < g->kw; ++j) {                                                    \
                    const T *row = cols + ((ptrdiff_t)(ci * g->kh + i) * g->kw + j) * ld;            \
                    T *img = dx + ci * plane;                                                        \
                    for (int oy = 0; oy < g->oh; ++oy) {                                             \
                        const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;                   \
                        if (iy < 0 || iy >= g->h) continue;                                          \
                        const T *in = row + (ptrdiff_t)oy * g->ow;                                   \
                        T *dst = img + (ptrdiff_t)iy * g->w;                                         \
                        const int ix0 = j * g->dil_w - g->pad_l;                                     \
                        for (int ox = 0; ox < g->ow; ++ox) {                                         \
                            const int ix = ox * g->stride_w + ix0;                                   \
                            if (ix >= 0 && ix < g->w) dst[ix] = (T)((TU)dst[ix] + (TU)in[ox]);       \
                        }                                                                            \
                    }                                                                                \
                }                                                                                    \
    }

RCTC_DEFINE_COL2IM(rctc_col2im_s32, int32_t, uint32_t)
RCTC_DEFINE_COL2IM(rctc_col2im_s64, int64_t, uint64_t)
