"""Constants written in both languages agree (issue 8, item 4): the Cython declarations in
``src/kernels/kernel_common.pxd`` against the Python sources of truth (``nnfast._kinds``,
``nnfast._backend.PARALLEL_MIN``, the Numba backend's fixed chunk ``_fastmath.CHUNK``)."""
import pathlib
import re

import pytest

from nnfast import _backend, _kinds

PXD = pathlib.Path(__file__).resolve().parents[1] / "src" / "kernels" / "kernel_common.pxd"


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


def test_activation_codes_match_kinds():
    enums = _pxd_enums()
    for name in ("IDENTITY", "SIGMOID", "TANH", "RELU", "LEAKY_RELU", "SOFTMAX"):
        assert enums[name] == getattr(_kinds, name), name
    # GRAD + code must not collide with any code
    assert enums["GRAD"] > max(_kinds.ACTIVATIONS.values()) and enums["GRAD"] > _kinds.SOFTMAX


def test_parallel_threshold_and_block_match_numba():
    enums = _pxd_enums()
    assert enums["PARALLEL_MIN"] == _backend.PARALLEL_MIN
    numba_fastmath = pytest.importorskip("nnfast._numba._fastmath")
    assert enums["BLOCK"] == numba_fastmath.CHUNK
