"""``nnfast report`` over a small real pytest-benchmark run of ``bench/``: the Markdown table,
the plotted data and the comparison of two runs."""
import copy
import json
import os
import pathlib
import subprocess
import sys

import pytest

from nnfast import report
from nnfast.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = ("1e3", "1e4", "1e5")


@pytest.fixture(scope="module")
def run_json(tmp_path_factory):
    """pytest-benchmark timing ``sgd_update`` float32 at 1e3..1e5 in every backend."""
    if not (ROOT / "bench" / "bench_optim.py").exists():
        pytest.skip("bench/ is not beside tests/ (installed package without the sources)")
    path = tmp_path_factory.mktemp("bench") / "run.json"
    select = ("test_update and not numpy and sgd_update and float32 and ("
              + " or ".join(SIZES) + ")")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/bench_optim.py", "-q", "-p", "no:cacheprovider",
         "-k", select, "--benchmark-only", "--benchmark-enable", "--benchmark-max-time=0.02",
         "--benchmark-min-rounds=5", f"--benchmark-json={path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        # an xdist worker's PYTEST_XDIST_* would make this child pytest-benchmark refuse to time
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path


def test_records_and_group_parsing(run_json):
    data = json.loads(run_json.read_text())       # nnfast._pytest_load, through addopts
    load = data["load_average"]
    assert len(load["start"]) == 3 and len(load["end"]) == 3 and "load_warnings" in data
    assert report.load_run(run_json).meta["load_average"] == load
    records = report.load(run_json)
    groups = {r.group for r in records}
    assert groups == {f"sgd-float32-{s}" for s in SIZES}
    assert {r.impl for r in records} >= {"reference"}
    for r in records:
        assert r.min <= r.median and r.iqr >= 0 and r.rounds >= 5
    assert report.split_group("softmax-float64-1024x10") == ("softmax", "float64", "1024x10")
    assert report.split_group("overhead-relu-float32-64") == ("overhead-relu", "float32", "64")
    assert report.split_group("fit-digits") == ("fit-digits", "", "")
    assert report.size_value("1024x10") == 10240 and report.size_value("b128") is None


def test_markdown_table_holds_the_ratios(run_json):
    records = report.load(run_json)
    by = {(r.group, r.impl): r for r in records}
    text = report.markdown_table(records)
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["group", "baseline", "baseline median ± IQR"]
    impls = header[3:]
    assert set(impls) == {r.impl for r in records} - {"reference"}
    assert len(lines) == 2 + len(SIZES)
    for size, line in zip(SIZES, lines[2:]):     # ordered by size as a number
        cells = [c.strip() for c in line.strip("|").split("|")]
        group = f"sgd-float32-{size}"
        assert cells[:2] == [group, "reference"]
        for impl, cell in zip(impls, cells[3:]):
            ratio = by[(group, "reference")].median / by[(group, impl)].median
            base, own = by[(group, "reference")], by[(group, impl)]
            noisy = max(base.iqr / base.median, own.iqr / own.median) > 0.10   # a short run
            assert cell == ("~" if noisy else "") + f"{report.sig(ratio)}×"
    assert "0.00" not in text


def test_plotted_data_are_the_speedups(run_json, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    import matplotlib.image
    import matplotlib.pyplot as plt

    records = report.load(run_json)
    by = {(r.group, r.impl): r for r in records}
    figures = report.speedup_figures(records)
    assert list(figures) == ["sgd-float32"]
    ax = figures["sgd-float32"].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not
             line.get_label().startswith("_")}
    assert set(lines) == {r.impl for r in records} - {"reference"}
    for impl, line in lines.items():
        assert list(line.get_xdata()) == [1e3, 1e4, 1e5]
        expected = [by[(f"sgd-float32-{s}", "reference")].median
                    / by[(f"sgd-float32-{s}", impl)].median for s in SIZES]
        assert list(line.get_ydata()) == pytest.approx(expected)
    assert ax.get_xscale() == "log" and "speedup" in ax.get_ylabel()
    plt.close("all")
    paths = report.save_plots(records, tmp_path / "plots")
    assert [pathlib.Path(p).name for p in paths] == ["speedup-sgd-float32.png"]
    image = matplotlib.image.imread(paths[0])
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0          # something was drawn


def _slowed(run_json, tmp_path, group, impl):
    """The run, with one benchmark shifted later by 3 × (its median + its IQR): a slowdown
    beyond 2 IQRs and 5%, whatever the run's noise (a shift keeps the IQR)."""
    data = copy.deepcopy(json.loads(run_json.read_text()))
    for b in data["benchmarks"]:
        if b["group"] == group and b["extra_info"]["backend"] == impl:
            shift = 3 * (b["stats"]["median"] + b["stats"]["iqr"])
            for key in ("min", "max", "mean", "median", "q1", "q3"):
                b["stats"][key] += shift
    path = tmp_path / "slowed.json"
    path.write_text(json.dumps(data))
    return path


def test_compare_flags_only_changes_beyond_the_noise(run_json, tmp_path):
    records = report.load(run_json)
    same = report.compare(records, records)
    assert len(same) == len(records)
    assert all(c.verdict == "within noise" for c in same)
    slowed = report.load(_slowed(run_json, tmp_path, "sgd-float32-1e4", "reference"))
    changes = report.compare(records, slowed)
    flagged = [(c.group, c.impl) for c in changes if c.verdict == "regression"]
    assert flagged == [("sgd-float32-1e4", "reference")]
    # The same slowdown is not flagged when the runs are that noisy.
    noisy = [r._replace(iqr=10 * (r.median + r.iqr)) for r in records]
    assert all(c.verdict == "within noise" for c in report.compare(noisy, slowed))
    # Faster is reported as such.
    assert {c.verdict for c in report.compare(slowed, records)} == {"within noise", "faster"}


def test_report_command(run_json, tmp_path, capsys):
    slowed = _slowed(run_json, tmp_path, "sgd-float32-1e3", "reference")
    assert main(["report", str(slowed), "--baseline", str(run_json)]) == 0
    out = capsys.readouterr().out
    assert "| sgd-float32-1e3 | reference |" in out and "**regression**" in out
    assert "1 regression(s) beyond the noise" in out
    assert main(["report", str(slowed), "--baseline", str(run_json),
                 "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert report.main([str(run_json)]) == 0
    assert "| sgd-float32-1e5 | reference |" in capsys.readouterr().out


def test_readme_section_from_one_run(run_json):
    """bench/perf_readme.py's Markdown: the run's CPU, and each group's speedups from it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("perf_readme", ROOT / "bench" / "perf_readme.py")
    perf_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_readme)
    records = report.load(run_json)
    by = {(r.group, r.impl): r for r in records}
    data = json.loads(run_json.read_text())
    text = perf_readme.section(run_json, label="A label.")
    assert text.startswith(f"CPU: {data['machine_info']['cpu']['brand_raw']}")
    assert "A label." in text.splitlines()[0]
    for size in SIZES:
        group = f"sgd-float32-{size}"
        line = next(line for line in text.splitlines() if line.startswith(f"| `{group}` |"))
        for impl in {r.impl for r in records} - {"reference"}:
            ratio = by[(group, "reference")].median / by[(group, impl)].median
            assert f"{impl} {report.sig(ratio)}×" in line


# --- the marking rules, on synthetic runs ---------------------------------------------------

def _pytest_benchmark_run(path, rows, **top):
    """A pytest-benchmark JSON file with ``rows`` of (group, impl, median s, iqr s)."""
    data = {"machine_info": {"cpu": {"brand_raw": "Synthetic CPU"}},
            "datetime": "2026-12-07T10:00:00", **top,
            "benchmarks": [{"group": g, "name": f"test[{i}]", "extra_info": {"backend": i},
                            "stats": {"median": m, "iqr": q, "min": m - q, "rounds": 9}}
                           for g, i, m, q in rows]}
    path.write_text(json.dumps(data))
    return path


def _cells(text, group):
    header = next(line for line in text.splitlines() if line.startswith("| group |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    line = next(line for line in text.splitlines() if line.startswith(f"| {group} |"))
    return dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))


def test_noisy_cells_and_noisy_baselines_are_marked(tmp_path):
    path = _pytest_benchmark_run(tmp_path / "run.json", [
        ("adam-float32-1e6", "reference", 1e-3, 0.05e-3),   # 5%
        ("adam-float32-1e6", "numba", 0.5e-3, 0.05e-3),     # 10%: not above the limit
        ("adam-float32-1e6", "cython", 0.25e-3, 0.05e-3),   # 20%: noisy
        ("sgd-float32-1e6", "reference", 1e-3, 0.3e-3),     # the baseline itself is noisy
        ("sgd-float32-1e6", "numba", 0.5e-3, 0.01e-3),
    ])
    text = report.markdown_table(report.load(path))
    adam = _cells(text, "adam-float32-1e6")
    assert adam["numba"] == "2.0×" and adam["cython"] == "~4.0×"
    assert adam["baseline median ± IQR"] == "1.00ms ±5.0%"
    sgd = _cells(text, "sgd-float32-1e6")
    assert sgd["numba"] == "~2.0×"                       # quiet, but against a noisy baseline
    assert sgd["baseline median ± IQR"] == "~1.00ms ±30%"
    assert "| 4.0×" not in text and "| 2.0× |" not in text.split("sgd")[1]


def test_a_step_faster_than_its_gemms_is_implausible(tmp_path):
    path = _pytest_benchmark_run(tmp_path / "run.json", [
        ("step-64-128-10-b32", "reference", 5e-3, 0.1e-3),
        ("step-64-128-10-b32", "gemms", 1e-3, 0.01e-3),
        ("step-64-128-10-b32", "auto", 0.5e-3, 0.01e-3),    # half its own GEMMs' time
        ("step-64-128-10-b32", "numba", 2e-3, 0.02e-3),
        ("step-64-128-10-b32", "jax-jit", 0.8e-3, 0.01e-3),   # a peer: its own GEMM kernels
    ])
    records = report.load(path)
    assert report.marks(records)[("step-64-128-10-b32", "auto")] == "implausible"
    cells = _cells(report.markdown_table(records), "step-64-128-10-b32")
    assert cells["auto"] == "implausible" and cells["numba"] == "2.5×"
    assert cells["jax-jit"] == "6.2×"
    assert cells["gemms"] == "5.0×"
    assert "10×" not in report.markdown_table(records)     # auto's ratio is not printed
    assert "implausible" in report.text_table(records) and "10.00x" not in report.text_table(
        records)


def test_records_without_spread_and_unrecorded_load(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "format": "nnfast-records/1", "title": "Old run", "date": "2026-11-28",
        "source": "transcribed", "load_note": "3-9 on 2 cores",
        "records": [
            {"group": "fit-digits", "impl": "sklearn", "median": 1.0, "iqr": None},
            {"group": "fit-digits", "impl": "nnfast", "median": 0.2, "iqr": None},
            {"group": "adam-float32-1e7", "impl": "reference", "median": 0.1, "iqr": 0.001},
            {"group": "adam-float32-1e7", "impl": "cython", "median": 0.02, "spread_max": 0.1},
            {"group": "adam-float32-1e7", "impl": "numba", "median": 0.02, "iqr": None},
        ]}))
    run = report.load_run(path)
    text = report.markdown_table(run.records)
    fit = _cells(text, "fit-digits")
    assert fit["nnfast"] == "~5.0×" and "not recorded" in fit["baseline median ± IQR"]
    adam = _cells(text, "adam-float32-1e7")
    assert adam["cython"] == "5.0×" and adam["numba"] == "~5.0×"
    page = report.markdown_page(run)
    assert page.startswith("### Old run") and "Source: transcribed" in page
    assert "**Not a reference run**: load average not recorded (3-9 on 2 cores)" in page


def test_load_average_decides_a_reference_run(tmp_path):
    rows = [("relu-float32-1e3", "reference", 1e-6, 0.0)]
    busy = report.load_run(_pytest_benchmark_run(
        tmp_path / "busy.json", rows, load_average={"start": [2.5, 1.0, 0.5], "end": None}))
    quiet = report.load_run(_pytest_benchmark_run(
        tmp_path / "quiet.json", rows, load_average={"start": [0.2, 0.1, 0.1],
                                                      "end": [1.1, 0.3, 0.1]}))
    assert report.reference_run(busy.meta) == "load average 2.5 at its start exceeds 0.5"
    assert report.reference_run(quiet.meta) is None
    assert "A reference run" in report.markdown_page(quiet)
    assert "**Not a reference run**: load average 2.5 at its start" in report.markdown_page(busy)


def test_nnfast_bench_json_is_a_kept_run(tmp_path):
    bench_run = {
        "date": "2026-12-07T10:00:00", "load_average": {"start": [0.1, 0.1, 0.1],
                                                        "end": [1.0, 0.5, 0.2]},
        "context": {"cpu": "Synthetic CPU"},
        "kernels": [
            {"kernel": "relu", "size": 1000, "dtype": "float32", "backend": "reference",
             "median": 2e-6, "iqr": 1e-8, "min": 2e-6, "times": [2e-6] * 3},
            {"kernel": "relu", "size": 1000, "dtype": "float32", "backend": "numba",
             "median": 1e-6, "iqr": 5e-7, "min": 1e-6, "times": [1e-6] * 3},
            {"kernel": "relu", "size": 1000, "dtype": "float32", "backend": "cython",
             "skipped": "not built"}],
        "step": [
            {"kernel": "step-784-10-b128", "dtype": "float32", "backend": b, "median": m,
             "iqr": 0.0, "min": m, "times": [m] * 3}
            for b, m in (("gemms", 1e-3), ("reference", 4e-3), ("auto", 2e-3))]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench_run))
    run = report.load_run(path)
    assert {(r.group, r.impl) for r in run.records} == {
        ("relu-float32-1e3", "reference"), ("relu-float32-1e3", "numba"),
        ("step-784-10-b128", "gemms"), ("step-784-10-b128", "reference"),
        ("step-784-10-b128", "auto")}
    text = report.markdown_table(run.records)
    assert _cells(text, "relu-float32-1e3")["numba"] == "~2.0×"     # ±50%
    assert _cells(text, "step-784-10-b128")["auto"] == "2.0×"
    assert report.reference_run(run.meta) is None


def test_docs_pages_are_generated_from_the_kept_runs(tmp_path, capsys):
    folder = tmp_path / "bench"
    folder.mkdir()
    _pytest_benchmark_run(folder / "a.json", [("relu-float32-1e3", "reference", 1e-6, 0.0),
                                              ("relu-float32-1e3", "numba", 5e-7, 0.0)])
    _pytest_benchmark_run(folder / "b.json", [("relu-float32-1e3", "reference", 1e-6, 0.0)])
    out = tmp_path / "pages"
    assert main(["report", "--docs", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.md", "b.md"]    # no temporary files
    assert (out / "a.md").read_text() == report.markdown_page(report.load_run(folder / "a.json"))
    assert "| `relu-float32-1e3` | reference 1.00us ±0.0% | numba 2.0× |" in (
        out / "a.md").read_text()
    assert "2 page(s)" in capsys.readouterr().out
    bad = folder / "c.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="neither a pytest-benchmark run"):
        report.docs_pages(folder, out)


# --- nnfast bench: re-measured once, then marked ------------------------------------------

def _timings(monkeypatch, sequences):
    """``_bench.time_calls`` returning the next per-call list of ``sequences[name]``, where
    ``name`` is the backend in force (or what ``fn.name`` says)."""
    from nnfast import _bench, _backend

    calls = []

    def time_calls(fn, repeat, target):
        name = getattr(fn, "name", None) or _backend.get_backend()
        calls.append(name)
        return sequences[name].pop(0)
    monkeypatch.setattr(_bench, "time_calls", time_calls)
    return calls


QUIET = [1e-3] * 5
NOISY = [0.5e-3, 0.9e-3, 1e-3, 1.1e-3, 2e-3]       # IQR/median 20%


def test_bench_remeasures_a_noisy_cell_once_then_marks_it(monkeypatch):
    from nnfast import _bench

    calls = _timings(monkeypatch, {"reference": [QUIET], "numba": [NOISY, QUIET],
                                   "cython": [NOISY, NOISY]})
    backends = [b for b in ("numba", "cython")]
    monkeypatch.setattr(_bench, "missing", lambda backend, kernel: None)
    rows = {r["backend"]: r for r in _bench.kernel_rows(["relu"], [100], backends, repeat=5)}
    assert calls == ["reference", "numba", "numba", "cython", "cython"]
    assert not rows["reference"]["remeasured"] and rows["reference"]["mark"] == ""
    assert rows["numba"]["remeasured"] and rows["numba"]["mark"] == ""
    assert rows["numba"]["first_times"] == NOISY and rows["numba"]["times"] == QUIET
    assert rows["cython"]["remeasured"] and rows["cython"]["mark"] == "noisy"
    line = _bench.format_kernel_row(rows["cython"])
    assert " ~1.0 " in line and "~" not in _bench.format_kernel_row(rows["numba"])


def test_bench_marks_cells_of_a_noisy_reference(monkeypatch):
    from nnfast import _bench

    _timings(monkeypatch, {"reference": [NOISY, NOISY], "numba": [QUIET]})
    monkeypatch.setattr(_bench, "missing", lambda backend, kernel: None)
    rows = list(_bench.kernel_rows(["relu"], [100], ["numba"], repeat=5))
    assert [r["mark"] for r in rows] == ["noisy", "noisy"]


def test_bench_step_faster_than_its_gemms_is_implausible(monkeypatch):
    from nnfast import _bench

    def named(name):
        fn = (lambda: None)
        fn.name = name
        return fn
    monkeypatch.setattr(_bench, "step_gemms", lambda sizes, m, dtype: named("gemms"))
    monkeypatch.setattr(_bench, "train_step", lambda impl, sizes, m, dtype: named(impl))
    fast = [0.5e-3] * 5
    calls = _timings(monkeypatch, {"gemms": [QUIET], "reference": [[4e-3] * 5],
                                   "auto": [fast, fast], "numba": [fast, [2e-3] * 5]})
    rows = {r["backend"]: r for r in _bench.step_rows(["numba"], repeat=5)}
    assert calls == ["gemms", "reference", "auto", "auto", "numba", "numba"]
    assert rows["auto"]["mark"] == "implausible" and rows["auto"]["remeasured"]
    assert rows["numba"]["mark"] == "" and rows["numba"]["of_gemms"] == pytest.approx(2.0)
    line = _bench.format_step_row(rows["auto"])
    assert "implausible" in line and "0.5" not in line
    assert _bench.format_step_row(rows["numba"]).split()[-2:] == ["2.00", "2.0"]


def test_plots_draw_noisy_points_open(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    import matplotlib.pyplot as plt

    path = _pytest_benchmark_run(tmp_path / "run.json", [
        ("adam-float32-1e4", "reference", 1e-4, 1e-6),
        ("adam-float32-1e4", "numba", 0.5e-4, 0.2e-4),      # 40%: noisy
        ("adam-float32-1e5", "reference", 1e-3, 1e-5),
        ("adam-float32-1e5", "numba", 0.25e-3, 1e-6),
    ])
    records = report.load(path)
    assert report.plot_data(records, with_marks=True)["adam-float32"]["numba"] == (
        [1e4, 1e5], [2.0, 4.0], ["noisy", ""])
    ax = report.speedup_figures(records)["adam-float32"].axes[0]
    open_points = [line for line in ax.get_lines() if line.get_label() == "_noisy"]
    assert len(open_points) == 1 and list(open_points[0].get_xdata()) == [1e4]
    assert open_points[0].get_markerfacecolor() == "white"
    assert "noisy" in ax.get_title()
    plt.close("all")


def test_report_needs_a_run_or_docs(capsys):
    assert main(["report"]) == 2
    assert "give a run" in capsys.readouterr().err
    assert main(["report", "--docs"]) == 2             # --docs takes a folder
