"""Batch normalization (Cython backend of nnfast._reference.batchnorm).

Design: z is (m, n), one feature per column, statistics over the m rows. Column statistics are
accumulated row by row into per-feature accumulators (the inner loop runs along a contiguous row,
so it vectorizes), in the array's dtype and in the same order as NumPy's axis-0 reduction; the
elementwise passes (normalize, scale and shift; the backward formula) then run over row blocks,
in a prange above PARALLEL_MIN elements. `dz_out` may be `dout` (each element read then written);
the inference `out` may be `z`.
"""
from cython cimport floating
from cython.parallel cimport prange
import numpy as np

from kernel_common cimport BLOCK, PARALLEL_MIN, fsqrt



cdef inline Py_ssize_t rows_per_block(Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    if m * n < PARALLEL_MIN:
        return m if m > 0 else 1
    return max(1, BLOCK // max(n, 1))


cdef void affine_rows(const floating* z, const floating* shift, const floating* scale,
                      const floating* gamma, const floating* beta, floating* xhat, floating* out,
                      Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """xhat = (z - shift)·scale and out = xhat·γ + β; or, with xhat and gamma NULL,
    out = (z - shift)·scale + β (then `scale` already holds γ/sqrt(σ²+ε))."""
    cdef Py_ssize_t i, j
    cdef floating x
    for i in range(rows):
        if xhat != NULL:
            for j in range(n):
                x = (z[j] - shift[j]) * scale[j]
                xhat[j] = x
                out[j] = x * gamma[j] + beta[j]
            xhat += n
        else:
            for j in range(n):
                out[j] = (z[j] - shift[j]) * scale[j] + beta[j]
        z += n
        out += n


def batchnorm_forward_train(const floating[:, ::1] z,       # IN (m, n)
                            const floating[::1] gamma,      # IN (n,)
                            const floating[::1] beta,       # IN (n,)
                            double eps,
                            floating[:, ::1] out,           # OUT (m, n)
                            floating[:, ::1] xhat_out,      # OUT (m, n)
                            floating[::1] mean_out,         # OUT (n,)
                            floating[::1] invstd_out,       # OUT (n,)
                            int n_threads=1):
    """x̂ = (z - μ_B)/sqrt(σ²_B + ε), out = γx̂ + β; returns the biased batch variance (n,)."""
    cdef Py_ssize_t m = z.shape[0], n = z.shape[1], i, j, rows, nb, b
    var_arr = np.zeros(n, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] var = var_arr
    cdef floating x
    if n == 0 or m == 0:
        return var_arr
    with nogil:
        for j in range(n):
            mean_out[j] = 0
        for i in range(m):
            for j in range(n):
                mean_out[j] = mean_out[j] + z[i, j]
        for j in range(n):
            mean_out[j] = mean_out[j] / m
        for i in range(m):
            for j in range(n):
                x = z[i, j] - mean_out[j]
                var[j] = var[j] + x * x
        for j in range(n):
            var[j] = var[j] / m
            invstd_out[j] = 1 / fsqrt(var[j] + <floating>eps)
    rows = rows_per_block(m, n)
    nb = (m + rows - 1) // rows
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        affine_rows(&z[b * rows, 0], &mean_out[0], &invstd_out[0], &gamma[0], &beta[0],
                    &xhat_out[b * rows, 0], &out[b * rows, 0], min(rows, m - b * rows), n)
    return var_arr


def batchnorm_forward_infer(const floating[:, ::1] z,              # IN (m, n)
                            const floating[::1] gamma,             # IN
                            const floating[::1] beta,              # IN
                            const floating[::1] running_mean,      # IN
                            const floating[::1] running_var,       # IN
                            double eps,
                            floating[:, ::1] out,                  # OUT, may be z
                            int n_threads=1):
    """out = γ (z - running_mean)/sqrt(running_var + ε) + β."""
    cdef Py_ssize_t m = z.shape[0], n = z.shape[1], j, rows, nb, b
    if n == 0 or m == 0:
        return out.base
    cdef floating[::1] scale = np.empty(n, dtype=np.float32 if floating is float else np.float64)
    with nogil:
        for j in range(n):
            scale[j] = gamma[j] / fsqrt(running_var[j] + <floating>eps)
    rows = rows_per_block(m, n)
    nb = (m + rows - 1) // rows
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        affine_rows(&z[b * rows, 0], &running_mean[0], &scale[0], <const floating*>NULL,
                    &beta[0], <floating*>NULL, &out[b * rows, 0], min(rows, m - b * rows), n)
    return out.base


cdef void backward_rows(const floating* dout, const floating* xhat, const floating* scale,
                        const floating* dbeta, const floating* dgamma, floating fm,
                        floating* dz, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(n):
            dz[j] = scale[j] * (fm * dout[j] - dbeta[j] - xhat[j] * dgamma[j])
        dout += n
        xhat += n
        dz += n


def batchnorm_backward(const floating[:, ::1] dout,      # IN (m, n)
                       const floating[:, ::1] xhat,      # IN (m, n)
                       const floating[::1] gamma,        # IN (n,)
                       const floating[::1] invstd,       # IN (n,)
                       floating[:, ::1] dz_out,          # OUT (m, n), may be dout
                       floating[::1] dgamma_out,         # OUT (n,)
                       floating[::1] dbeta_out,          # OUT (n,)
                       int n_threads=1):
    """dβ = Σ dout, dγ = Σ dout·x̂, dz = γ·invstd/m · (m·dout - dβ - x̂·dγ)."""
    cdef Py_ssize_t m = dout.shape[0], n = dout.shape[1], i, j, rows, nb, b
    if n == 0:
        return dz_out.base
    cdef floating[::1] scale = np.empty(n, dtype=np.float32 if floating is float else np.float64)
    with nogil:
        for j in range(n):
            dbeta_out[j] = 0
            dgamma_out[j] = 0
        for i in range(m):
            for j in range(n):
                dbeta_out[j] = dbeta_out[j] + dout[i, j]
                dgamma_out[j] = dgamma_out[j] + dout[i, j] * xhat[i, j]
        for j in range(n):
            scale[j] = gamma[j] * invstd[j] / m
    if m == 0:
        return dz_out.base
    rows = rows_per_block(m, n)
    nb = (m + rows - 1) // rows
    for b in prange(nb, schedule='static', nogil=True, num_threads=n_threads):
        backward_rows(&dout[b * rows, 0], &xhat[b * rows, 0], &scale[0], &dbeta_out[0],
                      &dgamma_out[0], <floating>m, &dz_out[b * rows, 0], min(rows, m - b * rows),
                      n)
    return dz_out.base
