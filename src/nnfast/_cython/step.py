"""The network step of the Cython backend (the contract: ``nnfast._reference.step``).

Every training step of a network without batch norm is one call of the engine
(``src/kernels/engine.pyx``) with a plan made here, in one place (``plan``): the network (sizes,
activation, output and loss), its L2 strength — or the K strengths of a λ grid (``grid_step``)
— the optimizer rule fused into the call or none, and the threads. The callers:

- ``objective`` (``MLP.train_step``, ``gradients``, a fit's batch that the loop runs): one batch,
  gradients only; the optimizer's ``step_flat`` follows.
- ``rows_objective``: the same on rows of X and y gathered by the engine, chunk by chunk.
- ``run_batches`` (``MLP.fit``'s and the scikit-learn front's epochs, ``training.run_epoch``): the
  batches of an epoch in calls of up to ``CALL_WORK`` multiply-adds, each batch gathered,
  stepped and updated by the optimizer's fused kernel without Python between batches — the same
  results as the batch-by-batch loop, bit for bit (tests/test_engine.py).
- ``grid_step`` (``choose_lambda``'s batched grid, ``nnfast._grid``): K models side by side.

Threads: the engine runs a batch's fixed row chunks on an OpenMP team of ``threads()`` — every
usable CPU (affinity, cgroup quota: ``nnfast._machine.usable_cpus``), at most
``nnfast.set_num_threads``'s bound — and drops to one thread for a while when a pass waited on a
descheduled thread (``engine.pyx``, "Contention"). Chunks depend on the batch's shape only, so
the results do not depend on the thread count. BLAS runs on one thread inside (the engine holds
it there from C: ``nnfast._blas.link``).

Everything else — batch norm, soft softmax targets, the loss without gradients, inference — is
the network pass kernel by kernel (``nnfast._network.passes.LayerByLayer``) over this backend's
compiled kernels, whose GEMMs and fused epilogues do the work.
"""
import os
import weakref

import numpy as np

from .. import _backend, _blas, _rules
from .. import optim as _optim
from .._network.passes import LayerByLayer
from . import activations, batchnorm, dense, engine, losses

#: Whether ``run_batches`` runs an epoch's batches in engine calls with the optimizer fused
#: (False: batch by batch; the tests compare the two).
EPOCH_KERNEL = True
#: The multiply-adds (3 per weight and row) one engine call of an epoch takes on at most: about
#: 0.1 s on one core, so that Ctrl-C (seen by Python between calls) stops a long epoch promptly.
#: Digits' 64-128-64-10 at batch 64: 60 batches per call, its whole epoch of 20.
CALL_WORK = 200_000_000
_cpus = None


def threads():
    """The engine's threads: the CPUs this process may use, at most ``set_num_threads``'s
    bound."""
    global _cpus
    if _cpus is None:
        from .._machine import usable_cpus       # not at import: only when a plan is made

        _cpus = usable_cpus()
    bound = _backend._num_threads
    return max(1, min(_cpus, bound) if bound is not None else _cpus)


def _after_fork():
    global _cpus
    _cpus = None                     # a child may be given other CPUs


if hasattr(os, "register_at_fork"):       # POSIX
    os.register_at_fork(after_in_child=_after_fork)


#: Each network layout's plans, held beside it (not in it: a plan holds C buffers and a thread
#: controller, and a model must pickle and deep-copy as before).
_plans = weakref.WeakKeyDictionary()


def plan(net, rule=None, lambdas=None, n_threads=None):
    """The engine plan of ``net``'s steps: its L2 strength (or ``lambdas``, one per model of a
    grid), the optimizer kernel ``rule`` fused (an ``nnfast._rules`` kernel name; None:
    gradients only) and ``n_threads`` (None: ``threads()``). Kept for the network's layout
    while the same."""
    n_threads = threads() if n_threads is None else n_threads
    key = (net.output, net._kind, net.slope, net.l2 if lambdas is None else tuple(lambdas),
           rule, n_threads)
    layout = net._layout
    plans = _plans.get(layout)
    if plans is None:
        plans = _plans[layout] = {}
    found = plans.get(key)
    if found is None:
        _blas.link()
        lam = np.array([net.l2] if lambdas is None else lambdas, np.float64)
        found = engine.Plan(layout.grid_arrays[0], net.output, net._kind, net.slope, lam, rule,
                            n_threads, net.dtype)
        if len(plans) > 8:
            plans.clear()
        plans[key] = found
    return found


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
    """How the engine computes δ_prev = δ Wᵀ: 1 a TT GEMM on δᵀ, 0 a TN GEMM, -1 by the CPU
    (``src/kernels/cpu.h``); None: the default (``_default_delta``)."""
    engine.set_delta_gemm(_default_delta() if choice is None else choice)


def _served(net, X, y):
    """Whether the engine takes (X, y) for ``net``: no batch norm, C-contiguous X, int64 labels
    for a softmax, C-contiguous (rows, outputs) targets of X's dtype otherwise."""
    if net._layout.grid_arrays is None or not X.flags.c_contiguous:
        return False
    if net.output == "softmax":
        return y.dtype == np.int64 and y.ndim == 1
    return y.ndim == 2 and y.dtype == X.dtype and y.flags.c_contiguous


def _one_batch(net, X, y, order):
    """J of one batch (X's rows, or its rows ``order``), gradients into the flat buffer."""
    layout = net._layout
    m = X.shape[0] if order is None else order.shape[0]
    out = np.empty(1)
    engine.run(plan(net), X, y, order, np.array([0, m], np.int64), 0, layout.flat_params,
               layout.flat_grads, [], None, out)
    return float(out[0])


class _Network(LayerByLayer):
    def run_batches(self, net, optimizer, X, y, order, bounds, start):
        """``training.run_epoch``'s batches ``start``, ``start + 1``, ... in one engine call with
        the optimizer fused, up to ``CALL_WORK``: the J of each batch it applied (stopping before
        a batch with a non-finite J); an empty list if it serves none now but may later (the
        optimizer has not yet taken its first, validating step; a non-finite J); None if it
        serves none of this epoch's."""
        if not EPOCH_KERNEL or not _served(net, X, y):
            return None
        rule = optimizer.rule
        if (rule.kernel not in engine.RULES
                or type(optimizer).step_flat is not _optim.Optimizer.step_flat):
            return None
        layout = net._layout
        params, grads = layout.flat_params, layout.flat_grads
        if (_backend.kernel("optim", rule.kernel, params.size)
                is not _backend.kernel_in("cython", "optim", rule.kernel)):
            return None         # the update runs on another backend: the loop calls it
        if order is not None and (order.dtype != np.int64 or not order.flags.c_contiguous):
            return None
        trusted = optimizer._trusted
        if (trusted is None or trusted[0] is not params or trusted[1] is not grads
                or not params.flags.writeable):
            return []           # step_flat validates the arrays on its first step
        # at most ~CALL_WORK multiply-adds per call: Ctrl-C is seen between calls
        # (batch_bounds: every batch has batch_size rows but the last, which may have fewer)
        n_w = layout.n_weights
        cap = max(1, CALL_WORK // max(1, 3 * (bounds[start + 1] - bounds[start]) * n_w))
        stop = min(len(bounds) - 1, start + cap)
        t = optimizer.t
        args = _rules.kernel_args_table(rule, optimizer.lr, t + 1, stop - start)
        losses = np.empty(stop - start)
        done = engine.run(plan(net, rule.kernel), X, y, order,
                          np.asarray(bounds[:stop + 1], np.int64), start, params, grads,
                          list(trusted[2]), args, losses)
        optimizer.t = t + done
        return losses[:done].tolist()

    def rows_objective(self, net, ws, X, y, rows):
        if _served(net, X, y) and rows.dtype == np.int64 and rows.flags.c_contiguous:
            return _one_batch(net, X, y, rows)
        return super().rows_objective(net, ws, X, y, rows)

    def objective(self, net, ws, X, y, training, update_stats, with_grads):
        if with_grads and _served(net, X, y):
            return _one_batch(net, X, y, None)
        return super().objective(net, ws, X, y, training, update_stats, with_grads)


def grid_step(template, lambdas):
    """``choose_lambda``'s batched grid on this backend: a callable (X, y, params, grads) -> Σ_k
    J_k of one batch for K = len(lambdas) models of ``template``'s network, side by side in
    ``params`` (all weights, model-major, then all biases: ``nnfast._grid._Compiled``). One
    thread: a sweep's parallelism is its ``n_jobs``."""
    grid_plan = plan(template, None, list(lambdas), 1)
    out = np.empty(1)

    def step(X, y, params, grads):
        engine.run(grid_plan, X, y, None, np.array([0, X.shape[0]], np.int64), 0, params, grads,
                   [], None, out)
        return float(out[0])
    return step


network = _Network(activations, batchnorm, dense, losses)
set_delta_gemm()
