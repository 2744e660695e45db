/*
 * iq_requant.c - intref.core's rounding shifts and requantise: shift_round, shift,
 * requant_shift, requantize (with and without a bias).
 *
 * Needs: rctc_intops.h. Leaves: nearest is (x + 2^(s-1)) >> s (half up), stochastic is
 * (x + r) >> s with r = rand >> (32 - s) (s <= 32) or rand << (s - 32); the requantised values
 * are in range without a clip; an accumulator past 2^62 is RCTC_IQ_EOVERFLOW, as intref's
 * OverflowError. The int8 rounding loop runs the AVX2 variant where the CPU has it (same bits).
 */
#include "iq.h"
#include "rctc_kernels.h"

int rctc_iq_requant_shift(uint64_t m, int bits, int stochastic) {
    const uint64_t qm = ((uint64_t)1 << (bits - 1)) - 1;
    if (m <= qm) return 0;
    if (stochastic) {
        const uint64_t t = m / qm + (m % qm != 0);
        return iq_bitlen(t - 1);
    }
    int s = iq_bitlen(m / qm) - 1;
    if (s < 0) s = 0;
    while (((m + (s ? (uint64_t)1 << (s - 1) : 0)) >> s) > qm) ++s;
    return s;
}

static inline int64_t round1(int64_t x, int s, const uint32_t *rand, size_t i) {
    int64_t r;
    if (!rand)
        r = (int64_t)1 << (s - 1);
    else
        r = s <= 32 ? (int64_t)(rand[i] >> (32 - s)) : (int64_t)((uint64_t)rand[i] << (s - 32));
    return iq_sar(x + r, s);
}

void rctc_iq_round_s8_portable(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out) {
    for (size_t i = 0; i < n; ++i) out[i] = (int8_t)round1(acc[i], s, rand, i);
}

void iq_round_block(size_t n, const int64_t *x, int s, const uint32_t *rand, int w, void *out) {
    if (w == 1) {
#if defined(__x86_64__) || defined(_M_X64)
        const int isa = rctc_isa_available();
        if (isa & (1 << RCTC_ISA_AVX512VNNI)) {
            rctc_iq_round_s8_avx512(n, x, s, rand, (int8_t *)out);
            return;
        }
        if (isa & (1 << RCTC_ISA_AVX2)) {
            rctc_iq_round_s8_avx2(n, x, s, rand, (int8_t *)out);
            return;
        }
#endif
        rctc_iq_round_s8_portable(n, x, s, rand, (int8_t *)out);
        return;
    }
    for (size_t i = 0; i < n; ++i) iq_st(out, w, i, round1(x[i], s, rand, i));
}

int rctc_iq_shift_round(size_t n, const int64_t *x, int s, const uint32_t *rand, int64_t *out) {
    if (s == 0) {
        for (size_t i = 0; i < n; ++i) out[i] = x[i];
        return RCTC_IQ_OK;
    }
    if (rctc_iq_absmax(n, x) > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    if (s > 62) {
        for (size_t i = 0; i < n; ++i) out[i] = 0;
        return RCTC_IQ_OK;
    }
    for (size_t i = 0; i < n; ++i) out[i] = round1(x[i], s, rand, i);
    return RCTC_IQ_OK;
}

int rctc_iq_shift(size_t n, const void *x, int w, int k, const uint32_t *rand, int64_t *out) {
    uint64_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        out[i] = iq_ld(x, w, i);
        const uint64_t a = iq_abs(out[i]);
        m = a > m ? a : m;
    }
    if (k <= 0) return rctc_iq_shift_round(n, out, -k, rand, out);
    if (m > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
    for (size_t i = 0; i < n; ++i) out[i] = k > 63 ? 0 : iq_shl(out[i], k);
    return RCTC_IQ_OK;
}

void rctc_iq_round_store(size_t n, const int64_t *acc, int s, const uint32_t *rand, void *out, int w) {
    if (s == 0) {
        for (size_t i = 0; i < n; ++i) iq_st(out, w, i, acc[i]);
    } else if (s > 62) {
        for (size_t i = 0; i < n; ++i) iq_st(out, w, i, 0);
    } else {
        iq_round_block(n, acc, s, rand, w, out);
    }
}

int rctc_iq_requantize(size_t n, const int64_t *acc, int e_acc, int bits, const uint32_t *rand, void *out,
                       int *e_out) {
    const uint64_t m = rctc_iq_absmax(n, acc);
    const int s = rctc_iq_requant_shift(m, bits, rand != NULL);
    if (s > 0 && m > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    rctc_iq_round_store(n, acc, s, rand, out, rctc_iq_width(bits));
    *e_out = e_acc + s;
    return RCTC_IQ_OK;
}

int rctc_iq_requantize_bias(size_t outer, size_t channels, size_t inner, int64_t *acc, int e_acc,
                            const void *bias, int bias_w, int bias_exp, int bits, const uint32_t *rand,
                            void *out, int *e_out) {
    const int k = bias_exp - e_acc;
    uint64_t m = 0;
    for (size_t c = 0; c < channels; ++c) {
        const uint64_t a = iq_abs(iq_ld(bias, bias_w, c));
        m = a > m ? a : m;
    }
    if (k > 0 && m > (k > 62 ? 0 : RCTC_IQ_ACC_LIMIT >> k)) return RCTC_IQ_EOVERFLOW;
    if (k < 0 && m > RCTC_IQ_ACC_LIMIT) return RCTC_IQ_EOVERFLOW;
    for (size_t c = 0; c < channels; ++c) {
        const int64_t v = iq_ld(bias, bias_w, c);
        int64_t b;
        if (k >= 0)
            b = k > 63 ? 0 : iq_shl(v, k);
        else
            b = -k > 62 ? 0 : iq_sar(v + ((int64_t)1 << (-k - 1)), -k);
        for (size_t o = 0; o < outer; ++o) {
            int64_t *row = acc + (o * channels + c) * inner;
            for (size_t i = 0; i < inner; ++i) row[i] = iq_add(row[i], b);
        }
    }
    return rctc_iq_requantize(outer * channels * inner, acc, e_acc, bits, rand, out, e_out);
}

int rctc_iq_align_exp(int k, const uint64_t *absmax, const int *exps, int headroom) {
    int ec = exps[0];
    for (int i = 1; i < k; ++i) ec = exps[i] < ec ? exps[i] : ec;
    for (int i = 0; i < k; ++i) {
        if (absmax[i]) {
            const int c = exps[i] - (headroom - iq_bitlen(absmax[i]));
            ec = c > ec ? c : ec;
        }
    }
    return ec;
}
