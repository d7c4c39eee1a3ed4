"""A λ grid trained as one network per mini-batch (``nnfast.selection.choose_lambda``'s fast
path).

The K models of a λ sweep share architecture, data, initial weights (one seed) and shuffling;
only the L2 strength differs. So they train together, one pass over each mini-batch for all K,
every parameter of every model in one flat buffer and one fused optimizer update over it (the
same kernel ``MLP.fit`` calls; elementwise, so the same as K updates). Two forms of the pass:

- ``_Compiled`` (the Cython and Numba backends; "auto" takes Cython, ``NETWORK_ORDER``): the
  buffers are model-major, row k of each (K, ·) buffer is model k in ``MLP``'s own layout, and
  one call of the backend's grid step (the Cython engine, ``src/kernels/engine.pyx``, with K
  models; ``nnfast._numba.grid``) runs
  every model's forward, loss, backward and L2 term without the GIL and without Python between
  the models. Each model's arithmetic is ``MLP``'s on that backend, so a grid gives the
  parameters of one ``MLP.fit`` per λ bit for bit (tests/test_selection.py). Measured on digits
  (64-128-64-10, batch 64, float32, 6 λ, one BLAS thread, quiet 2-core Zen 4): 461-528 µs per
  step against 563-700 µs for the NumPy-batched form below, of which 390 µs GEMMs; in the
  sweep the kernel also frees the GIL, so the two chunk threads run in parallel.
- ``_Grid`` (the reference backend, the NumPy form): layer 0 is ONE GEMM ``X @ [W0_1 … W0_K]``
  (the backend's ``dense_forward``/``dense_backward`` on the stacked (n0, K·n1) weight),
  deeper layers batched ``np.matmul`` over (K, m, n) stacks (strided views are BLAS's lda),
  bias, activation, g' and the loss once over all K models; λ enters only the L2 gradient.
  Hidden activations are laid out (m, K, n), output logits (K, m, C), the loss kernel sees K·m
  rows and labels repeated K times. Results equal separate fits to rounding (the layer-0 GEMM
  has K·n columns).

What neither covers (batch norm, early stopping, an Optimizer instance, soft softmax targets)
falls back to separate fits in ``selection``: ``applies`` and ``train`` say.
"""
import math

import numpy as np

from . import _backend, _kinds
from . import optim as _optim
from .model import MLP

_LOSS = {"sigmoid": "sigmoid_binary_cross_entropy", "identity": "mean_squared_error"}


def stacked(arr):
    """The (K, m, n) view of an (m, K, n) array: model k's rows, for a batched matmul."""
    return arr.transpose(1, 0, 2)


def applies(mlp, fit):
    """None if ``train`` covers these MLP/fit options, else the reason it does not."""
    if mlp.get("batchnorm"):
        return "batch norm (running statistics per model)"
    if fit.get("tol") is not None:
        return "early stopping (tol): every model stops at its own epoch"
    if not isinstance(fit.get("optimizer", "adam"), str):
        return "an Optimizer instance (its state would be shared by the models)"
    return None


def _targets(y, output, dtype):
    """y as the loss kernel takes it (int64 labels or float rows), or None for soft targets
    of a softmax (their kernel is a different one; MLP.fit handles them)."""
    if output == "softmax":
        return np.ascontiguousarray(y, dtype=np.int64) if y.dtype.kind in "iu" else None
    return np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)


class _Grid:
    """Stacked parameters of K models and the workspaces of a batched pass."""

    def __init__(self, template, lambdas):
        sizes, K = template.layer_sizes, len(lambdas)
        self.sizes, self.dtype, self.K = sizes, template.dtype, K
        self.hidden, self.slope, self.output = template.hidden, template.slope, template.output
        self.kind = _kinds.ACTIVATIONS[self.hidden]
        self.lambdas = np.asarray(lambdas, np.float64)
        L = len(sizes) - 1
        # Layout: every W first (layer 0 as (n0, K, n1), the others as (K, fan_in, fan_out)),
        # then every b as (K, fan_out) — the weights one slab for the L2 term.
        w_shapes = [(sizes[0], K, sizes[1])] + [(K, sizes[i], sizes[i + 1]) for i in range(1, L)]
        b_shapes = [(K, sizes[i + 1]) for i in range(L)]
        self.n_weights = sum(math.prod(s) for s in w_shapes)
        total = self.n_weights + sum(math.prod(s) for s in b_shapes)
        self.flat_params = np.empty(total, self.dtype)
        self.flat_grads = np.zeros(total, self.dtype)
        self.W, self.dW, self.b, self.db = [], [], [], []
        offset = 0
        for shapes, views, grads in ((w_shapes, self.W, self.dW), (b_shapes, self.b, self.db)):
            for shape in shapes:
                size = math.prod(shape)
                views.append(self.flat_params[offset:offset + size].reshape(shape))
                grads.append(self.flat_grads[offset:offset + size].reshape(shape))
                offset += size
        # every model starts from the template's weights (one seed for the whole sweep)
        for i in range(L):
            W, b = template.params[2 * i], template.params[2 * i + 1]
            self.W[i][...] = W[:, None, :] if i == 0 else W
            self.b[i][...] = b
        self.W0 = self.W[0].reshape(sizes[0], K * sizes[1])
        self.dW0 = self.dW[0].reshape(sizes[0], K * sizes[1])
        self._weights = self.flat_params[:self.n_weights]
        self._weight_grads = self.flat_grads[:self.n_weights]
        self._l2_tmp = np.empty(self.n_weights, self.dtype)
        # λ_k of every weight element, in the layout above
        per_model = [np.broadcast_to(self.lambdas[None, :, None], w_shapes[0])]
        per_model += [np.broadcast_to(self.lambdas[:, None, None], s) for s in w_shapes[1:]]
        self._lambda_of_weight = np.concatenate([p.reshape(-1) for p in per_model])
        self._l2_scale = {}
        self._workspaces = {}

    def model(self, k, template):
        """Model k as an ``MLP`` (``template``'s config with l2 = λ_k), through its params."""
        config = template.get_config()
        config["l2"] = float(self.lambdas[k])
        net = MLP(**config)
        for i in range(len(self.W)):
            net.params[2 * i][...] = self.W[i][:, k, :] if i == 0 else self.W[i][k]
            net.params[2 * i + 1][...] = self.b[i][k]
        return net

    def non_finite(self):
        """λ values of the models whose parameters are not all finite."""
        bad = np.zeros(self.K, bool)
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            bad |= ~np.isfinite(W).all(axis=(0, 2) if i == 0 else (1, 2))
            bad |= ~np.isfinite(b).all(axis=1)
        return [float(lam) for lam in self.lambdas[bad]]

    # ------------------------------------------------------------------- one mini-batch --
    def _workspace(self, m, y):
        ws = self._workspaces.get(m)
        if ws is None:
            sizes, K, dt, L = self.sizes, self.K, self.dtype, len(self.sizes) - 1
            relu_like = self.kind in (_kinds.RELU, _kinds.LEAKY_RELU)
            ws = {"x": np.empty((m, sizes[0]), dt), "y": np.empty((m,) + y.shape[1:], y.dtype),
                  "z": [], "a": [], "delta": [], "g": []}
            for i in range(L):
                n = sizes[i + 1]
                out = i == L - 1
                # output logits (K, m, C), except with no hidden layer: layer 0 writes (m, K, C)
                shape = (K, m, n) if out and L > 1 else (m, K, n)
                z = np.empty(shape, dt)
                ws["z"].append(z)
                ws["a"].append(None if out else (np.empty(shape, dt) if relu_like else z))
                ws["delta"].append(np.empty(shape, dt))
                ws["g"].append(None if out else np.empty(shape, dt))
            # the labels repeated K times, in the logits' row order
            rows = (K, m) if L > 1 else (m, K)
            ws["yK"] = np.empty(rows + y.shape[1:], y.dtype)
            self._workspaces[m] = ws
        return ws

    def _activate(self, z, a):
        if self.kind == _kinds.IDENTITY:
            return
        fn = _backend.kernel("activations", self.hidden, z.size)
        if self.kind == _kinds.LEAKY_RELU:
            fn(z.reshape(-1), self.slope, a.reshape(-1))
        else:
            fn(z.reshape(-1), a.reshape(-1))

    def _times_grad(self, delta, src, g):
        """delta *= g'(src), the seed's .* g'(z) of backpropagation, over all K models."""
        if self.kind == _kinds.IDENTITY:
            return
        fn = _backend.kernel("activations", self.hidden + "_grad", src.size)
        if self.kind == _kinds.LEAKY_RELU:
            fn(src.reshape(-1), self.slope, g.reshape(-1))
        else:
            fn(src.reshape(-1), g.reshape(-1))
        delta *= g

    def step(self, X, y, optimizer):
        """Forward, backward and one optimizer update of all K models on the batch (X, y);
        returns the K models' summed objective (for finiteness)."""
        m, K, L = X.shape[0], self.K, len(self.sizes) - 1
        ws = self._workspace(m, y)
        z, a, delta, g = ws["z"], ws["a"], ws["delta"], ws["g"]
        kernel = _backend.kernel
        # forward: layer 0 one GEMM, the others batched over the models
        kind0 = self.kind if L > 1 else _kinds.IDENTITY
        z0 = z[0].reshape(m, -1)
        kernel("dense", "dense_forward", z0.size)(X, self.W0, self.b[0].reshape(-1), kind0,
                                                  self.slope, z0, z0 if L == 1 else
                                                  a[0].reshape(m, -1))
        for i in range(1, L):
            if i < L - 1:
                np.matmul(stacked(a[i - 1]), self.W[i], out=stacked(z[i]))
                z[i] += self.b[i]
                self._activate(z[i], a[i])
            else:
                np.matmul(stacked(a[i - 1]), self.W[i], out=z[i])
                z[i] += self.b[i][:, None, :]
        # loss over K·m rows: the kernel's mean over them is 1/K of the models' summed means
        logits, dlogits = z[-1], delta[-1]
        rows = logits.shape[0] * logits.shape[1]
        ws["yK"][...] = y[None] if L > 1 else y[:, None]
        name = "softmax_cross_entropy" if self.output == "softmax" else _LOSS[self.output]
        loss = kernel("losses", name, logits.size)(
            logits.reshape(rows, -1), ws["yK"].reshape((rows,) + y.shape[1:]),
            dlogits.reshape(rows, -1)) * K
        dlogits *= K
        # backward
        src_of = a if self.kind in _kinds.GRAD_FROM_OUTPUT else z
        for i in range(L - 1, 0, -1):
            d = delta[i] if i == L - 1 else stacked(delta[i])
            np.matmul(stacked(a[i - 1]).transpose(0, 2, 1), d, out=self.dW[i])
            np.sum(d, axis=1, out=self.db[i])
            np.matmul(d, self.W[i].transpose(0, 2, 1), out=stacked(delta[i - 1]))
            self._times_grad(delta[i - 1], src_of[i - 1], g[i - 1])
        d0 = delta[0].reshape(m, -1)
        kernel("dense", "dense_backward", d0.size + X.size)(
            d0, X, self.W0, self.dW0, self.db[0].reshape(-1), None, _kinds.IDENTITY,
            self.slope, X)
        # L2: λ_k/m · W_k per model (the scale rounded to the dtype, as MLP's kernel does)
        scale = self._l2_scale.get(m)
        if scale is None:
            scale = self._l2_scale[m] = (self._lambda_of_weight / m).astype(self.dtype)
        np.multiply(self._weights, scale, out=self._l2_tmp)
        self._weight_grads += self._l2_tmp
        optimizer.step_flat(self.flat_params, self.flat_grads)
        return loss


class _Compiled:
    """K models in model-major flat buffers, in ``MLP``'s layout, stepped by one call of the
    backend's grid kernel (``_compiled_kernel``) per mini-batch and one fused optimizer update."""

    def __init__(self, template, lambdas, kernel):
        K, layout = len(lambdas), template._layout
        self.K, self.dtype, self.kernel = K, template.dtype, kernel
        self.sizes = layout.grid_arrays[0]
        self.kind, self.slope = template._kind, template.slope
        self.relu_like = self.kind in (_kinds.RELU, _kinds.LEAKY_RELU)
        self.lambdas = np.asarray(lambdas, np.float64)
        self.n_weights, n_params = layout.n_weights, layout.flat_params.size
        self.flat_params = np.empty(K * n_params, self.dtype)
        self.flat_grads = np.zeros(K * n_params, self.dtype)
        split = K * self.n_weights
        self.weights = self.flat_params[:split].reshape(K, -1)
        self.biases = self.flat_params[split:].reshape(K, -1)
        self.dweights = self.flat_grads[:split].reshape(K, -1)
        self.dbiases = self.flat_grads[split:].reshape(K, -1)
        # every model starts from the template's weights (one seed for the whole sweep)
        self.weights[...] = template.flat_params[:self.n_weights]
        self.biases[...] = template.flat_params[self.n_weights:]
        self._workspaces = {}
        self.engine = None
        if kernel == "engine":
            from ._cython.step import grid_step

            self.engine = grid_step(template, self.lambdas)

    def model(self, k, template):
        """Model k as an ``MLP`` (``template``'s config with l2 = λ_k)."""
        config = template.get_config()
        config["l2"] = float(self.lambdas[k])
        net = MLP(**config)
        net.flat_params[:self.n_weights] = self.weights[k]
        net.flat_params[self.n_weights:] = self.biases[k]
        return net

    def non_finite(self):
        """λ values of the models whose parameters are not all finite."""
        ok = np.isfinite(self.weights).all(axis=1) & np.isfinite(self.biases).all(axis=1)
        return [float(lam) for lam in self.lambdas[~ok]]

    def _workspace(self, m, y):
        ws = self._workspaces.get(m)
        if ws is None:
            shape = (self.K, m * int(self.sizes[1:].sum()))
            z = np.empty(shape, self.dtype)
            ws = {"x": np.empty((m, int(self.sizes[0])), self.dtype),
                  "y": np.empty((m,) + y.shape[1:], y.dtype), "z": z,
                  "a": np.empty(shape, self.dtype) if self.relu_like else z,
                  "delta": np.empty(shape, self.dtype)}
            self._workspaces[m] = ws
        return ws

    def step(self, X, y, optimizer):
        """Forward, backward and one optimizer update of all K models on the batch (X, y);
        returns the K models' summed objective (for finiteness)."""
        if self.engine is not None:         # Cython: the engine's K-model plan
            loss = self.engine(X, y, self.flat_params, self.flat_grads)
        else:                               # Numba: its grid kernel
            ws = self._workspace(X.shape[0], y)
            loss = self.kernel(X, y, self.sizes, self.weights, self.biases, self.dweights,
                               self.dbiases, ws["z"], ws["a"], ws["delta"], self.kind,
                               self.slope, self.lambdas)
        optimizer.step_flat(self.flat_params, self.flat_grads)
        return loss


def _compiled_kernel(output):
    """How the backend a network runs on (``network_backend``: Cython first for "auto") steps
    the grid: "engine" (Cython: the network-step engine with K models), Numba's grid kernel
    for ``output``, or None for the reference backend (the NumPy-batched ``_Grid``)."""
    backend = _backend.network_backend()
    if backend == "reference":
        return None
    if backend == "cython":
        return "engine"
    return _backend.kernel_in(backend, "grid", output + "_grid")


def train(lambdas, mlp, fit, X, y):
    """Trains ``MLP(l2=λ, **mlp).fit(X, y, **fit)`` for every λ as one batched network (the
    options as ``selection`` splits them; ``applies(mlp, fit)`` must be None). Returns the K
    trained MLPs, or None where the targets need the separate path (soft softmax targets).
    Invalid X or y raise as ``MLP.fit`` raises."""
    from tqdm.auto import tqdm

    template = MLP(**mlp)
    template.loss(X, y)          # validates X and y as MLP.fit does (same errors)
    X = np.ascontiguousarray(X, dtype=template.dtype)
    y = _targets(np.asarray(y), template.output, template.dtype)
    if y is None:
        return None
    fit = dict(fit)
    n = X.shape[0]
    batch_size = fit.pop("batch_size", None)
    batch_size = min(min(200, n) if batch_size is None else batch_size, n)
    epochs, decay_rate = fit.pop("epochs", 200), fit.pop("decay_rate", 0.0)
    shuffle, seed, progress = fit.pop("shuffle", True), fit.pop("seed"), fit.pop("progress")
    lr, name = fit.pop("lr", None), fit.pop("optimizer", "adam")
    fit.pop("tol", None)
    fit.pop("patience", None)
    optimizer = _optim.make(name, 1e-3 if lr is None else lr, **fit)
    lr0 = optimizer.lr
    kernel = _compiled_kernel(template.output)
    grid = _Grid(template, lambdas) if kernel is None else _Compiled(template, lambdas, kernel)
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    bounds = list(range(0, n, batch_size)) + [n]
    token = _backend.push(_backend.network_backend())
    try:
        for epoch in tqdm(range(epochs), desc="choose_lambda", unit="epoch",
                          disable=None if progress else True):
            optimizer.lr = lr0 / (1.0 + decay_rate * epoch)
            if shuffle:
                rng.shuffle(order)
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                ws = grid._workspace(hi - lo, y)
                if shuffle:
                    xb, yb = ws["x"], ws["y"]
                    np.take(X, order[lo:hi], axis=0, out=xb, mode="clip")
                    np.take(y, order[lo:hi], axis=0, out=yb, mode="clip")
                else:
                    xb, yb = X[lo:hi], y[lo:hi]
                loss = grid.step(xb, yb, optimizer)
                if not math.isfinite(loss):
                    bad = grid.non_finite() or "some"
                    raise FloatingPointError(
                        f"non-finite training loss in epoch {epoch + 1} (lr={optimizer.lr:.3g}) "
                        f"for λ = {bad} (lower the learning rate or standardize X)")
            if grid.non_finite():
                raise FloatingPointError(f"non-finite weights after epoch {epoch + 1} for λ = "
                                         f"{grid.non_finite()} (lower the learning rate)")
    finally:
        _backend.pop(token)
    return [grid.model(k, template) for k in range(len(lambdas))]
