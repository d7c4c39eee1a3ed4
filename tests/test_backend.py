"""Backend selection and dispatch: backends(), set_backend/use_backend, NNFAST_BACKEND, threads,
and that every backend is deterministic and thread-safe on distinct outputs."""
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import nnfast
from conftest import (BACKEND_NAMES, LARGE, close, make_rng, reference, require_backend,
                      run_python)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code, **env):
    """Run ``code`` in a fresh interpreter that imports this checkout's nnfast."""
    full_env = {k: v for k, v in os.environ.items() if k != "NNFAST_BACKEND"}
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env)
    return run_python("-c", code, env=full_env)


@pytest.fixture
def restore_backend():
    previous = nnfast.get_backend()
    yield
    nnfast.set_backend(previous)


def test_backends_lists_reference_first():
    names = nnfast.backends()
    assert names[0] == "reference"
    assert set(names) <= set(BACKEND_NAMES)
    assert names == [b for b in BACKEND_NAMES if b in names]  # fixed order
    names.append("bogus")
    assert "bogus" not in nnfast.backends()  # a copy


def test_set_backend_returns_previous(restore_backend):
    before = nnfast.get_backend()
    assert nnfast.set_backend("reference") == before
    assert nnfast.get_backend() == "reference"
    assert nnfast.set_backend("auto") == "reference"
    assert nnfast.get_backend() == "auto"


def test_use_backend_restores_previous(restore_backend):
    nnfast.set_backend("auto")
    with nnfast.use_backend("reference") as name:
        assert name == "reference" and nnfast.get_backend() == "reference"
        with nnfast.use_backend("auto"):
            assert nnfast.get_backend() == "auto"
        assert nnfast.get_backend() == "reference"
    assert nnfast.get_backend() == "auto"
    with pytest.raises(RuntimeError):
        with nnfast.use_backend("reference"):
            raise RuntimeError
    assert nnfast.get_backend() == "auto"


def test_use_backend_is_per_thread(restore_backend):
    nnfast.set_backend("auto")
    seen = []
    with nnfast.use_backend("reference"):
        t = threading.Thread(target=lambda: seen.append(nnfast.get_backend()))
        t.start()
        t.join()
    assert seen == ["auto"]


@pytest.mark.parametrize("name,exc,match", [
    ("bogus", ValueError, "unknown backend 'bogus'"),
    ("Numba", ValueError, "unknown backend"),
    ("", ValueError, "unknown backend"),
    (None, TypeError, "backend must be a string"),
    (3, TypeError, "backend must be a string"),
])
def test_unknown_backend_name(name, exc, match, restore_backend):
    before = nnfast.get_backend()
    with pytest.raises(exc, match=match):
        nnfast.set_backend(name)
    with pytest.raises(exc, match=match):
        with nnfast.use_backend(name):
            pass
    assert nnfast.get_backend() == before


def test_unavailable_backend_is_a_clear_error(restore_backend):
    missing = [b for b in BACKEND_NAMES if b not in nnfast.backends()]
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(ValueError, match=f"backend '{missing[0]}' is not available"):
        nnfast.set_backend(missing[0])


def test_auto_gives_the_reference_results(restore_backend):
    """The default "auto" dispatch only reaches working kernels, whatever it picks."""
    for name in nnfast.backends():
        require_backend(name)
    rng = make_rng("auto")
    x = rng.standard_normal((300, 7))
    labels = rng.integers(0, 7, 300)
    with nnfast.use_backend("auto"):
        s = nnfast.sigmoid(x)
        loss, d = nnfast.softmax_cross_entropy(x, labels)
        p, g, m, v = x.copy(), x * 0.5, np.zeros_like(x), np.zeros_like(x)
        nnfast.adam_update(p, g, m, v, 1, 0.01)
        out = nnfast.dense_forward(x, np.eye(7), None, "relu")
        bn, _ = nnfast.batchnorm_forward(x, np.ones(7), np.zeros(7), np.zeros(7), np.ones(7))
    close(s, reference(nnfast.sigmoid, x), np.float64, "auto sigmoid")
    close(loss, reference(nnfast.softmax_cross_entropy, x, labels)[0], np.float64, "auto loss")
    p_ref, m2, v2 = x.copy(), np.zeros_like(x), np.zeros_like(x)
    reference(nnfast.adam_update, p_ref, g, m2, v2, 1, 0.01)
    close(p, p_ref, np.float64, "auto adam")
    close(out, np.maximum(x, 0), np.float64, "auto dense")
    close(bn, reference(nnfast.batchnorm_forward, x, np.ones(7), np.zeros(7), np.zeros(7),
                        np.ones(7))[0], np.float64, "auto batchnorm")


@pytest.mark.parametrize("value,expected", [("reference", "reference"), ("auto", "auto"),
                                            ("", "auto"), ("  reference ", "reference")])
def test_env_var_chooses_the_backend(value, expected):
    r = _python("import nnfast, numpy as np; print(nnfast.get_backend()); "
                "print(nnfast.sigmoid(np.zeros(3))[0])", NNFAST_BACKEND=value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [expected, "0.5"]


@pytest.mark.parametrize("value", ["bogus", "Reference"])
def test_env_var_with_unknown_name_is_a_clear_error(value):
    r = _python("import nnfast; nnfast.get_backend()", NNFAST_BACKEND=value)
    assert r.returncode != 0
    assert "ValueError: NNFAST_BACKEND: unknown backend" in r.stderr, r.stderr
    assert value in r.stderr


def test_env_var_is_overridden_by_use_backend():
    r = _python("import nnfast\nwith nnfast.use_backend('auto'):\n print(nnfast.get_backend())\n"
                "print(nnfast.get_backend())", NNFAST_BACKEND="reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["auto", "reference"]


@pytest.mark.parametrize("n,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                   (True, TypeError), ("2", TypeError), (None, TypeError),
                                   (2**31, ValueError), (10**400, ValueError),
                                   (np.int64(2**40), ValueError)])
def test_set_num_threads_rejects_bad_values(n, exc):
    before = nnfast.get_num_threads()
    with pytest.raises(exc, match="n must be"):
        nnfast.set_num_threads(n)
    assert nnfast.get_num_threads() == before
    for name in nnfast.backends():      # a rejected value breaks no later call
        with nnfast.use_backend(name):
            np.testing.assert_array_equal(nnfast.relu(np.array([-1.0, 2.0])), [0.0, 2.0])


def test_set_num_threads_in_a_fresh_process():
    for name in nnfast.backends():
        require_backend(name)  # set_num_threads reaches every listed backend
    code = """
import numpy as np, nnfast
from threadpoolctl import threadpool_info
assert nnfast.get_num_threads() >= 1
assert nnfast.set_num_threads(1) == 1 and nnfast.get_num_threads() == 1
blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
assert all(i["num_threads"] == 1 for i in blas), blas
for b in nnfast.backends():
    with nnfast.use_backend(b):
        x = np.linspace(-3, 3, 10001)
        assert abs(nnfast.sigmoid(x)[5000] - 0.5) < 1e-15
nnfast.set_num_threads(2)
print(nnfast.get_num_threads())
"""
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2"


def test_cython_thread_count_is_an_argument_of_each_call():
    """``set_num_threads`` reaches the Cython kernels as their ``n_threads`` argument, bound by
    the dispatcher (as scikit-learn's loss module takes it), not as state of the modules; the
    result does not depend on it (fixed blocks, sums in block order)."""
    require_backend("cython")
    code = """
import numpy as np, nnfast
import nnfast._cython as cy
from nnfast import _backend
x = np.linspace(-3, 3, 1 << 18)
with nnfast.use_backend("cython"):
    one = nnfast.sigmoid(x)
    assert _backend.kernel_in("cython", "activations", "sigmoid") is cy.activations.sigmoid
    nnfast.set_num_threads(2)
    fn = _backend.kernel_in("cython", "activations", "sigmoid")
    if cy.HAVE_OPENMP:
        assert fn.func is cy.activations.sigmoid and fn.keywords == {"n_threads": 2}, fn
    assert _backend.kernel_in("cython", "dense", "dense_forward") is cy.dense.dense_forward
    two = nnfast.sigmoid(x)
assert np.array_equal(one, two)
assert not any(hasattr(m, "set_num_threads") for m in (cy.activations, cy.losses, cy.dense,
                                                       cy.batchnorm, cy.optim))
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "NNFAST_BACKEND"}
    r = run_python("-c", code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# --- every backend: deterministic, thread-safe on distinct outputs ------------------------------

def _workload(x, labels):
    s = nnfast.softmax(x)
    loss, d = nnfast.softmax_cross_entropy(x, labels)
    a = nnfast.dense_forward(x, x.T[:, :16].copy(), None, "tanh")
    p = x.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    nnfast.adam_update(p, d, m, v, 1, 0.01)
    return [s, np.array(loss), d, a, p, nnfast.sigmoid(x.reshape(-1))]


def test_deterministic_and_thread_safe(backend, dtype):
    rng = make_rng("threads", dtype.name)
    x = rng.standard_normal((LARGE // 64, 64)).astype(dtype)
    labels = rng.integers(0, 64, x.shape[0])
    first = _workload(x, labels)
    second = _workload(x, labels)
    for i, (a, b) in enumerate(zip(first, second)):
        np.testing.assert_array_equal(a, b, err_msg=f"backend {backend}, {dtype}: result {i} "
                                                    "differs between two identical calls")
    results = [None] * 4
    errors = []

    def work(i):
        try:
            with nnfast.use_backend(backend):
                results[i] = _workload(x, labels)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        for i, (a, b) in enumerate(zip(r, first)):
            np.testing.assert_array_equal(a, b, err_msg=f"backend {backend}, {dtype}: result "
                                                        f"{i} differs when run in 4 threads")


def test_numba_uses_tbb_where_its_wheel_is_installed():
    """nnfast._numba._threading: with the tbb wheel present Numba must run on TBB (work
    stealing), not fall back to omp, whose parallel kernels wait a scheduler slice (16-20 ms)
    whenever another process holds a core (bench/bench_contention.py)."""
    require_backend("numba")
    from nnfast._numba._threading import load_tbb

    if not load_tbb():
        pytest.skip("the tbb wheel is not installed here")
    r = _python("import numpy as np, numba, nnfast\n"
                "with nnfast.use_backend('numba'):\n"
                "    nnfast.relu(np.ones(2**18))\n"
                "print(numba.threading_layer())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["tbb"]
