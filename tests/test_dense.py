"""Dense layers: forward pass with fused bias and activation, backpropagation of δ. The reference
against the seed's formulas and central differences; every backend against the reference."""
import numpy as np
import pytest

import nnfast
from conftest import central_difference, close, describe, make_rng, no_warnings, reference

BACKEND_MODULES = ("dense",)

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
FORWARD_ACTIVATIONS = ACTIVATIONS + ["softmax"]


def _g(z, name, slope=0.01):
    """The seed's activations in float64, written out."""
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z >= 0, z, slope * z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layer(dtype, m, k, n, layout="C", key=""):
    rng = make_rng("layer", dtype.name, m, k, n, layout, key)
    a = rng.standard_normal((m, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / np.sqrt(max(k, 1))).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    if layout == "transposed":
        a = np.ascontiguousarray(a.T).T
        W = np.ascontiguousarray(W.T).T
    elif layout == "Fortran":
        a, W = np.asfortranarray(a), np.asfortranarray(W)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
        b = np.repeat(b, 3)[::3]
    elif layout == "read-only":
        for x in (a, W, b):
            x.flags.writeable = False
    return a, W, b


#: (m, fan_in, fan_out, layout); 4096 x 32 = 2**17 outputs crosses any parallel threshold
SHAPES = [
    (0, 5, 3, "C"),
    (1, 1, 1, "C"),
    (7, 3, 5, "C"),
    (1023, 17, 9, "C"),
    (31, 12, 10, "transposed"),
    (20, 9, 7, "Fortran"),
    (16, 8, 6, "strided"),
    (9, 4, 4, "read-only"),
    (4096, 64, 32, "C"),
]


# --- the reference against the seed -------------------------------------------------------------

@pytest.mark.parametrize("activation", FORWARD_ACTIVATIONS)
def test_reference_forward_formula(activation):
    dt = np.dtype(np.float64)
    a, W, b = _layer(dt, 13, 6, 4)
    with nnfast.use_backend("reference"):
        np.testing.assert_allclose(nnfast.dense_forward(a, W, b, activation),
                                   _g(a @ W + b, activation), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(nnfast.dense_forward(a, W, None, activation),
                                   _g(a @ W, activation), rtol=1e-13, atol=1e-15)
    a = np.ones((2, 3))
    W = np.full((3, 2), 0.5)
    np.testing.assert_array_equal(reference(nnfast.dense_forward, a, W, np.array([-2.0, 0.0]),
                                            "relu"), [[0.0, 1.5], [0.0, 1.5]])


def _chain(dt, m, k, n, act, key=""):
    """x (m, k) -> z1 = x W1 + b1 -> a1 = g(z1) -> z2 = a1 W2 + b2 -> J = Σ R * z2."""
    rng = make_rng("chain", m, k, n, act, key)
    x = rng.standard_normal((m, 3)).astype(dt)
    W1 = rng.standard_normal((3, k)).astype(dt)
    b1 = rng.standard_normal(k).astype(dt)
    W2 = rng.standard_normal((k, n)).astype(dt)
    b2 = rng.standard_normal(n).astype(dt)
    R = rng.standard_normal((m, n)).astype(dt)
    return x, W1, b1, W2, b2, R


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_backward_is_central_difference(act, backend):
    """dW, db, δ_prev of a two-layer chain equal central differences (float64), and the
    input-layer δ (identity) too: backprop as in the seed, δ^(l) = (Θ^(l))ᵀ δ^(l+1) .* g'(z^(l))."""
    x, W1, b1, W2, b2, R = _chain(np.dtype(np.float64), 6, 5, 4, act)

    def loss():
        a1 = _g(x @ W1 + b1, act)
        return np.sum(R * (a1 @ W2 + b2))

    z1 = np.empty((6, 5))
    a1 = nnfast.dense_forward(x, W1, b1, act, z_out=z1)
    delta2 = R  # dJ/dz2
    dW2, db2, delta1 = nnfast.dense_backward(delta2, a1, W2, act, z_prev=z1)
    dW1, db1, dx = nnfast.dense_backward(delta1, x, W1, "identity")
    what = f"{act}, backend {backend}"
    for got, param in ((dW2, W2), (db2, b2), (dW1, W1), (db1, b1), (dx, x)):
        np.testing.assert_allclose(got, central_difference(loss, param), rtol=1e-6, atol=1e-7,
                                   err_msg=what)


# --- backends against the reference -------------------------------------------------------------

@pytest.mark.parametrize("activation", FORWARD_ACTIVATIONS)
def test_forward_matches_reference(activation, backend, dtype):
    for m, k, n, layout in SHAPES:
        a, W, b = _layer(dtype, m, k, n, layout)
        before = [x.copy() for x in (a, W, b)]
        what = (f"dense_forward {activation}, backend {backend}, dtype {dtype}, "
                f"{describe(layout, a)}, W {W.shape}")
        scale = np.sqrt(k)
        for bias in (b, None):
            expected = reference(nnfast.dense_forward, a, W, bias, activation)
            with no_warnings():
                got = nnfast.dense_forward(a, W, bias, activation)
            assert got.dtype == dtype and got.shape == (m, n), what
            close(got, expected, dtype, f"{what}, bias {bias is not None}", scale=scale)
        # z_out keeps z, out keeps a; both given and returned
        z_out = np.full((m, n), np.nan, dtype)
        out = np.full((m, n), np.nan, dtype)
        with no_warnings():
            got = nnfast.dense_forward(a, W, b, activation, z_out=z_out, out=out)
        assert got is out, what
        close(z_out, reference(nnfast.dense_forward, a, W, b, "identity"), dtype,
              f"{what}: z_out", scale=scale)
        close(out, reference(nnfast.dense_forward, a, W, b, activation), dtype,
              f"{what}: out with z_out", scale=scale)
        for x, x0, name in zip((a, W, b), before, ("a", "W", "b")):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: {name} mutated")
        if m and activation == "softmax":
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=n * 4e-7)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_forward_leaky_slope(activation, backend, dtype):
    a, W, b = _layer(dtype, 21, 6, 5)
    expected = reference(nnfast.dense_forward, a, W, b, activation, slope=0.3)
    close(nnfast.dense_forward(a, W, b, activation, slope=0.3), expected, dtype,
          f"{activation} slope 0.3, backend {backend}")


def _backward_inputs(dtype, m, k, n, layout, act):
    a_prev_z, W, _ = _layer(dtype, m, k, n, layout, key="backward")
    rng = make_rng("delta", dtype.name, m, k, n, layout)
    delta = rng.standard_normal((m, n)).astype(dtype)
    z_prev = a_prev_z
    a_prev = reference(nnfast.dense_forward, z_prev, np.eye(k, dtype=dtype), None, act)
    if layout == "transposed":
        delta = np.ascontiguousarray(delta.T).T
    elif layout == "read-only":
        delta.flags.writeable = False
        a_prev.flags.writeable = False
    return delta, a_prev, W, z_prev


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_backward_matches_reference(act, backend, dtype):
    for m, k, n, layout in SHAPES:
        delta, a_prev, W, z_prev = _backward_inputs(dtype, m, k, n, layout, act)
        before = [x.copy() for x in (delta, a_prev, W, z_prev)]
        what = (f"dense_backward {act}, backend {backend}, dtype {dtype}, "
                f"{describe(layout, delta)}, a_prev {a_prev.shape}, W {W.shape}")
        kw = dict(z_prev=z_prev)
        dW_r, db_r, dp_r = reference(nnfast.dense_backward, delta, a_prev, W, act, **kw)
        with no_warnings():
            dW, db, dp = nnfast.dense_backward(delta, a_prev, W, act, **kw)
        assert (dW.shape, db.shape, dp.shape) == ((k, n), (n,), (m, k)), what
        assert dW.dtype == db.dtype == dp.dtype == dtype, what
        close(dW, dW_r, dtype, f"{what}: dW", scale=max(np.sqrt(m), 1) * 3)
        close(db, db_r, dtype, f"{what}: db", scale=max(np.sqrt(m), 1))
        close(dp, dp_r, dtype, f"{what}: delta_prev", scale=max(np.sqrt(n), 1))
        for x, x0, name in zip((delta, a_prev, W, z_prev), before,
                               ("delta", "a_prev", "W", "z_prev")):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: {name} mutated")

        # need_dprev=False: no δ_prev, the same dW and db
        dW2, db2, none = nnfast.dense_backward(delta, a_prev, W, act, need_dprev=False)
        assert none is None, what
        close(dW2, dW_r, dtype, f"{what}: dW, need_dprev=False", scale=max(np.sqrt(m), 1) * 3)
        close(db2, db_r, dtype, f"{what}: db, need_dprev=False", scale=max(np.sqrt(m), 1))

        # preallocated outputs, filled with garbage first, are written and returned
        outs = dict(dW_out=np.full((k, n), np.nan, dtype), db_out=np.full(n, np.nan, dtype),
                    dprev_out=np.full((m, k), np.nan, dtype))
        res = nnfast.dense_backward(delta, a_prev, W, act, **kw, **outs)
        assert res[0] is outs["dW_out"] and res[1] is outs["db_out"] and res[2] is outs[
            "dprev_out"], what
        close(res[0], dW_r, dtype, f"{what}: dW_out", scale=max(np.sqrt(m), 1) * 3)
        close(res[1], db_r, dtype, f"{what}: db_out", scale=max(np.sqrt(m), 1))
        close(res[2], dp_r, dtype, f"{what}: dprev_out", scale=max(np.sqrt(n), 1))


def test_backward_empty_batch_gives_zero_gradients(backend, dtype):
    """m == 0: dW and db are zeros (even into NaN-filled outputs), δ_prev is (0, fan_in)."""
    W = np.ones((4, 3), dtype)
    delta, a_prev = np.zeros((0, 3), dtype), np.zeros((0, 4), dtype)
    for act in ACTIVATIONS:
        what = f"m == 0, {act}, backend {backend}, dtype {dtype}"
        dW_out, db_out = np.full((4, 3), np.nan, dtype), np.full(3, np.nan, dtype)
        dW, db, dp = nnfast.dense_backward(delta, a_prev, W, act, z_prev=a_prev,
                                           dW_out=dW_out, db_out=db_out)
        np.testing.assert_array_equal(dW, 0, err_msg=what)
        np.testing.assert_array_equal(db, 0, err_msg=what)
        assert dp.shape == (0, 4) and dp.dtype == dtype, what
        dW, db, dp = nnfast.dense_backward(delta, a_prev, W, act, need_dprev=False)
        np.testing.assert_array_equal(dW, 0, err_msg=what)
        np.testing.assert_array_equal(db, 0, err_msg=what)
        assert dp is None
    out = nnfast.dense_forward(np.zeros((0, 4), dtype), W, np.ones(3, dtype), "softmax")
    assert out.shape == (0, 3) and out.dtype == dtype


def test_backward_identity_is_delta_times_Wt(backend, dtype):
    delta, a_prev, W, _ = _backward_inputs(dtype, 12, 5, 7, "C", "identity")
    _, _, dp = nnfast.dense_backward(delta, a_prev, W, "identity")
    close(dp, delta.astype(np.float64) @ W.T.astype(np.float64), dtype,
          f"identity delta_prev, backend {backend}", scale=3)
