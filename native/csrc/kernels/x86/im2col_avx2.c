/*
 * im2col_avx2.c - AVX2 variant of im2col's stride-2 row gather (compiled with -mavx2, called only
 * when the CPU has AVX2).
 *
 * Needs: rctc_kernels.h, <immintrin.h>. Leaves: dst[i] = src[2 i] for i < n, exactly the portable
 * loop; 16 outputs a step from one 32-byte load (a byte shuffle keeps the even bytes of each
 * 128-bit lane, a qword permute joins them); then one step of 16 from two 16-byte loads, the second
 * ending at the last byte. No load reaches past src[2 (n - 1)] (the last byte the portable loop
 * reads), so no byte outside the row is read.
 */
#include <immintrin.h>

#include "rctc_kernels.h"

void rctc_gather_s8_s2_avx2(size_t n, const int8_t *src, int8_t *dst) {
    const __m256i even = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
    size_t i = 0;
    for (; i + 17 <= n; i += 16) {
        const __m256i v = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + 2 * i)), even);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_castsi256_si128(_mm256_permute4x64_epi64(v, 0x08)));
    }
    if (i + 16 <= n) { /* the last 16: bytes 2i .. 2i + 30 as two 16-byte loads ending at src[2 (n - 1)] */
        const __m128i lo = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(src + 2 * i)),
                                            _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1));
        const __m128i hi = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(src + 2 * i + 15)),
                                            _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 1, 3, 5, 7, 9, 11, 13, 15));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_or_si128(lo, hi));
        i += 16;
    }
    rctc_gather_s8_s2_portable(n - i, src + 2 * i, dst + i);
}
