/* blas_threads.h — the engine's GEMMs on one BLAS thread (engine.pyx).
 *
 * The engine's threads are its OpenMP team; OpenBLAS's own pool splitting a GEMM inside would
 * oversubscribe the cores and change the bits (nnfast._blas explains the cost). threadpoolctl
 * switches it from Python (~10 us a call, and only from one Python thread); here the switch is
 * OpenBLAS's own openblas_get/set_num_threads, whose addresses Python hands over once
 * (nnfast._blas.thread_functions), counted across the calls in flight: the first to enter sets
 * one thread, the last to leave restores what it found, so Python threads that run engine calls
 * at once all run them on one BLAS thread. A process-wide pool: a NumPy GEMM in another thread
 * meanwhile runs on one thread too. */
#ifndef NNFAST_BLAS_THREADS_H
#define NNFAST_BLAS_THREADS_H

typedef int (*nn_blas_get_fn)(void);
typedef void (*nn_blas_set_fn)(int);

static nn_blas_get_fn nn_blas_get = 0;
static nn_blas_set_fn nn_blas_set = 0;
static int nn_blas_users = 0, nn_blas_saved = 1;

#if defined(_MSC_VER)
#include <intrin.h>
static volatile long nn_blas_lock_word = 0;
static inline void nn_blas_lock(void) { while (_InterlockedExchange(&nn_blas_lock_word, 1)) {} }
static inline void nn_blas_unlock(void) { _InterlockedExchange(&nn_blas_lock_word, 0); }
#else
static char nn_blas_lock_word = 0;
static inline void nn_blas_lock(void) {
    while (__atomic_test_and_set(&nn_blas_lock_word, __ATOMIC_ACQUIRE)) {}
}
static inline void nn_blas_unlock(void) { __atomic_clear(&nn_blas_lock_word, __ATOMIC_RELEASE); }
#endif

static inline void nn_blas_functions(void* get, void* set) {
    nn_blas_lock();
    nn_blas_get = (nn_blas_get_fn)get;
    nn_blas_set = (nn_blas_set_fn)set;
    if (!get || !set) nn_blas_get = 0, nn_blas_set = 0;
    nn_blas_unlock();
}

static inline void nn_blas_enter(void) {
    nn_blas_lock();
    if (nn_blas_set && nn_blas_users++ == 0) {
        nn_blas_saved = nn_blas_get();
        if (nn_blas_saved != 1) nn_blas_set(1);
    }
    nn_blas_unlock();
}

static inline void nn_blas_leave(void) {
    nn_blas_lock();
    if (nn_blas_set && --nn_blas_users == 0 && nn_blas_saved != 1) nn_blas_set(nn_blas_saved);
    nn_blas_unlock();
}

#endif /* NNFAST_BLAS_THREADS_H */
