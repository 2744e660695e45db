/*
 * internal.h - helpers shared by the kernel files (not part of the public API).
 *
 * rctc_parallel_for splits [0, n) into contiguous chunks of `align`-multiples (boundaries fixed
 * by n, align and nthreads) and runs fn(ctx, begin, end) once on each, on up to nthreads
 * threads including the calling one, which take chunks from a shared counter. Without
 * RCTC_THREADS (bare-metal builds) it runs fn(ctx, 0, n) on the calling thread: no OS call.
 */
#ifndef RCTC_INTERNAL_H
#define RCTC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef void (*rctc_task_fn)(void *ctx, int begin, int end);

#define RCTC_MAX_THREADS 64

void rctc_parallel_for(int n, int align, int nthreads, rctc_task_fn fn, void *ctx);

/* Threads worth using for `work` multiply-adds (thread start-up costs ~20 us). */
int rctc_threads_for(int nthreads, uint64_t work);

/* Threads for an element-wise pass over n elements: one per per_thread elements (at least one,
 * at most nthreads). */
int rctc_threads_for_elements(int nthreads, size_t n, size_t per_thread);

/* The output columns [*lo, *hi) of a conv row whose input column ox * stride + ix0 lies in
 * [0, w) (im2col.c; col2im reuses it). */
void rctc_conv_cols(int ix0, int stride, int w, int ow, int *lo, int *hi);

#endif /* RCTC_INTERNAL_H */
