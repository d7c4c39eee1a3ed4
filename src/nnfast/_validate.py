"""Argument checking shared by every public function.

Compiled kernels run with bounds checks off, so this module is the guard: nothing reaches a
kernel unless its dtypes, shapes, layout and writability fit. Every error names the argument.

Arrays a kernel reads (inputs) and arrays it writes (``out=``, parameters, optimizer state):

- Inputs go through ``np.asarray``: lists, ``np.matrix``, ``np.memmap`` and other ndarray
  subclasses are read as the plain array of their data. A masked array is a TypeError: no
  kernel has a notion of a mask, and ``np.asarray`` would drop it silently.
- Written arrays must be exactly ``numpy.ndarray`` (TypeError otherwise): a subclass may
  redefine ``reshape``/indexing (``np.matrix`` stays 2-D), or carry a mask the kernel would not
  update. ``x.view(np.ndarray)`` writes into the same memory.
- Memory shared between a written array and any other argument (``np.shares_memory``) is
  decided here, per function, in ``result_target`` (the result goes through a temporary, as
  NumPy's ufuncs do), ``checked_out`` and ``disjoint`` (a ValueError naming both arguments).
"""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

try:
    _TooHard = np.exceptions.TooHardError
except AttributeError:  # numpy < 1.25
    _TooHard = np.TooHardError


def as_array(x, name):
    """``x`` (an input, only read) as a plain ndarray; TypeError for a masked array."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; nnfast kernels ignore masks, so pass "
                        f"{name}.filled(value) or {name}.compressed() (unmasked data)")
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a float32 or float64 array, got {type(x).__name__}")
    return np.asarray(x)


def float_array(x, name, dtype=None):
    """``x`` as an ndarray of float32/float64 (optionally exactly ``dtype``), else TypeError."""
    x = as_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, but the other arrays are {dtype}")
    return x


def written_array(x, name):
    """TypeError unless ``x``, an array a kernel writes, is exactly a ``numpy.ndarray``."""
    if type(x) is not np.ndarray:
        if isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a plain numpy.ndarray to be written into, got the "
                            f"subclass {type(x).__module__}.{type(x).__name__} (pass "
                            f"{name}.view(np.ndarray) to write into its memory)")
        raise TypeError(f"{name} must be a numpy array written in place, got {type(x).__name__}")
    return x


def shares_memory(a, b):
    """Whether ``a`` and ``b`` have an element in common (exact; conservative if too hard)."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except _TooHard:
        return True


def same_memory(a, b):
    """``a`` and ``b`` are the same elements in the same order: what an elementwise kernel may
    read and write at once (``out=x``)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def disjoint(written, others):
    """ValueError if an array a kernel writes shares memory with another argument.

    written: (array, name) pairs, checked against each other and against ``others``, the
    (array or None, name) pairs the kernel reads."""
    for i, (w, wname) in enumerate(written):
        if not w.size:
            continue
        for x, xname in written[i + 1:]:
            if x.size and shares_memory(w, x):
                raise ValueError(f"{wname} shares memory with {xname}; each must be its own "
                                 "array")
        for x, xname in others:
            if x is not None and x.size and shares_memory(w, x):
                raise ValueError(f"{wname} shares memory with {xname}; a kernel writing "
                                 f"{wname} would change {xname} while it reads it")


def same_shape(x, name, shape, other="the input"):
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, but {other} has shape {shape}")


def contiguous(x):
    """``x`` itself if C-contiguous, else a C-contiguous copy (inputs are only read)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def out_array(out, shape, dtype, name="out"):
    """Checks a caller's ``out=`` array: plain ndarray, same dtype and shape, writable."""
    written_array(out, name)
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, but the result is {dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, but the result has shape {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def result_target(out, shape, dtype, inputs, alias=()):
    """``(out, target)`` for an elementwise or row-wise kernel's result.

    ``out`` None: a new array, and the target. Else the checked ``out``, and where the kernel
    writes: ``out`` itself if it is C-contiguous and shares no memory with ``inputs`` ((array,
    name) pairs: every array the kernel reads) except by being exactly an input named in
    ``alias`` (``out=x``: each element is read before it is written). Any other overlap, or a
    strided ``out``, gets a temporary that ``write_back`` copies into ``out``: the result is the
    one a fresh ``out`` would get, as with NumPy's ufuncs."""
    if out is None:
        out = np.empty(shape, dtype)
        return out, out
    out_array(out, shape, dtype)
    direct = out.flags.c_contiguous
    for x, xname in inputs:
        if direct and np.may_share_memory(x, out):
            direct = xname in alias and same_memory(x, out)
    return out, (out if direct else np.empty(shape, dtype))


def write_back(out, target):
    """Copies a temporary ``target`` of ``result_target`` into ``out``; returns ``out``."""
    if target is not out:
        out[...] = target
    return out


def checked_out(out, shape, dtype, name, inputs, alias=()):
    """A new array, or the caller's ``out`` for a kernel that writes it directly: checked by
    ``out_array``, C-contiguous, and sharing no memory with ``inputs`` ((array, name) pairs)
    except by being exactly an input named in ``alias``."""
    if out is None:
        return np.empty(shape, dtype)
    out_array(out, shape, dtype, name)
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    disjoint([(out, name)], [(x, xname) for x, xname in inputs
                             if not (xname in alias and x is not None and same_memory(x, out))])
    return out


def inplace_array(x, name, dtype=None, shape=None):
    """An array a kernel updates in place: plain float ndarray, writable and C-contiguous (so
    no update can land in a silent copy)."""
    float_array(written_array(x, name), name, dtype)
    if shape is not None:
        same_shape(x, name, shape, "param")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only and cannot be updated in place")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} is not C-contiguous; in-place updates need a contiguous array "
                         "(np.ascontiguousarray makes a copy you then own)")
    return x


def real(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real hyperparameter in [low, high] (bounds open as asked), as a Python float."""
    kind = type(value)
    if kind is not float and kind is not int:  # fast path for the common Python scalars
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:   # an int beyond float's range (10**400)
        raise ValueError(f"{name} must be finite, got an integer of {len(str(abs(value)))} "
                         "digits, beyond float's range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def integer(value, name, low=None, high=None):
    """An integer in [low, high] as a Python int. ``high`` keeps values that reach C code (a
    thread count, a step count raised as a float power) in range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        shown = value if value < 10**30 else f"an integer of {len(str(value))} digits"
        raise ValueError(f"{name} must be <= {high}, got {shown}")
    return value


def beta(value, name):
    """A decay rate in [0, 1)."""
    return real(value, name, 0.0, 1.0, high_open=True)


def flag(value, name):
    """A bool (or NumPy bool scalar) as a Python bool; anything else — ``1``, a string, an array
    whose truth value is ambiguous — is a TypeError."""
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}"
                    + (f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""))


def choice(value, name, allowed):
    """``value`` if it is one of the strings ``allowed`` (for a dict: its keys, and the value
    it maps to is returned); TypeError for a non-string, ValueError for another string."""
    if type(value) is not str or value not in allowed:
        shown = sorted(allowed) if isinstance(allowed, dict) else list(allowed)
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, one of {shown}, got "
                            f"{type(value).__name__}")
        if value not in allowed:
            raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return allowed[value] if type(allowed) is dict else value


def labels_in_range(y, name, n_classes, classes=None):
    """ValueError unless the integer labels ``y`` (non-empty) all lie in [0, n_classes);
    ``classes`` describes the allowed range in the message (default ``[0, K-1] for K
    classes``). The one label-range check of ``losses`` and ``MLP``."""
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        classes = classes or f"[0, {n_classes - 1}] for {n_classes} classes"
        raise ValueError(f"{name} holds labels in [{lo}, {hi}], outside {classes}")
    return y
