"""Activations and their derivatives (seed: "Activation Functions").

Elementwise functions take 1-D arrays ``x`` and ``out`` of equal length; ``out`` may be ``x``.
``softmax`` takes 2-D ``(n, k)`` arrays and works along the rows.
"""
import numpy as np


def sigmoid(x, out):
    """a = 1 / (1 + e^{-z}), evaluated without overflow for any finite z."""
    # e^{-|z|} never overflows; sigmoid(z) = 1/(1+e^{-z}) for z >= 0, e^{z}/(1+e^{z}) for z < 0.
    e = np.exp(-np.abs(x))
    np.divide(np.where(x >= 0, 1.0, e).astype(x.dtype, copy=False), 1.0 + e, out=out)
    return out


def sigmoid_grad(a, out):
    """g'(z) = g(z)(1 - g(z)) = a(1 - a)."""
    np.multiply(a, 1.0 - a, out=out)
    return out


def tanh(x, out):
    """a = (e^z - e^{-z}) / (e^z + e^{-z})."""
    np.tanh(x, out=out)
    return out


def tanh_grad(a, out):
    """g'(z) = 1 - tanh(z)^2 = 1 - a^2."""
    np.subtract(1.0, a * a, out=out)
    return out


def relu(x, out):
    """g(z) = max(0, z)."""
    np.maximum(x, 0.0, out=out)
    return out


def relu_grad(z, out):
    """g'(z) = 0 if z < 0, 1 if z >= 0."""
    out[...] = z >= 0
    return out


def leaky_relu(x, slope, out):
    """g(z) = z if z >= 0 else slope * z."""
    np.multiply(x, np.where(x >= 0, 1.0, slope).astype(x.dtype, copy=False), out=out)
    return out


def leaky_relu_grad(z, slope, out):
    """g'(z) = slope (0.01 in the seed) if z < 0, 1 if z >= 0."""
    out[...] = np.where(z >= 0, 1.0, slope)
    return out


def softmax(x, out):
    """sigma(z)_j = e^{z_j} / sum_k e^{z_k}, row-wise; the row maximum is subtracted first."""
    shifted = x - x.max(axis=1, keepdims=True)
    np.exp(shifted, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out
