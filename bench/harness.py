"""Helpers of the benchmark suites: sizes, group labels and ``run``/``run_case``, which time one
implementation in its group (see ``bench/conftest.py`` for the conventions, and README.md).

``bench`` is a package so that its modules do not collide with ``tests/conftest.py`` (both
directories are collected in one run); import these with ``from .harness import ...``.
"""
import numpy as np
import pytest

import nnfast
from nnfast import _backend, _bench

BACKENDS = ("reference", "numba", "cython")
DTYPES = ("float32", "float64")
SIZES = (10**3, 10**4, 10**5, 10**6)
SIZES_TO_1E7 = SIZES + (10**7,)
#: Largest element count run by the untimed (``--benchmark-disable``) pass.
UNTIMED_MAX = 10**5
#: pedantic rounds for big inputs: enough for a stable minimum, short enough for 1e7.
ROUNDS = {10**6: 15, 10**7: 5}


def label(size):
    """1000 -> "1e3"; a shape (1024, 10) -> "1024x10"."""
    if isinstance(size, tuple):
        return "x".join(str(d) for d in size)
    return _bench.format_size(size)


def run(benchmark, impl, group, elements, make, kernel=None):
    """Time ``make()`` (a zero-argument callable, built here so that skipped benchmarks allocate
    nothing) as implementation ``impl`` in ``group``.

    ``impl`` is a backend name — then it runs under ``nnfast.use_backend(impl)``, and is skipped
    if it is unavailable or lacks ``kernel`` (a public function name of ``nnfast._bench``) — or
    the name of an outside baseline. ``kernel`` may be a tuple of names. ``elements`` sizes the
    input: big inputs get fixed ``pedantic`` rounds instead of pytest-benchmark's calibration.
    """
    benchmark.group = group
    benchmark.extra_info["backend"] = impl
    if benchmark.disabled and elements > UNTIMED_MAX:
        pytest.skip(f"{elements} elements: run only when timing (--benchmark-enable)")
    if impl in BACKENDS:
        kernels = (kernel,) if isinstance(kernel, str) else tuple(kernel or ())
        reasons = [_bench.missing(impl, k) for k in kernels] + [_backend.missing(impl, ())]
        reason = next((r for r in reasons if r), None)
        if reason:
            pytest.skip(reason)
        fn = make()
        with nnfast.use_backend(impl):
            return _time(benchmark, fn, elements)
    return _time(benchmark, make(), elements)


def run_case(benchmark, backend, kernel, dtype, shape, group_kernel=None, size_label=None):
    """Time the ``nnfast._bench.CASES[kernel]`` computation at ``shape`` in ``backend``, in group
    ``f"{group_kernel or kernel}-{dtype}-{size_label or label(...)}"``. ``backend="numpy"``:
    the same computation as plain NumPy (``nnfast._bench.numpy_setup``), the group's baseline."""
    if len(shape) == 3:  # dense (m, k, n): a, W and z
        m, k, n = shape
        elements = m * k + k * n + m * n
    else:
        elements = int(np.prod(shape))
    size = size_label or label(shape if len(shape) > 1 else elements)
    group = f"{group_kernel or kernel}-{dtype}-{size}"

    def make():
        setup = _bench.numpy_setup if backend == "numpy" else _bench.CASES[kernel].setup
        if backend == "numpy":
            return setup(kernel, shape, np.dtype(dtype), np.random.default_rng(0))
        return setup(shape, np.dtype(dtype), np.random.default_rng(0))
    return run(benchmark, backend, group, elements, make, kernel)


def _time(benchmark, fn, elements):
    if benchmark.disabled:
        return benchmark(fn)
    fn()  # warm-up outside the timing: JIT compilation, first touch of the outputs
    rounds = next((r for size, r in sorted(ROUNDS.items(), reverse=True) if elements >= size),
                  None)
    if rounds is not None:
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    return benchmark(fn)
