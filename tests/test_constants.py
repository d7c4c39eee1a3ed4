"""Constants written in both languages agree (issue 8, item 4): the Cython declarations in
``src/kernels/kernel_common.pxd`` against the one Python source, ``nnfast._constants``, which
every Python module (the dispatcher, the Numba kernels, the reference) imports."""
import ast
import pathlib
import re

import pytest

from nnfast import _backend, _constants, _kinds

ROOT = pathlib.Path(__file__).resolve().parents[1]
PXD = ROOT / "src" / "kernels" / "kernel_common.pxd"
PACKAGE = pathlib.Path(_constants.__file__).resolve().parent


def _pxd_enums():
    if not PXD.exists():
        pytest.skip(f"{PXD} is not here (an installed copy without the sources)")
    text = PXD.read_text(encoding="utf-8")
    values = {}
    for block in re.findall(r"cdef enum:\n((?:[ \t]+\w+ = \d+.*\n)+)", text):
        for name, value in re.findall(r"^[ \t]+(\w+) = (\d+)", block, re.M):
            values[name] = int(value)
    assert values, f"no `cdef enum` constants found in {PXD}"
    return values


def _python_ints():
    return {name: value for name, value in vars(_constants).items()
            if name.isupper() and type(value) is int}


def test_every_pxd_constant_is_the_python_one():
    enums = _pxd_enums()
    python = _python_ints()
    assert set(enums) == set(python), (sorted(enums), sorted(python))
    for name, value in enums.items():
        assert value == python[name], name


def test_activation_codes_are_distinct_and_below_grad():
    codes = list(_constants.ACTIVATIONS.values()) + [_constants.SOFTMAX]
    assert len(set(codes)) == len(codes)
    assert _constants.GRAD > max(codes)         # GRAD + code never collides with a code
    assert _constants.GRAD_FROM_OUTPUT <= set(codes)


def test_python_modules_share_the_objects():
    assert _backend.PARALLEL_MIN is _constants.PARALLEL_MIN
    for name in ("IDENTITY", "SIGMOID", "TANH", "RELU", "LEAKY_RELU", "SOFTMAX", "ACTIVATIONS",
                 "GRAD_FROM_OUTPUT"):
        assert getattr(_kinds, name) is getattr(_constants, name), name
    fastmath = pytest.importorskip("nnfast._numba._fastmath")
    assert fastmath.PARALLEL_MIN is _constants.PARALLEL_MIN
    assert fastmath.BLOCK is _constants.BLOCK


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or ""), [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_numba_kernels_do_not_import_the_dispatcher():
    """Numba's cache is keyed on the backend's sources and on ``_cache._SHARED``: a kernel
    module importing ``_backend`` would tie every compiled kernel to the dispatch table."""
    for path in sorted((PACKAGE / "_numba").glob("*.py")):
        for module, names in _imports(path):
            assert "_backend" not in module.split(".") and "_backend" not in names, path.name
    from nnfast._numba import _cache

    assert "_constants.py" in _cache._SHARED and "_backend.py" not in _cache._SHARED
