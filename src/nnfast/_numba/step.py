"""The whole-network step of the Numba backend: one compiled call for an MLP without batch norm.

One call runs the forward pass, the loss with its output delta, backpropagation of δ through
every layer and the L2 term — what the layer-by-layer pass (``nnfast._network.passes``) does
with ~4 kernel calls per layer from Python — so a small network's step pays no Python between
kernels. The GEMMs go to BLAS (``np.dot(..., out)``, which Numba lowers to the same gemm calls
as ``np.matmul``); everything else reuses the backend's fused epilogues. The optimizer update
that follows is one more fused call on the model's flat buffers. ``network`` (the contract:
``nnfast._reference.step``) takes this kernel where it applies and the layer-by-layer pass over
this backend's kernels elsewhere (batch norm, soft-label targets).

What this backend serves of the Cython engine's plan (``nnfast._cython.step``,
``src/kernels/engine.pyx``) — the parts it leaves to that engine run under ``"auto"`` only:

======================================  ==========================  ============================
plan part                               Cython engine               Numba backend
======================================  ==========================  ============================
one model's step (forward, loss, δ)     yes                         yes (this module)
K models sharing data (a λ grid)        yes                         its grid (``_numba.grid``)
row chunks on threads                   yes (OpenMP, every CPU)     no: one pass, one thread
batches per call, rows gathered in C    yes (``fit``'s epochs)      no: the batch loop, NumPy
optimizer update fused into the call    yes                         no: ``step_flat`` after
a caller's output gradient (``fuse``)   yes (``engine.Chain``)      no: always the Cython engine
a torch group's tensors in one update   yes (``update_many``)       no: a kernel call per tensor
======================================  ==========================  ============================

The kernels take three tuples: ``net`` = ``(Ws, bs, dWs, dbs, weights, wgrads)`` — the layers'
weights and biases, their gradients (views into the flat gradient buffer) and the weight slabs
(``Layout.step_arrays``); ``ws`` = ``(zs, acts, deltas)`` — pre-activations, activations
(``acts[i]`` may be ``zs[i]`` for activations whose derivative is taken from a) and dJ/dz per
layer (``Workspace.step_arrays``); ``hyper`` = ``(kind, slope, l2)``. Arrays are C-contiguous,
of one dtype; each tuple of layers is homogeneous.
"""
import numpy as np

from .._kinds import IDENTITY, SIGMOID, TANH
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, losses
from ._cache import njit
from ._fastmath import FASTMATH, SUM_FASTMATH
from ._fastmath import like as _like
from .dense import _column_sums, _epilogue, _times_grad
from .losses import _sce_serial, mean_squared_error, sigmoid_binary_cross_entropy

# nogil: MLP.check_gradients evaluates J from several Python threads at once.
_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True, "nogil": True}


@njit(**_JIT)
def _forward(X, net, ws, hyper):
    """z_l = a_{l-1} W_l + b_l, a_l = g(z_l) for hidden layers; the last z is the logits."""
    Ws, bs = net[0], net[1]
    zs, acts = ws[0], ws[1]
    kind, slope = hyper[0], hyper[1]
    last = len(Ws) - 1
    a_prev = X
    for i in range(last + 1):
        np.dot(a_prev, Ws[i], zs[i])
        _epilogue(zs[i], bs[i], kind if i < last else IDENTITY, slope, acts[i])
        a_prev = acts[i]


@njit(**_JIT)
def _backward(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope):
    """dW = a_prevᵀ δ, db = Σ δ, δ_prev = δ Wᵀ .* g'(·) from the output layer down."""
    for i in range(len(Ws) - 1, -1, -1):
        delta = deltas[i]
        a_prev = X if i == 0 else acts[i - 1]
        np.dot(a_prev.T, delta, dWs[i])
        _column_sums(delta, dbs[i])
        if i > 0:
            np.dot(delta, Ws[i].T, deltas[i - 1])
            if kind != IDENTITY:
                src = acts[i - 1] if kind == SIGMOID or kind == TANH else zs[i - 1]
                _times_grad(deltas[i - 1], src, kind, slope)


@njit(fastmath=SUM_FASTMATH, error_model="numpy", cache=True)
def _l2(w, scale, gw, write):
    """Σ w² (float64), and if ``write`` gw += scale·w: the seed's L2 gradient λ/m · W."""
    s = _like(scale, w)
    total = 0.0
    for j in range(w.size):
        total += np.float64(w[j]) * np.float64(w[j])
        if write:                        # loop-invariant: LLVM unswitches it
            gw[j] += s * w[j]
    return total


@njit(**_JIT)
def _finish(X, net, ws, hyper, loss, with_grads):
    """Backward (if ``with_grads``) and the L2 term; returns J."""
    Ws, dWs, dbs, weights, wgrads = net[0], net[2], net[3], net[4], net[5]
    kind, slope, l2 = hyper[0], hyper[1], hyper[2]
    m = X.shape[0]
    if with_grads:
        _backward(X, Ws, ws[0], ws[1], ws[2], dWs, dbs, kind, slope)
    if l2 != 0.0:
        total = _l2(weights, l2 / m, wgrads, with_grads)
        loss += l2 / (2.0 * m) * total
    return loss


# Three explicit kernels, one per output loss, rather than one built by a factory closure:
# Numba's disk cache files closures by their defining function's name and line, so closures
# over different losses would share one cache index (seen in a test: make(a) and make(b) wrote
# the single index m.make.locals.step-7.nbi), and telling their entries apart would rest on
# Numba internals.
@njit(**_JIT)
def softmax_step(X, y, net, ws, hyper, with_grads):
    """Forward, softmax cross-entropy on int64 labels ``y``, backward; returns J."""
    _forward(X, net, ws, hyper)
    return _finish(X, net, ws, hyper, _sce_serial(ws[0][-1], y, ws[2][-1]), with_grads)


@njit(**_JIT)
def sigmoid_step(X, y, net, ws, hyper, with_grads):
    """Forward, binary cross-entropy on float targets ``y`` (m, k), backward; returns J."""
    _forward(X, net, ws, hyper)
    return _finish(X, net, ws, hyper, sigmoid_binary_cross_entropy(ws[0][-1], y, ws[2][-1]),
                   with_grads)


@njit(**_JIT)
def identity_step(X, y, net, ws, hyper, with_grads):
    """Forward, the seed's squared error on float targets ``y`` (m, k), backward; returns J."""
    _forward(X, net, ws, hyper)
    return _finish(X, net, ws, hyper, mean_squared_error(ws[0][-1], y, ws[2][-1]), with_grads)


_STEPS = {"softmax": softmax_step, "sigmoid": sigmoid_step, "identity": identity_step}


class _Network(LayerByLayer):
    """The layer-by-layer pass over this backend's kernels, with ``objective`` one call of the
    whole-network kernel for networks without batch norm (and integer labels for softmax)."""

    @staticmethod
    def _kernel(net, y):
        if net.batchnorm or (net.output == "softmax" and y.dtype != np.int64):
            return None
        return _STEPS[net.output]

    def objective(self, net, ws, X, y, training, update_stats, with_grads):
        kernel = self._kernel(net, y)
        if kernel is None:
            return super().objective(net, ws, X, y, training, update_stats, with_grads)
        return kernel(X, y, net._layout.step_arrays, ws.step_arrays,
                      (net._kind, net.slope, net.l2), with_grads)

    def threaded_objective(self, net, y):
        kernel = self._kernel(net, y)
        if kernel is None:
            return None
        arrays, hyper = net._layout.step_arrays, (net._kind, net.slope, net.l2)
        return lambda ws, X: kernel(X, y, arrays, ws.step_arrays, hyper, False)


network = _Network(activations, batchnorm, dense, losses)
