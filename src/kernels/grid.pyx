"""A λ grid's mini-batch step in one call (Cython backend of ``nnfast._numba.grid``: the same
functions and arguments; its docstring describes the model-major buffers).

For every model k — its weights, biases, gradients and workspace are row k of the (K, ·)
buffers, in ``MLP``'s layout — one pass without the GIL: forward (GEMM, + b, g), the loss with
its output delta (``loss_terms.pxd``, as ``losses.pyx``), backpropagation (dW = a_prevᵀ δ,
db = Σ δ, δ_prev = δ Wᵀ .* g') — ``model_pass.pxd``'s ``rows_pass``, shared with the row-chunked
step of ``pstep.pyx`` — and the L2 term λ_k/m · W with λ_k/(2m) Σ W² (Σ in double). The GEMMs
are ``blas.pxd``'s, on one BLAS call each per layer and model; the epilogues are the shared
blocks of ``kernel_common.pxd``. Compiled ahead of time: a sweep's first step costs no
compilation (the Numba kernel's first call in a process loads ~0.3 s of cached code).
"""
from cython cimport floating

from model_pass cimport (IDENTITY_OUT, SIGMOID_OUT, SOFTMAX_OUT, check_shape,
                        check_targets, count_sizes, l2_term, nn_delta_tt,
                        nn_set_delta_tt, rows_pass)


cdef double model_step(int output, const floating* X, const long long* labels,
                       const floating* t, const long long* sizes, Py_ssize_t L, Py_ssize_t m,
                       floating* W, floating* b, floating* dW, floating* db, floating* z,
                       floating* a, floating* d, int kind, floating slope,
                       double lam) noexcept nogil:
    """One model's forward, loss, backward and L2 term on the m rows of X; returns J."""
    cdef Py_ssize_t i, n_w = 0
    cdef double loss = rows_pass(output, X, labels, t, sizes, L, m, <floating>(1.0 / m), W, b,
                                 dW, db, z, a, d, kind, slope)
    loss = loss / (2 * m) if output == IDENTITY_OUT else loss / m
    for i in range(L):
        n_w += sizes[i] * sizes[i + 1]
    return loss + l2_term(dW, W, n_w, m, lam)


cdef double run(int output, const floating[:, ::1] X, const long long* labels,
                const floating* t, const long long[::1] sizes, floating[:, ::1] weights,
                floating[:, ::1] biases, floating[:, ::1] dweights, floating[:, ::1] dbiases,
                floating[:, ::1] zbuf, floating[:, ::1] abuf, floating[:, ::1] dbuf, int kind,
                double slope, const double[::1] lambdas) except? -1:
    cdef Py_ssize_t K = lambdas.shape[0], L = sizes.shape[0] - 1, m = X.shape[0], k, i
    cdef Py_ssize_t n_w = 0, n_b = 0, n_z = 0
    cdef double total = 0
    count_sizes(sizes, X.shape[1], 0, &n_w, &n_b)
    n_z = m * n_b
    check_shape("weights", weights.shape[0], weights.shape[1], K, n_w)
    check_shape("dweights", dweights.shape[0], dweights.shape[1], K, n_w)
    check_shape("biases", biases.shape[0], biases.shape[1], K, n_b)
    check_shape("dbiases", dbiases.shape[0], dbiases.shape[1], K, n_b)
    check_shape("zbuf", zbuf.shape[0], zbuf.shape[1], K, n_z)
    check_shape("abuf", abuf.shape[0], abuf.shape[1], K, n_z)
    check_shape("dbuf", dbuf.shape[0], dbuf.shape[1], K, n_z)
    if m == 0 or K == 0:
        return 0.0
    with nogil:
        for k in range(K):
            total += model_step(output, &X[0, 0], labels, t, &sizes[0], L, m, &weights[k, 0],
                                &biases[k, 0], &dweights[k, 0], &dbiases[k, 0], &zbuf[k, 0],
                                &abuf[k, 0], &dbuf[k, 0], kind, <floating>slope, lambdas[k])
    return total


def softmax_grid(const floating[:, ::1] X, const long long[::1] y, const long long[::1] sizes,
                 floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                 floating[:, ::1] dbiases, floating[:, ::1] zbuf, floating[:, ::1] abuf,
                 floating[:, ::1] dbuf, int kind, double slope, const double[::1] lambdas):
    """Every model's step on int64 labels ``y`` (in [0, sizes[-1])); returns Σ_k J_k."""
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows, X {X.shape[0]}")
    return run(SOFTMAX_OUT, X, &y[0] if y.shape[0] else NULL, <floating*>NULL, sizes, weights,
               biases, dweights, dbiases, zbuf, abuf, dbuf, kind, slope, lambdas)


def sigmoid_grid(const floating[:, ::1] X, const floating[:, ::1] y, const long long[::1] sizes,
                 floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                 floating[:, ::1] dbiases, floating[:, ::1] zbuf, floating[:, ::1] abuf,
                 floating[:, ::1] dbuf, int kind, double slope, const double[::1] lambdas):
    """Every model's step on float targets ``y`` (m, outputs), binary cross-entropy."""
    check_targets(X.shape[0], y.shape[0], y.shape[1], sizes[sizes.shape[0] - 1])
    return run(SIGMOID_OUT, X, <long long*>NULL, &y[0, 0] if y.shape[0] else NULL, sizes,
               weights, biases, dweights, dbiases, zbuf, abuf, dbuf, kind, slope, lambdas)


def identity_grid(const floating[:, ::1] X, const floating[:, ::1] y, const long long[::1] sizes,
                  floating[:, ::1] weights, floating[:, ::1] biases, floating[:, ::1] dweights,
                  floating[:, ::1] dbiases, floating[:, ::1] zbuf, floating[:, ::1] abuf,
                  floating[:, ::1] dbuf, int kind, double slope, const double[::1] lambdas):
    """Every model's step on float targets ``y`` (m, outputs), the seed's squared error."""
    check_targets(X.shape[0], y.shape[0], y.shape[1], sizes[sizes.shape[0] - 1])
    return run(IDENTITY_OUT, X, <long long*>NULL, &y[0, 0] if y.shape[0] else NULL, sizes,
               weights, biases, dweights, dbiases, zbuf, abuf, dbuf, kind, slope, lambdas)


def set_delta_gemm(int choice):
    """How this module's model pass computes δ_prev = δ Wᵀ: 1 TT on δᵀ, 0 TN, -1 the CPU's
    choice (``src/kernels/cpu.h``). For tests: ``nnfast._cython.step.set_delta_gemm``."""
    nn_set_delta_tt(choice)


def delta_gemm():
    """1 if this module's model pass computes δ_prev as a TT GEMM, 0 if as TN."""
    return nn_delta_tt()
