/*
 * im2col.c - NCHW int8 image -> convolution columns (one image, one group).
 *
 * Needs: a geometry with oh, ow consistent with the pads (the caller's conv_geom).
 * Leaves: cols[r * ld + p] as documented in rctc_kernels.h, zero where the window reads padding.
 * Per kernel tap the output columns that read inside the image are one range [lo, hi)
 * (rctc_conv_cols): the row is a memset, a copy (memcpy at stride 1) and a memset, with no
 * per-element bounds test.
 */
#include <string.h>

#include "internal.h"
#include "rctc_kernels.h"

void rctc_conv_cols(int ix0, int stride, int w, int ow, int *lo, int *hi) {
    int l = ix0 >= 0 ? 0 : (-ix0 + stride - 1) / stride;
    int h = ix0 > w - 1 ? 0 : (w - 1 - ix0) / stride + 1;
    if (h > ow) h = ow;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

void rctc_im2col_s8(const rctc_conv2d *g, const int8_t *x, int8_t *cols, ptrdiff_t ld) {
    for (int ci = 0; ci < g->c; ++ci)
        for (int i = 0; i < g->kh; ++i)
            for (int j = 0; j < g->kw; ++j) {
                int8_t *row = cols + ((ptrdiff_t)(ci * g->kh + i) * g->kw + j) * ld;
                const int8_t *img = x + (ptrdiff_t)ci * g->h * g->w;
                const int ix0 = j * g->dil_w - g->pad_l;
                int lo, hi;
                rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);
                for (int oy = 0; oy < g->oh; ++oy) {
                    int8_t *out = row + (ptrdiff_t)oy * g->ow;
                    const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;
                    if (iy < 0 || iy >= g->h || lo >= hi) {
                        memset(out, 0, (size_t)g->ow);
                        continue;
                    }
                    const int8_t *src = img + (ptrdiff_t)iy * g->w;
                    memset(out, 0, (size_t)lo);
                    if (g->stride_w == 1)
                        memcpy(out + lo, src + lo + ix0, (size_t)(hi - lo));
                    else
                        for (int ox = lo; ox < hi; ++ox) out[ox] = src[(ptrdiff_t)ox * g->stride_w + ix0];
                    memset(out + hi, 0, (size_t)(g->ow - hi));
                }
            }
}
