"""Dense layers, Numba backend (same API as ``nnfast._reference.dense``).

The GEMMs go to BLAS through ``np.matmul`` (Numba's own ``np.dot`` would call the same BLAS,
with a compile for each layout); what is compiled here is the epilogue that follows each GEMM,
in one pass over its result: forward ``z += b; a = g(z)``, backward ``δ_prev *= g'(·)``, and the
bias gradient ``db = Σ_rows δ`` (rows outer, columns inner, float64 accumulator).
"""
import numpy as np

from .._constants import IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH
from . import _fastmath as fm
from ._cache import njit
from ._fastmath import FASTMATH
from .activations import softmax_rows

_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}


@njit(**_JIT)
def _bias_act_row(zi, b, kind, slope, ai):
    """zi += b (if b is not None), then ai = g(zi); ai may be zi."""
    if b is not None:
        for j in range(zi.size):
            zi[j] += b[j]
    zero = fm.like(0.0, zi)
    if kind == SIGMOID:
        for j in range(zi.size):
            ai[j] = fm.sigmoid(zi[j])
    elif kind == TANH:
        for j in range(zi.size):
            ai[j] = fm.tanh(zi[j])
    elif kind == RELU:
        for j in range(zi.size):
            ai[j] = zero if zi[j] < zero else zi[j]
    elif kind == LEAKY_RELU:
        for j in range(zi.size):
            ai[j] = zi[j] if zi[j] >= zero else zi[j] * slope
    elif kind == SOFTMAX:
        softmax_rows(zi.reshape((1, zi.size)), ai.reshape((1, ai.size)))
    else:
        for j in range(zi.size):
            ai[j] = zi[j]


# The epilogues run on the calling thread at every size: the GEMM before them has just used
# every core through BLAS, and OpenMP threads left spinning after a parallel epilogue slowed the
# next GEMM down (dense_forward 1e6 elements, `nnfast bench`: 0.65x the NumPy reference with a
# parallel epilogue, against 1.4x at 1e5 where it was serial).
@njit(**_JIT)
def _epilogue(z, b, kind, slope, a):
    s = fm.like(slope, z)
    for i in range(z.shape[0]):
        _bias_act_row(z[i], b, kind, s, a[i])


def dense_forward(a, W, b, kind, slope, z_out, a_out):
    """z = a W + b (seed: z = Θ a), then a_out = g(z); ``a_out`` may be ``z_out``."""
    np.matmul(a, W, out=z_out)
    _epilogue(z_out, b, kind, slope, a_out)
    return a_out


@njit(**_JIT)
def _times_grad_row(di, src, kind, slope):
    """di *= g'(·) from src: a(1-a), 1-a², [z>=0], [z>=0 ? 1 : slope]."""
    one, zero = fm.like(1.0, di), fm.like(0.0, di)
    if kind == SIGMOID:
        for j in range(di.size):
            di[j] *= src[j] * (one - src[j])
    elif kind == TANH:
        for j in range(di.size):
            di[j] *= one - src[j] * src[j]
    elif kind == RELU:
        for j in range(di.size):
            di[j] = di[j] if src[j] >= zero else zero * di[j]
    elif kind == LEAKY_RELU:
        for j in range(di.size):
            di[j] = di[j] if src[j] >= zero else slope * di[j]


@njit(**_JIT)
def _times_grad(d, src, kind, slope):
    s = fm.like(slope, d)
    for i in range(d.shape[0]):
        _times_grad_row(d[i], src[i], kind, s)


@njit(**_JIT)
def _column_sums(x, out):
    acc = np.zeros(x.shape[1], np.float64)
    for i in range(x.shape[0]):
        xi = x[i]
        for j in range(acc.size):
            acc[j] += xi[j]
    for j in range(acc.size):
        out[j] = acc[j]


def dense_backward(delta, a_prev, W, dW_out, db_out, dprev_out, kind_prev, slope, grad_src):
    """dW = a_prevᵀ δ;  db = Σ_rows δ (skipped if ``db_out`` is None);
    δ_prev = (δ Wᵀ) .* g'(·) (skipped if ``dprev_out`` is None)."""
    np.matmul(a_prev.T, delta, out=dW_out)
    if db_out is not None:
        _column_sums(delta, db_out)
    if dprev_out is not None:
        np.matmul(delta, W.T, out=dprev_out)
        if kind_prev != IDENTITY:
            _times_grad(dprev_out, grad_src, kind_prev, slope)
    return dW_out
