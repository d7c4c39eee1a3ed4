"""Gradient checking (seed: "Gradient Checking").

For every parameter element θ_i, the two-sided difference
``dθ_approx_i = (J(θ + ε e_i) - J(θ - ε e_i)) / 2ε`` is compared with the analytic gradient dθ by

    diff = ||dθ_approx - dθ||₂ / (||dθ_approx||₂ + ||dθ||₂)

overall (all parameters as one vector) and per parameter array. The lecture's advice holds: it is
slow (two loss evaluations per element), so use it on small networks and batches, in float64
(with ε = 1e-7 a correct float64 gradient gives diff ≈ 1e-9; float32 cannot resolve ε).
"""
import math

import numpy as np

from ._validate import as_array, real, written_array

__all__ = ["gradcheck", "GradcheckResult"]


class GradcheckResult:
    """``diff`` (overall), ``per_param`` (one diff per array) and ``approx`` (the numerical
    gradients, arrays shaped like the parameters). ``float(result)`` is ``diff``."""

    __slots__ = ("diff", "per_param", "approx")

    def __init__(self, diff, per_param, approx):
        self.diff, self.per_param, self.approx = diff, per_param, approx

    def __float__(self):
        return self.diff

    def __repr__(self):
        per = ", ".join(f"{d:.3g}" for d in self.per_param)
        return f"GradcheckResult(diff={self.diff:.3g}, per_param=[{per}])"


def _relative(sq_diff, sq_approx, sq_grad):
    denom = math.sqrt(sq_approx) + math.sqrt(sq_grad)
    return 0.0 if denom == 0.0 else math.sqrt(sq_diff) / denom


def _loss(loss_fn):
    """``loss_fn()`` as a Python float; TypeError naming loss_fn if it returns no real number."""
    value = loss_fn()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"loss_fn must return a real number (the loss J), got "
                        f"{type(value).__name__}") from None


def gradcheck(loss_fn, params, grads, eps=1e-7):
    """Compare analytic ``grads`` with the seed's two-sided differences of ``loss_fn``.

    loss_fn: called with no arguments, returns J (a real number) for the current values of
    ``params``. params: the arrays ``loss_fn`` reads (one array or a list); each element is moved
    by ±eps in place and restored bit for bit before returning. grads: dJ/dparams, same shapes.
    Returns a ``GradcheckResult``; ``result.diff < 1e-7`` is the usual pass mark in float64.

    >>> w = np.array([1.0, -2.0]); r = nnfast.gradcheck(lambda: float(w @ w), w, 2 * w)
    >>> r.diff < 1e-9
    True
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    single = isinstance(params, np.ndarray)
    params = [params] if single else list(params)
    if isinstance(grads, (str, bytes)):
        raise TypeError(f"grads must be an array or a list of arrays, got {type(grads).__name__}")
    grads = [grads] if single and isinstance(grads, np.ndarray) else list(grads)
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} arrays but params has {len(params)}")
    eps = real(eps, "eps", 0.0, low_open=True)
    flats = []
    for i, (p, g) in enumerate(zip(params, grads)):
        written_array(p, f"params[{i}]")
        if p.dtype.kind != "f":
            raise TypeError(f"params[{i}] must be a float numpy array, got dtype {p.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only; gradcheck perturbs it in place")
        g = as_array(g, f"grads[{i}]")
        if g.dtype.kind not in "fiub":  # strings, objects, dates; complex: astype drops the imag
            raise TypeError(f"grads[{i}] must be a real numeric array, got dtype {g.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}] has shape {g.shape}, but params[{i}] has {p.shape}")
        flat = p.reshape(-1)
        if not np.shares_memory(flat, p) and p.size:
            raise ValueError(f"params[{i}] must be contiguous so it can be perturbed in place")
        flats.append((flat, g.reshape(-1).astype(np.float64)))

    numerics = []
    two_eps = 2.0 * eps
    for flat, _ in flats:
        numeric = np.empty(flat.size, np.float64)
        for j in range(flat.size):
            old = flat[j]
            try:
                flat[j] = old + eps
                j_plus = _loss(loss_fn)
                flat[j] = old - eps
                j_minus = _loss(loss_fn)
            finally:    # a loss_fn that raises leaves the parameters as they were
                flat[j] = old
            numeric[j] = (j_plus - j_minus) / two_eps
        numerics.append(numeric)
    return compare(numerics, [g for _, g in flats], [p.shape for p in params])


def compare(numerics, grads, shapes):
    """The seed's relative difference of numerical and analytic gradients (flat float64 arrays,
    one per parameter array), overall and per array, as a ``GradcheckResult``."""
    approx, per_param = [], []
    total = [0.0, 0.0, 0.0]
    for numeric, g, shape in zip(numerics, grads, shapes):
        sq = (float(np.sum((numeric - g) ** 2)), float(numeric @ numeric), float(g @ g))
        per_param.append(_relative(*sq))
        total = [t + s for t, s in zip(total, sq)]
        approx.append(numeric.reshape(shape))
    return GradcheckResult(_relative(*total), per_param, approx)
