"""``MLP.save`` / ``MLP.load``: config, parameters and buffers in an uncompressed ``.npz``
(never pickle). ``save`` writes through ``nnfast._files.replacing``: a temporary file in the
target's folder, fsync'ed, then renamed onto the target, so a save killed at any moment leaves the
earlier file whole (tests/test_persistence_kill.py kills real processes part-way). ``load``
checks every array's header before it reads the data, so a file that ``save`` did not write
raises ``ModelFileError`` without allocating more than its own size; a missing file raises
``MissingModelFileError``, both a ``ModelFileError`` and a ``FileNotFoundError``."""
import errno
import json
import math
import os
import zipfile

import numpy as np

from .._files import replacing
from .layout import counts

_FORMAT = 1
#: The keys of ``MLP.get_config`` (what a saved file may hold).
CONFIG_KEYS = ("layer_sizes", "hidden", "output", "batchnorm", "l2", "init", "dtype", "seed",
               "slope", "init_scale")


class ModelFileError(ValueError):
    """``MLP.load`` of a file that ``MLP.save`` did not write (corrupt, truncated, another
    format, or sizes that do not fit): the message names the file and the problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class MissingModelFileError(ModelFileError, FileNotFoundError):
    """``MLP.load`` of a path where there is no file (nor one with ``.npz`` appended): a
    ``ModelFileError`` like every file ``save`` did not write, and a ``FileNotFoundError`` (with
    ``errno`` and ``filename`` set) for code that catches that."""

    def __init__(self, path, problem):
        super().__init__(path, problem)
        self.errno, self.strerror, self.filename = errno.ENOENT, problem, path

    def __str__(self):
        return f"{self.path}: {self.problem}"


def save(net, path):
    """``MLP.save`` (documented there)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    config = dict(net.get_config(), format=_FORMAT)
    with replacing(path) as f:
        np.savez(f, config=np.array(json.dumps(config)), flat_params=net.flat_params,
                 flat_buffers=net.flat_buffers)
    return path


def load(cls, path):
    """``MLP.load`` (documented there): the model of class ``cls`` written to ``path``."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    try:
        with zipfile.ZipFile(path) as zf:
            return _load(cls, zf, path, os.path.getsize(path))
    except FileNotFoundError:
        tried = "" if path.endswith(".npz") else f" (nor {os.path.basename(path)}.npz)"
        raise MissingModelFileError(path, f"no such file{tried}") from None
    except zipfile.BadZipFile as exc:
        raise ModelFileError(path, f"not an .npz (zip) file ({exc})") from None
    except (EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(path, f"unreadable archive ({type(exc).__name__}: {exc})") \
            from None


def _read_header(f, path, key):
    """(shape, fortran, dtype) of the ``.npy`` member open as ``f``."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ModelFileError(path, f"array {key!r} has .npy format {version}; MLP.save writes 1.0")
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _read_member(zf, info, path, key, expect):
    """One ``.npy`` member, its header checked before its data is read: its declared size fits
    in the member, and ``expect`` = (dtype, length) when given (else at most 1 MiB)."""
    try:
        with zf.open(info) as f:
            shape, fortran, dtype = _read_header(f, path, key)
            if dtype.hasobject:
                raise ModelFileError(path, f"array {key!r} holds Python objects (pickle)")
            if any(n < 0 for n in shape):
                raise ModelFileError(path, f"array {key!r} declares shape {shape}")
            count = math.prod(shape)
            too_big = expect is None and info.file_size > 2**20
            if count * dtype.itemsize > info.file_size or too_big:
                raise ModelFileError(path, f"array {key!r} declares shape {shape} of {dtype}, "
                                           f"more than its {info.file_size} bytes in the file")
            if expect is not None and (dtype != expect[0] or shape != (expect[1],)):
                raise ModelFileError(path, f"array {key!r} has shape {shape} and dtype {dtype}, "
                                           f"but the config implies ({expect[1]},) "
                                           f"{expect[0]}")
            data = f.read(count * dtype.itemsize)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ModelFileError(path, f"array {key!r} is not a valid .npy ({type(exc).__name__}: "
                                   f"{exc})") from None
    if len(data) != count * dtype.itemsize:
        raise ModelFileError(path, f"array {key!r} is truncated")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _members(zf, path, file_size):
    """The zip entries of config, flat_params and flat_buffers, stored uncompressed."""
    members = {}
    for key in ("config", "flat_params", "flat_buffers"):
        try:
            info = zf.getinfo(key + ".npy")
        except KeyError:
            raise ModelFileError(path, f"no array {key!r}: not written by MLP.save") from None
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
            raise ModelFileError(path, f"array {key!r} is compressed or larger than the file "
                                       "(MLP.save writes it uncompressed)")
        members[key] = info
    return members


def _config(zf, info, path):
    """The saved constructor arguments, checked for what sizes the arrays must have."""
    config = _read_member(zf, info, path, "config", None)
    if config.dtype.kind != "U" or config.shape != ():
        raise ModelFileError(path, "config is not a JSON string")
    try:
        config = json.loads(str(config))
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"config is not valid JSON ({type(exc).__name__})") \
            from None
    if not isinstance(config, dict) or config.pop("format", None) != _FORMAT:
        raise ModelFileError(path, f"not an nnfast.MLP file of format {_FORMAT}")
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise ModelFileError(path, f"unknown config keys {sorted(unknown)}")
    sizes, batchnorm = config.get("layer_sizes"), config.get("batchnorm", False)
    if (not isinstance(sizes, list) or len(sizes) < 2 or not isinstance(batchnorm, bool)
            or not all(type(n) is int and n >= 1 for n in sizes)):
        raise ModelFileError(path, "config has no valid layer_sizes (a list of >= 2 "
                                   "positive ints) and batchnorm (a bool)")
    return config


def _load(cls, zf, path, file_size):
    members = _members(zf, path, file_size)
    config = _config(zf, members["config"], path)
    try:
        dtype = np.dtype(config.get("dtype", "float32"))
    except TypeError:
        dtype = None
    if dtype not in (np.float32, np.float64):
        raise ModelFileError(path, f"config dtype {config.get('dtype')!r} is not float32 "
                                   "or float64")
    n_params, n_buffers = counts(config["layer_sizes"], config.get("batchnorm", False))
    params = _read_member(zf, members["flat_params"], path, "flat_params", (dtype, n_params))
    buffers = _read_member(zf, members["flat_buffers"], path, "flat_buffers",
                           (dtype, n_buffers))
    try:
        model = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"bad config: {exc}") from None
    model.flat_params[...] = params
    model.flat_buffers[...] = buffers
    return model
