"""BLAS threads during a network's passes.

OpenBLAS (pthreads build, as in NumPy's and SciPy's wheels) splits one GEMM over a process-wide
pool and the calling thread waits for all of its parts. When another process holds a core, the
part given to the descheduled thread waits a scheduler time slice: the training step of a
784-512-256-10 network (batch 128, float32) took 328 ms with OpenBLAS's two threads and 24 ms
with one while another process kept a core busy (load 7-10), and 4-5x longer at 784-1024-1024-10
(2-core AMD EPYC Zen 4; ``bench/bench_contention.py``, ``step-busy`` groups, measures the same).
An MLP's GEMMs have a batch of tens to hundreds of rows, so on an idle machine the second thread
gains little there (``bench/README.md``, "Threads"), while under contention it loses an order of
magnitude.

So ``serial(work)`` runs a network pass with one BLAS thread when its largest GEMM is one OpenBLAS
would split (``work`` multiply-adds at or above ``THREADED_MIN``: below it OpenBLAS runs one thread
anyway and the switch, ~1 µs per library call, would be pure cost). It goes through threadpoolctl's
controllers (``threadpool_limits`` itself costs ~1 ms per call) and so follows threadpoolctl's rule
for a process-wide pool: only one Python thread at a time controls it, a call from another thread
changes nothing. Entries nest; the outermost one in a thread restores each library's setting and
gives up the control it took.
"""
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading

#: OpenBLAS runs a GEMM on one thread when M·N·K < 65536 · GEMM_MULTITHREAD_THRESHOLD (4 by
#: default; interface/gemm.c).
THREADED_MIN = 65536 * 4

#: False leaves BLAS threads alone (for the benchmarks that measure what this module changes).
ENABLED = True

_local = threading.local()
_controllers = None  # BLAS controllers of the libraries loaded when first needed

#: Substrings of the file names that threadpoolctl's BLAS controllers match (OpenBLAS,
#: scipy-openblas, BLIS, MKL, FlexiBLAS, Accelerate) and of the usual symlinks to them
#: (Debian's libblas.so.3 / liblapack.so.3 alternatives).
_BLAS_NAMES = ("blas", "blis", "mkl", "lapack", "veclib", "accelerate")


def load_scipy_blas():
    """Load ``scipy.linalg.cython_blas`` (the BLAS that the Cython kernels cimport and
    numba's BLAS bindings use) without running ``scipy/linalg/__init__.py``.

    Cython imports a cimported module by its dotted name; through the package that costs the
    import of all of ``scipy.linalg`` (143-280 ms measured here, most of it scipy's array-API
    layer), which every process paid on its first training step. The extension module alone
    loads in ~2 ms. It is registered under its own name in ``sys.modules``, where every later
    import finds it (numba's BLAS bindings, a later ``import scipy.linalg``); ``scipy.linalg``
    itself is imported as usual when something asks for it."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec("scipy")
    if spec is None or spec.origin is None:
        return                           # the importer's own import then raises ImportError
    folder = os.path.join(os.path.dirname(spec.origin), "linalg")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "cython_blas" + suffix)
        if os.path.exists(path):
            break
    else:
        return
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _blas_libraries():
    """threadpoolctl's controllers of the loaded libraries whose file names look like a BLAS.

    ``ThreadpoolController()`` resolves the real path of every loaded library (~230 after
    importing NumPy, SciPy and scikit-learn) to match it against the libraries it knows: 26 ms
    measured on the first call in a process, paid by every process's first fit. Looking at
    the names first leaves a few candidates (4 ms). The filter goes through threadpoolctl's
    per-library hook; a threadpoolctl without that hook scans everything, as before."""
    from threadpoolctl import ThreadpoolController

    class BlasLibraries(ThreadpoolController):
        def _make_controller_from_path(self, filepath):
            name = os.path.basename(filepath).lower()
            if any(part in name for part in _BLAS_NAMES):
                super()._make_controller_from_path(filepath)

    return BlasLibraries().lib_controllers


def _blas_controllers():
    global _controllers
    if _controllers is None:
        import numpy  # noqa: F401  (loads NumPy's BLAS)

        load_scipy_blas()        # SciPy's BLAS, the one the Cython GEMMs call

        _controllers = [c for c in _blas_libraries() if c.user_api == "blas"]
    return _controllers


def _controlling_thread(controller):
    state = getattr(type(controller), "_SHARED_STATE", None)   # threadpoolctl >= 3.8
    return getattr(state, "controlling_thread", None)


@contextlib.contextmanager
def serial(work=THREADED_MIN):
    """Run the body with the loaded BLAS libraries on one thread (see the module's note), if
    ``work`` (the largest GEMM's multiply-adds) is one that BLAS would split at all."""
    if not ENABLED or work < THREADED_MIN or getattr(_local, "depth", 0):
        yield
        return
    _local.depth = 1
    saved = []
    engine = link()
    controllers = [c for c in _blas_controllers() if c is not _linked[1]]
    if engine is not None:
        engine.blas_enter()
    # threadpoolctl keeps one controlling thread for all OpenBLAS libraries: note whether this
    # thread takes it here, to give it up at the end.
    free = [_controlling_thread(c) is None for c in controllers]
    try:
        for c in controllers:
            n = c.get_num_threads()
            if n is not None and n != 1:
                c.set_num_threads(1)
                saved.append((c, n))
        yield
    finally:
        for c, n in saved:
            c.set_num_threads(n)
        for c, was_free in zip(controllers, free):
            if was_free and _controlling_thread(c) is threading.current_thread():
                type(c).clear_controlling_thread()
        if engine is not None:
            engine.blas_leave()
        _local.depth = 0


def threads():
    """The thread count of each loaded BLAS library, as (filepath, n) pairs (for tests)."""
    return [(c.filepath, c.get_num_threads()) for c in _blas_controllers()]



_linked = []    # [engine module or None, its controller]: link() ran


def link():
    """The Cython engine, told the addresses of ``openblas_get_num_threads`` /
    ``openblas_set_num_threads`` of the BLAS its GEMMs call (scipy's OpenBLAS, 32-bit integers:
    the symbols without the 64-bit suffix, with its own thread pool), once per process; None
    where there is no such BLAS or no engine. The engine then holds that BLAS to one thread in
    every call, counted across the Python threads in calls (``src/kernels/blas_threads.h``), and
    ``serial`` switches that library through the same count, not through threadpoolctl (whose
    switch from one Python thread would otherwise undo another's mid-call)."""
    if _linked:
        return _linked[0]
    _linked[:] = [None, None]
    try:
        from ._cython import engine
    except ImportError:
        return None
    import ctypes

    for c in _blas_controllers():
        if getattr(c, "internal_api", None) != "openblas" or \
                getattr(c, "threading_layer", None) != "pthreads":
            continue
        for prefix in ("scipy_", ""):
            get = getattr(c.dynlib, f"{prefix}openblas_get_num_threads", None)
            put = getattr(c.dynlib, f"{prefix}openblas_set_num_threads", None)
            if get is not None and put is not None:
                engine.set_blas_threads_functions(ctypes.cast(get, ctypes.c_void_p).value,
                                                  ctypes.cast(put, ctypes.c_void_p).value)
                _linked[:] = [engine, c]
                return engine
    return None
