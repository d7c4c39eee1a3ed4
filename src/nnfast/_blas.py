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
import threading

#: OpenBLAS runs a GEMM on one thread when M·N·K < 65536 · GEMM_MULTITHREAD_THRESHOLD (4 by
#: default; interface/gemm.c).
THREADED_MIN = 65536 * 4

#: False leaves BLAS threads alone (for the benchmarks that measure what this module changes).
ENABLED = True

_local = threading.local()
_controllers = None  # BLAS controllers of the libraries loaded when first needed


def _blas_controllers():
    global _controllers
    if _controllers is None:
        import numpy  # noqa: F401  (loads NumPy's BLAS)
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, the one the Cython GEMMs call)
        from threadpoolctl import ThreadpoolController

        _controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
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
    controllers = _blas_controllers()
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
        _local.depth = 0


def threads():
    """The thread count of each loaded BLAS library, as (filepath, n) pairs (for tests)."""
    return [(c.filepath, c.get_num_threads()) for c in _blas_controllers()]
