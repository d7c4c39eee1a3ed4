"""Batch normalization of hidden-layer z (seed: "Batch Normalization").

``z`` is (m, n): m examples, n features; each feature (column) is normalized over the batch.
Training mode uses the batch's mean and (biased) variance and updates the running statistics in
place, as torch.nn.BatchNorm1d does (``running = (1-momentum)·running + momentum·batch``, with the
unbiased batch variance); inference mode uses the running statistics.
"""
import numpy as np

from . import _backend
from ._validate import contiguous, float_array, inplace_array, no_overlap, out_array, real


class BatchNormCache:
    """What ``batchnorm_backward`` needs from the forward pass: x̂, γ and 1/sqrt(σ²_B + ε)."""

    __slots__ = ("xhat", "gamma", "invstd")

    def __init__(self, xhat, gamma, invstd):
        self.xhat, self.gamma, self.invstd = xhat, gamma, invstd


def batchnorm_forward(z, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5,
                      training=True, out=None):
    """``out = γ (z - μ) / sqrt(σ² + ε) + β``; returns ``(out, cache)``.

    z: (m, n); gamma, beta, running_mean, running_var: (n,), one float dtype. In training
    (``training=True``, m >= 2) μ, σ² are the batch's and ``running_mean``/``running_var`` are
    updated in place; ``cache`` is then passed to ``batchnorm_backward``. In inference they are
    read only and ``cache`` is None.
    """
    z = float_array(z, "z")
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (n_samples, n_features), got shape {z.shape}")
    m, n = z.shape
    dt = z.dtype
    gamma = contiguous(float_array(gamma, "gamma", dt))
    beta = contiguous(float_array(beta, "beta", dt))
    for arr, name in ((gamma, "gamma"), (beta, "beta")):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, but z has {n} features")
    momentum = real(momentum, "momentum", 0.0, 1.0)
    eps = real(eps, "eps", 0.0, low_open=True)
    if out is None:
        out = np.empty((m, n), dt)
    else:
        out_array(out, (m, n), dt)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
    if training:
        running_mean = inplace_array(running_mean, "running_mean", dt, (n,))
        running_var = inplace_array(running_var, "running_var", dt, (n,))
        no_overlap([running_mean, running_var, out], ["running_mean", "running_var", "out"])
        if m < 2:
            raise ValueError(f"batch norm in training needs at least 2 rows in z, got {m}")
        if np.may_share_memory(out, z):
            raise ValueError("out must not share memory with z in training mode")
        xhat = np.empty((m, n), dt)
        mean = np.empty(n, dt)
        invstd = np.empty(n, dt)
        var = _backend.kernel("batchnorm", "batchnorm_forward_train", z.size)(
            contiguous(z), gamma, beta, eps, out, xhat, mean, invstd)
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += (momentum * m / (m - 1)) * var
        return out, BatchNormCache(xhat, gamma, invstd)
    running_mean = contiguous(float_array(running_mean, "running_mean", dt))
    running_var = contiguous(float_array(running_var, "running_var", dt))
    for arr, name in ((running_mean, "running_mean"), (running_var, "running_var")):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, but z has {n} features")
    if z.size:
        zc = contiguous(z)
        _backend.kernel("batchnorm", "batchnorm_forward_infer", z.size)(
            zc, gamma, beta, running_mean, running_var, eps, out)
    return out, None


def batchnorm_backward(dout, cache, out=None):
    """Gradients through batch norm; returns ``(dz, dgamma, dbeta)``.

    ``dβ = Σ dout``, ``dγ = Σ dout·x̂``, ``dz = γ/(m·sqrt(σ²_B+ε)) · (m·dout - dβ - x̂·dγ)``.
    ``out`` (m, n) receives dz and may be ``dout``.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError("cache must be the BatchNormCache returned by batchnorm_forward "
                        "with training=True")
    xhat = cache.xhat
    dout = float_array(dout, "dout", xhat.dtype)
    if dout.shape != xhat.shape:
        raise ValueError(f"dout has shape {dout.shape}, but the forward pass saw {xhat.shape}")
    m, n = xhat.shape
    if out is None:
        out = np.empty((m, n), xhat.dtype)
    else:
        out_array(out, (m, n), xhat.dtype)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        if out is not dout and np.may_share_memory(out, dout):
            raise ValueError("out must be dout itself or not share memory with it")
    dgamma = np.empty(n, xhat.dtype)
    dbeta = np.empty(n, xhat.dtype)
    _backend.kernel("batchnorm", "batchnorm_backward", dout.size)(
        contiguous(dout), xhat, cache.gamma, cache.invstd, out, dgamma, dbeta)
    return out, dgamma, dbeta
