/* clock.h — a monotonic clock in nanoseconds for the engine's thread controller (engine.pyx). */
#ifndef NNFAST_CLOCK_H
#define NNFAST_CLOCK_H
#include <stdint.h>

#ifdef _WIN32
#include <windows.h>
static inline int64_t nn_clock_ns(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
}
#else
#include <time.h>
static inline int64_t nn_clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}
#endif

#endif /* NNFAST_CLOCK_H */
