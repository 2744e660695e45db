/*
 * iq_erf.c - I-BERT's i-erf, the A&S 7.1.26 erf, the Erf op and its backward (intref.gelu.ierf,
 * erf_as, erf, erf_backward, _gauss).
 *
 * Needs: rctc_intops.h. Leaves: i-erf sgn(U) (((A c^2 + 2^31) >> 32) + 2^16), c = min(|U|, B) - B;
 * A&S: t = round(2^46 / (2^16 + round(P a 2^-16))) in Q30, Horner in Q30, times i-exp(-u^2),
 * odd extension; Erf rounds erf_as(X) once; backward dy (K exp(-x^2) + 2^15) >> 16, one rounding.
 */
#include "iq.h"

#define FRAC 16
#define ONE ((int64_t)1 << 16)
#define ERF_A (-18927)
#define ERF_B 115933
#define TWO_OVER_SQRT_PI 73949
#define SQ_CLAMP ((int64_t)16 << FRAC)
#define AS_P 21469

static const int64_t AS_A[5] = {273621191, -305476044, 1526231383, -1560310108, 1139675401};

/* exp(-x^2) (or exp(-x^2/2)) in Q16 via i-exp */
int64_t rctc_iq_gauss1(int64_t x, int half) {
    const int64_t xc = iq_clampv(x, -SQ_CLAMP, SQ_CLAMP);
    int64_t sq = -((xc * xc + ((int64_t)1 << (FRAC - 1 + half))) >> (FRAC + half));
    (void)rctc_iq_iexp(1, &sq, &sq);
    return sq;
}

int64_t rctc_iq_ierf1(int64_t u) {
    const int64_t c = iq_min(u < 0 ? -u : u, ERF_B) - ERF_B;
    const int64_t mag = iq_sar(ERF_A * c * c + ((int64_t)1 << 31), 32) + ONE;
    return iq_sign(u) * mag;
}

int64_t rctc_iq_erf_as1(int64_t u) {
    const int64_t a = iq_min(u < 0 ? -u : u, SQ_CLAMP);
    const int64_t den = ONE + ((AS_P * a + ((int64_t)1 << 15)) >> FRAC);
    const int64_t t = (((int64_t)1 << 46) + (den >> 1)) / den;
    int64_t h = AS_A[4];
    for (int i = 3; i >= 0; --i) h = AS_A[i] + iq_sar(h * t + ((int64_t)1 << 29), 30);
    const int64_t poly = iq_sar(h * t + ((int64_t)1 << 29), 30);
    const int64_t mag = ONE - iq_sar(poly * rctc_iq_gauss1(a, 0) + ((int64_t)1 << 29), 30);
    return iq_sign(u) * mag;
}

void rctc_iq_ierf(size_t n, const int64_t *u, int64_t *out) {
    for (size_t i = 0; i < n; ++i) out[i] = rctc_iq_ierf1(u[i]);
}

void rctc_iq_erf_as(size_t n, const int64_t *u, int64_t *out) {
    for (size_t i = 0; i < n; ++i) out[i] = rctc_iq_erf_as1(u[i]);
}

int rctc_iq_erf(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out) {
    const int rc = rctc_iq_to_fixed(n, q, w, e, FRAC, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) work[i] = rctc_iq_erf_as1(work[i]);
    return rctc_iq_requantize(n, work, -FRAC, bits, NULL, out, e_out);
}

int rctc_iq_erf_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                         const uint32_t *rand, int64_t *work, void *dx, int *e_out) {
    const int rc = rctc_iq_to_fixed(n, q, qw, e, FRAC, work);
    if (rc) return rc;
    for (size_t i = 0; i < n; ++i) {
        const int64_t g = (TWO_OVER_SQRT_PI * rctc_iq_gauss1(work[i], 0) + ((int64_t)1 << 15)) >> FRAC;
        work[i] = iq_mul(iq_ld(dq, dw, i), g);
    }
    return rctc_iq_requantize(n, work, de - FRAC, bits, rand, dx, e_out);
}
