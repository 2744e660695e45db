/*
 * gemm_pack_avx512.c - operand packing of the AVX-512 VNNI GEMM (gemm_avx512.c); internal.
 *
 * Needs: AVX-512 F/BW/VL/VNNI (compiled with those -m flags, called only after dispatch.c's
 * check). Leaves: the packed layouts of gemm_avx512.h, the same bytes whatever path wrote them.
 * Vector paths cover the layouts a training step stores (gemm's header in rctc_kernels.h):
 * row-contiguous B (forward, data gradient), K-contiguous B (weight gradient: a 16 x 16 word
 * transpose), K-contiguous A (forward, weight gradient: an 8 x 8 word transpose) and
 * M-contiguous A (data gradient); any other stride goes element by element. Tails use masked
 * loads (no byte past an operand is read) and zero padding.
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

#include "../gemm_avx512.h"

static inline int min_int(int x, int y) { return x < y ? x : y; }

/* Masks of the first n (clipped to [0, width]) lanes. */
static inline __mmask64 mask64(int n) { return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : ((__mmask64)1 << n) - 1; }
static inline __mmask32 mask32(int n) { return (__mmask32)mask64(n < 32 ? n : 32); }
static inline __mmask16 mask16(int n) { return (__mmask16)mask64(n < 16 ? n : 16); }

/* g[l] = (q0.lane l, q1.lane l, q2.lane l, q3.lane l): a 4 x 4 transpose of 128-bit lanes. */
static inline void transpose_lanes(__m512i q0, __m512i q1, __m512i q2, __m512i q3, __m512i g[4]) {
    const __m512i u0 = _mm512_shuffle_i64x2(q0, q1, 0x44), u1 = _mm512_shuffle_i64x2(q2, q3, 0x44);
    const __m512i u2 = _mm512_shuffle_i64x2(q0, q1, 0xEE), u3 = _mm512_shuffle_i64x2(q2, q3, 0xEE);
    g[0] = _mm512_shuffle_i64x2(u0, u1, 0x88);
    g[1] = _mm512_shuffle_i64x2(u0, u1, 0xDD);
    g[2] = _mm512_shuffle_i64x2(u2, u3, 0x88);
    g[3] = _mm512_shuffle_i64x2(u2, u3, 0xDD);
}

/* 16 x 16 transpose of 32-bit words: on entry r[i] holds words 0..15 of row i; on return r[j]
 * holds word j of rows 0..15. */
static inline void transpose16x16_epi32(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) { /* u[4i + j] lane L: word 4L + j of rows 4i .. 4i + 3 */
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; ++j) {
        __m512i g[4];
        transpose_lanes(u[j], u[4 + j], u[8 + j], u[12 + j], g);
        for (int l = 0; l < 4; ++l) r[4 * l + j] = g[l];
    }
}

/* 8 x 8 transpose of 32-bit words (r[c] words 0..7 of row c -> r[i] word i of rows 0..7). */
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

/* ---- B ----------------------------------------------------------------------------------- */

/* The packed word of B at block step s, block column c (layout in gemm_avx512.h). */
static uint32_t b_word(const gemm512_args *p, int k0, int kc, int n0, int s, int c) {
    uint32_t w = 0;
    const int8_t *col = p->B + (ptrdiff_t)(n0 + c) * p->b_cs;
    if (p->wide) {
        for (int j = 0; j < 2; ++j) {
            const int k = 2 * s + j;
            const uint16_t v = k < kc ? (uint16_t)(int16_t)col[(ptrdiff_t)(k0 + k) * p->b_rs] : 0;
            w |= (uint32_t)v << (16 * j);
        }
    } else {
        for (int j = 0; j < 4; ++j) {
            const int k = 4 * s + j;
            const uint8_t v = k < kc ? (uint8_t)((uint8_t)col[(ptrdiff_t)(k0 + k) * p->b_rs] ^ 0x80u) : 0;
            w |= (uint32_t)v << (8 * j);
        }
    }
    return w;
}

/* Where 16-column group g's word at step s goes. */
static inline uint8_t *b_dst(const gemm512_args *p, uint8_t *out, int steps, int g, int s) {
    const int nr = p->nr;
    return out + (ptrdiff_t)(16 * g / nr) * steps * nr * 4 + (ptrdiff_t)s * nr * 4 + (16 * g % nr) * 4;
}

/* Row-contiguous B (cs == 1), int8 A: 4 rows x 64 columns per step, byte-interleaved. */
static void pack_b_rows_s8(const gemm512_args *p, int k0, int kc, int n0, int nc, int steps, uint8_t *out) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const int groups = (nc + 15) / 16;
    for (int s = 0; s < steps; ++s)
        for (int c0 = 0; c0 < nc; c0 += 64) {
            const __mmask64 m = mask64(nc - c0);
            __m512i x[4];
            for (int i = 0; i < 4; ++i) /* the rows two steps ahead (short row runs: the hardware streams barely start) */
                if (4 * s + 8 + i < kc)
                    _mm_prefetch((const char *)(p->B + (ptrdiff_t)(k0 + 4 * s + 8 + i) * p->b_rs + n0 + c0), _MM_HINT_T0);
            for (int i = 0; i < 4; ++i) {
                const int k = 4 * s + i;
                x[i] = k < kc ? _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p->B + (ptrdiff_t)(k0 + k) * p->b_rs + n0 + c0), flip)
                              : _mm512_setzero_si512();
            }
            const __m512i t0 = _mm512_unpacklo_epi8(x[0], x[1]), t1 = _mm512_unpackhi_epi8(x[0], x[1]);
            const __m512i t2 = _mm512_unpacklo_epi8(x[2], x[3]), t3 = _mm512_unpackhi_epi8(x[2], x[3]);
            __m512i g[4];
            transpose_lanes(_mm512_unpacklo_epi16(t0, t2), _mm512_unpackhi_epi16(t0, t2), _mm512_unpacklo_epi16(t1, t3),
                            _mm512_unpackhi_epi16(t1, t3), g);
            for (int l = 0; l < 4 && c0 / 16 + l < groups; ++l) _mm512_store_si512((void *)b_dst(p, out, steps, c0 / 16 + l, s), g[l]);
        }
}

/* Row-contiguous B, int16 A: 2 rows x 32 columns per step, widened and pair-interleaved. */
static void pack_b_rows_s16(const gemm512_args *p, int k0, int kc, int n0, int nc, int steps, uint8_t *out) {
    const __m512i i0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), i1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    const int groups = (nc + 15) / 16;
    for (int s = 0; s < steps; ++s)
        for (int c0 = 0; c0 < nc; c0 += 32) {
            const __mmask32 m = mask32(nc - c0);
            __m512i y[2];
            for (int i = 0; i < 2; ++i) {
                const int k = 2 * s + i;
                y[i] = k < kc ? _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p->B + (ptrdiff_t)(k0 + k) * p->b_rs + n0 + c0))
                              : _mm512_setzero_si512();
            }
            const __m512i lo = _mm512_unpacklo_epi16(y[0], y[1]), hi = _mm512_unpackhi_epi16(y[0], y[1]);
            _mm512_store_si512((void *)b_dst(p, out, steps, c0 / 16, s), _mm512_permutex2var_epi64(lo, i0, hi));
            if (c0 / 16 + 1 < groups)
                _mm512_store_si512((void *)b_dst(p, out, steps, c0 / 16 + 1, s), _mm512_permutex2var_epi64(lo, i1, hi));
        }
}

/* K-contiguous B (rs == 1): 16 columns x 16 steps loaded column-wise, then transposed. */
static void pack_b_kcontig(const gemm512_args *p, int k0, int kc, int n0, int nc, int steps, uint8_t *out) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int g = 0; 16 * g < nc; ++g)
        for (int s0 = 0; s0 < steps; s0 += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; ++i) {
                const int c = 16 * g + i;
                if (c >= nc) {
                    r[i] = _mm512_setzero_si512();
                    continue;
                }
                const int8_t *src = p->B + (ptrdiff_t)(n0 + c) * p->b_cs + k0;
                if (p->wide) {
                    r[i] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask32(kc - 2 * s0), src + 2 * s0));
                } else {
                    const __mmask64 m = mask64(kc - 4 * s0);
                    r[i] = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + 4 * s0), flip));
                }
            }
            transpose16x16_epi32(r);
            for (int j = 0; j < 16 && s0 + j < steps; ++j) _mm512_store_si512((void *)b_dst(p, out, steps, g, s0 + j), r[j]);
        }
}

void rctc_g512_pack_b(const gemm512_args *p, int k0, int kc, int n0, int nc, uint8_t *out) {
    const int steps = (kc + (p->wide ? 1 : 3)) / (p->wide ? 2 : 4);
    if (p->b_cs == 1 && p->wide)
        pack_b_rows_s16(p, k0, kc, n0, nc, steps, out);
    else if (p->b_cs == 1)
        pack_b_rows_s8(p, k0, kc, n0, nc, steps, out);
    else if (p->b_rs == 1)
        pack_b_kcontig(p, k0, kc, n0, nc, steps, out);
    else
        for (int g = 0; 16 * g < nc; ++g)
            for (int s = 0; s < steps; ++s) {
                uint32_t w[16];
                for (int i = 0; i < 16; ++i) w[i] = 16 * g + i < nc ? b_word(p, k0, kc, n0, s, 16 * g + i) : 0;
                memcpy(b_dst(p, out, steps, g, s), w, sizeof w);
            }
}

/* ---- A ----------------------------------------------------------------------------------- */

static uint32_t a_word(const gemm512_args *p, int m, int k0, int kc, int s) {
    uint32_t w = 0;
    if (p->wide) {
        const int16_t *row = (const int16_t *)p->A + (ptrdiff_t)m * p->a_rs;
        for (int j = 0; j < 2; ++j) {
            const int k = 2 * s + j;
            w |= (uint32_t)(k < kc ? (uint16_t)row[(ptrdiff_t)(k0 + k) * p->a_cs] : 0u) << (16 * j);
        }
    } else {
        const int8_t *row = (const int8_t *)p->A + (ptrdiff_t)m * p->a_rs;
        for (int j = 0; j < 4; ++j) {
            const int k = 4 * s + j;
            w |= (uint32_t)(k < kc ? (uint8_t)row[(ptrdiff_t)(k0 + k) * p->a_cs] : 0u) << (8 * j);
        }
    }
    return w;
}

/* One 8-row strip (rows m .. m + rows - 1; the rest zero) into d (steps x 32 bytes). */
static void pack_a_strip(const gemm512_args *p, int m, int rows, int k0, int kc, int steps, uint8_t *d) {
    const int esz = p->wide ? 2 : 1;
    if (p->a_cs == 1) { /* K-contiguous: 8 rows x 8 steps, an 8 x 8 word transpose */
        for (int s0 = 0; s0 < steps; s0 += 8) {
            __m256i r[8];
            const int kk = s0 * (4 / esz); /* first k of this step block */
            for (int i = 0; i < 8; ++i) {
                if (i >= rows) {
                    r[i] = _mm256_setzero_si256();
                    continue;
                }
                const uint8_t *src = (const uint8_t *)p->A + ((ptrdiff_t)(m + i) * p->a_rs + k0 + kk) * esz;
                r[i] = p->wide ? _mm256_maskz_loadu_epi16(mask16(kc - kk), src) : _mm256_maskz_loadu_epi8(mask32(kc - kk), src);
            }
            transpose8x8_epi32(r);
            for (int j = 0; j < 8 && s0 + j < steps; ++j) _mm256_store_si256((__m256i *)(d + (ptrdiff_t)(s0 + j) * 32), r[j]);
        }
    } else if (p->a_rs == 1) { /* M-contiguous: the step's rows of k, interleaved */
        const __mmask16 m8 = mask16(rows);
        for (int s = 0; s < steps; ++s) {
            __m128i x[4];
            const int per = 4 / esz;
            for (int j = 0; j < per; ++j) {
                const int k = per * s + j;
                const uint8_t *src = (const uint8_t *)p->A + ((ptrdiff_t)(k0 + k) * p->a_cs + m) * esz;
                x[j] = k >= kc ? _mm_setzero_si128()
                       : p->wide ? _mm_maskz_loadu_epi16((__mmask8)m8, src) : _mm_maskz_loadu_epi8(m8, src);
            }
            __m128i lo, hi;
            if (p->wide) {
                lo = _mm_unpacklo_epi16(x[0], x[1]);
                hi = _mm_unpackhi_epi16(x[0], x[1]);
            } else {
                const __m128i t0 = _mm_unpacklo_epi8(x[0], x[1]), t1 = _mm_unpacklo_epi8(x[2], x[3]);
                lo = _mm_unpacklo_epi16(t0, t1);
                hi = _mm_unpackhi_epi16(t0, t1);
            }
            _mm_store_si128((__m128i *)(d + (ptrdiff_t)s * 32), lo);
            _mm_store_si128((__m128i *)(d + (ptrdiff_t)s * 32 + 16), hi);
        }
    } else {
        for (int s = 0; s < steps; ++s)
            for (int r = 0; r < G512_MR; ++r) {
                const uint32_t w = r < rows ? a_word(p, m + r, k0, kc, s) : 0;
                memcpy(d + (ptrdiff_t)s * 32 + 4 * r, &w, sizeof w);
            }
    }
}

void rctc_g512_row_corr(const gemm512_args *p, int m0, int mc, int k0, int kc, int32_t *corr) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int i = 0; i < mc; ++i) {
        if (p->wide) {
            corr[i] = 0;
            continue;
        }
        const int8_t *row = (const int8_t *)p->A + (ptrdiff_t)(m0 + i) * p->a_rs + k0;
        __m512i sum = _mm512_setzero_si512();
        for (int k = 0; k < kc; k += 64) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_maskz_loadu_epi8(mask64(kc - k), row + k));
        corr[i] = -128 * _mm512_reduce_add_epi32(sum);
    }
}

void rctc_g512_pack_a(const gemm512_args *p, int m0, int mc, int k0, int kc, uint8_t *out, int32_t *corr) {
    const int steps = (kc + (p->wide ? 1 : 3)) / (p->wide ? 2 : 4);
    const __m256i ones = _mm256_set1_epi8(1);
    for (int i0 = 0; i0 < mc; i0 += G512_MR) {
        uint8_t *d = out + (ptrdiff_t)(i0 / G512_MR) * steps * 32;
        pack_a_strip(p, m0 + i0, min_int(mc - i0, G512_MR), k0, kc, steps, d);
        if (p->wide) {
            memset(corr + i0, 0, G512_MR * sizeof *corr);
            continue;
        }
        __m256i sum = _mm256_setzero_si256(); /* lane r: sum_k A(row r, k), exact (<= 2^16 in size) */
        for (int s = 0; s < steps; ++s) sum = _mm256_dpbusd_epi32(sum, ones, _mm256_load_si256((const __m256i *)(d + (ptrdiff_t)s * 32)));
        _mm256_storeu_si256((__m256i *)(corr + i0), _mm256_mullo_epi32(sum, _mm256_set1_epi32(-128)));
    }
}

#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_gemm_pack_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
