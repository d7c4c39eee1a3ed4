/* parallel.h — whether the build found OpenMP (the prange loops then run on threads). */
#ifndef NNFAST_PARALLEL_H
#define NNFAST_PARALLEL_H

#ifdef _OPENMP
#define NN_HAVE_OPENMP 1
#else
#define NN_HAVE_OPENMP 0
#endif

#endif /* NNFAST_PARALLEL_H */
