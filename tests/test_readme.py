"""The README's Python examples run as written (docs that cannot rot)."""
import importlib.util
import pathlib
import re


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert len(_blocks()) >= 4, "README.md lost its Python examples"


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # the examples write digits.npz
    namespace = {}
    for block in _blocks():
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue  # "Use from PyTorch": torch is an optional extra
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "digits.npz").exists()
    assert namespace["model"].check_gradients(namespace["X"][:8], namespace["y"][:8]).diff < 1e-7
