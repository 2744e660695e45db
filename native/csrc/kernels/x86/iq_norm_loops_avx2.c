/*
 * iq_norm_loops_avx2.c - AVX2 variant of the BatchNorm per-element loops (iq_norm_loops.c;
 * compiled with -mavx2, chosen by iq_norm_loops() where the CPU has AVX2 but not the AVX-512
 * level of x86/iq_norm_loops_avx512.c).
 *
 * Needs: iq_norm.h, <immintrin.h>. Leaves: exactly the portable loops' values. AVX2 has no 64-bit
 * product, arithmetic shift, magnitude or unsigned maximum, so each is built from 32-bit pieces
 * with the same wrapping result: a b mod 2^64 = lo(a) lo(b) + ((hi(a) lo(b) + lo(a) hi(b)) << 32)
 * (three vpmuludq; two when the constant operand's high word is 0), the floor shift as
 * ((x ^ s) >> k) ^ s with s the sign mask, |x| = (x ^ s) - s, and the unsigned maximum as a signed
 * one through a 2^63 bias. The sums are wrapping lane sums added at the end (addition modulo 2^64
 * is associative). Four elements a step, the tail portable.
 */
#include <immintrin.h>
#include <string.h>

#include "../iq_norm.h"

/* a b mod 2^64, lane by lane; bh = b >> 32 (given, as b is usually a constant) */
static inline __m256i mul64(__m256i a, __m256i b, __m256i bh) {
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), _mm256_mul_epu32(a, bh));
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

/* a b mod 2^64 for a constant b whose high word is 0 (0 <= b < 2^32) */
static inline __m256i mul64_lo(__m256i a, __m256i b) {
    const __m256i cross = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), b);
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

static inline __m256i sign64(__m256i x) { return _mm256_cmpgt_epi64(_mm256_setzero_si256(), x); }

/* x >> k, rounding down (k in 0 .. 63, in the low quadword of k) */
static inline __m256i sar64(__m256i x, __m128i k) {
    const __m256i s = sign64(x);
    return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(x, s), k), s);
}

/* |x| biased by 2^63 (so a signed compare orders the magnitudes as unsigned values) */
static inline __m256i abs_biased(__m256i x, __m256i bias) {
    const __m256i s = sign64(x);
    return _mm256_xor_si256(_mm256_sub_epi64(_mm256_xor_si256(x, s), s), bias);
}

static inline __m256i max64(__m256i a, __m256i b) { return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a)); }

static inline int64_t hsum(__m256i s) {
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, s);
    return (int64_t)(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
}

/* the largest of four biased magnitudes, unbiased */
static inline uint64_t hmax_biased(__m256i m, __m256i bias) {
    uint64_t lanes[4], r = 0;
    _mm256_storeu_si256((__m256i *)lanes, _mm256_xor_si256(m, bias));
    for (int k = 0; k < 4; ++k) r = lanes[k] > r ? lanes[k] : r;
    return r;
}

static inline __m256i ld(const int64_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void st(int64_t *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }

/* the constants of xhat = round((N x - s1) m 2^-sh) */
typedef struct {
    __m256i n, nh, s1, m, mh, half;
    __m128i sh;
} xhat_k;

static inline xhat_k xhat_consts(int N, int64_t s1, int64_t m, int sh) {
    const xhat_k k = {_mm256_set1_epi64x(N), _mm256_set1_epi64x((int64_t)N >> 32), _mm256_set1_epi64x(s1),
                      _mm256_set1_epi64x(m), _mm256_set1_epi64x((int64_t)((uint64_t)m >> 32)),
                      _mm256_set1_epi64x((int64_t)((uint64_t)1 << (sh - 1))), _mm_cvtsi32_si128(sh)};
    return k;
}

static inline __m256i xhat4(__m256i x, const xhat_k *k) {
    const __m256i d = _mm256_sub_epi64(mul64(x, k->n, k->nh), k->s1);
    return sar64(_mm256_add_epi64(mul64(d, k->m, k->mh), k->half), k->sh);
}

void rctc_norm_sums_avx2(size_t n, const int64_t *x, int64_t *s1, int64_t *s2) {
    __m256i a1 = _mm256_setzero_si256(), a2 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i v = ld(x + i);
        a1 = _mm256_add_epi64(a1, v);
        a2 = _mm256_add_epi64(a2, mul64(v, v, _mm256_srli_epi64(v, 32)));
    }
    int64_t t1, t2;
    rctc_norm_sums_portable(n - i, x + i, &t1, &t2);
    *s1 = (int64_t)((uint64_t)hsum(a1) + (uint64_t)t1);
    *s2 = (int64_t)((uint64_t)hsum(a2) + (uint64_t)t2);
}

void rctc_norm_xhat_dot_avx2(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                             int64_t *xh, int64_t *sg, int64_t *sb) {
    const xhat_k k = xhat_consts(N, s1, m, sh);
    __m256i g = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i v = xhat4(ld(x + i), &k), d = ld(dy + i);
        st(xh + i, v);
        g = _mm256_add_epi64(g, mul64(d, v, _mm256_srli_epi64(v, 32)));
        b = _mm256_add_epi64(b, d);
    }
    int64_t tg, tb;
    rctc_norm_xhat_dot_portable(n - i, x + i, N, s1, m, sh, dy + i, xh + i, &tg, &tb);
    *sg = (int64_t)((uint64_t)hsum(g) + (uint64_t)tg);
    *sb = (int64_t)((uint64_t)hsum(b) + (uint64_t)tb);
}

uint64_t rctc_norm_dx_x_avx2(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                             int64_t m1, int64_t m2, int64_t *acc) {
    const xhat_k k = xhat_consts(N, s1, m, sh);
    const __m256i vm1 = _mm256_set1_epi64x(m1), vm2 = _mm256_set1_epi64x(m2);
    const __m256i vm2h = _mm256_set1_epi64x((int64_t)((uint64_t)m2 >> 32)), r = _mm256_set1_epi64x((int64_t)1 << 15);
    const __m256i bias = _mm256_set1_epi64x(INT64_MIN);
    const __m128i k16 = _mm_cvtsi32_si128(16);
    __m256i mx = bias; /* biased 0 */
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i h = xhat4(ld(x + i), &k);
        const __m256i term = sar64(_mm256_add_epi64(mul64(h, vm2, vm2h), r), k16);
        const __m256i v = _mm256_sub_epi64(_mm256_sub_epi64(_mm256_slli_epi64(ld(dy + i), 16), vm1), term);
        st(acc + i, v);
        mx = max64(mx, abs_biased(v, bias));
    }
    const uint64_t t = rctc_norm_dx_x_portable(n - i, x + i, N, s1, m, sh, dy + i, m1, m2, acc + i);
    const uint64_t v = hmax_biased(mx, bias);
    return t > v ? t : v;
}

uint64_t rctc_norm_affine_avx2(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, int64_t g,
                               int64_t bias_v, int64_t *acc) {
    const xhat_k k = xhat_consts(N, s1, m, sh);
    const __m256i vg = _mm256_set1_epi64x(g), vgh = _mm256_set1_epi64x((int64_t)((uint64_t)g >> 32));
    const __m256i vb = _mm256_set1_epi64x(bias_v), bias = _mm256_set1_epi64x(INT64_MIN);
    __m256i mx = bias;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i v = _mm256_add_epi64(mul64(xhat4(ld(x + i), &k), vg, vgh), vb);
        st(acc + i, v);
        mx = max64(mx, abs_biased(v, bias));
    }
    const uint64_t t = rctc_norm_affine_portable(n - i, x + i, N, s1, m, sh, g, bias_v, acc + i);
    const uint64_t v = hmax_biased(mx, bias);
    return t > v ? t : v;
}

void rctc_norm_load_avx2(size_t n, const void *p, int w, size_t off, int64_t *dst) {
    size_t i = 0;
    if (w == 1) {
        const int8_t *x = (const int8_t *)p + off;
        for (; i + 4 <= n; i += 4) {
            int32_t four;
            memcpy(&four, x + i, 4);
            st(dst + i, _mm256_cvtepi8_epi64(_mm_cvtsi32_si128(four)));
        }
    } else if (w == 2) {
        const int16_t *x = (const int16_t *)p + off;
        for (; i + 4 <= n; i += 4) st(dst + i, _mm256_cvtepi16_epi64(_mm_loadl_epi64((const __m128i *)(x + i))));
    }
    rctc_norm_load_portable(n - i, p, w, off + i, dst + i);
}

void rctc_norm_scale_avx2(size_t n, const int64_t *acc, int64_t mult, int64_t *out) {
    const __m256i vm = _mm256_set1_epi64x(mult);
    size_t i = 0;
    if (mult >= 0 && mult <= (int64_t)UINT32_MAX)
        for (; i + 4 <= n; i += 4) st(out + i, mul64_lo(ld(acc + i), vm));
    else
        for (const __m256i vh = _mm256_set1_epi64x((int64_t)((uint64_t)mult >> 32)); i + 4 <= n; i += 4)
            st(out + i, mul64(ld(acc + i), vm, vh));
    rctc_norm_scale_portable(n - i, acc + i, mult, out + i);
}

/* int8 runs 32 bytes a step, as the AVX-512 loop: vpsadbw of x + 128, vpmaddwd into int32 lanes
 * (at most 2^16 a lane a step, flushed every 2^12 steps), vpminsb / vpmaxsb; the rest portable */
void rctc_norm_sums_run_avx2(size_t n, const void *p, int w, size_t off, int64_t *s1, int64_t *s2, int64_t *lo,
                             int64_t *hi) {
    size_t i = 0;
    if (w == 1 && n >= 32) {
        const int8_t *x = (const int8_t *)p + off;
        const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
        __m256i a1 = zero, a2 = zero, mn = _mm256_set1_epi8(127), mx = _mm256_set1_epi8(-128);
        while (i + 32 <= n) {
            __m256i q = zero;
            for (int k = 0; k < 4096 && i + 32 <= n; ++k, i += 32) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
                const __m256i v0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
                const __m256i v1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
                q = _mm256_add_epi32(q, _mm256_add_epi32(_mm256_madd_epi16(v0, v0), _mm256_madd_epi16(v1, v1)));
                a1 = _mm256_add_epi64(a1, _mm256_sad_epu8(_mm256_xor_si256(v, flip), zero));
                mn = _mm256_min_epi8(mn, v);
                mx = _mm256_max_epi8(mx, v);
            }
            a2 = _mm256_add_epi64(a2, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(q)));
            a2 = _mm256_add_epi64(a2, _mm256_cvtepu32_epi64(_mm256_extracti128_si256(q, 1)));
        }
        int8_t bl[32], bh[32];
        _mm256_storeu_si256((__m256i *)bl, mn);
        _mm256_storeu_si256((__m256i *)bh, mx);
        iq_norm_sums_run_close(bl, bh, 32, (uint64_t)hsum(a1), (uint64_t)hsum(a2), i, s1, s2, lo, hi);
    }
    rctc_norm_sums_run_portable(n - i, p, w, off + i, s1, s2, lo, hi);
}

void rctc_norm_xhat_dot_run_avx2(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                 int64_t s1, int64_t m, int sh, int64_t *sg, int64_t *sb) {
    iq_norm_xhat_dot_blocks(rctc_norm_load_avx2, rctc_norm_xhat_dot_avx2, n, x, w, dy, dw, off, N, s1, m, sh, sg, sb);
}

uint64_t rctc_norm_dx_x_run_avx2(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                 int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2, int64_t *acc) {
    return iq_norm_dx_x_blocks(rctc_norm_load_avx2, rctc_norm_dx_x_avx2, n, x, w, dy, dw, off, N, s1, m, sh, m1, m2,
                               acc);
}
