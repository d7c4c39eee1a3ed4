"""The ``numba`` backend: the kernels of ``nnfast._reference`` compiled with ``numba.njit``.

Same modules, functions and arguments as the reference. Kernels compile lazily on first use
per dtype and are cached on disk (``cache=True``); loops are written so that LLVM vectorizes
them (see ``_fastmath`` for exp/tanh/sigmoid), and large arrays are split over threads.
"""
import numba

from ._cache import install as _install_cache
from ._threading import load_tbb as _load_tbb

_install_cache()   # before any kernel module defines its cached functions
_load_tbb()        # before Numba starts its threads: TBB's layer where installed (_threading)


def set_num_threads(n):
    """Bound the threads of the parallel (``prange``) kernels to ``n``."""
    numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
