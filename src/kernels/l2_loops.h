/* The L2 term's loops (model_pass.pxd's l2_term), with run-time CPU dispatch.
 *
 * A model step's L2 term is two passes over the weights: dW += s·W, and Σ W² in double (for the
 * reported J) over eight interleaved partial sums, added in a fixed order. On a baseline x86-64
 * build (the wheel: SSE2) they took 4.7 µs of a 67 µs grid step (64-128-64-10, batch 64,
 * float32, 17k weights; Zen 4). Here each is compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2)
 * and the baseline, and the loader picks one per CPU (fastmath.h's NN_CLONES3). Contraction
 * into FMA is off, and the partial sums are the source's, so every version gives the same bits.
 */
#ifndef NNFAST_L2_LOOPS_H
#define NNFAST_L2_LOOPS_H

#include <stddef.h>

#include "fastmath.h"     /* NN_CLONES3 */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

/* dW[i] += s·W[i]; returns Σ W[i]² in double: eight partial sums acc[j] over i ≡ j (mod 8) of
 * the first n - n % 8 elements; the tail added to a running total first, then acc[0..7]. */
#define NN_L2_LOOP(name, T) \
    NN_CLONES3 static double name(T *restrict dW, const T *restrict W, ptrdiff_t n, T s) \
    { \
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, total = 0; \
        ptrdiff_t n_main = n - n % 8; \
        for (ptrdiff_t i = 0; i < n_main; i += 8) \
            for (int j = 0; j < 8; j++) \
                acc[j] += (double)W[i + j] * (double)W[i + j]; \
        for (ptrdiff_t i = n_main; i < n; i++) \
            total += (double)W[i] * (double)W[i]; \
        for (int j = 0; j < 8; j++) \
            total += acc[j]; \
        for (ptrdiff_t i = 0; i < n; i++) \
            dW[i] = dW[i] + s * W[i]; \
        return total; \
    }

NN_L2_LOOP(nn_l2_loop_f32, float)
NN_L2_LOOP(nn_l2_loop_f64, double)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif /* NNFAST_L2_LOOPS_H */
