"""nnfast._demo.run_demo: trains on digits, reports accuracy, time and speedup."""
import nnfast
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
