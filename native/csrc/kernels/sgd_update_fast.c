/*
 * sgd_update_fast.c - the fused SGD update's fast path, scalar (rctc_update.h, sgd_fast.h).
 *
 * Needs: sgd_fast.h (the range). Leaves: in range, exactly rctc_sgd_update_fused_portable's
 * output and statistics with one shift for the whole tensor, no per-element branch and the
 * storage width's switch outside the loop; outside it RCTC_SGD_NOT_FAST, nothing written.
 * The floor shift of p (|p| < 2^53) is a logical shift of p + 2^53 (2^53 is a multiple of 2^s),
 * the stochastic test U 2^(s-24) < f is (U << a) < (f << b) with a = max(s-24, 0), b = max(24-s, 0)
 * (both sides below 2^53).
 */
#include "iq.h"
#include "sgd_fast.h"

#define P53U ((uint64_t)1 << 53)

/* one element: the new value (clipped); stoch: from the word rand[i], else nearest */
static inline int64_t fast1(int64_t q, int64_t acc, int64_t m, int s, uint64_t mask, int sa, int sb, int stoch,
                            const uint32_t *rand, size_t i, int64_t qmax) {
    const int64_t p = iq_mul(acc, m); /* exact: |p| < 2^53 */
    const uint64_t f = (uint64_t)p & mask;
    const int64_t fl = (int64_t)(((uint64_t)p + P53U) >> s) - (int64_t)(P53U >> s);
    int64_t up;
    if (stoch) {
        up = ((uint64_t)(rand[i] >> 8) << sa) < (f << sb);
    } else {
        const uint64_t half = (uint64_t)1 << (s - 1);
        up = f > half || (f == half && (fl & 1));
    }
    const int64_t v = q + fl + up; /* |fl| <= 2^52: no overflow */
    return v > qmax ? qmax : v < -qmax ? -qmax : v;
}

/* the loop for one storage type T and rounding (constants after inlining: no switch inside) */
#define FAST_LOOP(NAME, T, STOCH)                                                                          \
    static void NAME(size_t n, const void *q, const int64_t *acc, int64_t m, int s, int64_t qmax,            \
                     const uint32_t *rand, void *out, uint64_t *sum_abs, uint64_t *saturated) {             \
        const int sa = s > 24 ? s - 24 : 0, sb = s < 24 ? 24 - s : 0;                                       \
        const uint64_t mask = ((uint64_t)1 << s) - 1u;                                                      \
        uint64_t a = 0, c = 0;                                                                              \
        for (size_t i = 0; i < n; ++i) {                                                                    \
            const int64_t v = fast1(((const T *)q)[i], acc[i], m, s, mask, sa, sb, STOCH, rand, i, qmax);    \
            a += iq_abs(acc[i]);                                                                            \
            c += (v == qmax) | (v == -qmax);                                                                \
            ((T *)out)[i] = (T)v;                                                                           \
        }                                                                                                   \
        *sum_abs = a;                                                                                       \
        *saturated = c;                                                                                     \
    }

FAST_LOOP(loop_s8_sr, int8_t, 1)
FAST_LOOP(loop_s16_sr, int16_t, 1)
FAST_LOOP(loop_s32_sr, int32_t, 1)
FAST_LOOP(loop_s8_rn, int8_t, 0)
FAST_LOOP(loop_s16_rn, int16_t, 0)
FAST_LOOP(loop_s32_rn, int32_t, 0)

int rctc_sgd_update_fast_portable(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                  const uint32_t *rand, void *out, uint64_t *stats) {
    uint64_t amax = 0, a = 0, c = 0;
    if (!sgd_fast_range(n, qw, acc, m, k, bits, &amax)) return RCTC_SGD_NOT_FAST;
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    if (rand != NULL) {
        (qw == 1 ? loop_s8_sr : qw == 2 ? loop_s16_sr : loop_s32_sr)(n, q, acc, m, -k, qmax, rand, out, &a, &c);
    } else {
        (qw == 1 ? loop_s8_rn : qw == 2 ? loop_s16_rn : loop_s32_rn)(n, q, acc, m, -k, qmax, rand, out, &a, &c);
    }
    if (stats != NULL) {
        stats[0] = a;
        stats[1] = c;
    }
    return RCTC_IQ_OK;
}
