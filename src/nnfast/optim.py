"""Optimizer objects over lists of arrays (seed: "More Optimization Algorithms").

Each optimizer keeps its state (velocity, squares, moments) per parameter array, created lazily
on the first ``step``, and calls the fused
in-place kernels of ``nnfast.updates`` once per step over the whole list — the drop-in for another
trainer's update loop::

    opt = nnfast.optim.Adam(lr=1e-3)
    for X, y in batches:
        grads = compute_grads(params, X, y)
        opt.step(params, grads)

An optimizer belongs to the arrays of its first ``step``: a later step on other arrays (another
model's, even of the same shapes) is a ValueError, not a silent reuse of their moments and step
count — use one optimizer per model, or ``reset()`` it. The arrays are recognized by their memory
(address, shape, dtype, and the array that owns it, by weak reference), so new views of the same
memory (``W.reshape(-1)`` each step) are the same parameters.

``nnfast.MLP`` passes its one flat parameter buffer, so a step is a single kernel call. ``lr`` is
a plain attribute: learning-rate schedules (the seed's decay) set it between steps. Listed in
order of increasing complexity; ``style`` chooses whose formula is reproduced: the lecture's
(``"seed"``), ``torch.optim``'s (``"torch"``) or scikit-learn's (``"sklearn"``).
"""
import math
import weakref

import numpy as np

from . import _backend, updates
from ._validate import beta as check_beta
from ._validate import real

__all__ = ["Optimizer", "SGD", "Momentum", "RMSprop", "Adam", "make"]


def _check_style(style, allowed):
    if style not in allowed:
        raise ValueError(f"style must be one of {allowed}, got {style!r}")
    return style


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


class Optimizer:
    """Base class: ``lr``, the step counter ``t`` and lazily allocated per-parameter state."""

    #: Names of the state arrays each parameter gets (zeros like the parameter).
    state_names = ()

    def __init__(self, lr):
        self.lr = lr
        self.t = 0
        self._state = {}
        self._trusted = None

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = real(value, "lr", 0.0)

    def _lists(self, params, grads):
        if isinstance(params, (list, tuple)):
            params, grads = list(params), grads
        else:
            params, grads = [params], [grads]
        if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
            raise ValueError(f"grads must be a list of {len(params)} arrays, one per param")
        return params, list(grads)

    def _states(self, params):
        """Per state name, the list of state arrays of ``params``; and which were just created.

        ``self._state`` maps a position to (memory key, owner weakref, state arrays); a param
        whose memory is not the one stepped before at that position is a ValueError."""
        fresh = []
        columns = [[] for _ in self.state_names]
        if self._state and len(params) != len(self._state):
            raise ValueError(self._foreign(f"it stepped {len(self._state)} arrays, now "
                                           f"{len(params)} are given"))
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"param[{i}] must be a numpy array updated in place, "
                                f"got {type(p).__name__}")
            key, owner = _memory(p)
            entry = self._state.get(i)
            if entry is not None and (entry[0] != key or entry[1]() is not owner):
                raise ValueError(self._foreign(f"param[{i}] is not the array it stepped before"))
            fresh.append(entry is None)
            if entry is None:
                entry = self._state[i] = (key, weakref.ref(owner),
                                          [np.zeros(p.shape, p.dtype) for _ in self.state_names])
            for column, arr in zip(columns, entry[2]):
                column.append(arr)
        return columns, fresh

    def _foreign(self, what):
        return (f"this {type(self).__name__} holds the state of other arrays ({what}; step "
                f"count t={self.t}): use one optimizer per set of parameters, or call reset() "
                "first")

    def step(self, params, grads):
        """Update ``params`` (an array or a list of arrays) in place from ``grads``."""
        params, grads = self._lists(params, grads)
        states, fresh = self._states(params)
        self._update(params, grads, states, fresh, self.t + 1)
        self.t += 1

    def step_flat(self, param, grad):
        """``step(param, grad)`` for a caller that passes the same two 1-D arrays every time
        (``nnfast.MLP``'s flat buffers). The first call validates them through
        ``nnfast.updates``; later calls go straight to the backend's fused kernel, skipping
        ~50 µs of per-call checks (Adam on a 17k-element buffer: 120-138 µs -> 72-80 µs,
        reference backend, timeit).
        Hyperparameters other than ``lr`` are taken as validated by the constructor."""
        trusted = self._trusted
        if (trusted is None or trusted[0] is not param or trusted[1] is not grad
                or not param.flags.writeable):     # made read-only since: validate again
            self.step(param, grad)
            if param.ndim == 1:
                self._trusted = (param, grad, self._state[0][2])
            return
        t = self.t + 1
        _backend.kernel("optim", self._kernel_name, param.size)(param, grad, *trusted[2],
                                                               *self._scalars(t))
        self.t = t

    def reset(self):
        """Forget the state and the step count."""
        self.t = 0
        self._state.clear()
        self._trusted = None

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts})"

    def _options(self):
        return {"lr": self.lr}


def _memory(p):
    """(key, owner) of an array's memory: the key is (address, shape, strides, dtype); the owner
    is the ndarray at the root of ``p.base`` (the array that allocated the memory)."""
    owner = p
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    return (p.__array_interface__["data"][0], p.shape, p.strides, p.dtype.str), owner


class SGD(Optimizer):
    """Plain gradient descent, the seed's ``θ = θ - α dθ`` (``weight_decay`` adds ``wd·θ``)."""

    def __init__(self, lr=0.01, weight_decay=0.0):
        super().__init__(lr)
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    _kernel_name = "sgd_update"

    def _update(self, params, grads, states, fresh, t):
        updates.sgd_update(params, grads, self.lr, self.weight_decay)

    def _scalars(self, t):
        return self.lr, self.weight_decay

    def _options(self):
        return {"lr": self.lr, "weight_decay": self.weight_decay}


class Momentum(Optimizer):
    """Gradient descent with momentum (see ``nnfast.momentum_update``).

    ``style="seed"``: ``V = βV + (1-β)dθ; θ = θ - αV``. ``style="torch"``: torch.optim.SGD with
    ``momentum=beta`` (``V = dθ`` on the first step, then ``V = βV + (1-dampening)dθ``).
    ``style="sklearn"``: scikit-learn's ``V = βV - α dθ; θ = θ + V``. ``nesterov`` for torch and
    sklearn styles.
    """

    state_names = ("velocity",)
    _kernel_name = "momentum_update"

    def __init__(self, lr=0.01, beta=0.9, style="seed", dampening=None, nesterov=False,
                 weight_decay=0.0):
        super().__init__(lr)
        self.beta = check_beta(beta, "beta")
        self.style = _check_style(style, ("seed", "torch", "sklearn"))
        if dampening is not None:
            if style == "seed":
                raise ValueError("dampening is fixed to beta in the seed's form; use style='torch'")
            dampening = real(dampening, "dampening", 0.0, 1.0)
        self.dampening = dampening
        self.nesterov = _check_bool(nesterov, "nesterov")
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    def _update(self, params, grads, states, fresh, t):
        (velocity,) = states
        opts = dict(style=self.style, nesterov=self.nesterov, weight_decay=self.weight_decay)
        if self.style != "torch" or not any(fresh):
            updates.momentum_update(params, grads, velocity, self.lr, self.beta,
                                    dampening=self.dampening, **opts)
            return
        # torch sets the buffer to dθ on its first step: dampening 0 for fresh state only.
        for first in (True, False):
            idx = [i for i, f in enumerate(fresh) if f is first]
            if idx:
                updates.momentum_update([params[i] for i in idx], [grads[i] for i in idx],
                                        [velocity[i] for i in idx], self.lr, self.beta,
                                        dampening=0.0 if first else self.dampening, **opts)

    def _scalars(self, t):
        # Low-level arguments after the first step (which goes through ``updates``).
        damp = self.beta if self.style == "seed" else (self.dampening or 0.0)
        return (self.lr, self.beta, damp, self.weight_decay, self.nesterov,
                self.style == "sklearn")

    def _options(self):
        return {"lr": self.lr, "beta": self.beta, "style": self.style,
                "dampening": self.dampening, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop: ``S = βS + (1-β)dθ²``, ``θ = θ - α dθ / sqrt(S + ε)`` (seed) or
    ``/ (sqrt(S) + ε)`` (``style="torch"``, torch.optim.RMSprop with ``alpha=beta``)."""

    state_names = ("sq",)
    _kernel_name = "rmsprop_update"

    def __init__(self, lr=0.001, beta=0.999, eps=1e-8, style="seed", weight_decay=0.0):
        super().__init__(lr)
        self.beta = check_beta(beta, "beta")
        self.eps = real(eps, "eps", 0.0)
        self.style = _check_style(style, ("seed", "torch"))
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    def _update(self, params, grads, states, fresh, t):
        (sq,) = states
        updates.rmsprop_update(params, grads, sq, self.lr, self.beta, self.eps, style=self.style,
                               weight_decay=self.weight_decay)

    def _scalars(self, t):
        return self.lr, self.beta, self.eps, self.weight_decay, self.style == "seed"

    def _options(self):
        return {"lr": self.lr, "beta": self.beta, "eps": self.eps, "style": self.style,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam with bias correction (see ``nnfast.adam_update``); ``decoupled=True`` is AdamW.

    ``style="seed"``: ``θ -= α V^corr / sqrt(S^corr + ε)``; ``"torch"``: ``/ (sqrt(S^corr) + ε)``;
    ``"sklearn"``: scikit-learn's adam solver.
    """

    state_names = ("m", "v")
    _kernel_name = "adam_update"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 style="seed", decoupled=False):
        super().__init__(lr)
        self.beta1 = check_beta(beta1, "beta1")
        self.beta2 = check_beta(beta2, "beta2")
        self.eps = real(eps, "eps", 0.0)
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)
        self.style = _check_style(style, ("seed", "torch", "sklearn"))
        self.decoupled = _check_bool(decoupled, "decoupled")

    def _update(self, params, grads, states, fresh, t):
        m, v = states
        updates.adam_update(params, grads, m, v, t, self.lr, self.beta1, self.beta2, self.eps,
                            self.weight_decay, style=self.style, decoupled=self.decoupled)

    def _scalars(self, t):
        bc1, bc2 = 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t
        # as nnfast.adam_update: sklearn's eps sits outside the uncorrected sqrt(S)
        eps = self.eps / math.sqrt(bc2) if self.style == "sklearn" else self.eps
        return (self.lr, self.beta1, self.beta2, eps, self.weight_decay, self.decoupled, bc1,
                bc2, self.style == "seed")

    def _options(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "style": self.style,
                "decoupled": self.decoupled}


_NAMES = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}


def make(optimizer, lr=None, **kwargs):
    """An optimizer from a name ("sgd", "momentum", "rmsprop", "adam") and its options, or an
    ``Optimizer`` instance as it is (then ``lr``, if given, replaces its learning rate)."""
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} apply to an optimizer name, not to an "
                            "Optimizer instance")
        if lr is not None:
            optimizer.lr = lr
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an nnfast.optim.Optimizer, "
                        f"got {type(optimizer).__name__}")
    cls = _NAMES.get(optimizer.lower())
    if cls is None:
        raise ValueError(f"optimizer must be one of {sorted(_NAMES)}, got {optimizer!r}")
    return cls(**kwargs) if lr is None else cls(lr=lr, **kwargs)
