"""nnfast._demo.run_demo: trains on digits, reports accuracy, time and speedup."""
import numpy as np
import pytest

import nnfast
from nnfast import selection
from nnfast._demo import run_demo


def test_run_demo_reports_accuracy_time_and_speedup():
    lines = []
    result = run_demo(epochs=4, progress=False, compare_reference=True, out=lines.append)
    assert result["accuracy"] > 0.9 and result["reference_accuracy"] > 0.9
    assert result["time"] > 0 and result["reference_time"] > 0
    assert result["speedup"] == result["reference_time"] / result["time"]
    assert result["backend"] == nnfast.get_backend() and result["epochs"] == 4
    assert result["n_train"] + result["n_test"] == 1797
    text = "\n".join(lines)
    assert "test accuracy" in text and "speedup" in text and "digits" in text


def test_run_demo_without_reference_and_cli_keyword(capsys):
    result = run_demo(epochs=1, progress=False, compare=False)
    assert "speedup" not in result
    assert "test accuracy" in capsys.readouterr().out


def test_demo_plot_saves_the_three_figures(tmp_path):
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (nnfast[plot]) missing")
    matplotlib.use("Agg")
    from matplotlib.image import imread

    lines = []
    result = run_demo(epochs=2, progress=False, compare=False, out=lines.append,
                      plot_dir=tmp_path / "figs")
    names = ("learning_curve", "validation_curve", "loss_history")
    assert result["plots"] == [str(tmp_path / "figs" / f"{n}.png") for n in names]
    for path in result["plots"]:
        assert f"saved {path}" in lines
        assert imread(path).shape[:2] == (480, 640)        # a real PNG, 6.4x4.8 in at 100 dpi
    fig = result["figures"]
    (ax,) = fig["validation_curve"].axes
    lines_by = {line.get_label(): line for line in ax.get_lines()}
    assert ax.get_xscale() == "log" and "λ" in ax.get_xlabel()
    assert np.allclose(lines_by["J_cv"].get_xdata(), selection.DEFAULT_LAMBDAS)
    assert any(label.startswith("best λ") for label in lines_by)
    (ax,) = fig["learning_curve"].axes
    lines_by = {line.get_label(): line for line in ax.get_lines()}
    sizes = lines_by["J_train"].get_xdata()
    assert sizes[-1] == result["n_train"] and len(sizes) == 10 and np.all(np.diff(sizes) > 0)
    assert "size" in ax.get_xlabel() and set(lines_by) == {"J_train", "J_cv"}
    (ax,) = fig["loss_history"].axes
    lines_by = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines_by["train loss"].get_xdata()) == [1, 2]
    assert lines_by["train loss"].get_ydata()[-1] == result["final_loss"]
    assert len(lines_by["validation loss"].get_ydata()) == 2
    assert ax.get_xlabel() == "epoch"
