"""The parameter layout of an MLP: one flat buffer for the parameters, one for their gradients
(same layout), one for batch-norm running statistics, and per-layer views into them.

Every W comes first, as one contiguous slab, so the L2 term and its gradient are one kernel call
each; then per layer b, or γ and β for a hidden layer with batch norm (which has no bias: β
replaces it). ``offsets[k]`` is where ``params[k]`` starts in ``flat_params`` (and ``grads[k]``
in ``flat_grads``).
"""
import math

import numpy as np


class Layer:
    """One dense layer's arrays, all views into the model's flat buffers.

    ``W`` (fan_in, fan_out) and ``b`` (fan_out,), or, for a hidden layer with batch norm, ``W``,
    ``gamma``, ``beta`` (no bias: batch norm's β replaces it) and the buffers ``running_mean``,
    ``running_var``. ``dW``, ``db``, ``dgamma``, ``dbeta`` are the matching gradient views.
    """

    __slots__ = ("W", "b", "gamma", "beta", "running_mean", "running_var", "dW", "db", "dgamma",
                 "dbeta", "batchnorm")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)


def counts(sizes, batchnorm):
    """(parameters, batch-norm buffers) of a network: every W, then per layer b or γ and β
    (batch norm on hidden layers only), and the hidden layers' running mean and variance."""
    n_weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    hidden = sum(sizes[1:-1]) if batchnorm else 0
    return n_weights + sum(sizes[1:]) + hidden, 2 * hidden


class Layout:
    """The buffers and views of a network of ``sizes`` (batch norm on the hidden layers if
    ``batchnorm``) in ``dtype``: ``flat_params``, ``flat_grads``, ``flat_buffers``, ``layers``,
    ``params``/``grads``/``param_names``/``offsets`` (one entry per parameter array), the weight
    slabs ``weights``/``weight_grads`` (the first ``n_weights`` elements) and, without batch
    norm, ``step_arrays``: ``(Ws, bs, dWs, dbs, weights, weight_grads)``, the homogeneous tuples
    a whole-network step kernel takes, and ``grid_arrays`` (sizes and (1, ·) rows) for a grid
    kernel."""

    def __init__(self, sizes, batchnorm, dtype):
        n_layers = len(sizes) - 1
        self.layers = [Layer() for _ in range(n_layers)]
        for i, layer in enumerate(self.layers):
            layer.batchnorm = batchnorm and i < n_layers - 1
        spec = [(layer, "W", (sizes[i], sizes[i + 1])) for i, layer in enumerate(self.layers)]
        for i, layer in enumerate(self.layers):
            names = ("gamma", "beta") if layer.batchnorm else ("b",)
            spec += [(layer, name, (sizes[i + 1],)) for name in names]
        self.n_weights = sum(math.prod(shape) for _, name, shape in spec if name == "W")
        n_params, n_buffers = counts(sizes, batchnorm)
        self.flat_params = np.zeros(n_params, dtype)
        self.flat_grads = np.zeros(n_params, dtype)
        self.flat_buffers = np.zeros(n_buffers, dtype)
        offset, where = 0, {}
        for layer, name, shape in spec:
            size = math.prod(shape)
            setattr(layer, name, self.flat_params[offset:offset + size].reshape(shape))
            setattr(layer, "d" + name, self.flat_grads[offset:offset + size].reshape(shape))
            where[id(layer), name] = offset
            offset += size
        offset = 0
        for i, layer in enumerate(self.layers):
            if layer.batchnorm:
                n = sizes[i + 1]
                layer.running_mean = self.flat_buffers[offset:offset + n]
                layer.running_var = self.flat_buffers[offset + n:offset + 2 * n]
                offset += 2 * n
        self.params, self.grads, self.param_names, self.offsets = [], [], [], []
        for i, layer in enumerate(self.layers):
            for name in (("W", "gamma", "beta") if layer.batchnorm else ("W", "b")):
                self.params.append(getattr(layer, name))
                self.grads.append(getattr(layer, "d" + name))
                self.param_names.append(f"{name}{i}")
                self.offsets.append(where[id(layer), name])
        self.weights = self.flat_params[:self.n_weights]
        self.weight_grads = self.flat_grads[:self.n_weights]
        self.l2_tmp = np.empty(self.n_weights, dtype)       # the L2 gradient λ/m · W
        self.buffers_backup = np.empty_like(self.flat_buffers)   # a step's restore point
        self.step_arrays = None if batchnorm else (
            tuple(layer.W for layer in self.layers), tuple(layer.b for layer in self.layers),
            tuple(layer.dW for layer in self.layers), tuple(layer.db for layer in self.layers),
            self.weights, self.weight_grads)
        # the network as the one model of a grid kernel (the Cython engine's sizes, Numba's grid): the
        # (1, ·) rows of weights, biases and their gradients
        nw = self.n_weights
        self.grid_arrays = None if batchnorm else (
            np.asarray(sizes, np.int64), self.flat_params[:nw].reshape(1, -1),
            self.flat_params[nw:].reshape(1, -1), self.flat_grads[:nw].reshape(1, -1),
            self.flat_grads[nw:].reshape(1, -1))

    def initialize(self, rng, init, scale):
        """Weights drawn by ``init`` ("he": N(0, 2/fan_in), "xavier": uniform
        ±sqrt(6/(fan_in+fan_out)), "normal": the seed's N(0, scale²)); b and β 0, γ 1, running
        mean 0 and variance 1."""
        for layer in self.layers:
            fan_in, fan_out = layer.W.shape
            if init == "he":
                w = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
            elif init == "xavier":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, (fan_in, fan_out))
            else:
                w = rng.normal(0.0, scale, (fan_in, fan_out))
            layer.W[...] = w
            if layer.batchnorm:
                layer.gamma[...] = 1.0
                layer.beta[...] = 0.0
                layer.running_mean[...] = 0.0
                layer.running_var[...] = 1.0
            else:
                layer.b[...] = 0.0
