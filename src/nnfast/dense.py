"""Dense layers: forward pass and backpropagation of δ (seed: "Forward pass", "Backpropagation").

Row-major batches, as scikit-learn's ``coefs_``: ``a`` is (m, fan_in), ``W`` is (fan_in, fan_out),
``b`` is (fan_out,), ``z = a W + b``. The seed writes ``z = Θ a`` with column vectors: its Θ is
our ``W.T``. The GEMM runs through BLAS; bias and activation (forward) and the activation
derivative (backward) are applied in the same pass that consumes the GEMM result.
"""

from . import _backend, _constants
from ._backend import entries as _entry
from ._validate import checked_out, choice, contiguous, disjoint, float_array, real

_FORWARD = dict(_constants.ACTIVATIONS, softmax=_constants.SOFTMAX)


def dense_forward(a, W, b, activation="identity", *, slope=0.01, out=None, z_out=None):
    """One layer's forward pass, ``a_next = g(a W + b)`` (seed: ``z = Θ a``, ``a = g(z)``).

    a: (m, fan_in); W: (fan_in, fan_out); b: (fan_out,) or None; one float dtype.
    activation: identity, sigmoid, tanh, relu, leaky_relu (with ``slope``) or softmax (rows).
    ``out`` receives ``a_next`` (m, fan_out); ``z_out``, if given, receives ``z`` — what ReLU's
    derivative needs in the backward pass. Neither may share memory with a, W or b.
    Returns ``a_next``.

    >>> a = np.ones((2, 3)); W = np.full((3, 2), 0.5); b = np.array([-2.0, 0.0])
    >>> nnfast.dense_forward(a, W, b, "relu")
    array([[0. , 1.5],
           [0. , 1.5]])
    """
    done = _entry.dense_forward(a, W, b, activation, slope, out, z_out)
    if done is not None:        # the common case, checked in C (nnfast._cython.entry)
        return done
    kind = choice(activation, "activation", _FORWARD)
    slope = real(slope, "slope")
    a = float_array(a, "a")
    W = float_array(W, "W", a.dtype)
    if a.ndim != 2 or W.ndim != 2 or a.shape[1] != W.shape[0]:
        raise ValueError(f"a (shape {a.shape}) and W (shape {W.shape}) must be 2-D with "
                         "a.shape[1] == W.shape[0]")
    m, n = a.shape[0], W.shape[1]
    if b is not None:
        b = float_array(b, "b", a.dtype)
        if b.shape != (n,):
            raise ValueError(f"b has shape {b.shape}, but W has {n} output columns")
        b = contiguous(b)
    inputs = [(a, "a"), (W, "W")] + ([(b, "b")] if b is not None else [])
    a_out = checked_out(out, (m, n), a.dtype, "out", inputs)
    if z_out is None:
        z = a_out
    else:
        z = checked_out(z_out, (m, n), a.dtype, "z_out", inputs + [(a_out, "out")])
    if a_out.size:
        fn = _backend.kernel("dense", "dense_forward", a_out.size)
        fn(contiguous(a), contiguous(W), b, kind, slope, z, a_out)
    return a_out


def dense_backward(delta, a_prev, W, activation_prev="identity", *, z_prev=None, slope=0.01,
                   need_dprev=True, dW_out=None, db_out=None, dprev_out=None):
    """Backpropagation through one layer, given its δ (dJ/dz, shape (m, fan_out)).

    Returns ``(dW, db, delta_prev)``:
    ``dW = a_prevᵀ δ`` (fan_in, fan_out), ``db = Σ_rows δ`` (fan_out,), and the seed's
    ``δ^(l) = (Θ^(l))ᵀ δ^(l+1) .* g'(z^(l))`` written row-major as
    ``delta_prev = (δ Wᵀ) * g'(·)`` (m, fan_in), the derivative fused after the GEMM.
    ``activation_prev`` is the activation that produced ``a_prev``: sigmoid and tanh take their
    derivative from ``a_prev``, relu and leaky_relu from ``z_prev`` (required for them);
    ``identity`` (e.g. the input layer's "activation") gives ``delta_prev = δ Wᵀ``.
    ``need_dprev=False`` skips δ_prev (first layer) and returns None for it.
    """
    done = _entry.dense_backward(delta, a_prev, W, activation_prev, z_prev, slope, need_dprev,
                                 dW_out, db_out, dprev_out)
    if done is not None:        # the common case, checked in C (nnfast._cython.entry)
        return done
    kind = choice(activation_prev, "activation_prev", _constants.ACTIVATIONS)
    slope = real(slope, "slope")
    delta = float_array(delta, "delta")
    a_prev = float_array(a_prev, "a_prev", delta.dtype)
    W = float_array(W, "W", delta.dtype)
    if delta.ndim != 2 or a_prev.ndim != 2 or W.ndim != 2:
        raise ValueError("delta, a_prev and W must be 2-D")
    m, n = delta.shape
    k = W.shape[0]
    if W.shape[1] != n or a_prev.shape != (m, k):
        raise ValueError(f"shapes do not fit: delta {delta.shape}, a_prev {a_prev.shape}, "
                         f"W {W.shape} (need delta (m, n), a_prev (m, k), W (k, n))")
    src = a_prev
    if need_dprev and kind in (_constants.RELU, _constants.LEAKY_RELU):
        if z_prev is None:
            raise ValueError(f"z_prev is required for activation_prev={activation_prev!r}")
        src = float_array(z_prev, "z_prev", delta.dtype)
        if src.shape != (m, k):
            raise ValueError(f"z_prev has shape {src.shape}, but a_prev has shape {(m, k)}")
    inputs = [(delta, "delta"), (a_prev, "a_prev"), (W, "W"), (src, "z_prev")]
    dW = checked_out(dW_out, (k, n), delta.dtype, "dW_out", inputs)
    db = checked_out(db_out, (n,), delta.dtype, "db_out", inputs)
    dprev = (checked_out(dprev_out, (m, k), delta.dtype, "dprev_out", inputs)
             if need_dprev else None)
    disjoint([(dW, "dW_out"), (db, "db_out")] + ([(dprev, "dprev_out")] if need_dprev else []), [])
    fn = _backend.kernel("dense", "dense_backward", delta.size + a_prev.size)
    fn(contiguous(delta), contiguous(a_prev), contiguous(W), dW, db, dprev, kind, slope,
       contiguous(src))
    return dW, db, dprev
