"""The whole-network step of the Cython backend (the contract: ``nnfast._reference.step``).

An objective with gradients, for a network without batch norm (integer labels for softmax), is
one call of the grid kernel (``src/kernels/grid.pyx``) with the network as its only model:
forward, loss, backward and the L2 term without Python or the GIL between the layers. Measured
(64-128-64-10, batch 64, float32, Adam, one BLAS thread, quiet 2-core Zen 4, portable build):
``MLP.train_step`` 127 µs layer by layer against 87 µs as one call (64-64-10: 55 against 29).
A batch big enough to be worth two cores (``worth_two``) runs as two row chunks instead
(``src/kernels/pstep.pyx``, Linux builds), the second on a helper thread when this process may
use two CPUs; ``NNFAST_STEP_THREADS`` chooses (README, "Backends").
In ``fit``'s and the scikit-learn front's epochs, the batches the one-call kernel serves run in
calls of ``src/kernels/epoch.pyx`` (gather, step and the optimizer's update per batch, up to
``CALL_WORK`` per call: ``run_batches``), with the results of the batch-by-batch loop bit for bit.
Everything else — batch norm, soft softmax targets, the loss without gradients, inference — is
the network pass kernel by kernel (``nnfast._network.passes.LayerByLayer``) over this backend's
compiled kernels, whose GEMMs and fused epilogues do the work.
"""
import os
import warnings

import numpy as np

from .. import _backend, _blas, _rules
from .. import optim as _optim
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, epoch, grid, losses

_KERNELS = {"softmax": grid.softmax_grid, "sigmoid": grid.sigmoid_grid,
            "identity": grid.identity_grid}
_CHUNKED_KERNELS = {"softmax": "softmax_step", "sigmoid": "sigmoid_step",
                    "identity": "identity_step"}

#: The smallest chunk worth a helper thread: rows and multiply-adds (forward + backward ≈ 3 per
#: weight and row). Measured (2-core Zen 4, µs per step grid / two chunks with the helper):
#: 100-64-1 float32 batch 128 41 / 26, batch 200 92 / 44, batch 100 33 / 30, batch 64 23 / 25;
#: in fit, 64-128-64-10 batch 64 (32-row chunks): no gain. Chunks of at least 64 rows and
#: 10⁶ multiply-adds.
CHUNK_ROWS, CHUNK_WORK = 64, 1_000_000


def _mode(value):
    """NNFAST_STEP_THREADS: unset / "auto" (chunks where ``worth_two``), "1" (never), "2"
    (every batch of two rows or more: the experiment's setting)."""
    value = (value or "auto").strip().lower()
    if value in ("auto", "1", "2"):
        return value
    warnings.warn(f"NNFAST_STEP_THREADS must be auto, 1 or 2, got {value!r}; using auto",
                  RuntimeWarning, stacklevel=2)
    return "auto"


MODE = _mode(os.environ.get("NNFAST_STEP_THREADS"))
#: Whether ``run_batches`` runs an epoch's batches in one call (False: batch by batch; the tests
#: compare the two).
EPOCH_KERNEL = True
#: The multiply-adds (3 per weight and row) one call of the epoch kernel takes on at most: about
#: 0.1 s on one core, so that Ctrl-C (seen by Python between calls) stops a long epoch promptly.
#: Digits' 64-128-64-10 at batch 64: 60 batches per call, its whole epoch of 20.
CALL_WORK = 200_000_000
_pstep = None           # the module once loaded; False if it is not built


def _threads(num_threads):
    """pstep's threads: 2 (the helper runs) unless ``nnfast.set_num_threads`` bounds nnfast to
    one thread, or (NNFAST_STEP_THREADS other than 2) the process may use one CPU only."""
    from .._machine import usable_cpus       # not at import: only when pstep is first loaded

    if num_threads is not None and num_threads < 2:
        return 1
    return 2 if MODE == "2" or usable_cpus() >= 2 else 1


#: OpenBLAS core types whose kernels include the small-matrix GEMMs that make the TT δ_prev
#: pay (``src/kernels/cpu.h``); OPENBLAS_CORETYPE naming another one (e.g. Haswell on an AVX-512
#: CPU) means TN, whatever the CPU.
SMALL_GEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def _default_delta():
    """-1 (the CPU decides: TT with AVX-512), or 0 when OPENBLAS_CORETYPE holds OpenBLAS to
    kernels without the small-matrix path."""
    core = os.environ.get("OPENBLAS_CORETYPE", "").strip().lower()
    return 0 if core and core not in SMALL_GEMM_CORES else -1


def set_delta_gemm(choice=None):
    """How the one-call, chunked and epoch kernels compute δ_prev = δ Wᵀ: 1 a TT GEMM on δᵀ, 0 a
    TN GEMM, -1 by the CPU (``src/kernels/cpu.h``); None: the default (``_default_delta``)."""
    global _delta
    _delta = _default_delta() if choice is None else choice
    for module in (grid, epoch) + ((_pstep,) if _pstep else ()):
        module.set_delta_gemm(_delta)


def set_threads(num_threads):
    """``nnfast.set_num_threads`` calls this (if this module is loaded)."""
    if _pstep:
        _pstep.threads = _threads(num_threads)


def chunked_kernels():
    """``pstep`` (loaded on first use, its helper allowed by ``_threads``), or None on builds
    without it."""
    global _pstep
    if _pstep is None:
        try:
            from . import pstep
        except ImportError:
            _pstep = False
        else:
            pstep.threads = _threads(_backend._num_threads)
            pstep.set_delta_gemm(_delta)
            _pstep = pstep
    return _pstep or None


def worth_two(m, n_weights):
    """Whether a batch of m rows of a network with ``n_weights`` weights runs as two chunks:
    by shape alone (results depend on it, never on whether the helper is free)."""
    if MODE == "1" or m < 2:
        return False
    rows = m // 2
    return MODE == "2" or (rows >= CHUNK_ROWS and 3 * rows * n_weights >= CHUNK_WORK)


class _Network(LayerByLayer):
    def _one_call(self, net, X, y):
        """The grid arrays if (X, y) can go to the one-call kernels, else None."""
        arrays = net._layout.grid_arrays
        if (arrays is None or not X.flags.c_contiguous
                or (net.output == "softmax" and y.dtype != np.int64)):
            return None
        return arrays

    def _chunked(self, net, ws, X, y, arrays, rows):
        """The chunked step (``pstep``; ws's z, a, δ stay untouched: the chunks run on
        pstep's own buffers, and with ``rows`` gather their own rows of X and y)."""
        sizes, weights, biases, dweights, dbiases = arrays
        # One BLAS thread (a no-op inside fit/train_step, which set it already): two threads in
        # OpenBLAS's threaded GEMM would serialize on its lock.
        with _blas.serial(ws.gemm_work):
            kernel = getattr(_pstep, _CHUNKED_KERNELS[net.output])
            return kernel(X, y, sizes, weights, biases, dweights, dbiases, net._kind,
                          net.slope, net.l2, rows)

    def run_batches(self, net, optimizer, X, y, order, bounds, start):
        """``training.run_epoch``'s batches ``start``, ``start + 1``, ... in one call of
        ``epoch.pyx`` as far as it serves them: the J of each batch it applied (stopping before
        a batch with a non-finite J, one worth two threads, or after ``CALL_WORK``); an empty
        list if it serves none now but may later (the optimizer has not yet taken its first,
        validating step; a non-finite J); None if it serves none of this epoch's."""
        arrays = self._one_call(net, X, y) if EPOCH_KERNEL else None
        rule = optimizer.rule
        if (arrays is None or rule.kernel not in epoch.RULES
                or type(optimizer).step_flat is not _optim.Optimizer.step_flat
                or (net.output != "softmax" and (y.ndim != 2 or y.dtype != X.dtype
                                                 or not y.flags.c_contiguous))):
            return None
        layout, n_w = net._layout, arrays[1].shape[1]
        params, grads = layout.flat_params, layout.flat_grads
        if (_backend.kernel("optim", rule.kernel, params.size)
                is not _backend.kernel_in("cython", "optim", rule.kernel)):
            return None         # the update runs on another backend: the loop calls it
        last, size = len(bounds) - 1, None
        # at most ~CALL_WORK multiply-adds per call: Ctrl-C is seen between calls
        cap = max(1, CALL_WORK // max(1, 3 * (bounds[start + 1] - bounds[start]) * n_w))
        stop = start
        while stop < last and stop - start < cap:   # up to a batch worth two threads
            if bounds[stop + 1] - bounds[stop] != size:
                size = bounds[stop + 1] - bounds[stop]
                if worth_two(size, n_w):
                    break
            stop += 1
        if stop == start < last:
            return None         # the epoch's batches are worth two threads: pstep's
        trusted = optimizer._trusted
        if (trusted is None or trusted[0] is not params or trusted[1] is not grads
                or not params.flags.writeable):
            return []           # step_flat validates the arrays on its first step
        if order is None:
            order = np.arange(X.shape[0])
        elif order.dtype != np.int64 or not order.flags.c_contiguous:
            return None
        t = optimizer.t
        args = _rules.kernel_args_table(rule, optimizer.lr, t + 1, stop - start)
        losses = np.empty(stop - start)
        with _blas.serial():
            done = epoch.run_batches(net.output, X, y, order, np.asarray(bounds[:stop + 1]),
                                     start, arrays[0], params, grads, net._kind, net.slope,
                                     net.l2, rule.kernel, trusted[2], args, losses)
        optimizer.t = t + done
        return losses[:done].tolist()

    def rows_objective(self, net, ws, X, y, rows):
        arrays = self._one_call(net, X, y)
        if (arrays is not None and rows.dtype == np.int64 and rows.flags.c_contiguous
                and worth_two(rows.shape[0], arrays[1].shape[1]) and chunked_kernels()):
            return self._chunked(net, ws, X, y, arrays, rows)
        return super().rows_objective(net, ws, X, y, rows)

    def objective(self, net, ws, X, y, training, update_stats, with_grads):
        arrays = self._one_call(net, X, y) if with_grads else None
        if arrays is None:
            return super().objective(net, ws, X, y, training, update_stats, with_grads)
        sizes, weights, biases, dweights, dbiases = arrays
        if worth_two(X.shape[0], weights.shape[1]) and chunked_kernels():
            return self._chunked(net, ws, X, y, arrays, None)
        zbuf, abuf, dbuf = ws.flat_arrays
        return _KERNELS[net.output](X, y, sizes, weights, biases, dweights, dbiases, zbuf, abuf,
                                    dbuf, net._kind, net.slope, np.array([net.l2]))


network = _Network(activations, batchnorm, dense, losses)
_delta = -1
set_delta_gemm()
