/*
 * rctc_update.h - the fused integer SGD update of rct mode (kernels/sgd_update.c).
 *
 * The numpy kernel (runtime/kernels/int_update.py, FusedIntUpdate without weight decay) forms
 * u = acc * scale in float64, scale = -lr * alpha * 2^(ea + eb - e), and q' = clip(q + SR(u)).
 * Here the host writes scale exactly as m * 2^k (m an integer, the float64's mantissa), and the
 * kernel computes the same bits with integers only: u = p * 2^k' with p * 2^(k'-k) = float64(acc) * m
 * as float64 forms it (acc rounded to 53 bits, then the product rounded once, half to even; exact
 * while |acc m| < 2^53),
 *   stochastic: floor(u) + [U < frac(u) * 2^24], U = rand >> 8 (numpy's stochastic_floor),
 *   nearest:    round half to even (np.rint), rand == NULL,
 * then clip to +-(2^(bits-1) - 1). stats (NULL: not wanted) receives the bitwidth controller's
 * statistics (rctc/bitwidth_rule.py, rctc_bitwidth.h): stats[0] = A = sum |acc_i|, stats[1] =
 * S = how many outputs are +-qmax. A shift past 53 bits (k < -53, |u| < 1/2: BatchNorm's gamma /
 * beta updates) follows numpy's float64 exactly, including its rounding of frac(u) = 1 - |u| to
 * the 2^-53 grid for a negative u. Returns RCTC_IQ_OK, or RCTC_IQ_EDOMAIN where numpy's float64
 * arithmetic would round otherwise (a subnormal u: k < -1074), m * 2^k is no float64 scale
 * (|m| >= 2^53), or A reaches 2^64 - the caller must then not use this kernel; out and stats
 * are unspecified.
 */
#ifndef RCTC_UPDATE_H
#define RCTC_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* q and out: qw-byte signed integers (1, 2 or 4); out may alias q; stats: 2 words or NULL */
int rctc_sgd_update_fused(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                          const uint32_t *rand, void *out, uint64_t *stats);

/*
 * Its variants (the entry point above takes the fastest whose range the operands are in; the
 * same bits everywhere). _portable: the specification, every operand (kernels/sgd_update.c).
 * The fast path (kernels/sgd_fast.h: one shift 1..53 for the tensor, every product exact below
 * 2^53, int8 / int16 / int32 storage) returns RCTC_SGD_NOT_FAST, writing nothing, for operands
 * outside its range: _fast_portable (scalar, kernels/sgd_update_fast.c) and, on x86-64,
 * _fast_avx2 / _fast_avx512 (kernels/x86/sgd_update_avx2.c, sgd_update_avx512.c; |m| < 2^31 too;
 * only on a CPU with AVX2, resp. the avx512vnni level of dispatch.c).
 */
#define RCTC_SGD_NOT_FAST 1
int rctc_sgd_update_fused_portable(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                   const uint32_t *rand, void *out, uint64_t *stats);
int rctc_sgd_update_fast_portable(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                  const uint32_t *rand, void *out, uint64_t *stats);
#if defined(__x86_64__) || defined(_M_X64)
int rctc_sgd_update_fast_avx2(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                              const uint32_t *rand, void *out, uint64_t *stats);
int rctc_sgd_update_fast_avx512(size_t n, const void *q, int qw, const int64_t *acc, int64_t m, int k, int bits,
                                const uint32_t *rand, void *out, uint64_t *stats);
#endif

/*
 * rct AdamW on integer state (kernels/adamw_update.c; runtime/intref/adamw.py, bit for bit): q
 * (qw bytes) moves by the stochastically rounded step; mq / vq (int32) become mq_out / vq_out
 * (no aliasing), *me / *ve / *t are updated in place; gq the int64 gradient at exponent ge; c the
 * ten compile-time constants (b1, b2, c1, f1, c2, f2, w, fw, em, ee); lr = lr_m 2^lr_k (lr_m odd);
 * the words (stochastic != 0) come from the stream of (seed, step, node), draws 0 / 1 / 2.
 * stats (or NULL): A = sum |u| (2^-28 grid), S = clipped count. RCTC_IQ_EDOMAIN when A >= 2^64.
 */
int rctc_adamw_update(size_t n, const void *q, int qw, int e, int bits, const int64_t *gq, int ge,
                      const int32_t *mq, const int32_t *vq, int32_t *me, int32_t *ve, int64_t *t,
                      int64_t lr_m, int lr_k, const int64_t *c, uint64_t seed, uint32_t step, uint32_t node,
                      int stochastic, void *q_out, int32_t *mq_out, int32_t *vq_out, uint64_t *stats);

/*
 * rct momentum SGD on integer state (kernels/momentum_update.c; runtime/intref/momentum.py, bit
 * for bit): q (qw bytes) moves by the stochastically rounded step, the velocity vq (vw bytes, at
 * vbits) becomes vq_out (no aliasing), *ve is updated in place; gq the int64 gradient at exponent
 * ge; c the five compile-time constants (mu, ca, fa, w, fw); lr = lr_m 2^lr_k (lr_m odd); the
 * words (stochastic != 0) come from the stream of (seed, step, node), draws 0 / 1. stats (or
 * NULL): A = sum |u| (2^-28 grid), S = clipped count. RCTC_IQ_EDOMAIN when A >= 2^64 or an
 * operand is out of range, RCTC_IQ_EOVERFLOW when |gq| passes 2^62.
 */
int rctc_momentum_update(size_t n, const void *q, int qw, int e, int bits, const int64_t *gq, int ge,
                         const void *vq, int vw, int32_t *ve, int vbits, int64_t lr_m, int lr_k, const int64_t *c,
                         uint64_t seed, uint32_t step, uint32_t node, int stochastic, void *q_out, void *vq_out,
                         uint64_t *stats);

#ifdef __cplusplus
}
#endif
#endif /* RCTC_UPDATE_H */
