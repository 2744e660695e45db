/*
 * rctc_kernels.h - public signatures of rctc's C kernel library (portable C99).
 *
 * Number format (DESIGN.md, "The RCT numerics"): a tensor is a signed integer array q and one
 * exponent e per tensor, value = q * 2^e. Activations and errors are int8, parameters int8 or
 * int16, products accumulate exactly in int32 (or int64 where K * |a|max * |b|max needs it).
 *
 * Every entry point here is dispatched at run time (dispatch.c) to the fastest variant the CPU
 * supports; each variant is bit-identical to the portable one, which is also callable directly
 * (the *_portable names) so tests can compare them. Kernels never allocate and make no OS
 * call; the only threading is in parallel.c, compiled in only with RCTC_THREADS defined.
 *
 * Invariants callers rely on:
 *  - s32 accumulation is modular (two's complement wrap-around) in every variant, so variants
 *    agree even outside the caller's bound; the caller picks s64 where the bound needs it.
 *  - results do not depend on nthreads (every output element is one exact integer sum).
 */
#ifndef RCTC_KERNELS_H
#define RCTC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features and dispatch (dispatch.c) ---------------------------------------------- */

#define RCTC_ISA_PORTABLE 0
#define RCTC_ISA_AVX2 1
#define RCTC_ISA_AVX512VNNI 2

/* Bit set of the SIMD variants this build has and this CPU (and OS) runs (1 << RCTC_ISA_*),
 * capped by the environment variable RCTC_ISA=portable|avx2|avx512vnni when set (dispatch.c). */
int rctc_isa_available(void);
/* fn(ctx, begin, end) once on every chunk of [0, n) (chunk boundaries fixed by n, align and
 * nthreads), on up to nthreads threads including the caller (parallel.c; on the caller alone
 * without RCTC_THREADS). Generated steps split a node's images with it. */
void rctc_parallel_for(int n, int align, int nthreads, void (*fn)(void *ctx, int begin, int end), void *ctx);
/* Whether this CPU has AVX-512 DQ (vpmullq; cpuid leaf 7 EBX bit 17): the BatchNorm loops' AVX-512
 * variant needs it beside the avx512vnni level of rctc_isa_available (0 off x86). */
int rctc_cpu_has_avx512dq(void);
/* The variant the dispatched entry points use ("portable", "avx2", "avx512vnni"). */
const char *rctc_isa_name(void);

/* ---- GEMM (gemm.c, x86/gemm_avx2.c, x86/gemm_avx512.c) ---------------------------------------------------
 *
 * C(m, n) = [C(m, n) +] sum_k A(m, k) * B(k, n) for 0 <= m < M, 0 <= n < N, with strided
 * operands: A(m, k) = A[m * a_rs + k * a_cs], B(k, n) = B[k * b_rs + n * b_cs],
 * C(m, n) = C[m * c_rs + n * c_cs]. accumulate != 0 adds to C, else overwrites it.
 * The strides give every layout a training step needs without a copy by the caller:
 *   forward        Y = X W^T : A = X (K, 1),    B = W as (k, n) -> (1, K)
 *   data gradient  dX = dY W : A = dY (N, 1),   B = W (K, 1)
 *   weight grad.   dW = dY^T X: A = dY^T (1, N), B = X (K, 1)
 * nthreads <= 1 runs on the calling thread. */
#define RCTC_GEMM_ARGS(TA, TB, TC)                                                              \
    int M, int N, int K, const TA *A, ptrdiff_t a_rs, ptrdiff_t a_cs, const TB *B, ptrdiff_t b_rs, \
        ptrdiff_t b_cs, TC *C, ptrdiff_t c_rs, ptrdiff_t c_cs, int accumulate, int nthreads

void rctc_gemm_s8s8s32(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t));
void rctc_gemm_s8s8s64(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t));
void rctc_gemm_s16s8s32(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t));
void rctc_gemm_s16s8s64(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t));
void rctc_gemm_s8s16s32(RCTC_GEMM_ARGS(int8_t, int16_t, int32_t));
void rctc_gemm_s8s16s64(RCTC_GEMM_ARGS(int8_t, int16_t, int64_t));

void rctc_gemm_s8s8s32_portable(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t));
void rctc_gemm_s8s8s64_portable(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t));
void rctc_gemm_s16s8s32_portable(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t));
void rctc_gemm_s16s8s64_portable(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t));

#if defined(__ARM_FEATURE_DSP)
/* arm/gemm_dsp.c: SMLAD / SMLALD dot products (the same bits; other layouts call the portable) */
void rctc_gemm_s8s8s32_dsp(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t));
void rctc_gemm_s8s8s64_dsp(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t));
void rctc_gemm_s16s8s32_dsp(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t));
void rctc_gemm_s16s8s64_dsp(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t));
#endif

#if defined(__x86_64__) || defined(_M_X64)
void rctc_gemm_s8s8s32_avx2(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t));
void rctc_gemm_s8s8s64_avx2(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t));
void rctc_gemm_s16s8s32_avx2(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t));
void rctc_gemm_s16s8s64_avx2(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t));
void rctc_gemm_s8s8s32_avx512vnni(RCTC_GEMM_ARGS(int8_t, int8_t, int32_t));
void rctc_gemm_s8s8s64_avx512vnni(RCTC_GEMM_ARGS(int8_t, int8_t, int64_t));
void rctc_gemm_s16s8s32_avx512vnni(RCTC_GEMM_ARGS(int16_t, int8_t, int32_t));
void rctc_gemm_s16s8s64_avx512vnni(RCTC_GEMM_ARGS(int16_t, int8_t, int64_t));
#endif

/* ---- requantise (absmax.c, requant.c, bias_add.c) -----------------------------------------
 *
 * An accumulator acc * 2^e goes to bits-bit integers (2 <= bits <= 8, int8 storage) as
 *   s = rctc_requant_shift(max|acc|, bits)   (smallest s >= 0 with max|acc| <= qmax * 2^s)
 *   q = clip((acc + r) >> s, -qmax, qmax),   qmax = 2^(bits-1) - 1, exponent e + s,
 * with r = 2^(s-1) (nearest, round half up; rand == NULL) or, for stochastic rounding,
 * r = the top s bits of the uint32 word rand[i] (rand[i] >> (32 - s)) when s <= 32, else
 * rand[i] << (s - 32). s = 0 copies. >> is an arithmetic (floor) shift; the sum never overflows
 * (it is formed as (acc >> s) + (((acc & (2^s - 1)) + r) >> s)). Requires 0 <= s <= 62.
 * A bias at the accumulator's exponent is added first (bias_add), before the max is taken. */
uint32_t rctc_absmax_s32(size_t n, const int32_t *x);
uint64_t rctc_absmax_s64(size_t n, const int64_t *x);
/* max |p_i| of n elements of width w bytes (int8 on AVX2 where the CPU has it; the same value) */
uint64_t rctc_iq_absmax_w(const void *p, int w, size_t n);
int rctc_requant_shift(uint64_t absmax, int bits);
void rctc_requant_s32_s8(size_t n, const int32_t *acc, int shift, int bits, const uint32_t *rand, int8_t *out);
void rctc_requant_s64_s8(size_t n, const int64_t *acc, int shift, int bits, const uint32_t *rand, int8_t *out);
/* acc[(o * channels + c) * inner + i] += bias[c] (modular for s32). */
void rctc_bias_add_s32(size_t outer, size_t channels, size_t inner, int32_t *acc, const int32_t *bias);
void rctc_bias_add_s64(size_t outer, size_t channels, size_t inner, int64_t *acc, const int64_t *bias);

/* ---- im2col / col2im for NCHW 2-D convolutions (im2col.c, col2im.c) -----------------------
 *
 * One image and one group: x points at the group's first channel (c channels of h x w).
 * Column row r = (ci * kh + i) * kw + j, column p = oy * ow + ox:
 *   cols[r * ld + p] = x[ci][oy * stride_h - pad_t + i * dil_h][ox * stride_w - pad_l + j * dil_w]
 * (0 outside the image); ld >= oh * ow lets the caller put several images side by side.
 * col2im is the adjoint: dx (c x h x w) is overwritten with the sum of every column entry
 * that reads it. A convolution is then a GEMM per (image, group):
 *   forward       Y[n,g] (M/G x P)   = W_g (M/G x C/G*kh*kw) cols
 *   weight grad   dW_g               += dY[n,g] cols^T     (accumulate over images)
 *   data grad     dcols              = W_g^T dY[n,g];  dx[n,g] = col2im(dcols) */
typedef struct rctc_conv2d {
    int c, h, w;             /* channels of one group, input height, width */
    int kh, kw;              /* kernel */
    int stride_h, stride_w;
    int pad_t, pad_l;        /* begin pads (end pads are implied by oh, ow) */
    int dil_h, dil_w;
    int oh, ow;              /* output height, width */
} rctc_conv2d;

void rctc_im2col_s8(const rctc_conv2d *g, const int8_t *x, int8_t *cols, ptrdiff_t ld);
void rctc_col2im_s32(const rctc_conv2d *g, const int32_t *cols, ptrdiff_t ld, int32_t *dx);
void rctc_col2im_s64(const rctc_conv2d *g, const int64_t *cols, ptrdiff_t ld, int64_t *dx);
/* the same sums added to dx (not zeroed first): a band of output rows at a time, with
 * g->pad_t lowered by the band's first row times stride_h and g->oh its rows */
void rctc_col2im_s32_add(const rctc_conv2d *g, const int32_t *cols, ptrdiff_t ld, int32_t *dx);
void rctc_col2im_s64_add(const rctc_conv2d *g, const int64_t *cols, ptrdiff_t ld, int64_t *dx);

/* ---- depthwise convolutions (depthwise.c) --------------------------------------------------
 * One image, group == channels (g->c channels, filter c is w[c][kh][kw]), no columns: exact
 * sums (s32 modulo 2^32, as the GEMMs). y (c x oh x ow) and dx (c x h x w) are overwritten;
 * dw (c x kh x kw) is overwritten, or added to with accumulate != 0 (sum over images).
 * work (8-byte aligned; used at stride 1 for a padded grid and its sums): with H = max(oh, h),
 * W = max(ow, w), Wp = W + (kw - 1) * dil_w, Hp = H + (kh - 1) * dil_h, sizeof(TC) * H * Wp +
 * Hp * Wp bytes. */
/* im2col's stride-2 row gather dst[i] = src[2 i] (reads src[0 .. 2 (n - 1)] only): the portable
 * loop and its AVX2 variant (x86/im2col_avx2.c), the same bytes */
void rctc_gather_s8_s2_portable(size_t n, const int8_t *src, int8_t *dst);
#if defined(__x86_64__) || defined(_M_X64)
void rctc_gather_s8_s2_avx2(size_t n, const int8_t *src, int8_t *dst);
#endif
#define RCTC_DWCONV_DECL(SUF, TW, TC)                                                              \
    void rctc_dwconv_##SUF(const rctc_conv2d *g, const int8_t *x, const TW *w, void *work, TC *y); \
    void rctc_dwconv_grad_input_##SUF(const rctc_conv2d *g, const int8_t *dy, const TW *w, void *work, TC *dx);
RCTC_DWCONV_DECL(s8s32, int8_t, int32_t)
RCTC_DWCONV_DECL(s8s64, int8_t, int64_t)
RCTC_DWCONV_DECL(s16s32, int16_t, int32_t)
RCTC_DWCONV_DECL(s16s64, int16_t, int64_t)
void rctc_dwconv_grad_weight_s64(const rctc_conv2d *g, const int8_t *dy, const int8_t *x, int64_t *dw,
                                 int accumulate);

#ifdef __cplusplus
}
#endif
#endif /* RCTC_KERNELS_H */
