"""Numba's threading layer: TBB, where its wheel is installed, for kernels that stay fast while
other processes hold a core.

A parallel (``prange``) kernel is a fork-join over Numba's threads. With the ``omp`` layer
(GNU OpenMP, Numba's choice when TBB is missing) the work is split evenly up front, so when
another process holds one of the two cores the call waits for a scheduler slice of the
descheduled thread: 16-20 ms instead of 0.05 ms. TBB's work stealing lets the running thread take
the other's share. Measured (1e6 float32 elements, median of 200 calls, 2-core AMD EPYC with
AVX-512, ``python -c "while True: pass"`` in the background, other users' jobs also running):

=============  ==========  =======  ==========  ================  ===============
kernel         omp         tbb      workqueue   1 thread (omp)    NumPy reference
=============  ==========  =======  ==========  ================  ===============
sigmoid_grad   15.98 ms    0.10 ms  0.16 ms     0.09 ms           0.27 ms
tanh_grad      0.05-20 ms  0.09 ms  0.17 ms     0.09 ms           0.21 ms
sgd_update     0.06-16 ms  0.10 ms  0.16 ms     0.10 ms           0.21 ms
momentum       15.97 ms    0.18 ms  0.31 ms     0.19 ms           0.53 ms
=============  ==========  =======  ==========  ================  ===============

(omp's median jumps between its best, 0.05 ms, and a slice; its 90th percentile was 16-20 ms for
every kernel.) ``workqueue`` is not thread-safe (concurrent calls abort), so it is no option.

The ``tbb`` wheel puts ``libtbb.so.12`` in ``<prefix>/lib``, where the dynamic loader does not
look, and Numba then silently falls back to ``omp``. ``load_tbb`` loads it by path first; Numba's
own order (tbb, omp, workqueue) then picks it up. ``NUMBA_THREADING_LAYER`` still overrides.
"""
import ctypes
import os
import sys


def load_tbb():
    """Load the ``tbb`` wheel's library if it is installed; True if it is loaded."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return True
    return False
