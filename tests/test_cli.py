"""The ``nnfast`` command line: ``info``, ``bench`` and ``demo`` through ``main(argv)``."""
import json
import os
import re

import numpy as np
import pytest
from conftest import run_python

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


def test_bench_quick_prints_rows_with_speedups_and_rates(capsys):
    argv = ["bench", "--quick", "--sizes", "100", "300", "--repeat", "2", "--no-context",
            "--no-step", "--kernels", "sigmoid", "softmax_cross_entropy", "dense_forward"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "speedup = reference (NumPy)" in out
    lines = out.splitlines()
    for name in ("sigmoid", "softmax_cross_entropy", "dense_forward"):
        assert any(line.startswith(name) for line in lines)
    assert " 1e2 " in out and " 300 " in out
    for backend in ["reference"] + _bench.compiled_backends():
        timed = re.compile(rf" {backend} +[\d.]+(ns|us|ms|s) ")
        assert sum(bool(timed.search(line)) for line in lines) == 6
    assert "GB/s" in out and "GFLOP/s" in out
    assert not re.search(r"(?<![\d.])0\.0+(?!\d)", out)   # significant figures: no "0.00"
    assert "\r" not in out                                   # no progress bar in a log


def test_bench_default_covers_every_kernel_and_the_step(capsys):
    assert main(["bench", "--quick", "--sizes", "64", "--repeat", "1", "--no-context"]) == 0
    out = capsys.readouterr().out
    for name in _bench.CASES:
        assert f"\n{name} " in out
    assert "training step (MLP 784-512-256-10, batch 128" in out
    assert "\ngemms " in out and "\nauto " in out


def test_bench_json_rows_are_consistent(capsys):
    argv = ["bench", "--json", "--quick", "--sizes", "200", "--repeat", "3",
            "--kernels", "relu", "adam_update", "dense_backward"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    ctx = report["context"]
    assert ctx["cores"] >= 1 and ctx["gemm"] == "SGEMM"
    for key in ("gemm_gflops_1", "gemm_gflops_all", "copy_gbps_1"):
        s = ctx[key]
        assert 0 < s["min"] <= s["median"] <= s["max"] and s["iqr"] >= 0
    assert ctx["copy_gbps"] >= ctx["copy_gbps_1"]["median"]
    rows = report["kernels"]
    assert [(r["kernel"], r["backend"]) for r in rows] == [
        (k, b) for k in ("relu", "adam_update", "dense_backward") for b in report["backends"]]
    for row in rows:
        assert len(row["times"]) == 3 and row["median"] == pytest.approx(np.median(row["times"]))
        ref = next(r for r in rows if r["kernel"] == row["kernel"] and r["backend"] == "reference")
        assert row["speedup"] == pytest.approx(ref["median"] / row["median"])
        kind, amount = _bench.CASES[row["kernel"]].work(tuple(row["shape"]))
        if kind == "bytes":
            assert row["unit"] == "GB/s"
            assert row["rate"] == pytest.approx(amount * 4 / row["median"] / 1e9)
            assert row["of_limit"] == pytest.approx(row["rate"] / ctx["copy_gbps"])
        else:
            assert row["unit"] == "GFLOP/s"
            assert row["of_limit"] == pytest.approx(row["rate"] / ctx["gemm_gflops"])
    steps = report["step"]
    assert [r["backend"] for r in steps] == ["gemms", "reference", "auto"] + report["backends"][1:]
    for row in steps:
        assert row["of_gemms"] == pytest.approx(row["median"] / steps[0]["median"])


def test_bench_starts_with_the_machine_context(capsys):
    argv = ["bench", "--quick", "--sizes", "100", "--repeat", "2", "--no-step",
            "--kernels", "relu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    head, _, rest = out.partition("kernels:")
    assert "\n  cpu: " in head and "SIMD: " in head and "cores usable: " in head
    assert "\n  BLAS: " in head and " threads" in head
    assert re.search(r"SGEMM 1024³: 1 thread [\d.]+ GFLOP/s ±[\d.]+%, "
                     r"all threads [\d.]+ GFLOP/s", head)
    assert re.search(r"copy bandwidth \(64 MiB, read \+ write\): 1 thread [\d.]+ GB/s", head)
    # with the context measured, a kernel's rate is also a fraction of the copy bandwidth
    assert re.search(r"\nrelu +1e2 reference .* GB/s +[\d.]+%\n", rest)


def test_kernel_rows_stream_one_measurement_at_a_time(monkeypatch):
    timed = []
    monkeypatch.setattr(_bench, "time_calls",
                        lambda fn, repeat, target: timed.append(1) or [1e-3] * repeat)
    rows = _bench.kernel_rows(["sgd_update"], [100], _bench.compiled_backends(), repeat=2)
    first = next(rows)
    assert first["backend"] == "reference" and len(timed) == 1   # printed before the rest run
    rest = list(rows)
    assert len(timed) == 1 + len(rest)


def test_sig_and_seconds_formatting():
    assert [_bench.sig(x) for x in (0.004234, 0.4234, 4.234, 42.34, 423.4, 4234.0)] == [
        "0.0042", "0.42", "4.2", "42", "420", "4200"]
    assert _bench.sig(3.2e-5) == "3.2e-05" and _bench.sig(None) == "-"
    assert _bench.sig(0.996) == "1.0" and _bench.sig(99.6) == "100" and _bench.sig(-0.42) == "-0.42"
    assert _bench.format_seconds(0.0123) == "12.3ms" and _bench.format_seconds(4.2e-8) == "42.0ns"


def test_bench_list_and_backend_choice(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name in _bench.CASES:
        assert name in out
    assert main(["bench", "--backend", "no_such_backend"]) == 2
    assert "not available" in capsys.readouterr().err
    compiled = _bench.compiled_backends()
    if compiled:
        argv = ["bench", "--quick", "--sizes", "50", "--repeat", "1", "--no-context",
                "--no-step", "--kernels", "relu", "--backend", compiled[0]]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f" {compiled[0]} " in out
        for other in compiled[1:]:
            assert f" {other} " not in out


def test_bench_rejects_unknown_kernel_and_bad_size(capsys):
    assert main(["bench", "--kernels", "no_such_kernel"]) == 2
    assert "unknown kernels" in capsys.readouterr().err
    assert main(["bench", "--sizes", "0"]) == 2
    assert main(["bench", "--sizes", "1.5"]) == 2


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
    proc = run_python("-m", "nnfast", "--version", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert nnfast.__version__ in proc.stdout


def test_demo_end_to_end(capsys):
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-compare"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "accuracy" in out


def test_bad_backend_variable_is_one_line_not_a_traceback():
    r = run_python("-m", "nnfast", "info", env=dict(os.environ, NNFAST_BACKEND="bogus"))
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
    r = run_python("-c", code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Traceback" not in r.stdout and "BrokenPipe" not in r.stdout, r.stdout
    assert lines[0] in ("0", "141"), r.stdout


def test_demo_plot_prints_the_paths(capsys, tmp_path):
    assert main(["demo", "--epochs", "1", "--no-progress", "--no-compare", "--plot",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("learning_curve", "validation_curve", "loss_history"):
        path = tmp_path / f"{name}.png"
        assert f"saved {path}" in out and path.stat().st_size > 0


@pytest.mark.parametrize("load, reference", [([1.2, 1.0, 0.5], False), ([0.1, 0.2, 0.3], True)])
def test_bench_records_the_load_and_warns_when_busy(monkeypatch, capsys, tmp_path, load,
                                                    reference):
    monkeypatch.setattr(_bench, "load_average", lambda: load)
    path = tmp_path / "run.json"
    argv = ["bench", "--quick", "--sizes", "100", "--repeat", "1", "--no-context", "--no-step",
            "--kernels", "relu", "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    shown = " ".join(f"{x:g}" for x in load)
    assert f"load average at start: {shown} (1, 5, 15 min)" in out.split("kernels:")[0]
    assert f"load average at end: {shown}" in out.split("kernels:")[1]
    assert ("not a reference run" in out) is not reference
    assert f"JSON written to {path}" in out
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]    # no temporary file left
    run = json.loads(path.read_text())
    assert run["load_average"] == {"start": load, "end": load}
    assert run["reference_run"] is reference
    # 1.2 is busy at the start, not at the end (where the run itself adds 1)
    assert len(run["load_warnings"]) == (0 if reference else 1)
    assert [r["backend"] for r in run["kernels"]] == ["reference"] + _bench.compiled_backends()


def test_bench_json_on_stdout_warns_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr(_bench, "load_average", lambda: [3.0, 3.0, 3.0])
    argv = ["bench", "--json", "--quick", "--sizes", "100", "--repeat", "1", "--no-context",
            "--no-step", "--kernels", "relu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["reference_run"] is False
    assert "nnfast bench: warning: load average 3 exceeds 0.5" in captured.err
