"""Shared fixtures of the kernel tests: backends, dtypes with their tolerances, awkward arrays.

Every test of a backend compares it with the ``reference`` backend (plain NumPy, the oracle);
the reference itself is checked against the lecture's formulas in each test file.

- ``backend``: each of ("reference", "numba", "cython") in force through ``nnfast.use_backend``.
  A backend that is not usable here is skipped with the reason, unless the environment variable
  ``NNFAST_REQUIRE_BACKENDS=1`` is set (CI sets it): then the test fails, so a broken build
  cannot hide behind skips.
- ``dtype``: float32 and float64; ``TOL[dtype]`` holds the tolerances a backend must meet
  against the reference (a few ulp per element, more for long reductions: see ``close``).
- ``awkward_arrays(dtype, ...)``: the bottleneck-style list of inputs (empty, one element, odd
  lengths, large, strided, transposed, Fortran order, read-only, 0-d, extremes, inf/NaN), each
  with a label that failure messages quote.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import warnings
import zlib

import numpy as np
import pytest

import nnfast
from nnfast import _backend

BACKEND_NAMES = ("reference", "numba", "cython")
KERNEL_MODULES = _backend.KERNEL_MODULES
REQUIRE_BACKENDS = os.environ.get("NNFAST_REQUIRE_BACKENDS", "") == "1"

#: Large enough to cross any parallel threshold of the compiled kernels.
LARGE = 2 ** 17


class Tol:
    """Tolerances of one dtype against the reference: ``rtol``/``atol`` per element."""

    def __init__(self, rtol, atol):
        self.rtol, self.atol = rtol, atol


#: Backend vs reference. float32: the compiled kernels may use another exp/log/sqrt (a few ulp,
#: ulp = 1.2e-7) and another summation order; float64 likewise with ulp = 2.2e-16.
TOL = {
    np.dtype(np.float32): Tol(rtol=2e-5, atol=2e-6),
    np.dtype(np.float64): Tol(rtol=1e-11, atol=1e-13),
}


_UNUSABLE = {}


def require_backend(name, modules=KERNEL_MODULES):
    """Skip (or, with NNFAST_REQUIRE_BACKENDS=1, fail) unless backend ``name`` is usable for the
    kernel modules ``modules``."""
    key = (name, tuple(modules))
    if key not in _UNUSABLE:
        _UNUSABLE[key] = _backend.missing(name, modules)
    reason = _UNUSABLE[key]
    if reason is not None:
        if REQUIRE_BACKENDS:
            pytest.fail(f"NNFAST_REQUIRE_BACKENDS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """The name of the backend in force for the whole test. A test file may set
    ``BACKEND_MODULES`` to the kernel modules it exercises (default: all of them)."""
    require_backend(request.param, getattr(request.module, "BACKEND_MODULES", KERNEL_MODULES))
    with nnfast.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def reference(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` computed by the reference backend."""
    with nnfast.use_backend("reference"):
        return fn(*args, **kwargs)


@contextlib.contextmanager
def no_warnings():
    """Fail on any warning and on NumPy overflow, division by zero or invalid operation.

    Underflow is allowed: e^{-|z|} flushing to 0 is how the stable formulas stay finite.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            yield


def describe(label, x):
    """Shape and layout of an input, for failure messages."""
    if not isinstance(x, np.ndarray):
        return f"{label} (not an ndarray)"
    layout = ("C" if x.flags.c_contiguous else "") + ("F" if x.flags.f_contiguous else "")
    layout = layout or "strided"
    ro = "" if x.flags.writeable else ", read-only"
    return f"{label}: shape {x.shape}, strides {x.strides}, layout {layout}{ro}"


def close(actual, expected, dtype, what, scale=1.0, equal_nan=False, normwise=False):
    """Assert backend result ``actual`` equals the reference's ``expected`` within TOL[dtype].

    ``scale`` multiplies atol for results of long reductions (sums over n terms: pass ~sqrt(n)
    times the magnitude of the terms). ``normwise``: also allow an absolute error of rtol times
    the largest |expected| — for iterated updates, whose elements carry rounding errors of the
    size of the values they passed through (an element crossing 0 keeps an error of ~ulp(|θ|)).
    """
    dtype = np.dtype(dtype)
    tol = TOL[dtype]
    expected = np.asarray(expected, dtype=np.float64)
    atol = tol.atol * scale
    if normwise and expected.size:
        atol = max(atol, tol.rtol * float(np.max(np.abs(expected))))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected,
                               rtol=tol.rtol, atol=atol, equal_nan=equal_nan, err_msg=what)


def make_rng(*key):
    """A generator seeded from a tuple of strings/ints, so each case has its own stream."""
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in key])


def awkward_arrays(dtype, *, zero_d=True, nonfinite=True, scale=3.0, large=True):
    """(label, array) pairs that every elementwise kernel must handle like the reference.

    ``nonfinite``: include ±inf and NaN; ``zero_d``: include a 0-d array; ``scale``: the spread
    of the random values; ``large``: include the 2**17-element case.
    """
    dtype = np.dtype(dtype)
    rng = make_rng("awkward", dtype.name)

    def rand(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    cases = [
        ("empty", rand(0)),
        ("empty 2-D", rand(0, 5)),
        ("one element", rand(1)),
        ("odd length 1023", rand(1023)),
        ("odd length 4097", rand(4097)),
        ("non-contiguous slice [::3]", rand(3 * 1001)[::3]),
        ("negative stride [::-1]", rand(257)[::-1]),
        ("transposed 2-D", rand(29, 37).T),
        ("Fortran order", np.asfortranarray(rand(31, 17))),
        ("column slice of 2-D", rand(40, 30)[:, 3:20]),
        ("3-D", rand(3, 5, 7)),
        ("extremes ±1e4", np.array([-1e4, 1e4, -1e4, 0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0,
                                    30.0, -30.0, 710.0, -710.0], dtype=dtype)),
        ("zeros and signed zeros", np.array([0.0, -0.0] * 5, dtype=dtype)),
    ]
    if large:
        cases.append((f"large {LARGE}", rand(LARGE)))
    ro = rand(513)
    ro.flags.writeable = False
    cases.append(("read-only", ro))
    if zero_d:
        cases.append(("0-d", np.array(0.75, dtype=dtype)))
        cases.append(("0-d negative", np.array(-2.5, dtype=dtype)))
    if nonfinite:
        cases.append(("inf, -inf, nan", np.array([np.inf, -np.inf, np.nan, 1.0, -1.0, np.nan],
                                                  dtype=dtype)))
    return cases


def awkward_matrices(dtype, *, scale=3.0, large=True, min_cols=0, min_rows=0):
    """(label, 2-D array) pairs for row-wise kernels (softmax, losses)."""
    dtype = np.dtype(dtype)
    rng = make_rng("matrices", dtype.name)

    def rand(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    cases = [
        ("empty rows (0, 5)", rand(0, 5)),
        ("empty columns (4, 0)", rand(4, 0)),
        ("one element (1, 1)", rand(1, 1)),
        ("one row (1, 7)", rand(1, 7)),
        ("one column (9, 1)", rand(9, 1)),
        ("(1023, 3)", rand(1023, 3)),
        ("(3, 4097)", rand(3, 4097)),
        ("(17, 10)", rand(17, 10)),
        ("transposed (10, 17)", rand(17, 10).T),
        ("Fortran order (33, 12)", np.asfortranarray(rand(33, 12))),
        ("row slice [::2] (25, 6)", rand(50, 6)[::2]),
        ("column slice (20, 5)", rand(20, 11)[:, 2:7]),
        ("extremes ±1e4", np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4],
                                    [0.0, 0.0, 0.0]], dtype=dtype)),
    ]
    if large:
        cases.append((f"large ({LARGE // 16}, 16)", rand(LARGE // 16, 16)))
    ro = rand(64, 5)
    ro.flags.writeable = False
    cases.append(("read-only (64, 5)", ro))
    return [(label, x) for label, x in cases
            if x.shape[1] >= min_cols and x.shape[0] >= min_rows]


def update_grads(rng, shape, dtype):
    """Gradients for the optimizer tests: |g| >= 0.5 with random signs.

    Bounded away from 0 on purpose: with weight decay, ``g + wd·θ`` can cancel to ~1e-8, and
    then ``g'/(sqrt(S) + ε)`` is ill-conditioned, so a kernel that rounds ``g + wd·θ``
    differently (an FMA) legitimately moves θ by 1e-4 (seen at one element of 2**17 in float32).
    Zero and tiny gradients are tested separately, without weight decay.
    """
    g = 0.5 + np.abs(rng.standard_normal(shape))
    return (g * rng.choice([-1.0, 1.0], size=shape)).astype(dtype)


def central_difference(f, x, h=1e-6):
    """dJ/dx by two-sided differences of ``f()`` (which reads ``x``), x perturbed in place and
    restored: the finite-difference oracle of the backward tests."""
    g = np.empty_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gf[i] = (up - down) / (2 * h)
    return g


def run_python(*args, timeout=120, env=None):
    """``python *args`` in a fresh interpreter (``"-c", code`` or ``"-m", "nnfast", ...``), its
    output captured as text; ``env`` (default: this process's environment) as given."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_in_threads(work, n):
    """``work(i)`` for i in range(n), on n Python threads at once; the exceptions they raised
    (for the caller's assertion: an exception in a thread would otherwise go unseen)."""
    errors = []

    def guarded(i):
        try:
            work(i)
        except Exception as exc:       # noqa: BLE001  (returned to the caller)
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


def once_per_run(tmp_path_factory, name, make):
    """A folder that ``make(folder)`` filled once in this test run, shared by every pytest-xdist
    worker (a module- or session-scoped fixture runs once per worker): the first worker to ask
    makes it under a file lock, the others wait for it and read what it wrote. Only for folders
    that the tests then read or copy, never change. Without xdist: a folder of this session."""
    import fcntl

    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp()
    root = root.parent / f"shared-{uid}" if uid else root / "shared"
    root.mkdir(parents=True, exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():        # a worker that failed while making it: start again
                shutil.rmtree(folder)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder
