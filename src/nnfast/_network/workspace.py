"""The arrays one forward/backward pass over m rows writes, allocated once per batch size."""
import numpy as np

from .. import _backend

#: Workspaces kept per model (a fit uses two: full batches and the last, shorter one; a third
#: serves the validation set).
MAX_WORKSPACES = 4


class Workspace:
    """Per layer: ``z`` (pre-activations), ``a`` (activations), ``delta`` (dJ/dz) and for batch
    norm ``zbn`` (normalized z), ``xhat``, ``mean``, ``invstd``, ``tmp``; ``step_arrays`` the
    tuples ``(zs, acts, deltas)`` a whole-network step kernel takes, ``flat_arrays`` the same
    as the (1, ·) buffers ``zbuf, abuf, dbuf`` of a grid kernel (``nnfast._numba.grid``).

    ``relu_like``: the hidden activation's derivative is taken from z (ReLU, leaky ReLU), so a
    layer keeps z and a apart; sigmoid'/tanh' come from a, which may then overwrite z."""

    def __init__(self, layout, m, relu_like):
        dt = layout.flat_params.dtype
        self.m = m
        self.x = self.y = None          # gather buffers of a shuffled mini-batch (fit)
        # Could a kernel of this step take threads (an array of 2**17 elements or more, the
        # compiled backends' PARALLEL_MIN)? If not, training skips switching threads off.
        sizes = [layout.flat_params.size] + [m * layer.W.shape[i] for layer in layout.layers
                                             for i in (0, 1)]
        self.may_parallel = max(sizes) >= _backend.PARALLEL_MIN
        # The largest GEMM's multiply-adds: whether BLAS would split it over threads (_blas).
        self.gemm_work = m * max(layer.W.size for layer in layout.layers)
        self.z, self.zbn, self.a, self.delta = [], [], [], []
        self.xhat, self.mean, self.invstd, self.tmp = [], [], [], []
        last = len(layout.layers) - 1
        # z, δ and (relu-like) hidden a of every layer are views, one after the other, of one
        # (1, m·Σ fan_out) buffer each: the layout of the grid kernels' workspace (flat_arrays).
        width = m * sum(layer.W.shape[1] for layer in layout.layers)
        zflat, dflat = np.empty((1, width), dt), np.empty((1, width), dt)
        aflat = np.empty((1, width), dt) if relu_like else zflat
        self.flat_arrays = (zflat, aflat, dflat)
        offset = 0
        for i, layer in enumerate(layout.layers):
            n = layer.W.shape[1]
            z = zflat[0, offset:offset + m * n].reshape(m, n)
            zbn = xhat = mean = invstd = tmp = None
            if i == last:
                a = np.empty((m, n), dt)                 # output probabilities
            elif layer.batchnorm:
                zbn, xhat = np.empty((m, n), dt), np.empty((m, n), dt)
                mean, invstd, tmp = np.empty(n, dt), np.empty(n, dt), np.empty(n, dt)
                a = np.empty((m, n), dt) if relu_like else zbn   # relu' needs the z it saw
            else:                                                # sigmoid'/tanh' come from a
                a = aflat[0, offset:offset + m * n].reshape(m, n) if relu_like else z
            self.delta.append(dflat[0, offset:offset + m * n].reshape(m, n))
            offset += m * n
            self.z.append(z)
            self.zbn.append(zbn)
            self.a.append(a)
            self.xhat.append(xhat)
            self.mean.append(mean)
            self.invstd.append(invstd)
            self.tmp.append(tmp)
        self.step_arrays = (tuple(self.z), tuple(self.a), tuple(self.delta))

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


def workspace(cache, layout, m, relu_like):
    """The workspace for m rows from ``cache`` (a dict by m, at most ``MAX_WORKSPACES``; the
    oldest goes first), made if missing."""
    ws = cache.get(m)
    if ws is None:
        if len(cache) >= MAX_WORKSPACES:
            del cache[next(iter(cache))]
        ws = cache[m] = Workspace(layout, m, relu_like)
    return ws
