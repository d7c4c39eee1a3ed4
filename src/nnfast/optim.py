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
import weakref

import numpy as np

from . import _backend, _rules, updates

__all__ = ["Optimizer", "SGD", "Momentum", "RMSprop", "Adam", "make"]


def _hyperparameter(name):
    """A read-only attribute that shows the rule's validated hyperparameter ``name``."""
    return property(lambda self: getattr(self.rule, name),
                    doc=f"``{name}``, as validated by the constructor (read-only).")


class Optimizer:
    """Base class: ``lr``, the step counter ``t`` and lazily allocated per-parameter state."""

    def __init__(self, lr, rule):
        self.lr = lr
        #: The ``nnfast._rules`` object that turns the hyperparameters into kernel arguments.
        self.rule = rule
        self.t = 0
        self._state = {}
        self._trusted = None

    @property
    def state_names(self):
        """Names of the state arrays each parameter gets (zeros like the parameter)."""
        return self.rule.state_names

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _rules.learning_rate(value)

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

    def _update(self, params, grads, states, fresh, t):
        updates.apply(self.rule, self.lr, params, grads, states, t)

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
        rule = self.rule
        kernel = _backend.kernel("optim", rule.kernel, param.size)
        kernel(param, grad, *trusted[2], *rule.kernel_args(self.lr, t))
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
        return {"lr": self.lr, **self.rule.options()}


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
        super().__init__(lr, _rules.SGD(weight_decay))

    weight_decay = _hyperparameter("weight_decay")


class Momentum(Optimizer):
    """Gradient descent with momentum (see ``nnfast.momentum_update``).

    ``style="seed"``: ``V = βV + (1-β)dθ; θ = θ - αV``. ``style="torch"``: torch.optim.SGD with
    ``momentum=beta`` (``V = dθ`` on the first step, then ``V = βV + (1-dampening)dθ``).
    ``style="sklearn"``: scikit-learn's ``V = βV - α dθ; θ = θ + V``. ``nesterov`` for torch and
    sklearn styles.
    """

    def __init__(self, lr=0.01, beta=0.9, style="seed", dampening=None, nesterov=False,
                 weight_decay=0.0):
        super().__init__(lr, _rules.Momentum(beta, style, dampening, nesterov, weight_decay))

    beta = _hyperparameter("beta")
    style = _hyperparameter("style")
    dampening = _hyperparameter("dampening")
    nesterov = _hyperparameter("nesterov")
    weight_decay = _hyperparameter("weight_decay")

    def _update(self, params, grads, states, fresh, t):
        if self.style != "torch" or not any(fresh):
            updates.apply(self.rule, self.lr, params, grads, states, t)
            return
        # torch sets the buffer to dθ on its first step: the rule's fresh form for new state.
        for first in (True, False):
            idx = [i for i, f in enumerate(fresh) if f is first]
            if idx:
                updates.apply(self.rule, self.lr, [params[i] for i in idx],
                              [grads[i] for i in idx], [[s[i] for i in idx] for s in states],
                              t, fresh=first)


class RMSprop(Optimizer):
    """RMSprop: ``S = βS + (1-β)dθ²``, ``θ = θ - α dθ / sqrt(S + ε)`` (seed) or
    ``/ (sqrt(S) + ε)`` (``style="torch"``, torch.optim.RMSprop with ``alpha=beta``)."""

    def __init__(self, lr=0.001, beta=0.999, eps=1e-8, style="seed", weight_decay=0.0):
        super().__init__(lr, _rules.RMSprop(beta, eps, style, weight_decay))

    beta = _hyperparameter("beta")
    eps = _hyperparameter("eps")
    style = _hyperparameter("style")
    weight_decay = _hyperparameter("weight_decay")


class Adam(Optimizer):
    """Adam with bias correction (see ``nnfast.adam_update``); ``decoupled=True`` is AdamW.

    ``style="seed"``: ``θ -= α V^corr / sqrt(S^corr + ε)``; ``"torch"``: ``/ (sqrt(S^corr) + ε)``;
    ``"sklearn"``: scikit-learn's adam solver.
    """

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 style="seed", decoupled=False):
        super().__init__(lr, _rules.Adam(beta1, beta2, eps, weight_decay, style, decoupled))

    beta1 = _hyperparameter("beta1")
    beta2 = _hyperparameter("beta2")
    eps = _hyperparameter("eps")
    weight_decay = _hyperparameter("weight_decay")
    style = _hyperparameter("style")
    decoupled = _hyperparameter("decoupled")


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
