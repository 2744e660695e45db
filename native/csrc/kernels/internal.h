/*
 * internal.h - helpers shared by the kernel files (not part of the public API).
 *
 * rctc_parallel_for splits [0, n) into at most nthreads contiguous chunks of `align`-multiples
 * and runs fn(ctx, begin, end) on each, the first chunk on the calling thread. Without
 * RCTC_THREADS (bare-metal builds) it runs everything on the calling thread: no OS call.
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

#endif /* RCTC_INTERNAL_H */
