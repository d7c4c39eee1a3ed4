"""Activations and their derivatives (seed: "Activation Functions"), Numba kernels.

Same functions and arguments as ``nnfast._reference.activations``: elementwise kernels take 1-D
``x`` and ``out`` (``out`` may be ``x``); ``softmax`` takes 2-D arrays and works along rows.

Layout of this file: each elementwise function is a ``_<name>_span(x, out)`` loop (one
vectorized loop; it is given views, because indexing with an offset ``lo + i`` costs a
negative-index fix-up per element: measured 4x slower) and the public kernel, which runs the
span on one thread below ``PARALLEL_MIN`` elements and over fixed ``CHUNK``-long pieces with
``prange`` above it. Re-measured for float32 tanh at 1e6 elements: 2 threads 155 µs against
291 µs serial while the second core was idle, but with one busy process on it the parallel median
went to 0.9-4 ms (serial stayed ~0.3 ms), so 1e6 stays serial (``PARALLEL_MIN`` = 2**20).
exp/tanh/sigmoid come from ``_fastmath`` (vectorizable; ``math.exp`` is not). Numba's on-disk
cache does not notice changes to ``_fastmath.py`` (the functions are inlined here): after changing
it, edit this file too or delete ``__pycache__``.
"""
from numba import prange

from . import _fastmath as fm
from ._cache import njit
from ._fastmath import CHUNK, FASTMATH, PARALLEL_MIN

_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}
_PAR = dict(_JIT, parallel=True)


@njit(**_JIT)
def _sigmoid_span(x, out):
    for i in range(x.size):
        out[i] = fm.sigmoid(x[i])


@njit(**_PAR)
def sigmoid(x, out):
    """a = 1 / (1 + e^{-z}), from e^{-|z|}: no overflow for any z."""
    n = x.size
    if n < PARALLEL_MIN:
        _sigmoid_span(x, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _sigmoid_span(x[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _sigmoid_grad_span(a, out):
    for i in range(a.size):
        out[i] = a[i] * (fm.like(1.0, a) - a[i])


@njit(**_PAR)
def sigmoid_grad(a, out):
    """g'(z) = a(1 - a)."""
    n = a.size
    if n < PARALLEL_MIN:
        _sigmoid_grad_span(a, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _sigmoid_grad_span(a[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _tanh_span(x, out):
    for i in range(x.size):
        out[i] = fm.tanh(x[i])


@njit(**_PAR)
def tanh(x, out):
    """a = tanh(z). float32: one rational function of z (no exp; ``_fastmath._tanh_f32``);
    float64: rational near 0, 1 - 2/(e^{2|z|} + 1) with the sign restored beyond."""
    n = x.size
    if n < PARALLEL_MIN:
        _tanh_span(x, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _tanh_span(x[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _tanh_grad_span(a, out):
    for i in range(a.size):
        out[i] = fm.like(1.0, a) - a[i] * a[i]


@njit(**_PAR)
def tanh_grad(a, out):
    """g'(z) = 1 - a^2."""
    n = a.size
    if n < PARALLEL_MIN:
        _tanh_grad_span(a, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _tanh_grad_span(a[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _relu_span(x, out):
    for i in range(x.size):
        zero = fm.like(0.0, x)
        out[i] = zero if x[i] < zero else x[i]   # NaN stays NaN, as in np.maximum


@njit(**_PAR)
def relu(x, out):
    """g(z) = max(0, z); NaN propagates."""
    n = x.size
    if n < PARALLEL_MIN:
        _relu_span(x, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _relu_span(x[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _relu_grad_span(z, out):
    for i in range(z.size):
        out[i] = fm.like(1.0, z) if z[i] >= fm.like(0.0, z) else fm.like(0.0, z)


@njit(**_PAR)
def relu_grad(z, out):
    """g'(z) = 1 if z >= 0 else 0 (NaN -> 0, as ``z >= 0`` is False)."""
    n = z.size
    if n < PARALLEL_MIN:
        _relu_grad_span(z, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _relu_grad_span(z[c * CHUNK:(c + 1) * CHUNK], out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _leaky_relu_span(x, slope, out):
    for i in range(x.size):
        out[i] = x[i] if x[i] >= fm.like(0.0, x) else x[i] * slope


@njit(**_PAR)
def leaky_relu(x, slope, out):
    """g(z) = z if z >= 0 else slope * z."""
    n = x.size
    s = fm.like(slope, x)
    if n < PARALLEL_MIN:
        _leaky_relu_span(x, s, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _leaky_relu_span(x[c * CHUNK:(c + 1) * CHUNK], s, out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def _leaky_relu_grad_span(z, slope, out):
    for i in range(z.size):
        out[i] = fm.like(1.0, z) if z[i] >= fm.like(0.0, z) else slope


@njit(**_PAR)
def leaky_relu_grad(z, slope, out):
    """g'(z) = 1 if z >= 0 else slope."""
    n = z.size
    s = fm.like(slope, z)
    if n < PARALLEL_MIN:
        _leaky_relu_grad_span(z, s, out)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK):
            _leaky_relu_grad_span(z[c * CHUNK:(c + 1) * CHUNK], s, out[c * CHUNK:(c + 1) * CHUNK])
    return out


@njit(**_JIT)
def softmax_rows(x, out):
    """Row-wise softmax: max, e^{x - max} into out, float64 sum, scale by its reciprocal."""
    for i in range(x.shape[0]):
        xi, oi = x[i], out[i]
        mx = xi[0]
        for j in range(1, xi.size):
            if xi[j] > mx:
                mx = xi[j]
        for j in range(xi.size):
            oi[j] = fm.exp(xi[j] - mx)
        inv = fm.like(1.0 / fm.sum_span(oi), mx)
        for j in range(oi.size):
            oi[j] *= inv
    return out


@njit(**_PAR)
def softmax(x, out):
    """sigma(z)_j = e^{z_j - max z} / sum_k e^{z_k - max z}, row-wise; ``out`` may be ``x``."""
    m, k = x.shape
    if k == 0:
        return out
    rows = max(1, CHUNK // k)
    if m * k < PARALLEL_MIN:
        softmax_rows(x, out)
    else:
        for c in prange((m + rows - 1) // rows):
            softmax_rows(x[c * rows:(c + 1) * rows], out[c * rows:(c + 1) * rows])
    return out
