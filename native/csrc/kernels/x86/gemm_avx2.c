/*
 * gemm_avx2.c - AVX2 integer GEMM, same signatures and bits as gemm.c.
 *
 * Needs: an x86-64 CPU with AVX2 (dispatch.c checks before calling); compiled with -mavx2.
 * Leaves: C exactly as the portable kernel leaves it.
 *
 * Scheme (exact for every int8 / int16 value): operands are widened to int16 while packing and
 * multiplied with vpmaddwd, whose pair sums a0*b0 + a1*b1 cannot overflow int32 because one
 * factor of each product is an int8 (|sum| <= 2 * 2^15 * 2^7). (vpmaddubsw is avoided: it
 * saturates its int16 pair sums.) A 4 x 16 register tile accumulates in int32 over a K block
 * of KC <= 256 products (|sum| <= 2^8 * 2^22 = 2^30, exact), then is added to C: modulo 2^32
 * for s32 outputs (as the portable kernel), exactly in int64 for s64 outputs.
 * Packing (GotoBLAS style): B block KC x NC into 16-column panels of k-pairs, A block MC x KC
 * into rows of k-pairs; both on the stack (no malloc).
 */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#include "../internal.h"
#include "rctc_kernels.h"

#define MR 4
#define NR 16
#define KC 256 /* even; bounds the exact int32 block sum (see above) */
#define MC 64
#define NC 256

typedef struct {
    int M, N, K;
    const void *A;
    ptrdiff_t a_rs, a_cs;
    const int8_t *B;
    ptrdiff_t b_rs, b_cs;
    void *C;
    ptrdiff_t c_rs, c_cs;
    int accumulate, a16, c64, split_n;
} gemm_args;

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

/* K-contiguous B (b_rs == 1), a full 16-column panel, k-pairs [8 g, 8 g + 8) for 16 g < kc:
 * each column's 16 bytes widen to 8 pair words, transposed into the panel's kp rows. */
static void pack_b_kcontig(const int8_t *base, ptrdiff_t cs, int kc, int16_t *dst) {
    for (int half = 0; half < 2; ++half) /* 8 columns at a time: 8 cache lines live (8-way L1) */
        for (int g = 0; 16 * g + 16 <= kc; ++g) {
            __m256i r[8];
            for (int c = 0; c < 8; ++c)
                r[c] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(base + (ptrdiff_t)(8 * half + c) * cs + 16 * g)));
            transpose8x8_epi32(r);
            for (int i = 0; i < 8; ++i) _mm256_storeu_si256((__m256i *)(dst + (ptrdiff_t)(8 * g + i) * 2 * NR + 8 * half * 2), r[i]);
        }
}

/* packB[panel][kp][col 0..15][2]: (B(2kp, col), B(2kp + 1, col)), zero beyond K and N. */
static void pack_b(const gemm_args *p, int k0, int kc, int n0, int nc, int16_t *out) {
    const int kp_n = (kc + 1) / 2;
    const ptrdiff_t rs = p->b_rs, cs = p->b_cs;
    if (cs == 1) { /* rows contiguous: interleave two rows, streaming along them (prefetch-friendly) */
        for (int kp = 0; 2 * kp + 1 < kc; ++kp) {
            const int8_t *r0 = p->B + (ptrdiff_t)(k0 + 2 * kp) * rs + n0;
            for (int j0 = 0; j0 + NR <= nc; j0 += NR) {
                int16_t *d = out + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR + (ptrdiff_t)kp * 2 * NR;
                const __m128i x0 = _mm_loadu_si128((const __m128i *)(r0 + j0));
                const __m128i x1 = _mm_loadu_si128((const __m128i *)(r0 + rs + j0));
                _mm256_storeu_si256((__m256i *)d, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1)));
                _mm256_storeu_si256((__m256i *)(d + 16), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1)));
            }
        }
    }
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int16_t *dst = out + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR;
        const int cols = nc - j0 < NR ? nc - j0 : NR;
        const int8_t *base = p->B + (ptrdiff_t)k0 * rs + (ptrdiff_t)(n0 + j0) * cs;
        int kp = 0;
        if (rs == 1 && cols == NR) {
            pack_b_kcontig(base, cs, kc, dst);
            kp = kc / 16 * 8;
        }
        for (; kp < kp_n; ++kp) {
            int16_t *d = dst + (ptrdiff_t)kp * 2 * NR;
            const int8_t *r0 = base + (ptrdiff_t)(2 * kp) * rs;
            const int has1 = 2 * kp + 1 < kc;
            if (cs == 1 && cols == NR && has1) continue; /* done by the row-wise pass above */
            int c = 0;
            if (has1) {
                const int8_t *r1 = r0 + rs;
                for (; c < cols; ++c) {
                    d[2 * c] = r0[c * cs];
                    d[2 * c + 1] = r1[c * cs];
                }
            } else {
                for (; c < cols; ++c) {
                    d[2 * c] = r0[c * cs];
                    d[2 * c + 1] = 0;
                }
            }
            for (; c < NR; ++c) d[2 * c] = d[2 * c + 1] = 0;
        }
    }
}

/* packA[strip][row 0..3][kp] = (A(row, 2kp), A(row, 2kp + 1)) as int16 pairs, zero padded. */
static void pack_a(const gemm_args *p, int m0, int mc, int k0, int kc, int16_t *out) {
    const int kp_n = (kc + 1) / 2;
    const ptrdiff_t cs = p->a_cs;
    for (int i = 0; i < (mc + MR - 1) / MR * MR; ++i) {
        int16_t *d = out + ((ptrdiff_t)(i / MR) * MR + i % MR) * kp_n * 2;
        if (i >= mc) {
            memset(d, 0, sizeof(int16_t) * 2 * (size_t)kp_n);
            continue;
        }
        const ptrdiff_t off = (ptrdiff_t)(m0 + i) * p->a_rs + (ptrdiff_t)k0 * cs;
        int k = 0;
        if (p->a16) {
            const int16_t *a = (const int16_t *)p->A + off;
            if (cs == 1) {
                memcpy(d, a, sizeof(int16_t) * (size_t)kc);
                k = kc;
            } else {
                for (; k < kc; ++k) d[k] = a[k * cs];
            }
        } else {
            const int8_t *a = (const int8_t *)p->A + off;
            if (cs == 1)
                for (; k + 16 <= kc; k += 16)
                    _mm256_storeu_si256((__m256i *)(d + k), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + k))));
            for (; k < kc; ++k) d[k] = a[k * cs];
        }
        if (kc & 1) d[kc] = 0;
    }
}

/* The int16 pair at p as one int32 broadcast to 8 lanes (memcpy: no aliasing violation). */
static inline __m256i bcast_pair(const int16_t *p) {
    int32_t w;
    memcpy(&w, p, sizeof w);
    return _mm256_set1_epi32(w);
}

/* tile[r][0..15] = sum over kp of the packed pairs (exact int32, see header). */
static void micro_4x16(int kp_n, const int16_t *pa16, const int16_t *pb, int32_t *tile) {
    const int16_t *pa0 = pa16, *pa1 = pa0 + 2 * kp_n, *pa2 = pa1 + 2 * kp_n, *pa3 = pa2 + 2 * kp_n;
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
    __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (int kp = 0; kp < kp_n; ++kp) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(pb + 32 * kp));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(pb + 32 * kp + 16));
        __m256i a = bcast_pair(pa0 + 2 * kp);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(a, b0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(a, b1));
        a = bcast_pair(pa1 + 2 * kp);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(a, b0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(a, b1));
        a = bcast_pair(pa2 + 2 * kp);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(a, b0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(a, b1));
        a = bcast_pair(pa3 + 2 * kp);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(a, b0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(a, b1));
    }
    _mm256_storeu_si256((__m256i *)(tile + 0), c00);
    _mm256_storeu_si256((__m256i *)(tile + 8), c01);
    _mm256_storeu_si256((__m256i *)(tile + 16), c10);
    _mm256_storeu_si256((__m256i *)(tile + 24), c11);
    _mm256_storeu_si256((__m256i *)(tile + 32), c20);
    _mm256_storeu_si256((__m256i *)(tile + 40), c21);
    _mm256_storeu_si256((__m256i *)(tile + 48), c30);
    _mm256_storeu_si256((__m256i *)(tile + 56), c31);
}

/* C(m0 + r, n0 + c) = or += tile[r][c] for the valid rows / columns. */
static void store_tile(const gemm_args *p, int m0, int rows, int n0, int cols, const int32_t *tile, int add) {
    for (int r = 0; r < rows; ++r) {
        const ptrdiff_t base = (ptrdiff_t)(m0 + r) * p->c_rs + (ptrdiff_t)n0 * p->c_cs;
        const int32_t *t = tile + r * NR;
        if (p->c64) {
            int64_t *c = (int64_t *)p->C + base;
            if (add)
                for (int j = 0; j < cols; ++j) c[j * p->c_cs] += t[j];
            else
                for (int j = 0; j < cols; ++j) c[j * p->c_cs] = t[j];
        } else {
            int32_t *c = (int32_t *)p->C + base;
            if (add && p->c_cs == 1 && cols == NR) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)c);
                __m256i hi = _mm256_loadu_si256((const __m256i *)(c + 8));
                lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)t));
                hi = _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)(t + 8)));
                _mm256_storeu_si256((__m256i *)c, lo);
                _mm256_storeu_si256((__m256i *)(c + 8), hi);
            } else if (p->c_cs == 1 && cols == NR) {
                _mm256_storeu_si256((__m256i *)c, _mm256_loadu_si256((const __m256i *)t));
                _mm256_storeu_si256((__m256i *)(c + 8), _mm256_loadu_si256((const __m256i *)(t + 8)));
            } else if (add) {
                for (int j = 0; j < cols; ++j) c[j * p->c_cs] = (int32_t)((uint32_t)c[j * p->c_cs] + (uint32_t)t[j]);
            } else {
                for (int j = 0; j < cols; ++j) c[j * p->c_cs] = t[j];
            }
        }
    }
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

/* The blocked product on rows [m0, m1) x columns [n0, n1). */
static void gemm_block(const gemm_args *p, int m0, int m1, int n0, int n1) {
    int16_t pb[(KC / 2) * 2 * NC] __attribute__((aligned(32)));
    int16_t pa[KC * MC] __attribute__((aligned(32)));
    int32_t tile[MR * NR] __attribute__((aligned(32)));
    if (p->K == 0) {
        if (!p->accumulate) zero_c(p, m0, m1, n0, n1);
        return;
    }
    for (int nb = n0; nb < n1; nb += NC) {
        const int nc = n1 - nb < NC ? n1 - nb : NC;
        for (int kb = 0; kb < p->K; kb += KC) {
            const int kc = p->K - kb < KC ? p->K - kb : KC;
            const int kp_n = (kc + 1) / 2;
            const int add = kb > 0 || p->accumulate;
            pack_b(p, kb, kc, nb, nc, pb);
            for (int mb = m0; mb < m1; mb += MC) {
                const int mc = m1 - mb < MC ? m1 - mb : MC;
                pack_a(p, mb, mc, kb, kc, pa);
                for (int i0 = 0; i0 < mc; i0 += MR)
                    for (int j0 = 0; j0 < nc; j0 += NR) {
                        micro_4x16(kp_n, pa + (ptrdiff_t)i0 * kp_n * 2, pb + (ptrdiff_t)(j0 / NR) * kp_n * 2 * NR,
                                   tile);
                        store_tile(p, mb + i0, mc - i0 < MR ? mc - i0 : MR, nb + j0, nc - j0 < NR ? nc - j0 : NR, tile,
                                   add);
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
    const int t = rctc_threads_for(nthreads, (uint64_t)p->M * (uint64_t)p->N * (uint64_t)p->K);
    p->split_n = p->N >= p->M;
    rctc_parallel_for(p->split_n ? p->N : p->M, p->split_n ? NR : MR, t, gemm_task, p);
}

#define RCTC_DEFINE_GEMM_AVX2(NAME, TA, TC, A16, C64)                                                              \
    void NAME(RCTC_GEMM_ARGS(TA, int8_t, TC)) {                                                                     \
        gemm_args p = {M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, c_cs, accumulate, A16, C64, 0};             \
        gemm_run(&p, nthreads);                                                                                    \
    }

RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s8s8s32_avx2, int8_t, int32_t, 0, 0)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s8s8s64_avx2, int8_t, int64_t, 0, 1)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s16s8s32_avx2, int16_t, int32_t, 1, 0)
RCTC_DEFINE_GEMM_AVX2(rctc_gemm_s16s8s64_avx2, int16_t, int64_t, 1, 1)

#else
typedef int rctc_gemm_avx2_empty; /* ISO C forbids an empty translation unit */
#endif
