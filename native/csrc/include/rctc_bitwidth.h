/*
 * rctc_bitwidth.h - the RCT bitwidth controller in integers (kernels/bitwidth.c).
 *
 * The C twin of rctc/bitwidth_rule.py (the definition; docs/numerics.md, "Bitwidth controller"):
 * per parameter and step the statistic (g, s, n) - fixed-point Gavg g with RCTC_BW_FRAC_BITS
 * fraction bits (rounded down, capped at RCTC_BW_G_CAP), saturated count s, element count n -
 * summed over a window; every adjust_every steps a decision from the window and integer
 * thresholds (round(gavg_low * 2^F), computed once by the host), and the parameter's rescale.
 * No floating point, no allocation. Functions returning int return RCTC_IQ_OK or
 * RCTC_IQ_EDOMAIN (rctc_intops.h) where a stated bound is exceeded.
 */
#ifndef RCTC_BITWIDTH_H
#define RCTC_BITWIDTH_H

#include <stddef.h>
#include <stdint.h>

#include "rctc_intops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RCTC_BW_FRAC_BITS 16
#define RCTC_BW_G_CAP ((uint64_t)1 << 62)
#define RCTC_BW_SAT_NUM 1u   /* saturated fraction limit SAT_NUM / SAT_DEN = 1% */
#define RCTC_BW_SAT_DEN 100u

/* decisions (rctc.bitwidth_rule.Action) */
#define RCTC_BW_KEEP 0
#define RCTC_BW_SATURATION 1 /* bits + 1, same exponent */
#define RCTC_BW_UNDERFLOW 2  /* bits + 1, q <<= 1, exp - 1 */
#define RCTC_BW_WASTED 3     /* bits - 1, q = clip(round_half_even(q / 2)), exp + 1 */

/* the sums since the last decision; sum_g < 2^126 (g <= 2^62), count * n < 2^64 */
typedef struct rctc_bw_window {
    uint64_t count;
    rctc_i128 sum_g;
    uint64_t sum_s;
    uint64_t sum_n;
} rctc_bw_window;

/* g = min(floor(a * |m| * 2^(k + F) / n), G_CAP): an update u = acc * m * 2^k with a = sum |acc|
   (exact: a * |m| < 2^127); 0 for n == 0 */
uint64_t rctc_bw_gavg(uint64_t a, int64_t m, int k, uint64_t n);

/* add one step's statistic; EDOMAIN (window unchanged) if sum_n would pass 2^64 or g > G_CAP */
int rctc_bw_observe(rctc_bw_window *w, uint64_t g, uint64_t s, uint64_t n);

/* the decision for window w at the current bits (RCTC_BW_*); KEEP for an empty window */
int rctc_bw_decide(const rctc_bw_window *w, uint64_t low, uint64_t high, int bits, int min_bits, int max_bits);

/* apply decision `action` to n qw-byte values q (1, 2 or 4 bytes, holding max_bits) and to
   *bits / *exp, in place */
void rctc_bw_rescale(int action, size_t n, void *q, int qw, int *bits, int *exp);

/* one controller step for one parameter: decide, rescale, empty the window; the decision */
int rctc_bw_adjust(rctc_bw_window *w, uint64_t low, uint64_t high, int min_bits, int max_bits, size_t n, void *q,
                   int qw, int *bits, int *exp);

#ifdef __cplusplus
}
#endif
#endif /* RCTC_BITWIDTH_H */
