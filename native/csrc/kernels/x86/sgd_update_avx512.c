/*
 * sgd_update_avx512.c - AVX-512 variant of the fused SGD update's fast path (rctc_update.h;
 * compiled with the AVX-512 flags, called only when the CPU has AVX-512 F / BW / VL).
 *
 * Needs: ../sgd_fast.h (the range; here also |m| < 2^31), <immintrin.h>. Leaves: exactly
 * rctc_sgd_update_fused_portable's output and statistics, eight int64 lanes a vector, the tail
 * under a lane mask; RCTC_SGD_NOT_FAST (nothing written) outside the range. The product and the
 * stochastic test as in the AVX2 variant; the floor shift is AVX-512's arithmetic shift, the
 * clip its 64-bit min / max, the store a narrowing move (every lane is within the storage).
 */
/* The device project's host build (native/device/Makefile) adds only -mavx2 to its x86 files:
 * without the -m flags, enable the ISA for this file here (same code either way; gemm_avx512.c). */
#if !defined(__AVX512VL__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,avx512f,avx512bw,avx512vl")
#elif !defined(__AVX512VL__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,avx512f,avx512bw,avx512vl"))), apply_to = function)
#define RCTC_CLANG_TARGET_PUSHED 1
#endif
#include <immintrin.h>

#include "../sgd_fast.h"

/* the int64 lanes of up to 8 storage elements (w bytes each; lanes outside mask read 0) */
static inline __m512i load_q(const void *q, int w, size_t i, __mmask8 k) {
    if (w == 1) return _mm512_cvtepi8_epi64(_mm_maskz_loadu_epi8(k, (const int8_t *)q + i));
    if (w == 2) return _mm512_cvtepi16_epi64(_mm_maskz_loadu_epi16(k, (const int16_t *)q + i));
    return _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, (const int32_t *)q + i));
}

static inline void store_q(void *out, int w, size_t i, __mmask8 k, __m512i v) {
    if (w == 1)
        _mm512_mask_cvtepi64_storeu_epi8((int8_t *)out + i, k, v);
    else if (w == 2)
        _mm512_mask_cvtepi64_storeu_epi16((int16_t *)out + i, k, v);
    else
        _mm512_mask_cvtepi64_storeu_epi32((int32_t *)out + i, k, v);
}

int rctc_sgd_update_fast_avx512(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                const uint32_t *rand, void *out, uint64_t *stats) {
    uint64_t amax = 0;
    const uint64_t am = m < 0 ? 0u - (uint64_t)m : (uint64_t)m;
    if (am >= ((uint64_t)1 << 31) || !sgd_fast_range(n, qw, acc, m, k, bits, &amax)) return RCTC_SGD_NOT_FAST;
    const int s = -k;
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    const __m512i amv = _mm512_set1_epi64((int64_t)am), mask = _mm512_set1_epi64((int64_t)(((uint64_t)1 << s) - 1u));
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (s - 1)), one = _mm512_set1_epi64(1);
    const __m512i qmx = _mm512_set1_epi64(qmax), nqmx = _mm512_set1_epi64(-qmax), zero = _mm512_setzero_si512();
    const __m128i cs = _mm_cvtsi32_si128(s), ca = _mm_cvtsi32_si128(s > 24 ? s - 24 : 0);
    const __m128i cb = _mm_cvtsi32_si128(s < 24 ? 24 - s : 0);
    const int neg = m < 0;
    __m512i sum = zero;
    uint64_t sat = 0;
    for (size_t i = 0; i < n; i += 8) {
        const __mmask8 lanes = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1u);
        const __m512i a = _mm512_maskz_loadu_epi64(lanes, acc + i);
        sum = _mm512_add_epi64(sum, _mm512_abs_epi64(a));
        const __m512i lo = _mm512_mul_epu32(a, amv);                         /* lo(acc) |m| */
        const __m512i hi = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), amv); /* hi(acc) |m|, signed */
        __m512i p = _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32));
        if (neg) p = _mm512_sub_epi64(zero, p); /* acc m */
        const __m512i f = _mm512_and_si512(p, mask);
        const __m512i fl = _mm512_sra_epi64(p, cs); /* floor(p 2^-s) */
        __mmask8 up;
        if (rand != NULL) {
            const __m512i u = _mm512_srli_epi64(_mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(lanes, rand + i)), 8);
            up = _mm512_cmpgt_epi64_mask(_mm512_sll_epi64(f, cb), _mm512_sll_epi64(u, ca));
        } else {
            const __mmask8 odd = _mm512_test_epi64_mask(fl, one);
            up = _mm512_cmpgt_epi64_mask(f, half) | (_mm512_cmpeq_epi64_mask(f, half) & odd);
        }
        __m512i v = _mm512_add_epi64(load_q(q, qw, i, lanes), fl);
        v = _mm512_mask_add_epi64(v, up, v, one);
        v = _mm512_max_epi64(_mm512_min_epi64(v, qmx), nqmx);
        const __mmask8 at = (_mm512_cmpeq_epi64_mask(v, qmx) | _mm512_cmpeq_epi64_mask(v, nqmx)) & lanes;
        sat += (uint64_t)__builtin_popcount((unsigned)at);
        store_q(out, qw, i, lanes, v);
    }
    if (stats != NULL) {
        stats[0] = (uint64_t)_mm512_reduce_add_epi64(sum);
        stats[1] = sat;
    }
    return RCTC_IQ_OK;
}
#ifdef RCTC_CLANG_TARGET_PUSHED
#pragma clang attribute pop
#endif
