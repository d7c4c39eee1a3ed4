"""Parallel kernels while another process holds a core (issue 7): the same 1e6-element cases as
``bench_activations`` / ``bench_optim``, timed with ``python -c "while True: pass"`` running for
the whole module. A parallel kernel must stay near its serial speed here; with Numba's ``omp``
layer it waited a scheduler slice per call (16-20 ms, see ``nnfast/_numba/_threading.py``).

Groups ``step-busy-<net>``: the training steps of ``bench_step`` under the same load — ``auto``
(the step's GEMMs on one BLAS thread, ``nnfast._blas``) against ``auto-blas-threads`` (BLAS's
own threads, which wait a time slice per GEMM here) and the NumPy ``reference``.

    pytest bench/bench_contention.py --benchmark-only --benchmark-enable
"""
import subprocess
import sys

import pytest

from .bench_step import NETS, _make
from .harness import label, run_case

KERNELS = ("sigmoid_grad", "tanh_grad", "relu", "sgd_update", "momentum_update")


@pytest.fixture(scope="module")
def busy_core():
    """One CPU-bound process in the background, stopped after the module."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("size", [10**6], ids=label)
@pytest.mark.parametrize("kernel", KERNELS)
def test_busy_core(benchmark, request, backend, kernel, size):
    if benchmark.disabled:      # the untimed pass skips 1e6 anyway: start no busy process
        pytest.skip("run only when timing (--benchmark-enable)")
    request.getfixturevalue("busy_core")
    run_case(benchmark, backend, kernel, "float32", (size,), group_kernel=f"{kernel}-busy")


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("impl", ["reference", "auto", "auto-blas-threads"])
def test_busy_step(benchmark, request, impl, net):
    if benchmark.disabled:
        pytest.skip("run only when timing (--benchmark-enable)")
    request.getfixturevalue("busy_core")
    benchmark.group = f"step-busy-{net}"
    benchmark.extra_info["backend"] = impl
    fn = _make(impl, *NETS[net])
    for _ in range(3):
        fn()
    benchmark(fn)
