/*
 * iq_norm.h - helpers shared by the normalisation kernels (iq_norm_stats.c); internal.
 */
#ifndef RCTC_IQ_NORM_H
#define RCTC_IQ_NORM_H

#include "internal.h"
#include "iq.h"

int64_t iq_norm_eps_term(int64_t eps_num, int eps_log2, int64_t n, int e);
int iq_norm_headroom(int bl_d, int bl_eps);
/* x rows (G, N) int64 -> xhat (G, N) and per group s1, d, m, f */
int iq_norm_stats(int G, int N, const int64_t *x, int e, int64_t eps_num, int eps_log2, int64_t *xhat, int64_t *s1,
                  int64_t *d, int64_t *m, int64_t *f);
/* the same per-group scalars of a (B, G, S) tensor read in place (group g is [:, g, :]), no xhat;
 * lo / hi (NULL: not wanted) receive each group's min / max of q */
int iq_norm_stats_bgs(int B, int G, int S, const void *q, int w, int e, int64_t eps_num, int eps_log2, int64_t *s1,
                      int64_t *d, int64_t *m, int64_t *f, int64_t *lo, int64_t *hi);
/* xhat of one element x of a group of N with sum a1 and multiplier mm at shift s = f - 16
 * (in 1 .. 62): round((N x - a1) mm 2^-s); fits int64 once N max|x| < 2^29 is checked */
static inline int64_t iq_norm_xhat(int64_t n, int64_t x, int64_t a1, int64_t mm, int s) {
    return iq_sar((n * x - a1) * mm + ((int64_t)1 << (s - 1)), s);
}
/* whether every xhat with |N x - a1| <= dmax (at most 2^30) lies in [-2^31, 2^31) and its product
 * (N x - a1) mm takes at most 62 bits: |mm| <= 2^32 and (dmax |mm| >> s) + 1 < 2^31 */
static inline int iq_norm_xhat_fits32(uint64_t dmax, int64_t mm, int s) {
    const uint64_t um = iq_abs(mm);
    return dmax <= ((uint64_t)1 << 30) && um <= ((uint64_t)1 << 32) && ((dmax * um) >> s) + 1 < ((uint64_t)1 << 31);
}
/* one group's scalars from its sums S1 = sum x, S2 = sum x^2: S1, D, (m, f) (xhat's shift is f - 16,
 * in 1 .. 62), or an RCTC_IQ_E* code; the caller has checked N max|x| < 2^29 */
int iq_norm_group_sums(int N, int64_t a1, int64_t a2, int e, int64_t eps_num, int eps_log2, int64_t *s1, int64_t *d,
                       int64_t *m, int64_t *f);
/* the eps terms at every headroom P (0 .. IQ_NORM_MAX_HEADROOM, iq_norm_headroom's range) of
 * groups of N at exponent e, for kernels with many groups (LayerNorm's rows) */
#define IQ_NORM_MAX_HEADROOM 30
typedef struct {
    int64_t at[IQ_NORM_MAX_HEADROOM + 1];
} iq_norm_eps_table;
void iq_norm_eps_table_init(iq_norm_eps_table *t, int64_t eps_num, int eps_log2, int N, int e);
/* parts of LayerNorm's G rows (T elements): one a thread, a single one below 8192 elements */
static inline int iq_norm_row_parts(int nthreads, int G, size_t T) {
    const int p = T < 8192u || nthreads < 2 ? 1 : nthreads < G ? nthreads : G;
    return p > RCTC_MAX_THREADS ? RCTC_MAX_THREADS : p;
}
/* the first of n items (rows, columns) in part p of parts */
static inline size_t iq_norm_part_at(size_t n, int parts, int p) { return n * (size_t)p / (size_t)parts; }
/* iq_norm_group_sums with the eps terms from t (the same D, m, f; S1 is a1) */
int iq_norm_group_sums_tab(int N, int64_t a1, int64_t a2, const iq_norm_eps_table *t, int64_t *d, int64_t *m,
                           int64_t *f);
/* The BatchNorm kernels' per-element loops on one run (iq_norm_loops.c; the AVX2 and AVX-512
 * variants in x86/iq_norm_loops_avx2.c and x86/iq_norm_loops_avx512.c, the same values):
 * sums: s1 = sum x, s2 = sum x^2; xhat_dot: xh = xhat(x), sg = sum dy xh, sb = sum dy (wrapping);
 * dx_x: acc = (dy << 16) - m1 - ((xh m2 + 2^15) >> 16) with xh = xhat(x) formed on the fly, returns
 * max |acc| (acc may be x or dy: in place); affine: acc = xhat(x) g + bias, returns max |acc|; scale: out = acc mult (wrapping); load: dst = elements
 * off .. off + n - 1 of p (w bytes each) widened (iq_ld_run). xhat_dot, dx_x and affine need
 * N max|x| < 2^29 and |s1| <= N max|x| (the kernels check the first before any loop runs), and dy
 * to fit 32 bits (it is widened from at most int32 storage). */
typedef void iq_norm_sums_fn(size_t n, const int64_t *x, int64_t *s1, int64_t *s2);
typedef void iq_norm_xhat_dot_fn(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                                 int64_t *xh, int64_t *sg, int64_t *sb);
typedef uint64_t iq_norm_dx_x_fn(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, const int64_t *dy,
                                 int64_t m1, int64_t m2, int64_t *acc);
typedef uint64_t iq_norm_affine_fn(size_t n, const int64_t *x, int N, int64_t s1, int64_t m, int sh, int64_t g,
                                   int64_t bias, int64_t *acc);
typedef void iq_norm_scale_fn(size_t n, const int64_t *acc, int64_t mult, int64_t *out);
typedef void iq_norm_load_fn(size_t n, const void *p, int w, size_t off, int64_t *dst);
/* sums_run: over elements off .. off + n - 1 of p (w bytes each, not widened first) s1 += sum x and
 * s2 += sum x^2 (wrapping), lo = min(lo, min x), hi = max(hi, max x) */
typedef void iq_norm_sums_run_fn(size_t n, const void *p, int w, size_t off, int64_t *s1, int64_t *s2, int64_t *lo,
                                 int64_t *hi);
/* xhat_dot_run / dx_x_run: xhat_dot (without xh) and dx_x over elements off .. off + n - 1 of the
 * stored runs x (w bytes each) and dy (dw bytes), read in place; dx_x_run stores acc unless it is
 * NULL (the max alone) */
typedef void iq_norm_xhat_dot_run_fn(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                     int64_t s1, int64_t m, int sh, int64_t *sg, int64_t *sb);
typedef uint64_t iq_norm_dx_x_run_fn(size_t n, const void *x, int w, const void *dy, int dw, size_t off, int N,
                                     int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2, int64_t *acc);
/* the end of an int8 sums_run vector loop over `done` elements: the lanes' extremes bl / bh (of
 * `lanes` each) into *lo / *hi, the biased byte sum (sum of x + 128) and the sum of squares into
 * *s1 / *s2 (wrapping) */
static inline void iq_norm_sums_run_close(const int8_t *bl, const int8_t *bh, int lanes, uint64_t biased,
                                          uint64_t squares, size_t done, int64_t *s1, int64_t *s2, int64_t *lo,
                                          int64_t *hi) {
    int64_t l = *lo, h = *hi;
    for (int k = 0; k < lanes; ++k) {
        l = bl[k] < l ? bl[k] : l;
        h = bh[k] > h ? bh[k] : h;
    }
    *s1 = (int64_t)((uint64_t)*s1 + biased - 128u * (uint64_t)done);
    *s2 = (int64_t)((uint64_t)*s2 + squares);
    *lo = l;
    *hi = h;
}
/* the loops of variant V, declared through their function types */
#define RCTC_NORM_LOOPS(V)                                                                                         \
    iq_norm_sums_fn rctc_norm_sums_##V;                                                                            \
    iq_norm_xhat_dot_fn rctc_norm_xhat_dot_##V;                                                                    \
    iq_norm_dx_x_fn rctc_norm_dx_x_##V;                                                                            \
    iq_norm_affine_fn rctc_norm_affine_##V;                                                                        \
    iq_norm_scale_fn rctc_norm_scale_##V;                                                                          \
    iq_norm_load_fn rctc_norm_load_##V;                                                                            \
    iq_norm_sums_run_fn rctc_norm_sums_run_##V;                                                                    \
    iq_norm_xhat_dot_run_fn rctc_norm_xhat_dot_run_##V;                                                            \
    iq_norm_dx_x_run_fn rctc_norm_dx_x_run_##V;
RCTC_NORM_LOOPS(portable)
#if defined(__x86_64__) || defined(_M_X64)
RCTC_NORM_LOOPS(avx2)
RCTC_NORM_LOOPS(avx512)
#endif
#undef RCTC_NORM_LOOPS
/* one variant of the loops the kernels call, behind one signature each (the int64 xhat_dot and dx_x
 * loops are reached through the _run loops; the int64 sums loop no longer is, only its tests call it) */
typedef struct {
    iq_norm_affine_fn *affine;
    iq_norm_scale_fn *scale;
    iq_norm_load_fn *load;
    iq_norm_sums_run_fn *sums_run;
    iq_norm_xhat_dot_run_fn *xhat_dot_run;
    iq_norm_dx_x_run_fn *dx_x_run;
    /* 1: the host step's BatchNorm kernels take int8 inputs through tables of each channel's values
     * (iq_batchnorm_mt.c: y per value; iq_batchnorm_backward_mt.c: xhat and dx's centring term per
     * value) rather than through affine / xhat_dot_run / dx_x_run: the portable and AVX2 variants,
     * where forming xhat takes several 64-bit products an element; 0 for AVX-512, whose vector
     * loops beat the tables (measured: native/README.md, "BatchNorm tables") */
    int xhat_tables;
} iq_norm_loops_t;
/* the _run loops through a variant's own int64 loops on blocks widened on the stack (the portable and
 * AVX2 _run loops, and the AVX-512 ones for widths other than int8 and for tails) */
void iq_norm_xhat_dot_blocks(iq_norm_load_fn *ld, iq_norm_xhat_dot_fn *fn, size_t n, const void *x, int w,
                             const void *dy, int dw, size_t off, int N, int64_t s1, int64_t m, int sh, int64_t *sg,
                             int64_t *sb);
uint64_t iq_norm_dx_x_blocks(iq_norm_load_fn *ld, iq_norm_dx_x_fn *fn, size_t n, const void *x, int w, const void *dy,
                             int dw, size_t off, int N, int64_t s1, int64_t m, int sh, int64_t m1, int64_t m2,
                             int64_t *acc);
/* the table entry of an int8 value (the BatchNorm tables: 256 entries a channel) */
#define IQ_NORM_TIX(v) ((v) + 128)
/* whether the host step's BatchNorm kernels take an input of w bytes and N values a channel through
 * per-channel tables: int8 inputs, at least 1024 values a channel (the tables' 256 entries then cost
 * at most a quarter of the element loops), where the loops' variant asks for them (xhat_tables) */
static inline int iq_norm_uses_tables(const iq_norm_loops_t *L, int w, size_t N) {
    return L->xhat_tables && w == 1 && N >= 1024u;
}
/* the best variant this CPU runs (AVX-512 F + DQ at the avx512vnni level, else AVX2, else portable;
 * RCTC_ISA caps it as it caps every kernel) */
const iq_norm_loops_t *iq_norm_loops(void);
/* M_c ~= ga_c n mb_c 2^(-f_c - g), |M_c| < 2^mbits; g into *g_out */
int iq_norm_multipliers(int G, const int64_t *ga, int64_t n, const int64_t *mb, const int64_t *f, int mbits,
                        int64_t *out, int *g_out);
/* round((t << sh) / n) half up (i128); *ok = 0 when it passes 63 bits */
int64_t iq_norm_div_round(int64_t t, int sh, int64_t n, int *ok);
/* dx accumulator (G, N) in acc; exponent offset into *off; mult: G int64 scratch */
int iq_norm_dx(int G, int N, const int64_t *dy, const int64_t *xhat, const int64_t *gm, const int64_t *m,
               const int64_t *f, int64_t *acc, int64_t *mult, int *off);
/* beta brought to the accumulator's exponent: out = beta * 2^k (k > 0) or rounded half up (k < 0),
 * requantize_bias's shift; RCTC_IQ_EOVERFLOW when a term would pass RCTC_IQ_ACC_LIMIT */
int iq_norm_shifted_bias(int C, const void *beta, int bw, int k, int64_t *out);
/* BatchNorm's running statistics from the batch sums s1 (sum q) and d (N sum q^2 - s1^2) of N
 * values at exponent e: batch mean / variance in Q16 into bm / bv, then iq_norm_update of both;
 * work: 2 C int64 */
int iq_norm_running_update(int C, int64_t N, const int64_t *s1, const int64_t *d, int e, int64_t mu,
                           const int16_t *rmean, int rme, const int16_t *rvar, int rve, int16_t *rmean_out,
                           int *rme_out, int16_t *rvar_out, int *rve_out, int64_t *bm, int64_t *bv, int64_t *work);
/* running-statistics update; work: 2 C int64 */
int iq_norm_update(int C, const int16_t *old, int e_old, const int64_t *nw, int e_new, int64_t mu, int16_t *out,
                   int *e_out, int64_t *work);

#endif /* RCTC_IQ_NORM_H */
