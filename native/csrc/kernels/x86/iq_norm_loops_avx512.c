/*
 * iq_norm_loops_avx512.c - AVX-512 (F + DQ) variant of the BatchNorm per-element loops
 * (iq_norm_loops.c; compiled with the AVX-512 flags, chosen by iq_norm_loops() where it
 * finds the avx512vnni level and AVX-512 DQ).
 *
 * Needs: iq_norm.h, <immintrin.h>. Leaves: exactly the portable loops' values: vpmullq is the
 * wrapping int64 product, vpsraq the floor shift, vpabsq / vpmaxuq the unsigned magnitude and its
 * maximum; the sums are wrapping lane sums added up at the end (addition modulo 2^64 is
 * associative). Where operands provably fit 32 bits (mulc below) a product is one vpmuldq instead
 * of vpmullq's three uops, with the same value. Eight elements a step, the tail portable.
 */
#if defined(__x86_64__) || defined(_M_X64)
/* The device project's host build adds only -mavx2 to its x86 files: enable the ISA here then. */
#if !defined(__AVX512DQ__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f,avx512bw,avx512dq")
#elif !defined(__AVX512DQ__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512bw,avx512dq"))), apply_to = function)
#define RCTC_CLANG_TARGET_PUSHED 1
#endif
#include <immintrin.h>

#include "../iq_norm.h"

static inline uint64_t hmax(__m512i m) {
    uint64_t lanes[8], r = 0;
    _mm512_storeu_si512((void *)lanes, m);
    for (int k = 0; k < 8; ++k) r = lanes[k] > r ? lanes[k] : r;
    return r;
}

static inline int64_t hsum(__m512i s) {
    uint64_t lanes[8], r = 0;
    _mm512_storeu_si512((void *)lanes, s);
    for (int k = 0; k < 8; ++k) r += lanes[k];
    return (int64_t)r;
}

/* a c on lanes a known to lie in [-2^31, 2^31), for one constant c, exactly as vpmullq (the
 * product then needs at most 63 bits, so it does not wrap): vpmuldq (signed 32 x 32 -> 64, one uop
 * where vpmullq takes three) where c is a signed 32-bit value; where 2^31 <= c < 2^32 vpmuldq
 * reads c as c - 2^32, so a 2^32 is added back; any other c takes vpmullq */
typedef struct {
    __m512i c;
    int kind;
} mulc_t;

static inline mulc_t mulc_of(int64_t c) {
    const mulc_t k = {_mm512_set1_epi64(c),
                      c >= -((int64_t)1 << 31) && c < ((int64_t)1 << 31) ? 0 : c > 0 && c < ((int64_t)1 << 32) ? 1 : 2};
    return k;
}

static inline __m512i mulc(__m512i a, mulc_t k) {
    if (k.kind == 0) return _mm512_mul_epi32(a, k.c);
    if (k.kind == 1) return _mm512_add_epi64(_mm512_mul_epi32(a, k.c), _mm512_slli_epi64(a, 32));
    return _mm512_mullo_epi64(a, k.c);
}

/* xhat's constants: the loops need N max|x| < 2^29 and |s1| <= N max|x| (iq_norm.h), so N x and
 * d = N x - s1 lie in [-2^30, 2^30] and N x is one vpmuldq; small: xhat itself then lies in
 * [-2^31, 2^31) (iq_norm_xhat_fits32 at that bound), so products by it may take mulc too */
typedef struct {
    __m512i nn, s1, half;
    __m128i sh;
    mulc_t m;
    int small;
} xhat_t;

static inline xhat_t xhat_of(int N, int64_t s1, int64_t m, int sh) {
    const int small = iq_norm_xhat_fits32((uint64_t)1 << 30, m, sh);
    const xhat_t k = {_mm512_set1_epi64(N), _mm512_set1_epi64(s1), _mm512_set1_epi64((int64_t)1 << (sh - 1)),
                      _mm_cvtsi32_si128(sh), mulc_of(m), small};
    return k;
}

/* round((N x - s1) m 2^-sh) on eight lanes */
static inline __m512i xhat8(__m512i x, const xhat_t *k) {
    const __m512i d = _mm512_sub_epi64(_mm512_mul_epi32(k->nn, x), k->s1);
    return _mm512_sra_epi64(_mm512_add_epi64(mulc(d, k->m), k->half), k->sh);
}

/* dx_x's accumulator on eight lanes: (dy << 16) - m1 - ((xhat m2 + 2^15) >> 16) */
static inline __m512i dx8(__m512i x, __m512i dy, const xhat_t *k, mulc_t k2, __m512i vm1, __m512i r) {
    const __m512i term = _mm512_srai_epi64(_mm512_add_epi64(mulc(xhat8(x, k), k2), r), 16);
    return _mm512_sub_epi64(_mm512_sub_epi64(_mm512_slli_epi64(dy, 16), vm1), term);
}

/* a constant that multiplies xhat (m2, gamma): mulc where xhat fits 32 bits, else vpmullq */
static inline mulc_t times_xhat(const xhat_t *k, int64_t c) {
    const mulc_t full = {_mm512_set1_epi64(c), 2};
    return k->small ? mulc_of(c) : full;
}

void rctc_norm_sums_avx512(size_t n, const int64_t *x, int64_t *s1, int64_t *s2) {
    __m512i a1 = _mm512_setzero_si512(), a2 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = _mm512_loadu_si512((const void *)(x + i));
        a1 = _mm512_add_epi64(a1, v);
        a2 = _mm512_add_epi64(a2, _mm512_mullo_epi64(v, v));
    }
    int64_t t1, t2;
    rctc_norm_sums_portable(n - i, x + i, &t1, &t2);
    *s1 = (int64_t)((uint64_t)hsum(a1) + (uint64_t)t1);
    *s2 = (int64_t)((uint64_t)hsum(a2) + (uint64_t)t2);
}

void rctc_norm_xhat_dot_avx512(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                               int64_t *xh, int64_t *sg, int64_t *sb) {
    const xhat_t k = xhat_of(N, s1, m, sh);
    __m512i g = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = xhat8(_mm512_loadu_si512((const void *)(x + i)), &k);
        const __m512i d = _mm512_loadu_si512((const void *)(dy + i));
        _mm512_storeu_si512((void *)(xh + i), v);
        g = _mm512_add_epi64(g, k.small ? _mm512_mul_epi32(d, v) : _mm512_mullo_epi64(d, v));
        b = _mm512_add_epi64(b, d);
    }
    int64_t tg, tb;
    rctc_norm_xhat_dot_portable(n - i, x + i, N, s1, m, sh, dy + i, xh + i, &tg, &tb);
    *sg = (int64_t)((uint64_t)hsum(g) + (uint64_t)tg);
    *sb = (int64_t)((uint64_t)hsum(b) + (uint64_t)tb);
}

uint64_t rctc_norm_dx_x_avx512(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                               int64_t m1, int64_t m2, int64_t *acc) {
    const xhat_t k = xhat_of(N, s1, m, sh);
    const mulc_t k2 = times_xhat(&k, m2);
    const __m512i vm1 = _mm512_set1_epi64(m1), r = _mm512_set1_epi64((int64_t)1 << 15);
    __m512i mx = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = dx8(_mm512_loadu_si512((const void *)(x + i)), _mm512_loadu_si512((const void *)(dy + i)),
                              &k, k2, vm1, r);
        _mm512_storeu_si512((void *)(acc + i), v);
        mx = _mm512_max_epu64(mx, _mm512_abs_epi64(v));
    }
    const uint64_t t = rctc_norm_dx_x_portable(n - i, x + i, N, s1, m, sh, dy + i, m1, m2, acc + i), v = hmax(mx);
    return t > v ? t : v;
}

uint64_t rctc_norm_affine_avx512(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, int64_t g,
                                 int64_t bias, int64_t *acc) {
    const xhat_t k = xhat_of(N, s1, m, sh);
    const mulc_t kg = times_xhat(&k, g);
    const __m512i vb = _mm512_set1_epi64(bias);
    __m512i mx = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i h = xhat8(_mm512_loadu_si512((const void *)(x + i)), &k);
        const __m512i v = _mm512_add_epi64(mulc(h, kg), vb);
        _mm512_storeu_si512((void *)(acc + i), v);
        mx = _mm512_max_epu64(mx, _mm512_abs_epi64(v));
    }
    const uint64_t t = rctc_norm_affine_portable(n - i, x + i, N, s1, m, sh, g, bias, acc + i), v = hmax(mx);
    return t > v ? t : v;
}

void rctc_norm_load_avx512(size_t n, const void *p, int w, size_t off, int64_t *dst) {
    size_t i = 0;
    if (w == 1) {
        const int8_t *x = (const int8_t *)p + off;
        for (; i + 8 <= n; i += 8)
            _mm512_storeu_si512((void *)(dst + i), _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)(x + i))));
    } else if (w == 2) {
        const int16_t *x = (const int16_t *)p + off;
        for (; i + 8 <= n; i += 8)
            _mm512_storeu_si512((void *)(dst + i), _mm512_cvtepi16_epi64(_mm_loadu_si128((const __m128i *)(x + i))));
    }
    rctc_norm_load_portable(n - i, p, w, off + i, dst + i);
}

void rctc_norm_scale_avx512(size_t n, const int64_t *acc, int64_t mult, int64_t *out) {
    const __m512i vm = _mm512_set1_epi64(mult);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm512_storeu_si512((void *)(out + i), _mm512_mullo_epi64(_mm512_loadu_si512((const void *)(acc + i)), vm));
    rctc_norm_scale_portable(n - i, acc + i, mult, out + i);
}
/* int8 runs 64 bytes a step: sum x by vpsadbw of x + 128 (biased back at the end), sum x^2 by
 * vpmaddwd into int32 lanes (at most 2^16 a lane a step, flushed to int64 every 2^12 steps), the
 * extremes by vpminsb / vpmaxsb; other widths and the tail portable */
void rctc_norm_sums_run_avx512(size_t n, const void *p, int w, size_t off, int64_t *s1, int64_t *s2, int64_t *lo,
                               int64_t *hi) {
    size_t i = 0;
    if (w == 1 && n >= 64) {
        const int8_t *x = (const int8_t *)p + off;
        const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
        __m512i a1 = zero, a2 = zero, mn = _mm512_set1_epi8(127), mx = _mm512_set1_epi8(-128);
        while (i + 64 <= n) {
            __m512i q = zero;
            for (int k = 0; k < 4096 && i + 64 <= n; ++k, i += 64) {
                const __m512i v = _mm512_loadu_si512((const void *)(x + i));
                const __m512i v0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v));
                const __m512i v1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v, 1));
                q = _mm512_add_epi32(q, _mm512_add_epi32(_mm512_madd_epi16(v0, v0), _mm512_madd_epi16(v1, v1)));
                a1 = _mm512_add_epi64(a1, _mm512_sad_epu8(_mm512_xor_si512(v, flip), zero));
                mn = _mm512_min_epi8(mn, v);
                mx = _mm512_max_epi8(mx, v);
            }
            a2 = _mm512_add_epi64(a2, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(q)));
            a2 = _mm512_add_epi64(a2, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(q, 1)));
        }
        int8_t bl[64], bh[64];
        _mm512_storeu_si512((void *)bl, mn);
        _mm512_storeu_si512((void *)bh, mx);
        iq_norm_sums_run_close(bl, bh, 64, (uint64_t)hsum(a1), (uint64_t)hsum(a2), i, s1, s2, lo, hi);
    }
    rctc_norm_sums_run_portable(n - i, p, w, off + i, s1, s2, lo, hi);
}
/* eight stored int8 values widened */
static inline __m512i ld8(const int8_t *p) { return _mm512_cvtepi8_epi64(_mm_loadl_epi64((const __m128i *)p)); }

/* int8 runs read in place eight at a time; other widths through the widened blocks */
void rctc_norm_xhat_dot_run_avx512(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                   int64_t s1, int64_t m, int sh, int64_t *sg, int64_t *sb) {
    if (w != 1 || dw != 1) {
        iq_norm_xhat_dot_blocks(rctc_norm_load_avx512, rctc_norm_xhat_dot_avx512, n, x, w, dy, dw, off, N, s1, m, sh,
                                sg, sb);
        return;
    }
    const int8_t *xp = (const int8_t *)x + off, *dp = (const int8_t *)dy + off;
    const xhat_t k = xhat_of(N, s1, m, sh);
    __m512i g = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = xhat8(ld8(xp + i), &k), d = ld8(dp + i);
        g = _mm512_add_epi64(g, k.small ? _mm512_mul_epi32(d, v) : _mm512_mullo_epi64(d, v));
        b = _mm512_add_epi64(b, d);
    }
    int64_t tg, tb;
    rctc_norm_xhat_dot_run_portable(n - i, x, w, dy, dw, off + i, N, s1, m, sh, &tg, &tb);
    *sg = (int64_t)((uint64_t)hsum(g) + (uint64_t)tg);
    *sb = (int64_t)((uint64_t)hsum(b) + (uint64_t)tb);
}

uint64_t rctc_norm_dx_x_run_avx512(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                   int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2, int64_t *acc) {
    if (w != 1 || dw != 1)
        return iq_norm_dx_x_blocks(rctc_norm_load_avx512, rctc_norm_dx_x_avx512, n, x, w, dy, dw, off, N, s1, m, sh,
                                   m1, m2, acc);
    const int8_t *xp = (const int8_t *)x + off, *dp = (const int8_t *)dy + off;
    const xhat_t k = xhat_of(N, s1, m, sh);
    const mulc_t k2 = times_xhat(&k, m2);
    const __m512i vm1 = _mm512_set1_epi64(m1), r = _mm512_set1_epi64((int64_t)1 << 15);
    __m512i mx = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = dx8(ld8(xp + i), ld8(dp + i), &k, k2, vm1, r);
        if (acc) _mm512_storeu_si512((void *)(acc + i), v);
        mx = _mm512_max_epu64(mx, _mm512_abs_epi64(v));
    }
    const uint64_t t = rctc_norm_dx_x_run_portable(n - i, x, w, dy, dw, off + i, N, s1, m, sh, m1, m2,
                                                   acc ? acc + i : NULL);
    const uint64_t v = hmax(mx);
    return t > v ? t : v;
}
#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_norm_loops_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
