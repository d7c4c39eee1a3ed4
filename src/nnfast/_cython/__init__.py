"""The ``cython`` backend: extension modules compiled from ``src/kernels/*.pyx`` by CMake.

Importing this package raises ImportError when the modules were not built (a source checkout
without ``pip install``); ``nnfast._backend`` uses that to list the backend as unavailable.
"""
from .._blas import load_scipy_blas

load_scipy_blas()

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
