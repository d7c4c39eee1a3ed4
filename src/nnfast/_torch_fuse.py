"""``nnfast.torch.fuse`` and ``nnfast.torch.MLP``: a ``torch.nn.Sequential`` whose runs of
Linear layers and activations are nnfast's fused network passes.

A :class:`FusedSequential` is a ``Sequential`` subclass over the same child modules (so the same
``nn.Parameter`` objects, the same ``state_dict`` keys, ``.train()``/``.eval()``, ``torch.save``).
Its children are cut into *segments* once (``_program``): each maximal run of ``Linear`` layers,
each followed by at most one activation nnfast knows (ReLU, LeakyReLU, Tanh, Sigmoid, Identity,
Softmax over the last dimension), is one :class:`_Chain` whose forward is one call of the engine's
``Chain.forward`` and whose backward, a ``torch.autograd.Function``, is one call of
``Chain.backward`` from the gradient autograd hands it (any loss). Every other child runs as
torch's own module between them, with one ``FallbackWarning`` when the module is fused.

Where the kernels do not apply to a call, the segment runs torch's own modules, with one
``FallbackWarning`` per module and reason: tensors not on the CPU, dtypes other than
float32/float64 (or parameters of another dtype than the input), non-contiguous or channels-last
inputs, non-contiguous parameters, forward or backward hooks on a fused layer (or global module
hooks), CPU autocast, and double backward (``create_graph=True``: that backward is recomputed with torch's
operations, so it is differentiable).
"""
import collections
import warnings

import numpy as np
import torch

from . import _constants

_ACTIVATIONS = {torch.nn.ReLU: _constants.RELU, torch.nn.LeakyReLU: _constants.LEAKY_RELU,
                torch.nn.Tanh: _constants.TANH, torch.nn.Sigmoid: _constants.SIGMOID,
                torch.nn.Identity: _constants.IDENTITY, torch.nn.Softmax: _constants.SOFTMAX}
_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_DATA_PTR = torch.Tensor.data_ptr
_GLOBAL_HOOKS = [getattr(torch.nn.modules.module, name) for name in
                 ("_global_forward_hooks", "_global_forward_pre_hooks",
                  "_global_backward_hooks", "_global_backward_pre_hooks")
                 if hasattr(torch.nn.modules.module, name)]
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


_engine_module = []


def _engine():
    """The Cython engine module (told where its BLAS's thread switch is), or None where the
    compiled backend is missing."""
    if not _engine_module:
        try:
            from ._cython import engine
        except ImportError:
            engine = None
        else:
            from . import _blas

            _blas.link()
        _engine_module.append(engine)
    return _engine_module[0]


def _kind(module):
    """The activation code nnfast runs ``module`` as, or None."""
    code = _ACTIVATIONS.get(type(module))
    if code == _constants.SOFTMAX and module.dim not in (-1, 1):
        return None
    return code


def _torch_forward(x, layers, params):
    """The segment's forward in torch's operations, on ``params`` (W, b per Linear)."""
    for j, (linear, act) in enumerate(layers):
        x = torch.nn.functional.linear(x, params[2 * j], params[2 * j + 1])
        if act is not None:
            x = act(x)
    return x


class _ChainFunction(torch.autograd.Function):
    """forward: the chain's forward pass; backward: its backward from autograd's output
    gradient. Inputs: the segment, x (m, in), then W, b of each Linear (b may be None)."""

    @staticmethod
    def forward(ctx, seg, x, *params):
        out, ws = seg.forward(x)
        ctx.seg, ctx.ws, ctx.w_ptrs, ctx.w_list = seg, ws, seg.w_ptrs, seg.pointers[0::2]
        ctx.save_for_backward(x, *params)
        return out

    @staticmethod
    def backward(ctx, g):
        seg = ctx.seg
        x, *params = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():          # create_graph=True: a differentiable backward
            seg.owner._warn("double backward (create_graph=True)")
            return (None,) + _recompute(seg, x, params, g, need[1:])
        if [_DATA_PTR(w) for w in params[0::2]] != ctx.w_list:   # p.data = ... since then
            with torch.no_grad():
                return (None,) + _recompute(seg, x, params, g, need[1:])
        chain = seg.chains[x.dtype]
        m = x.shape[0]
        if not g.is_contiguous():
            g = g.contiguous()
        grads = [torch.empty(p.shape, dtype=x.dtype) if p is not None and need[2 + i] else None
                 for i, p in enumerate(params)]
        ptrs = np.array([0 if t is None else _DATA_PTR(t) for t in grads[0::2]]
                        + [0 if t is None else _DATA_PTR(t) for t in grads[1::2]], np.int64)
        dx = torch.empty(x.shape, dtype=x.dtype) if need[1] else None
        scratch = torch.empty(chain.scratch(m), dtype=x.dtype)
        L = len(grads) // 2
        chain.backward(_DATA_PTR(x), m, ctx.w_ptrs, _DATA_PTR(ctx.ws), _DATA_PTR(g),
                       _DATA_PTR(scratch), ptrs[:L], ptrs[L:], 0 if dx is None else _DATA_PTR(dx))
        return (None, dx, *grads)


def _recompute(seg, x, params, g, need):
    """(dx, dW_0, db_0, ...) of the segment at g by torch's autograd, with a graph."""
    inputs = [t for t, n in zip((x, *params), need) if n and t is not None]
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        out = _torch_forward(x, seg.layers, params)
        found = iter(torch.autograd.grad(out, inputs, g, create_graph=create,
                                         allow_unused=True))
    return tuple(next(found) if n and t is not None else None for t, n in zip((x, *params), need))


class _Chain:
    """A run of Linear layers, each with its activation (or none), that nnfast runs fused:
    ``layers`` ((Linear, activation module or None), ...), ``sizes``, and per dtype the
    engine's ``Chain``. The parameters' addresses (``w_ptrs``, ``b_ptrs``) are checked when
    any of them changes (``p.data = ...``, ``.double()``)."""

    def __init__(self, owner, names, layers):
        self.owner, self.names, self.layers = owner, names, layers
        self.sizes = np.array([layers[0][0].in_features] + [lin.out_features for lin, _ in layers],
                              np.int64)
        self.kinds = np.array([_constants.IDENTITY if act is None else _kind(act)
                               for _, act in layers], np.int32)
        self.slopes = np.array([act.negative_slope if isinstance(act, torch.nn.LeakyReLU) else 0.0
                                for _, act in layers], np.float64)
        self.softmax_dim1 = any(isinstance(act, torch.nn.Softmax) and act.dim == 1
                                for _, act in layers)
        self.hooks = [getattr(mod, h) for lin, act in layers for mod in (lin, act)
                      if mod is not None for h in _HOOKS]
        self.tables = [lin._parameters for lin, _ in layers]
        self.in_features, self.n_out = int(self.sizes[0]), int(self.sizes[-1])
        self.chains, self.pointers, self.dtype = {}, None, None
        self.w_ptrs = self.b_ptrs = None

    def params(self):
        """W, b of each Linear (b None without a bias), read from the layers at every call: a
        replaced ``lin.weight`` is the one autograd sees."""
        return [t for d in self.tables for t in (d["weight"], d["bias"])]

    def _param_reason(self, params, dtype):
        """Why the kernels cannot run on these parameters with inputs of ``dtype``, or None;
        records their addresses when they can."""
        for p in params:
            if p is None:
                continue
            if p.device.type != "cpu":
                return f"parameters on {p.device.type}"
            if p.dtype != dtype:
                return f"{p.dtype} parameters with {dtype} inputs"
            if p.layout is not torch.strided or not p.is_contiguous():
                return "non-contiguous parameters"
            if p.is_neg() or p.is_conj():
                return "parameters with a negative or conjugate bit"
        if dtype not in self.chains:
            from ._cython.step import threads

            self.chains[dtype] = _engine().Chain(self.sizes, self.kinds, self.slopes,
                                                 threads(), _DTYPES[dtype])
        self.w_ptrs = np.array([_DATA_PTR(w) for w in params[0::2]], np.int64)
        self.b_ptrs = np.array([0 if b is None else _DATA_PTR(b) for b in params[1::2]],
                               np.int64)
        self.pointers = [0 if p is None else _DATA_PTR(p) for p in params]
        self.dtype = dtype
        return None

    def forward(self, x):
        """(output, workspace) of the engine's chain forward on x (m, in), checked by
        ``reason``."""
        m = x.shape[0]
        ws = torch.empty(self.chains[x.dtype].workspace(m), dtype=x.dtype)
        out = torch.empty((m, self.n_out), dtype=x.dtype)
        self.chains[x.dtype].forward(_DATA_PTR(x), m, self.w_ptrs, self.b_ptrs, _DATA_PTR(ws),
                                     _DATA_PTR(out))
        return out, ws

    def reason(self, x, params):
        """Why this call runs torch's modules ("" when torch's modules raise or return an
        empty result themselves), or None."""
        if not isinstance(x, torch.Tensor):
            return ""
        if not x.is_cpu:
            return f"inputs on {x.device.type}"
        if x.dtype not in _DTYPES:
            return f"{x.dtype} inputs"
        if x.layout is not torch.strided or not x.is_contiguous() or x.is_neg() or x.is_conj():
            return "non-contiguous or channels-last inputs"
        if x.dim() < 1 or x.shape[-1] != self.in_features or x.numel() == 0:
            return ""
        if self.softmax_dim1 and x.dim() != 2:
            return f"Softmax(dim=1) on {x.dim()}-dimensional inputs"
        if any(self.hooks) or any(_GLOBAL_HOOKS):
            return "module hooks on a fused layer"
        if torch.is_autocast_enabled("cpu"):
            return "autocast (torch's Linear computes in the autocast dtype)"
        if x.dtype != self.dtype or \
                [0 if p is None else _DATA_PTR(p) for p in params] != self.pointers:
            return self._param_reason(params, x.dtype)
        return None

    def __call__(self, x):
        params = self.params()
        why = self.reason(x, params)
        if why is not None:
            if why:
                self.owner._warn(why)
            for lin, act in self.layers:
                x = lin(x)
                if act is not None:
                    x = act(x)
            return x
        shape = x.shape
        if x.dim() != 2:
            x = x.reshape(-1, shape[-1])
        if torch.is_grad_enabled() and (x.requires_grad or any(p is not None and p.requires_grad
                                                               for p in params)):
            out = _ChainFunction.apply(self, x, *params)
        else:                               # inference: no graph, the workspace dropped
            out = self.forward(x)[0]
        return out if len(shape) == 2 else out.reshape(*shape[:-1], out.shape[-1])


class FusedSequential(torch.nn.Sequential):
    """A ``torch.nn.Sequential`` whose Linear layers and activations run as nnfast's fused
    forward and backward passes (``nnfast.torch.fuse``; the module docstring of
    ``nnfast._torch_fuse`` says which layers and when torch's own modules run instead).

    Examples
    --------
    >>> import torch, nnfast.torch
    >>> net = nnfast.torch.fuse(torch.nn.Sequential(
    ...     torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))
    >>> net(torch.randn(5, 4)).shape
    torch.Size([5, 3])
    """

    def _warn(self, reason):
        warned = self.__dict__.setdefault("_fuse_warned", set())
        if reason not in warned:
            warned.add(reason)
            from .torch import FallbackWarning

            warnings.warn(f"nnfast.torch.fuse: nnfast's kernels do not run {reason}; torch's "
                          f"own modules do", FallbackWarning, stacklevel=4)

    def _program(self):
        """The segments of the current children (made again when the children change)."""
        children = list(self._modules.values())
        cached = self.__dict__.get("_fuse_program")
        if cached is not None and cached[0] == children:
            return cached[1]
        program = _segments(self, list(self._modules.items()))
        self.__dict__["_fuse_program"] = (children, program)
        return program

    def forward(self, x):
        for part in self._program():
            x = part(x)
        return x

    def __getstate__(self):
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__")
                     else self.__dict__)
        state.pop("_fuse_program", None)    # the engine's chains do not pickle; made again
        return state


def _segments(owner, named):
    """[part, ...]: a _Chain per run of fusable layers, the other modules as they are."""
    program, run, names = [], [], []
    engine = _engine()
    i = 0
    while i < len(named):
        name, mod = named[i]
        if type(mod) is torch.nn.Linear and engine is not None and \
                not torch.nn.utils.parametrize.is_parametrized(mod):
            act = None
            if i + 1 < len(named) and _kind(named[i + 1][1]) is not None:
                act = named[i + 1][1]
                names.append(named[i + 1][0])
                i += 1
            run.append((mod, act))
            names.append(name)
        else:
            if run:
                program.append(_Chain(owner, names, run))
                run, names = [], []
            program.append(mod)
        i += 1
    if run:
        program.append(_Chain(owner, names, run))
    return program


def fuse(module):
    """``module`` (a ``torch.nn.Sequential``) as a :class:`FusedSequential` over the same child
    modules and parameters: its Linear layers with the activations after them run as nnfast's
    fused forward and backward (a ``torch.autograd.Function``); any loss and optimizer, LR
    schedulers, ``state_dict`` (the same keys), ``torch.save``, ``no_grad`` inference, frozen
    parameters, input gradients and gradient accumulation work as with the Sequential. Layers
    nnfast does not run (Dropout, BatchNorm1d, ...) stay torch's, with one ``FallbackWarning``.

    Raises ``TypeError`` for a module that is not a Sequential, or one without a Linear layer
    nnfast can run (naming its first layer).

    Examples
    --------
    >>> import torch, nnfast.torch
    >>> seq = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
    ...                           torch.nn.Linear(128, 10))
    >>> net = nnfast.torch.fuse(seq)
    >>> net[0].weight is seq[0].weight
    True
    >>> opt = nnfast.torch.Adam(net.parameters(), lr=1e-3)
    >>> x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    >>> opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
    """
    if isinstance(module, FusedSequential):
        return module
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"fuse takes a torch.nn.Sequential of Linear layers and activations, "
                        f"got {type(module).__name__}")
    fused = FusedSequential(collections.OrderedDict(module._modules))
    fused.train(module.training)
    program = fused._program()
    if not any(isinstance(part, _Chain) for part in program):
        first = next(iter(module._modules.values()), None)
        raise TypeError(f"fuse: the Sequential has no Linear layer nnfast can run (its first "
                        f"layer: {first!r})" if _engine() is not None else
                        "fuse: nnfast's compiled kernels are not built in this install")
    for part in program:
        if not isinstance(part, _Chain):
            fused._warn(f"{type(part).__name__} layers")
    return fused


_NAMED_ACTIVATIONS = {"relu": torch.nn.ReLU, "leaky_relu": torch.nn.LeakyReLU,
                      "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
                      "identity": torch.nn.Identity}
_OUTPUTS = {None: None, "identity": None, "softmax": lambda: torch.nn.Softmax(dim=-1),
            "sigmoid": torch.nn.Sigmoid}


class MLP(FusedSequential):
    """A fused multilayer perceptron: ``Linear(sizes[0], sizes[1])``, ``activation``, ...,
    ``Linear(sizes[-2], sizes[-1])`` and the ``output`` activation (None: the logits, for
    ``cross_entropy``; "softmax"; "sigmoid"), as the ``torch.nn.Sequential`` of those modules
    would be (the same ``state_dict`` keys: "0.weight", "0.bias", "2.weight", ...), run by
    :func:`fuse`'s passes. ``activation``: "relu", "leaky_relu" (``negative_slope``), "tanh",
    "sigmoid" or "identity". ``bias``, ``device``, ``dtype``: as ``torch.nn.Linear`` takes them.

    Examples
    --------
    >>> import torch, nnfast.torch
    >>> net = nnfast.torch.MLP([8, 64, 64, 2], activation="tanh")
    >>> net(torch.randn(16, 8)).shape
    torch.Size([16, 2])
    """

    def __init__(self, sizes, activation="relu", output=None, *, negative_slope=0.01, bias=True,
                 device=None, dtype=None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be an input width and at least one layer's, all "
                             f"positive, got {sizes}")
        if activation not in _NAMED_ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_NAMED_ACTIVATIONS)}, got "
                             f"{activation!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be None, 'identity', 'softmax' or 'sigmoid', got "
                             f"{output!r}")
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], bias=bias, device=device,
                                          dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(torch.nn.LeakyReLU(negative_slope) if activation == "leaky_relu"
                              else _NAMED_ACTIVATIONS[activation]())
        if _OUTPUTS[output] is not None:
            layers.append(_OUTPUTS[output]())
        super().__init__(*layers)
