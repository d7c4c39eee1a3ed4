"""nnfast._blas.serial: one BLAS thread inside, each library's own setting back afterwards."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nnfast
from nnfast import _blas

from conftest import run_in_threads

pytestmark = pytest.mark.skipif(not _blas.threads(), reason="no BLAS that threadpoolctl controls")


def test_serial_sets_one_thread_and_restores():
    with threadpool_limits(2, user_api="blas"):
        before = _blas.threads()
        assert all(n == 2 for _, n in before)
        with _blas.serial():
            assert all(n == 1 for _, n in _blas.threads())
            with _blas.serial():                       # nested: still one thread
                assert all(n == 1 for _, n in _blas.threads())
            assert all(n == 1 for _, n in _blas.threads())
        assert _blas.threads() == before


def test_small_work_changes_nothing():
    with threadpool_limits(2, user_api="blas"):
        with _blas.serial(_blas.THREADED_MIN - 1):
            assert all(n == 2 for _, n in _blas.threads())


def test_serial_restores_after_an_exception():
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(RuntimeError):
            with _blas.serial():
                raise RuntimeError("inside")
        assert all(n == 2 for _, n in _blas.threads())


def test_serial_gives_up_control_so_other_threads_can_limit():
    with _blas.serial():
        pass
    seen = []

    def other():
        with threadpool_limits(1, user_api="blas"):
            seen.append([n for _, n in _blas.threads()])

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [[1] * len(_blas.threads())]


def test_serial_from_several_threads_at_once():
    with threadpool_limits(2, user_api="blas"):
        before = _blas.threads()
        a = np.arange(256.0 * 256).reshape(256, 256) / 65536
        expect = a @ a
        results = []

        def work(_i):
            for _ in range(20):
                with _blas.serial():
                    results.append(np.array_equal(a @ a, expect))

        errors = run_in_threads(work, 3)
        assert errors == [] and len(results) == 60 and all(results)
        assert _blas.threads() == before


class _Probe(nnfast.optim.Adam):
    """An Adam that records the BLAS thread counts in force when the step updates."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def step_flat(self, params, grads):
        self.seen.append([n for _, n in _blas.threads()])
        return super().step_flat(params, grads)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_training_runs_blas_on_one_thread_and_gives_threads_back(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 128)).astype(np.float32)     # 64 x 128 x 64: BLAS would split
    y = rng.integers(0, 10, 64)
    model = nnfast.MLP([128, 64, 10], seed=0)
    assert 64 * 128 * 64 >= _blas.THREADED_MIN
    with threadpool_limits(2, user_api="blas"), nnfast.use_backend(backend):
        before = _blas.threads()
        opt = _Probe(lr=1e-3)
        model.train_step(X, y, opt)
        model.fit(X, y, optimizer=opt, epochs=2, batch_size=32, tol=None, progress=False)
        assert len(opt.seen) == 5 and all(s == [1] * len(before) for s in opt.seen)
        assert _blas.threads() == before


def test_first_fit_finds_the_blas_without_importing_scipy_linalg_or_tqdm():
    """A fresh process's first ``MLP.fit(progress=False)``: the BLAS libraries are found by
    name (the same ones threadpoolctl's full scan finds), scipy.linalg (~140 ms) and tqdm
    (~40 ms) are not imported, and scipy.linalg still imports and works afterwards."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        import numpy as np
        import nnfast
        from nnfast import _blas
        model = nnfast.MLP([8, 6, 3], seed=0)
        X = np.random.default_rng(0).random((40, 8)).astype(np.float32)
        model.fit(X, np.arange(40) % 3, epochs=2, batch_size=8, progress=False)
        assert "scipy.linalg" not in sys.modules, "scipy.linalg imported"
        assert not any(m.startswith("tqdm") for m in sys.modules), "tqdm imported"
        found = sorted(path for path, _ in _blas.threads())
        from threadpoolctl import ThreadpoolController
        full = sorted(c.filepath for c in ThreadpoolController().lib_controllers
                      if c.user_api == "blas")
        assert found == full, (found, full)
        import scipy.linalg
        a = np.eye(3)
        assert np.array_equal(scipy.linalg.blas.dgemm(1.0, a, a), a)
        print("ok", len(found))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok ") and int(res.stdout.split()[1]) >= 1


def test_engine_calls_in_several_python_threads_hold_blas_and_give_it_back():
    """The engine switches its BLAS to one thread from C, counted across the Python threads in
    calls (src/kernels/blas_threads.h): four threads computing gradients at once get the bits of
    one alone, and every library's setting is back afterwards."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((256, 200)).astype(np.float32)    # 256 x 200 x 300: BLAS would split
    y = rng.integers(0, 10, 256)
    model = nnfast.MLP([200, 300, 10], seed=0)
    with threadpool_limits(2, user_api="blas"):
        before = _blas.threads()
        want = [g.copy() for g in model.gradients(X, y)]
        assert _blas.threads() == before
        seen = []

        def work(_i):
            local = nnfast.MLP([200, 300, 10], seed=0)
            for _ in range(10):
                grads = local.gradients(X, y)
                seen.append(all(np.array_equal(a, b) for a, b in zip(grads, want)))

        errors = run_in_threads(work, 4)
        assert errors == [] and len(seen) == 40 and all(seen)
        assert _blas.threads() == before
