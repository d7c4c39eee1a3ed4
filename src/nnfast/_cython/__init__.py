"""The ``cython`` backend: extension modules compiled from ``src/kernels/*.pyx`` by CMake.

Importing this package raises ImportError when the modules were not built (a source checkout
without ``pip install``); ``nnfast._backend`` uses that to list the backend as unavailable.
"""
import os

# OpenMP threads that spin after a parallel region keep a core from OpenBLAS's threads (and
# OpenBLAS's spinning threads keep it from ours): on 2 cores a sigmoid(2**18) + 128x784x512 GEMM
# pair took 8.0 ms median with libgomp's default wait policy and 0.77 ms with PASSIVE, against
# 0.55 ms for the GEMM alone (/tmp-free repro in bench/README.md, "Threads"). libgomp reads the
# variable once, when the kernels' extension modules load it, so it is set before the import;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import activations, batchnorm, dense, losses, optim  # noqa: E402

_MODULES = (activations, batchnorm, dense, losses, optim)

#: True when the kernels were compiled with OpenMP (else every loop runs on one thread).
HAVE_OPENMP = bool(activations.HAVE_OPENMP)


def set_num_threads(n):
    """Threads for the kernels' parallel loops (OpenMP). Without OpenMP a no-op that warns."""
    if not HAVE_OPENMP:
        import warnings

        warnings.warn("nnfast's Cython kernels were built without OpenMP: they run on one "
                      "thread and set_num_threads has no effect", RuntimeWarning, stacklevel=2)
        return
    for mod in _MODULES:
        mod.set_num_threads(n)
