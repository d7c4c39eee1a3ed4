"""Dense layers: forward pass and backpropagation of δ (seed: "Forward pass", "Backpropagation").

Row-major batches: ``a`` is (m, fan_in), ``W`` is (fan_in, fan_out) — the seed's Θ is ``W.T`` —,
``b`` is (fan_out,). ``kind`` is an activation code from ``nnfast._constants``.
"""
import numpy as np

from .._constants import IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH
from . import activations as act


def apply_activation(z, kind, slope, out):
    """a = g(z) for the activation ``kind``; 2-D ``z`` and ``out``, ``out`` may be ``z``."""
    if kind == SOFTMAX:
        return act.softmax(z, out)
    flat_z, flat_out = z.reshape(-1), out.reshape(-1)
    if kind == IDENTITY:
        flat_out[...] = flat_z
    elif kind == SIGMOID:
        act.sigmoid(flat_z, flat_out)
    elif kind == TANH:
        act.tanh(flat_z, flat_out)
    elif kind == RELU:
        act.relu(flat_z, flat_out)
    elif kind == LEAKY_RELU:
        act.leaky_relu(flat_z, slope, flat_out)
    return out


def activation_grad(src, kind, slope):
    """g'(·) for ``kind``: from the activation a (sigmoid, tanh) or from z (relu, leaky relu)."""
    out = np.empty_like(src)
    flat_src, flat_out = src.reshape(-1), out.reshape(-1)
    if kind == IDENTITY:
        out[...] = 1.0
    elif kind == SIGMOID:
        act.sigmoid_grad(flat_src, flat_out)
    elif kind == TANH:
        act.tanh_grad(flat_src, flat_out)
    elif kind == RELU:
        act.relu_grad(flat_src, flat_out)
    elif kind == LEAKY_RELU:
        act.leaky_relu_grad(flat_src, slope, flat_out)
    return out


def dense_forward(a, W, b, kind, slope, z_out, a_out):
    """z = a W + b (seed: z = Θ a), then a_out = g(z).

    ``z_out`` and ``a_out`` are (m, fan_out); ``a_out`` may be ``z_out`` (then z is not kept).
    ``b`` may be None (no bias, e.g. before batch norm).
    """
    np.matmul(a, W, out=z_out)
    if b is not None:
        z_out += b
    apply_activation(z_out, kind, slope, a_out)
    return a_out


def dense_backward(delta, a_prev, W, dW_out, db_out, dprev_out, kind_prev, slope, grad_src):
    """Gradients of one layer from its δ (m, fan_out).

    dW = a_prevᵀ δ (fan_in, fan_out);  db = Σ_rows δ (fan_out,), skipped when ``db_out`` is None;
    δ_prev = (δ Wᵀ) .* g'(·) (m, fan_in), the seed's δ^(l) = (Θ^(l))ᵀ δ^(l+1) .* g'(z^(l)),
    skipped when ``dprev_out`` is None. ``grad_src`` is what g' is computed from: the previous
    layer's activation for sigmoid/tanh, its z for relu/leaky relu, ignored for identity.
    """
    np.matmul(a_prev.T, delta, out=dW_out)
    if db_out is not None:
        np.sum(delta, axis=0, out=db_out)
    if dprev_out is not None:
        np.matmul(delta, W.T, out=dprev_out)
        if kind_prev != IDENTITY:
            dprev_out *= activation_grad(grad_src, kind_prev, slope)
    return dW_out
