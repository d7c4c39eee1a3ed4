"""``MLP.check_gradients``: the seed's gradient check of a network, in float64.

Two loss evaluations per parameter make it "very slow" (the lecture). Each evaluation reuses one
workspace (no allocation); where the backend's network pass releases the GIL
(``threaded_objective``: Numba's whole-network kernel), the flat parameter buffer is split over
``n_jobs`` threads, each perturbing its own copy of the model.
"""
import numpy as np

from .. import _backend
from .._validate import integer, real
from ..gradcheck import compare, gradcheck
from .inputs import check_training_batch, check_X, check_y


def check_gradients(net, X, y, eps, n_jobs):
    """``MLP.check_gradients`` (documented there)."""
    model = net if net.dtype == np.float64 else net.copy(np.float64)
    X = check_X(model, X)
    y = check_y(model, y, X.shape[0])
    check_training_batch(model, X.shape[0])
    eps = real(eps, "eps", 0.0, low_open=True)
    n_jobs = _backend.get_num_threads() if n_jobs is None else integer(n_jobs, "n_jobs", low=1)
    network = _backend.network_step()
    ws = model._workspace(X.shape[0])
    network.objective(model, ws, X, y, training=True, update_stats=False, with_grads=True)
    grads = [g.copy() for g in model.grads]
    if (network.threaded_objective(model, y) is None or n_jobs == 1
            or model.flat_params.size < 2 * n_jobs):
        return gradcheck(lambda: network.objective(model, ws, X, y, training=True,
                                                   update_stats=False, with_grads=False),
                         model.params, grads, eps)
    return _threaded(model, network, X, y, grads, eps, n_jobs)


def numeric_gradient(objective, ws, X, flat, lo, hi, eps, out):
    """The seed's dθ_approx_j = (J(θ + ε e_j) - J(θ - ε e_j)) / 2ε into ``out[j]`` for j in
    [lo, hi) of the flat parameter buffer ``flat``; ``objective(ws, X)`` evaluates J. Each
    element is restored bit for bit.

    A Python loop over compiled calls: compiled, it took the step kernel as an argument, and
    Numba's cache pickles such a dispatcher-typed signature by a weak reference that does not
    survive a round trip — a process that loaded another process's entry and then saved its own
    died with "ReferenceError: underlying object has vanished" (issue 6). Each call releases
    the GIL, so threads still run the evaluations side by side."""
    for j in range(lo, hi):
        old = flat[j]
        flat[j] = old + eps
        j_plus = objective(ws, X)
        flat[j] = old - eps
        j_minus = objective(ws, X)
        flat[j] = old
        out[j] = (j_plus - j_minus) / (2.0 * eps)


def _threaded(model, network, X, y, grads, eps, n_jobs):
    """The numerical gradients, ``n_jobs`` threads over slices of the flat parameter buffer,
    each with its own copy of the model; BLAS runs one thread per worker so the workers do not
    oversubscribe."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    n = model.flat_params.size
    numeric = np.empty(n, np.float64)
    bounds = [n * k // n_jobs for k in range(n_jobs + 1)]
    copies = [model.copy() for _ in range(n_jobs)]

    def run(k):
        c = copies[k]
        ws = c._workspace(X.shape[0])
        with _backend.serial_kernels():
            numeric_gradient(network.threaded_objective(c, y), ws, X, c.flat_params, bounds[k],
                             bounds[k + 1], eps, numeric)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(run, range(n_jobs)))
    layout = model._layout
    numerics = [numeric[o:o + p.size] for o, p in zip(layout.offsets, layout.params)]
    return compare(numerics, [g.reshape(-1) for g in grads], [p.shape for p in layout.params])
