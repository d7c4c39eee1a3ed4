"""A λ grid trained as one batched network (``nnfast.selection.choose_lambda``'s fast path).

The K models of a λ sweep share architecture, data, initial weights (one seed) and shuffling;
only the L2 strength differs. So they train together, one pass over each mini-batch for all K:

- layer 0: X is shared, so z of all K models is ONE GEMM ``X @ [W0_1 … W0_K]`` and its weight
  gradient one GEMM ``Xᵀ [δ_1 … δ_K]`` (the backend's ``dense_forward`` / ``dense_backward`` on
  the stacked (n0, K·n1) weight, bias and activation fused as in ``MLP``);
- deeper layers are block-diagonal: one batched ``np.matmul`` over (K, m, n) stacks per product
  (NumPy loops over the K models inside C and hands each to BLAS, strided views included);
- bias, activation, g' and the loss run once over the arrays of all K models;
- every parameter of every model lives in one flat buffer, so the optimizer is one fused update
  (the same kernel ``MLP.fit`` calls); λ enters only the L2 gradient ``λ_k/m · W_k``.

Hidden activations are laid out (m, K, n), row-major: layer 0's GEMM writes them as they are,
and the batched GEMMs read them as (K, m, n) views (the row stride K·n is BLAS's lda). The
output logits are (K, m, C), so the loss kernel sees K·m rows and its labels are y repeated K
times. What this does not cover (batch norm, early stopping, an Optimizer instance, soft
softmax targets) falls back to separate fits in ``selection``: ``applies`` and ``train`` say.
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
    grid = _Grid(template, lambdas)
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
