/*
 * iq_norm_loops_avx512.c - AVX-512 (F + DQ) variant of the BatchNorm per-element loops
 * (iq_norm_loops.c; compiled with the AVX-512 flags, chosen by iq_norm_loops() where it
 * finds the avx512vnni level and AVX-512 DQ).
 *
 * Needs: iq_norm.h, <immintrin.h>. Leaves: exactly the portable loops' values: vpmullq is the
 * wrapping int64 product, vpsraq the floor shift, vpabsq / vpmaxuq the unsigned magnitude and its
 * maximum; the sums are wrapping lane sums added up at the end (addition modulo 2^64 is
 * associative). Eight elements a step, the tail portable.
 */
#if defined(__x86_64__) || defined(_M_X64)
/* The device project's host build adds only -mavx2 to its x86 files: enable the ISA here then. */
#if !defined(__AVX512DQ__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f,avx512dq")
#elif !defined(__AVX512DQ__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512dq"))), apply_to = function)
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

/* round((N x - s1) m 2^-sh) on eight lanes */
static inline __m512i xhat8(__m512i x, __m512i nn, __m512i s1, __m512i m, __m512i half, int sh) {
    const __m512i d = _mm512_sub_epi64(_mm512_mullo_epi64(nn, x), s1);
    return _mm512_sra_epi64(_mm512_add_epi64(_mm512_mullo_epi64(d, m), half), _mm_cvtsi32_si128(sh));
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
    const __m512i nn = _mm512_set1_epi64(N), vs1 = _mm512_set1_epi64(s1), vm = _mm512_set1_epi64(m);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (sh - 1));
    __m512i g = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i v = xhat8(_mm512_loadu_si512((const void *)(x + i)), nn, vs1, vm, half, sh);
        const __m512i d = _mm512_loadu_si512((const void *)(dy + i));
        _mm512_storeu_si512((void *)(xh + i), v);
        g = _mm512_add_epi64(g, _mm512_mullo_epi64(d, v));
        b = _mm512_add_epi64(b, d);
    }
    int64_t tg, tb;
    rctc_norm_xhat_dot_portable(n - i, x + i, N, s1, m, sh, dy + i, xh + i, &tg, &tb);
    *sg = (int64_t)((uint64_t)hsum(g) + (uint64_t)tg);
    *sb = (int64_t)((uint64_t)hsum(b) + (uint64_t)tb);
}

uint64_t rctc_norm_dx_x_avx512(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                               int64_t m1, int64_t m2, int64_t *acc) {
    const __m512i nn = _mm512_set1_epi64(N), vs1 = _mm512_set1_epi64(s1), vm = _mm512_set1_epi64(m);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (sh - 1));
    const __m512i vm1 = _mm512_set1_epi64(m1), vm2 = _mm512_set1_epi64(m2), r = _mm512_set1_epi64((int64_t)1 << 15);
    __m512i mx = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i h = xhat8(_mm512_loadu_si512((const void *)(x + i)), nn, vs1, vm, half, sh);
        const __m512i d = _mm512_loadu_si512((const void *)(dy + i));
        const __m512i term = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mullo_epi64(h, vm2), r), 16);
        const __m512i v = _mm512_sub_epi64(_mm512_sub_epi64(_mm512_slli_epi64(d, 16), vm1), term);
        _mm512_storeu_si512((void *)(acc + i), v);
        mx = _mm512_max_epu64(mx, _mm512_abs_epi64(v));
    }
    const uint64_t t = rctc_norm_dx_x_portable(n - i, x + i, N, s1, m, sh, dy + i, m1, m2, acc + i), v = hmax(mx);
    return t > v ? t : v;
}

uint64_t rctc_norm_affine_avx512(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, int64_t g,
                                 int64_t bias, int64_t *acc) {
    const __m512i nn = _mm512_set1_epi64(N), vs1 = _mm512_set1_epi64(s1), vm = _mm512_set1_epi64(m);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (sh - 1)), vg = _mm512_set1_epi64(g);
    const __m512i vb = _mm512_set1_epi64(bias);
    __m512i mx = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512i h = xhat8(_mm512_loadu_si512((const void *)(x + i)), nn, vs1, vm, half, sh);
        const __m512i v = _mm512_add_epi64(_mm512_mullo_epi64(h, vg), vb);
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
#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
#else
typedef int rctc_norm_loops_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
