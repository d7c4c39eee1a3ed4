"""The README's and the user guide's Python examples run as written, each on its own: in a fresh
process, from an empty folder, printing no warning (docs that cannot rot, and no surprise for a
reader who pastes one block)."""
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))


def _blocks(path=README):
    if not path.exists():
        return []
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _run_alone(block, folder):
    """Run ``block`` with ``python -c`` in ``folder``; fail on an error or a printed warning."""
    if "import torch" in block and importlib.util.find_spec("torch") is None:
        pytest.skip("a PyTorch front example: torch is the optional 'torch' extra")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", "NNFAST_BACKEND")}
    env["PYTHONWARNINGS"] = "default"       # every warning printed, none hidden by a filter
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, "-c", block], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{block}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Warning" not in proc.stderr, f"{block}\nwarned:\n{proc.stderr[-3000:]}"


def test_readme_has_examples():
    """The tour: kernels, MLP, the scikit-learn front, the PyTorch front, model selection."""
    blocks = _blocks()
    assert len(blocks) >= 5, "README.md lost its Python examples"
    for needle in ("nnfast.adam_update", "nnfast.MLP", "nnfast.sklearn", "nnfast.torch",
                   "selection.choose_lambda"):
        assert any(needle in b for b in blocks), f"no README example uses {needle}"


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs_alone(index, tmp_path):
    block = _blocks()[index]
    _run_alone(block, tmp_path)
    if "model.save(" in block:
        assert (tmp_path / "digits.npz").exists()


@pytest.mark.parametrize("page, index", [(p.name, i) for p in GUIDE
                                         for i in range(len(_blocks(p)))])
def test_guide_example_runs_alone(page, index, tmp_path):
    _run_alone(_blocks(ROOT / "docs" / "guide" / page)[index], tmp_path)
