/*
 * iq_i128.c - portable 128-bit two's complement integers (no __int128, no float).
 *
 * Needs: stdint only. Leaves: exact results for the per-group scalars of the normalisations,
 * which exceed 64 bits for large groups (N^2 eps 2^-2e, gamma N m, D 2^16 / N^2): products of
 * two int64, shifts, floor division by a uint64 (long division in 32-bit digits) and Python's
 * bit_length of the magnitude. The test entry points expose them to the tests over (hi, lo).
 */
#include "rctc_intops.h"

rctc_i128 rctc_i128_from_i64(int64_t v) {
    rctc_i128 r;
    r.lo = (uint64_t)v;
    r.hi = v < 0 ? ~(uint64_t)0 : 0;
    return r;
}

rctc_i128 rctc_i128_add(rctc_i128 a, rctc_i128 b) {
    rctc_i128 r;
    r.lo = a.lo + b.lo;
    r.hi = a.hi + b.hi + (r.lo < a.lo);
    return r;
}

rctc_i128 rctc_i128_neg(rctc_i128 a) {
    rctc_i128 r;
    r.lo = ~a.lo + 1;
    r.hi = ~a.hi + (r.lo == 0);
    return r;
}

int rctc_i128_is_neg(rctc_i128 a) { return (a.hi >> 63) != 0; }

static rctc_i128 umul64(uint64_t a, uint64_t b) {
    const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    rctc_i128 r;
    r.lo = (mid << 32) | (p00 & 0xffffffffu);
    r.hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return r;
}

rctc_i128 rctc_i128_mul64(int64_t a, int64_t b) {
    const uint64_t ua = a < 0 ? 0u - (uint64_t)a : (uint64_t)a;
    const uint64_t ub = b < 0 ? 0u - (uint64_t)b : (uint64_t)b;
    rctc_i128 r = umul64(ua, ub);
    return ((a < 0) != (b < 0)) ? rctc_i128_neg(r) : r;
}

rctc_i128 rctc_i128_mul_u64(rctc_i128 a, uint64_t b) {
    rctc_i128 r = umul64(a.lo, b);
    r.hi += a.hi * b;
    return r;
}

rctc_i128 rctc_i128_shl(rctc_i128 a, int k) {
    rctc_i128 r;
    if (k <= 0) return a;
    if (k >= 64) {
        r.hi = a.lo << (k - 64);
        r.lo = 0;
    } else {
        r.hi = (a.hi << k) | (a.lo >> (64 - k));
        r.lo = a.lo << k;
    }
    return r;
}

rctc_i128 rctc_i128_sar(rctc_i128 a, int k) {
    rctc_i128 r;
    const uint64_t fill = rctc_i128_is_neg(a) ? ~(uint64_t)0 : 0;
    if (k <= 0) return a;
    if (k >= 128) {
        r.hi = r.lo = fill;
    } else if (k >= 64) {
        r.lo = k == 64 ? a.hi : (a.hi >> (k - 64)) | (fill << (128 - k));
        r.hi = fill;
    } else {
        r.lo = (a.lo >> k) | (a.hi << (64 - k));
        r.hi = (a.hi >> k) | (fill << (64 - k));
    }
    return r;
}

rctc_i128 rctc_i128_rshift_round(rctc_i128 a, int s) {
    if (s <= 0) return rctc_i128_shl(a, -s);
    return rctc_i128_sar(rctc_i128_add(a, rctc_i128_shl(rctc_i128_from_i64(1), s - 1)), s);
}

int rctc_i128_cmp(rctc_i128 a, rctc_i128 b) {
    const int64_t ah = (int64_t)a.hi, bh = (int64_t)b.hi;
    if (ah != bh) return ah < bh ? -1 : 1;
    return a.lo == b.lo ? 0 : a.lo < b.lo ? -1 : 1;
}

/* bits of w (0 for 0) */
static int bitlen64(uint64_t w) {
#if defined(__GNUC__) || defined(__clang__)
    return w ? 64 - __builtin_clzll(w) : 0;
#else
    int n = 0;
    while (w) {
        ++n;
        w >>= 1;
    }
    return n;
#endif
}

int rctc_i128_bitlen(rctc_i128 a) {
    if (rctc_i128_is_neg(a)) a = rctc_i128_neg(a); /* |INT128_MIN| reads as 2^127: bitlen 128 */
    return a.hi ? 64 + bitlen64(a.hi) : bitlen64(a.lo);
}

/* (u1:u0) / v and its remainder for u1 < v (the quotient fits 64 bits): long division in 32-bit
 * digits with the divisor normalised (Hacker's Delight, divlu; products wrap mod 2^64 where the
 * true value is known to fit) */
static uint64_t divlu(uint64_t u1, uint64_t u0, uint64_t v, uint64_t *rem) {
    const uint64_t b = (uint64_t)1 << 32, m32 = b - 1u;
    const int s = 64 - bitlen64(v); /* 0 .. 63: v != 0 */
    v <<= s;
    const uint64_t vn1 = v >> 32, vn0 = v & m32;
    const uint64_t un32 = s ? (u1 << s) | (u0 >> (64 - s)) : u1;
    const uint64_t un10 = u0 << s, un1 = un10 >> 32, un0 = un10 & m32;
    uint64_t q1 = un32 / vn1, rhat = un32 - q1 * vn1;
    while (q1 >= b || q1 * vn0 > b * rhat + un1) {
        --q1;
        rhat += vn1;
        if (rhat >= b) break;
    }
    const uint64_t un21 = un32 * b + un1 - q1 * v;
    uint64_t q0 = un21 / vn1;
    rhat = un21 - q0 * vn1;
    while (q0 >= b || q0 * vn0 > b * rhat + un0) {
        --q0;
        rhat += vn1;
        if (rhat >= b) break;
    }
    *rem = (un21 * b + un0 - q0 * v) >> s;
    return q1 * b + q0;
}

/* |a| / d and |a| % d for unsigned a, by shift-subtract (the definition; d == 0 only) */
static rctc_i128 udivmod_bits(rctc_i128 a, uint64_t d, uint64_t *rem) {
    rctc_i128 q = {0, 0};
    uint64_t r = 0;
    for (int i = 127; i >= 0; --i) {
        const uint64_t bit = i >= 64 ? (a.hi >> (i - 64)) & 1u : (a.lo >> i) & 1u;
        const int carry = (int)(r >> 63);
        r = (r << 1) | bit;
        if (carry || r >= d) {
            r -= d;
            if (i >= 64)
                q.hi |= (uint64_t)1 << (i - 64);
            else
                q.lo |= (uint64_t)1 << i;
        }
    }
    *rem = r;
    return q;
}

/* |a| / d and |a| % d for unsigned a: the high word by 64-bit division, the low by divlu */
static rctc_i128 udivmod(rctc_i128 a, uint64_t d, uint64_t *rem) {
    rctc_i128 q;
    if (d == 0u) return udivmod_bits(a, d, rem);
    if (a.hi == 0u) {
        q.hi = 0u;
        q.lo = a.lo / d;
        *rem = a.lo % d;
        return q;
    }
    q.hi = a.hi / d;
    q.lo = divlu(a.hi % d, a.lo, d, rem);
    return q;
}

rctc_i128 rctc_i128_divfloor(rctc_i128 a, uint64_t d) {
    uint64_t rem;
    if (!rctc_i128_is_neg(a)) return udivmod(a, d, &rem);
    rctc_i128 q = udivmod(rctc_i128_neg(a), d, &rem);
    q = rctc_i128_neg(q);
    return rem ? rctc_i128_add(q, rctc_i128_from_i64(-1)) : q;
}

void rctc_i128_test_mul(int64_t a, int64_t b, uint64_t *hi, uint64_t *lo) {
    const rctc_i128 r = rctc_i128_mul64(a, b);
    *hi = r.hi;
    *lo = r.lo;
}

void rctc_i128_test_divfloor(uint64_t hi, uint64_t lo, uint64_t d, uint64_t *qhi, uint64_t *qlo) {
    rctc_i128 a;
    a.hi = hi;
    a.lo = lo;
    const rctc_i128 r = rctc_i128_divfloor(a, d);
    *qhi = r.hi;
    *qlo = r.lo;
}

void rctc_i128_test_rshift_round(uint64_t hi, uint64_t lo, int s, uint64_t *rhi, uint64_t *rlo) {
    rctc_i128 a;
    a.hi = hi;
    a.lo = lo;
    const rctc_i128 r = rctc_i128_rshift_round(a, s);
    *rhi = r.hi;
    *rlo = r.lo;
}

int rctc_i128_test_bitlen(uint64_t hi, uint64_t lo) {
    rctc_i128 a;
    a.hi = hi;
    a.lo = lo;
    return rctc_i128_bitlen(a);
}
