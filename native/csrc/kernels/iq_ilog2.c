/*
 * iq_ilog2.c - integer log2 in Q16 (intref.expo.ilog2): leading bit, mantissa in [2^30, 2^31)
 * (truncating), 16 rounds of squaring (m = m^2 >> 30, a bit when m >= 2^31, then m >>= 1).
 *
 * Needs: rctc_intops.h. Leaves: (floor(log2 v) << 16) + the 16 fraction bits; v <= 0 is
 * RCTC_IQ_EDOMAIN.
 */
#include "iq.h"

int rctc_iq_ilog2(size_t n, const int64_t *v, int64_t *out) {
    for (size_t i = 0; i < n; ++i)
        if (v[i] <= 0) return RCTC_IQ_EDOMAIN;
    for (size_t i = 0; i < n; ++i) {
        const int64_t lead = iq_bitlen((uint64_t)v[i]) - 1;
        int64_t m = lead >= 30 ? v[i] >> (lead - 30) : v[i] << (30 - lead);
        int64_t frac = 0;
        for (int r = 0; r < 16; ++r) {
            m = (m * m) >> 30;
            const int bit = m >= ((int64_t)1 << 31);
            if (bit) m >>= 1;
            frac = (frac << 1) + bit;
        }
        out[i] = (lead << 16) + frac;
    }
    return RCTC_IQ_OK;
}
