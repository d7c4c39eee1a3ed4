"""MLP.save / MLP.load on hostile files: every malformed file is one ModelFileError (a
ValueError) naming the file and the problem, raised before any large allocation.

The files are generated: a valid save, then one of the ways a file goes wrong (truncated at
every length, one byte flipped anywhere, members missing or swapped, a pickle, a zip bomb, a
config declaring huge layers, an array header declaring 2**40 elements, deep JSON), each
written by hand with zipfile / numpy.lib.format as an attacker would.
"""
import errno
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import nnfast
from nnfast import ModelFileError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    net = nnfast.MLP([5, 7, 3], batchnorm=True, seed=0)
    path = net.save(tmp_path_factory.mktemp("load") / "model")
    with open(path, "rb") as f:
        return net, f.read()


def _write(tmp_path, data, name="bad.npz"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _npz(members, compress=zipfile.ZIP_STORED):
    """A zip of raw ``.npy`` members: name -> bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def _members(net, config=None, params=None, buffers=None):
    cfg = dict(net.get_config(), format=1) if config is None else config
    return {"config": _npy(np.array(json.dumps(cfg))),
            "flat_params": _npy(net.flat_params if params is None else params),
            "flat_buffers": _npy(net.flat_buffers if buffers is None else buffers)}


def _expect_error(path, match=None):
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match) as info:
            nnfast.MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert peak < 10 * 2**20, f"load allocated {peak} bytes before raising"
    return info.value


def test_save_without_suffix_loads_without_suffix(tmp_path):
    net = nnfast.MLP([4, 3], seed=1)
    written = net.save(tmp_path / "model")
    assert written == str(tmp_path / "model.npz")
    loaded = nnfast.MLP.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.flat_params, net.flat_params)
    with pytest.raises(FileNotFoundError):
        nnfast.MLP.load(tmp_path / "other")


@pytest.mark.parametrize("name", ["other", "other.npz"])
def test_missing_file_is_a_model_file_error_and_a_file_not_found_error(tmp_path, name):
    """As the README says, every file ``save`` did not write — a missing one too — raises
    ModelFileError (a ValueError) naming it; code that catches FileNotFoundError still does."""
    path = tmp_path / name
    with pytest.raises(ModelFileError, match="no such file") as info:
        nnfast.MLP.load(path)
    exc = info.value
    assert isinstance(exc, ValueError) and isinstance(exc, FileNotFoundError)
    assert str(path) in str(exc) and exc.filename == str(path) and exc.errno == errno.ENOENT
    assert ("(nor other.npz)" in str(exc)) == (name == "other")   # the suffixed path tried too


def test_every_truncation(saved, tmp_path):
    _, data = saved
    for n in list(range(0, len(data), max(1, len(data) // 200))) + [len(data) - 1]:
        _expect_error(_write(tmp_path, data[:n]))


def test_every_flipped_byte(saved, tmp_path):
    """One byte changed anywhere: a clean error, or (in array data) a model that loads."""
    net, data = saved
    for i in range(0, len(data), max(1, len(data) // 300)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        path = _write(tmp_path, bytes(bad))
        try:
            model = nnfast.MLP.load(path)
        except ModelFileError as exc:
            assert str(path) in str(exc)
        else:
            assert model.flat_params.shape == net.flat_params.shape


@pytest.mark.parametrize("label, edit, match", [
    ("config missing", lambda m: m.pop("config"), "no array 'config'"),
    ("params missing", lambda m: m.pop("flat_params"), "no array 'flat_params'"),
    ("params swapped with buffers",
     lambda m: m.update(flat_params=m["flat_buffers"], flat_buffers=m["flat_params"]),
     "flat_params"),
    ("config is a pickle", lambda m: m.update(config=_npy(np.array([{"a": 1}], dtype=object))),
     "Python objects"),
    ("config is a number", lambda m: m.update(config=_npy(np.array(3.0))), "JSON string"),
    ("params of int dtype", lambda m: m.update(flat_params=_npy(np.zeros(3, np.int64))),
     "flat_params"),
    ("params 2-D", lambda m: m.update(flat_params=_npy(np.zeros((2, 3), np.float32))),
     "flat_params"),
])
def test_bad_members(saved, tmp_path, label, edit, match):
    net, _ = saved
    members = _members(net)
    edit(members)
    _expect_error(_write(tmp_path, _npz(members)), match)


@pytest.mark.parametrize("label, change, match", [
    ("layer_sizes 1e6 x 1e6", {"layer_sizes": [10**6, 10**6]}, "flat_params"),
    ("layer_sizes 1e30", {"layer_sizes": [6, 10**30, 3]}, "flat_params"),
    ("layer_sizes not ints", {"layer_sizes": [5, "7", 3]}, "layer_sizes"),
    ("layer_sizes zero", {"layer_sizes": [5, 0, 3]}, "layer_sizes"),
    ("layer_sizes a dict", {"layer_sizes": {"a": 1}}, "layer_sizes"),
    ("unknown key", {"evil": 1}, "unknown config keys"),
    ("format 2", {"format": 2}, "format"),
    ("hidden bogus", {"hidden": "bogus"}, "bad config: hidden"),
    ("dtype object", {"dtype": "object"}, "dtype"),
    ("dtype garbage", {"dtype": "nope"}, "dtype"),
    ("l2 inf", {"l2": float("inf")}, "bad config: l2"),
    ("batchnorm a string", {"batchnorm": "yes"}, "batchnorm"),
])
def test_bad_configs(saved, tmp_path, label, change, match):
    net, _ = saved
    config = dict(net.get_config(), format=1)
    config.update(change)
    _expect_error(_write(tmp_path, _npz(_members(net, config))), match)


def test_config_that_is_not_a_dict_or_deep_json(saved, tmp_path):
    net, _ = saved
    for text in ("[1, 2]", "[" * 100_000 + "]" * 100_000, "{", "null"):
        members = _members(net)
        members["config"] = _npy(np.array(text))
        _expect_error(_write(tmp_path, _npz(members)))


def test_header_declaring_2_to_40_elements(saved, tmp_path):
    """A ~1 KB file whose array header says (2**40,): refused from the header alone."""
    net, _ = saved
    members = _members(net)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (2**40,)})
    members["flat_params"] = header.getvalue() + b"\0" * 64
    path = _write(tmp_path, _npz(members))
    assert path.stat().st_size < 2048
    _expect_error(path, "declares shape")


def test_zip_bomb(saved, tmp_path):
    """A compressed member (MLP.save never compresses) is refused before it is inflated."""
    net, _ = saved
    config = dict(net.get_config(), format=1, layer_sizes=[1000, 1000])
    members = _members(net, config, params=np.zeros(1000 * 1000 + 1000, np.float32))
    path = _write(tmp_path, _npz(members, zipfile.ZIP_DEFLATED))
    _expect_error(path, "compressed")


def test_not_a_zip_and_a_directory(tmp_path):
    _expect_error(_write(tmp_path, b"\x93NUMPY" + b"\0" * 100), "not an .npz")
    _expect_error(_write(tmp_path, b""), "not an .npz")
    with pytest.raises(IsADirectoryError):
        nnfast.MLP.load(tmp_path)
