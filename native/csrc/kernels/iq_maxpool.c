/*
 * iq_maxpool.c - MaxPool 2-D and its backward (intref.pool.maxpool2d, maxpool2d_backward).
 *
 * Needs: rctc_intops.h, internal.h (threads over planes). Leaves: the window maximum, exact,
 * in q's storage (padding reads -2^62 and never wins); the backward adds each dy to its
 * window's first maximum in row-major tap order (an exact int64 scatter-add; taps in the
 * padding drop out), then one rounding. The forward splits planes across threads; every
 * output is computed alone, so the result does not depend on nthreads. The 2x2 / stride 2 int8 rows have a plain loop
 * the compiler vectorises (an AVX2 variant measured no faster: benchmarks/NATIVE_INTOPS.md); their
 * backward scatters each window's four taps directly (no per-tap bounds checks, no separate zeroing).
 */
#include "internal.h"
#include "iq.h"
#include "rctc_kernels.h"

#define NEG (-((int64_t)1 << 62))

/* tap (0-based, row-major) of the first maximum of window (oy, ox) of one plane, and its value */
static int64_t window_max(const rctc_iq_pool *p, const void *q, int w, size_t plane, int oy, int ox, int *tap) {
    int64_t best = NEG;
    int bt = 0, first = 1;
    for (int i = 0; i < p->kh; ++i) {
        const int y = oy * p->sh - p->pt + i;
        for (int j = 0; j < p->kw; ++j) {
            const int x = ox * p->sw - p->pl + j;
            const int64_t v = (y >= 0 && y < p->h && x >= 0 && x < p->w)
                                  ? iq_ld(q, w, plane * (size_t)p->h * (size_t)p->w + (size_t)y * (size_t)p->w + (size_t)x)
                                  : NEG;
            if (first || v > best) {
                best = v;
                bt = i * p->kw + j;
                first = 0;
            }
        }
    }
    *tap = bt;
    return best;
}

void rctc_iq_maxpool2x2_row_s8_portable(int ow, const int8_t *r0, const int8_t *r1, int8_t *y) {
    for (int ox = 0; ox < ow; ++ox) {
        const int8_t a = r0[2 * ox] > r0[2 * ox + 1] ? r0[2 * ox] : r0[2 * ox + 1];
        const int8_t b = r1[2 * ox] > r1[2 * ox + 1] ? r1[2 * ox] : r1[2 * ox + 1];
        y[ox] = a > b ? a : b;
    }
}

typedef void (*row_fn)(int ow, const int8_t *r0, const int8_t *r1, int8_t *y);

typedef struct {
    const rctc_iq_pool *p;
    const void *q;
    int w;
    void *out;
    row_fn row;
} fwd_ctx;

static void fwd_planes(void *arg, int begin, int end) {
    const fwd_ctx *c = (const fwd_ctx *)arg;
    const rctc_iq_pool *p = c->p;
    int tap;
    for (int pl = begin; pl < end; ++pl) {
        if (c->w == 1 && p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && !p->pt && !p->pl &&
            2 * p->oh <= p->h && 2 * p->ow <= p->w) { /* the common 2x2/2 pool, no padding */
            const int8_t *x = (const int8_t *)c->q + (size_t)pl * (size_t)p->h * (size_t)p->w;
            int8_t *y = (int8_t *)c->out + (size_t)pl * (size_t)p->oh * (size_t)p->ow;
            for (int oy = 0; oy < p->oh; ++oy) {
                const int8_t *r0 = x + (size_t)(2 * oy) * (size_t)p->w;
                c->row(p->ow, r0, r0 + p->w, y + (size_t)oy * (size_t)p->ow);
            }
            continue;
        }
        for (int oy = 0; oy < p->oh; ++oy)
            for (int ox = 0; ox < p->ow; ++ox)
                iq_st(c->out, c->w, ((size_t)pl * (size_t)p->oh + (size_t)oy) * (size_t)p->ow + (size_t)ox,
                      window_max(p, c->q, c->w, (size_t)pl, oy, ox, &tap));
    }
}

static void maxpool(const rctc_iq_pool *p, const void *q, int w, void *out, int nthreads, row_fn row) {
    fwd_ctx c;
    c.row = row;
    c.p = p;
    c.q = q;
    c.w = w;
    c.out = out;
    const int planes = p->n * p->c;
    const uint64_t work = (uint64_t)planes * (uint64_t)p->oh * (uint64_t)p->ow * (uint64_t)(p->kh * p->kw);
    rctc_parallel_for(planes, 1, rctc_threads_for(nthreads, work * 4), fwd_planes, &c);
}

void rctc_iq_maxpool2d_portable(const rctc_iq_pool *p, const void *q, int w, void *out, int nthreads) {
    maxpool(p, q, w, out, nthreads, rctc_iq_maxpool2x2_row_s8_portable);
}

void rctc_iq_maxpool2d(const rctc_iq_pool *p, const void *q, int w, void *out, int nthreads) {
    rctc_iq_maxpool2d_portable(p, q, w, out, nthreads);
}

/* The backward's scatter for the 2x2 / stride 2 pool without padding on int8 q: the windows do not
 * overlap, so each of a window's four taps gets dy (the first maximum in row-major order: a later
 * tap wins only when strictly larger) or 0, and only the rows / columns no window covers (odd h,
 * w) are zeroed apart; the same values as the general loop, into T (int64 work, or the int8 dx
 * itself when requantise would keep every value: max |dy| <= qmax). */
#define SCATTER_2X2(NAME, T)                                                                           \
    static void NAME(const rctc_iq_pool *p, const int8_t *q, const void *dq, int dw, T *out) {           \
        const size_t hw = (size_t)p->h * (size_t)p->w, planes = (size_t)p->n * (size_t)p->c;           \
        const size_t W = (size_t)p->w;                                                                \
        for (size_t pl = 0; pl < planes; ++pl) {                                                      \
            const int8_t *x = q + pl * hw;                                                            \
            T *t = out + pl * hw;                                                                     \
            for (int oy = 0; oy < p->oh; ++oy) {                                                      \
                const int8_t *r0 = x + (size_t)(2 * oy) * W, *r1 = r0 + W;                            \
                T *t0 = t + (size_t)(2 * oy) * W, *t1 = t0 + W;                                       \
                const size_t drow = (pl * (size_t)p->oh + (size_t)oy) * (size_t)p->ow;                \
                for (int ox = 0; ox < p->ow; ++ox) {                                                  \
                    const size_t c = 2 * (size_t)ox;                                                  \
                    const int a = r0[c], b = r0[c + 1], e = r1[c], f = r1[c + 1];                     \
                    const int ab = a > b ? a : b, abe = ab > e ? ab : e; /* maxima of the taps before */ \
                    const T d = (T)iq_ld(dq, dw, drow + (size_t)ox);                                  \
                    /* the first maximum: a tap wins when above all taps before it, not below after */ \
                    t0[c] = (a >= b && a >= e && a >= f) ? d : 0;                                     \
                    t0[c + 1] = (b > a && b >= e && b >= f) ? d : 0;                                  \
                    t1[c] = (e > ab && e >= f) ? d : 0;                                               \
                    t1[c + 1] = f > abe ? d : 0;                                                      \
                }                                                                                     \
                for (size_t c = 2 * (size_t)p->ow; c < W; ++c) t0[c] = t1[c] = 0; /* uncovered */     \
            }                                                                                         \
            for (size_t i = (size_t)(2 * p->oh) * W; i < hw; ++i) t[i] = 0; /* an uncovered row */   \
        }                                                                                             \
    }

SCATTER_2X2(scatter_2x2_s64, int64_t)
SCATTER_2X2(scatter_2x2_s8, int8_t)

int rctc_iq_maxpool2d_backward(const rctc_iq_pool *p, const void *q, int qw, const void *dq, int dw, int de,
                               int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const size_t hw = (size_t)p->h * (size_t)p->w, planes = (size_t)p->n * (size_t)p->c;
    int tap;
    if (qw == 1 && p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && !p->pt && !p->pl &&
        2 * p->oh <= p->h && 2 * p->ow <= p->w) {
        const size_t nd = planes * (size_t)p->oh * (size_t)p->ow;
        const uint64_t m = rctc_iq_absmax_w(dq, dw, nd);
        /* every dy lands once: max |work| = max |dy|; at most qmax, requantise's shift is 0 and it
         * stores the values as they are */
        if (rctc_iq_width(bits) == 1 && m <= ((uint64_t)1 << (bits - 1)) - 1u) {
            scatter_2x2_s8(p, (const int8_t *)q, dq, dw, (int8_t *)dx);
            *e_out = de;
            return RCTC_IQ_OK;
        }
        scatter_2x2_s64(p, (const int8_t *)q, dq, dw, work);
        return rctc_iq_requantize(planes * hw, work, de, bits, rand, dx, e_out);
    }
    for (size_t i = 0; i < planes * hw; ++i) work[i] = 0;
    for (size_t pl = 0; pl < planes; ++pl)
        for (int oy = 0; oy < p->oh; ++oy)
            for (int ox = 0; ox < p->ow; ++ox) {
                (void)window_max(p, q, qw, pl, oy, ox, &tap);
                const int y = oy * p->sh - p->pt + tap / p->kw, x = ox * p->sw - p->pl + tap % p->kw;
                if (y < 0 || y >= p->h || x < 0 || x >= p->w) continue;
                const int64_t d = iq_ld(dq, dw, (pl * (size_t)p->oh + (size_t)oy) * (size_t)p->ow + (size_t)ox);
                int64_t *t = work + pl * hw + (size_t)y * (size_t)p->w + (size_t)x;
                *t = iq_add(*t, d);
            }
    return rctc_iq_requantize(planes * hw, work, de, bits, rand, dx, e_out);
}
