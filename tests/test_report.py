"""``nnfast report`` over a small real pytest-benchmark run of ``bench/``: the Markdown table,
the plotted data and the comparison of two runs."""
import copy
import json
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
    select = "test_update and sgd_update and float32 and (" + " or ".join(SIZES) + ")"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/bench_optim.py", "-q", "-p", "no:cacheprovider",
         "-k", select, "--benchmark-only", "--benchmark-enable", "--benchmark-max-time=0.02",
         "--benchmark-min-rounds=5", f"--benchmark-json={path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path


def test_records_and_group_parsing(run_json):
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
            assert cell == f"{report.sig(ratio)}×"
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
