"""One table of "the same computation in each backend", and the ``nnfast bench`` measurements.

``CASES`` maps a public kernel name to a :class:`Case`: ``setup(shape, dtype, rng)`` allocates
the inputs, the ``out=`` arrays and any optimizer state once and returns a zero-argument callable
that calls the public ``nnfast`` function on them — so only the call is timed. The backend is
whatever is in force when the callable runs (``nnfast.use_backend``). ``Case.shape(n)`` is the
shape timed for "n elements"; ``Case.work(shape)`` the least memory traffic or the GEMM flops of
one call, so that a time becomes a rate comparable with the machine's limits. The
pytest-benchmark suites in ``bench/`` build their benchmarks from this same table.

``nnfast bench`` (``cli.py``) runs, in one process: ``machine_context`` (CPU, cores, BLAS,
single- and all-core GEMM GFLOP/s, copy GB/s), then ``kernel_rows`` and ``step_rows``, which
yield each measurement as soon as it is taken, with the median and IQR of its repeats, so that
a noisy run shows as noisy. A measurement whose spread (IQR ÷ median) exceeds 10% is taken once
more (``remeasured``); a row still noisy, or whose baseline is, carries ``mark`` "noisy", and a
step faster than its own GEMMs "implausible" (the rules: ``nnfast._tables``).
"""
import math
from typing import Callable, NamedTuple

import numpy as np

import nnfast
from nnfast import _backend
from nnfast._tables import (  # noqa: F401  (re-exported: cli, report, bench/)
    KERNEL_HEADER, NOISY_SPREAD, format_context, format_kernel_row, format_load, format_seconds,
    format_size, STEP_NET, format_step_row, kernel_header, mark, sig, spread, step_header)
from nnfast._machine import (  # noqa: F401  (re-exported: the bench/ suites use them)
    copy_bandwidth, gemm_gflops, load_average, load_warning, machine_context, summary,
    time_calls)

DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)


class Case(NamedTuple):
    setup: Callable  # (shape, dtype, rng) -> zero-argument callable
    shape: Callable  # number of elements -> shape timed for it
    #: (shape) -> ("bytes", array elements each call must at least read or write once) for a
    #: memory-bound kernel, or ("flops", floating-point operations) for a GEMM-bound one.
    work: Callable


def _moves(arrays):
    """Work of a memory-bound kernel that reads and writes ``arrays`` arrays of its shape."""
    return lambda shape: ("bytes", arrays * math.prod(shape))


def _gemm_flops(gemms):
    """Work of a dense kernel: ``gemms`` products of (m, k) by (k, n), 2·m·k·n flops each."""
    return lambda shape: ("flops", gemms * 2 * math.prod(shape))


def _rows(n, cols, min_rows=1):
    return (max(n // cols, min_rows), cols)


def _flat(n):
    return (n,)


def _elementwise(name, source, *args):
    """``name(x, *args, out=out)``; ``source`` is where its input comes from: "z" (a
    pre-activation, N(0, 2²)) or "a" (an activation value in (0, 1))."""
    def setup(shape, dtype, rng):
        fn = getattr(nnfast, name)
        if source == "z":
            x = rng.normal(0.0, 2.0, shape).astype(dtype)
        else:
            x = rng.uniform(0.01, 0.99, shape).astype(dtype)
        out = np.empty_like(x)
        return lambda: fn(x, *args, out=out)
    return Case(setup, _flat, _moves(2))


def _softmax(shape, dtype, rng):
    x = rng.normal(0.0, 3.0, shape).astype(dtype)
    out = np.empty_like(x)
    return lambda: nnfast.softmax(x, out=out)


def _softmax_cross_entropy(shape, dtype, rng):
    logits = rng.normal(0.0, 3.0, shape).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    out = np.empty_like(logits)
    return lambda: nnfast.softmax_cross_entropy(logits, labels, out=out)


def _binary_cross_entropy(shape, dtype, rng):
    logits = rng.normal(0.0, 3.0, shape).astype(dtype)
    y = (rng.random(shape) < 0.5).astype(dtype)
    out = np.empty_like(logits)
    return lambda: nnfast.sigmoid_binary_cross_entropy(logits, y, out=out)


def _mean_squared_error(shape, dtype, rng):
    pred = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    out = np.empty_like(pred)
    return lambda: nnfast.mean_squared_error(pred, y, out=out)


def _l2_penalty(shape, dtype, rng):
    w = rng.normal(size=shape).astype(dtype)
    return lambda: nnfast.l2_penalty(w, 0.01, 1000)


def _dense_shape(n):
    """(m, fan_in, fan_out) with n = m·fan_out output elements, 256 units in and out."""
    return (max(n // 256, 1), 256, 256)


def _dense_forward(shape, dtype, rng):
    m, k, n = shape
    a = rng.normal(size=(m, k)).astype(dtype)
    W = (rng.normal(size=(k, n)) * np.sqrt(2.0 / k)).astype(dtype)
    b = rng.normal(size=n).astype(dtype)
    z = np.empty((m, n), dtype)
    out = np.empty((m, n), dtype)
    return lambda: nnfast.dense_forward(a, W, b, "relu", out=out, z_out=z)


def _dense_backward(shape, dtype, rng):
    m, k, n = shape
    delta = rng.normal(size=(m, n)).astype(dtype)
    z_prev = rng.normal(size=(m, k)).astype(dtype)
    a_prev = np.maximum(z_prev, 0)
    W = (rng.normal(size=(k, n)) * np.sqrt(2.0 / k)).astype(dtype)
    dW = np.empty((k, n), dtype)
    db = np.empty(n, dtype)
    dprev = np.empty((m, k), dtype)
    return lambda: nnfast.dense_backward(delta, a_prev, W, "relu", z_prev=z_prev, dW_out=dW,
                                         db_out=db, dprev_out=dprev)


def _batchnorm_state(shape, dtype, rng):
    z = rng.normal(1.0, 2.0, shape).astype(dtype)
    n = shape[1]
    gamma = rng.uniform(0.5, 1.5, n).astype(dtype)
    beta = rng.normal(size=n).astype(dtype)
    return z, gamma, beta, np.zeros(n, dtype), np.ones(n, dtype)


def _batchnorm_forward(shape, dtype, rng):
    z, gamma, beta, mean, var = _batchnorm_state(shape, dtype, rng)
    out = np.empty_like(z)
    return lambda: nnfast.batchnorm_forward(z, gamma, beta, mean, var, out=out)


def _batchnorm_backward(shape, dtype, rng):
    z, gamma, beta, mean, var = _batchnorm_state(shape, dtype, rng)
    with nnfast.use_backend("reference"):  # the cache is data; any backend makes the same
        _, cache = nnfast.batchnorm_forward(z, gamma, beta, mean, var)
    dout = rng.normal(size=shape).astype(dtype)
    out = np.empty_like(dout)
    return lambda: nnfast.batchnorm_backward(dout, cache, out=out)


def optimizer_arrays(shape, dtype, rng, n_states):
    """param, grad and ``n_states`` state arrays (zeros, as on a first step) for an update."""
    param = rng.normal(size=shape).astype(dtype)
    grad = (rng.normal(size=shape) * 1e-2).astype(dtype)
    return param, grad, [np.zeros(shape, dtype) for _ in range(n_states)]


def _sgd(shape, dtype, rng):
    p, g, _ = optimizer_arrays(shape, dtype, rng, 0)
    return lambda: nnfast.sgd_update(p, g, 1e-3)


def _momentum(shape, dtype, rng):
    p, g, (vel,) = optimizer_arrays(shape, dtype, rng, 1)
    return lambda: nnfast.momentum_update(p, g, vel, 1e-3, 0.9)


def _rmsprop(shape, dtype, rng):
    p, g, (sq,) = optimizer_arrays(shape, dtype, rng, 1)
    return lambda: nnfast.rmsprop_update(p, g, sq, 1e-3, 0.999, 1e-8)


def _adam(shape, dtype, rng):
    p, g, (m, v) = optimizer_arrays(shape, dtype, rng, 2)
    # step=10: the bias corrections are generic numbers, not 1 - β (step 1).
    return lambda: nnfast.adam_update(p, g, m, v, 10, 1e-3)


def _matrix(setup, cols, arrays, min_rows=1):
    return Case(setup, lambda n: _rows(n, cols, min_rows), _moves(arrays))


CASES = {
    "sigmoid": _elementwise("sigmoid", "z"),
    "sigmoid_grad": _elementwise("sigmoid_grad", "a"),
    "tanh": _elementwise("tanh", "z"),
    "tanh_grad": _elementwise("tanh_grad", "a"),
    "relu": _elementwise("relu", "z"),
    "relu_grad": _elementwise("relu_grad", "z"),
    "leaky_relu": _elementwise("leaky_relu", "z", 0.01),
    "leaky_relu_grad": _elementwise("leaky_relu_grad", "z", 0.01),
    "softmax": _matrix(_softmax, 10, 2),
    "softmax_cross_entropy": _matrix(_softmax_cross_entropy, 10, 2),
    "sigmoid_binary_cross_entropy": Case(_binary_cross_entropy, _flat, _moves(3)),
    "mean_squared_error": Case(_mean_squared_error, _flat, _moves(3)),
    "l2_penalty": Case(_l2_penalty, _flat, _moves(1)),
    "dense_forward": Case(_dense_forward, _dense_shape, _gemm_flops(1)),
    "dense_backward": Case(_dense_backward, _dense_shape, _gemm_flops(2)),
    "batchnorm_forward": _matrix(_batchnorm_forward, 256, 2, min_rows=2),
    "batchnorm_backward": _matrix(_batchnorm_backward, 256, 3, min_rows=2),
    "sgd_update": Case(_sgd, _flat, _moves(3)),
    "momentum_update": Case(_momentum, _flat, _moves(5)),
    "rmsprop_update": Case(_rmsprop, _flat, _moves(5)),
    "adam_update": Case(_adam, _flat, _moves(7)),
}


#: The low-level kernels (module, name) each public function dispatches to.
LOW_LEVEL = {name: [("activations", name)] for name in list(CASES)[:9]}
LOW_LEVEL.update({
    "softmax_cross_entropy": [("losses", "softmax_cross_entropy")],
    "sigmoid_binary_cross_entropy": [("losses", "sigmoid_binary_cross_entropy")],
    "mean_squared_error": [("losses", "mean_squared_error")],
    "l2_penalty": [("losses", "sum_squares_scaled")],
    "dense_forward": [("dense", "dense_forward")],
    "dense_backward": [("dense", "dense_backward")],
    "batchnorm_forward": [("batchnorm", "batchnorm_forward_train")],
    "batchnorm_backward": [("batchnorm", "batchnorm_backward")],
    "sgd_update": [("optim", "sgd_update")],
    "momentum_update": [("optim", "momentum_update")],
    "rmsprop_update": [("optim", "rmsprop_update")],
    "adam_update": [("optim", "adam_update")],
})


def numpy_setup(kernel, shape, dtype, rng):
    """``CASES[kernel]``'s computation as plain NumPy: a zero-argument callable running the
    reference backend's kernel (``nnfast._reference``: the NumPy ufuncs and GEMMs, writing into
    the ``out=`` arrays) directly on the arrays the public function passes it — the NumPy
    expression a user's own code runs, without nnfast's checks and dispatch. ``bench/`` times
    it as the "numpy" baseline, so that a group's ratios say what the public call gains over
    the code it replaces (issue 20)."""
    (module, name), = LOW_LEVEL[kernel]
    call = CASES[kernel].setup(shape, dtype, rng)
    key = ("reference", module, name)
    fn = _backend.kernel_in(*key)
    seen = []

    def record(*args, **kwargs):
        seen.append((args, kwargs))
        return fn(*args, **kwargs)
    _backend._cache[key] = record
    try:
        with nnfast.use_backend("reference"):
            call()
    finally:
        _backend._cache[key] = fn
    (args, kwargs), = seen
    return lambda: fn(*args, **kwargs)


def missing(backend, kernel):
    """Why ``backend`` cannot run the public function ``kernel``, or None if it can."""
    return _backend.missing(backend, LOW_LEVEL[kernel])


def compiled_backends():
    """The available backends other than the reference, in nnfast's order."""
    return [b for b in nnfast.backends() if b != "reference"]


# --- kernels and the training step ----------------------------------------------------------

def _measured(fn, repeat, target, again=lambda row: False):
    """``summary`` of ``time_calls(fn)`` with ``times`` and ``spread``; taken a second time
    (``remeasured``, the first ``times`` kept as ``first_times``) when the first is noisy or
    ``again(row)`` says so — one scheduler stall does not decide a cell."""
    def take():
        times = time_calls(fn, repeat, target)
        row = {**summary(times), "times": times}
        row["spread"] = spread(row["median"], row["iqr"])
        return row

    row = take()
    if row["spread"] > NOISY_SPREAD or again(row):
        first = row["times"]
        row = {**take(), "first_times": first}
    row["remeasured"] = "first_times" in row
    return row


def kernel_rows(kernels, sizes, backends, dtype="float32", repeat=5, target=0.005, context=None,
                seed=0):
    """Time each kernel × size × backend; yields one row (a dict) per measurement, as soon as
    it is measured, the reference first in each (kernel, size), so every compiled backend's
    row carries its ``speedup`` (reference median ÷ its median). With ``context`` (from
    ``machine_context``), rows also carry ``rate`` (GB/s or GFLOP/s) and ``of_limit`` (the
    fraction of the measured copy bandwidth or all-core GEMM rate)."""
    dtype = np.dtype(dtype)
    order = ["reference"] + [b for b in backends if b != "reference"]
    for name in kernels:
        case = CASES[name]
        for n in sizes:
            shape = case.shape(n)
            fn = case.setup(shape, dtype, np.random.default_rng(seed))
            kind, amount = case.work(shape)
            ref = ref_spread = None
            for backend in order:
                row = {"kernel": name, "size": n, "shape": list(shape), "dtype": dtype.name,
                       "backend": backend}
                reason = missing(backend, name)
                if reason:
                    row["skipped"] = reason
                    yield row
                    continue
                with nnfast.use_backend(backend):
                    row.update(_measured(fn, repeat, target))
                if backend == "reference":
                    ref, ref_spread = row["median"], row["spread"]
                row["speedup"] = ref / row["median"] if ref else None
                row["mark"] = mark(row["spread"], (ref_spread,))
                if kind == "bytes":
                    row["rate"] = amount * dtype.itemsize / row["median"] / 1e9
                    row["unit"] = "GB/s"
                else:
                    row["rate"] = amount / row["median"] / 1e9
                    row["unit"] = "GFLOP/s"
                if context:
                    limit = context["copy_gbps"] if kind == "bytes" else context["gemm_gflops"]
                    row["of_limit"] = row["rate"] / limit
                yield row


def train_step(backend, sizes, m, dtype="float32"):
    """A zero-argument callable: one ``MLP.train_step`` (ReLU hidden, softmax, Adam) in
    ``backend`` on a fixed random batch of ``m`` rows."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], m)
    model = nnfast.MLP(sizes, hidden="relu", output="softmax", dtype=dtype, seed=0)
    opt = nnfast.optim.Adam(lr=1e-3)

    def step():
        with nnfast.use_backend(backend):
            model.train_step(X, y, opt)
    return step


def step_gemms(sizes, m, dtype="float32"):
    """A zero-argument callable running a training step's matrix products alone — z_l = a W_l
    (forward), dW_l = aᵀ δ_l and δ_{l-1} = δ_l W_lᵀ (backward) — into preallocated arrays:
    the floor that a whole step can approach."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((k, n)).astype(dtype) for k, n in zip(sizes, sizes[1:])]
    acts = [rng.standard_normal((m, k)).astype(dtype) for k in sizes]
    dWs = [np.empty_like(W) for W in Ws]

    def step():
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W, out=acts[i + 1])
        for i in range(len(Ws) - 1, -1, -1):
            np.matmul(acts[i].T, acts[i + 1], out=dWs[i])
            if i:
                np.matmul(acts[i + 1], Ws[i].T, out=acts[i])
    return step


def step_rows(backends, net=STEP_NET, dtype="float32", repeat=5, target=0.02):
    """Yields one row per implementation of a whole training step: ``gemms`` (its matrix
    products alone) first, then ``reference``, ``auto`` and each backend; every row carries
    ``of_gemms`` (its median ÷ the GEMMs' median: 1 would be a free step around the GEMMs)
    and ``speedup`` (the reference's median ÷ its median). A step timed faster than its GEMMs
    is measured again; if it still is, its ``mark`` is "implausible"."""
    sizes, m = net
    label = "-".join(map(str, sizes)) + f"-b{m}"
    impls = ["gemms", "reference", "auto"] + [b for b in backends if b != "reference"]
    gemms = ref = None
    bases = []           # the spreads of the GEMMs' row and the reference's, once measured
    for impl in impls:
        fn = step_gemms(sizes, m, dtype) if impl == "gemms" else train_step(impl, sizes, m, dtype)
        for _ in range(2):   # workspaces, optimizer state, JIT compilation
            fn()
        row = {"kernel": f"step-{label}", "dtype": np.dtype(dtype).name, "backend": impl,
               **_measured(fn, repeat, target,
                           again=lambda r: gemms is not None and r["median"] < gemms)}
        gemms = gemms or row["median"]
        if impl == "reference":
            ref = row["median"]
        row["of_gemms"] = row["median"] / gemms
        row["speedup"] = ref / row["median"] if ref else None
        row["mark"] = mark(row["spread"], bases,
                           row["of_gemms"] if impl != "gemms" else None)
        if impl in ("gemms", "reference"):
            bases.append(row["spread"])
        yield row
