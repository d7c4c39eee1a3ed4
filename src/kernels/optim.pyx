"""Fused optimizer updates (Cython backend of nnfast._reference.optim), in place on 1-D arrays.

Design: one pass over memory per update. The per-element rule of each optimizer is a
`cdef inline ... noexcept nogil` function that returns the new parameter (and updates its state
through pointers) — for Adam and RMSprop a C loop in optim_loops.h, compiled per CPU level;
`*_block` loops it over a contiguous block (gcc vectorizes the loop and
unswitches the loop-invariant flags), and `*_apply` runs the block serially below
PARALLEL_MIN elements or over fixed blocks in a prange above — all in optim_apply.pxd, shared
with epoch.pyx (an epoch's steps in one call). The arithmetic follows the reference's operation
order in the array's dtype (scalars rounded to it first, as NumPy does with
Python floats), so float32 results match it to an ulp or so. `grad` is only read; param and the
state arrays are written, and are distinct arrays (validated by nnfast.updates).
"""

from cython cimport floating

from optim_apply cimport adam_apply, momentum_apply, rmsprop_apply, sgd_apply


def sgd_update(floating[::1] param,          # IN/OUT
               const floating[::1] grad,     # IN
               double lr, double weight_decay, int n_threads=1):
    """θ = θ - α (dθ + wd·θ)."""
    cdef Py_ssize_t n = param.shape[0]
    if n == 0:
        return
    with nogil:
        sgd_apply(&param[0], &grad[0], n, lr, weight_decay, n_threads)


def momentum_update(floating[::1] param,         # IN/OUT
                    const floating[::1] grad,    # IN
                    floating[::1] velocity,      # IN/OUT
                    double lr, double beta, double dampening, double weight_decay,
                    bint nesterov, bint sklearn_style, int n_threads=1):
    """Momentum (torch.optim.SGD form; the seed's is dampening = β; or scikit-learn's)."""
    cdef Py_ssize_t n = param.shape[0]
    if n == 0:
        return
    with nogil:
        momentum_apply(&param[0], &grad[0], &velocity[0], n, lr, beta, dampening,
                       weight_decay, nesterov, sklearn_style, n_threads)


def rmsprop_update(floating[::1] param,        # IN/OUT
                   const floating[::1] grad,   # IN
                   floating[::1] sq,           # IN/OUT
                   double lr, double beta, double eps, double weight_decay, bint eps_inside,
                   int n_threads=1):
    """RMSprop, the seed's (eps inside the root) or torch's (outside)."""
    cdef Py_ssize_t n = param.shape[0]
    if n == 0:
        return
    with nogil:
        rmsprop_apply(&param[0], &grad[0], &sq[0], n, lr, beta, eps, weight_decay, eps_inside,
                      n_threads)


def adam_update(floating[::1] param,         # IN/OUT
                const floating[::1] grad,    # IN
                floating[::1] m,             # IN/OUT
                floating[::1] v,             # IN/OUT
                double lr, double beta1, double beta2, double eps, double weight_decay,
                bint decoupled, double bias_correction1, double bias_correction2,
                bint eps_inside, int n_threads=1):
    """Adam / AdamW with bias correction (the caller passes 1 - β^t)."""
    cdef Py_ssize_t n = param.shape[0]
    if n == 0:
        return
    with nogil:
        adam_apply(&param[0], &grad[0], &m[0], &v[0], n, lr, beta1, beta2, eps, weight_decay,
                   decoupled, bias_correction1, bias_correction2, eps_inside, n_threads)
