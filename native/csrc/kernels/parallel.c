/*
 * parallel.c - the library's only threading layer (pthreads, behind RCTC_THREADS).
 *
 * Needs: POSIX threads when RCTC_THREADS is defined, nothing otherwise.
 * Leaves: fn has run exactly once on every chunk of [0, n) before rctc_parallel_for returns;
 * the chunking depends only on (n, align, nthreads), never on timing.
 */
#if defined(RCTC_THREADS) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_atfork under -std=c99 */
#endif
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

int rctc_threads_for_elements(int nthreads, size_t n, size_t per_thread) {
    const size_t most = n / per_thread > 1 ? n / per_thread : 1;
    if (nthreads < 1) return 1;
    return (size_t)nthreads > most ? (int)most : nthreads;
}

#ifdef RCTC_THREADS
typedef struct {
    rctc_task_fn fn;
    void *ctx;
    int n, align, units, chunks, next;
    pthread_mutex_t lock;
} rctc_queue;

/* the next chunk's index: an atomic counter where the compiler has GCC's builtins, else the lock */
static int next_chunk(rctc_queue *q) {
#if defined(__GNUC__)
    return __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
#else
    pthread_mutex_lock(&q->lock);
    const int i = q->next++;
    pthread_mutex_unlock(&q->lock);
    return i;
#endif
}

/* Take chunks (fixed boundaries: units * i / chunks, in align multiples) until none is left. */
static void *run_queue(void *arg) {
    rctc_queue *q = (rctc_queue *)arg;
    for (;;) {
        const int i = next_chunk(q);
        if (i >= q->chunks) return NULL;
        const int b = (int)((long long)q->units * i / q->chunks) * q->align;
        const int e = (int)((long long)q->units * (i + 1) / q->chunks) * q->align;
        q->fn(q->ctx, b, e < q->n ? e : q->n);
    }
}

#if defined(__GNUC__)
#include <time.h>
/*
 * A persistent pool (GCC / Clang builtins): workers started once, each waiting on its own slot.
 * Starting a thread per call costs ~50 us, and on a virtual machine the first work on an idle
 * vCPU came ~1 ms late (measured on a 2-vCPU Xeon: 1.4 ms of work took 2.9 ms on two new threads),
 * which made two threads slower than one for every sub-millisecond kernel. A worker spins for
 * RCTC_SPIN_NS after its last chunk (the step's next parallel region is usually that close), then
 * sleeps on a condition variable. One region runs at a time: a call made while another runs (a
 * second host thread, or a region nested inside a chunk) runs on its caller alone.
 */
#define RCTC_SPIN_NS 1000000L

typedef struct {
    unsigned gen;       /* bumped by the caller when job is set */
    rctc_queue *job;
} rctc_slot;

static struct {
    pthread_mutex_t busy, lock;
    pthread_cond_t wake;
    int size, active;
    rctc_slot slot[RCTC_MAX_THREADS];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {{0, NULL}}};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *worker(void *arg) {
    rctc_slot *me = (rctc_slot *)arg;
    unsigned seen = 0; /* a slot's gen is 0 until its worker exists: only the caller bumps it */
    for (;;) {
        const long long t0 = now_ns();
        for (int spins = 1; __atomic_load_n(&me->gen, __ATOMIC_ACQUIRE) == seen; ++spins) {
            cpu_relax();
            if (spins % 256 == 0 && now_ns() - t0 > RCTC_SPIN_NS) {
                pthread_mutex_lock(&pool.lock);
                while (__atomic_load_n(&me->gen, __ATOMIC_ACQUIRE) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        seen = __atomic_load_n(&me->gen, __ATOMIC_ACQUIRE);
        run_queue(me->job);
        __atomic_fetch_sub(&pool.active, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* a forked child has none of the parent's workers: start again from an empty pool */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.size = pool.active = 0;
    for (int w = 0; w < RCTC_MAX_THREADS; ++w) pool.slot[w].gen = 0;
}

/* start workers until `want` run (fewer if the system refuses); called holding pool.busy */
static int pool_grow(int want) {
    static int fork_handler; /* registered once per process image (a forked child inherits it) */
    if (!fork_handler) fork_handler = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    while (pool.size < want) {
        pthread_t tid;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&tid, &attr, worker, &pool.slot[pool.size]);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        ++pool.size;
    }
    return pool.size;
}

/* run q on the caller and up to nthreads - 1 pool workers; 0 if the pool is in use */
static int pool_run(rctc_queue *q, int nthreads) {
    if (pthread_mutex_trylock(&pool.busy) != 0) return 0;
    const int workers = pool_grow(nthreads - 1) < nthreads - 1 ? pool.size : nthreads - 1;
    __atomic_store_n(&pool.active, workers, __ATOMIC_RELAXED);
    for (int w = 0; w < workers; ++w) {
        pool.slot[w].job = q;
        __atomic_fetch_add(&pool.slot[w].gen, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_lock(&pool.lock); /* under the lock: a worker between its check and its wait is woken */
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_queue(q); /* the calling thread works too */
    while (__atomic_load_n(&pool.active, __ATOMIC_ACQUIRE) > 0) cpu_relax();
    pthread_mutex_unlock(&pool.busy);
    return 1;
}
#endif
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
        q.fn = fn;
        q.ctx = ctx;
        q.n = n;
        q.align = align;
        q.units = units;
        q.chunks = units < nthreads * RCTC_CHUNKS_PER_THREAD ? units : nthreads * RCTC_CHUNKS_PER_THREAD;
        q.next = 0;
#if defined(__GNUC__)
        if (pool_run(&q, nthreads)) return; /* else the pool is busy: this thread alone, below */
#else
        pthread_t tids[RCTC_MAX_THREADS];
        int started[RCTC_MAX_THREADS];
        if (pthread_mutex_init(&q.lock, NULL) == 0) {
            for (int t = 1; t < nthreads; ++t) started[t] = pthread_create(&tids[t], NULL, run_queue, &q) == 0;
            run_queue(&q); /* the calling thread works too; it alone suffices if no thread started */
            for (int t = 1; t < nthreads; ++t)
                if (started[t]) pthread_join(tids[t], NULL);
            pthread_mutex_destroy(&q.lock);
            return;
        }
#endif
    }
#else
    (void)nthreads;
#endif
    fn(ctx, 0, n);
}
