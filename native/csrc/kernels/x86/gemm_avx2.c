/*
 * gemm_avx2.c - AVX2 integer GEMM, same signatures and bits as gemm.c.
 *
 * Needs: an x86-64 CPU with AVX2 (dispatch.c checks before calling); compiled with -mavx2.
 * Leaves: C exactly as the portable kernel leaves it, for any thread count.
 *
 * Scheme (exact for every int8 / int16 value): operands are widened to int16 while packing and
 * multiplied with vpmaddwd (16 multiply-adds per instruction), whose pair sums a0*b0 + a1*b1
 * cannot overflow int32 because one factor of each product is an int8 (|sum| <= 2 * 2^15 * 2^7).
 * vpmaddubsw (32 per instruction) is not used: it saturates its int16 pair sums, which an int8
 * x int8 pair already exceeds (2 * 128 * 128 > 2^15). A 4 x 16 register tile accumulates in
 * int32 over a K block, then is added to C: modulo 2^32 for s32 outputs (as the portable
 * kernel; the wrap-around is the same whatever the blocking), exactly in int64 for s64 outputs,
 * where the block is short enough for an exact int32 sum (kc_max below).
 * Blocking (GotoBLAS / BLIS order): a B block kc x nc is packed into 16-column panels of
 * k-pairs, an A block mc x kc into 4-row strips of k-pairs (both on the stack, no malloc); each
 * B panel stays in L1 while every A strip of the block runs against it (for short K blocks the
 * tiles go row-strip by row-strip instead). Which block a thread computes never changes its bits.
 */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#include "../internal.h"
#include "rctc_kernels.h"

#define MR 4
#define NR 16
#define KC_EXACT64 256  /* int16 x int8 into s64: 128 pairs, |sum| <= 2^7 * 2^23 = 2^30, exact */
#define KC_MAX 512      /* otherwise (modular s32, or int8 x int8: |pair| <= 2^15) */
#define B_BLOCK 65536   /* int16 elements of a packed B block (128 KiB) */
#define A_BLOCK 32768   /* int16 elements of a packed A block (64 KiB) */
#define ROWS_OUTER_KC 64 /* K blocks this short run the tiles row-strip outer (see gemm_block) */

/* One operand: X(i, j) = p[i * rs + j * cs], int8 or (wide) int16 (A only: B is int8). */
typedef struct {
    const void *p;
    ptrdiff_t rs, cs;
    int wide;
} operand;

typedef struct {
    int M, N, K;
    operand a, b; /* A(m, k), B(k, n) */
    void *C;
    ptrdiff_t c_rs, c_cs;
    int accumulate, c64, split_n, kc;
} gemm_args;

static inline int16_t elem(const operand *o, ptrdiff_t off) {
    return o->wide ? ((const int16_t *)o->p)[off] : (int16_t)((const int8_t *)o->p)[off];
}

/* 16 consecutive elements at offset off, widened to int16. */
static inline __m256i load16(const operand *o, ptrdiff_t off) {
    if (o->wide) return _mm256_loadu_si256((const __m256i *)((const int16_t *)o->p + off));
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const int8_t *)o->p + off)));
}

/* 8 x 8 transpose of int32 words: r[c] holds words w0..w7 of column c; on return r[i] holds
 * word i of columns 0..7. */
static inline void transpose8x8_epi32(__m256i r[8]) {
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* K-contiguous B (rs == 1), a full 16-column panel, k-pairs [8 g, 8 g + 8) for 16 g + 16 <= kc:
 * each column's 16 k values widen to 8 pair words, transposed into the panel's kp rows. */
static void pack_b_kcontig(const operand *b, ptrdiff_t off, int kc, int16_t *dst) {
    for (int half = 0; half < 2; ++half) /* 8 columns at a time: 8 cache lines live */
        for (int g = 0; 16 * g + 16 <= kc; ++g) {
            __m256i r[8];
            for (int c = 0; c < 8; ++c) r[c] = load16(b, off + (ptrdiff_t)(8 * half + c) * b->cs + 16 * g);
            transpose8x8_epi32(r);
            for (int i = 0; i < 8; ++i) _mm256_storeu_si256((__m256i *)(dst + (ptrdiff_t)(8 * g + i) * 2 * NR + 16 * half), r[i]);
        }
}

/* Row-contiguous B (cs == 1): the k-pair (r0, r1) of 16 columns interleaved into d[0..31]. */
static inline void pack_b_rowpair(const operand *b, ptrdiff_t off, int16_t *d) {
    const int8_t *r0 = (const int8_t *)b->p + off;
    const __m128i x0 = _mm_loadu_si128((const __m128i *)r0);
    const __m128i x1 = _mm_loadu_si128((const __m128i *)(r0 + b->rs));
    _mm256_storeu_si256((__m256i *)d, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1)));
    _mm256_storeu_si256((__m256i *)(d + 16), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1)));
}

/* packB[panel][kp][col 0..15][2]: (B(2kp, col), B(2kp + 1, col)), zero beyond K and N. */
static void pack_b(const gemm_args *p, int k0, int kc, int n0, int nc, int16_t *out) {
    const operand *b = &p->b;
    const int kp_n = (kc + 1) / 2;
    const int rowwise = b->cs == 1;
    if (rowwise) /* rows contiguous: k-pair outer, so each row is read along nc (whole cache lines) */
        for (int kp = 0; 2 * kp + 1 < kc; ++kp)
            for (int j0 = 0; j0 + NR <= nc; j0 += NR)
                pack_b_rowpair(b, (ptrdiff_t)(k0 + 2 * kp) * b->rs + n0 + j0,
                               out + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR + (ptrdiff_t)kp * 2 * NR);
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int16_t *dst = out + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR;
        const int cols = nc - j0 < NR ? nc - j0 : NR;
        const ptrdiff_t base = (ptrdiff_t)k0 * b->rs + (ptrdiff_t)(n0 + j0) * b->cs;
        int kp = 0;
        if (cols == NR && rowwise) {
            kp = kc / 2; /* done above */
        } else if (cols == NR && b->rs == 1) {
            pack_b_kcontig(b, base, kc, dst);
            kp = kc / 16 * 8;
        }
        for (; kp < kp_n; ++kp) {
            int16_t *d = dst + (ptrdiff_t)kp * 2 * NR;
            const ptrdiff_t r0 = base + (ptrdiff_t)(2 * kp) * b->rs;
            const int has1 = 2 * kp + 1 < kc;
            int c = 0;
            for (; c < cols; ++c) {
                d[2 * c] = elem(b, r0 + c * b->cs);
                d[2 * c + 1] = has1 ? elem(b, r0 + b->rs + c * b->cs) : 0;
            }
            for (; c < NR; ++c) d[2 * c] = d[2 * c + 1] = 0;
        }
    }
}

/* packA[strip][kp][row 0..3] = (A(row, 2kp), A(row, 2kp + 1)) as int16 pairs, zero padded: the
 * micro-kernel reads one contiguous stream. */
static void pack_a(const gemm_args *p, int m0, int mc, int k0, int kc, int16_t *out) {
    const operand *a = &p->a;
    const int kp_n = (kc + 1) / 2;
    for (int i0 = 0; i0 < mc; i0 += MR) {
        int16_t *d = out + (ptrdiff_t)i0 * kp_n * 2;
        const int rows = mc - i0 < MR ? mc - i0 : MR;
        const ptrdiff_t off = (ptrdiff_t)(m0 + i0) * a->rs + (ptrdiff_t)k0 * a->cs;
        int kp = 0;
        if (rows == MR && a->cs == 1) /* 16 k of 4 rows: a 4 x 8 transpose of pair words */
            for (; 2 * kp + 16 <= kc; kp += 8) {
                const __m256i r0 = load16(a, off + 2 * kp), r1 = load16(a, off + a->rs + 2 * kp);
                const __m256i r2 = load16(a, off + 2 * a->rs + 2 * kp), r3 = load16(a, off + 3 * a->rs + 2 * kp);
                const __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
                const __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
                const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
                const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
                int16_t *q = d + (ptrdiff_t)kp * 2 * MR; /* u0 = kp 0 | 4, u1 = 1 | 5, u2 = 2 | 6, u3 = 3 | 7 */
                _mm256_storeu_si256((__m256i *)q, _mm256_permute2x128_si256(u0, u1, 0x20));
                _mm256_storeu_si256((__m256i *)(q + 16), _mm256_permute2x128_si256(u2, u3, 0x20));
                _mm256_storeu_si256((__m256i *)(q + 32), _mm256_permute2x128_si256(u0, u1, 0x31));
                _mm256_storeu_si256((__m256i *)(q + 48), _mm256_permute2x128_si256(u2, u3, 0x31));
            }
        for (; kp < kp_n; ++kp)
            for (int r = 0; r < MR; ++r) {
                int16_t *q = d + (ptrdiff_t)kp * 2 * MR + 2 * r;
                const ptrdiff_t o = off + (ptrdiff_t)r * a->rs + (ptrdiff_t)(2 * kp) * a->cs;
                q[0] = r < rows ? elem(a, o) : 0;
                q[1] = r < rows && 2 * kp + 1 < kc ? elem(a, o + a->cs) : 0;
            }
    }
}

/* The int16 pair at p as one int32 broadcast to 8 lanes (memcpy: no aliasing violation). */
static inline __m256i bcast_pair(const int16_t *p) {
    int32_t w;
    memcpy(&w, p, sizeof w);
    return _mm256_set1_epi32(w);
}

/* c += madd(a, b) in place: written as two instructions so that the compiler keeps each
 * accumulator in one register (left to itself, GCC adds a register move per update). */
static inline __m256i madd_acc(__m256i c, __m256i a, __m256i b) {
    __m256i t;
    __asm__("vpmaddwd %[b], %[a], %[t]\n\tvpaddd %[t], %[c], %[c]" : [c] "+x"(c), [t] "=&x"(t) : [a] "x"(a), [b] "x"(b));
    return c;
}

/* C(m0 + r, n0 + c) = or += t[r * NR + c] for the valid rows / columns (any strides). */
static void store_tile_slow(const gemm_args *p, int m0, int rows, int n0, int cols, const int32_t *tile, int add) {
    for (int r = 0; r < rows; ++r) {
        const ptrdiff_t base = (ptrdiff_t)(m0 + r) * p->c_rs + (ptrdiff_t)n0 * p->c_cs;
        const int32_t *t = tile + r * NR;
        if (p->c64) {
            int64_t *c = (int64_t *)p->C + base;
            for (int j = 0; j < cols; ++j) c[j * p->c_cs] = (add ? c[j * p->c_cs] : 0) + t[j];
        } else {
            int32_t *c = (int32_t *)p->C + base;
            for (int j = 0; j < cols; ++j)
                c[j * p->c_cs] = (int32_t)((add ? (uint32_t)c[j * p->c_cs] : 0u) + (uint32_t)t[j]);
        }
    }
}

/* One full row of a tile (16 int32 in lo, hi) into a row-contiguous C row. */
static inline void store_row(const gemm_args *p, ptrdiff_t base, __m256i lo, __m256i hi, int add) {
    if (p->c64) {
        int64_t *c = (int64_t *)p->C + base;
        __m256i w[4] = {_mm256_cvtepi32_epi64(_mm256_castsi256_si128(lo)), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(lo, 1)),
                        _mm256_cvtepi32_epi64(_mm256_castsi256_si128(hi)), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(hi, 1))};
        for (int q = 0; q < 4; ++q) {
            if (add) w[q] = _mm256_add_epi64(w[q], _mm256_loadu_si256((const __m256i *)(c + 4 * q)));
            _mm256_storeu_si256((__m256i *)(c + 4 * q), w[q]);
        }
    } else {
        int32_t *c = (int32_t *)p->C + base;
        if (add) {
            lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)c));
            hi = _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)(c + 8)));
        }
        _mm256_storeu_si256((__m256i *)c, lo);
        _mm256_storeu_si256((__m256i *)(c + 8), hi);
    }
}

/* The 4 x 16 tile at (m0, n0): sum over kp of the packed pairs (exact int32, see the header),
 * written or added to C straight from the registers when the tile is full and C rows are
 * contiguous, else through a buffer. */
__attribute__((noinline)) static void micro_4x16(const gemm_args *p, int kp_n, const int16_t *pa, const int16_t *pb, int m0, int rows, int n0,
                       int cols, int add) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
    __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
#pragma GCC unroll 4
    for (int kp = 0; kp < kp_n; ++kp) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(pb + 32 * kp));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(pb + 32 * kp + 16));
        __m256i a = bcast_pair(pa + 8 * kp + 0);
        c00 = madd_acc(c00, a, b0);
        c01 = madd_acc(c01, a, b1);
        a = bcast_pair(pa + 8 * kp + 2);
        c10 = madd_acc(c10, a, b0);
        c11 = madd_acc(c11, a, b1);
        a = bcast_pair(pa + 8 * kp + 4);
        c20 = madd_acc(c20, a, b0);
        c21 = madd_acc(c21, a, b1);
        a = bcast_pair(pa + 8 * kp + 6);
        c30 = madd_acc(c30, a, b0);
        c31 = madd_acc(c31, a, b1);
    }
    if (rows == MR && cols == NR && p->c_cs == 1) {
        const ptrdiff_t base = (ptrdiff_t)m0 * p->c_rs + n0;
        store_row(p, base, c00, c01, add);
        store_row(p, base + p->c_rs, c10, c11, add);
        store_row(p, base + 2 * p->c_rs, c20, c21, add);
        store_row(p, base + 3 * p->c_rs, c30, c31, add);
        return;
    }
    int32_t tile[MR * NR] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)(tile + 0), c00);
    _mm256_store_si256((__m256i *)(tile + 8), c01);
    _mm256_store_si256((__m256i *)(tile + 16), c10);
    _mm256_store_si256((__m256i *)(tile + 24), c11);
    _mm256_store_si256((__m256i *)(tile + 32), c20);
    _mm256_store_si256((__m256i *)(tile + 40), c21);
    _mm256_store_si256((__m256i *)(tile + 48), c30);
    _mm256_store_si256((__m256i *)(tile + 56), c31);
    store_tile_slow(p, m0, rows, n0, cols, tile, add);
}

static void zero_c(const gemm_args *p, int m0, int m1, int n0, int n1) {
    for (int m = m0; m < m1; ++m)
        for (int n = n0; n < n1; ++n) {
            const ptrdiff_t o = (ptrdiff_t)m * p->c_rs + (ptrdiff_t)n * p->c_cs;
            if (p->c64)
                ((int64_t *)p->C)[o] = 0;
            else
                ((int32_t *)p->C)[o] = 0;
        }
}

static inline int min_int(int x, int y) { return x < y ? x : y; }

/* The blocked product on rows [m0, m1) x columns [n0, n1). */
static void gemm_block(const gemm_args *p, int m0, int m1, int n0, int n1) {
    int16_t pb[B_BLOCK] __attribute__((aligned(32)));
    int16_t pa[A_BLOCK] __attribute__((aligned(32)));
    if (p->K == 0) {
        if (!p->accumulate) zero_c(p, m0, m1, n0, n1);
        return;
    }
    const int kc_blk = p->kc, kp_blk = (kc_blk + 1) / 2;
    const int nc_max = B_BLOCK / (2 * kp_blk) / NR * NR, mc_max = A_BLOCK / (2 * kp_blk) / MR * MR;
    for (int nb = n0; nb < n1; nb += nc_max) {
        const int nc = min_int(n1 - nb, nc_max);
        for (int kb = 0; kb < p->K; kb += kc_blk) {
            const int kc = min_int(p->K - kb, kc_blk), kp_n = (kc + 1) / 2;
            const int add = kb > 0 || p->accumulate;
            pack_b(p, kb, kc, nb, nc, pb);
            for (int mb = m0; mb < m1; mb += mc_max) {
                const int mc = min_int(m1 - mb, mc_max);
                pack_a(p, mb, mc, kb, kc, pa);
                /* Long K blocks: each B panel stays in L1 while the A strips pass. Short ones
                 * (a few products per output): C traffic dominates, so write C row-strip by
                 * row-strip, streaming along its rows. Either order gives the same bits. */
                const int rows_outer = kc <= ROWS_OUTER_KC;
                const int ni = (mc + MR - 1) / MR, nj = (nc + NR - 1) / NR;
                for (int t = 0; t < ni * nj; ++t) {
                    const int i0 = MR * (rows_outer ? t / nj : t % ni), j0 = NR * (rows_outer ? t % nj : t / ni);
                    micro_4x16(p, kp_n, pa + (ptrdiff_t)i0 * kp_n * 2, pb + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR,
                               mb + i0, min_int(mc - i0, MR), nb + j0, min_int(nc - j0, NR), add);
                }
            }
        }
    }
}

static void gemm_task(void *vctx, int b, int e) {
    const gemm_args *p = (const gemm_args *)vctx;
    if (p->split_n)
        gemm_block(p, 0, p->M, b, e);
    else
        gemm_block(p, b, e, 0, p->N);
}

static void gemm_run(gemm_args *p, int nthreads) {
    if (p->M <= 0 || p->N <= 0) return;
    if (p->K < 0) p->K = 0;
    /* K blocks of balanced length (a multiple of 16 when split), short enough for exact s64. */
    const int kc_max = (p->c64 && p->a.wide) ? KC_EXACT64 : KC_MAX;
    const int nkb = (p->K + kc_max - 1) / kc_max;
    p->kc = nkb <= 1 ? (p->K > 0 ? p->K : 1) : min_int(kc_max, ((p->K + nkb - 1) / nkb + 15) / 16 * 16);
    const int t = rctc_threads_for(nthreads, (uint64_t)p->M * (uint64_t)p->N * (uint64_t)p->K);
    p->split_n = p->N >= p->M;
    rctc_parallel_for(p->split_n ? p->N : p->M, p->split_n ? NR : MR, t, gemm_task, p);
}

#define RCTC_DEFINE_GEMM_AVX2(NAME, TA, TC, A16, C64)                                                              \
    void NAME(RCTC_GEMM_ARGS(TA, int8_t, TC)) {                                                                     \
        gemm_args p = {M, N, K, {A, a_rs, a_cs, A16}, {B, b_rs, b_cs, 0}, C, c_rs, c_cs, accumulate, C64, 0, 0};   \
        gemm_run(&p, nthreads);                                                                                    \
    }

RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s8s8s32_avx2, int8_t, int32_t, 0, 0)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s8s8s64_avx2, int8_t, int64_t, 0, 1)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s16s8s32_avx2, int16_t, int32_t, 1, 0)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s16s8s64_avx2, int16_t, int64_t, 1, 1)

#else
typedef int rctc_gemm_avx2_empty; /* ISO C forbids an empty translation unit */
#endif
