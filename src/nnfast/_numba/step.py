"""The compiled training step of a plain MLP (no batch norm), Numba backend.

One call runs the forward pass, the loss with its output delta, backpropagation of δ through
every layer and the L2 term — what ``MLP._pass`` does with ~4 kernel calls per layer from
Python — so a small network's step pays no Python between kernels. The GEMMs go to BLAS
(``np.dot(..., out)``, which Numba lowers to the same gemm calls as ``np.matmul``); everything
else reuses the backend's fused epilogues. The optimizer update that follows is one more fused
call on the model's flat buffers.

Arrays come from the model's workspace: ``Ws``/``bs`` the layers' weights and biases, ``zs``
the pre-activations, ``acts`` the activations (``acts[i]`` may be ``zs[i]`` for activations whose
derivative is taken from a), ``deltas`` dJ/dz per layer, ``dWs``/``dbs`` views into the flat
gradient buffer — all homogeneous tuples of C-contiguous arrays of one dtype.
"""
import numpy as np

from .._kinds import IDENTITY, SIGMOID, TANH
from ._cache import njit
from ._fastmath import FASTMATH, SUM_FASTMATH
from ._fastmath import like as _like
from .dense import _column_sums, _epilogue, _times_grad
from .losses import _sce_serial, mean_squared_error, sigmoid_binary_cross_entropy

# nogil: MLP.check_gradients runs numeric_gradient from several Python threads at once.
_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "cache": True, "nogil": True}


@njit(**_JIT)
def _forward(X, Ws, bs, zs, acts, kind, slope):
    """z_l = a_{l-1} W_l + b_l, a_l = g(z_l) for hidden layers; the last z is the logits."""
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
def _finish(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope, loss, l2, weights, wgrads, grads):
    m = X.shape[0]
    if grads:
        _backward(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope)
    if l2 != 0.0:
        total = _l2(weights, l2 / m, wgrads, grads)
        loss += l2 / (2.0 * m) * total
    return loss


# Three explicit kernels, one per output loss, rather than one built by a factory closure:
# Numba's disk cache files closures by their defining function's name and line, so closures
# over different losses would share one cache index (seen in a test: make(a) and make(b) wrote
# the single index m.make.locals.step-7.nbi), and telling their entries apart would rest on
# Numba internals.
@njit(**_JIT)
def softmax_step(X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights, wgrads,
                 grads):
    """Forward, softmax cross-entropy on int64 labels ``y``, backward; returns J."""
    _forward(X, Ws, bs, zs, acts, kind, slope)
    loss = _sce_serial(zs[-1], y, deltas[-1])
    return _finish(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope, loss, l2, weights, wgrads,
                   grads)


@njit(**_JIT)
def sigmoid_step(X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights, wgrads,
                 grads):
    """Forward, binary cross-entropy on float targets ``y`` (m, k), backward; returns J."""
    _forward(X, Ws, bs, zs, acts, kind, slope)
    loss = sigmoid_binary_cross_entropy(zs[-1], y, deltas[-1])
    return _finish(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope, loss, l2, weights, wgrads,
                   grads)


@njit(**_JIT)
def identity_step(X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights, wgrads,
                  grads):
    """Forward, the seed's squared error on float targets ``y`` (m, k), backward; returns J."""
    _forward(X, Ws, bs, zs, acts, kind, slope)
    loss = mean_squared_error(zs[-1], y, deltas[-1])
    return _finish(X, Ws, zs, acts, deltas, dWs, dbs, kind, slope, loss, l2, weights, wgrads,
                   grads)


def numeric_gradient(step, X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights,
                     wgrads, flat, lo, hi, eps, out):
    """The seed's dθ_approx_j = (J(θ + ε e_j) - J(θ - ε e_j)) / 2ε for j in [lo, hi) of the flat
    parameter buffer ``flat`` (which ``Ws``/``bs`` view), with ``step`` one of the *_step
    kernels above evaluating J only. Each element is restored bit for bit.

    A Python loop over compiled calls, not a compiled kernel: compiled, it took ``step`` as an
    argument, and Numba's cache pickles such a dispatcher-typed signature by a weak reference
    that does not survive a round trip — a process that loaded another process's entry and then
    saved its own died with "ReferenceError: underlying object has vanished" (issue 6). Each
    ``step`` call releases the GIL, so threads still run the evaluations side by side."""
    for j in range(lo, hi):
        old = flat[j]
        flat[j] = old + eps
        j_plus = step(X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights, wgrads,
                      False)
        flat[j] = old - eps
        j_minus = step(X, y, Ws, bs, zs, acts, deltas, dWs, dbs, kind, slope, l2, weights,
                       wgrads, False)
        flat[j] = old
        out[j] = (j_plus - j_minus) / (2.0 * eps)
