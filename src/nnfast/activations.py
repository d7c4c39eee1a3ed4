"""Activations and their derivatives (seed: "Activation Functions").

Every function takes a float32 or float64 array of any shape and layout and returns an array of
the same shape and dtype. ``out=`` (a plain ndarray of the same shape and dtype, writable)
receives the result; it may be the input itself (computed in place) or overlap it in any other
way (the result then goes through a temporary, as with NumPy's ufuncs). Derivatives of sigmoid
and tanh are computed from the activation ``a``, those of ReLU and leaky ReLU from ``z``, as the
seed writes them.
"""

from . import _backend
from ._backend import entries as _entry
from ._validate import (contiguous, float_array, out_array, real, result_target,
                        write_back)


def _elementwise(name, x, out, xname, *scalars):
    x = float_array(x, xname)
    out, target = result_target(out, x.shape, x.dtype, ((x, xname),), alias=(xname,))
    if x.size:
        fn = _backend.kernel("activations", name, x.size)
        if x.ndim == 1 and x.flags.c_contiguous:     # the common case, without new views
            fn(x, *scalars, target)
        else:
            fn(contiguous(x).reshape(-1), *scalars, target.reshape(-1))
    return write_back(out, target)


def sigmoid(x, out=None):
    """Sigmoid, ``a = g(z) = 1 / (1 + e^{-z})``; finite and overflow-free for any finite z.

    >>> nnfast.sigmoid(np.array([0.0, 2.0], dtype=np.float32))
    array([0.5      , 0.8807971], dtype=float32)
    """
    r = _entry.sigmoid(x, out)
    return r if r is not None else _elementwise("sigmoid", x, out, "x")


def sigmoid_grad(a, out=None):
    """Sigmoid derivative from the activation: ``g'(z) = g(z)(1 - g(z)) = a(1 - a)``."""
    r = _entry.sigmoid_grad(a, out)
    return r if r is not None else _elementwise("sigmoid_grad", a, out, "a")


def tanh(x, out=None):
    """``a = tanh(z) = (e^z - e^{-z}) / (e^z + e^{-z})``."""
    r = _entry.tanh(x, out)
    return r if r is not None else _elementwise("tanh", x, out, "x")


def tanh_grad(a, out=None):
    """tanh derivative from the activation: ``g'(z) = 1 - tanh(z)^2 = 1 - a^2``."""
    r = _entry.tanh_grad(a, out)
    return r if r is not None else _elementwise("tanh_grad", a, out, "a")


def relu(x, out=None):
    """ReLU, ``g(z) = max(0, z)``."""
    r = _entry.relu(x, out)
    return r if r is not None else _elementwise("relu", x, out, "x")


def relu_grad(z, out=None):
    """ReLU derivative from z, with the seed's convention: ``g'(z) = 0 if z < 0, 1 if z >= 0``."""
    r = _entry.relu_grad(z, out)
    return r if r is not None else _elementwise("relu_grad", z, out, "z")


def leaky_relu(x, slope=0.01, out=None):
    """Leaky ReLU, ``g(z) = z if z >= 0 else slope * z`` (the seed's slope is 0.01)."""
    r = _entry.leaky_relu(x, slope, out)
    return r if r is not None else _elementwise("leaky_relu", x, out, "x",
                                                 real(slope, "slope"))


def leaky_relu_grad(z, slope=0.01, out=None):
    """Leaky ReLU derivative from z: ``g'(z) = slope if z < 0, 1 if z >= 0``."""
    r = _entry.leaky_relu_grad(z, slope, out)
    return r if r is not None else _elementwise("leaky_relu_grad", z, out, "z",
                                                 real(slope, "slope"))


def identity(x, out=None):
    """``g(z) = z`` (output layer of a regression); a copy, or written into ``out``."""
    x = float_array(x, "x")
    if out is None:
        return x.copy()
    out_array(out, x.shape, x.dtype)
    out[...] = x
    return out


def softmax(x, out=None):
    """Softmax along the last axis, ``σ(z)_j = e^{z_j} / Σ_k e^{z_k}``.

    The row maximum is subtracted before exponentiating, so any finite input gives a finite
    result whose rows sum to 1. Any number of leading axes; a 1-D input is one row.

    >>> nnfast.softmax(np.array([[1.0, 1.0], [0.0, 1e4]]))
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    r = _entry.softmax(x, out)
    if r is not None:
        return r
    x = float_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least one axis for softmax, got a 0-d array")
    out, target = result_target(out, x.shape, x.dtype, ((x, "x"),), alias=("x",))
    if x.size:
        k = x.shape[-1]
        fn = _backend.kernel("activations", "softmax", x.size)
        fn(contiguous(x).reshape(-1, k), target.reshape(-1, k))
    return write_back(out, target)
