"""The network pass kernel by kernel: what every backend's ``step`` module provides as
``network``, written once over a backend's kernel modules.

``LayerByLayer(activations, batchnorm, dense, losses)`` calls those modules' kernels (the
low-level functions of ``nnfast._reference``, same names and arguments in every backend) with
their outputs in a workspace: per layer about four calls from Python. The Numba backend
overrides ``objective`` with its whole-network kernel where that applies (``_numba/step.py``).

Every method takes ``net``, the ``MLP`` (its ``_layout``, hidden ``_kind``, ``slope``, ``l2``,
``output``), a ``Workspace`` ``ws`` for the batch's rows, and validated inputs.
Row-major batches: ``z = a W + b`` with ``W`` (fan_in, fan_out); the seed's Θ is ``W.T``.
"""
import numpy as np

from .. import _kinds
from ..batchnorm import update_running

#: torch.nn.BatchNorm1d's defaults.
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
_LOSS_KERNEL = {"sigmoid": "sigmoid_binary_cross_entropy", "identity": "mean_squared_error"}


class LayerByLayer:
    """The network pass over one backend's kernel modules."""

    def __init__(self, activations, batchnorm, dense, losses):
        self.activations, self.batchnorm, self.dense, self.losses = (activations, batchnorm,
                                                                     dense, losses)

    def _activate(self, net, src, dst):
        """dst = g(src) for the hidden activation; ``dst`` may be ``src``."""
        kind = net._kind
        if kind == _kinds.IDENTITY:
            if dst is not src:
                np.copyto(dst, src)
            return
        fn = getattr(self.activations, net.hidden)
        if kind == _kinds.LEAKY_RELU:
            fn(src.reshape(-1), net.slope, dst.reshape(-1))
        else:
            fn(src.reshape(-1), dst.reshape(-1))

    def forward(self, net, ws, X, training, update_stats):
        """Runs the layers over X into ``ws``; returns the output layer's z (the logits).
        ``training``: batch norm on the batch's statistics, which ``update_stats`` folds into
        the running ones (torch's rule, ``nnfast.batchnorm.update_running``)."""
        dense_forward, bn = self.dense.dense_forward, self.batchnorm
        layers, slope, kind = net._layout.layers, net.slope, net._kind
        a_prev = X
        for i, layer in enumerate(layers[:-1]):
            z = ws.z[i]
            if layer.batchnorm:
                dense_forward(a_prev, layer.W, None, _kinds.IDENTITY, slope, z, z)
                zbn = ws.zbn[i]
                if training:
                    var = bn.batchnorm_forward_train(z, layer.gamma, layer.beta, BN_EPS, zbn,
                                                     ws.xhat[i], ws.mean[i], ws.invstd[i])
                    if update_stats:
                        update_running(layer.running_mean, layer.running_var, ws.mean[i], var,
                                       ws.m, BN_MOMENTUM, ws.tmp[i])
                else:
                    bn.batchnorm_forward_infer(z, layer.gamma, layer.beta, layer.running_mean,
                                               layer.running_var, BN_EPS, zbn)
                self._activate(net, zbn, ws.a[i])
            else:
                dense_forward(a_prev, layer.W, layer.b, kind, slope, z, ws.a[i])
            a_prev = ws.a[i]
        out, logits = layers[-1], ws.z[-1]
        dense_forward(a_prev, out.W, out.b, _kinds.IDENTITY, slope, logits, logits)
        return logits

    def backward(self, net, ws, X):
        """Backpropagation from ``ws.delta[-1]`` (dJ/dlogits) into the gradient buffer: for each
        layer dW = a_prevᵀ δ, db = Σ δ and the seed's δ_prev = δ Wᵀ .* g'(z_prev), through
        batch norm where a hidden layer has it."""
        dense_backward = self.dense.dense_backward
        layers, slope, kind = net._layout.layers, net.slope, net._kind
        grad_from_a = kind in _kinds.GRAD_FROM_OUTPUT or kind == _kinds.IDENTITY
        delta = ws.delta[-1]
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            if i == 0:
                a_prev, dprev, kind_prev, src = X, None, _kinds.IDENTITY, X
            else:
                a_prev, dprev, kind_prev = ws.a[i - 1], ws.delta[i - 1], kind
                src = a_prev if grad_from_a else (
                    ws.zbn[i - 1] if layers[i - 1].batchnorm else ws.z[i - 1])
            dense_backward(delta, a_prev, layer.W, layer.dW, layer.db, dprev, kind_prev, slope,
                           src)
            if dprev is not None and layers[i - 1].batchnorm:
                prev = layers[i - 1]
                self.batchnorm.batchnorm_backward(dprev, ws.xhat[i - 1], prev.gamma,
                                                  ws.invstd[i - 1], dprev, prev.dgamma,
                                                  prev.dbeta)
            delta = dprev

    def objective(self, net, ws, X, y, training, update_stats, with_grads):
        """The objective J on (X, y): the output's loss (its δ into ``ws.delta[-1]``) plus the
        seed's ``λ/(2m) Σ W²``; with ``with_grads`` also dJ/dparams into the gradient buffer."""
        logits = self.forward(net, ws, X, training, update_stats)
        if net.output == "softmax":
            name = "softmax_cross_entropy" if y.dtype == np.int64 else "softmax_cross_entropy_probs"
        else:
            name = _LOSS_KERNEL[net.output]
        loss = getattr(self.losses, name)(logits, y, ws.delta[-1])
        if with_grads:
            self.backward(net, ws, X)
        if net.l2:
            layout, m = net._layout, X.shape[0]
            total = self.losses.sum_squares_scaled(layout.weights, net.l2 / m, layout.l2_tmp)
            loss += net.l2 / (2.0 * m) * total
            if with_grads:
                layout.weight_grads += layout.l2_tmp
        return loss

    def rows_objective(self, net, ws, X, y, rows):
        """``objective`` (training, with gradients) on the rows ``rows`` of validated (X, y),
        gathered into the workspace (a backend may gather them inside its kernel instead)."""
        xb, yb = ws.batch(X, y, rows)
        return self.objective(net, ws, xb, yb, training=True, update_stats=True,
                              with_grads=True)

    def output(self, net, ws, logits):
        """The output activation of the logits (softmax/sigmoid probabilities or identity)."""
        proba = ws.a[-1]
        if net.output == "softmax":
            self.activations.softmax(logits, proba)
        elif net.output == "sigmoid":
            self.activations.sigmoid(logits.reshape(-1), proba.reshape(-1))
        else:
            np.copyto(proba, logits)
        return proba

    def threaded_objective(self, net, y):
        """A callable ``J(ws, X)`` (J only, no gradients, training mode) that releases the GIL,
        for gradient checks spread over threads; None: this pass holds the GIL between its
        kernels, so threads would take turns."""
        return None
