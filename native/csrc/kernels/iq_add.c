/*
 * iq_add.c - Add / Sub with exponent alignment (intref.arith.add, sub).
 *
 * Needs: rctc_intops.h; operands read at broadcast strides of the output's shape. Leaves: both
 * operands brought to intref.core.align's exponent (exact left shifts unless that passes 2^61,
 * then nearest), summed (or subtracted) exactly, one rounding to bits (stochastic with rand).
 * Operands of the output's own dense layout (no broadcast) take typed loops without the
 * per-element multi-index; the same integers either way. rctc_iq_add_mt takes operands that are
 * dense or repeated along leading axes (a bias row, a position table) and whose aligned sums fit
 * in int32 through int32 sums, split (sums, their max, the rounding) into fixed parts over
 * threads: the same bits at any thread count and on either path. Past RCTC_ADD_UNBUFFERED
 * elements those sums are not stored: computed once for their max and again, a stack block at a
 * time, for the rounding.
 */
#include <string.h>

#include "internal.h"
#include "iq.h"
#include "rctc_kernels.h"

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
        m[0] = rctc_iq_absmax_w(a, aw, n);
        m[1] = rctc_iq_absmax_w(b, bw, n);
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

/* the int32 fast path's parts: v = (x << ka) +- (y << kb) as int32 (exact: the caller checked
 * max|x| << ka + max|y| << kb < 2^31), each part's max |v|; boundaries fixed by n and
 * RCTC_ADD_PARTS, never by the thread count */
#define RCTC_ADD_PARTS 64
/* elements per thread below which a second thread does not pay (as iq_requant_s32.c's) */
#define RCTC_ADD_PER_THREAD 131072u

/* elements from which the sums are not stored: a max pass and a rounding pass each recompute
 * them a stack block at a time (half the memory traffic of an int32 buffer written and read) */
#define RCTC_ADD_UNBUFFERED 65536u
#ifdef RCTC_THREADS /* a host build: large stack blocks */
#define RCTC_ADD_BLOCK 4096u
#else /* a bare-metal build: small stack frames (the same integers at any block size) */
#define RCTC_ADD_BLOCK 256u
#endif

typedef struct {
    size_t n, la, lb;
    int parts, aw, bw, ka, kb, subtract;
    const char *x, *y;
    int32_t *v;        /* the sums (buffered), or NULL: the blocks below */
    int s, w;          /* unbuffered: s < 0 the max pass, else the rounding at s into width w */
    const uint32_t *rand;
    void *out;
    uint32_t maxima[RCTC_ADD_PARTS];
} add_task;

static size_t add_part_at(const add_task *t, int p) { return t->n / (size_t)t->parts * (size_t)p; }

uint32_t rctc_iq_add_s8_s32_portable(size_t n, const int8_t *x, int ka, const int8_t *y, int kb, int subtract,
                                     int32_t *v) {
    const int32_t sg = subtract ? -1 : 1;
    for (size_t i = 0; i < n; ++i)
        v[i] = (int32_t)((uint32_t)(int32_t)x[i] << ka) + sg * (int32_t)((uint32_t)(int32_t)y[i] << kb);
    return rctc_absmax_s32(n, v);
}

/* v = (x << ka) +- (y << kb) for operands of any widths (int8 / int16 / int32), max |v| (|v| < 2^31) */
#define RCTC_ADD_RUN(TX, TY)                                                                                  \
    {                                                                                                         \
        const TX *px = (const TX *)x;                                                                         \
        const TY *py = (const TY *)y;                                                                         \
        for (size_t i = 0; i < n; ++i) {                                                                      \
            const int32_t s = (int32_t)((uint32_t)(int32_t)px[i] << ka) +                                     \
                              sg * (int32_t)((uint32_t)(int32_t)py[i] << kb);                                 \
            const int32_t a = s < 0 ? -s : s;                                                                 \
            v[i] = s;                                                                                         \
            m = a > m ? a : m;                                                                                \
        }                                                                                                     \
    }                                                                                                         \
    break;

static uint32_t add_run_s32(size_t n, const void *x, int aw, int ka, const void *y, int bw, int kb, int subtract,
                            int32_t *v) {
    if (aw == 1 && bw == 1) {
#if defined(__x86_64__) || defined(_M_X64)
        if (rctc_isa_available() & (1 << RCTC_ISA_AVX2))
            return rctc_iq_add_s8_s32_avx2(n, (const int8_t *)x, ka, (const int8_t *)y, kb, subtract, v);
#endif
        return rctc_iq_add_s8_s32_portable(n, (const int8_t *)x, ka, (const int8_t *)y, kb, subtract, v);
    }
    const int32_t sg = subtract ? -1 : 1;
    int32_t m = 0;
    switch (aw * 8 + bw) {
    case 1 * 8 + 2: RCTC_ADD_RUN(int8_t, int16_t)
    case 1 * 8 + 4: RCTC_ADD_RUN(int8_t, int32_t)
    case 2 * 8 + 1: RCTC_ADD_RUN(int16_t, int8_t)
    case 2 * 8 + 2: RCTC_ADD_RUN(int16_t, int16_t)
    case 2 * 8 + 4: RCTC_ADD_RUN(int16_t, int32_t)
    case 4 * 8 + 1: RCTC_ADD_RUN(int32_t, int8_t)
    case 4 * 8 + 2: RCTC_ADD_RUN(int32_t, int16_t)
    default: RCTC_ADD_RUN(int32_t, int32_t)
    }
    return (uint32_t)m;
}

/* a periodic operand shorter than an eighth of this is tiled (pre-shifted, in int32) next to a
 * dense one */
#ifdef RCTC_THREADS
#define RCTC_ADD_TILE 2048
#else
#define RCTC_ADD_TILE 256
#endif

/* v = tile +- (d << kd) along a dense operand d (OP: + or -), max |v| */
#define RCTC_ADD_TILED(T, OP)                                                                                 \
    {                                                                                                         \
        const T *pd = (const T *)d;                                                                           \
        for (size_t k = 0; k < n; ++k) {                                                                      \
            const int32_t s = tile[k] OP(int32_t)((uint32_t)(int32_t)pd[k] << kd);                            \
            const int32_t a = s < 0 ? -s : s;                                                                 \
            v[k] = s;                                                                                         \
            m = a > m ? a : m;                                                                                \
        }                                                                                                     \
    }                                                                                                         \
    break;

static uint32_t add_tiled_run(size_t n, const int32_t *tile, const void *d, int dw, int kd, int sub, int32_t *v) {
    int32_t m = 0;
    switch (dw * 2 + sub) {
    case 2: RCTC_ADD_TILED(int8_t, +)
    case 3: RCTC_ADD_TILED(int8_t, -)
    case 4: RCTC_ADD_TILED(int16_t, +)
    case 5: RCTC_ADD_TILED(int16_t, -)
    case 8: RCTC_ADD_TILED(int32_t, +)
    default: RCTC_ADD_TILED(int32_t, -)
    }
    return (uint32_t)m;
}

/* a short periodic operand beside a dense one, shifted and signed into an int32 tile of whole periods */
typedef struct {
    int32_t at[RCTC_ADD_TILE];
    size_t len, lp;
} add_tile;

static void tile_build(const add_task *t, add_tile *tl) {
    const int a_dense = t->la == t->n;
    const char *p = a_dense ? t->y : t->x;
    const int pw = a_dense ? t->bw : t->aw, kp = a_dense ? t->kb : t->ka, neg_p = a_dense && t->subtract;
    tl->lp = a_dense ? t->lb : t->la;
    tl->len = tl->lp * (RCTC_ADD_TILE / tl->lp);
    for (size_t k = 0; k < tl->lp; ++k) {
        const int32_t v = (int32_t)((uint32_t)(int32_t)iq_ld(p, pw, k) << kp);
        tl->at[k] = neg_p ? -v : v;
    }
    for (size_t k0 = tl->lp; k0 < tl->len; k0 += tl->lp) memcpy(tl->at + k0, tl->at, tl->lp * sizeof *tl->at);
}

/* elements i0 .. i1 - 1 (v[0] is element i0's sum) with the tile: runs of a tile */
static uint32_t span_tiled(const add_task *t, const add_tile *tl, size_t i0, size_t i1, int32_t *v) {
    const int a_dense = t->la == t->n;
    const char *d = a_dense ? t->x : t->y;
    const int dw = a_dense ? t->aw : t->bw, kd = a_dense ? t->ka : t->kb, sub_d = !a_dense && t->subtract;
    uint32_t m = 0;
    size_t ip = i0 % tl->lp;
    for (size_t i = i0; i < i1;) {
        const size_t c = i1 - i < tl->len - ip ? i1 - i : tl->len - ip;
        const uint32_t r = add_tiled_run(c, tl->at + ip, d + i * (size_t)dw, dw, kd, sub_d, v + (i - i0));
        m = r > m ? r : m;
        i += c;
        ip = 0; /* a whole tile ends on a period's end */
    }
    return m;
}

/* elements i0 .. i1 - 1 (v[0] is element i0's sum): runs that stay inside one period of each operand */
static uint32_t span_runs(const add_task *t, size_t i0, size_t i1, int32_t *v) {
    uint32_t m = 0;
    size_t ia = i0 % t->la, ib = i0 % t->lb; /* then stepped: no division a run */
    for (size_t i = i0; i < i1;) {
        size_t c = i1 - i;
        c = t->la - ia < c ? t->la - ia : c;
        c = t->lb - ib < c ? t->lb - ib : c;
        const uint32_t r = add_run_s32(c, t->x + ia * (size_t)t->aw, t->aw, t->ka, t->y + ib * (size_t)t->bw, t->bw,
                                       t->kb, t->subtract, v + (i - i0));
        m = r > m ? r : m;
        i += c;
        ia = ia + c == t->la ? 0 : ia + c;
        ib = ib + c == t->lb ? 0 : ib + c;
    }
    return m;
}

static uint32_t span(const add_task *t, const add_tile *tl, size_t i0, size_t i1, int32_t *v) {
    return tl ? span_tiled(t, tl, i0, i1, v) : span_runs(t, i0, i1, v);
}

static void add_parts(void *ctx, int p0, int p1) {
    add_task *t = (add_task *)ctx;
    const size_t shortest = t->la < t->lb ? t->la : t->lb, longest = t->la < t->lb ? t->lb : t->la;
    add_tile tile;
    const add_tile *tl = longest == t->n && shortest < RCTC_ADD_TILE / 8 ? &tile : NULL;
    if (tl) tile_build(t, &tile);
    for (int p = p0; p < p1; ++p) {
        const size_t i0 = add_part_at(t, p), i1 = p + 1 == t->parts ? t->n : add_part_at(t, p + 1);
        if (t->v) {
            t->maxima[p] = span(t, tl, i0, i1, t->v + i0);
            continue;
        }
        int32_t buf[RCTC_ADD_BLOCK];
        uint32_t m = 0;
        for (size_t b = i0; b < i1; b += RCTC_ADD_BLOCK) {
            const size_t e = i1 - b < RCTC_ADD_BLOCK ? i1 : b + RCTC_ADD_BLOCK;
            const uint32_t r = span(t, tl, b, e, buf);
            if (t->s < 0)
                m = r > m ? r : m;
            else
                rctc_iq_round_s32_range(e - b, buf, t->s, t->rand ? t->rand + b : NULL, t->w,
                                        (char *)t->out + b * (size_t)t->w);
        }
        t->maxima[p] = m;
    }
}

/* a << k < 2^31 for k >= 0 (a < 2^63) */
static uint64_t shl_capped(uint64_t a, int k) { return k > 31 || a >> (31 - k) ? (uint64_t)1 << 31 : a << k; }

int rctc_iq_add_mt(int nthreads, int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea,
                   const void *b, int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand,
                   int64_t *work, void *out, int *e_out) {
    const size_t n = iq_prod(ndim, shape), la = iq_period(ndim, shape, as), lb = iq_period(ndim, shape, bs);
    if (n && la && lb && aw <= 4 && bw <= 4 && rctc_iq_width(bits) == 1) {
        /* periodic operands (dense, or repeated along leading axes: a bias row, a position table)
         * of at most 32 bits: the maxima over one period, the alignment as rctc_iq_add_exps; when
         * max|a| << ka + max|b| << kb < 2^31 the sums are exact in int32, computed with their max
         * in fixed parts (threaded), then the int32 requantise at that max gives
         * rctc_iq_requantize's bits for the same values */
        const uint64_t m[2] = {rctc_iq_absmax_w(a, aw, la), rctc_iq_absmax_w(b, bw, lb)};
        const int exps[2] = {ea, eb};
        const int ec = rctc_iq_align_exp(2, m, exps, 61), ka = ea - ec, kb = eb - ec;
        if (ka >= 0 && kb >= 0 && shl_capped(m[0], ka) + shl_capped(m[1], kb) < ((uint64_t)1 << 31)) {
            const int threads = rctc_threads_for_elements(nthreads, n, RCTC_ADD_PER_THREAD);
            add_task t;
            t.n = n;
            t.la = la;
            t.lb = lb;
            t.parts = threads > 1 ? RCTC_ADD_PARTS : 1;
            t.aw = aw;
            t.bw = bw;
            t.ka = ka;
            t.kb = kb;
            t.subtract = subtract != 0;
            t.x = (const char *)a;
            t.y = (const char *)b;
            t.v = n < RCTC_ADD_UNBUFFERED ? (int32_t *)(void *)work : NULL;
            t.s = -1;
            t.w = rctc_iq_width(bits);
            t.rand = rand;
            t.out = out;
            rctc_parallel_for(t.parts, 1, threads, add_parts, &t);
            uint32_t mv = 0;
            for (int p = 0; p < t.parts; ++p) mv = t.maxima[p] > mv ? t.maxima[p] : mv;
            if (t.v) return rctc_iq_requantize_s32_max_mt(nthreads, n, t.v, mv, ec, bits, rand, out, e_out);
            t.s = rctc_iq_requant_shift(mv, bits, rand != NULL); /* requantize's shift for these sums */
            rctc_parallel_for(t.parts, 1, threads, add_parts, &t);
            *e_out = ec + t.s;
            return RCTC_IQ_OK;
        }
    }
    int ka, kb, ec;
    const int rc = rctc_iq_add_exps(ndim, shape, a, aw, as, ea, b, bw, bs, eb, &ka, &kb, &ec);
    if (rc) return rc;
    rctc_iq_add_range(ndim, shape, a, aw, as, ka, b, bw, bs, kb, subtract, 0, n, work);
    return rctc_iq_requantize(n, work, ec, bits, rand, out, e_out);
}

int rctc_iq_add(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand, int64_t *work,
                void *out, int *e_out) {
    return rctc_iq_add_mt(1, ndim, shape, a, aw, as, ea, b, bw, bs, eb, subtract, bits, rand, work, out, e_out);
}
