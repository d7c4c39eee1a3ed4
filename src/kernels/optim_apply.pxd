# The fused optimizer updates on raw pointers — the hyperparameters as the Python kernels take
# them (doubles), rounded to the array's dtype here, once, and the update run serially below
# PARALLEL_MIN elements or over fixed BLOCK-element blocks in a prange above (results do not
# depend on the thread count: every element's update is independent). Shared by optim.pyx (the
# public kernels) and epoch.pyx (an epoch's steps in one call), so both run the same arithmetic
# bit for bit. The per-element rules: optim.pyx's docstring; Adam's and RMSprop's loops are in
# optim_loops.h (compiled per CPU level).
from cython cimport floating
from cython.parallel cimport prange

from kernel_common cimport BLOCK, block_len, n_blocks

cdef extern from "optim_loops.h" nogil:
    # Adam's and RMSprop's loops, compiled per CPU level (see optim_loops.h)
    void nn_adam_loop_f32(float* p, const float* g, float* m, float* v, float lr, float beta1,
                          float one_minus_b1, float beta2, float one_minus_b2, float eps,
                          float wd, float wd_factor, float bc1, float bc2, int eps_inside,
                          Py_ssize_t n)
    void nn_adam_loop_f64(double* p, const double* g, double* m, double* v, double lr,
                          double beta1, double one_minus_b1, double beta2, double one_minus_b2,
                          double eps, double wd, double wd_factor, double bc1, double bc2,
                          int eps_inside, Py_ssize_t n)
    void nn_rmsprop_loop_f32(float* p, const float* g, float* s, float lr, float beta,
                             float one_minus_b, float eps, float wd, int eps_inside,
                             Py_ssize_t n)
    void nn_rmsprop_loop_f64(double* p, const double* g, double* s, double lr, double beta,
                             double one_minus_b, double eps, double wd, int eps_inside,
                             Py_ssize_t n)


# ---- SGD: θ = θ - α (dθ + wd·θ) -----------------------------------------------------------------

cdef inline void sgd_block(floating* p, const floating* g, floating lr, floating wd,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if wd != 0:
        for i in range(n):
            p[i] = p[i] - lr * (g[i] + wd * p[i])
    else:
        for i in range(n):
            p[i] = p[i] - lr * g[i]


cdef inline void sgd_apply(floating* p, const floating* g, Py_ssize_t n, double lr,
                           double weight_decay, int n_threads) noexcept nogil:
    cdef Py_ssize_t nb = n_blocks(n), b
    cdef floating lr_ = <floating>lr, wd = <floating>weight_decay
    if nb == 1:
        sgd_block(p, g, lr_, wd, n)
    else:
        for b in prange(nb, schedule='static', num_threads=n_threads):
            sgd_block(p + b * BLOCK, g + b * BLOCK, lr_, wd, block_len(n, b))


# ---- Momentum ----------------------------------------------------------------------------------

cdef inline floating momentum_step(floating p, floating g, floating* v, floating lr,
                                   floating beta, floating one_minus_damp, floating wd,
                                   bint nesterov, bint sklearn_style) noexcept nogil:
    """New θ; updates V. torch: V = βV + (1 - dampening)·dθ, θ -= α V (or α(dθ + βV));
    sklearn: V = βV - α dθ."""
    if wd != 0:
        g = g + wd * p
    if sklearn_style:
        v[0] = v[0] * beta - lr * g
        return p + (beta * v[0] - lr * g if nesterov else v[0])
    v[0] = v[0] * beta + one_minus_damp * g
    return p - (lr * (g + beta * v[0]) if nesterov else lr * v[0])


cdef inline void momentum_block(floating* p, const floating* g, floating* v, floating lr,
                                floating beta, floating one_minus_damp, floating wd,
                                bint nesterov, bint sklearn_style, Py_ssize_t n) noexcept nogil:
    """The flags are constants in each loop (gcc then vectorizes it: with them read per
    element, it did not, and the update ran at 0.6-0.8x NumPy's speed at 1e4-1e5 elements)."""
    cdef Py_ssize_t i
    if sklearn_style and nesterov:
        for i in range(n):
            p[i] = momentum_step(p[i], g[i], &v[i], lr, beta, one_minus_damp, wd, True, True)
    elif sklearn_style:
        for i in range(n):
            p[i] = momentum_step(p[i], g[i], &v[i], lr, beta, one_minus_damp, wd, False, True)
    elif nesterov:
        for i in range(n):
            p[i] = momentum_step(p[i], g[i], &v[i], lr, beta, one_minus_damp, wd, True, False)
    else:
        for i in range(n):
            p[i] = momentum_step(p[i], g[i], &v[i], lr, beta, one_minus_damp, wd, False, False)


cdef inline void momentum_apply(floating* p, const floating* g, floating* v, Py_ssize_t n,
                                double lr, double beta, double dampening, double weight_decay,
                                bint nesterov, bint sklearn_style, int n_threads) noexcept nogil:
    cdef Py_ssize_t nb = n_blocks(n), b
    cdef floating lr_ = <floating>lr, beta_ = <floating>beta, wd = <floating>weight_decay
    cdef floating one_minus_damp = <floating>(1.0 - dampening)
    if nb == 1:
        momentum_block(p, g, v, lr_, beta_, one_minus_damp, wd, nesterov, sklearn_style, n)
    else:
        for b in prange(nb, schedule='static', num_threads=n_threads):
            momentum_block(p + b * BLOCK, g + b * BLOCK, v + b * BLOCK, lr_, beta_,
                           one_minus_damp, wd, nesterov, sklearn_style, block_len(n, b))


# ---- RMSprop -----------------------------------------------------------------------------------

cdef inline void rmsprop_block(floating* p, const floating* g, floating* s, floating lr,
                               floating beta, floating one_minus_b, floating eps, floating wd,
                               bint eps_inside, Py_ssize_t n) noexcept nogil:
    """S = βS + (1-β)dθ²; θ -= α dθ / sqrt(S + ε) (or / (sqrt(S) + ε)): optim_loops.h."""
    if floating is float:
        nn_rmsprop_loop_f32(p, g, s, lr, beta, one_minus_b, eps, wd, eps_inside, n)
    else:
        nn_rmsprop_loop_f64(p, g, s, lr, beta, one_minus_b, eps, wd, eps_inside, n)


cdef inline void rmsprop_apply(floating* p, const floating* g, floating* s, Py_ssize_t n,
                               double lr, double beta, double eps, double weight_decay,
                               bint eps_inside, int n_threads) noexcept nogil:
    cdef Py_ssize_t nb = n_blocks(n), b
    cdef floating lr_ = <floating>lr, beta_ = <floating>beta, eps_ = <floating>eps
    cdef floating wd = <floating>weight_decay
    cdef floating one_minus_b = <floating>(1.0 - beta)
    if nb == 1:
        rmsprop_block(p, g, s, lr_, beta_, one_minus_b, eps_, wd, eps_inside, n)
    else:
        for b in prange(nb, schedule='static', num_threads=n_threads):
            rmsprop_block(p + b * BLOCK, g + b * BLOCK, s + b * BLOCK, lr_, beta_, one_minus_b,
                          eps_, wd, eps_inside, block_len(n, b))


# ---- Adam --------------------------------------------------------------------------------------

cdef inline void adam_block(floating* p, const floating* g, floating* m, floating* v,
                            floating lr, floating beta1, floating one_minus_b1, floating beta2,
                            floating one_minus_b2, floating eps, floating wd, floating wd_factor,
                            floating bc1, floating bc2, bint eps_inside,
                            Py_ssize_t n) noexcept nogil:
    """New θ, V (m) and S (v); `wd_factor` = 1 - α·wd (AdamW) or 1, `wd` coupled or 0: the
    rule is in optim_loops.h. AdamW's decay θ·(1 - α·wd) is rounded on its own first, as
    torch's step does (a pass over the block, still in cache for the update): contracted into
    the update's subtraction it moved θ by an ulp in a quarter of the elements, which a float32
    training loop amplified to 12 times torch's own fused-against-for-loop spread."""
    cdef Py_ssize_t i
    if wd_factor != 1:
        for i in range(n):
            p[i] = p[i] * wd_factor
        wd_factor = 1
    if floating is float:
        nn_adam_loop_f32(p, g, m, v, lr, beta1, one_minus_b1, beta2, one_minus_b2, eps, wd,
                         wd_factor, bc1, bc2, eps_inside, n)
    else:
        nn_adam_loop_f64(p, g, m, v, lr, beta1, one_minus_b1, beta2, one_minus_b2, eps, wd,
                         wd_factor, bc1, bc2, eps_inside, n)


cdef inline void adam_apply(floating* p, const floating* g, floating* m, floating* v,
                            Py_ssize_t n, double lr, double beta1, double beta2, double eps,
                            double weight_decay, bint decoupled, double bias_correction1,
                            double bias_correction2, bint eps_inside,
                            int n_threads) noexcept nogil:
    cdef Py_ssize_t nb = n_blocks(n), b
    cdef floating wd_factor = <floating>(1.0 - lr * weight_decay) if decoupled else 1
    cdef floating wd = 0 if decoupled else <floating>weight_decay
    cdef floating lr_ = <floating>lr, b1 = <floating>beta1, b2 = <floating>beta2
    cdef floating one_minus_b1 = <floating>(1.0 - beta1)
    cdef floating one_minus_b2 = <floating>(1.0 - beta2)
    cdef floating eps_ = <floating>eps
    cdef floating bc1 = <floating>bias_correction1, bc2 = <floating>bias_correction2
    if nb == 1:
        adam_block(p, g, m, v, lr_, b1, one_minus_b1, b2, one_minus_b2, eps_, wd, wd_factor,
                   bc1, bc2, eps_inside, n)
    else:
        for b in prange(nb, schedule='static', num_threads=n_threads):
            adam_block(p + b * BLOCK, g + b * BLOCK, m + b * BLOCK, v + b * BLOCK, lr_, b1,
                       one_minus_b1, b2, one_minus_b2, eps_, wd, wd_factor, bc1, bc2,
                       eps_inside, block_len(n, b))
