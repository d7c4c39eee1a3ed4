"""The ``cython`` backend: extension modules compiled from ``src/kernels/*.pyx`` by CMake.

Importing this package raises ImportError when the modules were not built (a source checkout
without ``pip install``); ``nnfast._backend`` uses that to list the backend as unavailable.
"""
# OMP_WAIT_POLICY: see nnfast/__init__.py (set before this package loads libgomp).
from . import activations, batchnorm, dense, losses, optim

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
