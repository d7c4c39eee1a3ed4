"""The whole-network step of the Cython backend (the contract: ``nnfast._reference.step``).

An objective with gradients, for a network without batch norm (integer labels for softmax), is
one call of the grid kernel (``src/kernels/grid.pyx``) with the network as its only model:
forward, loss, backward and the L2 term without Python or the GIL between the layers. Measured
(64-128-64-10, batch 64, float32, Adam, one BLAS thread, quiet 2-core Zen 4, portable build):
``MLP.train_step`` 127 µs layer by layer against 87 µs as one call (64-64-10: 55 against 29).
Everything else — batch norm, soft softmax targets, the loss without gradients, inference — is
the network pass kernel by kernel (``nnfast._network.passes.LayerByLayer``) over this backend's
compiled kernels, whose GEMMs and fused epilogues do the work.
"""
import os

import numpy as np

from .. import _blas
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, grid, losses

_KERNELS = {"softmax": grid.softmax_grid, "sigmoid": grid.sigmoid_grid,
            "identity": grid.identity_grid}
#: EXPERIMENT, opt-in: the row-chunked step of ``pstep.pyx`` with its helper thread
#: (NNFAST_STEP_THREADS=2; ``pstep.threads``), ``pstep.n_chunks`` chunks (NNFAST_STEP_CHUNKS,
#: default 2). Off by default, and on builds without ``pstep`` (it is built on Linux only).
#: Results are the same with and without the helper, not bit-equal to the grid kernel's.
CHUNKED = os.environ.get("NNFAST_STEP_THREADS", "1").strip() not in ("", "0", "1")
pstep = None
if CHUNKED:
    try:
        from . import pstep
    except ImportError:
        CHUNKED = False
_CHUNKED_KERNELS = {"softmax": "softmax_step", "sigmoid": "sigmoid_step",
                    "identity": "identity_step"}


class _Network(LayerByLayer):
    def objective(self, net, ws, X, y, training, update_stats, with_grads):
        arrays = net._layout.grid_arrays
        if (not with_grads or arrays is None or not X.flags.c_contiguous
                or (net.output == "softmax" and y.dtype != np.int64)):
            return super().objective(net, ws, X, y, training, update_stats, with_grads)
        sizes, weights, biases, dweights, dbiases = arrays
        if CHUNKED:     # ws's z, a, δ stay untouched: the chunks run on pstep's own buffers
            # One BLAS thread (a no-op inside fit/train_step, which set it already): two
            # threads in OpenBLAS's threaded GEMM would serialize on its lock.
            with _blas.serial(ws.gemm_work):
                kernel = getattr(pstep, _CHUNKED_KERNELS[net.output])
                return kernel(X, y, sizes, weights, biases, dweights, dbiases, net._kind,
                              net.slope, net.l2)
        zbuf, abuf, dbuf = ws.flat_arrays
        return _KERNELS[net.output](X, y, sizes, weights, biases, dweights, dbiases, zbuf, abuf,
                                    dbuf, net._kind, net.slope, np.array([net.l2]))


network = _Network(activations, batchnorm, dense, losses)
