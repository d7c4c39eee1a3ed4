"""A λ grid's mini-batch step in one compiled call (``nnfast._grid``'s Numba path).

The K models of a sweep differ only in λ. One call runs, for every model k, what the
whole-network step kernel (``step.py``) runs for one ``MLP`` — forward, loss and output delta,
backpropagation, the L2 term with λ_k — on the same mini-batch, without the GIL and with no
Python between the models; the optimizer update that follows is one fused call over the grid's
flat buffer (elementwise, so the same as K separate updates).

Model k's arrays are views built inside the kernel from flat, model-major buffers, in ``MLP``'s
layout (``nnfast._network.layout``): ``weights``/``dweights`` (K, n_weights) — row k is model
k's weight slab, every layer's W (fan_in, fan_out) one after the other; ``biases``/``dbiases``
(K, Σ fan_out); the workspace ``zbuf``, ``abuf``, ``dbuf`` (K, m·Σ fan_out) — per layer z, a
and δ as (m, fan_out). ``abuf`` may be ``zbuf`` (sigmoid'/tanh' are taken from a, which may
then overwrite z). ``sizes`` (int64) are the layer sizes. All arrays C-contiguous, one dtype.
The per-model code is ``step._forward`` / ``step._finish`` itself, so a model's arithmetic is
that of ``MLP``'s Numba step (tests: the grid against separate fits).

Numba types the kernel by dtype and array ranks only: the number of layers and of models are
values, so one compiled entry per (dtype, output) serves every grid and network depth.
"""
from ._cache import njit
from .losses import _sce_serial, mean_squared_error, sigmoid_binary_cross_entropy
from .step import _JIT, _finish, _forward


@njit(**_JIT)
def _model(k, m, sizes, weights, biases, dweights, dbiases, zbuf, abuf, dbuf):
    """Model k's ``(net, ws)`` as ``step._forward``/``_finish`` take them (lists of views)."""
    Ws = []
    dWs = []
    bs = []
    dbs = []
    zs = []
    acts = []
    deltas = []
    w = b = z = 0
    for i in range(sizes.size - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        Ws.append(weights[k][w:w + fan_in * fan_out].reshape((fan_in, fan_out)))
        dWs.append(dweights[k][w:w + fan_in * fan_out].reshape((fan_in, fan_out)))
        bs.append(biases[k][b:b + fan_out])
        dbs.append(dbiases[k][b:b + fan_out])
        zs.append(zbuf[k][z:z + m * fan_out].reshape((m, fan_out)))
        acts.append(abuf[k][z:z + m * fan_out].reshape((m, fan_out)))
        deltas.append(dbuf[k][z:z + m * fan_out].reshape((m, fan_out)))
        w += fan_in * fan_out
        b += fan_out
        z += m * fan_out
    return (Ws, bs, dWs, dbs, weights[k], dweights[k]), (zs, acts, deltas)


@njit(**_JIT)
def _forward_model(k, X, sizes, weights, biases, dweights, dbiases, zbuf, abuf, dbuf, kind,
                   slope, lambdas):
    """Model k's forward pass; its ``(net, ws, hyper)`` for the loss and ``step._finish``."""
    net, ws = _model(k, X.shape[0], sizes, weights, biases, dweights, dbiases, zbuf, abuf, dbuf)
    hyper = (kind, slope, lambdas[k])
    _forward(X, net, ws, hyper)
    return net, ws, hyper


# One kernel per output loss, as in step.py (Numba's cache and closures); ``args`` are the
# buffers, kind, slope and lambdas of the module note, in that order.
@njit(**_JIT)
def softmax_grid(X, y, *args):
    """Every model's step on int64 labels ``y``; returns the models' summed objective."""
    total = 0.0
    for k in range(args[-1].size):
        net, ws, hyper = _forward_model(k, X, *args)
        total += _finish(X, net, ws, hyper, _sce_serial(ws[0][-1], y, ws[2][-1]), True)
    return total


@njit(**_JIT)
def sigmoid_grid(X, y, *args):
    """Every model's step on float targets ``y`` (m, k), binary cross-entropy."""
    total = 0.0
    for k in range(args[-1].size):
        net, ws, hyper = _forward_model(k, X, *args)
        loss = sigmoid_binary_cross_entropy(ws[0][-1], y, ws[2][-1])
        total += _finish(X, net, ws, hyper, loss, True)
    return total


@njit(**_JIT)
def identity_grid(X, y, *args):
    """Every model's step on float targets ``y`` (m, k), the seed's squared error."""
    total = 0.0
    for k in range(args[-1].size):
        net, ws, hyper = _forward_model(k, X, *args)
        total += _finish(X, net, ws, hyper, mean_squared_error(ws[0][-1], y, ws[2][-1]), True)
    return total
