/*
 * sgd_update.c - the fused integer SGD update with its stochastic rounding (rctc_update.h).
 *
 * Needs: iq.h (floor shift, widths). Leaves: out = clip(q + round(acc * m * 2^k)) with
 * FusedIntUpdate's rounding, bit for bit, and the bitwidth controller's statistics A = sum |acc|
 * and S = #{|out| == qmax} (rctc/bitwidth_rule.py); no floating point, no allocation. The entry
 * point takes the fast path (sgd_update_fast.c, x86/sgd_update_avx2.c / _avx512.c) where the operands are in
 * its range; rctc_sgd_update_fused_portable is the specification every variant equals.
 */
#include "iq.h"
#include "rctc_intops.h"
#include "rctc_kernels.h"
#include "rctc_update.h"

#define P53 ((int64_t)1 << 53)

static inline int bitlen64(uint64_t v) {
#if defined(__GNUC__)
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    return iq_bitlen(v);
#endif
}

/* hi:lo = x * y exactly (portable 64 x 64 -> 128 bits) */
static void mul_u128(uint64_t x, uint64_t y, uint64_t *hi, uint64_t *lo) {
    const uint64_t m32 = 0xffffffffu;
    const uint64_t ll = (x & m32) * (y & m32), lh = (x & m32) * (y >> 32);
    const uint64_t hl = (x >> 32) * (y & m32), hh = (x >> 32) * (y >> 32);
    const uint64_t mid = (ll >> 32) + (lh & m32) + (hl & m32);
    *lo = (mid << 32) | (ll & m32);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* hi:lo rounded to 53 significant bits, half to even (IEEE binary64's rounding of a positive
 * integer): r * 2^t with r < 2^53 (t = 0 when hi:lo fits 53 bits; r >= 2^52 otherwise) */
static uint64_t round53(uint64_t hi, uint64_t lo, int *t) {
    const int len = hi ? 64 + bitlen64(hi) : bitlen64(lo);
    if (len <= 53) {
        *t = 0;
        return lo;
    }
    int d = len - 53; /* 1 .. 75 */
    uint64_t r;
    int above, tie;
    if (d < 64) {
        const uint64_t rem = lo & (((uint64_t)1 << d) - 1u), half = (uint64_t)1 << (d - 1);
        r = (lo >> d) | (hi << (64 - d));
        above = rem > half;
        tie = rem == half;
    } else if (d == 64) {
        const uint64_t half = (uint64_t)1 << 63;
        r = hi;
        above = lo > half;
        tie = lo == half;
    } else {
        const int dh = d - 64; /* the dropped bits: the low dh bits of hi, then lo */
        const uint64_t rem = hi & (((uint64_t)1 << dh) - 1u), half = (uint64_t)1 << (dh - 1);
        r = hi >> dh;
        above = rem > half || (rem == half && lo != 0u);
        tie = rem == half && lo == 0u;
    }
    if (above || (tie && (r & 1u))) ++r;
    if (r == ((uint64_t)1 << 53)) {
        r >>= 1;
        ++d;
    }
    *t = d;
    return r;
}

/* numpy's float64(acc) * m for |m| < 2^53, as the integer p * 2^t (|p| < 2^53): acc rounds to
 * float64 first, then the product rounds once (both half to even); exact while |acc m| < 2^53 */
static int64_t f64_product(int64_t acc, int64_t m, int *t) {
    const uint64_t aa = iq_abs(acc), am = iq_abs(m);
    const int neg = (acc < 0) != (m < 0);
    int t1 = 0, t2 = 0;
    uint64_t hi, lo;
    const uint64_t a53 = round53(0u, aa, &t1);
    mul_u128(a53, am, &hi, &lo);
    const uint64_t r = round53(hi, lo, &t2);
    *t = t1 + t2;
    return neg ? -(int64_t)r : (int64_t)r;
}

/*
 * The stochastic rounding's "up" for u = p * 2^-s with s > 53 (|p| < 2^53, p != 0), as numpy
 * forms it in float64 (stochastic_floor: frac = u - floor(u), up = U < frac * 2^24, U the top
 * 24 bits of the word): for p > 0, frac = u exactly and U < p 2^(24-s) <=> U <= (p - 1) >> (s - 24);
 * for p < 0, floor(u) = -1 and frac = 1 - |p| 2^-s rounded to float64 (half to even on the
 * 2^-53 grid of [1/2, 1)): frac = R 2^-53 with R = round(2^53 - |p| / 2^(s-53)), and
 * U < R 2^-29 <=> U 2^29 < R.
 */
static int tiny_round_up(int64_t p, int s, uint32_t u24)
{
    if (p > 0) {
        const int d = s - 24;
        const uint64_t t = d >= 63 ? 0u : (uint64_t)(p - 1) >> d;
        return (uint64_t)u24 <= t;
    }
    const uint64_t t = (uint64_t)0 - (uint64_t)p; /* |p|, below 2^53 */
    const int d = s - 53;                            /* >= 1 */
    const uint64_t a = d >= 63 ? 0u : t >> d;
    const uint64_t b = d >= 63 ? t : t - (a << d);    /* |p| = a 2^d + b, 0 <= b < 2^d */
    const uint64_t top = (uint64_t)1 << 53;
    uint64_t r;
    if (b == 0u) {
        r = top - a;
    } else if (d - 1 >= 63 || b < ((uint64_t)1 << (d - 1))) {
        r = top - a; /* the fraction 1 - b 2^-d is above one half: rounds up */
    } else if (b > ((uint64_t)1 << (d - 1))) {
        r = top - a - 1u;
    } else {
        r = ((top - a) & 1u) ? top - a - 1u : top - a; /* a tie: the even one */
    }
    return ((uint64_t)u24 << 29) < r;
}

int rctc_sgd_update_fused(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                          const uint32_t *rand, void *out, uint64_t *stats) {
    int rc = RCTC_SGD_NOT_FAST;
#if defined(__x86_64__) || defined(_M_X64)
    const int isa = n >= 8u ? rctc_isa_available() : 0;
    if (isa & (1 << RCTC_ISA_AVX512VNNI))
        rc = rctc_sgd_update_fast_avx512(n, q, qw, acc, m, k, bits, rand, out, stats);
    else if (isa & (1 << RCTC_ISA_AVX2))
        rc = rctc_sgd_update_fast_avx2(n, q, qw, acc, m, k, bits, rand, out, stats);
#endif
    if (rc == RCTC_SGD_NOT_FAST) rc = rctc_sgd_update_fast_portable(n, q, qw, acc, m, k, bits, rand, out, stats);
    if (rc == RCTC_SGD_NOT_FAST) rc = rctc_sgd_update_fused_portable(n, q, qw, acc, m, k, bits, rand, out, stats);
    return rc;
}

/* the specification: every operand, one element at a time (the fast paths equal it in their range) */
int rctc_sgd_update_fused_portable(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                   const uint32_t *rand, void *out, uint64_t *stats) {
    const int64_t qmax = ((int64_t)1 << (bits - 1)) - 1;
    uint64_t am = iq_abs(m);
    uint64_t sum_abs = 0, saturated = 0;
    if (k < -1074 || bits < 2 || bits > 32) return RCTC_IQ_EDOMAIN; /* numpy's u would be subnormal-rounded */
    if (am >= (uint64_t)P53) return RCTC_IQ_EDOMAIN; /* m * 2^k is not a float64 scale */
    for (size_t i = 0; i < n; ++i) {
        uint64_t aa = iq_abs(acc[i]);
        if (stats != NULL && sum_abs + aa < sum_abs) return RCTC_IQ_EDOMAIN; /* A >= 2^64 */
        sum_abs += aa;
        /* u = p * 2^kk: numpy's float64 u (|p| < 2^53; past 2^53 the product is rounded as
         * float64 rounds it, and then u is normal: |u| >= 2^52 2^(k+1) > 2^-1022) */
        int kk = k;
        int64_t p;
        if ((aa >> 29) == 0u && (am >> 24) == 0u) {
            p = iq_mul(acc[i], m); /* below 2^53: exact */
        } else {
            int t = 0;
            p = f64_product(acc[i], m, &t);
            kk += t;
        }
        int64_t fl;
        int up = 0;
        if (kk >= 0) {
            /* an integer update: anything past 2^40 clips, so saturate there (no overflow) */
            const int64_t lim = (int64_t)1 << 40;
            if (kk >= 40 || iq_abs(p) > (uint64_t)(lim >> kk)) fl = p > 0 ? lim : p < 0 ? -lim : 0;
            else fl = iq_shl(p, kk);
        } else if (kk < -53) {
            /* |u| = |p| 2^-s < 2^(53-s) <= 1/2: floor(u) is 0 or -1, nearest rounds to 0 */
            if (rand != NULL && p != 0) {
                fl = p < 0 ? -1 : 0;
                up = tiny_round_up(p, -kk, rand[i] >> 8);
            } else {
                fl = 0; /* np.rint(u) of |u| < 1/2 is 0 (or -0.0, the same sum) */
            }
        } else {
            int s = -kk;
            fl = iq_sar(p, s);
            int64_t f = iq_sub(p, iq_shl(fl, s)); /* frac(u) * 2^s, in [0, 2^s) */
            if (rand == NULL) {
                int64_t half = (int64_t)1 << (s - 1);
                up = f > half || (f == half && (fl & 1));
            } else if (f > 0) {
                uint32_t u24 = rand[i] >> 8;
                /* U < f * 2^(24 - s)  <=>  U * 2^(s - 24) < f */
                up = s <= 24 ? (int64_t)u24 < iq_shl(f, 24 - s) : (int64_t)u24 <= ((f - 1) >> (s - 24));
            }
        }
        int64_t v = iq_add(iq_add(iq_ld(q, qw, i), fl), up);
        if (v > qmax) v = qmax;
        if (v < -qmax) v = -qmax;
        if (v == qmax || v == -qmax) ++saturated;
        iq_st(out, qw, i, v);
    }
    if (stats != NULL) {
        stats[0] = sum_abs;
        stats[1] = saturated;
    }
    return RCTC_IQ_OK;
}
