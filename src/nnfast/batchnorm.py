"""Batch normalization of hidden-layer z (seed: "Batch Normalization").

``z`` is (m, n): m examples, n features; each feature (column) is normalized over the batch.
Training mode uses the batch's mean and (biased) variance and updates the running statistics in
place, as torch.nn.BatchNorm1d does (``running = (1-momentum)·running + momentum·batch``, with the
unbiased batch variance); inference mode uses the running statistics.
"""
import numpy as np

from . import _backend
from ._validate import checked_out, contiguous, disjoint, flag, float_array, inplace_array, real


class BatchNormCache:
    """What ``batchnorm_backward`` needs from the forward pass: x̂, γ and 1/sqrt(σ²_B + ε)."""

    __slots__ = ("xhat", "gamma", "invstd")

    def __init__(self, xhat, gamma, invstd):
        self.xhat, self.gamma, self.invstd = xhat, gamma, invstd


def _cache_arrays(cache):
    """The cache's arrays as the compiled backward kernels index them: xhat (m, n), gamma and
    invstd (n,), one float dtype, C-contiguous (a changed cache is checked, not trusted)."""
    if not isinstance(cache, BatchNormCache):
        raise TypeError("cache must be the BatchNormCache returned by batchnorm_forward "
                        "with training=True")
    xhat = contiguous(float_array(cache.xhat, "cache.xhat"))
    gamma = contiguous(float_array(cache.gamma, "cache.gamma", xhat.dtype))
    invstd = contiguous(float_array(cache.invstd, "cache.invstd", xhat.dtype))
    if xhat.ndim != 2:
        raise ValueError(f"cache.xhat must be 2-D, got shape {xhat.shape}")
    for x, name in ((gamma, "gamma"), (invstd, "invstd")):
        if x.shape != (xhat.shape[1],):
            raise ValueError(f"cache.{name} has shape {x.shape}, but cache.xhat has shape "
                             f"{xhat.shape}: the cache was changed after batchnorm_forward")
    return xhat, gamma, invstd


def update_running(running_mean, running_var, mean, var, m, momentum, tmp=None):
    """torch's running statistics, in place, from a training batch of m rows with ``mean``
    and (biased) ``var``: ``running = (1-momentum)·running + momentum·batch``, with the unbiased
    batch variance ``var·m/(m-1)``. ``tmp`` (n,), if given, holds the products (no allocation:
    ``MLP``'s training steps pass one from their workspace)."""
    running_mean *= 1.0 - momentum
    running_mean += np.multiply(mean, momentum, out=tmp)
    running_var *= 1.0 - momentum
    running_var += np.multiply(var, momentum * m / (m - 1), out=tmp)


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
    training = flag(training, "training")
    read = [(z, "z"), (gamma, "gamma"), (beta, "beta")]
    if training:
        running_mean = inplace_array(running_mean, "running_mean", dt, (n,))
        running_var = inplace_array(running_var, "running_var", dt, (n,))
        disjoint([(running_mean, "running_mean"), (running_var, "running_var")], read)
        out = checked_out(out, (m, n), dt, "out",
                          read + [(running_mean, "running_mean"), (running_var, "running_var")])
        if m < 2:
            raise ValueError(f"batch norm in training needs at least 2 rows in z, got {m}")
        xhat = np.empty((m, n), dt)
        mean = np.empty(n, dt)
        invstd = np.empty(n, dt)
        var = _backend.kernel("batchnorm", "batchnorm_forward_train", z.size)(
            contiguous(z), gamma, beta, eps, out, xhat, mean, invstd)
        update_running(running_mean, running_var, mean, var, m, momentum)
        return out, BatchNormCache(xhat, gamma, invstd)
    running_mean = contiguous(float_array(running_mean, "running_mean", dt))
    running_var = contiguous(float_array(running_var, "running_var", dt))
    for arr, name in ((running_mean, "running_mean"), (running_var, "running_var")):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, but z has {n} features")
    out = checked_out(out, (m, n), dt, "out",
                      read + [(running_mean, "running_mean"), (running_var, "running_var")])
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
    xhat, gamma, invstd = _cache_arrays(cache)
    dout = float_array(dout, "dout", xhat.dtype)
    if dout.shape != xhat.shape:
        raise ValueError(f"dout has shape {dout.shape}, but the forward pass saw {xhat.shape}")
    m, n = xhat.shape
    out = checked_out(out, (m, n), xhat.dtype, "out",
                      [(dout, "dout"), (xhat, "cache.xhat"), (gamma, "cache.gamma"),
                       (invstd, "cache.invstd")], alias=("dout",))
    dgamma = np.empty(n, xhat.dtype)
    dbeta = np.empty(n, xhat.dtype)
    _backend.kernel("batchnorm", "batchnorm_backward", dout.size)(
        contiguous(dout), xhat, gamma, invstd, out, dgamma, dbeta)
    return out, dgamma, dbeta
