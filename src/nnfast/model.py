"""Multilayer perceptrons trained with nnfast's kernels (seed: forward pass, backpropagation,
activations, regularization, batch normalization, optimizers, learning-rate decay).

``MLP`` is the front: configuration, prediction, loss, gradients, one training step, and the
entry points of ``fit``, ``check_gradients``, ``save`` and ``load``. What it is made of lives in
``nnfast._network`` (one concern per module: layout, workspace, network pass, inputs, training,
checking, persistence); the network pass of the backend in force comes from that backend's
``step`` module (``nnfast._backend.network_step``).

- Every parameter lives in one flat buffer ``flat_params`` (and every gradient in
  ``flat_grads``, same layout): ``params`` / ``grads`` are views into them, so one fused optimizer
  call on the flat buffer updates the whole model. Batch-norm running statistics are buffers
  (``flat_buffers``), never trained.
- Passes run on preallocated workspaces, one per batch size (a few are kept): inputs are
  validated once, when they enter ``fit`` / ``train_step`` / ``loss`` ..., so a steady-state
  step allocates no arrays.
- Row-major batches as everywhere in nnfast: ``z = a W + b`` with ``W`` (fan_in, fan_out); the
  seed's Θ is ``W.T``.
"""
import functools

import numpy as np

from . import _backend, _blas, _kinds
from . import optim as _optim
from ._network import checking as _checking
from ._network import persistence as _persistence
from ._network import training as _training
from ._network.inputs import (check_memory, check_training_batch, check_writable, check_X,
                              check_y, choice, flag)
from ._network.layout import Layer, Layout, counts
from ._network.passes import BN_EPS, BN_MOMENTUM  # noqa: F401 (nnfast.model.BN_EPS ...)
from ._network.persistence import ModelFileError
from ._network.training import History
from ._network.workspace import workspace as _workspace
from ._validate import integer, real

__all__ = ["MLP", "History", "Layer", "ModelFileError"]

_HIDDEN = dict(_kinds.ACTIVATIONS)
_OUTPUTS = ("softmax", "sigmoid", "identity")
_INITS = ("he", "xavier", "normal")
_RELU_LIKE = (_kinds.RELU, _kinds.LEAKY_RELU)


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
        self.hidden = choice(hidden, "hidden", tuple(_HIDDEN))
        self.output = choice(output, "output", _OUTPUTS)
        self.batchnorm = flag(batchnorm, "batchnorm")
        self.l2 = real(l2, "l2", 0.0)
        self.init = choice(init, "init", _INITS)
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
        check_memory(sizes, counts(sizes, self.batchnorm)[0], self.dtype)
        self._kind = _HIDDEN[self.hidden]
        self._layout = layout = Layout(sizes, self.batchnorm, self.dtype)
        self.layers, self.n_weights = layout.layers, layout.n_weights
        self.flat_params, self.flat_grads = layout.flat_params, layout.flat_grads
        self.flat_buffers = layout.flat_buffers
        self.params, self.grads = layout.params, layout.grads
        self.param_names = layout.param_names
        self._workspaces = {}
        layout.initialize(np.random.default_rng(seed), self.init, self.init_scale)

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
        return _workspace(self._workspaces, self._layout, m, self._kind in _RELU_LIKE)

    def _inputs(self, X, y=None, training=False):
        """Validated X (and y); a training batch must suit batch norm."""
        X = check_X(self, X)
        if y is not None:
            y = check_y(self, y, X.shape[0])
        if training:
            check_training_batch(self, X.shape[0])
        return X if y is None else (X, y)

    # ------------------------------------------------------------------ public methods --
    @_on_network_backend
    def forward(self, X, training=False):
        """The network's output for X: class probabilities (softmax), per-output probabilities
        (sigmoid) or values (identity), shape (n_samples, n_outputs). ``training=True`` uses the
        batch's statistics in batch norm and updates the running statistics (as torch does)."""
        training = flag(training, "training")
        X = self._inputs(X, training=training)
        network, ws = _backend.network_step(), self._workspace(X.shape[0])
        logits = network.forward(self, ws, X, training=training, update_stats=training)
        return network.output(self, ws, logits).copy()

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
        training = flag(training, "training")
        X, y = self._inputs(X, y, training)
        return _backend.network_step().objective(self, self._workspace(X.shape[0]), X, y,
                                                 training=training, update_stats=False,
                                                 with_grads=False)

    @_on_network_backend
    def gradients(self, X, y):
        """dJ/dparams on the batch (X, y) in training mode (batch-norm batch statistics, running
        statistics untouched): a list of new arrays matching ``params``."""
        X, y = self._inputs(X, y, True)
        _backend.network_step().objective(self, self._workspace(X.shape[0]), X, y,
                                          training=True, update_stats=False, with_grads=True)
        return [g.copy() for g in self.grads]

    @_on_network_backend
    def train_step(self, X, y, optimizer):
        """One mini-batch of gradient descent: forward, backward, one fused optimizer update of
        every parameter (``optimizer`` is an ``nnfast.optim`` optimizer). Returns the batch's
        objective before the update. Batch-norm running statistics are updated."""
        if not isinstance(optimizer, _optim.Optimizer):
            raise TypeError(f"optimizer must be an nnfast.optim.Optimizer (e.g. "
                            f"nnfast.optim.Adam(lr=1e-3)), got {type(optimizer).__name__}")
        X, y = self._inputs(X, y, True)
        check_writable(self)
        ws = self._workspace(X.shape[0])
        with _backend.serial_kernels(ws.may_parallel), _blas.serial(ws.gemm_work):
            return _training.step(self, _backend.network_step(), ws, X, y, optimizer)

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
        return _training.fit(self, X, y, optimizer, lr, epochs, batch_size, decay_rate,
                             validation_data, tol, patience, shuffle, seed, progress,
                             optimizer_kwargs)

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
        return _checking.check_gradients(self, X, y, eps, n_jobs)

    def save(self, path):
        """Write config, parameters and buffers to an ``.npz`` file (no pickle, uncompressed).
        ``.npz`` is appended to ``path`` when missing (as numpy does); returns the path
        written, which ``load`` accepts with or without the suffix."""
        return _persistence.save(self, path)

    @classmethod
    def load(cls, path):
        """The model written by ``save``; it predicts exactly as the saved one did.

        ``path`` may omit the ``.npz`` that ``save`` appended. A file that is not one ``save``
        wrote raises ``ModelFileError`` (a ValueError) naming the file and the problem. The file
        is checked before anything is allocated: every array's declared size must fit in the
        file's bytes and match the sizes its config implies (a small file cannot make ``load``
        allocate more than its own size); no pickle is ever loaded."""
        return _persistence.load(cls, path)
