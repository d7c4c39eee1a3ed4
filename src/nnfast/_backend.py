"""Backend registry and dispatch.

A kernel is looked up by (module, name), e.g. ``("optim", "adam_update")``, in the chosen
backend: ``reference`` (``nnfast._reference``), ``numba`` (``nnfast._numba``) or ``cython``
(the compiled extension modules in ``nnfast._cython``). Every backend package has the same
modules with the same function names and arguments; ``nnfast._reference`` documents them.

The default, ``"auto"``, picks per kernel and size from ``AUTO_TABLE`` below, which records
what ``bench/`` measured on this machine class.
"""
import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import sys

from ._constants import PARALLEL_MIN

BACKENDS = ("reference", "numba", "cython")
_PACKAGES = {"reference": "nnfast._reference", "numba": "nnfast._numba", "cython": "nnfast._cython"}

#: (module, kernel) -> list of (max_elements, backend); the first row whose max_elements is
#: >= the call's size (or None = any size) wins; a kernel without a row, or whose backend is not
#: available, takes the first available backend in FALLBACK.
#: The rows are measured by `nnfast bench` (figures: bench/README.md, "The dispatch table").
AUTO_TABLE = {
    # Below these sizes the Cython kernels, reached through their checked entries
    # (nnfast._cython.entry, ~0.2 µs a call), beat Numba's dispatch (~1.7 µs) and kernel.
    ("activations", "sigmoid"): [(PARALLEL_MIN - 1, "cython")],
    ("activations", "sigmoid_grad"): [(PARALLEL_MIN - 1, "cython")],
    # tanh: Cython's (AVX-512 clone) beats NumPy's in float64 at every size and ties it in float32
    # at 1e3; from 1.6e4 NumPy's own float32 tanh is faster (1e5: 0.70x), so the reference's.
    ("activations", "tanh"): [(16383, "cython"), (PARALLEL_MIN - 1, "reference"),
                              (None, "numba")],
    ("activations", "tanh_grad"): [(PARALLEL_MIN - 1, "cython")],
    ("activations", "relu"): [(PARALLEL_MIN - 1, "cython")],
    ("activations", "relu_grad"): [(PARALLEL_MIN - 1, "cython")],
    ("activations", "leaky_relu"): [(PARALLEL_MIN - 1, "cython")],
    ("activations", "leaky_relu_grad"): [(PARALLEL_MIN - 1, "cython")],
    # The GEMMs are BLAS's in both compiled backends (level at every size); Cython's entry is
    # 3-7 µs cheaper a call, and loads no Numba (the first call: issue 20).
    ("dense", "dense_forward"): [(None, "cython")],
    ("dense", "dense_backward"): [(None, "cython")],
    ("optim", "sgd_update"): [(PARALLEL_MIN - 1, "cython")],
    ("optim", "momentum_update"): [(PARALLEL_MIN - 1, "cython")],
    ("optim", "rmsprop_update"): [(PARALLEL_MIN - 1, "cython")],
    ("optim", "adam_update"): [(PARALLEL_MIN - 1, "cython")],
    # Small arrays on Cython (its checked entry; 6.8x NumPy at (64, 10) float32, Numba 2.6x); its
    # exp loop is slower on wide rows ((100, 1000) float32: 202 µs, Numba 145, NumPy 126).
    ("activations", "softmax"): [(2047, "cython")],
    ("losses", "softmax_cross_entropy"): [(PARALLEL_MIN - 1, "cython"), (None, "numba")],
    ("losses", "softmax_cross_entropy_probs"): [(None, "cython")],
}
FALLBACK = ("numba", "cython", "reference")

#: What "auto" runs a network's passes on (``MLP``: forward, loss, backpropagation, the optimizer
#: update, gradient checks): the first available of these. The Cython kernels are compiled ahead
#: of time, so a first training step costs no compilation (Numba's costs 0.4-10 s, issue 6).
#: ``set_backend("numba")`` takes the Numba whole-step kernel. Measured by bench/bench_step.py
#: (figures: bench/README.md, "The dispatch table").
NETWORK_ORDER = ("cython", "numba", "reference")

_available = {}
_current = None
_override = contextvars.ContextVar("nnfast_backend", default=None)
_cache = {}
_num_threads = None


#: The kernel modules every backend package has (and the Numba one also ``step``).
KERNEL_MODULES = ("activations", "losses", "dense", "batchnorm", "optim")


def _probe(name):
    """A backend is available when every one of its kernel modules imports."""
    if name == "reference":
        return True
    if name == "numba" and importlib.util.find_spec("numba") is None:
        return False
    try:
        for module in KERNEL_MODULES:
            importlib.import_module(f"{_PACKAGES[name]}.{module}")
    except ImportError:
        return False
    return True


def missing(name, kernels=KERNEL_MODULES):
    """Why the backend ``name`` cannot run ``kernels`` here, or None if it can: the one check of
    the tests' and the benchmarks' skips. ``kernels``: module names, or (module, function)
    pairs whose function must exist too."""
    if name not in backends():
        return f"backend {name!r} is not in nnfast.backends() = {backends()}"
    package = _PACKAGES[name]
    for kernel in kernels:
        module, function = (kernel, None) if isinstance(kernel, str) else kernel
        try:
            mod = importlib.import_module(f"{package}.{module}")
        except ImportError as exc:
            return (f"nnfast.backends() lists {name!r}, but {package}.{module} does not import "
                    f"({type(exc).__name__}: {exc})")
        if function is not None and not hasattr(mod, function):
            return f"{package}.{module} has no {function}"
    return None


def available(name):
    """Whether the backend ``name`` is usable here (probed once, on first ask: probing numba
    imports it, ~0.2 s, so only what is asked for is probed)."""
    ok = _available.get(name)
    if ok is None:
        ok = _available[name] = _probe(name)
    return ok


def backends():
    """Names of the backends usable here, e.g. ``['reference', 'numba', 'cython']``."""
    return [b for b in BACKENDS if available(b)]


def network_backend():
    """The backend a network's passes run on: the one in force, or for "auto" the first
    available of ``NETWORK_ORDER``."""
    backend = _override.get() or _current or get_backend()
    if backend == "auto":
        backend = next(b for b in NETWORK_ORDER if available(b))
    return backend


def network_step():
    """The whole-network pass (the ``network`` of a backend's ``step`` module, contract in
    ``nnfast._reference.step``) of the backend a network runs on: ``network_backend()``."""
    return kernel_in(network_backend(), "step", "network")


@contextlib.contextmanager
def serial_kernels(active=True):
    """Run nnfast's elementwise kernels on one thread during training.

    A training step's time is mostly GEMMs (run on one BLAS thread too, see ``_blas``); a kernel
    that takes threads of its own (the Numba backend does from 2**17 elements) leaves OpenMP
    threads spinning that slow the next GEMM down. Measured, 784-512-256-10, batch 128, Adam:
    2.0-2.2 ms per step with one kernel thread against 4.1 ms with two (bench_step.py).
    Numba's thread count is per calling thread, so this does not touch other threads.
    ``active=False`` skips the switch (get + set + set costs ~4.5 µs), for steps whose arrays
    are all below the kernels' parallel threshold anyway. (The Cython kernels run on one thread
    unless ``set_num_threads`` asked for more: nothing to switch.)
    """
    if not active or _PACKAGES["numba"] not in sys.modules:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def push(name):
    """Put the (checked) backend ``name`` in force for this thread/task; returns the token for
    ``pop``. The cheap form of ``use_backend`` for per-call use."""
    return _override.set(name)


def pop(token):
    _override.reset(token)


def _check_name(name, allow_auto=True):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if allow_auto and name == "auto":
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {('auto',) + BACKENDS}")
    if not available(name):
        raise ValueError(f"backend {name!r} is not available here; available: {backends()}")
    return name


def _initial():
    env = os.environ.get("NNFAST_BACKEND", "auto").strip() or "auto"
    try:
        return _check_name(env)
    except ValueError as exc:
        raise ValueError(f"NNFAST_BACKEND: {exc}") from None


def get_backend():
    """The backend in force: a name from ``backends()`` or ``"auto"``."""
    global _current
    override = _override.get()
    if override is not None:
        return override
    if _current is None:
        _current = _initial()
    return _current


def set_backend(name):
    """Choose the backend for every later call: ``"auto"``, ``"reference"``, ``"numba"`` or
    ``"cython"``. Returns the previous choice."""
    global _current
    previous = get_backend()
    _current = _check_name(name)
    return previous


@contextlib.contextmanager
def use_backend(name):
    """Context manager: ``with nnfast.use_backend("numba"): ...`` (per thread / task)."""
    token = _override.set(_check_name(name))
    try:
        yield name
    finally:
        _override.reset(token)


def _module(backend, module):
    mod = importlib.import_module(f"{_PACKAGES[backend]}.{module}")
    if backend != "reference" and _num_threads is not None:
        importlib.import_module(_PACKAGES[backend]).set_num_threads(_num_threads)
    return mod


def _bound(backend, module, fn):
    """``fn`` as the dispatcher hands it out: the Cython kernels with parallel loops take their
    thread count per call (``n_threads``), bound here when it is not their default of 1."""
    if backend == "cython":
        package = sys.modules[_PACKAGES["cython"]]
        if module in package.THREADED and package.num_threads != 1:
            return functools.partial(fn, n_threads=package.num_threads)
    return fn


def _fallback():
    """The first available backend of ``FALLBACK`` (probing numba imports it, ~0.3 s: done only
    when a call needs it, once)."""
    global _fallback_name
    if _fallback_name is None:
        _fallback_name = next((b for b in FALLBACK if available(b)), "reference")
    return _fallback_name


_fallback_name = None


def _auto_rows(module, name):
    """``((limit, backend), ...)`` for ``auto``: ``AUTO_TABLE``'s rows, then any size on None,
    which ``kernel`` resolves to ``_fallback()`` when a call reaches it (an unavailable
    backend's row too): a call probes only the backend of the row that serves it."""
    rows = []
    for limit, backend in AUTO_TABLE.get((module, name), ()):
        rows.append((limit, backend))
        if limit is None:
            break
    if not rows or rows[-1][0] is not None:
        rows.append((None, None))
    return tuple(rows)


_auto_cache = {}


def kernel(module, name, size=0):
    """The function ``name`` of ``module`` in the backend in force, for an input of ``size``.

    Called on every public kernel call, so it is kept to a few dictionary lookups."""
    backend = _override.get() or _current or get_backend()
    if backend == "auto":
        rows = _auto_cache.get((module, name))
        if rows is None:
            rows = _auto_cache[(module, name)] = _auto_rows(module, name)
        for limit, backend in rows:
            if limit is None or size <= limit:
                break
        if backend is None or not available(backend):
            backend = _fallback()
    return kernel_in(backend, module, name)


def _never(*args):
    return None


def _cython_limit(module, name):
    """The largest size at which "auto" runs ``name`` on Cython by ``AUTO_TABLE``'s leading rows
    (None: any size; -1: none)."""
    limit = -1
    for row_limit, backend in AUTO_TABLE.get((module, name), ()):
        if backend != "cython":
            break
        limit = row_limit
        if row_limit is None:
            break
    return limit


class _Entries:
    """``entries.relu(x, out)``, ...: the compiled checked entry of a public function
    (``nnfast._cython.entry``: the common case, checked and run in C; None when the Python path
    must take the call), bound on first use. Without the Cython backend, every entry answers
    None."""

    def __getattr__(self, name):
        fn = _never
        if available("cython"):
            entry = importlib.import_module("nnfast._cython.entry")
            if not _entry_bound:
                entry.bind(_override, globals(),
                           {key: _cython_limit(*key) for key in entry.KERNELS})
                _entry_bound.append(True)
            fn = getattr(entry, name)
        setattr(self, name, fn)
        return fn


_entry_bound = []
entries = _Entries()


def kernel_in(backend, module, name):
    """The function ``name`` of ``module`` in a given backend."""
    key = (backend, module, name)
    fn = _cache.get(key)
    if fn is None:
        fn = _cache[key] = _bound(backend, module, getattr(_module(backend, module), name))
    return fn


#: Upper bound of ``set_num_threads`` (the Cython kernels pass it to OpenMP as a C int).
MAX_THREADS = 4096


def set_num_threads(n):
    """Bound the threads of nnfast's kernels and of BLAS to ``n`` (>= 1).

    Kernels and BLAS calls run one after the other, never nested, so the two pools together
    never hold more than ``n`` busy threads. Numba's kernels use up to the CPU count by default;
    the Cython kernels' OpenMP loops use one thread until this is called (libgomp's spinning
    threads starve OpenBLAS's on small machines: bench/README.md, "Threads"). The Cython
    network-step engine uses every usable CPU unless this bounds it (``n = 1``: its row chunks
    run on the calling thread, with the same results: ``nnfast._cython.step``).
    """
    from ._validate import integer

    global _num_threads
    n = integer(n, "n", low=1, high=MAX_THREADS)     # checked before anything is changed
    for backend in ("numba", "cython"):     # loaded ones now, the others by _module on load
        package = sys.modules.get(_PACKAGES[backend])
        if package is not None and available(backend):
            package.set_num_threads(n)
    for key in [key for key in _cache if key[0] == "cython"]:
        del _cache[key]                     # bound again with the new count (_bound)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    _num_threads = n            # the engine's plans read it (nnfast._cython.step.threads)
    return n


def get_num_threads():
    """The thread bound set by ``set_num_threads``, or the machine's CPU count."""
    return _num_threads if _num_threads is not None else (os.cpu_count() or 1)
