"""Optimizer rules: validated hyperparameters turned into a kernel's scalar arguments, once.

One class per rule, in the seed's order (SGD, momentum, RMSprop, Adam). The constructor checks
the hyperparameters (TypeError/ValueError naming them); ``kernel_args(lr, step, fresh)`` returns
the scalars that follow the arrays ``param, grad, *state_names`` in the backend kernel
``kernel`` (``nnfast._reference.optim`` documents them),
deriving what the kernels need from them (Adam's bias corrections, scikit-learn's ε, the
dampening of each style). ``nnfast.updates`` makes one per call; the optimizer classes of
``nnfast.optim`` keep one, so the functional and the object forms cannot drift apart. ``lr``
is an argument of ``kernel_args``, not a field: learning-rate schedules change it every epoch.
"""
import math

import numpy as np

from ._validate import beta as check_beta
from ._validate import choice, flag, integer, real

STYLES = ("seed", "torch", "sklearn")
#: Largest Adam step count: ``beta ** step`` takes it as a float (exact up to 2**53).
MAX_STEP = 2 ** 53


def learning_rate(lr):
    return real(lr, "lr", 0.0)


class SGD:
    """``θ = θ - α (dθ + wd·θ)``."""

    kernel = "sgd_update"
    state_names = ()
    __slots__ = ("weight_decay",)

    def __init__(self, weight_decay=0.0):
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    def kernel_args(self, lr, step=None, fresh=False):
        return lr, self.weight_decay

    def options(self):
        return {"weight_decay": self.weight_decay}


class Momentum:
    """Momentum in the seed's, torch's or scikit-learn's form (``nnfast.momentum_update``)."""

    kernel = "momentum_update"
    state_names = ("velocity",)
    __slots__ = ("beta", "style", "dampening", "nesterov", "weight_decay")

    def __init__(self, beta=0.9, style="seed", dampening=None, nesterov=False,
                 weight_decay=0.0):
        self.beta = check_beta(beta, "beta")
        self.style = choice(style, "style", STYLES)
        if dampening is not None:
            if style == "seed":
                raise ValueError("dampening is fixed to beta in the seed's form; use style='torch'")
            dampening = real(dampening, "dampening", 0.0, 1.0)
        self.dampening = dampening
        self.nesterov = flag(nesterov, "nesterov")
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    def kernel_args(self, lr, step=None, fresh=False):
        """``fresh``: the velocity was just created; torch then sets ``V = dθ`` (dampening 0)."""
        if self.style == "seed":
            damp = self.beta
        else:
            damp = 0.0 if fresh or self.dampening is None else self.dampening
        return (lr, self.beta, damp, self.weight_decay, self.nesterov,
                self.style == "sklearn")

    def options(self):
        return {"beta": self.beta, "style": self.style, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class RMSprop:
    """``S = βS + (1-β)dθ²``, ``θ -= α dθ / sqrt(S + ε)`` (seed) or ``/ (sqrt(S) + ε)`` (torch)."""

    kernel = "rmsprop_update"
    state_names = ("sq",)
    __slots__ = ("beta", "eps", "style", "weight_decay")

    def __init__(self, beta=0.999, eps=1e-8, style="seed", weight_decay=0.0):
        self.beta = check_beta(beta, "beta")
        self.eps = real(eps, "eps", 0.0)
        self.style = choice(style, "style", STYLES[:2])
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)

    def kernel_args(self, lr, step=None, fresh=False):
        return lr, self.beta, self.eps, self.weight_decay, self.style == "seed"

    def options(self):
        return {"beta": self.beta, "eps": self.eps, "style": self.style,
                "weight_decay": self.weight_decay}


class Adam:
    """Adam with bias correction; ``decoupled`` is AdamW (``nnfast.adam_update``)."""

    kernel = "adam_update"
    state_names = ("m", "v")
    __slots__ = ("beta1", "beta2", "eps", "weight_decay", "style", "decoupled")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, style="seed",
                 decoupled=False):
        self.beta1 = check_beta(beta1, "beta1")
        self.beta2 = check_beta(beta2, "beta2")
        self.eps = real(eps, "eps", 0.0)
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)
        self.style = choice(style, "style", STYLES)
        self.decoupled = flag(decoupled, "decoupled")

    def kernel_args(self, lr, step, fresh=False):
        """The scalars for step ``step`` (1 on the first): the bias corrections ``1 - β^t``,
        and for scikit-learn's form its ε, which it adds to the uncorrected sqrt(S): the same
        as torch's form with ε / sqrt(1 - β2^t)."""
        bc1 = 1.0 - self.beta1 ** step
        bc2 = 1.0 - self.beta2 ** step
        eps = self.eps / math.sqrt(bc2) if self.style == "sklearn" else self.eps
        return (lr, self.beta1, self.beta2, eps, self.weight_decay, self.decoupled, bc1, bc2,
                self.style == "seed")

    def options(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "style": self.style,
                "decoupled": self.decoupled}


def kernel_args_table(rule, lr, first, n):
    """``rule.kernel_args(lr, t)`` for the steps t = first, ..., first + n - 1 as the rows of a
    float64 (n, k) array (flags 0/1): an epoch's steps for the engine
    (``src/kernels/engine.pyx``). Only Adam's scalars change with the step; its columns are
    filled by ``kernel_args``' own expressions (tests/test_engine.py compares every row with
    ``kernel_args``), without a tuple per step."""
    row = rule.kernel_args(lr, first)
    table = np.empty((n, len(row)))
    table[:] = row
    if isinstance(rule, Adam) and n:
        steps = range(first, first + n)
        bc2 = [1.0 - rule.beta2 ** t for t in steps]
        table[:, 6] = [1.0 - rule.beta1 ** t for t in steps]
        table[:, 7] = bc2
        if rule.style == "sklearn":
            table[:, 3] = [rule.eps / math.sqrt(c) for c in bc2]
    return table


def adam_step(step):
    return integer(step, "step", low=1, high=MAX_STEP)
