"""Batch normalization, Numba backend (same API as ``nnfast._reference.batchnorm``).

``z`` is (m, n), one feature per column. Column statistics are accumulated rows outer, columns
inner (a contiguous, vectorized inner loop; a column-at-a-time loop would stride through memory)
into float64 accumulators, mean first, then the centred variance (two passes, as the reference:
no cancellation from E[z²] - E[z]²).
"""
import numpy as np

from . import _fastmath as fm
from ._cache import njit
from ._fastmath import SQRT_FASTMATH

_JIT = {"fastmath": SQRT_FASTMATH, "error_model": "numpy", "cache": True}


@njit(**_JIT)
def _add_row(acc, row):
    for j in range(acc.size):
        acc[j] += row[j]


@njit(**_JIT)
def _add_sq_row(acc, row, mean):
    for j in range(acc.size):
        c = np.float64(row[j]) - mean[j]
        acc[j] += c * c


@njit(**_JIT)
def batchnorm_forward_train(z, gamma, beta, eps, out, xhat_out, mean_out, invstd_out):
    """x̂ = (z - μ_B) / sqrt(σ²_B + ε), out = γ x̂ + β; writes μ_B and 1/sqrt(σ²_B + ε);
    returns the biased batch variance (n,)."""
    m, n = z.shape
    mean = np.zeros(n, np.float64)
    for i in range(m):
        _add_row(mean, z[i])
    mean /= m
    var = np.zeros(n, np.float64)
    for i in range(m):
        _add_sq_row(var, z[i], mean)
    var /= m
    for j in range(n):
        mean_out[j] = mean[j]
        invstd_out[j] = 1.0 / np.sqrt(var[j] + eps)
    mu = mean_out
    for i in range(m):
        zi, xi, oi = z[i], xhat_out[i], out[i]
        for j in range(n):
            x = (zi[j] - mu[j]) * invstd_out[j]
            xi[j] = x
            oi[j] = x * gamma[j] + beta[j]
    return var.astype(z.dtype)


@njit(**_JIT)
def batchnorm_forward_infer(z, gamma, beta, running_mean, running_var, eps, out):
    """out = γ (z - running_mean) / sqrt(running_var + ε) + β; ``out`` may be ``z``."""
    m, n = z.shape
    e = fm.like(eps, z)
    scale = np.empty(n, z.dtype)
    for j in range(n):
        scale[j] = gamma[j] / np.sqrt(running_var[j] + e)
    for i in range(m):
        zi, oi = z[i], out[i]
        for j in range(n):
            oi[j] = (zi[j] - running_mean[j]) * scale[j] + beta[j]
    return out


@njit(**_JIT)
def _add_prod_row(acc, a, b):
    for j in range(acc.size):
        acc[j] += np.float64(a[j]) * np.float64(b[j])


@njit(**_JIT)
def batchnorm_backward(dout, xhat, gamma, invstd, dz_out, dgamma_out, dbeta_out):
    """dβ = Σ dout, dγ = Σ dout·x̂, dz = γ·invstd/m · (m·dout - dβ - x̂·dγ);
    ``dz_out`` may be ``dout``."""
    m, n = dout.shape
    dbeta = np.zeros(n, np.float64)
    dgamma = np.zeros(n, np.float64)
    for i in range(m):
        _add_row(dbeta, dout[i])
        _add_prod_row(dgamma, dout[i], xhat[i])
    scale = np.empty(n, dout.dtype)
    fm_m = fm.like(m, dout)
    for j in range(n):
        dbeta_out[j] = dbeta[j]
        dgamma_out[j] = dgamma[j]
        scale[j] = gamma[j] * invstd[j] / fm_m
    for i in range(m):
        di, xi, oi = dout[i], xhat[i], dz_out[i]
        for j in range(n):
            oi[j] = scale[j] * (fm_m * di[j] - dbeta_out[j] - xi[j] * dgamma_out[j])
    return dz_out
