"""Optimizer updates (seed: "More Optimization Algorithms"): one fused pass, in place.

``param`` and the state arrays (velocity, squares, moments) are float32/float64 arrays of one
shape and dtype, plain ndarrays, writable and C-contiguous; they are updated in place and must not
share memory with each other or with any ``grad`` (ValueError naming both: a kernel would read
values it already updated, in an order that differs between backends). ``grad`` is only read
(any layout). Each function also takes lists of arrays — the whole model
at once, like torch's multi-tensor ("foreach") path; when a model keeps its parameters in one
flat buffer (``nnfast.MLP`` does), a single call on that buffer updates everything.

All checks run before anything is written: a bad argument leaves every array as it was.
"""
try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # numpy < 2.0
    from numpy import byte_bounds

import functools

from . import _backend, _rules
from ._backend import entries as _entry
from ._validate import contiguous, disjoint, float_array, inplace_array, real, same_shape


def _groups(param, grad, states, state_names):
    """Validated tuples (param, grad, *states) of contiguous arrays, one per tensor."""
    if not isinstance(param, (list, tuple)):
        return [_group(param, grad, states, state_names, "")]
    n = len(param)
    for name, seq in (("grad", grad),) + tuple(zip(state_names, states)):
        if not isinstance(seq, (list, tuple)) or len(seq) != n:
            raise ValueError(f"{name} must be a list of {n} arrays, like param")
    suffix = [f"[{i}]" for i in range(n)]
    out = [_group(param[i], grad[i], [s[i] for s in states], state_names, suffix[i])
           for i in range(n)]
    if n > 1:
        _no_overlap_across(out, suffix, state_names)
    return out


def _group(p, g, states, state_names, sfx):
    """One tensor's (param, grad, *states): names with ``sfx`` appear in error messages only."""
    p = inplace_array(p, "param" + sfx)
    g = float_array(g, "grad" + sfx, p.dtype)
    if g.shape != p.shape:
        same_shape(g, "grad" + sfx, p.shape, "param" + sfx)
    ss = [inplace_array(s, name + sfx, p.dtype, p.shape) for s, name in zip(states, state_names)]
    g = contiguous(g)
    disjoint([(p, "param" + sfx)] + [(s, name + sfx) for s, name in zip(ss, state_names)],
             [(g, "grad" + sfx)])
    return (p, g, *ss)


def _no_overlap_across(groups, suffix, state_names):
    """ValueError if an in-place array of one tensor shares memory with another tensor's
    in-place array or grad (every array here is C-contiguous, so byte bounds are exact; grads
    may overlap each other: they are only read). O(n log n)."""
    spans = sorted((*byte_bounds(a), written, name + sfx)
                   for (p, g, *ss), sfx in zip(groups, suffix)
                   for a, name, written in zip((p, g, *ss), ("param", "grad", *state_names),
                                               (True, False) + (True,) * len(ss)) if a.size)
    ends = {True: (None, None), False: (None, None)}   # furthest end so far, per kind
    for lo, hi, written, name in spans:
        for kind in ((True, False) if written else (True,)):
            end, end_name = ends[kind]
            if end is not None and lo < end:
                if not kind:
                    raise ValueError(f"{name} shares memory with {end_name}; a kernel writing "
                                     f"{name} would change {end_name} while it reads it")
                other = ("each must be its own array" if written else f"a kernel writing "
                         f"{end_name} would change {name} while it reads it")
                raise ValueError(f"{end_name} shares memory with {name}; {other}")
        end, _ = ends[written]
        if end is None or hi > end:
            ends[written] = (hi, name)


def _run(name, groups, scalars):
    for arrays in groups:
        p = arrays[0]
        if p.size:
            fn = _backend.kernel("optim", name, p.size)
            if p.ndim != 1:
                arrays = [a.reshape(-1) for a in arrays]
            fn(*arrays, *scalars)


def apply(rule, lr, param, grad, states=(), step=None, fresh=False):
    """Validate the arrays (``states`` in the order of ``rule.state_names``) and run ``rule``'s
    kernel on each tensor: the one path of the functions below and of ``nnfast.optim``."""
    groups = _groups(param, grad, states, rule.state_names)
    _run(rule.kernel, groups, rule.kernel_args(lr, step, fresh))


@functools.lru_cache(maxsize=256, typed=True)
def _cached_rule(cls, *options):
    return cls(*options)


def shared_rule(cls, *options):
    """``cls(*options)``, made once per distinct options: the functions below and
    ``nnfast.torch``'s optimizers share the cache (``typed``: 1, 1.0 and True are different
    keys, so a cached rule never skips a check its options would fail). Rules are immutable; an
    option that cannot be a key (an array) is checked by a fresh rule, which raises the error
    that names it."""
    try:
        return _cached_rule(cls, *options)
    except TypeError:
        return cls(*options)


def sgd_update(param, grad, lr, weight_decay=0.0):
    """Plain gradient descent, the seed's ``θ = θ - α dθ`` (plus ``wd·θ`` added to dθ).

    >>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    >>> nnfast.sgd_update(p, g, lr=0.1); p
    array([0.95, 0.95, 0.95], dtype=float32)
    """
    lr = _rules.learning_rate(lr)
    rule = shared_rule(_rules.SGD, weight_decay)
    if not _entry.sgd_update(param, grad, *rule.kernel_args(lr)):
        apply(rule, lr, param, grad)


def momentum_update(param, grad, velocity, lr, beta=0.9, *, style="seed", dampening=None,
                    nesterov=False, weight_decay=0.0):
    """Gradient descent with momentum, ``velocity`` updated in place with ``param``.

    - ``style="seed"``: ``V = βV + (1-β)dθ; θ = θ - αV`` (the lecture's formula).
    - ``style="torch"``: torch.optim.SGD: ``V = βV + (1 - dampening)dθ; θ = θ - αV`` (nesterov:
      ``θ = θ - α(dθ + βV)``). torch sets ``V = dθ`` on its first step: pass ``dampening=0``
      there (``nnfast.optim.Momentum`` does).
    - ``style="sklearn"``: scikit-learn's SGD: ``V = βV - α dθ; θ = θ + V`` (nesterov:
      ``θ = θ + βV - α dθ``).
    ``weight_decay`` adds ``wd·θ`` to dθ (torch's coupled form).
    """
    lr = _rules.learning_rate(lr)
    rule = shared_rule(_rules.Momentum, beta, style, dampening, nesterov, weight_decay)
    if not _entry.momentum_update(param, grad, velocity, *rule.kernel_args(lr)):
        apply(rule, lr, param, grad, (velocity,))


def rmsprop_update(param, grad, sq, lr, beta=0.999, eps=1e-8, *, style="seed",
                   weight_decay=0.0):
    """RMSprop, ``sq`` (the seed's S) updated in place with ``param``.

    ``S = βS + (1-β)dθ²``, then ``θ = θ - α dθ / sqrt(S + ε)`` (``style="seed"``) or
    ``θ = θ - α dθ / (sqrt(S) + ε)`` (``style="torch"``, torch.optim.RMSprop with ``alpha=β``).
    """
    lr = _rules.learning_rate(lr)
    rule = shared_rule(_rules.RMSprop, beta, eps, style, weight_decay)
    if not _entry.rmsprop_update(param, grad, sq, *rule.kernel_args(lr)):
        apply(rule, lr, param, grad, (sq,))


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, *, style="seed", decoupled=False):
    """Adam with bias correction; ``m`` (the seed's V) and ``v`` (S) updated in place.

    ``V = β1 V + (1-β1)dθ``, ``S = β2 S + (1-β2)dθ²``, ``V^corr = V/(1-β1^t)``,
    ``S^corr = S/(1-β2^t)`` with ``t = step`` (1 on the first call), then
    ``θ = θ - α V^corr / sqrt(S^corr + ε)`` — the seed's form (``style="seed"``), or
    ``θ = θ - α V^corr / (sqrt(S^corr) + ε)`` — torch.optim.Adam (``style="torch"``), or
    scikit-learn's ``θ = θ - α sqrt(1-β2^t)/(1-β1^t) · V / (sqrt(S) + ε)`` (``style="sklearn"``).
    ``weight_decay`` is added to dθ, or with ``decoupled=True`` applied as ``θ *= 1 - α·wd``
    before the step (torch.optim.AdamW).

    >>> p = np.zeros(4, np.float32); g = np.ones(4, np.float32)
    >>> m, v = np.zeros_like(p), np.zeros_like(p)
    >>> nnfast.adam_update(p, g, m, v, step=1, lr=0.1); p   # first step moves by ≈ lr
    array([-0.1, -0.1, -0.1, -0.1], dtype=float32)
    """
    step = _rules.adam_step(step)
    lr = _rules.learning_rate(lr)
    rule = shared_rule(_rules.Adam, beta1, beta2, eps, weight_decay, style, decoupled)
    if not _entry.adam_update(param, grad, m, v, *rule.kernel_args(lr, step)):
        apply(rule, lr, param, grad, (m, v), step)


def inverse_time_decay(alpha0, decay_rate, epoch):
    """The seed's learning-rate decay ``α = α0 / (1 + decay_rate · epoch_num)``.

    >>> nnfast.inverse_time_decay(0.2, 1.0, 3)
    0.05
    """
    alpha0 = real(alpha0, "alpha0", 0.0)
    decay_rate = real(decay_rate, "decay_rate", 0.0)
    epoch = real(epoch, "epoch", 0.0)
    return alpha0 / (1.0 + decay_rate * epoch)
