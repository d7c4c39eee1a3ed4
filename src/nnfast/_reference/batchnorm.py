"""Batch normalization of a hidden layer's z (seed: "Batch Normalization").

``z`` is (m, n) with one feature per column; statistics are taken over the m rows.
"""
import numpy as np


def batchnorm_forward_train(z, gamma, beta, eps, out, xhat_out, mean_out, invstd_out):
    """x̂ = (z - μ_B) / sqrt(σ²_B + ε),  out = γ x̂ + β, with the batch's biased variance.

    Writes ``mean_out`` (μ_B) and ``invstd_out`` (1/sqrt(σ²_B + ε)), both (n,); ``xhat_out`` and
    ``out`` are (m, n) and may not alias ``z``. Returns the biased batch variance (n,).
    """
    np.mean(z, axis=0, out=mean_out)
    centered = z - mean_out
    var = np.mean(centered * centered, axis=0)
    invstd_out[...] = 1.0 / np.sqrt(var + eps)
    np.multiply(centered, invstd_out, out=xhat_out)
    np.multiply(xhat_out, gamma, out=out)
    out += beta
    return var


def batchnorm_forward_infer(z, gamma, beta, running_mean, running_var, eps, out):
    """out = γ (z - running_mean) / sqrt(running_var + ε) + β; ``out`` may be ``z``."""
    scale = gamma / np.sqrt(running_var + eps)
    np.multiply(z - running_mean, scale, out=out)
    out += beta
    return out


def batchnorm_backward(dout, xhat, gamma, invstd, dz_out, dgamma_out, dbeta_out):
    """Gradients through the batch statistics.

    dβ = Σ dout,  dγ = Σ dout·x̂,
    dz = γ·invstd/m · (m·dout - dβ - x̂·dγ).  ``dz_out`` may alias ``dout``.
    """
    m = dout.shape[0]
    np.sum(dout, axis=0, out=dbeta_out)
    np.sum(dout * xhat, axis=0, out=dgamma_out)
    scale = gamma * invstd / m
    np.multiply(scale, m * dout - dbeta_out - xhat * dgamma_out, out=dz_out)
    return dz_out
