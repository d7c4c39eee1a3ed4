"""Losses fused with the output delta, Numba kernels (same API as ``nnfast._reference.losses``).

Each kernel writes dJ/d(logits) into ``dout`` (may alias the logits) and returns the mean loss as
a Python float, accumulated in float64. Rows are processed one at a time (softmax: max, e^{z-max}
into ``dout``, float64 sum, scale), so each row is read from cache, not memory, after its first
pass. Sums that need reassociation to vectorize go through ``_fastmath.sum_span``/``dot_span``;
loops that only write stay free of reductions so that they vectorize with exp inside.
softmax_cross_entropy splits its rows over threads from PARALLEL_MIN elements; the other
losses run on one thread (batches of logits are small next to the GEMMs that make them).
"""
import math

import numpy as np
from numba import prange

from . import _fastmath as fm
from ._cache import njit
from ._fastmath import FASTMATH, PARALLEL_MIN, SUM_FASTMATH

_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}
_BLOCK = 1024   # elements per block of the elementwise losses' term buffer


@njit(**_JIT)
def _row_max(xi):
    mx = xi[0]
    for j in range(1, xi.size):
        if xi[j] > mx:
            mx = xi[j]
    return mx


@njit(**_JIT)
def _exp_shifted(xi, mx, out):
    for j in range(xi.size):
        out[j] = fm.exp(xi[j] - mx)


@njit(**_JIT)
def _scale(x, factor):
    for j in range(x.size):
        x[j] *= factor


@njit(**_JIT)
def _sce_row(xi, y, di, m):
    """One row of softmax_cross_entropy: writes di, returns log Σ e^{z - max} - (z_y - max)."""
    mx = _row_max(xi)
    zy = xi[y] - mx                      # read before di (maybe xi itself) is written
    _exp_shifted(xi, mx, di)
    s = fm.sum_span(di)
    _scale(di, fm.like(1.0 / (s * m), xi))
    di[y] -= fm.like(1.0 / m, xi)
    return math.log(s) - np.float64(zy)


@njit(**_JIT)
def _sce_serial(logits, labels, dout):
    """softmax_cross_entropy on the calling thread. The whole-step kernels (``step.py``) call
    this one: a cached function must never call a ``parallel=True`` one (see ``_cache``)."""
    m = logits.shape[0]
    total = 0.0
    for i in range(m):
        total += _sce_row(logits[i], labels[i], dout[i], m)
    return total / m


@njit(parallel=True, **_JIT)
def softmax_cross_entropy(logits, labels, dout):
    """J = -1/m Σ_i log softmax(z_i)[y_i];  δ = (softmax(z) - onehot(y)) / m.

    From PARALLEL_MIN elements the rows are split over threads (256x1000 float32: 1.8x the
    NumPy reference on one thread); per-row losses are summed in row order either way, so the
    result does not depend on the thread count."""
    m = logits.shape[0]
    if logits.size < PARALLEL_MIN:
        return _sce_serial(logits, labels, dout)
    rows = np.empty(m, np.float64)
    for i in prange(m):
        rows[i] = _sce_row(logits[i], labels[i], dout[i], m)
    total = 0.0
    for i in range(m):
        total += rows[i]
    return total / m


@njit(**_JIT)
def _probs_row(xi, ti, di, tmp, m):
    """One row of softmax_cross_entropy_probs; returns the row's loss, -Σ t log p."""
    mx = _row_max(xi)
    _exp_shifted(xi, mx, tmp)
    s = fm.sum_span(tmp)
    log_norm = math.log(s)
    t_sum = fm.sum_span(ti)
    # -Σ t (z - max - log_norm) = (max + log_norm) Σ t - Σ t z
    loss = (np.float64(mx) + log_norm) * t_sum - fm.dot_span(ti, xi)
    p_scale = fm.like(t_sum / s, xi)
    inv_m = fm.like(1.0 / m, xi)
    for j in range(di.size):                 # xi is not read any more: di may be xi
        di[j] = (tmp[j] * p_scale - ti[j]) * inv_m
    return loss


@njit(**_JIT)
def softmax_cross_entropy_probs(logits, targets, dout):
    """Same loss for target distributions (m, K); δ = (softmax(z)·Σt - t) / m."""
    m, k = logits.shape
    tmp = np.empty(k, logits.dtype)
    total = 0.0
    for i in range(m):
        total += _probs_row(logits[i], targets[i], dout[i], tmp, m)
    return total / m


@njit(**_JIT)
def _bce_block(z, t, dout, terms, inv_m):
    for j in range(z.size):
        e = fm.exp(-abs(z[j]))
        zero, one = fm.like(0.0, z), fm.like(1.0, z)
        terms[j] = max(z[j], zero) - z[j] * t[j] + fm.log1p_unit(e)
        s = e / (one + e)                    # σ(-|z|)
        # σ(z) - y without cancelling 1 - σ(|z|): the Cython backend's formula (losses.pyx)
        dout[j] = ((one - t[j]) - s if z[j] >= zero else s - t[j]) * inv_m


@njit(**_JIT)
def sigmoid_binary_cross_entropy(logits, targets, dout):
    """J = -1/m Σ [y log σ(z) + (1-y) log(1-σ(z))] as max(z,0) - zy + log(1 + e^{-|z|});
    δ = (σ(z) - y) / m."""
    m = logits.shape[0]
    z, t, d = logits.reshape(-1), targets.reshape(-1), dout.reshape(-1)
    terms = np.empty(min(_BLOCK, z.size), logits.dtype)
    inv_m = fm.like(1.0 / m, logits)
    total = 0.0
    for lo in range(0, z.size, _BLOCK):
        hi = min(lo + _BLOCK, z.size)
        _bce_block(z[lo:hi], t[lo:hi], d[lo:hi], terms[:hi - lo], inv_m)
        total += fm.sum_span(terms[:hi - lo])
    return total / m


@njit(fastmath=SUM_FASTMATH, error_model="numpy", cache=True)
def _mse(h, y, d, m):
    total = 0.0
    fm_m = fm.like(m, h)
    for j in range(h.size):
        diff = h[j] - y[j]
        total += np.float64(diff) * np.float64(diff)
        d[j] = diff / fm_m
    return total


@njit(**_JIT)
def mean_squared_error(pred, targets, dout):
    """The seed's J = 1/(2m) Σ (h - y)^2;  δ = (h - y) / m."""
    m = pred.shape[0]
    total = _mse(pred.reshape(-1), targets.reshape(-1), dout.reshape(-1), m)
    return total / (2 * m)


@njit(fastmath=SUM_FASTMATH, error_model="numpy", cache=True)
def sum_squares_scaled(w, scale, grad_out):
    """Returns Σ w^2 (float64) and writes ``grad_out = scale * w``."""
    s = fm.like(scale, w)
    total = 0.0
    for j in range(w.size):
        total += np.float64(w[j]) * np.float64(w[j])
        grad_out[j] = w[j] * s
    return total
