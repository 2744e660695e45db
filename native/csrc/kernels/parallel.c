/*
 * parallel.c - the library's only threading layer (pthreads, behind RCTC_THREADS).
 *
 * Needs: POSIX threads when RCTC_THREADS is defined, nothing otherwise.
 * Leaves: fn has run exactly once on every chunk of [0, n) before rctc_parallel_for returns;
 * the chunking depends only on (n, align, nthreads), never on timing.
 */
#include "internal.h"

#ifdef RCTC_THREADS
#include <pthread.h>
#endif

typedef struct {
    rctc_task_fn fn;
    void *ctx;
    int begin, end;
} rctc_chunk;

#ifdef RCTC_THREADS
static void *run_chunk(void *arg) {
    rctc_chunk *c = (rctc_chunk *)arg;
    c->fn(c->ctx, c->begin, c->end);
    return NULL;
}
#endif

int rctc_threads_for(int nthreads, uint64_t work) {
    const uint64_t per_thread = (uint64_t)1 << 21; /* multiply-adds below which a thread does not pay */
    const uint64_t q = work / per_thread;
    int t = q > RCTC_MAX_THREADS ? RCTC_MAX_THREADS : (int)q;
    if (t < 1) t = 1;
    if (nthreads < 1) nthreads = 1;
    return t < nthreads ? t : nthreads;
}

void rctc_parallel_for(int n, int align, int nthreads, rctc_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (align < 1) align = 1;
    int units = (n + align - 1) / align;
    if (nthreads > units) nthreads = units;
    if (nthreads > RCTC_MAX_THREADS) nthreads = RCTC_MAX_THREADS;
#ifdef RCTC_THREADS
    if (nthreads > 1) {
        rctc_chunk chunks[RCTC_MAX_THREADS];
        pthread_t tids[RCTC_MAX_THREADS];
        int started[RCTC_MAX_THREADS];
        for (int t = 0; t < nthreads; ++t) {
            int b = (int)((long long)units * t / nthreads) * align;
            int e = (int)((long long)units * (t + 1) / nthreads) * align;
            chunks[t].fn = fn;
            chunks[t].ctx = ctx;
            chunks[t].begin = b;
            chunks[t].end = e < n ? e : n;
            started[t] = 0;
        }
        for (int t = 1; t < nthreads; ++t)
            started[t] = pthread_create(&tids[t], NULL, run_chunk, &chunks[t]) == 0;
        fn(ctx, chunks[0].begin, chunks[0].end);
        for (int t = 1; t < nthreads; ++t) {
            if (started[t])
                pthread_join(tids[t], NULL);
            else /* no thread available: run the chunk here, same result */
                fn(ctx, chunks[t].begin, chunks[t].end);
        }
        return;
    }
#else
    (void)nthreads;
#endif
    fn(ctx, 0, n);
}
