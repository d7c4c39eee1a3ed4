/* parallel.h — OpenMP when the build found it, a single thread otherwise. */
#ifndef NNFAST_PARALLEL_H
#define NNFAST_PARALLEL_H

#ifdef _OPENMP
#include <omp.h>
#define NN_HAVE_OPENMP 1
static inline int nn_max_threads(void) { return omp_get_max_threads(); }
#else
#define NN_HAVE_OPENMP 0
static inline int nn_max_threads(void) { return 1; }
#endif

#endif /* NNFAST_PARALLEL_H */
