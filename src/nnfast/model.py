"""Multilayer perceptrons trained with nnfast's kernels (seed: forward pass, backpropagation,
activations, regularization, batch normalization, optimizers, learning-rate decay).

Design:

- Every parameter lives in one flat buffer ``flat_params`` (and every gradient in
  ``flat_grads``, same layout): ``params`` / ``grads`` are views into them, so one fused optimizer
  call on the flat buffer updates the whole model. The weight matrices come first, as one
  contiguous slab, so the L2 term and its gradient are one kernel call too. Batch-norm running
  statistics are buffers (``flat_buffers``), never trained.
- The training step runs on preallocated workspaces, one per batch size (a few are kept), and
  calls the low-level kernels of the backend in force (``nnfast._backend.kernel``) with their
  outputs in the workspaces: inputs are validated once, when they enter ``fit`` /
  ``train_step`` / ``loss`` ..., so a steady-state step allocates no arrays.
- Row-major batches as everywhere in nnfast: ``z = a W + b`` with ``W`` (fan_in, fan_out); the
  seed's Θ is ``W.T``.
"""
import contextlib
import functools
import json
import math
import os
import sys
import time
import zipfile

import numpy as np

from . import _backend, _blas, _kinds
from . import optim as _optim
from ._validate import as_array, integer, real
from .gradcheck import gradcheck

__all__ = ["MLP", "History", "Layer", "ModelFileError"]

_HIDDEN = dict(_kinds.ACTIVATIONS)
_OUTPUTS = ("softmax", "sigmoid", "identity")
_INITS = ("he", "xavier", "normal")
_LOSS_KERNEL = {"sigmoid": "sigmoid_binary_cross_entropy", "identity": "mean_squared_error"}
#: torch.nn.BatchNorm1d's defaults.
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
#: Workspaces kept per model (a fit uses two: full batches and the last, shorter one; a third
#: serves the validation set).
_MAX_WORKSPACES = 4
_FORMAT = 1
#: The keys of ``MLP.get_config`` (what a saved file may hold).
_CONFIG_KEYS = ("layer_sizes", "hidden", "output", "batchnorm", "l2", "init", "dtype", "seed",
                "slope", "init_scale")


class History:
    """What ``MLP.fit`` did: per-epoch ``train_loss`` (mean mini-batch objective, L2 included),
    ``val_loss`` (on ``validation_data``, inference mode; empty without it), ``lr`` per epoch,
    ``epochs`` run, ``stopped`` ("max_epochs" or "no_improvement"), ``best_epoch`` (1-based, the
    epoch of the lowest monitored loss; after an early stop the model holds its weights) and
    wall ``time`` in seconds."""

    def __init__(self):
        self.train_loss, self.val_loss, self.lr = [], [], []
        self.epochs, self.stopped, self.time, self.best_epoch = 0, "max_epochs", 0.0, None

    def __repr__(self):
        last = f", train_loss[-1]={self.train_loss[-1]:.6g}" if self.train_loss else ""
        return f"History(epochs={self.epochs}, stopped={self.stopped!r}{last})"


class Layer:
    """One dense layer's arrays, all views into the model's flat buffers.

    ``W`` (fan_in, fan_out) and ``b`` (fan_out,), or, for a hidden layer with batch norm, ``W``,
    ``gamma``, ``beta`` (no bias: batch norm's β replaces it) and the buffers ``running_mean``,
    ``running_var``. ``dW``, ``db``, ``dgamma``, ``dbeta`` are the matching gradient views.
    """

    __slots__ = ("W", "b", "gamma", "beta", "running_mean", "running_var", "dW", "db", "dgamma",
                 "dbeta", "batchnorm")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)


class _Workspace:
    """Every array one forward/backward pass over m rows needs, allocated once."""

    def __init__(self, model, m):
        dt, relu_like = model.dtype, model._kind in (_kinds.RELU, _kinds.LEAKY_RELU)
        self.m = m
        self.x = self.y = None          # gather buffers of a shuffled mini-batch (fit)
        self.tuples = None              # (zs, acts, deltas) for the compiled step
        # Could a kernel of this step take threads (an array of 2**17 elements or more, the
        # compiled backends' PARALLEL_MIN)? If not, training skips switching threads off.
        sizes = [model.flat_params.size] + [m * n for n in model.layer_sizes]
        self.may_parallel = max(sizes) >= _backend.PARALLEL_MIN
        # The largest GEMM's multiply-adds: whether BLAS would split it over threads (_blas).
        self.gemm_work = m * max(layer.W.size for layer in model.layers)
        self.z, self.zbn, self.a, self.delta = [], [], [], []
        self.xhat, self.mean, self.invstd, self.tmp = [], [], [], []
        last = len(model.layers) - 1
        for i, layer in enumerate(model.layers):
            n = layer.W.shape[1]
            z = np.empty((m, n), dt)
            zbn = xhat = mean = invstd = tmp = None
            if i == last:
                a = np.empty((m, n), dt)                 # output probabilities
            elif layer.batchnorm:
                zbn, xhat = np.empty((m, n), dt), np.empty((m, n), dt)
                mean, invstd, tmp = np.empty(n, dt), np.empty(n, dt), np.empty(n, dt)
                a = np.empty((m, n), dt) if relu_like else zbn   # relu' needs the z it saw
            else:
                a = np.empty((m, n), dt) if relu_like else z     # sigmoid'/tanh' come from a
            self.z.append(z)
            self.zbn.append(zbn)
            self.a.append(a)
            self.delta.append(np.empty((m, n), dt))
            self.xhat.append(xhat)
            self.mean.append(mean)
            self.invstd.append(invstd)
            self.tmp.append(tmp)

    def batch(self, X, y, idx):
        """Rows ``idx`` of X and y gathered into this workspace's buffers (no allocation)."""
        if self.x is None:
            self.x = np.empty((self.m,) + X.shape[1:], X.dtype)
        if self.y is None or self.y.dtype != y.dtype or self.y.shape[1:] != y.shape[1:]:
            self.y = np.empty((self.m,) + y.shape[1:], y.dtype)
        # mode="clip": the default "raise" buffers ``out`` (an allocation); idx is in range.
        np.take(X, idx, axis=0, out=self.x, mode="clip")
        np.take(y, idx, axis=0, out=self.y, mode="clip")
        return self.x, self.y


@contextlib.contextmanager
def _serial_kernels(active=True):
    """Run nnfast's elementwise kernels on one thread during training.

    A training step's time is mostly GEMMs (run on one BLAS thread too, see ``_blas``); a kernel
    that takes threads of its own (the Numba backend does from 2**17 elements) leaves OpenMP
    threads spinning that slow the next GEMM down. Measured, 784-512-256-10, batch 128, Adam:
    2.0-2.2 ms per step with one kernel thread against 4.1 ms with two (bench_step.py).
    Numba's thread count is per calling thread, so this does not touch other threads.
    ``active=False`` skips the switch (get + set + set costs ~4.5 µs), for steps whose arrays
    are all below the kernels' parallel threshold anyway.
    """
    numba = sys.modules.get("numba")
    if not active or numba is None or "nnfast._numba" not in sys.modules:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _on_network_backend(method):
    """Runs ``method`` with "auto" resolved to ``_backend.network_backend()`` (the AOT Cython
    kernels where built: no compilation in a process's first step), so that every kernel of
    one pass comes from one backend."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        token = _backend.push(_backend.network_backend())
        try:
            return method(self, *args, **kwargs)
        finally:
            _backend.pop(token)

    return run


def _choice(value, name, allowed):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(allowed)}, got "
                        f"{type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


class ModelFileError(ValueError):
    """``MLP.load`` of a file that ``MLP.save`` did not write (corrupt, truncated, another
    format, or sizes that do not fit): the message names the file and the problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def _counts(sizes, batchnorm):
    """(parameters, batch-norm buffers) of a network: every W, then per layer b or γ and β
    (batch norm on hidden layers only), and the hidden layers' running mean and variance."""
    n_weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    hidden = sum(sizes[1:-1]) if batchnorm else 0
    return n_weights + sum(sizes[1:]) + hidden, 2 * hidden


_FIT_OPTIONS = ("optimizer", "lr", "epochs", "batch_size", "decay_rate", "validation_data",
                "tol", "patience", "shuffle", "seed", "progress")


def _check_optimizer_options(optimizer, options):
    """TypeError naming ``fit`` and what it accepts, for options the named optimizer lacks."""
    import inspect

    cls = _optim._NAMES.get(optimizer.lower()) if isinstance(optimizer, str) else None
    if cls is None or not options:
        return          # an unknown name is reported by optim.make
    accepted = [p for p in inspect.signature(cls).parameters if p != "lr"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hint = (" (momentum: use optimizer='momentum' with beta=0.9)"
                if optimizer.lower() == "sgd" and "momentum" in unknown else "")
        raise TypeError(f"fit() got unexpected keyword argument(s) {unknown}{hint}; fit takes "
                        f"{', '.join(_FIT_OPTIONS)} and the options of optimizer={optimizer!r}: "
                        f"{', '.join(accepted) or 'none'}")


def _physical_memory():
    """Bytes of RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _magnitude(n):
    """A non-negative int for a message: ``1.1e+13``, or ``~1e400`` beyond float range."""
    return f"{n:.3g}" if n < 10**300 else f"~1e{len(str(n)) - 1}"


def _short(sizes):
    """layer_sizes for a message: huge entries as their magnitude."""
    return "[" + ", ".join(str(n) if n < 10**15 else _magnitude(n) for n in sizes) + "]"


def _read_member(zf, info, path, key, expect):
    """One ``.npy`` member, its header checked before its data is read: its declared size fits
    in the member, and ``expect`` = (dtype, length) when given (else at most 1 MiB)."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ModelFileError(path, f"array {key!r} has .npy format {version}; "
                                           "MLP.save writes 1.0")
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                raise ModelFileError(path, f"array {key!r} holds Python objects (pickle)")
            if any(n < 0 for n in shape):
                raise ModelFileError(path, f"array {key!r} declares shape {shape}")
            count = math.prod(shape)
            if count * dtype.itemsize > info.file_size or (expect is None and
                                                          info.file_size > 2**20):
                raise ModelFileError(path, f"array {key!r} declares shape {shape} of {dtype}, "
                                           f"more than its {info.file_size} bytes in the file")
            if expect is not None and (dtype != expect[0] or shape != (expect[1],)):
                raise ModelFileError(path, f"array {key!r} has shape {shape} and dtype {dtype}, "
                                           f"but the config implies ({expect[1]},) "
                                           f"{expect[0]}")
            data = f.read(count * dtype.itemsize)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ModelFileError(path, f"array {key!r} is not a valid .npy ({type(exc).__name__}: "
                                   f"{exc})") from None
    if len(data) != count * dtype.itemsize:
        raise ModelFileError(path, f"array {key!r} is truncated")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return array


class MLP:
    """A multilayer perceptron: dense layers, optional batch norm on the hidden ones.

    layer_sizes: ``[n_features, hidden_1, ..., n_outputs]`` (at least two entries).
    hidden: activation of every hidden layer — "relu", "leaky_relu" (with ``slope``), "tanh",
    "sigmoid" or "identity". output: "softmax" (K classes, softmax cross-entropy, labels 0..K-1
    or one-hot rows), "sigmoid" (independent 0/1 outputs, binary cross-entropy) or "identity"
    (regression, the seed's squared error ``1/(2m) Σ (h - y)²``).
    batchnorm: normalize every hidden layer's z (γ, β trained; running statistics for inference).
    l2: the seed's λ — the objective gets ``λ/(2m) Σ W²`` over the weight matrices only (never
    biases, γ or β), m the rows of the batch. init: "he" (N(0, 2/fan_in)), "xavier" (uniform
    ±sqrt(6/(fan_in+fan_out))) or "normal" (the seed's N(0, σ²), σ = ``init_scale``).
    dtype: "float32" or "float64". seed: an int or None, for the initial weights.
    """

    def __init__(self, layer_sizes, hidden="relu", output="softmax", batchnorm=False, l2=0.0,
                 init="he", dtype="float32", seed=None, slope=0.01, init_scale=0.01):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise TypeError("layer_sizes must be a sequence of ints, e.g. [64, 128, 10]")
        sizes = [integer(s, f"layer_sizes[{i}]", low=1) for i, s in enumerate(layer_sizes)]
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
        self.layer_sizes = sizes
        self.hidden = _choice(hidden, "hidden", tuple(_HIDDEN))
        self.output = _choice(output, "output", _OUTPUTS)
        self.batchnorm = _bool(batchnorm, "batchnorm")
        self.l2 = real(l2, "l2", 0.0)
        self.init = _choice(init, "init", _INITS)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if seed is not None:
            seed = integer(seed, "seed", low=0)
        self.seed = seed
        self.slope = real(slope, "slope")
        self.init_scale = real(init_scale, "init_scale", 0.0, low_open=True)
        if self.output == "softmax" and sizes[-1] < 2:
            raise ValueError("output='softmax' needs at least 2 output units (layer_sizes[-1])")
        n_params = _counts(sizes, self.batchnorm)[0]
        memory = _physical_memory()
        if memory is not None and 3 * n_params * self.dtype.itemsize > memory:
            need = 3 * n_params * self.dtype.itemsize // 2**30
            raise ValueError(f"layer_sizes {_short(sizes)} make a network of "
                             f"{_magnitude(n_params)} parameters: with their gradients and "
                             f"workspace {_magnitude(need)} GiB, more than this machine's "
                             f"{memory / 2**30:.3g} GiB of memory")
        self._kind = _HIDDEN[self.hidden]
        self._build()
        self._initialize(np.random.default_rng(seed))

    # ---------------------------------------------------------------- structure and state --
    def _build(self):
        sizes, dt = self.layer_sizes, self.dtype
        n_layers = len(sizes) - 1
        self.layers = [Layer() for _ in range(n_layers)]
        for i, layer in enumerate(self.layers):
            layer.batchnorm = self.batchnorm and i < n_layers - 1
        # Layout: every W first (one slab for L2), then per layer b or (gamma, beta).
        spec = [(layer, "W", (sizes[i], sizes[i + 1])) for i, layer in enumerate(self.layers)]
        for i, layer in enumerate(self.layers):
            names = ("gamma", "beta") if layer.batchnorm else ("b",)
            spec += [(layer, name, (sizes[i + 1],)) for name in names]
        total = sum(math.prod(shape) for _, _, shape in spec)
        self.n_weights = sum(math.prod(shape) for _, name, shape in spec if name == "W")
        self.flat_params = np.zeros(total, dt)
        self.flat_grads = np.zeros(total, dt)
        offset = 0
        for layer, name, shape in spec:
            size = math.prod(shape)
            setattr(layer, name, self.flat_params[offset:offset + size].reshape(shape))
            setattr(layer, "d" + name, self.flat_grads[offset:offset + size].reshape(shape))
            offset += size
        n_bn = sum(sizes[i + 1] for i, layer in enumerate(self.layers) if layer.batchnorm)
        self.flat_buffers = np.zeros(2 * n_bn, dt)
        offset = 0
        for i, layer in enumerate(self.layers):
            if layer.batchnorm:
                n = sizes[i + 1]
                layer.running_mean = self.flat_buffers[offset:offset + n]
                layer.running_var = self.flat_buffers[offset + n:offset + 2 * n]
                offset += 2 * n
        names = ("W", "gamma", "beta")
        self.params, self.grads, self.param_names = [], [], []
        for i, layer in enumerate(self.layers):
            for name in (names if layer.batchnorm else ("W", "b")):
                self.params.append(getattr(layer, name))
                self.grads.append(getattr(layer, "d" + name))
                self.param_names.append(f"{name}{i}")
        if not self.batchnorm:   # the compiled step's homogeneous tuples
            self._Ws = tuple(layer.W for layer in self.layers)
            self._bs = tuple(layer.b for layer in self.layers)
            self._dWs = tuple(layer.dW for layer in self.layers)
            self._dbs = tuple(layer.db for layer in self.layers)
        self._weights = self.flat_params[:self.n_weights]
        self._weight_grads = self.flat_grads[:self.n_weights]
        self._l2_tmp = np.empty(self.n_weights, dt)
        self._buffers_backup = np.empty_like(self.flat_buffers)
        self._workspaces = {}

    def _initialize(self, rng):
        for layer in self.layers:
            fan_in, fan_out = layer.W.shape
            if self.init == "he":
                w = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
            elif self.init == "xavier":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, (fan_in, fan_out))
            else:
                w = rng.normal(0.0, self.init_scale, (fan_in, fan_out))
            layer.W[...] = w
            if layer.batchnorm:
                layer.gamma[...] = 1.0
                layer.beta[...] = 0.0
                layer.running_mean[...] = 0.0
                layer.running_var[...] = 1.0
            else:
                layer.b[...] = 0.0

    @property
    def n_features_in(self):
        return self.layer_sizes[0]

    @property
    def n_outputs(self):
        return self.layer_sizes[-1]

    def get_config(self):
        """The constructor arguments, JSON-serializable."""
        return {"layer_sizes": list(self.layer_sizes), "hidden": self.hidden,
                "output": self.output, "batchnorm": self.batchnorm, "l2": self.l2,
                "init": self.init, "dtype": self.dtype.name, "seed": self.seed,
                "slope": self.slope, "init_scale": self.init_scale}

    def copy(self, dtype=None):
        """An independent copy (optionally with another dtype) with the same weights."""
        config = self.get_config()
        if dtype is not None:
            config["dtype"] = np.dtype(dtype).name
        other = MLP(**config)
        other.flat_params[...] = self.flat_params
        other.flat_buffers[...] = self.flat_buffers
        return other

    def __repr__(self):
        return (f"MLP({self.layer_sizes}, hidden={self.hidden!r}, output={self.output!r}, "
                f"batchnorm={self.batchnorm}, l2={self.l2}, dtype={self.dtype.name!r})")

    def _workspace(self, m):
        ws = self._workspaces.get(m)
        if ws is None:
            if len(self._workspaces) >= _MAX_WORKSPACES:
                del self._workspaces[next(iter(self._workspaces))]
            ws = self._workspaces[m] = _Workspace(self, m)
        return ws

    # ------------------------------------------------------------------- input checking --
    def _check_X(self, X, name="X"):
        if X is None or isinstance(X, (str, bytes)):
            raise TypeError(f"{name} must be a 2-D numeric array, got {type(X).__name__}")
        X = as_array(X, name)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty: 0 samples")
        if X.shape[1] != self.n_features_in:
            raise ValueError(f"{name} has {X.shape[1]} features, but the model expects "
                             f"{self.n_features_in} (layer_sizes[0])")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return X

    def _check_y(self, y, m, name="y"):
        """Targets as the loss kernel takes them: int64 (m,) class labels or float (m, K)."""
        if y is None or isinstance(y, (str, bytes)):
            raise TypeError(f"{name} must be an array of targets, got {type(y).__name__}")
        y = as_array(y, name)
        if y.ndim == 0 or y.shape[0] != m:
            raise ValueError(f"{name} has shape {y.shape}, but X has {m} samples")
        k = self.n_outputs
        if self.output == "softmax":
            if y.dtype.kind in "iu":
                if y.ndim != 1:
                    raise ValueError(f"integer class labels {name} must be 1-D, got shape "
                                     f"{y.shape}")
                lo, hi = int(y.min()), int(y.max())
                if lo < 0 or hi >= k:
                    raise ValueError(f"{name} holds labels in [{lo}, {hi}], outside the model's "
                                     f"classes 0..{k - 1}")
                return np.ascontiguousarray(y, dtype=np.int64)
            if y.dtype.kind == "f" and y.ndim == 1:
                raise TypeError(f"class labels {name} must be integers 0..{k - 1}, got dtype "
                                f"{y.dtype} (float targets must be one-hot rows ({m}, {k}))")
            if y.dtype.kind == "f":
                if y.shape != (m, k):
                    raise ValueError(f"one-hot targets {name} must have shape {(m, k)}, got "
                                     f"{y.shape}")
                y = np.ascontiguousarray(y, dtype=self.dtype)
                if not np.isfinite(y).all() or (y < 0).any():
                    raise ValueError(f"one-hot targets {name} must be finite and >= 0")
                return y
            raise TypeError(f"{name} must be integer class labels or float one-hot rows, got "
                            f"dtype {y.dtype}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
        if y.ndim == 1 and k == 1:
            y = y.reshape(m, 1)
        if y.shape != (m, k):
            raise ValueError(f"{name} has shape {y.shape}, but the model has {k} outputs: "
                             f"expected {(m, k)}" + (f" or ({m},)" if k == 1 else ""))
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if self.output == "sigmoid" and ((y < 0).any() or (y > 1).any()):
            raise ValueError(f"{name} holds values outside [0, 1]; output='sigmoid' takes 0/1 "
                             "labels (or probabilities)")
        return y

    def _check_training_batch(self, m):
        if self.batchnorm and m < 2:
            raise ValueError(f"batch norm in training mode needs at least 2 samples, got {m}")

    # ------------------------------------------------------------ forward and backward --
    def _activate(self, src, dst):
        """dst = g(src) for the hidden activation; ``dst`` may be ``src``."""
        kind = self._kind
        if kind == _kinds.IDENTITY:
            if dst is not src:
                np.copyto(dst, src)
            return
        fn = _backend.kernel("activations", self.hidden, src.size)
        if kind == _kinds.LEAKY_RELU:
            fn(src.reshape(-1), self.slope, dst.reshape(-1))
        else:
            fn(src.reshape(-1), dst.reshape(-1))

    def _forward(self, ws, X, training, update_stats):
        """Runs the layers over X into ``ws``; returns the output layer's z (the logits)."""
        kernel, slope, kind = _backend.kernel, self.slope, self._kind
        a_prev = X
        for i, layer in enumerate(self.layers[:-1]):
            z = ws.z[i]
            if layer.batchnorm:
                kernel("dense", "dense_forward", z.size)(a_prev, layer.W, None, _kinds.IDENTITY,
                                                         slope, z, z)
                zbn = ws.zbn[i]
                if training:
                    var = kernel("batchnorm", "batchnorm_forward_train", z.size)(
                        z, layer.gamma, layer.beta, BN_EPS, zbn, ws.xhat[i], ws.mean[i],
                        ws.invstd[i])
                    if update_stats:
                        self._update_running(layer, ws, i, var)
                else:
                    kernel("batchnorm", "batchnorm_forward_infer", z.size)(
                        z, layer.gamma, layer.beta, layer.running_mean, layer.running_var,
                        BN_EPS, zbn)
                self._activate(zbn, ws.a[i])
            else:
                kernel("dense", "dense_forward", z.size)(a_prev, layer.W, layer.b, kind, slope,
                                                         z, ws.a[i])
            a_prev = ws.a[i]
        out, logits = self.layers[-1], ws.z[-1]
        kernel("dense", "dense_forward", logits.size)(a_prev, out.W, out.b, _kinds.IDENTITY,
                                                      slope, logits, logits)
        return logits

    @staticmethod
    def _update_running(layer, ws, i, var):
        """torch's running statistics: r = (1-momentum) r + momentum · batch (unbiased var)."""
        m, tmp = ws.m, ws.tmp[i]
        layer.running_mean *= 1.0 - BN_MOMENTUM
        np.multiply(ws.mean[i], BN_MOMENTUM, out=tmp)
        layer.running_mean += tmp
        layer.running_var *= 1.0 - BN_MOMENTUM
        np.multiply(var, BN_MOMENTUM * m / (m - 1), out=tmp)
        layer.running_var += tmp

    def _backward(self, ws, X):
        """Backpropagation from ``ws.delta[-1]`` (dJ/dlogits) into ``flat_grads``: for each
        layer dW = a_prevᵀ δ, db = Σ δ and the seed's δ_prev = δ Wᵀ .* g'(z_prev), through
        batch norm where a hidden layer has it."""
        kernel, slope, kind = _backend.kernel, self.slope, self._kind
        grad_from_a = kind in _kinds.GRAD_FROM_OUTPUT or kind == _kinds.IDENTITY
        delta = ws.delta[-1]
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i == 0:
                a_prev, dprev, kind_prev, src = X, None, _kinds.IDENTITY, X
            else:
                a_prev, dprev, kind_prev = ws.a[i - 1], ws.delta[i - 1], kind
                src = a_prev if grad_from_a else (
                    ws.zbn[i - 1] if self.layers[i - 1].batchnorm else ws.z[i - 1])
            kernel("dense", "dense_backward", delta.size + a_prev.size)(
                delta, a_prev, layer.W, layer.dW, layer.db, dprev, kind_prev, slope, src)
            if dprev is not None and self.layers[i - 1].batchnorm:
                prev = self.layers[i - 1]
                kernel("batchnorm", "batchnorm_backward", dprev.size)(
                    dprev, ws.xhat[i - 1], prev.gamma, ws.invstd[i - 1], dprev, prev.dgamma,
                    prev.dbeta)
            delta = dprev

    def _compiled_step(self, y):
        """The Numba whole-step kernel (``nnfast._numba.step``) for this model and targets, or
        None where it does not apply: batch norm, soft-label targets, or a backend other than
        numba in force (explicitly, or for "auto" where Cython is not built: NETWORK_ORDER)."""
        if self.batchnorm or _backend.network_backend() != "numba":
            return None
        if self.output == "softmax" and y.dtype != np.int64:
            return None
        return _backend.kernel_in("numba", "step", f"{self.output}_step")

    def _pass(self, ws, X, y, training, update_stats, grads):
        """Forward (and backward if ``grads``) over validated X, y; returns the objective J."""
        step = self._compiled_step(y)
        if step is not None:
            if ws.tuples is None:
                ws.tuples = (tuple(ws.z), tuple(ws.a), tuple(ws.delta))
            zs, acts, deltas = ws.tuples
            return step(X, y, self._Ws, self._bs, zs, acts, deltas, self._dWs, self._dbs,
                        self._kind, self.slope, self.l2, self._weights, self._weight_grads,
                        grads)
        logits = self._forward(ws, X, training, update_stats)
        if self.output == "softmax":
            name = "softmax_cross_entropy" if y.dtype == np.int64 else "softmax_cross_entropy_probs"
        else:
            name = _LOSS_KERNEL[self.output]
        loss = _backend.kernel("losses", name, logits.size)(logits, y, ws.delta[-1])
        if grads:
            self._backward(ws, X)
        if self.l2:
            m = X.shape[0]
            total = _backend.kernel("losses", "sum_squares_scaled", self.n_weights)(
                self._weights, self.l2 / m, self._l2_tmp)
            loss += self.l2 / (2.0 * m) * total
            if grads:
                self._weight_grads += self._l2_tmp
        return loss

    def _output(self, ws, logits):
        """The output activation of the logits (softmax/sigmoid probabilities or identity)."""
        proba = ws.a[-1]
        if self.output == "softmax":
            _backend.kernel("activations", "softmax", logits.size)(logits, proba)
        elif self.output == "sigmoid":
            _backend.kernel("activations", "sigmoid", logits.size)(logits.reshape(-1),
                                                                   proba.reshape(-1))
        else:
            np.copyto(proba, logits)
        return proba

    # ------------------------------------------------------------------ public methods --
    @_on_network_backend
    def forward(self, X, training=False):
        """The network's output for X: class probabilities (softmax), per-output probabilities
        (sigmoid) or values (identity), shape (n_samples, n_outputs). ``training=True`` uses the
        batch's statistics in batch norm and updates the running statistics (as torch does)."""
        training = _bool(training, "training")
        X = self._check_X(X)
        if training:
            self._check_training_batch(X.shape[0])
        ws = self._workspace(X.shape[0])
        return self._output(ws, self._forward(ws, X, training, training)).copy()

    def predict_proba(self, X):
        """Probabilities (n_samples, n_outputs) for output "softmax" or "sigmoid"."""
        if self.output == "identity":
            raise ValueError("predict_proba needs output='softmax' or 'sigmoid'; this model "
                             "has output='identity' (use predict)")
        return self.forward(X)

    def predict(self, X):
        """Class indices (softmax), 0/1 labels (sigmoid) or values (identity); 1-D when the
        model has a single output (or is a softmax classifier)."""
        out = self.forward(X)
        if self.output == "softmax":
            return out.argmax(axis=1)
        if self.output == "sigmoid":
            out = (out >= 0.5).astype(np.int64)
        return out.reshape(-1) if self.n_outputs == 1 else out

    @_on_network_backend
    def loss(self, X, y, training=False):
        """The objective J on (X, y): mean loss plus the L2 term ``λ/(2m) Σ W²``.
        ``training=True`` evaluates batch norm with batch statistics (running ones untouched)."""
        training = _bool(training, "training")
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        if training:
            self._check_training_batch(X.shape[0])
        return self._pass(self._workspace(X.shape[0]), X, y, training, False, False)

    @_on_network_backend
    def gradients(self, X, y):
        """dJ/dparams on the batch (X, y) in training mode (batch-norm batch statistics, running
        statistics untouched): a list of new arrays matching ``params``."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        self._check_training_batch(X.shape[0])
        self._pass(self._workspace(X.shape[0]), X, y, True, False, True)
        return [g.copy() for g in self.grads]

    def _check_writable(self):
        for name in ("flat_params", "flat_buffers"):
            if not getattr(self, name).flags.writeable:
                raise ValueError(f"the model's {name} is read-only: training updates it in "
                                 f"place (set model.{name}.flags.writeable = True)")

    def _step(self, ws, X, y, optimizer):
        if self.batchnorm:
            np.copyto(self._buffers_backup, self.flat_buffers)
        loss = self._pass(ws, X, y, True, True, True)
        if not math.isfinite(loss):
            if self.batchnorm:
                np.copyto(self.flat_buffers, self._buffers_backup)
            raise FloatingPointError(f"the training loss is {loss}; weights were not updated "
                                     "(lower the learning rate or standardize X)")
        optimizer.step_flat(self.flat_params, self.flat_grads)
        return loss

    @_on_network_backend
    def train_step(self, X, y, optimizer):
        """One mini-batch of gradient descent: forward, backward, one fused optimizer update of
        every parameter (``optimizer`` is an ``nnfast.optim`` optimizer). Returns the batch's
        objective before the update. Batch-norm running statistics are updated."""
        if not isinstance(optimizer, _optim.Optimizer):
            raise TypeError(f"optimizer must be an nnfast.optim.Optimizer (e.g. "
                            f"nnfast.optim.Adam(lr=1e-3)), got {type(optimizer).__name__}")
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        self._check_training_batch(X.shape[0])
        self._check_writable()
        ws = self._workspace(X.shape[0])
        with _serial_kernels(ws.may_parallel), _blas.serial(ws.gemm_work):
            return self._step(ws, X, y, optimizer)

    @_on_network_backend
    def fit(self, X, y, optimizer="adam", lr=None, epochs=200, batch_size=None, decay_rate=0.0,
            validation_data=None, tol=1e-4, patience=10, shuffle=True, seed=None, progress=True,
            **optimizer_kwargs):
        """Mini-batch training; returns a ``History``.

        optimizer: "sgd", "momentum", "rmsprop", "adam" (with ``**optimizer_kwargs``, e.g.
        ``beta1=0.9``, ``style="torch"``) or an ``nnfast.optim`` optimizer (its state carries
        over). lr: α0 (default 1e-3, or the instance's ``lr``); each epoch uses the seed's decay
        ``α = α0 / (1 + decay_rate · epoch)``, epoch counted from 0. batch_size: default
        ``min(200, n_samples)``. validation_data: ``(X_val, y_val)``, scored after every epoch.
        Early stopping is on by default, as in scikit-learn's MLPClassifier: training stops
        when the monitored loss (validation if given, else training) has not improved by
        ``tol`` for ``patience`` epochs in a row, and the model then gets back the weights of
        its best epoch (``History.best_epoch``); ``tol=None`` always runs ``epochs`` epochs and
        keeps the last weights. seed: shuffling; progress: a tqdm bar over the epochs on a
        terminal (``False`` silences it; nothing is written when stderr is not a terminal, so
        logs stay clean). Other keyword arguments are options of the optimizer named by
        ``optimizer``; an unknown one is a TypeError listing what ``fit`` and that optimizer
        accept.
        A non-finite loss raises FloatingPointError naming the epoch, after restoring the
        weights of the last finished epoch. Bad arguments raise before anything changes.
        """
        X = self._check_X(X)
        n = X.shape[0]
        y = self._check_y(y, n)
        self._check_writable()
        epochs = integer(epochs, "epochs", low=1)
        batch_size = min(200, n) if batch_size is None else integer(batch_size, "batch_size",
                                                                    low=1)
        batch_size = min(batch_size, n)
        decay_rate = real(decay_rate, "decay_rate", 0.0)
        if tol is not None:
            tol = real(tol, "tol")
        patience = integer(patience, "patience", low=1)
        shuffle = _bool(shuffle, "shuffle")
        progress = _bool(progress, "progress")
        if seed is not None:
            seed = integer(seed, "seed", low=0)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            X_val = self._check_X(validation_data[0], "validation_data[0]")
            y_val = self._check_y(validation_data[1], X_val.shape[0], "validation_data[1]")
        starts = list(range(0, n, batch_size))
        if self.batchnorm and n - starts[-1] == 1:
            if len(starts) == 1:
                raise ValueError("batch norm in training mode needs at least 2 samples, got 1")
            starts.pop()            # a 1-row batch has no batch statistics: merge it
        if lr is not None:
            lr = real(lr, "lr", 0.0)
        if isinstance(optimizer, _optim.Optimizer):
            if optimizer_kwargs:
                raise TypeError(f"options {sorted(optimizer_kwargs)} apply to an optimizer "
                                "name, not to an Optimizer instance")
            opt = optimizer
            lr0 = opt.lr if lr is None else lr
        else:
            _check_optimizer_options(optimizer, optimizer_kwargs)
            opt = _optim.make(optimizer, 1e-3 if lr is None else lr, **optimizer_kwargs)
            lr0 = opt.lr
        with _serial_kernels(), _blas.serial():
            return self._fit(X, y, opt, lr0, epochs, starts + [n], decay_rate,
                             (X_val, y_val) if validation_data is not None else None, tol,
                             patience, shuffle, seed, progress)

    def _fit(self, X, y, opt, lr0, epochs, bounds, decay_rate, val, tol, patience, shuffle, seed,
             progress):
        from tqdm.auto import tqdm

        rng = np.random.default_rng(seed)
        order = np.arange(X.shape[0])
        history = History()
        good_params, good_buffers = self.flat_params.copy(), self.flat_buffers.copy()
        best, stale = math.inf, 0
        lowest, best_params, best_buffers = math.inf, None, None
        start_time = time.perf_counter()
        # disable=None: tqdm writes only to a terminal (a log file would get \r-joined fragments)
        bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=None if progress else True,
                   leave=True)
        try:
            for epoch in bar:
                opt.lr = lr0 / (1.0 + decay_rate * epoch)
                if shuffle:
                    rng.shuffle(order)
                total = 0.0
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    ws = self._workspace(hi - lo)
                    if shuffle:
                        xb, yb = ws.batch(X, y, order[lo:hi])
                    else:
                        xb, yb = X[lo:hi], y[lo:hi]
                    try:
                        total += self._step(ws, xb, yb, opt) * (hi - lo)
                    except FloatingPointError as exc:
                        self.flat_params[...] = good_params
                        self.flat_buffers[...] = good_buffers
                        raise FloatingPointError(
                            f"non-finite loss in epoch {epoch + 1} (lr={opt.lr:.3g}): {exc}; "
                            f"weights restored to the end of epoch {epoch}") from None
                train_loss = total / X.shape[0]
                history.train_loss.append(train_loss)
                history.lr.append(opt.lr)
                history.epochs = epoch + 1
                monitored = train_loss
                if val is not None:
                    ws = self._workspace(val[0].shape[0])
                    monitored = self._pass(ws, val[0], val[1], False, False, False)
                    history.val_loss.append(monitored)
                    bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{monitored:.4g}",
                                    refresh=False)
                else:
                    bar.set_postfix(loss=f"{train_loss:.4g}", refresh=False)
                if not (math.isfinite(monitored) and np.isfinite(self.flat_params).all()):
                    self.flat_params[...] = good_params
                    self.flat_buffers[...] = good_buffers
                    raise FloatingPointError(
                        f"non-finite weights or loss after epoch {epoch + 1}; weights restored "
                        f"to the end of epoch {epoch} (lower the learning rate)")
                np.copyto(good_params, self.flat_params)
                np.copyto(good_buffers, self.flat_buffers)
                if monitored < lowest:
                    lowest, history.best_epoch = monitored, epoch + 1
                    if tol is not None and epoch + 1 < epochs:   # weights to go back to
                        if best_params is None:
                            best_params = self.flat_params.copy()
                            best_buffers = self.flat_buffers.copy()
                        else:
                            np.copyto(best_params, self.flat_params)
                            np.copyto(best_buffers, self.flat_buffers)
                if tol is not None:
                    if monitored < best - tol:
                        best, stale = monitored, 0
                    else:
                        best, stale = min(best, monitored), stale + 1
                        if stale >= patience:
                            history.stopped = "no_improvement"
                            np.copyto(self.flat_params, best_params)
                            np.copyto(self.flat_buffers, best_buffers)
                            break
        finally:
            bar.close()
            history.time = time.perf_counter() - start_time
        return history

    @_on_network_backend
    def check_gradients(self, X, y, eps=1e-7, n_jobs=None):
        """``nnfast.gradcheck`` of this model's ``gradients`` on (X, y), in training mode.

        Runs in float64 (a float64 copy of a float32 model: ε = 1e-7 is below float32's
        resolution). Returns a ``GradcheckResult``; ``.diff < 1e-7`` means the backward pass
        agrees with the two-sided differences of the seed.

        The lecture calls gradient checking "very slow": two loss evaluations per parameter.
        Each evaluation here reuses one workspace (no allocation) and, for networks without
        batch norm, is one compiled call; the parameters are split over ``n_jobs`` threads
        (default: ``nnfast.get_num_threads()``), each perturbing its own copy of the weights.
        """
        model = self if self.dtype == np.float64 else self.copy(np.float64)
        X = model._check_X(X)
        y = model._check_y(y, X.shape[0])
        model._check_training_batch(X.shape[0])
        eps = real(eps, "eps", 0.0, low_open=True)
        n_jobs = _backend.get_num_threads() if n_jobs is None else integer(n_jobs, "n_jobs",
                                                                           low=1)
        ws = model._workspace(X.shape[0])
        model._pass(ws, X, y, True, False, True)
        grads = [g.copy() for g in model.grads]
        step = model._compiled_step(y)
        if step is None or n_jobs == 1 or model.flat_params.size < 2 * n_jobs:
            return gradcheck(lambda: model._pass(ws, X, y, True, False, False), model.params,
                             grads, eps)
        return model._parallel_gradcheck(X, y, grads, eps, n_jobs, step)

    def _parallel_gradcheck(self, X, y, grads, eps, n_jobs, step):
        """check_gradients' numerical gradients, ``n_jobs`` threads over slices of the flat
        parameter buffer, each with its own copy of the model (``numeric_gradient`` releases
        the GIL); BLAS runs one thread per worker so the workers do not oversubscribe."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        from ._numba.step import numeric_gradient
        from .gradcheck import compare

        n = self.flat_params.size
        numeric = np.empty(n, np.float64)
        bounds = [n * k // n_jobs for k in range(n_jobs + 1)]
        copies = [self.copy() for _ in range(n_jobs)]

        def run(k):
            c = copies[k]
            ws = c._workspace(X.shape[0])
            with _serial_kernels():
                numeric_gradient(step, X, y, c._Ws, c._bs, tuple(ws.z), tuple(ws.a),
                                 tuple(ws.delta), c._dWs, c._dbs, c._kind, c.slope, c.l2,
                                 c._weights, c._weight_grads, c.flat_params, bounds[k],
                                 bounds[k + 1], eps, numeric)

        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
            list(pool.map(run, range(n_jobs)))
        base = self.flat_params.__array_interface__["data"][0]
        offsets = [(p.__array_interface__["data"][0] - base) // p.itemsize for p in self.params]
        numerics = [numeric[o:o + p.size] for o, p in zip(offsets, self.params)]
        return compare(numerics, [g.reshape(-1) for g in grads], [p.shape for p in self.params])

    # ------------------------------------------------------------------ persistence --
    def save(self, path):
        """Write config, parameters and buffers to an ``.npz`` file (no pickle, uncompressed).
        ``.npz`` is appended to ``path`` when missing (as numpy does); returns the path
        written, which ``load`` accepts with or without the suffix."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        config = dict(self.get_config(), format=_FORMAT)
        np.savez(path, config=np.array(json.dumps(config)), flat_params=self.flat_params,
                 flat_buffers=self.flat_buffers)
        return path

    @classmethod
    def load(cls, path):
        """The model written by ``save``; it predicts exactly as the saved one did.

        ``path`` may omit the ``.npz`` that ``save`` appended. A file that is not one ``save``
        wrote raises ``ModelFileError`` (a ValueError) naming the file and the problem. The file
        is checked before anything is allocated: every array's declared size must fit in the
        file's bytes and match the sizes its config implies (a small file cannot make ``load``
        allocate more than its own size); no pickle is ever loaded."""
        path = os.fspath(path)
        if not os.path.exists(path) and os.path.exists(path + ".npz"):
            path += ".npz"
        try:
            with zipfile.ZipFile(path) as zf:
                return cls._load(zf, path, os.path.getsize(path))
        except zipfile.BadZipFile as exc:
            raise ModelFileError(path, f"not an .npz (zip) file ({exc})") from None
        except (EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
            raise ModelFileError(path, f"unreadable archive ({type(exc).__name__}: {exc})") \
                from None

    @classmethod
    def _load(cls, zf, path, file_size):
        members = {}
        for key in ("config", "flat_params", "flat_buffers"):
            try:
                info = zf.getinfo(key + ".npy")
            except KeyError:
                raise ModelFileError(path, f"no array {key!r}: not written by MLP.save") from None
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
                raise ModelFileError(path, f"array {key!r} is compressed or larger than the file "
                                           "(MLP.save writes it uncompressed)")
            members[key] = info
        config = _read_member(zf, members["config"], path, "config", None)
        if config.dtype.kind != "U" or config.shape != ():
            raise ModelFileError(path, "config is not a JSON string")
        try:
            config = json.loads(str(config))
        except (ValueError, RecursionError) as exc:
            raise ModelFileError(path, f"config is not valid JSON ({type(exc).__name__})") \
                from None
        if not isinstance(config, dict) or config.pop("format", None) != _FORMAT:
            raise ModelFileError(path, f"not an nnfast.MLP file of format {_FORMAT}")
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown:
            raise ModelFileError(path, f"unknown config keys {sorted(unknown)}")
        sizes, batchnorm = config.get("layer_sizes"), config.get("batchnorm", False)
        if (not isinstance(sizes, list) or len(sizes) < 2 or not isinstance(batchnorm, bool)
                or not all(type(n) is int and n >= 1 for n in sizes)):
            raise ModelFileError(path, "config has no valid layer_sizes (a list of >= 2 "
                                       "positive ints) and batchnorm (a bool)")
        try:
            dtype = np.dtype(config.get("dtype", "float32"))
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ModelFileError(path, f"config dtype {config.get('dtype')!r} is not float32 "
                                       "or float64")
        n_params, n_buffers = _counts(sizes, batchnorm)
        params = _read_member(zf, members["flat_params"], path, "flat_params", (dtype, n_params))
        buffers = _read_member(zf, members["flat_buffers"], path, "flat_buffers",
                               (dtype, n_buffers))
        try:
            model = cls(**config)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(path, f"bad config: {exc}") from None
        model.flat_params[...] = params
        model.flat_buffers[...] = buffers
        return model
