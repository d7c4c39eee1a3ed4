"""The ``nnfast`` command line: ``info``, ``bench`` and ``demo`` through ``main(argv)``."""
import subprocess
import sys

import pytest

import nnfast
from nnfast import _bench
from nnfast.cli import main


def test_info_lists_backends_blas_and_cpu(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"nnfast: {nnfast.__version__}" in out
    assert f"backends: {', '.join(nnfast.backends())}" in out
    assert f"backend in force: {nnfast.get_backend()}" in out
    assert "threads:" in out
    assert "numba" in out and "numba cache:" in out
    assert "thread pools (threadpoolctl):" in out
    assert "cpu:" in out and "features:" in out


def test_bench_quick_prints_speedup_table(capsys):
    argv = ["bench", "--quick", "--sizes", "100", "300", "--repeat", "1",
            "--kernels", "sigmoid", "softmax_cross_entropy", "adam_update"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NumPy (reference backend) time divided by" in out
    for name in ("sigmoid", "softmax_cross_entropy", "adam_update"):
        assert name in out
    assert "reference" in out and " 1e2 " in out and " 300" in out
    for backend in _bench.compiled_backends():
        assert backend in out


def test_bench_quick_default_covers_every_kernel(capsys):
    assert main(["bench", "--quick", "--sizes", "64", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for name in _bench.CASES:
        assert f"\n{name} " in out


def test_bench_rejects_unknown_kernel_and_bad_size(capsys):
    assert main(["bench", "--kernels", "no_such_kernel"]) == 2
    assert "unknown kernels" in capsys.readouterr().err
    assert main(["bench", "--sizes", "0"]) == 2
    assert main(["bench", "--sizes", "1.5"]) == 2


def test_speedup_table_rows():
    rows, text = _bench.speedup_table(sizes=(50,), repeat=1, kernels=["relu", "sgd_update"],
                                      dtype="float64", target=1e-4)
    assert [(r["kernel"], r["size"], r["dtype"]) for r in rows] == [
        ("relu", 50, "float64"), ("sgd_update", 50, "float64")]
    for row in rows:
        assert row["times"]["reference"] > 0
        assert set(row["speedups"]) == set(_bench.compiled_backends())
        for backend, speedup in row["speedups"].items():
            t = row["times"][backend]
            assert speedup is None if t is None else speedup == pytest.approx(
                row["times"]["reference"] / t)
    assert "relu" in text and "sgd_update" in text


def test_every_case_runs_on_the_reference_backend():
    rng = __import__("numpy").random.default_rng(0)
    with nnfast.use_backend("reference"):
        for name, case in _bench.CASES.items():
            fn = case.setup(case.shape(200), "float32", rng)
            fn()


def test_usage_errors_return_exit_code(capsys):
    assert main([]) == 2
    assert main(["bench", "--dtype", "float16"]) == 2
    assert main(["--version"]) == 0
    assert nnfast.__version__ in capsys.readouterr().out


def test_demo_errors_clearly_or_runs(capsys, monkeypatch):
    try:
        import nnfast._demo  # noqa: F401
    except ImportError:
        assert main(["demo", "--epochs", "1", "--no-progress", "--no-compare"]) == 1
        assert "demo is not available" in capsys.readouterr().err
        return
    calls = []
    monkeypatch.setattr("nnfast._demo.run_demo", lambda **kw: calls.append(kw))
    assert main(["demo", "--epochs", "3", "--no-progress"]) == 0
    assert calls == [{"epochs": 3, "progress": False, "compare": True}]


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnfast", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert nnfast.__version__ in proc.stdout


def test_demo_end_to_end(capsys):
    pytest.importorskip("nnfast._demo")
    pytest.importorskip("sklearn")
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-compare"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "accuracy" in out


def test_bad_backend_variable_is_one_line_not_a_traceback():
    r = subprocess.run([sys.executable, "-m", "nnfast", "info"], capture_output=True, text=True,
                       env=dict(__import__("os").environ, NNFAST_BACKEND="bogus"), timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("nnfast: error: NNFAST_BACKEND: unknown backend 'bogus'")


def test_info_into_a_closed_pipe_is_quiet():
    """``nnfast info | head -2``: the reader has closed the pipe before nnfast writes."""
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-m', 'nnfast', 'info'], "
            "stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
            "p.stdout.close()\n"
            "err = p.stderr.read().decode(); p.wait()\n"
            "print(p.returncode); print(err)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Traceback" not in r.stdout and "BrokenPipe" not in r.stdout, r.stdout
    assert lines[0] in ("0", "141"), r.stdout
