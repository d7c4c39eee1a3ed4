"""Losses fused with the output delta (seed: backpropagation starts from δ = a - y).

Each function writes dJ/d(logits) into ``dout`` (same shape as the logits, may alias them) and
returns the loss as a Python float, both averaged over the ``m`` rows of the batch.
"""
import numpy as np


def softmax_cross_entropy(logits, labels, dout):
    """J = -1/m Σ_i log softmax(z_i)[y_i];  δ = (softmax(z) - onehot(y)) / m.

    ``logits`` is (m, K); ``labels`` an int64 vector of m class indices in [0, K).
    """
    m = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(m)
    loss = float(np.sum(log_norm - shifted[rows, labels], dtype=np.float64) / m)
    np.exp(shifted - log_norm[:, None], out=dout)
    dout[rows, labels] -= 1.0
    dout /= m
    return loss


def softmax_cross_entropy_probs(logits, targets, dout):
    """Same loss for target distributions (one-hot or soft rows summing to 1), (m, K)."""
    m = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    log_p = shifted - log_norm[:, None]
    loss = float(-np.sum(targets * log_p, dtype=np.float64) / m)
    np.subtract(np.exp(log_p) * targets.sum(axis=1, keepdims=True), targets, out=dout)
    dout /= m
    return loss


def sigmoid_binary_cross_entropy(logits, targets, dout):
    """J = -1/m Σ [y log σ(z) + (1-y) log(1-σ(z))];  δ = (σ(z) - y) / m.

    Uses log(1 + e^{-|z|}) so any finite logit gives a finite loss. ``m`` = number of rows
    (``logits.shape[0]``); every output column's loss is summed.
    """
    m = logits.shape[0]
    # -[y log σ(z) + (1-y) log(1-σ(z))] = max(z, 0) - z y + log(1 + e^{-|z|})
    loss_terms = np.maximum(logits, 0.0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
    loss = float(np.sum(loss_terms, dtype=np.float64) / m)
    e = np.exp(-np.abs(logits))
    sig = np.where(logits >= 0, 1.0, e) / (1.0 + e)
    np.subtract(sig, targets, out=dout)
    dout /= m
    return loss


def mean_squared_error(pred, targets, dout):
    """The seed's J = 1/(2m) Σ (h - y)^2;  δ = (h - y) / m."""
    m = pred.shape[0]
    diff = pred - targets
    loss = float(np.sum(diff * diff, dtype=np.float64) / (2 * m))
    np.divide(diff, m, out=dout)
    return loss


def sum_squares_scaled(w, scale, grad_out):
    """Returns Σ w^2 and writes ``grad_out = scale * w`` (the L2 term's gradient λ/m · W)."""
    total = float(np.sum(np.square(w, dtype=np.float64)))
    np.multiply(w, scale, out=grad_out)
    return total
