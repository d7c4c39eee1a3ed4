"""MLP.save is durable: a save killed at any moment leaves the earlier model, or the new one,
never a fragment; an exception during a save leaves no temporary file behind.

The kill test runs real processes: each child loads two 4.2M-parameter models (16.9 MB files)
and saves them in turn over one target file, as fast as it can, until the test SIGKILLs it at
a random moment; MLP.load of the target must then give one of the two models exactly. Before
``save`` wrote through ``nnfast._files.replacing``, such a kill left a fragment that ``load``
refused ("not an .npz (zip) file"): the earlier model was gone.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nnfast
from nnfast._network import persistence

KILLS = 24                  # ~0.4 s each on a 2-core machine: ~10 s in all
CHILD = r"""
import sys
import nnfast
target, a, b = sys.argv[1:]
models = [nnfast.MLP.load(a), nnfast.MLP.load(b)]
print("ready", flush=True)
i = 0
while True:
    models[i % 2].save(target)
    i += 1
"""


def _same(model, other):
    return (model.get_config() == other.get_config()
            and np.array_equal(model.flat_params, other.flat_params)
            and np.array_equal(model.flat_buffers, other.flat_buffers))


def _leftovers(folder, keep):
    return sorted(n for n in os.listdir(folder) if n not in keep)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    a = nnfast.MLP([2048, 2048, 10], seed=0)
    b = nnfast.MLP([2048, 2047, 10], batchnorm=True, dtype="float32", seed=1)
    return a, b, a.save(folder / "a"), b.save(folder / "b")


def test_killed_saves_leave_the_old_or_the_new_model(models, tmp_path):
    a, b, path_a, path_b = models
    target = str(tmp_path / "model.npz")
    a.save(target)
    rng = random.Random(20)
    seen = {"a": 0, "b": 0}
    mid_write = 0             # kills that left a temporary file: the save was under way
    for k in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, target, path_a, path_b],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            assert line == "ready\n", f"child did not start: {line!r} {child.stderr.read()}"
            time.sleep(rng.uniform(0.0, 0.15))    # a save takes ~40 ms: any moment of 1-4 saves
            assert child.poll() is None, child.stderr.read()
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        loaded = nnfast.MLP.load(target)   # a fragment raises ModelFileError here
        if _same(loaded, a):
            seen["a"] += 1
        else:
            assert _same(loaded, b), f"kill {k}: the loaded model is neither the old nor the new"
            seen["b"] += 1
        extra = _leftovers(tmp_path, {"model.npz"})
        assert all(n.startswith(".model.npz.") and n.endswith(".tmp") for n in extra), extra
        mid_write += bool(extra)
        for n in extra:
            os.unlink(tmp_path / n)
    # the kills did interrupt writes, and landed on both sides of a save's rename
    assert mid_write >= KILLS // 4, (mid_write, seen)
    assert seen["a"] and seen["b"], seen


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_exception_during_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch,
                                                                       error):
    old = nnfast.MLP([6, 5, 3], seed=0)
    target = old.save(tmp_path / "model")
    before = open(target, "rb").read()

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise error

    monkeypatch.setattr(persistence.np, "savez", failing_savez)
    with pytest.raises(type(error)):
        nnfast.MLP([6, 4, 3], seed=1).save(tmp_path / "model")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    assert open(target, "rb").read() == before
    assert _same(nnfast.MLP.load(target), old)


def test_save_keeps_its_target_path_and_the_file_mode(tmp_path):
    """``save`` appends ".npz" to a path without it, as before, returns the path written, and
    a file it replaces keeps its permission bits (the temporary file's 0600 does not stay)."""
    net = nnfast.MLP([4, 3], seed=2)
    assert net.save(tmp_path / "m") == str(tmp_path / "m.npz")
    assert net.save(str(tmp_path / "n.npz")) == str(tmp_path / "n.npz")
    os.chmod(tmp_path / "m.npz", 0o640)
    net.save(tmp_path / "m")
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "n.npz"]
