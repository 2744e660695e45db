/*
 * iq_pointwise_mt.c - ReLU, Clip and their backward masks on several threads for the host step
 * (rctc_iq_relu / _backward, rctc_iq_clip / _backward of iq_relu.c and iq_clip.c split).
 *
 * Needs: rctc_intops.h, parallel.c. Leaves: exactly the serial kernels' bytes for every thread
 * count: each output element depends on its own inputs only, and [0, n) is cut into chunks of
 * whole 64-element units, each run by the serial kernel (its SIMD variant included) on offset
 * pointers. Below RCTC_POINTWISE_PER_THREAD elements a thread, fewer threads are used (one
 * pass over a few hundred KiB costs less than handing it out).
 */
#include "internal.h"
#include "rctc_intops.h"

#define RCTC_POINTWISE_PER_THREAD 131072u

typedef struct {
    int op; /* 0 relu, 1 relu backward, 2 clip, 3 clip backward */
    const void *q, *dq;
    int qw, dw, e, has_lo, lo_log2den, has_hi, hi_log2den;
    int64_t lo_num, hi_num;
    void *out;
} pointwise_task;

static const void *at(const void *p, int w, size_t i) { return (const unsigned char *)p + i * (size_t)w; }

/* the serial kernel on elements [b, e) */
static void run_range(const pointwise_task *t, size_t b, size_t e) {
    const size_t n = e - b;
    void *out = (unsigned char *)t->out + b * (size_t)(t->op & 1 ? t->dw : t->qw);
    switch (t->op) {
    case 0: rctc_iq_relu(n, at(t->q, t->qw, b), t->qw, out); break;
    case 1: rctc_iq_relu_backward(n, at(t->q, t->qw, b), t->qw, at(t->dq, t->dw, b), t->dw, out); break;
    case 2:
        rctc_iq_clip(n, at(t->q, t->qw, b), t->qw, t->e, t->has_lo, t->lo_num, t->lo_log2den, t->has_hi, t->hi_num,
                     t->hi_log2den, out);
        break;
    default:
        rctc_iq_clip_backward(n, at(t->q, t->qw, b), t->qw, t->e, t->has_lo, t->lo_num, t->lo_log2den, t->has_hi,
                              t->hi_num, t->hi_log2den, at(t->dq, t->dw, b), t->dw, out);
    }
}

static void run_task(void *ctx, int b, int e) { run_range((const pointwise_task *)ctx, (size_t)b, (size_t)e); }

static void split(int nthreads, size_t n, const pointwise_task *t) {
    const int threads = rctc_threads_for_elements(nthreads, n, RCTC_POINTWISE_PER_THREAD);
    if (threads == 1 || n > (size_t)0x7fffffff)
        run_range(t, 0, n);
    else
        rctc_parallel_for((int)n, 64, threads, run_task, (void *)t);
}

void rctc_iq_relu_mt(int nthreads, size_t n, const void *q, int w, void *out) {
    const pointwise_task t = {0, q, NULL, w, w, 0, 0, 0, 0, 0, 0, 0, out};
    split(nthreads, n, &t);
}

void rctc_iq_relu_backward_mt(int nthreads, size_t n, const void *q, int qw, const void *dq, int dw, void *dx) {
    const pointwise_task t = {1, q, dq, qw, dw, 0, 0, 0, 0, 0, 0, 0, dx};
    split(nthreads, n, &t);
}

void rctc_iq_clip_mt(int nthreads, size_t n, const void *q, int w, int e, int has_lo, int64_t lo_num, int lo_log2den,
                     int has_hi, int64_t hi_num, int hi_log2den, void *out) {
    const pointwise_task t = {2, q, NULL, w, w, e, has_lo, lo_log2den, has_hi, hi_log2den, lo_num, hi_num, out};
    split(nthreads, n, &t);
}

void rctc_iq_clip_backward_mt(int nthreads, size_t n, const void *q, int qw, int e, int has_lo, int64_t lo_num,
                              int lo_log2den, int has_hi, int64_t hi_num, int hi_log2den, const void *dq, int dw,
                              void *dx) {
    const pointwise_task t = {3, q, dq, qw, dw, e, has_lo, lo_log2den, has_hi, hi_log2den, lo_num, hi_num, dx};
    split(nthreads, n, &t);
}
