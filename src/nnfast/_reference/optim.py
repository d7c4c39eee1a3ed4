"""Optimizer updates (seed: "More Optimization Algorithms"), in place on 1-D arrays.

Every array is 1-D, contiguous and of one dtype; ``param`` and the state arrays are updated in
place, ``grad`` is only read. Scalars arrive as Python floats/bools already validated.
"""
import numpy as np


def sgd_update(param, grad, lr, weight_decay):
    """θ = θ - α (dθ + wd·θ)  (seed: "Update weights")."""
    g = grad + weight_decay * param if weight_decay else grad
    param -= lr * g


def momentum_update(param, grad, velocity, lr, beta, dampening, weight_decay, nesterov,
                    sklearn_style):
    """Gradient descent with momentum.

    Default form, torch.optim.SGD's: V = βV + (1 - dampening)·dθ, θ = θ - α·V (nesterov:
    θ = θ - α(dθ + βV)). The seed's V = βV + (1-β)dθ is ``dampening = β``.
    ``sklearn_style``: scikit-learn's V = βV - α·dθ, θ = θ + V (nesterov: θ = θ + βV - α·dθ).
    """
    g = grad + weight_decay * param if weight_decay else grad
    if sklearn_style:
        velocity *= beta
        velocity -= lr * g
        param += beta * velocity - lr * g if nesterov else velocity
    else:
        velocity *= beta
        velocity += (1.0 - dampening) * g
        param -= lr * (g + beta * velocity) if nesterov else lr * velocity


def rmsprop_update(param, grad, sq, lr, beta, eps, weight_decay, eps_inside):
    """RMSprop: S = βS + (1-β)dθ², θ = θ - α dθ / sqrt(S + ε) (seed, ``eps_inside``)
    or θ = θ - α dθ / (sqrt(S) + ε) (torch.optim.RMSprop)."""
    g = grad + weight_decay * param if weight_decay else grad
    sq *= beta
    sq += (1.0 - beta) * g * g
    denom = np.sqrt(sq + eps) if eps_inside else np.sqrt(sq) + eps
    param -= lr * g / denom


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled,
                bias_correction1, bias_correction2, eps_inside):
    """Adam with bias correction (seed: "Adam").

    V = β1 V + (1-β1) dθ,  S = β2 S + (1-β2) dθ²,  V^corr = V / bias_correction1,
    S^corr = S / bias_correction2 (the caller passes 1 - β^t), then
    θ = θ - α V^corr / sqrt(S^corr + ε) (seed, ``eps_inside``) or / (sqrt(S^corr) + ε) (torch).
    ``weight_decay`` is added to dθ (torch Adam) or, ``decoupled``, θ *= 1 - α·wd first (AdamW).
    """
    if weight_decay and decoupled:
        param *= 1.0 - lr * weight_decay
        g = grad
    else:
        g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_corr = m / bias_correction1
    v_corr = v / bias_correction2
    denom = np.sqrt(v_corr + eps) if eps_inside else np.sqrt(v_corr) + eps
    param -= lr * m_corr / denom
