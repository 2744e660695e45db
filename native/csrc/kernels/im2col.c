/*
 * im2col.c - NCHW int8 image -> convolution columns (one image, one group).
 *
 * Needs: a geometry with oh, ow consistent with the pads (the caller's conv_geom).
 * Leaves: cols[r * ld + p] as documented in rctc_kernels.h, zero where the window reads padding.
 */
#include <string.h>

#include "rctc_kernels.h"

void rctc_im2col_s8(const rctc_conv2d *g, const int8_t *x, int8_t *cols, ptrdiff_t ld) {
    for (int ci = 0; ci < g->c; ++ci)
        for (int i = 0; i < g->kh; ++i)
            for (int j = 0; j < g->kw; ++j) {
                int8_t *row = cols + ((ptrdiff_t)(ci * g->kh + i) * g->kw + j) * ld;
                const int8_t *img = x + (ptrdiff_t)ci * g->h * g->w;
                for (int oy = 0; oy < g->oh; ++oy) {
                    int8_t *out = row + (ptrdiff_t)oy * g->ow;
                    const int iy = oy * g->stride_h - g->pad_t + i * g->dil_h;
                    if (iy < 0 || iy >= g->h) {
                        memset(out, 0, (size_t)g->ow);
                        continue;
                    }
                    const int8_t *src = img + (ptrdiff_t)iy * g->w;
                    const int ix0 = j * g->dil_w - g->pad_l;
                    if (g->stride_w == 1 && ix0 >= 0 && ix0 + g->ow <= g->w) {
                        memcpy(out, src + ix0, (size_t)g->ow);
                        continue;
                    }
                    for (int ox = 0; ox < g->ow; ++ox) {
                        const int ix = ox * g->stride_w + ix0;
                        out[ox] = (ix >= 0 && ix < g->w) ? src[ix] : 0;
                    }
                }
            }
}
