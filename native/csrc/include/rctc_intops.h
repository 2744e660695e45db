/*
 * rctc_intops.h - C twins of the integer reference algorithms (rctc.runtime.intref), portable C99.
 *
 * Every function here computes exactly (bit for bit) what the intref numpy function of the same
 * name computes; docs/numerics.md and the intref docstrings state the formulas and roundings.
 * Number format: a tensor is (q, e), value q * 2^e. Conventions of this header:
 *  - integer inputs are `const void *` with an element width in bytes `w` (1, 2, 4 or 8: int8,
 *    int16, int32, int64), so a kernel reads whatever storage the graph holds;
 *  - a result rounded to `bits` (2..32) is written in the storage of that width: int8 for
 *    bits <= 8, int16 for <= 16, int32 else (rctc_iq_width), and its exponent to *e_out;
 *  - `rand` is NULL for nearest rounding, else one uint32 word per output element (stochastic);
 *  - `work` is caller-provided int64 scratch of the stated size: no kernel allocates, makes an
 *    OS call or uses floating point;
 *  - float attributes arrive as integers prepared once at compile time by intref's own
 *    fixed_point / exact_ratio (an exact ratio num / 2^log2den);
 *  - functions returning int return RCTC_IQ_OK, or RCTC_IQ_EOVERFLOW / RCTC_IQ_EDOMAIN where
 *    the intref function raises OverflowError / ValueError (outputs are then unspecified).
 * Arithmetic right shifts are floors and divisions are floor divisions, as numpy's.
 */
#ifndef RCTC_INTOPS_H
#define RCTC_INTOPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RCTC_IQ_OK 0
#define RCTC_IQ_EOVERFLOW (-1)
#define RCTC_IQ_EDOMAIN (-2)
#define RCTC_IQ_MAXDIM 8

/* ---- 128-bit integers (iq_i128.c): portable two's complement, used for per-group scalars ---- */
typedef struct rctc_i128 {
    uint64_t lo;
    uint64_t hi; /* two's complement high word */
} rctc_i128;

rctc_i128 rctc_i128_from_i64(int64_t v);
rctc_i128 rctc_i128_add(rctc_i128 a, rctc_i128 b);
rctc_i128 rctc_i128_neg(rctc_i128 a);
rctc_i128 rctc_i128_mul64(int64_t a, int64_t b);          /* exact signed 64 x 64 -> 128 */
rctc_i128 rctc_i128_mul_u64(rctc_i128 a, uint64_t b);     /* a * b modulo 2^128 */
rctc_i128 rctc_i128_shl(rctc_i128 a, int k);              /* a * 2^k, 0 <= k < 128 (caller bounds it) */
rctc_i128 rctc_i128_sar(rctc_i128 a, int k);              /* floor(a / 2^k), 0 <= k < 128 */
rctc_i128 rctc_i128_rshift_round(rctc_i128 a, int s);     /* s <= 0: a << -s; else floor((a + 2^(s-1)) / 2^s) */
rctc_i128 rctc_i128_divfloor(rctc_i128 a, uint64_t d);    /* floor(a / d), d > 0 */
int rctc_i128_cmp(rctc_i128 a, rctc_i128 b);              /* -1, 0, 1 */
int rctc_i128_bitlen(rctc_i128 a);                        /* bit length of |a| (Python int.bit_length) */
int rctc_i128_is_neg(rctc_i128 a);
/* test entry points over (hi, lo) pairs */
void rctc_i128_test_mul(int64_t a, int64_t b, uint64_t *hi, uint64_t *lo);
void rctc_i128_test_divfloor(uint64_t hi, uint64_t lo, uint64_t d, uint64_t *qhi, uint64_t *qlo);
void rctc_i128_test_rshift_round(uint64_t hi, uint64_t lo, int s, uint64_t *rhi, uint64_t *rlo);
int rctc_i128_test_bitlen(uint64_t hi, uint64_t lo);

/* ---- core (iq_core.c, iq_requant.c, iq_align.c, iq_fixed.c) ----------------------------------- */
int rctc_iq_width(int bits);                              /* storage bytes of a bits-bit tensor */
int64_t rctc_iq_floordiv(int64_t a, int64_t b);           /* floor(a / b), b != 0 */
int64_t rctc_iq_sar(int64_t x, int s);                    /* floor(x / 2^s), 0 <= s <= 63 */
uint64_t rctc_iq_absmax(size_t n, const int64_t *x);
/* its variants (the dispatched one above picks AVX2 where the CPU has it; the same result) */
uint64_t rctc_iq_absmax_portable(size_t n, const int64_t *x);
#if defined(__x86_64__) || defined(_M_X64)
uint64_t rctc_iq_absmax_avx2(size_t n, const int64_t *x);
#endif
int rctc_iq_requant_shift(uint64_t m, int bits, int stochastic);
/* intref.core.shift_round on int64 x (|x| <= 2^62 unless s == 0), s >= 0 */
int rctc_iq_shift_round(size_t n, const int64_t *x, int s, const uint32_t *rand, int64_t *out);
/* intref.core.shift: x * 2^k as int64 (exact left shift, or shift_round by -k) */
int rctc_iq_shift(size_t n, const void *x, int w, int k, const uint32_t *rand, int64_t *out);
/* intref.core.requantize(acc, e_acc, bits, rand=rand) (no bias): out in rctc_iq_width(bits) storage */
int rctc_iq_requantize(size_t n, const int64_t *acc, int e_acc, int bits, const uint32_t *rand, void *out,
                       int *e_out);
/* the rounding of rctc_iq_requantize at a shift s already chosen (0 copies, > 62 gives 0): n
 * values of acc into out (w bytes an element), word rand[i] for acc[i] (NULL: nearest) */
void rctc_iq_round_store(size_t n, const int64_t *acc, int s, const uint32_t *rand, void *out, int w);
/* rctc_iq_requantize of an int32 accumulator (the same bits, no widened copy; iq_requant_s32.c) */
int rctc_iq_requantize_s32(size_t n, const int32_t *acc, int e_acc, int bits, const uint32_t *rand, void *out,
                           int *e_out);
/* the same on up to nthreads threads (the same bits for every count) */
int rctc_iq_requantize_s32_mt(int nthreads, size_t n, const int32_t *acc, int e_acc, int bits, const uint32_t *rand,
                              void *out, int *e_out);
/* rctc_iq_requantize_s32_mt with stochastic rounding by words i of the stream (seed, step, node_id)
 * for element i (rctc_random_words(seed, step, node_id, 0, n)), drawn block by block inside the
 * kernel: the same bits as rctc_iq_requantize_s32_mt given those words, without their n-word buffer */
int rctc_iq_requantize_s32_words_mt(int nthreads, size_t n, const int32_t *acc, int e_acc, int bits, uint64_t seed,
                                    uint32_t step, uint32_t node_id, void *out, int *e_out);
/* rctc_iq_requantize_s32_mt for a caller that already knows amax = max |acc| (the same bits) */
int rctc_iq_requantize_s32_max_mt(int nthreads, size_t n, const int32_t *acc, uint32_t amax, int e_acc, int bits,
                                  const uint32_t *rand, void *out, int *e_out);
/* its int8 rounding, out = floor((acc + r) / 2^s) for 1 <= s <= 31 with every result in [-128, 127],
 * and the int32 max magnitude: the AVX2 variants (x86/iq_requant_s32_avx2.c) give the same results */
void rctc_iq_round_s32_s8_portable(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out);
#if defined(__x86_64__) || defined(_M_X64)
void rctc_iq_round_s32_s8_avx2(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out);
uint32_t rctc_absmax_s32_avx2(size_t n, const int32_t *x);
void rctc_iq_round_s32_s8_avx512(size_t n, const int32_t *acc, int s, const uint32_t *rand, int8_t *out);
uint32_t rctc_absmax_s32_avx512(size_t n, const int32_t *x); /* x86/iq_round_avx512.c */
/* max |x_i| of int8 values (iq_absmax_avx2.c): iq_absmax_w(x, 1, n)'s value */
uint32_t rctc_absmax_s8_avx2(size_t n, const int8_t *x);
#endif
/* requantize's rounding loop to int8: out = (acc + r) >> s for 1 <= s <= 62, |acc| <= 2^62, every
 * result in [-128, 127] (the dispatched requantize uses the AVX-512 variant at the avx512vnni level,
 * else the AVX2 one where it runs) */
void rctc_iq_round_s8_portable(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out);
#if defined(__x86_64__) || defined(_M_X64)
void rctc_iq_round_s8_avx2(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out);
void rctc_iq_round_s8_avx512(size_t n, const int64_t *acc, int s, const uint32_t *rand, int8_t *out);
#endif
/* intref.core.requantize with a bias broadcast along axis 1 of (outer, channels, inner): the bias
 * (bias_w wide) is shifted to e_acc (exact left shift or nearest) and added; acc is overwritten
 * with acc + bias. */
int rctc_iq_requantize_bias(size_t outer, size_t channels, size_t inner, int64_t *acc, int e_acc,
                            const void *bias, int bias_w, int bias_exp, int bits, const uint32_t *rand,
                            void *out, int *e_out);
/* intref.core.align's common exponent for k tensors of max magnitudes absmax[i] at exps[i] */
int rctc_iq_align_exp(int k, const uint64_t *absmax, const int *exps, int headroom);
uint64_t rctc_iq_recip_fixed(uint64_t d, int frac_bits); /* round(2^frac / d), d > 0, frac <= 62 */
uint64_t rctc_iq_isqrt(uint64_t v);                        /* floor(sqrt(v)) */
/* intref.core.rsqrt_fixed(v) for 0 < v < 2^126: m (<= 2^32), f */
int rctc_iq_rsqrt_fixed(rctc_i128 v, uint64_t *m, int *f);

/* ---- pointwise (iq_relu.c, iq_clip.c, iq_leaky_relu.c, iq_hardsigmoid.c, iq_hardswish.c) ---- */
void rctc_iq_relu(size_t n, const void *q, int w, void *out);
void rctc_iq_relu_backward(size_t n, const void *q, int qw, const void *dq, int dw, void *dx);
/* the int8 variants rctc_iq_relu / _backward dispatch to (x86/iq_relu_avx2.c; identical bits) */
void rctc_iq_relu_s8_portable(size_t n, const int8_t *x, int8_t *y);
void rctc_iq_relu_backward_s8_portable(size_t n, const int8_t *x, const int8_t *d, int8_t *y);
/* bounds as exact ratios lo_num / 2^lo_log2den (has_lo = 0: no bound); out keeps q's width */
void rctc_iq_clip_bounds(int e, int has_lo, int64_t lo_num, int lo_log2den, int has_hi, int64_t hi_num,
                         int hi_log2den, int64_t *lq, int64_t *hq);
void rctc_iq_clip(size_t n, const void *q, int w, int e, int has_lo, int64_t lo_num, int lo_log2den,
                  int has_hi, int64_t hi_num, int hi_log2den, void *out);
void rctc_iq_clip_backward(size_t n, const void *q, int qw, int e, int has_lo, int64_t lo_num, int lo_log2den,
                           int has_hi, int64_t hi_num, int hi_log2den, const void *dq, int dw, void *dx);
/* the four above on up to nthreads threads for the host step (iq_pointwise_mt.c; the same bytes) */
void rctc_iq_relu_mt(int nthreads, size_t n, const void *q, int w, void *out);
void rctc_iq_relu_backward_mt(int nthreads, size_t n, const void *q, int qw, const void *dq, int dw, void *dx);
void rctc_iq_clip_mt(int nthreads, size_t n, const void *q, int w, int e, int has_lo, int64_t lo_num, int lo_log2den,
                     int has_hi, int64_t hi_num, int hi_log2den, void *out);
void rctc_iq_clip_backward_mt(int nthreads, size_t n, const void *q, int qw, int e, int has_lo, int64_t lo_num,
                              int lo_log2den, int has_hi, int64_t hi_num, int hi_log2den, const void *dq, int dw,
                              void *dx);
/* alpha_q = fixed_point(alpha, 24); work: n int64 */
int rctc_iq_leaky_relu(size_t n, const void *q, int w, int e, int64_t alpha_q, int bits, int64_t *work,
                       void *out, int *e_out);
int rctc_iq_leaky_relu_backward(size_t n, const void *q, int qw, const void *dq, int dw, int de, int64_t alpha_q,
                                int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* alpha = an / 2^alog2, beta = bn / 2^blog2 (exact float32 ratios); work: n int64 */
int rctc_iq_hardsigmoid(size_t n, const void *q, int w, int e, int64_t an, int alog2, int64_t bn, int blog2,
                        int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_hardsigmoid_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de,
                                 int64_t an, int alog2, int64_t bn, int blog2, int bits, const uint32_t *rand,
                                 int64_t *work, void *dx, int *e_out);
int rctc_iq_hardswish(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_hardswish_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out);

/* ---- arithmetic (iq_add.c, iq_mul.c, iq_reduce_to.c, iq_concat.c) ----------------------------
 * Broadcasting: the output has `ndim` dims of `shape`; an operand is read at element strides
 * (in elements, 0 along a broadcast axis). work: prod(shape) int64. */
int rctc_iq_add(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand, int64_t *work,
                void *out, int *e_out);
/* rctc_iq_add on up to nthreads threads (operands dense or repeated along leading axes, whose
 * aligned sums fit in int32, split into fixed parts): the same bits */
int rctc_iq_add_mt(int nthreads, int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea,
                   const void *b, int bw, const ptrdiff_t *bs, int eb, int subtract, int bits, const uint32_t *rand,
                   int64_t *work, void *out, int *e_out);
/* IntAdd's int8 sum v = (x << ka) +- (y << kb) as int32 (ka, kb >= 0, max|x| << ka + max|y| << kb < 2^31),
 * returning max |v|;
 * the AVX2 variant (x86/iq_add_avx2.c) gives the same v and max */
uint32_t rctc_iq_add_s8_s32_portable(size_t n, const int8_t *x, int ka, const int8_t *y, int kb, int subtract,
                                     int32_t *v);
#if defined(__x86_64__) || defined(_M_X64)
uint32_t rctc_iq_add_s8_s32_avx2(size_t n, const int8_t *x, int ka, const int8_t *y, int kb, int subtract,
                                 int32_t *v);
#endif
/* int32 values rounded at shift s (0: stored as they are) into width w, as rctc_iq_requantize rounds
 * them at that shift (iq_requant_s32.c; rand: one word an element, or NULL for nearest) */
void rctc_iq_round_s32_range(size_t n, const int32_t *acc, int s, const uint32_t *rand, int w, void *out);
/* rctc_iq_add in parts, for a caller that rounds a range of elements at a time: _exps aligns
 * (the shifts *ka, *kb of a and b to the exponent *ec, checked as rctc_iq_add), _range writes
 * the exact sums (or a - b) of output elements start .. start + count - 1 (C order) to dst;
 * rctc_iq_add = both over every element, then rctc_iq_requantize at *ec */
int rctc_iq_add_exps(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                     int bw, const ptrdiff_t *bs, int eb, int *ka, int *kb, int *ec);
void rctc_iq_add_range(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ka,
                       const void *b, int bw, const ptrdiff_t *bs, int kb, int subtract, size_t start, size_t count,
                       int64_t *dst);
int rctc_iq_mul(int ndim, const int *shape, const void *a, int aw, const ptrdiff_t *as, int ea, const void *b,
                int bw, const ptrdiff_t *bs, int eb, int bits, const uint32_t *rand, int64_t *work, void *out,
                int *e_out);
/* intref.arith reduce_to of sign * d (* m when m != NULL, read at m_strides) into an operand whose
 * elements are addressed by `red_strides` (C-contiguous strides of the operand, 0 on broadcast
 * axes); then one rounding. work: n_red int64 (the operand's size). Add / Sub / Mul backward are
 * one call per operand. */
/* the exact sum alone (intref.arith.reduce_to), into work */
void rctc_iq_reduce_sum(int ndim, const int *shape, const void *d, int dw, int negate, const void *m, int mw,
                        const ptrdiff_t *m_strides, const ptrdiff_t *red_strides, size_t n_red, int64_t *work);
int rctc_iq_reduce_to(int ndim, const int *shape, const void *d, int dw, int negate, const void *m, int mw,
                      const ptrdiff_t *m_strides, const ptrdiff_t *red_strides, size_t n_red, int de, int bits,
                      const uint32_t *rand, int64_t *work, void *out, int *e_out);
/* k inputs of (outer, sizes[i], inner) concatenated along the middle axis; work: outer*sum*inner */
int rctc_iq_concat(int k, const void *const *xs, const int *ws, const int *exps, size_t outer, const int *sizes,
                   size_t inner, int bits, int64_t *work, void *out, int *e_out);
void rctc_iq_concat_backward(const void *dq, int dw, size_t outer, int k, const int *sizes, size_t inner,
                             void *const *dxs);

/* ---- pools (iq_maxpool.c, iq_avgpool.c, iq_reduce_mean.c) ------------------------------------
 * 2-D pools on (N, C, H, W) with kernel kh, kw, strides sh, sw, ONNX pads (t, l, b, r). */
typedef struct rctc_iq_pool {
    int n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, oh, ow;
} rctc_iq_pool;
void rctc_iq_maxpool2d(const rctc_iq_pool *p, const void *q, int w, void *out, int nthreads);
void rctc_iq_maxpool2d_portable(const rctc_iq_pool *p, const void *q, int w, void *out, int nthreads);
void rctc_iq_maxpool2x2_row_s8_portable(int ow, const int8_t *r0, const int8_t *r1, int8_t *y);
#if defined(__x86_64__) || defined(_M_X64)
void rctc_iq_relu_s8_avx2(size_t n, const int8_t *x, int8_t *y);
void rctc_iq_relu_backward_s8_avx2(size_t n, const int8_t *x, const int8_t *d, int8_t *y);
#endif
/* work: n*c*h*w int64 */
int rctc_iq_maxpool2d_backward(const rctc_iq_pool *p, const void *q, int qw, const void *dq, int dw, int de,
                               int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* work: n*c*oh*ow int64 */
int rctc_iq_avgpool2d(const rctc_iq_pool *p, const void *q, int w, int e, int include_pad, int bits,
                      int64_t *work, void *out, int *e_out);
/* work: n*c*h*w int64 */
int rctc_iq_avgpool2d_backward(const rctc_iq_pool *p, const void *dq, int dw, int de, int include_pad, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* mean over the middle axis of (outer, red, inner) (the reduced axes made contiguous by the
 * caller's view); work: outer*inner int64 */
int rctc_iq_reduce_mean(size_t outer, size_t red, size_t inner, const void *q, int w, int e, int bits,
                        int64_t *work, void *out, int *e_out);
/* dy of (outer, inner) broadcast over (outer, red, inner); work: outer*red*inner int64 */
int rctc_iq_reduce_mean_backward(size_t outer, size_t red, size_t inner, const void *dq, int dw, int de, int bits,
                                 const uint32_t *rand, int64_t *work, void *dx, int *e_out);

/* ---- normalisation (iq_norm_stats.c, iq_batchnorm.c, iq_batchnorm_backward.c,
 *      iq_batchnorm_inference.c, iq_layernorm.c, iq_layernorm_backward.c) ---------------------
 * eps = eps_num / 2^eps_log2 and mu = fixed_point(momentum, 16) come from intref at compile time. */
/* elements a streamed normalisation forms at a time (its work past the per-channel scalars) */
#define RCTC_IQ_NORM_CHUNK 256
/* (B, C, S) input; gamma, beta per channel; running mean / var (int16, C) updated into *_out.
 * work: 9 * C + RCTC_IQ_NORM_CHUNK int64 (the input is read in place) */
int rctc_iq_batchnorm_train(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                            const void *beta, int bw, int be, const int16_t *rmean, int rme, const int16_t *rvar,
                            int rve, int64_t eps_num, int eps_log2, int64_t mu, int bits, int64_t *work, void *out,
                            int *e_out, int16_t *rmean_out, int *rme_out, int16_t *rvar_out, int *rve_out);
/* the same on up to nthreads threads for the host step (iq_batchnorm_mt.c: SIMD loops or per-channel
 * tables; the same bits for every count); work: 10 C + 32 C wt int64, wt the output's width in bytes
 * (rctc.native.intops.batchnorm_train_mt_work) */
int rctc_iq_batchnorm_train_mt(int nthreads, int B, int C, int S, const void *q, int w, int e, const void *gamma,
                               int gw, int ge, const void *beta, int bw, int be, const int16_t *rmean, int rme,
                               const int16_t *rvar, int rve, int64_t eps_num, int eps_log2, int64_t mu, int bits,
                               int64_t *work, void *out, int *e_out, int16_t *rmean_out, int *rme_out,
                               int16_t *rvar_out, int *rve_out);
/* dgamma (C, at de - 16) and dbeta (C, at de) exact int64; work: RCTC_IQ_BN_PLAN_WORDS(C) + B*C*S
 * int64 (the plan, then the accumulator of every element) */
int rctc_iq_batchnorm_backward(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta);
/* the same on up to nthreads threads for the host step (iq_batchnorm_backward_mt.c: SIMD loops or tables;
 * the same bits for every count); work: B*C*S + 10 * C int64 (the first B*C*S written only when
 * a product of the accumulator and its multiplier may wrap) */
int rctc_iq_batchnorm_backward_mt(int nthreads, int B, int C, int S, const void *q, int w, int e, const void *gamma,
                                  int gw, int ge, const void *dq, int dw, int de, int64_t eps_num, int eps_log2,
                                  int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                                  int64_t *dbeta);
/* rctc_iq_batchnorm_backward in parts: the plan (RCTC_IQ_BN_PLAN_WORDS(C) int64: per-channel
 * scalars; dgamma, dbeta; the exponent offset *off of the accumulator, at de + ge - e + off, and
 * its exact max |acc| *amax; inner_out, when not NULL, B*C*S int64: each element's term before
 * its channel's multiplier plan[5 C + c]), then _acc: the accumulator of elements start .. start + count - 1
 * (B, C, S order) into acc[0 .. count), to be rounded at rctc_iq_requant_shift(*amax, bits,
 * rand != NULL) with rctc_iq_round_store (the whole kernel's bits, a range at a time) */
#define RCTC_IQ_BN_PLAN_WORDS(C) (9 * (size_t)(C))
int rctc_iq_batchnorm_backward_plan(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw,
                                    const void *dq, int dw, int64_t eps_num, int eps_log2, int64_t *plan, int *off,
                                    uint64_t *amax, int64_t *dgamma, int64_t *dbeta, int64_t *inner_out);
void rctc_iq_batchnorm_backward_acc(int B, int C, int S, const void *q, int w, const void *dq, int dw,
                                    const int64_t *plan, size_t start, size_t count, int64_t *acc);
/* work: B*C*S + 4 * C int64 */
int rctc_iq_batchnorm_inference(int B, int C, int S, const void *q, int w, int e, const void *gamma, int gw,
                                int ge, const void *beta, int bw, int be, const void *rmean, int rmw, int rme,
                                const void *rvar, int rvw, int rve, int64_t eps_num, int eps_log2, int bits,
                                int64_t *work, void *out, int *e_out);
/* rows (G, N); gamma, beta of N. work: 2 * G*N + 4 * G int64 */
int rctc_iq_layernorm(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge, const void *beta,
                      int bw, int be, int64_t eps_num, int eps_log2, int bits, int64_t *work, void *out,
                      int *e_out);
/* rctc_iq_layernorm on up to nthreads threads (rows split into parts): the same bits */
int rctc_iq_layernorm_mt(int nthreads, int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                         const void *beta, int bw, int be, int64_t eps_num, int eps_log2, int bits, int64_t *work,
                         void *out, int *e_out);
/* dgamma (N, at de - 16), dbeta (N, at de). work: 5 * G*N + 8 * G int64 */
int rctc_iq_layernorm_backward(int G, int N, const void *q, int w, int e, const void *gamma, int gw, int ge,
                               const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                               const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                               int64_t *dbeta);
/* rctc_iq_layernorm_backward on up to nthreads threads (rows, and dgamma / dbeta's columns, split
 * into parts): the same bits */
int rctc_iq_layernorm_backward_mt(int nthreads, int G, int N, const void *q, int w, int e, const void *gamma, int gw,
                                  int ge, const void *dq, int dw, int de, int64_t eps_num, int eps_log2, int bits,
                                  const uint32_t *rand, int64_t *work, void *dx, int *e_out, int64_t *dgamma,
                                  int64_t *dbeta);

/* ---- exponential family (iq_iexp.c, iq_ilog2.c, iq_exp.c, iq_softmax.c, iq_softmax_xent.c,
 *      iq_sigmoid.c, iq_tanh.c) -------------------------------------------------------------- */
int64_t rctc_iq_to_fixed1(int64_t x, int e, int frac);     /* intref.expo.to_fixed, one element */
int rctc_iq_to_fixed(size_t n, const void *q, int w, int e, int frac, int64_t *out);
int rctc_iq_iexp(size_t n, const int64_t *x, int64_t *out); /* EDOMAIN if some x > 0 */
int rctc_iq_ilog2(size_t n, const int64_t *v, int64_t *out); /* EDOMAIN if some v <= 0 */
int rctc_iq_exp(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_exp_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                         const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* softmax over the middle axis of (outer, len, inner); work: 2 * outer*len*inner int64 */
int rctc_iq_softmax(size_t outer, size_t len, size_t inner, const void *q, int w, int e, int bits, int64_t *work,
                    void *out, int *e_out);
int rctc_iq_softmax_backward(size_t outer, size_t len, size_t inner, const void *qy, int yw, int ey, const void *dq,
                             int dw, int de, int bits, const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* (B, C) logits, labels int64; loss at exponent -16. work: 2 * B*C int64 */
int rctc_iq_softmax_cross_entropy(int B, int C, const void *q, int w, int e, const int64_t *labels, int64_t *work,
                                  int64_t *loss, int *e_out);
int rctc_iq_softmax_cross_entropy_backward(int B, int C, const void *q, int w, int e, const int64_t *labels, int bits,
                                           const uint32_t *rand, int64_t *work, void *dx, int *e_out);
int rctc_iq_sigmoid(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_sigmoid_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                             const uint32_t *rand, int64_t *work, void *dx, int *e_out);
int rctc_iq_tanh(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_tanh_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                          const uint32_t *rand, int64_t *work, void *dx, int *e_out);

/* ---- erf / GELU (iq_erf.c, iq_gelu.c) ---------------------------------------------------------- */
void rctc_iq_ierf(size_t n, const int64_t *u, int64_t *out);
void rctc_iq_erf_as(size_t n, const int64_t *u, int64_t *out);
int rctc_iq_erf(size_t n, const void *q, int w, int e, int bits, int64_t *work, void *out, int *e_out);
int rctc_iq_erf_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                         const uint32_t *rand, int64_t *work, void *dx, int *e_out);
/* accurate = 0: I-BERT's i-erf ("ibert"), 1: A&S ("as") */
int rctc_iq_gelu(size_t n, const void *q, int w, int e, int bits, int accurate, int64_t *work, void *out,
                 int *e_out);
int rctc_iq_gelu_backward(size_t n, const void *q, int qw, int e, const void *dq, int dw, int de, int bits,
                          const uint32_t *rand, int64_t *work, void *dx, int *e_out);

#ifdef __cplusplus
}
#endif
#endif /* RCTC_INTOPS_H */
