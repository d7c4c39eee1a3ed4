/* Adam and RMSprop loops of the Cython backend (optim.pyx), with run-time CPU dispatch.
 *
 * Why C: these two updates are bound by their square root and divisions, not by memory, so
 * vector width pays. A baseline x86-64 build (the wheel) has SSE2 only: adam_update on 535,818
 * float32 parameters (a 784-512-256-10 MLP) took 563 us against Numba's 155 us on one AVX-512
 * thread, and was the whole gap between the Cython and Numba training steps of that network.
 * Here each loop is compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA) and the baseline,
 * and the loader picks one per CPU (NN_CLONES, fastmath.h). The arithmetic is optim.pyx's
 * per-element rule in the same order, but for the bias corrections, which multiply by 1/bc
 * (computed once) instead of dividing: Adam float32 535,818 elements 290 -> 164 us. Both this and
 * FMA contraction may move a result by an ulp.
 * p, m, v (and s) are written, g is read; they are distinct arrays (nnfast.updates checks). */
#ifndef NNFAST_OPTIM_LOOPS_H
#define NNFAST_OPTIM_LOOPS_H

#include <math.h>
#include <stddef.h>

#include "fastmath.h"

/* Adam: θ·wd_factor (AdamW: 1 - α·wd) or dθ + wd·θ (coupled), V = β1 V + (1-β1) dθ,
 * S = β2 S + (1-β2) dθ², θ -= α (V/bc1) / (sqrt(S/bc2 + ε) or sqrt(S/bc2) + ε). */
#define NN_ADAM_LOOP(name, T, SQRT) \
    NN_CLONES3 static void name(T *restrict p, const T *restrict g, T *restrict m, \
                                T *restrict v, T lr, T beta1, T one_minus_b1, T beta2, \
                                T one_minus_b2, T eps, T wd, T wd_factor, T bc1, T bc2, \
                                int eps_inside, ptrdiff_t n) \
    { \
        const T inv_bc1 = 1 / bc1, inv_bc2 = 1 / bc2; \
        for (ptrdiff_t i = 0; i < n; i++) { \
            T pi = p[i] * wd_factor, gi = g[i]; \
            if (wd != 0) \
                gi = gi + wd * pi; \
            T mi = m[i] * beta1 + one_minus_b1 * gi; \
            T vi = v[i] * beta2 + one_minus_b2 * gi * gi; \
            m[i] = mi; \
            v[i] = vi; \
            T m_corr = mi * inv_bc1, v_corr = vi * inv_bc2; \
            p[i] = pi - lr * m_corr / (eps_inside ? SQRT(v_corr + eps) : SQRT(v_corr) + eps); \
        } \
    }

/* RMSprop: S = β S + (1-β) dθ², θ -= α dθ / (sqrt(S + ε) or sqrt(S) + ε). */
#define NN_RMSPROP_LOOP(name, T, SQRT) \
    NN_CLONES3 static void name(T *restrict p, const T *restrict g, T *restrict s, T lr, \
                                T beta, T one_minus_b, T eps, T wd, int eps_inside, \
                                ptrdiff_t n) \
    { \
        for (ptrdiff_t i = 0; i < n; i++) { \
            T pi = p[i], gi = g[i]; \
            if (wd != 0) \
                gi = gi + wd * pi; \
            T si = s[i] * beta + one_minus_b * gi * gi; \
            s[i] = si; \
            p[i] = pi - lr * gi / (eps_inside ? SQRT(si + eps) : SQRT(si) + eps); \
        } \
    }

NN_ADAM_LOOP(nn_adam_loop_f32, float, sqrtf)
NN_ADAM_LOOP(nn_adam_loop_f64, double, sqrt)
NN_RMSPROP_LOOP(nn_rmsprop_loop_f32, float, sqrtf)
NN_RMSPROP_LOOP(nn_rmsprop_loop_f64, double, sqrt)

#endif /* NNFAST_OPTIM_LOOPS_H */
