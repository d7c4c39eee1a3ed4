"""Checks of what enters an ``MLP``: the constructor's choices, X and y (validated once, when
they enter ``fit`` / ``train_step`` / ``loss`` ..., so the passes run on trusted arrays)."""
import os

import numpy as np

from .._validate import as_array


def choice(value, name, allowed):
    """``value`` if it is one of the strings ``allowed``: TypeError for a non-string,
    ValueError naming the choices for another string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(allowed)}, got "
                        f"{type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def flag(value, name):
    """A bool (or NumPy bool) as a Python bool; TypeError for anything else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _physical_memory():
    """Bytes of RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _magnitude(n):
    """A non-negative int for a message: ``1.1e+13``, or ``~1e400`` beyond float range."""
    return f"{n:.3g}" if n < 10**300 else f"~1e{len(str(n)) - 1}"


def _short(sizes):
    """layer_sizes for a message: huge entries as their magnitude."""
    return "[" + ", ".join(str(n) if n < 10**15 else _magnitude(n) for n in sizes) + "]"


def check_memory(sizes, n_params, dtype):
    """ValueError if the parameters, their gradients and a workspace would not fit in RAM."""
    memory = _physical_memory()
    if memory is not None and 3 * n_params * dtype.itemsize > memory:
        need = 3 * n_params * dtype.itemsize // 2**30
        raise ValueError(f"layer_sizes {_short(sizes)} make a network of "
                         f"{_magnitude(n_params)} parameters: with their gradients and "
                         f"workspace {_magnitude(need)} GiB, more than this machine's "
                         f"{memory / 2**30:.3g} GiB of memory")


def check_X(net, X, name="X"):
    """X as the network's dtype, C-contiguous, (n_samples, n_features_in), finite."""
    if X is None or isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a 2-D numeric array, got {type(X).__name__}")
    X = as_array(X, name)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: 0 samples")
    if X.shape[1] != net.n_features_in:
        raise ValueError(f"{name} has {X.shape[1]} features, but the model expects "
                         f"{net.n_features_in} (layer_sizes[0])")
    X = np.ascontiguousarray(X, dtype=net.dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def _class_targets(net, y, m, name):
    """softmax targets: int64 (m,) labels in 0..K-1, or float one-hot rows (m, K)."""
    k = net.n_outputs
    if y.dtype.kind in "iu":
        if y.ndim != 1:
            raise ValueError(f"integer class labels {name} must be 1-D, got shape {y.shape}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{name} holds labels in [{lo}, {hi}], outside the model's "
                             f"classes 0..{k - 1}")
        return np.ascontiguousarray(y, dtype=np.int64)
    if y.dtype.kind == "f" and y.ndim == 1:
        raise TypeError(f"class labels {name} must be integers 0..{k - 1}, got dtype "
                        f"{y.dtype} (float targets must be one-hot rows ({m}, {k}))")
    if y.dtype.kind == "f":
        if y.shape != (m, k):
            raise ValueError(f"one-hot targets {name} must have shape {(m, k)}, got {y.shape}")
        y = np.ascontiguousarray(y, dtype=net.dtype)
        if not np.isfinite(y).all() or (y < 0).any():
            raise ValueError(f"one-hot targets {name} must be finite and >= 0")
        return y
    raise TypeError(f"{name} must be integer class labels or float one-hot rows, got "
                    f"dtype {y.dtype}")


def check_y(net, y, m, name="y"):
    """Targets as the loss kernel takes them: int64 (m,) class labels or float (m, K)."""
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of targets, got {type(y).__name__}")
    y = as_array(y, name)
    if y.ndim == 0 or y.shape[0] != m:
        raise ValueError(f"{name} has shape {y.shape}, but X has {m} samples")
    if net.output == "softmax":
        return _class_targets(net, y, m, name)
    k = net.n_outputs
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
    if y.ndim == 1 and k == 1:
        y = y.reshape(m, 1)
    if y.shape != (m, k):
        raise ValueError(f"{name} has shape {y.shape}, but the model has {k} outputs: "
                         f"expected {(m, k)}" + (f" or ({m},)" if k == 1 else ""))
    y = np.ascontiguousarray(y, dtype=net.dtype)
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if net.output == "sigmoid" and ((y < 0).any() or (y > 1).any()):
        raise ValueError(f"{name} holds values outside [0, 1]; output='sigmoid' takes 0/1 "
                         "labels (or probabilities)")
    return y


def check_training_batch(net, m):
    if net.batchnorm and m < 2:
        raise ValueError(f"batch norm in training mode needs at least 2 samples, got {m}")


def check_writable(net):
    for name in ("flat_params", "flat_buffers"):
        if not getattr(net, name).flags.writeable:
            raise ValueError(f"the model's {name} is read-only: training updates it in "
                             f"place (set model.{name}.flags.writeable = True)")
