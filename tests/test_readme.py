"""The README's and the user guide's Python examples run as written, each on its own: in a fresh
process, from an empty folder, printing no warning (docs that cannot rot, and no surprise for a
reader who pastes one block). The processes run two at a time where two CPUs are usable."""
import concurrent.futures
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from nnfast._machine import usable_cpus

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _blocks(path=README):
    if not path.exists():
        return []
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


#: (page, index) -> block, for every example of the README and of the guide's pages.
EXAMPLES = {(path.name, i): block for path in [README, *GUIDE]
            for i, block in enumerate(_blocks(path))}


def _run_alone(block, folder):
    """``python -c block`` in ``folder``, with every warning printed."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", "NNFAST_BACKEND")}
    env["PYTHONWARNINGS"] = "default"       # every warning printed, none hidden by a filter
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, "-c", block], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every example's finished process and its folder, each example in its own empty one."""
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(min(2, usable_cpus())) as pool:
        for key, block in EXAMPLES.items():
            if "import torch" in block and not HAVE_TORCH:
                continue
            folder = tmp_path_factory.mktemp("example")
            jobs[key] = (pool.submit(_run_alone, block, folder), folder)
        return {key: (job.result(), folder) for key, (job, folder) in jobs.items()}


def test_readme_has_examples():
    """The tour: kernels, MLP, the scikit-learn front, the PyTorch front, model selection."""
    blocks = _blocks()
    assert len(blocks) >= 5, "README.md lost its Python examples"
    for needle in ("nnfast.adam_update", "nnfast.MLP", "nnfast.sklearn", "nnfast.torch",
                   "selection.choose_lambda"):
        assert any(needle in b for b in blocks), f"no README example uses {needle}"


@pytest.mark.parametrize("page, index", list(EXAMPLES))
def test_example_runs_alone(page, index, runs):
    block = EXAMPLES[(page, index)]
    if (page, index) not in runs:
        pytest.skip("a PyTorch front example: torch is the optional 'torch' extra")
    proc, folder = runs[(page, index)]
    assert proc.returncode == 0, f"{page} example {index}:\n{block}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Warning" not in proc.stderr, f"{page} example {index} warned:\n{proc.stderr[-3000:]}"
    if page == "README.md" and "model.save(" in block:
        assert (folder / "digits.npz").exists()
