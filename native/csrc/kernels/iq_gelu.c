/*
 * iq_gelu.c - GELU (I-BERT's i-GELU, or with the A&S erf) and its backward (intref.gelu.gelu,
 * gelu_backward, _erf_scaled).
 *
 * Needs: rctc_intops.h, iq_erf.c. Leaves: U = round(clip(X) round(2^16/sqrt 2) 2^-16),
 * L = i-erf(U) or erf_as(U); forward the exact q (2^16 + L) at e - 17, one rounding; backward
 * dy [2^16 + erf_as(U) + round(xc phi 2^-31)] at de - 17 (phi = round(2^16/sqrt(2 pi))
 * i-exp(-x^2/2)), one rounding.
 */
#include "iq.h"

#define FRAC 16
#define ONE ((int64_t)1 << 16)
#define INV_SQRT2 46341
#define INV_SQRT_2PI 26145
#define SQ_CLAMP ((int64_t)16 << FRAC)

static int64_t erf_scaled(int64_t x, int accurate) {
    const int64_t u = iq_sar(iq_clampv(x, -SQ_CLAMP, SQ_CLAMP) * INV_SQRT2 + ((int64_t)1 << 15), FRAC);
    return accurate ? rctc_iq_erf_as1(u) : rctc_iq_ierf1(u);
}

int rctc_iq_gelu(size_t n, const void *q, int w, int e, int bits, int accurate, int64_t *work, void *out,
                 int *e_out) {
    const int rc = rctc_iq_to_fixed(n, q, w, e, FRAC, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) work[i] = iq_mul(iq_ld(q, w, i), ONE + erf_scaled(work[i], accurate));
    return rctc_iq_requantize(n, work, e - FRAC - 1, bits, NULL, out, e_out);
}

int rctc_iq_gelu_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                          const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int rc = rctc_iq_to_fixed(n, q, qw, e, FRAC, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = work[i];
        const int64_t xc = iq_clampv(x, -SQ_CLAMP, SQ_CLAMP);
        const int64_t phi = INV_SQRT_2PI * rctc_iq_gauss1(x, 1);
        const int64_t xphi = iq_sar(xc * phi + ((int64_t)1 << 30), 31);
        work[i] = iq_mul(iq_ld(dq, dw, i), ONE + erf_scaled(x, 1) + xphi);
    }
    return rctc_iq_requantize(n, work, de - FRAC - 1, bits, rand, dx, e_out);
}
