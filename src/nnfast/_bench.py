"""One table of "the same computation in each backend", and ``speedup_table`` over it.

``CASES`` maps a public kernel name to a :class:`Case`: ``setup(shape, dtype, rng)`` allocates
the inputs, the ``out=`` arrays and any optimizer state once and returns a zero-argument callable
that calls the public ``nnfast`` function on them — so only the call is timed. The backend is
whatever is in force when the callable runs (``nnfast.use_backend``). ``Case.shape(n)`` is the
shape ``speedup_table`` times for "n elements". The pytest-benchmark suites in ``bench/`` build
their benchmarks from this same table, at the shapes they list.

``speedup_table`` is nnfast's ``bn.bench()``: per kernel and size, the reference (NumPy) time
divided by each compiled backend's time, all measured in one process with ``timeit`` (minimum
over repeats).
"""
import importlib
import time
import timeit
from typing import Callable, NamedTuple

import numpy as np

import nnfast
from nnfast import _backend

DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)


class Case(NamedTuple):
    setup: Callable  # (shape, dtype, rng) -> zero-argument callable
    shape: Callable  # number of elements -> shape timed for it


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
    return Case(setup, _flat)


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


def _matrix(setup, cols, min_rows=1):
    return Case(setup, lambda n: _rows(n, cols, min_rows))


CASES = {
    "sigmoid": _elementwise("sigmoid", "z"),
    "sigmoid_grad": _elementwise("sigmoid_grad", "a"),
    "tanh": _elementwise("tanh", "z"),
    "tanh_grad": _elementwise("tanh_grad", "a"),
    "relu": _elementwise("relu", "z"),
    "relu_grad": _elementwise("relu_grad", "z"),
    "leaky_relu": _elementwise("leaky_relu", "z", 0.01),
    "leaky_relu_grad": _elementwise("leaky_relu_grad", "z", 0.01),
    "softmax": _matrix(_softmax, 10),
    "softmax_cross_entropy": _matrix(_softmax_cross_entropy, 10),
    "sigmoid_binary_cross_entropy": Case(_binary_cross_entropy, _flat),
    "mean_squared_error": Case(_mean_squared_error, _flat),
    "l2_penalty": Case(_l2_penalty, _flat),
    "dense_forward": Case(_dense_forward, _dense_shape),
    "dense_backward": Case(_dense_backward, _dense_shape),
    "batchnorm_forward": _matrix(_batchnorm_forward, 256, min_rows=2),
    "batchnorm_backward": _matrix(_batchnorm_backward, 256, min_rows=2),
    "sgd_update": Case(_sgd, _flat),
    "momentum_update": Case(_momentum, _flat),
    "rmsprop_update": Case(_rmsprop, _flat),
    "adam_update": Case(_adam, _flat),
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


def missing(backend, kernel):
    """Why ``backend`` cannot run the public function ``kernel``, or None if it can."""
    if backend not in nnfast.backends():
        return f"backend {backend!r} is not in nnfast.backends() = {nnfast.backends()}"
    for module, name in LOW_LEVEL[kernel]:
        package = _backend._PACKAGES[backend]
        try:
            mod = importlib.import_module(f"{package}.{module}")
        except ImportError as exc:
            return f"{package}.{module} does not import: {exc}"
        if not hasattr(mod, name):
            return f"{package}.{module} has no {name}"
    return None


def compiled_backends():
    """The available backends other than the reference, in nnfast's order."""
    return [b for b in nnfast.backends() if b != "reference"]


def time_call(fn, repeat=5, target=0.02):
    """Seconds per call of ``fn``: the minimum over ``repeat`` timeit runs of about ``target``
    seconds each (a first, untimed call warms up JIT compilation and caches)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(target / once))
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number


def _format_size(n):
    exponent = int(round(np.log10(n))) if n > 0 else 0
    return f"1e{exponent}" if 10 ** exponent == n else str(n)


def _format_seconds(t):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g}{unit}"
    return f"{t / 1e-9:.3g}ns"


def speedup_table(sizes=DEFAULT_SIZES, repeat=5, kernels=None, dtype="float32", target=0.02,
                  seed=0):
    """Time every kernel at every size in each available backend; returns ``(rows, text)``.

    ``rows`` is a list of dicts ``{"kernel", "size", "shape", "dtype", "times", "speedups"}``
    with ``times[backend]`` in seconds (None if that backend lacks the kernel) and
    ``speedups[backend] = times["reference"] / times[backend]``. ``text`` is the formatted
    table: NumPy (reference) time ÷ backend time, one column block per compiled backend, and
    the reference's own time per call for scale. ``kernels`` limits the table to those names.
    """
    dtype = np.dtype(dtype)
    names = list(CASES) if kernels is None else list(kernels)
    unknown = [k for k in names if k not in CASES]
    if unknown:
        raise ValueError(f"unknown kernels {unknown}; choose from {list(CASES)}")
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive element counts, got {sizes}")
    backends = ["reference"] + compiled_backends()
    rows = []
    for name in names:
        case = CASES[name]
        for n in sizes:
            shape = case.shape(n)
            fn = case.setup(shape, dtype, np.random.default_rng(seed))
            times = {}
            for backend in backends:
                if missing(backend, name):
                    times[backend] = None
                    continue
                with nnfast.use_backend(backend):
                    times[backend] = time_call(fn, repeat, target)
            ref = times["reference"]
            speedups = {b: (ref / t if t else None) for b, t in times.items() if b != "reference"}
            rows.append({"kernel": name, "size": n, "shape": shape, "dtype": dtype.name,
                         "times": times, "speedups": speedups})
    return rows, format_table(rows, sizes, backends[1:], dtype.name)


def format_table(rows, sizes, compiled, dtype):
    """The ``bn.bench()``-style text of ``speedup_table``'s rows."""
    labels = [_format_size(n) for n in sizes]
    cell = max(7, *(len(label) + 1 for label in labels))
    name_width = max([len(r["kernel"]) for r in rows] + [6])
    lines = [
        "nnfast performance benchmark",
        f"    nnfast {nnfast.__version__}; NumPy {np.__version__}; dtype {dtype}; "
        f"backends {', '.join(nnfast.backends())}",
        "    Speed is NumPy (reference backend) time divided by the backend's time",
        "    (> 1 means faster than NumPy); '-' means the backend lacks the kernel.",
        "    Sizes are element counts; 'reference' columns give NumPy's time per call.",
        "",
    ]
    blocks = compiled + ["reference"]
    header1 = " " * name_width
    header2 = " " * name_width
    for b in blocks:
        width = cell * len(sizes)
        header1 += "  " + b.center(width)
        header2 += "  " + "".join(label.rjust(cell) for label in labels)
    lines += [header1.rstrip(), header2]
    by_key = {(r["kernel"], r["size"]): r for r in rows}
    for name in dict.fromkeys(r["kernel"] for r in rows):
        line = name.ljust(name_width)
        for b in blocks:
            line += "  "
            for n in sizes:
                row = by_key[(name, n)]
                if b == "reference":
                    t = row["times"]["reference"]
                    text = _format_seconds(t) if t is not None else "-"
                else:
                    s = row["speedups"].get(b)
                    text = f"{s:.2f}" if s is not None else "-"
                line += text.rjust(cell)
        lines.append(line)
    return "\n".join(lines)
