/*
 * im2col.c - NCHW int8 image -> convolution columns (one image, one group).
 *
 * Needs: a geometry with oh, ow consistent with the pads (the caller's conv_geom).
 * Leaves: cols[r * ld + p] as documented in rctc_kernels.h, zero where the window reads padding.
 * Per kernel tap the output columns that read inside the image are one range [lo, hi)
 * (rctc_conv_cols): the row is a memset, a copy (memcpy at stride 1) and a memset, with no
 * per-element bounds test; with both strides 1 and ow == w (a "same" convolution) a tap's whole
 * block of rows is one copy, then its padding columns are zeroed.
 */
#include <string.h>

#include "internal.h"
#include "rctc_kernels.h"

void rctc_gather_s8_s2_portable(size_t n, const int8_t *src, int8_t *dst) {
    for (size_t i = 0; i < n; ++i) dst[i] = src[2 * i];
}

/* dst[i] = src[2 i] (a stride-2 row): the AVX2 variant where the CPU has it, the same bytes */
static void gather_s2(size_t n, const int8_t *src, int8_t *dst) {
#if defined(__x86_64__) || defined(_M_X64)
    if (n >= 16 && (rctc_isa_available() & (1 << RCTC_ISA_AVX2))) {
        rctc_gather_s8_s2_avx2(n, src, dst);
        return;
    }
#endif
    rctc_gather_s8_s2_portable(n, src, dst);
}

void rctc_conv_cols(int ix0, int stride, int w, int ow, int *lo, int *hi) {
    int l = ix0 >= 0 ? 0 : (-ix0 + stride - 1) / stride;
    int h = ix0 > w - 1 ? 0 : (w - 1 - ix0) / stride + 1;
    if (h > ow) h = ow;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* One tap's row when both strides are 1 and ow == w: the rows that read the image are one
 * contiguous run of it shifted by the tap (row oy reads image row oy + d from column ix0), so one
 * copy (clamped to the image), then the columns that read padding are zeroed. */
static void tap_row_flat(const rctc_conv2d *g, const int8_t *img, int i, int ix0, int lo, int hi, int8_t *row) {
    const int ow = g->ow, d = i * g->dil_h - g->pad_t;
    int oy0 = d < 0 ? -d : 0, oy1 = g->h - d < g->oh ? g->h - d : g->oh;
    if (oy0 > g->oh) oy0 = g->oh;
    if (oy1 < oy0) oy1 = oy0;
    memset(row, 0, (size_t)oy0 * (size_t)ow);
    memset(row + (ptrdiff_t)oy1 * ow, 0, (size_t)(g->oh - oy1) * (size_t)ow);
    if (oy1 == oy0) return;
    if (lo >= hi) {
        memset(row + (ptrdiff_t)oy0 * ow, 0, (size_t)(oy1 - oy0) * (size_t)ow);
        return;
    }
    const ptrdiff_t s0 = (ptrdiff_t)(oy0 + d) * g->w + ix0, len = (ptrdiff_t)(oy1 - oy0) * ow;
    const ptrdiff_t a = s0 < 0 ? 0 : s0, end = (ptrdiff_t)g->h * g->w, b = s0 + len < end ? s0 + len : end;
    int8_t *dst = row + (ptrdiff_t)oy0 * ow;
    memcpy(dst + (a - s0), img + a, (size_t)(b - a));
    /* the padding columns (the clamped ends lie in them too), a column at a time down the rows:
     * a pad's one or two columns per row would otherwise be two tiny memset calls a row */
    for (int ox = 0; ox < lo; ++ox)
        for (int oy = 0; oy < oy1 - oy0; ++oy) dst[(ptrdiff_t)oy * ow + ox] = 0;
    for (int ox = hi; ox < ow; ++ox)
        for (int oy = 0; oy < oy1 - oy0; ++oy) dst[(ptrdiff_t)oy * ow + ox] = 0;
}

/* kernel columns whose range is computed once per call (the rest per tap) */
#define RCTC_KW_CACHED 16

void rctc_im2col_s8(const rctc_conv2d *g, const int8_t *x, int8_t *cols, ptrdiff_t ld) {
    const int flat = g->stride_h == 1 && g->stride_w == 1 && g->ow == g->w;
    int los[RCTC_KW_CACHED], his[RCTC_KW_CACHED]; /* a tap's column range depends on j only */
    for (int j = 0; j < g->kw && j < RCTC_KW_CACHED; ++j)
        rctc_conv_cols(j * g->dil_w - g->pad_l, g->stride_w, g->w, g->ow, &los[j], &his[j]);
    for (int ci = 0; ci < g->c; ++ci)
        for (int i = 0; i < g->kh; ++i)
            for (int j = 0; j < g->kw; ++j) {
                int8_t *row = cols + ((ptrdiff_t)(ci * g->kh + i) * g->kw + j) * ld;
                const int8_t *img = x + (ptrdiff_t)ci * g->h * g->w;
                const int ix0 = j * g->dil_w - g->pad_l;
                int lo, hi;
                if (j < RCTC_KW_CACHED) {
                    lo = los[j];
                    hi = his[j];
                } else {
                    rctc_conv_cols(ix0, g->stride_w, g->w, g->ow, &lo, &hi);
                }
                if (flat) {
                    tap_row_flat(g, img, i, ix0, lo, hi, row);
                    continue;
                }
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
                    else if (g->stride_w == 2)
                        gather_s2((size_t)(hi - lo), src + (ptrdiff_t)lo * 2 + ix0, out + lo);
                    else
                        for (int ox = lo; ox < hi; ++ox) out[ox] = src[(ptrdiff_t)ox * g->stride_w + ix0];
                    memset(out + hi, 0, (size_t)(g->ow - hi));
                }
            }
}
