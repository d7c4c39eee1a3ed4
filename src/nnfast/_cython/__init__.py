"""The ``cython`` backend: extension modules compiled from ``src/kernels/*.pyx`` by CMake.

Importing this package raises ImportError when the modules were not built (a source checkout
without ``pip install``); ``nnfast._backend`` uses that to list the backend as unavailable.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _load_cython_blas():
    """Load ``scipy.linalg.cython_blas`` (the BLAS that ``dense`` cimports) without running
    ``scipy/linalg/__init__.py``.

    Cython imports a cimported module by its dotted name; through the package that costs the
    import of all of ``scipy.linalg`` (150-280 ms measured here, most of it scipy's array-API
    layer), which every process paid on its first training step. The extension module alone
    loads in ~2 ms. It is registered under its own name in ``sys.modules``, where every later
    import finds it (numba's BLAS bindings, a later ``import scipy.linalg``); ``scipy.linalg``
    itself is imported as usual when something asks for it."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec("scipy")
    if spec is None or spec.origin is None:
        return                           # dense's own import then raises the ImportError
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


_load_cython_blas()

from . import activations, batchnorm, dense, losses, optim  # noqa: E402,F401

#: True when the kernels were compiled with OpenMP (else every loop runs on one thread).
HAVE_OPENMP = bool(activations.HAVE_OPENMP)

#: The modules whose kernels take the thread count of their OpenMP loops as the keyword
#: ``n_threads`` on every call, as scikit-learn's loss module does (``dense`` has no parallel
#: loop: its GEMMs run on BLAS's threads). ``nnfast._backend`` passes it.
THREADED = ("activations", "batchnorm", "losses", "optim")

#: Threads of the OpenMP loops until ``nnfast.set_num_threads`` says otherwise. One, because
#: libgomp's threads spin after a parallel region and starve OpenBLAS's threads on a 2-core
#: machine (and the other way round): a cython sigmoid(2**18) followed by a 128x784x512 GEMM took
#: 8.0 ms median per pair with 2 threads, 0.96 ms with 1, 0.55 ms for the GEMM alone.
#: OMP_WAIT_POLICY=PASSIVE cures it (0.77 ms) but libgomp is one instance per process, shared
#: with torch (same soname), whose small training step it made 3x slower — so nnfast does not
#: set it; users who want the threads call nnfast.set_num_threads(2) (bench/README.md, "Threads").
DEFAULT_THREADS = 1

#: The thread count ``nnfast._backend`` passes to the kernels (1 without OpenMP).
num_threads = DEFAULT_THREADS


def set_num_threads(n):
    """Threads for the kernels' parallel loops (OpenMP), passed on every later call by
    ``nnfast._backend``. Without OpenMP a no-op that warns."""
    global num_threads
    if not HAVE_OPENMP:
        import warnings

        warnings.warn("nnfast's Cython kernels were built without OpenMP: they run on one "
                      "thread and set_num_threads has no effect", RuntimeWarning, stacklevel=2)
        return
    num_threads = int(n)
