"""Activations and their derivatives (Cython backend of nnfast._reference.activations).

Design: every elementwise function is one call to `run_unary`, which runs the shared serial block
loop `unary_block` (kernel_common.pxd) over the whole array below PARALLEL_MIN elements, or over
fixed BLOCK-sized blocks in a `prange` above it. exp/tanh/sigmoid are the vectorizable versions of
fastmath.h, not libm: NumPy's own exp/tanh are SIMD, a scalar libm call per element is 4-40x
slower. `out` may be the input array (same index read then written). Softmax works row by row,
rows split across threads above PARALLEL_MIN elements. Inputs are validated by nnfast.activations.
"""
from cython cimport floating
from cython.parallel cimport prange

from kernel_common cimport (BLOCK, GRAD, IDENTITY, LEAKY_RELU, PARALLEL_MIN, RELU, SIGMOID, TANH,
                            NN_HAVE_OPENMP, block_len, n_blocks, softmax_rows,
                            unary_block)

#: Whether this build has OpenMP (nnfast._cython.HAVE_OPENMP reads it).
HAVE_OPENMP = bool(NN_HAVE_OPENMP)


cdef void run_unary(int op, floating slope,
                    const floating[::1] x,      # IN
                    floating[::1] out,          # OUT (may be x)
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], nb = n_blocks(n), b
    if n == 0:
        return
    cdef const floating* xp = &x[0]
    cdef floating* op_ = &out[0]
    if nb == 1:
        unary_block(op, slope, xp, op_, n)
    else:
        for b in prange(nb, schedule='static', num_threads=n_threads):
            unary_block(op, slope, xp + b * BLOCK, op_ + b * BLOCK, block_len(n, b))


def sigmoid(const floating[::1] x, floating[::1] out, int n_threads=1):
    """a = 1 / (1 + e^{-z}), without overflow for any z."""
    with nogil:
        run_unary(SIGMOID, <floating>0, x, out, n_threads)
    return out.base


def sigmoid_grad(const floating[::1] a, floating[::1] out, int n_threads=1):
    """g'(z) = a(1 - a)."""
    with nogil:
        run_unary(GRAD + SIGMOID, <floating>0, a, out, n_threads)
    return out.base


def tanh(const floating[::1] x, floating[::1] out, int n_threads=1):
    """a = tanh(z)."""
    with nogil:
        run_unary(TANH, <floating>0, x, out, n_threads)
    return out.base


def tanh_grad(const floating[::1] a, floating[::1] out, int n_threads=1):
    """g'(z) = 1 - a^2."""
    with nogil:
        run_unary(GRAD + TANH, <floating>0, a, out, n_threads)
    return out.base


def relu(const floating[::1] x, floating[::1] out, int n_threads=1):
    """g(z) = max(0, z)."""
    with nogil:
        run_unary(RELU, <floating>0, x, out, n_threads)
    return out.base


def relu_grad(const floating[::1] z, floating[::1] out, int n_threads=1):
    """g'(z) = 0 if z < 0, 1 if z >= 0."""
    with nogil:
        run_unary(GRAD + RELU, <floating>0, z, out, n_threads)
    return out.base


def leaky_relu(const floating[::1] x, double slope, floating[::1] out, int n_threads=1):
    """g(z) = z if z >= 0 else slope * z."""
    with nogil:
        run_unary(LEAKY_RELU, <floating>slope, x, out, n_threads)
    return out.base


def leaky_relu_grad(const floating[::1] z, double slope, floating[::1] out, int n_threads=1):
    """g'(z) = 1 if z >= 0 else slope."""
    with nogil:
        run_unary(GRAD + LEAKY_RELU, <floating>slope, z, out, n_threads)
    return out.base


def softmax(const floating[:, ::1] x, floating[:, ::1] out, int n_threads=1):
    """Row-wise softmax of (n, k) x; out may be x."""
    cdef Py_ssize_t n = x.shape[0], k = x.shape[1], rows, nb, b
    if n == 0 or k == 0:
        return out.base
    cdef const floating* xp = &x[0, 0]
    cdef floating* op_ = &out[0, 0]
    if n * k < PARALLEL_MIN or n == 1:
        with nogil:
            softmax_rows(xp, op_, n, k)
        return out.base
    rows = max(1, BLOCK // k)          # rows per block
    nb = (n + rows - 1) // rows
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        softmax_rows(xp + b * rows * k, op_ + b * rows * k, min(rows, n - b * rows), k)
    return out.base
