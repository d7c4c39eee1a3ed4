/* step_pool.h — one persistent helper pthread for the data-parallel model step (pstep.pyx).
 *
 * A step's mini-batch is cut into n_chunks fixed row ranges; each chunk's forward/loss/backward
 * writes partial dW/db/loss into an output SLOT. Every chunk has two slots: the helper's and the
 * caller's. The caller reduces the slots in chunk order, so results do not depend on who did
 * which chunk. Protocol (all atomics seq_cst unless noted):
 *
 *   nn_gen        0 while the caller (re)writes the job, else the job's generation g.
 *   nn_words      the job (nn_job) as relaxed atomic words: a seqlock guarded by nn_gen.
 *   nn_state[c]   g<<3 | FREE / HELPER / HDONE / CALLER / TAKEN. Every claim is a CAS that
 *                 names g, so a stale helper (still holding an old job) can neither claim a new
 *                 chunk nor publish a late result: its CAS fails.
 *   nn_busy       1 while the helper may touch memory named by a job snapshot (set BEFORE it
 *                 reads nn_gen and the job). The caller, after setting nn_gen = 0, reads
 *                 nn_busy: 0 means no helper can still use the previous job's memory (a later
 *                 snapshot sees nn_gen == 0 or the next job), so the previous job's Python
 *                 references may be dropped and retired buffers freed (a hazard pointer).
 *   nn_sleeping   the helper is (about to be) parked on nn_sem; the poster that CASes it 1 -> 0
 *                 posts the semaphore (sem_post never blocks, and a post is never lost).
 *
 * The caller never waits for the helper: it claims chunks too, and a chunk the helper holds
 * past its expected time is taken over (CAS HELPER -> TAKEN) and computed into the caller's slot.
 * fork() first waits for the helper to leave its chunk (nn_forking); the child has no helper
 * (nn_alive = 0) and runs every chunk on the caller.
 */
#ifndef NNFAST_STEP_POOL_H
#define NNFAST_STEP_POOL_H

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_RELAX() _mm_pause()
#else
#define NN_RELAX() ((void)0)
#endif

#define NN_POOL_MAX_LAYERS 32
#define NN_POOL_MAX_CHUNKS 16

enum { NN_FREE = 0, NN_HELPER = 1, NN_HDONE = 2, NN_CALLER = 3, NN_TAKEN = 4 };

typedef struct {
    int64_t dtype;              /* 0 float32, 1 float64 */
    int64_t output, kind;
    double slope;
    int64_t L, m, n_chunks, rows_max, n_w, n_b;
    int64_t sizes[NN_POOL_MAX_LAYERS + 1];
    const void* X;              /* inputs (the caller keeps them alive: pstep._held) */
    const int64_t* labels;
    const void* t;
    const void* W;
    const void* b;
    const int64_t* rows;        /* NULL: the batch is X's first m rows; else X's rows rows[0..m) */
    int64_t n_src;              /* rows of X (and y) when `rows` is given */
    void* ws;                   /* this thread's workspace (labels, z, a, d of one chunk; with
                                   `rows` also the chunk's gathered X and targets) */
    void* dW;                   /* slots: chunk c's dW at dW + c·n_w, db at db + c·n_b */
    void* db;
    double* loss;
} nn_job;

#define NN_JOB_WORDS ((sizeof(nn_job) + 7) / 8)
_Static_assert(sizeof(nn_job) % 8 == 0, "nn_job is copied as 64-bit words");

typedef void (*nn_chunk_fn)(const nn_job* job, int64_t chunk);

static _Atomic uint64_t nn_gen;
static _Atomic uint64_t nn_words[NN_JOB_WORDS];
static _Atomic uint64_t nn_state[NN_POOL_MAX_CHUNKS];
static _Atomic int64_t nn_claim_ns[NN_POOL_MAX_CHUNKS];
static _Atomic int nn_busy, nn_sleeping, nn_stop;
static _Atomic int nn_forking;     /* fork() in progress: the helper takes no chunk */
static _Atomic int64_t nn_spin_ns = 200000;   /* helper spins this long after a job, then parks */
static _Atomic int nn_spin_yield = 1;          /* spin with sched_yield(): a helper sharing the
                                                 caller's core gives it the core back */
static _Atomic int64_t nn_test_delay_ns;       /* tests: the helper sleeps this long in every chunk
                                                 it claims (a descheduled helper, on demand) */
static int nn_alive;                          /* caller side only (serialized by the GIL) */
static int nn_child;                          /* this process is a fork child of one with a helper */
static uint64_t nn_next_gen;
static pthread_t nn_thread;
static sem_t nn_sem;
static nn_chunk_fn nn_fn;
static int nn_atfork_done;
/* instrumentation (helper writes, caller reads relaxed): helper chunk ns, post-to-claim ns */
static _Atomic int64_t nn_h_chunk_ns, nn_h_delay_ns, nn_post_ns, nn_h_chunks;

static inline int64_t nn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint64_t nn_tag(uint64_t g, int st) { return (g << 3) | (uint64_t)st; }

static void nn_wake(void) {
    int one = 1;
    if (atomic_load(&nn_sleeping) && atomic_compare_exchange_strong(&nn_sleeping, &one, 0))
        sem_post(&nn_sem);
}

static void* nn_helper_main(void* arg) {
    (void)arg;
    uint64_t done = 0;
    int64_t idle_since = nn_now_ns();
    nn_job job;
    for (;;) {
        if (atomic_load_explicit(&nn_stop, memory_order_acquire)) break;
        uint64_t g = atomic_load_explicit(&nn_gen, memory_order_acquire);
        if (g == 0 || g == done) {
            if (nn_now_ns() - idle_since < atomic_load_explicit(&nn_spin_ns, memory_order_relaxed)) {
                if (atomic_load_explicit(&nn_spin_yield, memory_order_relaxed))
                    sched_yield();
                else
                    NN_RELAX();
                continue;
            }
            atomic_store(&nn_sleeping, 1);
            g = atomic_load(&nn_gen);
            if ((g == 0 || g == done) && !atomic_load(&nn_stop)) {
                while (sem_wait(&nn_sem) != 0) {}      /* EINTR: retry */
            } else {
                int one = 1;
                if (!atomic_compare_exchange_strong(&nn_sleeping, &one, 0))
                    while (sem_wait(&nn_sem) != 0) {}  /* a poster took the flag: eat its post */
            }
            idle_since = nn_now_ns();
            continue;
        }
        atomic_store(&nn_busy, 1);
        g = atomic_load(&nn_gen);
        if (g == 0 || g == done || atomic_load(&nn_forking)) {
            atomic_store_explicit(&nn_busy, 0, memory_order_release);
            continue;
        }
        uint64_t* w = (uint64_t*)&job;
        for (size_t i = 0; i < NN_JOB_WORDS; i++)
            w[i] = atomic_load_explicit(&nn_words[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&nn_gen, memory_order_relaxed) == g) {
            for (int64_t c = job.n_chunks - 1; c >= 0; c--) {   /* the caller goes upwards */
                uint64_t expect = nn_tag(g, NN_FREE);
                atomic_store_explicit(&nn_claim_ns[c], nn_now_ns(), memory_order_relaxed);
                if (atomic_compare_exchange_strong(&nn_state[c], &expect, nn_tag(g, NN_HELPER))) {
                    int64_t t0 = nn_now_ns();
                    atomic_fetch_add_explicit(&nn_h_delay_ns, t0 - atomic_load_explicit(&nn_post_ns, memory_order_relaxed), memory_order_relaxed);
                    int64_t delay = atomic_load_explicit(&nn_test_delay_ns, memory_order_relaxed);
                    if (delay > 0) {
                        struct timespec ts = {delay / 1000000000, delay % 1000000000};
                        nanosleep(&ts, NULL);
                    }
                    nn_fn(&job, c);
                    atomic_fetch_add_explicit(&nn_h_chunk_ns, nn_now_ns() - t0, memory_order_relaxed);
                    atomic_fetch_add_explicit(&nn_h_chunks, 1, memory_order_relaxed);
                    expect = nn_tag(g, NN_HELPER);
                    atomic_compare_exchange_strong(&nn_state[c], &expect, nn_tag(g, NN_HDONE));
                }
            }
            done = g;
        }
        atomic_store_explicit(&nn_busy, 0, memory_order_release);
        idle_since = nn_now_ns();
    }
    return NULL;
}

static void nn_atfork_prepare(void) {
    /* Let the helper leave its chunk first: fork() while it is inside OpenBLAS could copy a
     * lock it holds into the child, locked forever. Waits at most one chunk (or the time slice
     * of a descheduled helper). */
    atomic_store(&nn_forking, 1);
    while (atomic_load(&nn_busy)) sched_yield();
}

static void nn_atfork_parent(void) {
    atomic_store(&nn_forking, 0);
}

static void nn_atfork_child(void) {
    atomic_store(&nn_forking, 0);
    /* The helper does not exist in the child: run everything on the caller from now on. */
    if (nn_alive) nn_child = 1;
    nn_alive = 0;
    atomic_store(&nn_busy, 0);
    atomic_store(&nn_sleeping, 0);
}

/* Start the helper (caller side). Returns 1 if a helper runs. */
static int nn_pool_start(nn_chunk_fn fn) {
    if (nn_alive) return 1;
    if (nn_child) return 0;
    if (!nn_atfork_done) {
        if (pthread_atfork(nn_atfork_prepare, nn_atfork_parent, nn_atfork_child) != 0) return 0;
        nn_atfork_done = 1;
    }
    nn_fn = fn;
    atomic_store(&nn_stop, 0);
    atomic_store(&nn_sleeping, 0);
    if (sem_init(&nn_sem, 0, 0) != 0) return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);       /* signals stay with Python's threads */
    int rc = pthread_create(&nn_thread, NULL, nn_helper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) { sem_destroy(&nn_sem); return 0; }
    nn_alive = 1;
    return 1;
}

/* Join the helper (interpreter exit). It finishes the chunk it may be in first. */
static void nn_pool_stop(void) {
    if (!nn_alive) return;
    atomic_store(&nn_stop, 1);
    nn_wake();
    pthread_join(nn_thread, NULL);
    sem_destroy(&nn_sem);
    nn_alive = 0;
    nn_child = 1;                 /* never restarted */
    atomic_store(&nn_busy, 0);
}

/* Invalidate the previous job; returns 1 if the helper may still use its memory. */
static int nn_pool_begin(void) {
    atomic_store(&nn_gen, 0);
    return atomic_load(&nn_busy);
}

/* Publish `job` for n_chunks chunks as a new generation (nn_pool_begin came first). */
static uint64_t nn_pool_post(const nn_job* job, int wake) {
    uint64_t g = ++nn_next_gen;
    for (int64_t c = 0; c < job->n_chunks; c++)
        atomic_store_explicit(&nn_state[c], nn_tag(g, NN_FREE), memory_order_relaxed);
    const uint64_t* w = (const uint64_t*)job;
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < NN_JOB_WORDS; i++)
        atomic_store_explicit(&nn_words[i], w[i], memory_order_relaxed);
    atomic_store_explicit(&nn_post_ns, nn_now_ns(), memory_order_relaxed);
    atomic_store(&nn_gen, g);
    if (wake) nn_wake();
    return g;
}

/* Caller: try to claim chunk c for itself. */
static inline int nn_claim(uint64_t g, int64_t c) {
    uint64_t expect = nn_tag(g, NN_FREE);
    return atomic_compare_exchange_strong(&nn_state[c], &expect, nn_tag(g, NN_CALLER));
}

/* Caller, after its own chunks: chunk c held by the helper. Spin until `budget_ns` after the
 * helper's claim; returns 1 if the helper published (use its slot), 0 if the caller took the
 * chunk over (compute it into the caller's slot). */
static int nn_wait_or_take(uint64_t g, int64_t c, int64_t budget_ns) {
    int64_t deadline = atomic_load_explicit(&nn_claim_ns[c], memory_order_relaxed) + budget_ns;
    for (;;) {
        uint64_t s = atomic_load_explicit(&nn_state[c], memory_order_acquire);
        if (s == nn_tag(g, NN_HDONE)) return 1;
        if (s != nn_tag(g, NN_HELPER)) return 0;      /* cannot happen: FREE was claimed */
        if (nn_now_ns() >= deadline) {
            uint64_t expect = nn_tag(g, NN_HELPER);
            if (atomic_compare_exchange_strong(&nn_state[c], &expect, nn_tag(g, NN_TAKEN)))
                return 0;
            return expect == nn_tag(g, NN_HDONE);     /* published just now */
        }
        NN_RELAX();
    }
}

static inline uint64_t nn_state_of(int64_t c) {
    return atomic_load_explicit(&nn_state[c], memory_order_acquire);
}

/* Retired helper buffers: freed once the helper is seen idle (nn_pool_begin() == 0). */
static void** nn_retired;
static size_t nn_n_retired, nn_cap_retired;

static void nn_retire(void* p) {
    if (p == NULL) return;
    if (nn_n_retired == nn_cap_retired) {
        size_t cap = nn_cap_retired ? 2 * nn_cap_retired : 8;
        void** q = (void**)realloc(nn_retired, cap * sizeof(void*));
        if (q == NULL) return;            /* leak rather than free memory the helper may use */
        nn_retired = q;
        nn_cap_retired = cap;
    }
    nn_retired[nn_n_retired++] = p;
}

static void nn_free_retired(void) {
    for (size_t i = 0; i < nn_n_retired; i++) free(nn_retired[i]);
    nn_n_retired = 0;
}

/* Labels of a chunk into private memory, read once each (volatile) and clamped to [0, k): a
 * stale helper may read labels Python is rewriting, and a label is an index. */
static inline void nn_copy_labels(const int64_t* src, int64_t* dst, int64_t n, int64_t k) {
    const volatile int64_t* s = (const volatile int64_t*)src;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = s[i];
        dst[i] = (y >= 0 && y < k) ? y : 0;
    }
}

/* Gather rows rows[0..n) of src (row_bytes each, n_src rows) into dst, each index read once
 * (volatile) and clamped into [0, n_src): a stale helper may read an index array Python is
 * rewriting, and an index addresses memory. */
static inline void nn_gather_rows(const int64_t* rows, int64_t n, int64_t n_src, const char* src,
                                  int64_t row_bytes, char* dst) {
    const volatile int64_t* r = (const volatile int64_t*)rows;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = r[i];
        if (k < 0 || k >= n_src) k = 0;
        memcpy(dst + i * row_bytes, src + k * row_bytes, (size_t)row_bytes);
    }
}

/* Labels of rows rows[0..n) into dst, clamped to [0, k) (as nn_copy_labels). */
static inline void nn_gather_labels(const int64_t* rows, const int64_t* src, int64_t n,
                                    int64_t n_src, int64_t* dst, int64_t k) {
    const volatile int64_t* r = (const volatile int64_t*)rows;
    const volatile int64_t* s = (const volatile int64_t*)src;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = r[i];
        if (j < 0 || j >= n_src) j = 0;
        int64_t y = s[j];
        dst[i] = (y >= 0 && y < k) ? y : 0;
    }
}

#endif /* NNFAST_STEP_POOL_H */

static void nn_instr(int64_t* out) {
    out[0] = atomic_load(&nn_h_chunk_ns); out[1] = atomic_load(&nn_h_delay_ns);
    out[2] = atomic_load(&nn_h_chunks);
}
