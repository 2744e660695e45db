/*
 * sgd_update_avx2.c - AVX2 variant of the fused SGD update's fast path (rctc_update.h; compiled
 * with -mavx2, called only when the CPU has AVX2).
 *
 * Needs: ../sgd_fast.h (the range; here also |m| < 2^31), <immintrin.h>. Leaves: exactly
 * rctc_sgd_update_fused_portable's output and statistics, four int64 lanes a vector, the tail
 * (n mod 8) by rctc_sgd_update_fast_portable; RCTC_SGD_NOT_FAST (nothing written) outside the
 * range. acc |m| is formed from 32 x 32 -> 64 products (lo(acc) |m| + hi(acc) |m| 2^32, exact as
 * the product is below 2^53), the floor shift of p as a logical shift of p + 2^53, the clip by
 * compare and blend (AVX2 has no 64-bit min / max), S and A as per-lane sums.
 */
#include <immintrin.h>
#include <string.h>

#include "../sgd_fast.h"

typedef struct {
    __m256i am, neg, mask, p53, off, half, one, qmax, nqmax, zero;
    __m128i s, sa, sb;
    int stoch;
} fast_consts;

/* the int64 lanes of 4 storage elements (w bytes each) */
static inline __m256i load_q(const void *q, int w, size_t i) {
    if (w == 1) {
        int32_t b;
        memcpy(&b, (const int8_t *)q + i, 4);
        return _mm256_cvtepi8_epi64(_mm_cvtsi32_si128(b));
    }
    if (w == 2) return _mm256_cvtepi16_epi64(_mm_loadl_epi64((const __m128i *)((const int16_t *)q + i)));
    return _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)((const int32_t *)q + i)));
}

/* 4 lanes (each within the storage's range) into 4 storage elements */
static inline void store_q(void *out, int w, size_t i, __m256i v) {
    const __m128i d = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
    if (w == 4) {
        _mm_storeu_si128((__m128i *)((int32_t *)out + i), d);
    } else if (w == 2) {
        _mm_storel_epi64((__m128i *)((int16_t *)out + i), _mm_packs_epi32(d, d));
    } else {
        const __m128i h = _mm_packs_epi32(d, d);
        const int32_t b = _mm_cvtsi128_si32(_mm_packs_epi16(h, h));
        memcpy((int8_t *)out + i, &b, 4);
    }
}

/* elements i .. i+3: the new values stored, |acc| into *sum, the saturated lanes (-1) into *sat */
static inline void step4(const fast_consts *c, const void *q, int w, const int64_t *acc, const uint32_t *rand,
                         void *out, size_t i, __m256i *sum, __m256i *sat) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)(acc + i));
    const __m256i sg = _mm256_cmpgt_epi64(c->zero, a);
    *sum = _mm256_add_epi64(*sum, _mm256_sub_epi64(_mm256_xor_si256(a, sg), sg));
    const __m256i lo = _mm256_mul_epu32(a, c->am);                         /* lo(acc) |m| */
    const __m256i hi = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), c->am); /* hi(acc) |m|, signed */
    __m256i p = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
    p = _mm256_sub_epi64(_mm256_xor_si256(p, c->neg), c->neg); /* acc m */
    const __m256i f = _mm256_and_si256(p, c->mask);
    const __m256i fl = _mm256_sub_epi64(_mm256_srl_epi64(_mm256_add_epi64(p, c->p53), c->s), c->off);
    __m256i up; /* -1 where the rounding goes up */
    if (c->stoch) {
        const __m256i u = _mm256_srli_epi64(_mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(rand + i))), 8);
        up = _mm256_cmpgt_epi64(_mm256_sll_epi64(f, c->sb), _mm256_sll_epi64(u, c->sa));
    } else {
        const __m256i odd = _mm256_cmpeq_epi64(_mm256_and_si256(fl, c->one), c->one);
        up = _mm256_or_si256(_mm256_cmpgt_epi64(f, c->half),
                             _mm256_and_si256(_mm256_cmpeq_epi64(f, c->half), odd));
    }
    __m256i v = _mm256_sub_epi64(_mm256_add_epi64(load_q(q, w, i), fl), up);
    v = _mm256_blendv_epi8(v, c->qmax, _mm256_cmpgt_epi64(v, c->qmax));
    v = _mm256_blendv_epi8(v, c->nqmax, _mm256_cmpgt_epi64(c->nqmax, v));
    *sat = _mm256_add_epi64(*sat, _mm256_or_si256(_mm256_cmpeq_epi64(v, c->qmax), _mm256_cmpeq_epi64(v, c->nqmax)));
    store_q(out, w, i, v);
}

static uint64_t lanes_sum(__m256i v) {
    uint64_t l[4];
    _mm256_storeu_si256((__m256i *)l, v);
    return l[0] + l[1] + l[2] + l[3];
}

int rctc_sgd_update_fast_avx2(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                              const uint32_t *rand, void *out, uint64_t *stats) {
    uint64_t amax = 0;
    const uint64_t am = m < 0 ? 0u - (uint64_t)m : (uint64_t)m;
    if (am >= ((uint64_t)1 << 31) || !sgd_fast_range(n, qw, acc, m, k, bits, &amax)) return RCTC_SGD_NOT_FAST;
    const int s = -k;
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    fast_consts c;
    c.am = _mm256_set1_epi64x((int64_t)am);
    c.neg = _mm256_set1_epi64x(m < 0 ? -1 : 0);
    c.mask = _mm256_set1_epi64x((int64_t)(((uint64_t)1 << s) - 1u));
    c.p53 = _mm256_set1_epi64x((int64_t)1 << 53);
    c.off = _mm256_set1_epi64x((int64_t)(((uint64_t)1 << 53) >> s));
    c.half = _mm256_set1_epi64x((int64_t)1 << (s - 1));
    c.one = _mm256_set1_epi64x(1);
    c.qmax = _mm256_set1_epi64x(qmax);
    c.nqmax = _mm256_set1_epi64x(-qmax);
    c.zero = _mm256_setzero_si256();
    c.s = _mm_cvtsi32_si128(s);
    c.sa = _mm_cvtsi32_si128(s > 24 ? s - 24 : 0);
    c.sb = _mm_cvtsi32_si128(s < 24 ? 24 - s : 0);
    c.stoch = rand != NULL;
    __m256i sum = c.zero, sat = c.zero;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        step4(&c, q, qw, acc, rand, out, i, &sum, &sat);
        step4(&c, q, qw, acc, rand, out, i + 4, &sum, &sat);
    }
    uint64_t tail[2] = {0u, 0u};
    if (i < n) {
        const size_t off = i * (size_t)qw;
        const int rc = rctc_sgd_update_fast_portable(n - i, (const char *)q + off, qw, acc + i, m, k, bits,
                                                     rand ? rand + i : NULL, (char *)out + off, tail);
        if (rc != RCTC_IQ_OK) return rc; /* cannot happen: the tail is in the range the whole is */
    }
    if (stats != NULL) {
        stats[0] = lanes_sum(sum) + tail[0];
        stats[1] = (0u - lanes_sum(sat)) + tail[1];
    }
    return RCTC_IQ_OK;
}
