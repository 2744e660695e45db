/*
 * gemm_avx512.c - AVX-512 VNNI integer GEMM, same signatures and bits as gemm.c.
 *
 * Needs: an x86-64 CPU (and OS) with AVX-512 F/BW/VL/VNNI (dispatch.c checks before calling);
 * compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (build.py, this file only), the
 * packing helpers in gemm_pack_avx512.c.
 * Leaves: C exactly as the portable kernel leaves it, for any thread count.
 *
 * Exactness. Only the non-saturating VNNI forms are used (vpdpbusds / vpmaddubsw saturate):
 *  - int8 x int8: vpdpbusd multiplies unsigned by signed bytes, so B is packed as u = b + 128
 *    (a byte XOR 0x80) and A stays signed: sum_k u*a = sum_k a*b + 128 * sum_k a. Each row's
 *    accumulators start at -128 * sum_k A(m, k) over the K block (its correction, formed while
 *    packing A), so they end at the exact sum modulo 2^32. For s32 outputs that is the
 *    portable kernel's result; for s64 the block's exact sum fits int32 (|sum| <= kc * 2^14 with
 *    kc <= 512), so the modular int32 is the exact value, added to C in int64.
 *  - int16 x int8: vpdpwssd on int16 pairs, B widened to int16; a pair sum is at most 2^23, and a
 *    K block into s64 is at most 256 long (|sum| <= 256 * 2^22 = 2^30: exact in int32).
 *  - int16 A whose values all fit int8 (a weight at 8 bits or fewer) is narrowed and takes the
 *    int8 x int8 path: the same exact product, at twice the MACs per instruction.
 * Padding (k beyond K) is zero in the packed B, so it adds nothing whatever A holds there.
 * Blocking (GotoBLAS order, as gemm_avx2.c): a B block (kc x nc) is packed into 48-column panels
 * of 4-byte steps (4 k of u8, or 2 k of int16), an A block (mc x kc) into 8-row strips of the
 * same steps; an 8 x 48 register tile (24 zmm accumulators) runs over a K block with B panel
 * loads and A broadcasts from memory. Threads split N (16-column units) or M (8-row units);
 * which thread computes a block never changes its bits.
 */
#if defined(__x86_64__) || defined(_M_X64)
/* The device project's host build (native/device/Makefile) adds only -mavx2 to its x86 files:
 * without the -m flags, enable the ISA for this file here (same code either way). */
#if !defined(__AVX512VNNI__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")
#elif !defined(__AVX512VNNI__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#define RCTC_CLANG_TARGET_PUSHED 1
#endif
#include <immintrin.h>
#include <string.h>

#include "../internal.h"
#include "../gemm_avx512.h"
#include "rctc_kernels.h"

#define B_BLOCK (192 * 1024) /* bytes of a packed B block */
#define A_BLOCK (64 * 1024)  /* bytes of a packed A block */
#define STEPS_MAX 128        /* 4-byte steps per K block: kc <= 512 (int8 A), 256 (int16 A) */
#define STRIPS_OUTER_STEPS 8 /* K blocks this short (32 int8 k) run strip by strip (gemm_block) */
#define MC_CAP 1024          /* rows of a packed A block (and of its corrections) */

/* One 8 x (16 NV) tile: acc(r, c) = corr[r] + sum over steps of the packed products, then
 * written or added to C. OP is the VNNI instruction, B vectors first (u8 for vpdpbusd). */
#define RCTC_DEFINE_MICRO(NAME, NV, OP)                                                                  \
    static void NAME(const gemm512_args *p, int steps, const uint8_t *pa, ptrdiff_t a_ss, ptrdiff_t a_rs, \
                     const uint8_t *pb, const int32_t *corr, int m0, int rows, int n0, int cols, int add) {   \
        __m512i c[G512_MR][NV];                                                                          \
        const uint8_t *ar[G512_MR]; /* row r's first word; rows past the strip reread row 0 */           \
        const ptrdiff_t b_ss = (ptrdiff_t)p->nr * 4;                                                     \
        _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) ar[r] = pa + (r < rows ? r : 0) * a_rs; \
        _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) {                                      \
            const __m512i init = _mm512_set1_epi32(corr[r]);                                             \
            _Pragma("GCC unroll 3") for (int v = 0; v < NV; ++v) c[r][v] = init;                         \
        }                                                                                                \
        for (int s = 0; s < steps; ++s) {                                                                \
            __m512i b[NV];                                                                               \
            _Pragma("GCC unroll 3") for (int v = 0; v < NV; ++v)                                         \
                b[v] = _mm512_load_si512((const void *)(pb + (ptrdiff_t)s * b_ss + 64 * v));             \
            _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) {                                  \
                int32_t w;                                                                               \
                memcpy(&w, ar[r] + (ptrdiff_t)s * a_ss, sizeof w);                                      \
                const __m512i a = _mm512_set1_epi32(w);                                                  \
                _Pragma("GCC unroll 3") for (int v = 0; v < NV; ++v) c[r][v] = OP(c[r][v], b[v], a);     \
            }                                                                                            \
        }                                                                                                \
        if (rows == G512_MR && cols == 16 * NV && p->c_cs == 1 && !p->c64) { /* a whole tile of s32 rows */ \
            int32_t *c0 = (int32_t *)p->C + (ptrdiff_t)m0 * p->c_rs + n0;                                \
            _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r)                                    \
                _Pragma("GCC unroll 3") for (int v = 0; v < NV; ++v) {                                   \
                    int32_t *q = c0 + (ptrdiff_t)r * p->c_rs + 16 * v;                                   \
                    store_full(q, c[r][v], add);                                                         \
                }                                                                                        \
            return;                                                                                      \
        }                                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) /* constant indices: c stays in zmm */ \
            if (r < rows)                                                                                \
                _Pragma("GCC unroll 3") for (int v = 0; v < NV; ++v)                                     \
                    store16(p, m0 + r, n0 + 16 * v, cols - 16 * v, c[r][v], add);                        \
    }

/* q[0 .. 15] = or += x (int32, modulo 2^32). */
static inline void store_full(int32_t *q, __m512i x, int add) {
    if (add) x = _mm512_add_epi32(x, _mm512_loadu_si512((const void *)q));
    _mm512_storeu_si512((void *)q, x);
}

/* C(m, n0 .. n0 + n - 1) = or += the 16 int32 in x (n <= 0: nothing; n > 16: 16). */
static inline void store16(const gemm512_args *p, int m, int n0, int n, __m512i x, int add) {
    if (n <= 0) return;
    if (n > 16) n = 16;
    const ptrdiff_t base = (ptrdiff_t)m * p->c_rs + (ptrdiff_t)n0 * p->c_cs;
    if (p->c_cs != 1) {
        int32_t t[16];
        _mm512_storeu_si512((void *)t, x);
        for (int j = 0; j < n; ++j) {
            const ptrdiff_t o = base + (ptrdiff_t)j * p->c_cs;
            if (p->c64)
                ((int64_t *)p->C)[o] = (add ? ((int64_t *)p->C)[o] : 0) + t[j];
            else
                ((int32_t *)p->C)[o] = (int32_t)((add ? (uint32_t)((int32_t *)p->C)[o] : 0u) + (uint32_t)t[j]);
        }
        return;
    }
    const __mmask16 k = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1u);
    if (p->c64) {
        int64_t *c = (int64_t *)p->C + base;
        const __mmask8 k0 = (__mmask8)(k & 0xFF), k1 = (__mmask8)(k >> 8);
        __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(x));
        __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(x, 1));
        if (add) {
            lo = _mm512_add_epi64(lo, _mm512_maskz_loadu_epi64(k0, c));
            hi = _mm512_add_epi64(hi, _mm512_maskz_loadu_epi64(k1, c + 8));
        }
        _mm512_mask_storeu_epi64(c, k0, lo);
        if (k1) _mm512_mask_storeu_epi64(c + 8, k1, hi);
    } else {
        int32_t *c = (int32_t *)p->C + base;
        if (add) x = _mm512_add_epi32(x, _mm512_maskz_loadu_epi32(k, c));
        _mm512_mask_storeu_epi32(c, k, x);
    }
}

static inline __m512i op_dpbusd(__m512i c, __m512i b_u8, __m512i a_s8) { return _mm512_dpbusd_epi32(c, b_u8, a_s8); }
static inline __m512i op_dpwssd(__m512i c, __m512i b_s16, __m512i a_s16) { return _mm512_dpwssd_epi32(c, b_s16, a_s16); }

/* The 8 x 16 tile: 8 accumulators alone cannot cover the instruction's latency, so even and odd
 * steps go to two sets, added at the end (modulo 2^32: the same sum). */
#define RCTC_DEFINE_MICRO1(NAME, OP)                                                                     \
    static void NAME(const gemm512_args *p, int steps, const uint8_t *pa, ptrdiff_t a_ss, ptrdiff_t a_rs, \
                     const uint8_t *pb, const int32_t *corr, int m0, int rows, int n0, int cols, int add) {   \
        __m512i c[G512_MR], d[G512_MR];                                                                  \
        const uint8_t *ar[G512_MR];                                                                      \
        const ptrdiff_t b_ss = (ptrdiff_t)p->nr * 4;                                                     \
        _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) {                                      \
            ar[r] = pa + (r < rows ? r : 0) * a_rs;                                                      \
            c[r] = _mm512_set1_epi32(corr[r]);                                                           \
            d[r] = _mm512_setzero_si512();                                                               \
        }                                                                                                \
        int s = 0;                                                                                       \
        for (; s + 1 < steps; s += 2) {                                                                  \
            const __m512i b0 = _mm512_load_si512((const void *)(pb + (ptrdiff_t)s * b_ss));              \
            const __m512i b1 = _mm512_load_si512((const void *)(pb + (ptrdiff_t)(s + 1) * b_ss));        \
            _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) {                                  \
                int32_t w0, w1;                                                                          \
                memcpy(&w0, ar[r] + (ptrdiff_t)s * a_ss, sizeof w0);                                    \
                memcpy(&w1, ar[r] + (ptrdiff_t)(s + 1) * a_ss, sizeof w1);                              \
                c[r] = OP(c[r], b0, _mm512_set1_epi32(w0));                                              \
                d[r] = OP(d[r], b1, _mm512_set1_epi32(w1));                                              \
            }                                                                                            \
        }                                                                                                \
        if (s < steps) {                                                                                 \
            const __m512i b0 = _mm512_load_si512((const void *)(pb + (ptrdiff_t)s * b_ss));              \
            _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) {                                  \
                int32_t w0;                                                                              \
                memcpy(&w0, ar[r] + (ptrdiff_t)s * a_ss, sizeof w0);                                     \
                c[r] = OP(c[r], b0, _mm512_set1_epi32(w0));                                              \
            }                                                                                            \
        }                                                                                                \
        if (rows == G512_MR && cols == 16 && p->c_cs == 1 && !p->c64) { /* a whole tile of s32 rows */  \
            int32_t *c0 = (int32_t *)p->C + (ptrdiff_t)m0 * p->c_rs + n0;                                \
            _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r)                                    \
                store_full(c0 + (ptrdiff_t)r * p->c_rs, _mm512_add_epi32(c[r], d[r]), add);               \
            return;                                                                                      \
        }                                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < G512_MR; ++r) if (r < rows)                          \
            store16(p, m0 + r, n0, cols, _mm512_add_epi32(c[r], d[r]), add);                             \
    }

RCTC_DEFINE_MICRO1(micro_s8_1, op_dpbusd)
RCTC_DEFINE_MICRO(micro_s8_2, 2, op_dpbusd)
RCTC_DEFINE_MICRO(micro_s8_3, 3, op_dpbusd)
RCTC_DEFINE_MICRO1(micro_s16_1, op_dpwssd)
RCTC_DEFINE_MICRO(micro_s16_2, 2, op_dpwssd)
RCTC_DEFINE_MICRO(micro_s16_3, 3, op_dpwssd)

typedef void (*micro_fn)(const gemm512_args *, int, const uint8_t *, ptrdiff_t, ptrdiff_t, const uint8_t *,
                         const int32_t *, int, int, int, int, int);
static const micro_fn MICRO[2][3] = {{micro_s8_1, micro_s8_2, micro_s8_3}, {micro_s16_1, micro_s16_2, micro_s16_3}};

static void zero_c(const gemm512_args *p, int m0, int m1, int n0, int n1) {
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
static void gemm_block(const gemm512_args *p, int m0, int m1, int n0, int n1) {
    uint8_t pb[B_BLOCK] __attribute__((aligned(64)));
    uint8_t pa[A_BLOCK] __attribute__((aligned(64)));
    int32_t corr[MC_CAP] __attribute__((aligned(64)));
    if (p->K == 0) {
        if (!p->accumulate) zero_c(p, m0, m1, n0, n1);
        return;
    }
    const int per_step = p->wide ? 2 : 4; /* k per 4-byte step */
    const int kc_blk = p->kc, steps_blk = (kc_blk + per_step - 1) / per_step;
    const int nr = p->nr, nc_max = B_BLOCK / (4 * steps_blk) / nr * nr;
    /* A read in place: K-contiguous, and every K block fills whole steps (no byte past a row) */
    const int esz = p->wide ? 2 : 1, direct = p->a_cs == 1 && (kc_blk * esz) % 4 == 0 && (p->K * esz) % 4 == 0;
    const int mc_max = direct ? MC_CAP : min_int(MC_CAP, A_BLOCK / (4 * steps_blk) / G512_MR * G512_MR);
    for (int nb = n0; nb < n1; nb += nc_max) {
        const int nc = min_int(n1 - nb, nc_max);
        for (int kb = 0; kb < p->K; kb += kc_blk) {
            const int kc = min_int(p->K - kb, kc_blk), steps = (kc + per_step - 1) / per_step;
            const int add = kb > 0 || p->accumulate;
            rctc_g512_pack_b(p, kb, kc, nb, nc, pb);
            for (int mb = m0; mb < m1; mb += mc_max) {
                const int mc = min_int(m1 - mb, mc_max);
                const uint8_t *a0;
                ptrdiff_t a_ss, a_rs, a_strip;
                if (direct) {
                    rctc_g512_row_corr(p, mb, mc, kb, kc, corr);
                    a0 = (const uint8_t *)p->A + ((ptrdiff_t)mb * p->a_rs + kb) * esz;
                    a_ss = 4, a_rs = p->a_rs * esz, a_strip = G512_MR * a_rs;
                } else {
                    rctc_g512_pack_a(p, mb, mc, kb, kc, pa, corr);
                    a0 = pa, a_ss = 4 * G512_MR, a_rs = 4, a_strip = (ptrdiff_t)steps * G512_MR * 4;
                }
                /* Long K blocks: each B panel stays in L1 while the A strips pass. Short ones (a few
                 * products per output): C traffic dominates, so write C strip by strip, along its rows.
                 * Either order gives the same bits. */
                const int strips_outer = steps <= STRIPS_OUTER_STEPS;
                const int ni = (mc + G512_MR - 1) / G512_MR, nj = (nc + nr - 1) / nr;
                for (int t = 0; t < ni * nj; ++t) {
                    const int i = strips_outer ? t / nj : t % ni, j0 = nr * (strips_outer ? t % nj : t / ni);
                    const int cols = min_int(nc - j0, nr);
                    const micro_fn fn = MICRO[p->wide][(cols + 15) / 16 - 1];
                    fn(p, steps, a0 + (ptrdiff_t)i * a_strip, a_ss, a_rs, pb + (ptrdiff_t)(j0 / nr) * steps * nr * 4,
                       corr + i * G512_MR, mb + i * G512_MR, min_int(mc - i * G512_MR, G512_MR), nb + j0, cols, add);
                }
            }
        }
    }
}

static void gemm_task(void *vctx, int b, int e) {
    const gemm512_args *p = (const gemm512_args *)vctx;
    if (p->split_n)
        gemm_block(p, 0, p->M, b, e);
    else
        gemm_block(p, b, e, 0, p->N);
}

static void gemm_run(gemm512_args *p, int nthreads) {
    if (p->M <= 0 || p->N <= 0) return;
    if (p->K < 0) p->K = 0;
    /* K blocks of balanced length (a multiple of 64 k when split: whole 16-step transposes). */
    const int kc_max = STEPS_MAX * (p->wide ? 2 : 4), unit = p->wide ? 32 : 64;
    const int nkb = (p->K + kc_max - 1) / kc_max;
    p->kc = nkb <= 1 ? (p->K > 0 ? p->K : 1) : min_int(kc_max, ((p->K + nkb - 1) / nkb + unit - 1) / unit * unit);
    const int t = rctc_threads_for(nthreads, (uint64_t)p->M * (uint64_t)p->N * (uint64_t)p->K);
    p->split_n = p->N >= p->M;
    /* Panel width: 48 unless 32 wastes fewer columns (a 32-wide tile runs at about 0.9 of a 48-wide one). */
    const int n48 = (p->N + 47) / 48 * 48, n32 = (p->N + 31) / 32 * 32;
    p->nr = 10 * n32 < 9 * n48 ? 32 : 48;
    rctc_parallel_for(p->split_n ? p->N : p->M, p->split_n ? 16 : G512_MR, t, gemm_task, p);
}

/* Both operands K-contiguous with few rows (the weight gradient dY cols^T): the transposed product
 * C^T = B^T A^T reads the big operand in place as the broadcast side and packs only the small one
 * (int8 x int8 only: the packed side must be int8). */
#define SWAP_MAX_M 32

/* int16 A whose every value fits int8 (a weight slot at 8 bits or fewer): A narrowed to a
 * K-contiguous int8 copy on the stack and the product run as int8 x int8 (vpdpbusd: 64 MACs an
 * instruction against vpdpwssd's 32, and B packed at half the bytes). The integer product is exact
 * either way, so the bits are the same; A larger than the buffer, or with a value outside int8,
 * takes the int16 path. */
#define NARROW_MAX (64 * 1024) /* elements of A (64 KiB on the caller's stack) */

/* n int16 at src into int8 at dst; 0 when one is outside int8 (dst then partly written) */
static int narrow_run(int n, const int16_t *src, int8_t *dst) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i v = _mm512_loadu_si512((const void *)(src + i));
        const __m256i x = _mm512_cvtsepi16_epi8(v); /* saturating: a value outside int8 changes */
        if (_mm512_cmpneq_epi16_mask(_mm512_cvtepi8_epi16(x), v)) return 0;
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), x);
    }
    for (; i < n; ++i) {
        if (src[i] < -128 || src[i] > 127) return 0;
        dst[i] = (int8_t)src[i];
    }
    return 1;
}

/* A (M x K) as int8 in out, in A's own orientation: K-contiguous rows (*rs = K, *cs = 1) unless A
 * is M-contiguous (*rs = 1, *cs = M); 0 when some value is outside int8 */
static int narrow_a(int M, int K, const int16_t *A, ptrdiff_t a_rs, ptrdiff_t a_cs, int8_t *out, ptrdiff_t *rs,
                    ptrdiff_t *cs) {
    if (a_rs == 1 && a_cs != 1) {
        *rs = 1, *cs = M;
        for (int k = 0; k < K; ++k)
            if (!narrow_run(M, A + (ptrdiff_t)k * a_cs, out + (ptrdiff_t)k * M)) return 0;
        return 1;
    }
    *rs = K, *cs = 1;
    for (int m = 0; m < M; ++m) {
        const int16_t *row = A + (ptrdiff_t)m * a_rs;
        int8_t *o = out + (ptrdiff_t)m * K;
        if (a_cs == 1) {
            if (!narrow_run(K, row, o)) return 0;
            continue;
        }
        for (int k = 0; k < K; ++k) {
            const int16_t v = row[(ptrdiff_t)k * a_cs];
            if (v < -128 || v > 127) return 0;
            o[k] = (int8_t)v;
        }
    }
    return 1;
}

#define RCTC_DEFINE_GEMM_AVX512(NAME, TA, TC, A16, C64, NARROWED)                                                 \
    void NAME(RCTC_GEMM_ARGS(TA, int8_t, TC)) {                                                                   \
        if (A16 && M > 0 && K > 0 && (size_t)M * (size_t)K <= NARROW_MAX) {                                       \
            int8_t a8[NARROW_MAX] __attribute__((aligned(64)));                                                   \
            ptrdiff_t rs, cs;                                                                                     \
            if (narrow_a(M, K, (const int16_t *)(const void *)A, a_rs, a_cs, a8, &rs, &cs)) {                     \
                NARROWED(M, N, K, a8, rs, cs, B, b_rs, b_cs, C, c_rs, c_cs, accumulate, nthreads);                \
                return;                                                                                           \
            }                                                                                                     \
        }                                                                                                         \
        if (!A16 && a_cs == 1 && b_rs == 1 && M <= SWAP_MAX_M && N > 2 * M && K % 4 == 0) {                       \
            gemm512_args t = {N, M, K, B, b_cs, b_rs, (const int8_t *)(const void *)A, a_cs, a_rs, C, c_cs, c_rs, \
                              accumulate, C64, 0, 0, 0, 48};                                                      \
            gemm_run(&t, nthreads);                                                                               \
            return;                                                                                               \
        }                                                                                                         \
        gemm512_args p = {M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, c_cs, accumulate, C64, A16, 0, 0, 48};  \
        gemm_run(&p, nthreads);                                                                                   \
    }

RCTC_DEFINE_GEMM_AVX512(rctc_gemm_s8s8s32_avx512vnni, int8_t, int32_t, 0, 0, rctc_gemm_s8s8s32_avx512vnni)
RCTC_DEFINE_GEMM_AVX512(rctc_gemm_s8s8s64_avx512vnni, int8_t, int64_t, 0, 1, rctc_gemm_s8s8s64_avx512vnni)
RCTC_DEFINE_GEMM_AVX512(rctc_gemm_s16s8s32_avx512vnni, int16_t, int32_t, 1, 0, rctc_gemm_s8s8s32_avx512vnni)
RCTC_DEFINE_GEMM_AVX512(rctc_gemm_s16s8s64_avx512vnni, int16_t, int64_t, 1, 1, rctc_gemm_s8s8s64_avx512vnni)

#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_gemm_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
