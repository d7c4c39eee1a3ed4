"""torch.optim's SGD, Adam, AdamW and RMSprop, stepping CPU tensors through nnfast's fused kernels.

Each class subclasses torch's optimizer of the same name (``isinstance(opt, torch.optim.Adam)``
holds) and inherits everything but ``step``: the constructor with its defaults and checks, param
groups, ``state_dict``/``load_state_dict`` (state keys and the tensor ``'step'`` are torch's, so
a state dict saved by either loads in the other), ``zero_grad``, hooks, LR schedulers (``step``
reads ``group["lr"]`` every time). ``step`` views each parameter, gradient and state tensor as a
NumPy array (``t.detach().numpy()``: the same memory, no copy; only a non-contiguous gradient is
read through a contiguous copy) and updates them in place with one ``nnfast.updates`` call per
param group (``style="torch"`` reproduces torch's arithmetic; ``tests/test_torch_front.py``
checks 100 steps against torch).

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
import warnings

try:
    import torch
except ImportError as exc:  # torch is an optional extra: pip install "nnfast[torch]"
    raise ImportError("nnfast.torch needs PyTorch: pip install torch") from exc

from . import updates

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "FallbackWarning"]

_DTYPES = (torch.float32, torch.float64)


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


def _np(t):
    """The NumPy view of tensor ``t`` (same memory)."""
    return t.detach().numpy()


class _Front:
    """``step`` of the nnfast optimizers. A subclass sets:

    - ``_torch_step``: torch's step function of the class (the fallback);
    - ``_group_reason(group)``: why the group's options rule nnfast out, or None;
    - ``_state_keys(group)``: the state tensors the update reads and writes;
    - ``_update(group, params, states)``: update the served parameters (tensors with a grad) of
      one group; ``states`` are their ``self.state`` dicts, possibly still empty.
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
            keys = self._state_keys(group)
            params, states, rest = [], [], {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                # like torch, no state entry for an optimizer without state (SGD, momentum 0)
                state = self.state[p] if keys else {}
                why = _tensor_reason(p, state, keys)
                if why is None:
                    params.append(p)
                    states.append(state)
                else:
                    rest.setdefault(why, []).append(p)
            if params:
                self._update(group, params, states)
            for why, ps in rest.items():
                self._fallback([(group, ps)], why)
        return loss

    def _view(self, t):
        """The NumPy view of parameter or state tensor ``t`` (same memory), cached while ``t``
        keeps its memory and shape (``p.data = ...`` makes a new view). Gradients are not cached:
        ``zero_grad()`` replaces them every step. The cache saves ~1 us a tensor per step."""
        cache = self.__dict__.setdefault("_nnfast_views", {})
        entry = cache.get(id(t))
        if entry is None or entry[0] is not t or entry[2] != t.data_ptr() or \
                entry[1].shape != t.shape:
            entry = cache[id(t)] = (t, t.detach().numpy(), t.data_ptr())
        return entry[1]

    def _by_step(self, states):
        """Advance ``state['step']`` of each parameter; {step: indices} (a group's parameters
        share a step count unless some were added later or skipped steps without a gradient)."""
        buckets = {}
        for i, state in enumerate(states):
            t = self._view(state["step"])  # a 0-d array: += and int() cost less than torch's
            t += 1
            buckets.setdefault(int(t), []).append(i)
        return buckets

    def load_state_dict(self, state_dict):
        self.__dict__.pop("_nnfast_views", None)  # would keep the replaced state tensors alive
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

    def _update(self, group, params, states):
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        ps = [self._view(p) for p in params]
        gs = [_np(p.grad) for p in params]
        if group["momentum"] == 0:
            updates.sgd_update(ps, gs, lr, weight_decay=wd)
            return
        # torch's first step sets the buffer to dθ: a zero buffer with dampening 0 does that
        first = [i for i, s in enumerate(states) if s.get("momentum_buffer") is None]
        for i in first:
            states[i]["momentum_buffer"] = torch.zeros_like(params[i],
                                                            memory_format=torch.preserve_format)
        first_set = set(first)
        later = [i for i in range(len(params)) if i not in first_set]
        for idx, dampening in ((first, 0.0), (later, group["dampening"])):
            if idx:
                updates.momentum_update(
                    [ps[i] for i in idx], [gs[i] for i in idx],
                    [self._view(states[i]["momentum_buffer"]) for i in idx], lr,
                    float(group["momentum"]), style="torch", dampening=float(dampening),
                    nesterov=group["nesterov"], weight_decay=wd)


class Adam(_Front, torch.optim.Adam):
    __doc__ = torch.optim.Adam.__doc__
    _torch_step = _unhooked(torch.optim.Adam.step)

    @staticmethod
    def _group_reason(group):
        return "amsgrad=True" if group["amsgrad"] else _common_reason(group)

    @staticmethod
    def _state_keys(group):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, group, params, states):
        for p, state in zip(params, states):
            if not state:
                state["step"] = (torch.zeros((), dtype=torch.float32) if group["fused"]
                                 else torch.tensor(0.0, dtype=_scalar_dtype()))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        # torch >= 2.6 keeps AdamW's decoupled decay in the group; before, AdamW was its own class
        decoupled = group.get("decoupled_weight_decay", isinstance(self, torch.optim.AdamW))
        for t, idx in self._by_step(states).items():
            updates.adam_update(
                [self._view(params[i]) for i in idx], [_np(params[i].grad) for i in idx],
                [self._view(states[i]["exp_avg"]) for i in idx],
                [self._view(states[i]["exp_avg_sq"]) for i in idx], t, float(group["lr"]),
                float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]),
                style="torch", decoupled=bool(decoupled))


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

    def _update(self, group, params, states):
        for p, state in zip(params, states):
            if not state:
                state["step"] = torch.zeros((), dtype=_scalar_dtype())
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self._by_step(states)  # torch counts steps; RMSprop's update does not use the count
        updates.rmsprop_update(
            [self._view(p) for p in params], [_np(p.grad) for p in params],
            [self._view(s["square_avg"]) for s in states], float(group["lr"]), float(group["alpha"]),
            float(group["eps"]), style="torch", weight_decay=float(group["weight_decay"]))
