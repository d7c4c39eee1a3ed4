/* Run-time choices that depend on the CPU the process runs on. */
#ifndef NNFAST_CPU_H
#define NNFAST_CPU_H

/* Whether the CPU has AVX-512F. */
static inline int nn_cpu_avx512f(void) {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* How model_pass.pxd computes δ_prev = δ Wᵀ: 1 as a TT GEMM on a copy of δᵀ, 0 as a TN GEMM on
 * δ. On AVX-512 CPUs OpenBLAS (DYNAMIC_ARCH, as scipy ships it) runs its SkylakeX kernels, whose
 * small-matrix path serves NN, NT and TT products but not TN (measured, scipy's OpenBLAS 0.3.30
 * on Zen 4, float32 M128 N64 K64: TT 10.0 µs, TN 13.6); with its Haswell kernels (AVX2 CPUs) TN
 * is as fast as the others (14.6 against TT 15.4), and the copy would be a loss. The choice is
 * per extension module (this is a static); nn_set_delta_tt overrides it (nnfast._cython.step
 * sets 0 when OPENBLAS_CORETYPE names a core without the small-matrix kernels; tests force
 * either), -1 restores the CPU's. */
static int nn_delta_choice = -1;

static inline int nn_delta_tt(void) {
    int c = __atomic_load_n(&nn_delta_choice, __ATOMIC_RELAXED);
    if (c < 0) {
        c = nn_cpu_avx512f() ? 1 : 0;
        __atomic_store_n(&nn_delta_choice, c, __ATOMIC_RELAXED);
    }
    return c;
}

static inline void nn_set_delta_tt(int c) {
    __atomic_store_n(&nn_delta_choice, c < 0 ? -1 : (c ? 1 : 0), __ATOMIC_RELAXED);
}

#endif /* NNFAST_CPU_H */
