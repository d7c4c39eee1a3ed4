"""The ``cython`` backend: extension modules compiled from ``src/kernels/*.pyx`` by CMake.

Importing this package raises ImportError when the modules were not built (a source checkout
without ``pip install``); ``nnfast._backend`` uses that to list the backend as unavailable.
"""
from . import activations, batchnorm, dense, losses, optim

_MODULES = (activations, batchnorm, dense, losses, optim)

#: True when the kernels were compiled with OpenMP (else every loop runs on one thread).
HAVE_OPENMP = bool(activations.HAVE_OPENMP)


#: Threads of the OpenMP loops until ``nnfast.set_num_threads`` says otherwise. One, because
#: libgomp's threads spin after a parallel region and starve OpenBLAS's threads on a 2-core
#: machine (and the other way round): a cython sigmoid(2**18) followed by a 128x784x512 GEMM took
#: 8.0 ms median per pair with 2 threads, 0.96 ms with 1, 0.55 ms for the GEMM alone.
#: OMP_WAIT_POLICY=PASSIVE cures it (0.77 ms) but libgomp is one instance per process, shared
#: with torch (same soname), whose small training step it made 3x slower — so nnfast does not
#: set it; users who want the threads call nnfast.set_num_threads(2) (bench/README.md, "Threads").
DEFAULT_THREADS = 1


def set_num_threads(n):
    """Threads for the kernels' parallel loops (OpenMP). Without OpenMP a no-op that warns."""
    if not HAVE_OPENMP:
        import warnings

        warnings.warn("nnfast's Cython kernels were built without OpenMP: they run on one "
                      "thread and set_num_threads has no effect", RuntimeWarning, stacklevel=2)
        return
    global num_threads
    for mod in _MODULES:
        mod.set_num_threads(n)
    num_threads = n


#: The OpenMP loops' current thread count (1 without OpenMP).
num_threads = DEFAULT_THREADS if HAVE_OPENMP else 1
if HAVE_OPENMP:
    for _mod in _MODULES:
        _mod.set_num_threads(DEFAULT_THREADS)
