"""Activations and their derivatives (seed: "Activation Functions"), Numba kernels.

Same functions and arguments as ``nnfast._reference.activations``: elementwise kernels take 1-D
``x`` and ``out`` (``out`` may be ``x``); ``softmax`` takes 2-D arrays and works along rows.

Layout of this file: each elementwise function is a ``_<name>_span(x, out)`` loop (one
vectorized loop) and the public kernel, which hands it to ``_blocks.in_blocks``: one thread below
``PARALLEL_MIN`` elements, fixed ``BLOCK``-long pieces on threads above it. exp/tanh/sigmoid come
from ``_fastmath`` (vectorizable; ``math.exp`` is not); ``_cache`` keys every kernel on all the
backend's sources, so a change there recompiles these.
"""
from numba import prange

from . import _fastmath as fm
from ._blocks import in_blocks
from ._cache import njit
from ._fastmath import BLOCK, FASTMATH, PARALLEL_MIN

_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True}
_PAR = dict(_JIT, parallel=True)


@njit(**_JIT)
def _sigmoid_span(x, out):
    for i in range(x.size):
        out[i] = fm.sigmoid(x[i])


@njit(**_PAR)
def sigmoid(x, out):
    """a = 1 / (1 + e^{-z}), from e^{-|z|}: no overflow for any z."""
    in_blocks(_sigmoid_span, (x, out), ())
    return out


@njit(**_JIT)
def _sigmoid_grad_span(a, out):
    for i in range(a.size):
        out[i] = a[i] * (fm.like(1.0, a) - a[i])


@njit(**_PAR)
def sigmoid_grad(a, out):
    """g'(z) = a(1 - a)."""
    in_blocks(_sigmoid_grad_span, (a, out), ())
    return out


@njit(**_JIT)
def _tanh_span(x, out):
    for i in range(x.size):
        out[i] = fm.tanh(x[i])


@njit(**_PAR)
def tanh(x, out):
    """a = tanh(z). float32: one rational function of z (no exp; ``_fastmath._tanh_f32``);
    float64: rational near 0, 1 - 2/(e^{2|z|} + 1) with the sign restored beyond."""
    in_blocks(_tanh_span, (x, out), ())
    return out


@njit(**_JIT)
def _tanh_grad_span(a, out):
    for i in range(a.size):
        out[i] = fm.like(1.0, a) - a[i] * a[i]


@njit(**_PAR)
def tanh_grad(a, out):
    """g'(z) = 1 - a^2."""
    in_blocks(_tanh_grad_span, (a, out), ())
    return out


@njit(**_JIT)
def _relu_span(x, out):
    for i in range(x.size):
        zero = fm.like(0.0, x)
        out[i] = zero if x[i] < zero else x[i]   # NaN stays NaN, as in np.maximum


@njit(**_PAR)
def relu(x, out):
    """g(z) = max(0, z); NaN propagates."""
    in_blocks(_relu_span, (x, out), ())
    return out


@njit(**_JIT)
def _relu_grad_span(z, out):
    for i in range(z.size):
        out[i] = fm.like(1.0, z) if z[i] >= fm.like(0.0, z) else fm.like(0.0, z)


@njit(**_PAR)
def relu_grad(z, out):
    """g'(z) = 1 if z >= 0 else 0 (NaN -> 0, as ``z >= 0`` is False)."""
    in_blocks(_relu_grad_span, (z, out), ())
    return out


@njit(**_JIT)
def _leaky_relu_span(x, out, slope):
    for i in range(x.size):
        out[i] = x[i] if x[i] >= fm.like(0.0, x) else x[i] * slope


@njit(**_PAR)
def leaky_relu(x, slope, out):
    """g(z) = z if z >= 0 else slope * z."""
    in_blocks(_leaky_relu_span, (x, out), (fm.like(slope, x),))
    return out


@njit(**_JIT)
def _leaky_relu_grad_span(z, out, slope):
    for i in range(z.size):
        out[i] = fm.like(1.0, z) if z[i] >= fm.like(0.0, z) else slope


@njit(**_PAR)
def leaky_relu_grad(z, slope, out):
    """g'(z) = 1 if z >= 0 else slope."""
    in_blocks(_leaky_relu_grad_span, (z, out), (fm.like(slope, z),))
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
    rows = max(1, BLOCK // k)
    if m * k < PARALLEL_MIN:
        softmax_rows(x, out)
    else:
        for c in prange((m + rows - 1) // rows):
            softmax_rows(x[c * rows:(c + 1) * rows], out[c * rows:(c + 1) * rows])
    return out
