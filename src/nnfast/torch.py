"""torch.optim's SGD, Adam, AdamW and RMSprop, stepping CPU tensors through nnfast's fused kernels.

Each class subclasses torch's optimizer of the same name (``isinstance(opt, torch.optim.Adam)``
holds) and inherits everything but ``step``: the constructor with its defaults and checks, param
groups, ``state_dict``/``load_state_dict`` (state keys and the tensor ``'step'`` are torch's, so
a state dict saved by either loads in the other), ``zero_grad``, hooks, LR schedulers (``step``
reads ``group["lr"]`` every time). ``step`` views each parameter, gradient and state tensor as a
NumPy array (``t.numpy()``: the same memory, no copy; only a non-contiguous gradient is read
through a contiguous copy) and updates them in place — all of a group's tensors in one call of
the Cython engine's ``update_many`` (their addresses; under a forced ``numba`` or ``reference``
backend, one kernel call per tensor) — with the scalars of ``nnfast._rules`` (``style="torch"`` reproduces torch's arithmetic;
``tests/test_torch_front.py`` checks 100 steps against torch). The views and ``nnfast.updates``'
array checks are made once per param group and set of parameters with a gradient (``_Plan``),
not at every step; a step only compares data pointers and checks each new gradient. Like
torch's in-place updates, ``step`` bumps the version counter of every tensor it changes, so a
graph saved before the step raises when it is run again instead of using the new weights.

What the kernels do not serve is updated by torch's own implementation of the class, with a
``FallbackWarning`` (once per optimizer and reason) — never refused, never approximated:

- tensors: not on the CPU (CUDA, ...), a dtype other than float32/float64 (half, bfloat16,
  complex), sparse gradients, non-contiguous parameters or state (a transposed leaf,
  channels_last), tensors NumPy cannot view;
- options: ``maximize``, ``capturable``, ``differentiable``; Adam/AdamW ``amsgrad``; RMSprop
  ``centered`` and ``momentum``; an SGD ``dampening`` outside [0, 1] or RMSprop ``alpha`` >= 1
  (nnfast's kernels require them); a GradScaler's ``grad_scale``/``found_inf``.

The fallback runs torch's unmodified ``step`` on just those parameters, sharing ``self.state``.
For a strict check that everything runs in nnfast:
``warnings.simplefilter("error", nnfast.torch.FallbackWarning)``. ``foreach`` and ``fused`` are
accepted as torch accepts them and only choose torch's implementation for the fallback.
"""
import bisect
import operator
import warnings

import numpy as np

try:
    import torch
except ImportError as exc:  # torch is an optional extra: pip install "nnfast[torch]"
    raise ImportError("nnfast.torch needs PyTorch: pip install torch") from exc

from . import _backend, _rules, _validate, updates

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "FallbackWarning", "fuse", "MLP", "FusedSequential"]

_DTYPES = (torch.float32, torch.float64)
#: Plans kept per optimizer (one per param group and set of parameters with a gradient).
_MAX_PLANS = 16


class FallbackWarning(UserWarning):
    """Some parameters were updated by torch's own optimizer, not by nnfast's kernels."""


def _unhooked(step):
    """torch's ``step`` without the hook wrapper that ``Optimizer`` puts on a class's ``step`` when
    the first instance is made: the hooks run once, around nnfast's ``step``."""
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def _scalar_dtype():
    """dtype of a new ``state['step']``: torch.optim.optimizer._get_scalar_dtype()."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _tensor_reason(p, state, keys):
    """Why nnfast cannot update parameter ``p`` (with its gradient and ``state[k]`` for ``k``
    in ``keys``), or None."""
    g = p.grad
    if p.device.type != "cpu":
        return f"parameters on {p.device.type}"
    if p.layout is not torch.strided or g.layout is not torch.strided:
        return "sparse parameters or gradients"
    if p.dtype not in _DTYPES or g.dtype != p.dtype:
        return f"{p.dtype} parameters" if p.dtype not in _DTYPES else f"{g.dtype} gradients"
    if not p.is_contiguous():
        return "non-contiguous parameters"
    for k in keys:
        s = state.get(k)
        if s is not None and (s.dtype != p.dtype or s.device != p.device
                              or not s.is_contiguous() or s.shape != p.shape):
            return f"state {k!r} not a contiguous tensor like its parameter"
    if p.is_neg() or p.is_conj() or g.is_neg() or g.is_conj():
        return "tensors NumPy cannot view (negative or conjugate bit)"
    return None


class _Plan:
    """The parameters of one param group that nnfast steps (those with a gradient), validated
    once (``_Front._plan``): ``views``, (parameter, (state, ...)) NumPy views, 1-D, the same
    memory.

    ``valid`` is what a step checks, in C-level passes over the tensors: each parameter's
    state dict and state tensors are the ones viewed, the data pointers of all and the sizes
    of the parameters are unchanged — ``p.data = ...``, a replaced state tensor or ``load_state_dict`` make a new
    plan, and the old views are dropped. ``starts``/``ends`` are the sorted byte spans of the
    arrays the kernels write, which a gradient must not overlap. ``fresh``: indices whose
    momentum buffer was created by this plan (torch's first step sets it to dθ). ``step_flat``:
    when the ``state['step']`` tensors are the elements of one buffer in order (``_Front._plan``
    makes them so), its NumPy view: all steps advance in one operation."""

    __slots__ = ("group", "params", "states", "keys", "getters", "tracked", "sizes",
                 "pointers", "views", "steps", "step_flat", "changed", "dtype", "nbytes",
                 "starts", "ends", "fresh", "elements", "addresses")

    def __init__(self, group, params, states, keys):
        self.group, self.params, self.states = group, params, states
        self.keys = keys + ("step",) if "step" in states[0] else keys
        self.getters = [(operator.itemgetter(k), [s[k] for s in states]) for k in self.keys]
        self.tracked = list(params) + [t for _, ts in self.getters for t in ts]
        self.sizes = list(map(_NUMEL, params))
        self.pointers = list(map(_DATA_PTR, self.tracked))
        self.views = [(_flat(p), tuple(_flat(s[k]) for k in keys))
                      for p, s in zip(params, states)]
        self.steps = [_np(s["step"]) for s in states] if "step" in self.keys else None
        self.step_flat = _flat_steps(states) if self.steps else None
        self.changed = self.tracked
        self.dtype = self.views[0][0].dtype
        self.nbytes = [v[0].nbytes for v in self.views]
        spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for p, state in self.views
                       for a in (p, *state) if a.size)
        self.starts, self.ends = [lo for lo, _ in spans], [hi for _, hi in spans]
        self.fresh = ()
        self.elements = np.array(self.sizes, np.int64)
        self.addresses = [np.array([v[0].ctypes.data for v in self.views], np.int64)] + \
            [np.array([v[1][j].ctypes.data for v in self.views], np.int64)
             for j in range(len(keys))]

    def valid(self, optimizer):
        try:
            if self.keys and not all(map(operator.is_, map(optimizer.state.__getitem__,
                                                           self.params), self.states)):
                return False
            for get, tensors in self.getters:
                if not all(map(operator.is_, map(get, self.states), tensors)):
                    return False
        except KeyError:   # a state entry deleted
            return False
        return list(map(_DATA_PTR, self.tracked)) == self.pointers and \
            list(map(_NUMEL, self.params)) == self.sizes

    def overlaps(self, lo, hi):
        """Whether bytes [lo, hi) overlap an array the kernels write."""
        j = bisect.bisect_left(self.starts, hi) - 1
        return j >= 0 and self.ends[j] > lo


_DATA_PTR = torch.Tensor.data_ptr
_NUMEL = torch.Tensor.numel


def _pick(grads, js):
    """``_step_plan``'s (tensors, addresses) pair at positions ``js``."""
    tensors, addresses = grads
    return [tensors[j] for j in js], [addresses[j] for j in js]


def _multi_engine():
    """The Cython engine when the backend in force is "cython", or "auto" with the Cython
    backend built (one call for all of a group's tensors costs less than a call per tensor of
    any backend's kernel, which is what "auto" picks by at small sizes), else None."""
    if _backend.get_backend() not in ("auto", "cython") or not _backend.available("cython"):
        return None
    from ._cython import engine

    return engine


def _step_threads():
    """The OpenMP threads of the optimizer kernels: the network-step engine's, every usable CPU
    within ``nnfast.set_num_threads``'s bound (``nnfast._cython.step.threads``). Only tensors of
    PARALLEL_MIN (2**17) elements or more are split over them, in fixed blocks (the same bits
    for any count): a 1e7-parameter Adam step took 7.5 ms on one thread, 3.7 ms on two."""
    from ._cython import step

    return step.threads()


def _flat_steps(states):
    """The NumPy view of the buffer whose elements 0, 1, ... are the states' ``'step'``
    tensors in order, or None if they are not."""
    steps = [s["step"] for s in states]
    base = steps[0]._base
    if base is None or base.dim() != 1 or len(base) != len(steps) or \
            not base.is_contiguous() or any(t._base is not base for t in steps) or \
            [t.storage_offset() for t in steps] != \
            list(range(base.storage_offset(), base.storage_offset() + len(steps))):
        return None
    return _np(base)


def _np(t):
    """The NumPy view of tensor ``t`` (same memory)."""
    return t.detach().numpy()


def _flat(t):
    """The 1-D NumPy view of contiguous tensor ``t`` (same memory)."""
    return t.detach().numpy().reshape(-1)


class _Front:
    """``step`` of the nnfast optimizers. A subclass sets:

    - ``_torch_step``: torch's step function of the class (the fallback);
    - ``_group_reason(group)``: why the group's options rule nnfast out, or None;
    - ``_state_keys(group)``: the state tensors the update reads and writes;
    - ``_init_state(group, p, state)``: torch's state of a parameter's first step, in place;
    - ``_update(group, plan, grads, idx)``: run the kernels on ``plan``'s parameters ``idx``
      (indices into ``plan.params``), ``grads`` their gradients (``_step_plan``'s pair of
      tensors or arrays and addresses).

    The cost of a step per tensor is what the per-step check of ``_Plan`` and of a gradient
    takes (the update is one call for the group): everything else (``_tensor_reason``, ``nnfast.updates``'
    array checks, state creation) runs when a group's plan is made, once, not at every step.
    """

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if getattr(self, "grad_scale", None) is not None or \
                getattr(self, "found_inf", None) is not None:
            self._fallback([(g, None) for g in self.param_groups],
                           "a GradScaler's grad_scale/found_inf")
            return loss
        for group in self.param_groups:
            reason = self._group_reason(group)
            if reason is not None:
                self._fallback([(group, None)], reason)
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            plan, rest = self._plan(group, params)
            if plan is not None:
                self._step_plan(group, plan, rest)
            for why, ps in rest.items():
                self._fallback([(group, ps)], why)
        return loss

    def _plan(self, group, params):
        """(the plan of ``params`` or None if nnfast serves none of them, {reason: parameters
        torch steps}), made or taken from the cache."""
        plans = self.__dict__.setdefault("_nnfast_plans", {})
        key = (id(group), tuple(map(id, params)))
        entry = plans.get(key)
        if entry is not None:
            plan, rest = entry[1], entry[2]
            if entry[0] is group and (plan is None or plan.valid(self)):
                return plan, {why: list(ps) for why, ps in rest.items()}
            # a stale plan: the group's others are likely stale too (their views would keep
            # replaced tensors alive until their next use)
            for k in [k for k in plans if k[0] == key[0]]:
                del plans[k]
        elif len(plans) >= _MAX_PLANS:    # parameters with a gradient vary step by step
            plans.clear()
        keys = self._state_keys(group)
        served, states, rest = [], [], {}
        for p in params:
            # like torch, no state entry for an optimizer without state (SGD, momentum 0)
            state = self.state[p] if keys else {}
            why = _tensor_reason(p, state, keys)
            if why is None:
                served.append(p)
                states.append(state)
            else:
                rest.setdefault(why, []).append(p)
        plan = None
        if served:
            fresh = [i for i, s in enumerate(states) if not all(k in s for k in keys)]
            for i in fresh:
                self._init_state(group, served[i], states[i])
            if len(fresh) == len(served) and "step" in states[0]:
                # torch's 0-d step tensors, as the elements of one buffer (_Plan.step_flat)
                steps = torch.stack([s["step"] for s in states])
                for j, s in enumerate(states):
                    s["step"] = steps[j]
            plan = _Plan(group, served, states, keys)
            grads = [_np(p.grad).reshape(-1) for p in served]
            # nnfast.updates' own checks (dtype, layout, writable, no shared memory), once
            updates._groups([v[0] for v in plan.views], grads,
                            [[v[1][j] for v in plan.views] for j in range(len(keys))], keys)
            plan.fresh = fresh
        plans[key] = (group, plan, rest)
        return plan, {why: list(ps) for why, ps in rest.items()}

    def _step_plan(self, group, plan, rest):
        """This step's gradients of ``plan``'s parameters checked (a gradient nnfast cannot
        read goes to ``rest``), the kernels run, and the version counters of the tensors they
        changed bumped, as torch's in-place updates do (a graph saved before the step then
        raises instead of running on with the new values)."""
        grads, idx, addresses = [], [], []
        dtype, starts, ends = plan.dtype, plan.starts, plan.ends
        torch_dtype = plan.params[0].dtype
        for i, (p, nbytes, n) in enumerate(zip(plan.params, plan.nbytes, plan.sizes)):
            g = p.grad
            if g.layout is torch.strided and g.dtype == torch_dtype and g.is_cpu and \
                    g.is_contiguous() and g.numel() == n and not (g.is_neg() or g.is_conj()):
                a = None            # read in place: the kernels take its address
                lo = _DATA_PTR(g)
            else:
                why = _tensor_reason(p, {}, ())
                if why is not None:
                    rest.setdefault(why, []).append(p)
                    continue
                a = _validate.contiguous(_np(g))   # a non-contiguous gradient: read a copy
                if a.nbytes != nbytes or a.dtype is not dtype:
                    raise ValueError(f"gradient of parameter {i} of the group has shape "
                                     f"{tuple(a.shape)}, but the parameter {tuple(p.shape)}")
                lo = a.ctypes.data
                a = a.reshape(-1)
            j = bisect.bisect_left(starts, lo + nbytes) - 1
            if j >= 0 and ends[j] > lo:
                raise ValueError(f"gradient of parameter {i} of the group shares memory with a "
                                 "parameter or optimizer state nnfast writes")
            grads.append(a if a is not None else g)
            addresses.append(lo)
            idx.append(i)
        if not idx:
            return
        self._update(group, plan, (grads, addresses), idx)
        if len(idx) == len(plan.params):
            torch.autograd.graph.increment_version(plan.changed)
        else:
            torch.autograd.graph.increment_version(
                [plan.params[i] for i in idx]
                + [plan.states[i][k] for i in idx for k in plan.keys])

    def _steps(self, plan, idx):
        """Advance ``state['step']`` of parameters ``idx``; {step: positions in ``idx``} (a
        group's parameters share a step count unless some were added later or skipped steps
        without a gradient)."""
        flat = plan.step_flat
        if flat is not None and len(idx) == len(flat) >= 4:   # fewer: a loop costs less
            flat += 1
            first = flat[0]
            if (flat == first).all():
                return {int(first): range(len(idx))}
            values = flat.tolist()
        else:
            values = []
            for i in idx:
                t = plan.steps[i]    # a 0-d array: += and int() cost less than torch's
                t += 1
                values.append(int(t))
        buckets = {}
        for j, t in enumerate(values):
            buckets.setdefault(int(t), []).append(j)
        return buckets

    @staticmethod
    def _run(rule, plan, grads, idx, scalars):
        """``rule``'s kernel on each parameter ``idx[j]`` of ``plan`` with gradient ``grads``
        (``_step_plan``'s (tensors or arrays, addresses) pair, in ``idx``'s order): one call of
        the Cython engine's ``update_many`` over all of them (``_multi_engine``); under another
        backend one kernel call per tensor, the kernel looked up once per size."""
        tensors, addresses = grads
        engine = _multi_engine()
        if engine is not None:
            if len(idx) == len(plan.params):
                chosen = plan.addresses
                sizes = plan.elements
            else:
                chosen = [a[idx] for a in plan.addresses]
                sizes = plan.elements[idx]
            empty = chosen[0][:0]
            engine.update_many(rule.kernel, plan.dtype.itemsize == 8, chosen[0],
                               np.array(addresses, np.int64),
                               chosen[1] if len(chosen) > 1 else empty,
                               chosen[2] if len(chosen) > 2 else empty, sizes,
                               np.array(scalars, np.float64), _step_threads())
            return
        fns = {}
        for g, i in zip(tensors, idx):
            p, state = plan.views[i]
            n = p.size
            if n:
                if not isinstance(g, np.ndarray):
                    g = _flat(g)
                fn = fns.get(n)
                if fn is None:
                    fn = fns[n] = _backend.kernel("optim", rule.kernel, n)
                fn(p, g, *state, *scalars)

    def load_state_dict(self, state_dict):
        self.__dict__.pop("_nnfast_plans", None)  # would keep the replaced state tensors alive
        super().load_state_dict(state_dict)

    def _fallback(self, groups, reason):
        """torch's own step on ``groups``: (param group, its parameters to update or None for
        all), warning once per optimizer and reason."""
        warned = self.__dict__.setdefault("_nnfast_warned", set())
        if reason not in warned:
            warned.add(reason)
            name = type(self).__name__
            warnings.warn(f"nnfast.torch.{name}: nnfast's kernels do not serve {reason}; "
                          f"torch.optim.{name}'s own step updates those parameters",
                          FallbackWarning, stacklevel=5)
        saved = self.param_groups
        self.param_groups = [g if ps is None else dict(g, params=ps) for g, ps in groups]
        try:
            type(self)._torch_step(self)
        finally:
            self.param_groups = saved


def _common_reason(group):
    for option in ("maximize", "capturable", "differentiable"):
        if group.get(option, False):
            return f"{option}=True"
    return None


class SGD(_Front, torch.optim.SGD):
    __doc__ = torch.optim.SGD.__doc__
    _torch_step = _unhooked(torch.optim.SGD.step)

    @staticmethod
    def _group_reason(group):
        reason = _common_reason(group)
        if reason is None and not 0.0 <= group["dampening"] <= 1.0:
            reason = f"dampening={group['dampening']} (nnfast needs 0 <= dampening <= 1)"
        return reason

    @staticmethod
    def _state_keys(group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    @staticmethod
    def _init_state(group, p, state):
        # torch's first step sets the buffer to dθ: a zero buffer with dampening 0 does that
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, group, plan, grads, idx):
        lr = _rules.learning_rate(float(group["lr"]))
        wd = float(group["weight_decay"])
        if group["momentum"] == 0:
            rule = updates.shared_rule(_rules.SGD, wd)
            self._run(rule, plan, grads, idx, rule.kernel_args(lr))
            return
        options = (float(group["momentum"]), "torch", float(group["dampening"]),
                   group["nesterov"], wd)
        rule = updates.shared_rule(_rules.Momentum, *options)
        fresh, plan.fresh = set(plan.fresh), ()
        if not fresh:
            self._run(rule, plan, grads, idx, rule.kernel_args(lr))
            return
        for first in (True, False):
            js = [j for j, i in enumerate(idx) if (i in fresh) == first]
            if js:
                self._run(rule, plan, _pick(grads, js), [idx[j] for j in js],
                          rule.kernel_args(lr, fresh=first))


class Adam(_Front, torch.optim.Adam):
    __doc__ = torch.optim.Adam.__doc__
    _torch_step = _unhooked(torch.optim.Adam.step)

    @staticmethod
    def _group_reason(group):
        return "amsgrad=True" if group["amsgrad"] else _common_reason(group)

    @staticmethod
    def _state_keys(group):
        return ("exp_avg", "exp_avg_sq")

    @staticmethod
    def _init_state(group, p, state):
        state["step"] = (torch.zeros((), dtype=torch.float32) if group["fused"]
                         else torch.tensor(0.0, dtype=_scalar_dtype()))
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, group, plan, grads, idx):
        lr = _rules.learning_rate(float(group["lr"]))
        beta1, beta2 = group["betas"]
        # torch >= 2.6 keeps AdamW's decoupled decay in the group; before, AdamW was its own class
        decoupled = group.get("decoupled_weight_decay", isinstance(self, torch.optim.AdamW))
        options = (float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]),
                   "torch", bool(decoupled))
        rule = updates.shared_rule(_rules.Adam, *options)
        buckets = self._steps(plan, idx)
        if len(buckets) == 1:
            (t, _), = buckets.items()
            self._run(rule, plan, grads, idx, rule.kernel_args(lr, _rules.adam_step(t)))
            return
        for t, js in buckets.items():
            self._run(rule, plan, _pick(grads, js), [idx[j] for j in js],
                      rule.kernel_args(lr, _rules.adam_step(t)))


class AdamW(Adam, torch.optim.AdamW):
    __doc__ = torch.optim.AdamW.__doc__
    _torch_step = _unhooked(torch.optim.AdamW.step)


class RMSprop(_Front, torch.optim.RMSprop):
    __doc__ = torch.optim.RMSprop.__doc__
    _torch_step = _unhooked(torch.optim.RMSprop.step)

    @staticmethod
    def _group_reason(group):
        if group["centered"]:
            return "centered=True"
        if group["momentum"] != 0:
            return "momentum > 0"
        if not group["alpha"] < 1.0:
            return f"alpha={group['alpha']} (nnfast needs 0 <= alpha < 1)"
        return _common_reason(group)

    @staticmethod
    def _state_keys(group):
        return ("square_avg",)

    @staticmethod
    def _init_state(group, p, state):
        state["step"] = torch.zeros((), dtype=_scalar_dtype())
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, group, plan, grads, idx):
        lr = _rules.learning_rate(float(group["lr"]))
        options = (float(group["alpha"]), float(group["eps"]), "torch",
                   float(group["weight_decay"]))
        rule = updates.shared_rule(_rules.RMSprop, *options)
        self._steps(plan, idx)  # torch counts steps; RMSprop's update does not use the count
        self._run(rule, plan, grads, idx, rule.kernel_args(lr))


from ._torch_fuse import MLP, FusedSequential, fuse  # noqa: E402 (uses FallbackWarning)
