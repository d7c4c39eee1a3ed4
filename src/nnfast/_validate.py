"""Argument checking shared by every public function.

Compiled kernels run with bounds checks off, so this module is the guard: nothing reaches a
kernel unless its dtypes, shapes, layout and writability fit. Every error names the argument.
"""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(x, name, dtype=None):
    """``x`` as an ndarray of float32/float64 (optionally exactly ``dtype``), else TypeError."""
    if not isinstance(x, np.ndarray):
        if x is None or isinstance(x, (str, bytes)):
            raise TypeError(f"{name} must be a float32 or float64 array, got {type(x).__name__}")
        x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, but the other arrays are {dtype}")
    return x


def same_shape(x, name, shape, other="the input"):
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, but {other} has shape {shape}")


def contiguous(x):
    """``x`` itself if C-contiguous, else a C-contiguous copy (inputs are only read)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def out_array(out, shape, dtype, name="out"):
    """Checks a caller's ``out=`` array: ndarray, same dtype and shape, writable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, but the result is {dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, but the result has shape {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def direct_target(out, inputs):
    """True if a kernel may write ``out`` directly: C-contiguous and, for every input, either no
    shared memory or exactly the same memory (elementwise aliasing, ``out=x``)."""
    if not out.flags.c_contiguous:
        return False
    for x in inputs:
        if x is out:
            continue
        if np.may_share_memory(x, out) and not (
            x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and x.shape == out.shape and x.strides == out.strides
        ):
            return False
    return True


def result_target(out, shape, dtype, inputs):
    """``(out, target)`` for a kernel's result: a new array when ``out`` is None; else the
    checked ``out`` and where the kernel writes — ``out`` itself when ``direct_target`` allows,
    else a temporary that ``write_back`` copies into ``out`` (strided or partly overlapping)."""
    if out is None:
        out = np.empty(shape, dtype)
        return out, out
    out_array(out, shape, dtype)
    return out, (out if direct_target(out, inputs) else np.empty(shape, dtype))


def write_back(out, target):
    """Copies a temporary ``target`` of ``result_target`` into ``out``; returns ``out``."""
    if target is not out:
        out[...] = target
    return out


def inplace_array(x, name, dtype=None, shape=None):
    """An array a kernel updates in place: float ndarray, writable and C-contiguous (so no update
    can land in a silent copy)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array updated in place, got {type(x).__name__}")
    float_array(x, name, dtype)
    if shape is not None:
        same_shape(x, name, shape, "param")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only and cannot be updated in place")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} is not C-contiguous; in-place updates need a contiguous array "
                         "(np.ascontiguousarray makes a copy you then own)")
    return x


def no_overlap(arrays, names):
    """ValueError if two of the in-place arrays share memory."""
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            if np.may_share_memory(arrays[i], arrays[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory; each must be its own array")


def real(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real hyperparameter in [low, high] (bounds open as asked), as a Python float."""
    kind = type(value)
    if kind is not float and kind is not int:  # fast path for the common Python scalars
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def integer(value, name, low=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def beta(value, name):
    """A decay rate in [0, 1)."""
    return real(value, name, 0.0, 1.0, high_open=True)
