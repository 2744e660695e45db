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

/* Chunks per thread: a thread that the OS deschedules (a shared machine) delays only its
 * current chunk, the others take the rest. Which thread runs a chunk never changes a result:
 * every chunk writes its own outputs. */
#define RCTC_CHUNKS_PER_THREAD 4

int rctc_threads_for(int nthreads, uint64_t work) {
    const uint64_t per_thread = (uint64_t)1 << 21; /* multiply-adds below which a thread does not pay */
    const uint64_t q = work / per_thread;
    int t = q > RCTC_MAX_THREADS ? RCTC_MAX_THREADS : (int)q;
    if (t < 1) t = 1;
    if (nthreads < 1) nthreads = 1;
    return t < nthreads ? t : nthreads;
}

#ifdef RCTC_THREADS
typedef struct {
    rctc_task_fn fn;
    void *ctx;
    int n, align, units, chunks, next;
    pthread_mutex_t lock;
} rctc_queue;

/* Take chunks (fixed boundaries: units * i / chunks, in align multiples) until none is left. */
static void *run_queue(void *arg) {
    rctc_queue *q = (rctc_queue *)arg;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        const int i = q->next++;
        pthread_mutex_unlock(&q->lock);
        if (i >= q->chunks) return NULL;
        const int b = (int)((long long)q->units * i / q->chunks) * q->align;
        const int e = (int)((long long)q->units * (i + 1) / q->chunks) * q->align;
        q->fn(q->ctx, b, e < q->n ? e : q->n);
    }
}
#endif

void rctc_parallel_for(int n, int align, int nthreads, rctc_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (align < 1) align = 1;
    const int units = (n + align - 1) / align;
    if (nthreads > units) nthreads = units;
    if (nthreads > RCTC_MAX_THREADS) nthreads = RCTC_MAX_THREADS;
#ifdef RCTC_THREADS
    if (nthreads > 1) {
        rctc_queue q;
        pthread_t tids[RCTC_MAX_THREADS];
        int started[RCTC_MAX_THREADS];
        q.fn = fn;
        q.ctx = ctx;
        q.n = n;
        q.align = align;
        q.units = units;
        q.chunks = units < nthreads * RCTC_CHUNKS_PER_THREAD ? units : nthreads * RCTC_CHUNKS_PER_THREAD;
        q.next = 0;
        if (pthread_mutex_init(&q.lock, NULL) == 0) {
            for (int t = 1; t < nthreads; ++t) started[t] = pthread_create(&tids[t], NULL, run_queue, &q) == 0;
            run_queue(&q); /* the calling thread works too; it alone suffices if no thread started */
            for (int t = 1; t < nthreads; ++t)
                if (started[t]) pthread_join(tids[t], NULL);
            pthread_mutex_destroy(&q.lock);
            return;
        }
    }
#else
    (void)nthreads;
#endif
    fn(ctx, 0, n);
}
