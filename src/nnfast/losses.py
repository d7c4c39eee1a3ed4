"""Losses fused with the output delta (seed: δ^(L) = a^(L) - y, "Regularization").

Each loss returns ``(loss, dlogits)``: the mean over the batch's m rows as a Python float and
dJ/d(logits) with the logits' shape and dtype, computed in one pass. ``out=`` receives dlogits and
may be the logits array itself (they are then overwritten); if it overlaps the logits or ``y`` in
any other way, the result goes through a temporary (``y`` is read in full before ``out`` is
written).
"""
import numpy as np

from . import _backend
from ._backend import entries as _entry
from ._validate import (as_array, contiguous, float_array, labels_in_range, real, result_target,
                        write_back)


def softmax_cross_entropy(logits, y, out=None):
    """Softmax cross-entropy fused with its delta.

    ``J = -1/m Σ_i log softmax(z_i)[y_i]`` and ``dJ/dz = (softmax(z) - onehot(y)) / m``.

    logits: (m, K) float32/float64. y: m integer class labels in [0, K), or (m, K) float
    targets of the logits' dtype (one-hot or probability rows). Stable for any finite logits
    (log-sum-exp with the row maximum subtracted).

    >>> loss, d = nnfast.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2]))
    >>> round(loss, 6)   # log(3)
    1.098612
    """
    done = _entry.softmax_cross_entropy(logits, y, out)
    if done is not None:        # the common case, checked in C (nnfast._cython.entry)
        return done
    logits = float_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (n_samples, n_classes), got shape {logits.shape}")
    m, k = logits.shape
    if m == 0:
        raise ValueError("logits has no rows; a mean over an empty batch is undefined")
    if k == 0:
        raise ValueError("logits has no classes (shape[1] == 0)")
    y = as_array(y, "y")
    if y.dtype.kind in "iu":
        if y.shape != (m,):
            raise ValueError(f"y has shape {y.shape}, but integer labels for logits of shape "
                             f"{logits.shape} must have shape ({m},)")
        labels = labels_in_range(y, "y", k).astype(np.int64, copy=False)
        out, target = result_target(out, logits.shape, logits.dtype,
                                    ((logits, "logits"), (labels, "y")), alias=("logits",))
        loss = _backend.kernel("losses", "softmax_cross_entropy", logits.size)(
            contiguous(logits), contiguous(labels), target)
        return loss, write_back(out, target)
    if y.dtype.kind == "f":
        y = float_array(y, "y", logits.dtype)
        if y.shape != logits.shape:
            raise ValueError(f"y has shape {y.shape}, but one-hot targets must match logits "
                             f"{logits.shape}")
        out, target = result_target(out, logits.shape, logits.dtype,
                                    ((logits, "logits"), (y, "y")), alias=("logits",))
        loss = _backend.kernel("losses", "softmax_cross_entropy_probs", logits.size)(
            contiguous(logits), contiguous(y), target)
        return loss, write_back(out, target)
    raise TypeError(f"y must hold integer labels or float one-hot targets, got dtype {y.dtype}")


def _elementwise_loss(kernel_name, pred, y, out, pred_name):
    given = pred = float_array(pred, pred_name)
    shape = pred.shape
    if pred.ndim == 1:
        pred = pred.reshape(-1, 1)
    if pred.ndim != 2:
        raise ValueError(f"{pred_name} must be 1-D or 2-D (n_samples, n_outputs), got shape "
                         f"{shape}")
    if pred.shape[0] == 0:
        raise ValueError(f"{pred_name} has no rows; a mean over an empty batch is undefined")
    y = as_array(y, "y")
    if y.dtype.kind in "iub":
        y = y.astype(pred.dtype)
    y = float_array(y, "y", pred.dtype)
    if y.shape != shape:
        raise ValueError(f"y has shape {y.shape}, but {pred_name} has shape {shape}")
    y = y.reshape(pred.shape)
    out, target = result_target(out, shape, pred.dtype, ((given, pred_name), (y, "y")),
                                alias=(pred_name,))
    loss = _backend.kernel("losses", kernel_name, pred.size)(
        contiguous(pred), contiguous(y), target.reshape(pred.shape))
    return loss, write_back(out, target)


def sigmoid_binary_cross_entropy(logits, y, out=None):
    """Binary cross-entropy on logits, fused with the sigmoid output layer.

    ``J = -1/m Σ [y log σ(z) + (1-y) log(1-σ(z))]`` and ``dJ/dz = (σ(z) - y) / m``.

    logits: (m,) or (m, k) float32/float64; y: same shape, values in [0, 1] (0/1 labels as ints
    are accepted). Computed as ``max(z,0) - z y + log(1 + e^{-|z|})``: finite for any finite z.
    """
    return _elementwise_loss("sigmoid_binary_cross_entropy", logits, y, out, "logits")


def mean_squared_error(pred, y, out=None):
    """The seed's squared error ``J = 1/(2m) Σ (h - y)^2`` and ``dJ/dh = (h - y) / m``.

    pred, y: (m,) or (m, k), one float dtype; m is the number of rows.
    """
    return _elementwise_loss("mean_squared_error", pred, y, out, "pred")


def l2_penalty(weights, lam, m):
    """The seed's L2 term ``λ/(2m) Σ_l Σ θ^2`` over the weight matrices (never the biases).

    weights: one array or a list of float arrays (one dtype each); lam >= 0; m > 0 the number
    of training examples. Returns ``(penalty, grads)`` with ``grads[i] = λ/m · weights[i]``
    (a list when a list was given).
    """
    lam = real(lam, "lam", 0.0)
    m = real(m, "m", 0.0, low_open=True)
    single = isinstance(weights, np.ndarray)
    if not single and not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights must be an array or a list of arrays, got "
                        f"{type(weights).__name__}")
    ws = [weights] if single else list(weights)
    ws = [float_array(w, f"weights[{i}]") for i, w in enumerate(ws)]
    scale = lam / m
    total = 0.0
    grads = []
    for w in ws:
        g = np.empty(w.shape, w.dtype)
        if w.size:
            fn = _backend.kernel("losses", "sum_squares_scaled", w.size)
            total += fn(contiguous(w).reshape(-1), scale, g.reshape(-1))
        grads.append(g)
    penalty = lam / (2.0 * m) * total
    return penalty, (grads[0] if single else grads)
