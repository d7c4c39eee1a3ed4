"""Losses fused with their output delta: the reference against the seed's formulas and central
differences, every backend against the reference, label forms, ``out=``, extremes."""
import math

import numpy as np
import pytest

import nnfast
from conftest import LARGE, awkward_matrices, close, describe, make_rng, no_warnings, reference

BACKEND_MODULES = ("losses",)


def _onehot(labels, k, dtype):
    t = np.zeros((labels.size, k), dtype)
    t[np.arange(labels.size), labels] = 1
    return t


def _central_differences(loss_of, x, h=1e-6):
    """dJ/dx by central differences, element by element (float64)."""
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = loss_of(x)
        flat[i] = old - h
        down = loss_of(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


# --- the reference against the seed -------------------------------------------------------------

def test_reference_softmax_cross_entropy_formula():
    with nnfast.use_backend("reference"):
        loss, d = nnfast.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2]))
        assert loss == pytest.approx(math.log(3), rel=1e-15)
        np.testing.assert_allclose(d, [[(1 / 3 - 1) / 2, 1 / 6, 1 / 6], [1 / 6, 1 / 6, (1 / 3 - 1) / 2]],
                                   rtol=1e-15)
        rng = make_rng("sce formula")
        z, y = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        loss, d = nnfast.softmax_cross_entropy(z, y)
        assert loss == pytest.approx(-np.mean(np.log(p[np.arange(7), y])), rel=1e-14)
        # the seed's output delta δ = a - y, averaged over the batch
        np.testing.assert_allclose(d, (p - _onehot(y, 4, float)) / 7, rtol=1e-13, atol=1e-16)


def test_reference_binary_cross_entropy_and_mse_formulas():
    rng = make_rng("bce formula")
    z, y = rng.standard_normal((6, 2)), rng.integers(0, 2, (6, 2)).astype(float)
    with nnfast.use_backend("reference"):
        s = 1 / (1 + np.exp(-z))
        loss, d = nnfast.sigmoid_binary_cross_entropy(z, y)
        assert loss == pytest.approx(-np.sum(y * np.log(s) + (1 - y) * np.log(1 - s)) / 6,
                                     rel=1e-14)
        np.testing.assert_allclose(d, (s - y) / 6, rtol=1e-13, atol=1e-17)
        # the seed's J = 1/(2m) Σ (h - y)^2
        loss, d = nnfast.mean_squared_error(z, y)
        assert loss == pytest.approx(np.sum((z - y) ** 2) / 12, rel=1e-15)
        np.testing.assert_allclose(d, (z - y) / 6, rtol=1e-15)
        loss, _ = nnfast.mean_squared_error(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
        assert loss == 10 / 4


def test_reference_l2_penalty_formula():
    rng = make_rng("l2 formula")
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((3, 2))]
    with nnfast.use_backend("reference"):
        pen, grads = nnfast.l2_penalty(ws, lam=0.3, m=50)
    assert pen == pytest.approx(0.3 / 100 * sum(np.sum(w ** 2) for w in ws), rel=1e-14)
    for g, w in zip(grads, ws):
        np.testing.assert_allclose(g, 0.3 / 50 * w, rtol=1e-15)


@pytest.mark.parametrize("which", ["softmax int", "softmax probs", "bce", "mse"])
def test_reference_gradient_is_central_difference(which):
    rng = make_rng("fd", which)
    z = rng.standard_normal((5, 4)) * 2
    if which == "softmax int":
        y = rng.integers(0, 4, 5)
        fn = nnfast.softmax_cross_entropy
    elif which == "softmax probs":
        y = rng.random((5, 4))
        y /= y.sum(axis=1, keepdims=True)
        fn = nnfast.softmax_cross_entropy
    elif which == "bce":
        y = rng.random((5, 4))
        fn = nnfast.sigmoid_binary_cross_entropy
    else:
        y = rng.standard_normal((5, 4))
        fn = nnfast.mean_squared_error
    with nnfast.use_backend("reference"):
        _, d = fn(z, y)
        fd = _central_differences(lambda x: fn(x, y)[0], z.copy())
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-9, err_msg=which)


# --- backends against the reference -------------------------------------------------------------

def _check_loss(fn, backend, dtype, label, logits, y, what):
    what = f"{what}, backend {backend}, dtype {dtype}, {describe(label, logits)}"
    before, ybefore = logits.copy(), np.array(y, copy=True)
    loss_ref, d_ref = reference(fn, logits, y)
    with no_warnings():
        loss, d = fn(logits, y)
    assert isinstance(loss, float), f"{what}: loss is {type(loss).__name__}, not float"
    assert d.dtype == dtype and d.shape == logits.shape, f"{what}: dlogits {d.dtype} {d.shape}"
    np.testing.assert_array_equal(logits, before, err_msg=f"{what}: logits were mutated")
    np.testing.assert_array_equal(y, ybefore, err_msg=f"{what}: y was mutated")
    assert math.isfinite(loss) and np.all(np.isfinite(d)), what
    close(loss, loss_ref, dtype, f"{what}: loss")
    m = logits.shape[0]
    close(d * m, d_ref * m, dtype, f"{what}: dlogits * m")


def test_softmax_cross_entropy_matches_reference(backend, dtype):
    for label, z in awkward_matrices(dtype, min_rows=1, min_cols=1):
        m, k = z.shape
        rng = make_rng("sce labels", label)
        labels = rng.integers(0, k, m)
        what = "softmax_cross_entropy"
        _check_loss(nnfast.softmax_cross_entropy, backend, dtype, label, z, labels,
                    f"{what} int64 labels")
        _check_loss(nnfast.softmax_cross_entropy, backend, dtype, label, z,
                    _onehot(labels, k, dtype), f"{what} one-hot")
        soft = rng.random((m, k)).astype(dtype)
        soft /= soft.sum(axis=1, keepdims=True)
        _check_loss(nnfast.softmax_cross_entropy, backend, dtype, label, z, soft,
                    f"{what} soft targets")


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_softmax_cross_entropy_integer_and_onehot_agree(backend, dtype, label_dtype):
    rng = make_rng("agree", dtype.name)
    z = (rng.standard_normal((33, 5)) * 3).astype(dtype)
    labels = rng.integers(0, 5, 33)
    what = f"softmax_cross_entropy, backend {backend}, dtype {dtype}, labels {label_dtype}"
    loss_i, d_i = nnfast.softmax_cross_entropy(z, labels.astype(label_dtype))
    loss_h, d_h = nnfast.softmax_cross_entropy(z, _onehot(labels, 5, dtype))
    close(loss_i, loss_h, dtype, what)
    close(d_i * 33, d_h * 33, dtype, what)
    # non-contiguous labels
    wide = np.repeat(labels.astype(label_dtype), 2)
    loss_s, d_s = nnfast.softmax_cross_entropy(z, wide[::2])
    close(loss_s, loss_i, dtype, f"{what}, strided labels")


@pytest.mark.parametrize("name", ["bce", "mse"])
def test_elementwise_losses_match_reference(name, backend, dtype):
    fn = {"bce": nnfast.sigmoid_binary_cross_entropy, "mse": nnfast.mean_squared_error}[name]
    for label, z in awkward_matrices(dtype, min_rows=1):
        rng = make_rng("elementwise loss", label)
        y01 = rng.integers(0, 2, z.shape)
        _check_loss(fn, backend, dtype, label, z, y01.astype(dtype), f"{name} float targets")
        _check_loss(fn, backend, dtype, label, z, y01, f"{name} int targets")
        _check_loss(fn, backend, dtype, label, z, y01.astype(bool), f"{name} bool targets")
        _check_loss(fn, backend, dtype, label, z, rng.random(z.shape).astype(dtype),
                    f"{name} soft targets")
        # 1-D logits: one output column
        col = np.ascontiguousarray(z[:, 0]) if z.shape[1] else None
        if col is not None:
            _check_loss(fn, backend, dtype, label + " first column (1-D)", col,
                        y01[:, 0].astype(dtype), f"{name} 1-D")
            _check_loss(fn, backend, dtype, label + " strided column (1-D)", z[:, 0],
                        y01[:, 0].astype(dtype), f"{name} 1-D strided")


@pytest.mark.parametrize("name", ["softmax", "bce", "mse"])
def test_losses_finite_without_warnings_at_extremes(name, backend, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4], [-1e4, 1e4, 5.0]],
                 dtype=dtype)
    labels = np.array([1, 0, 2, 0])
    if name == "softmax":
        fn, y = nnfast.softmax_cross_entropy, labels
    elif name == "bce":
        fn, y = nnfast.sigmoid_binary_cross_entropy, _onehot(labels, 3, dtype)
    else:
        fn, y = nnfast.mean_squared_error, _onehot(labels, 3, dtype)
    what = f"{name}, backend {backend}, dtype {dtype}, logits ±1e4"
    with no_warnings():
        loss, d = fn(z, y)
    assert math.isfinite(loss) and np.all(np.isfinite(d)), what
    loss_ref, d_ref = reference(fn, z, y)
    close(loss, loss_ref, dtype, what)
    close(d * 4, d_ref * 4, dtype, what)
    if name == "softmax":
        # row 0: label 1 has logit -1e4 against 1e4: loss 2e4; row 1: uniform, log 3;
        # row 2: uniform, log 3; row 3: label 0 has -1e4 against 1e4: 2e4
        assert loss == pytest.approx((2e4 + 2 * math.log(3) + 2e4) / 4, rel=1e-6)


@pytest.mark.parametrize("name", ["softmax int", "softmax onehot", "bce", "mse"])
def test_loss_out(name, backend, dtype):
    rng = make_rng("loss out", name)
    z = (rng.standard_normal((11, 4)) * 2).astype(dtype)
    labels = rng.integers(0, 4, 11)
    if name == "softmax int":
        fn, y = nnfast.softmax_cross_entropy, labels
    elif name == "softmax onehot":
        fn, y = nnfast.softmax_cross_entropy, _onehot(labels, 4, dtype)
    elif name == "bce":
        fn, y = nnfast.sigmoid_binary_cross_entropy, _onehot(labels, 4, dtype)
    else:
        fn, y = nnfast.mean_squared_error, rng.standard_normal((11, 4)).astype(dtype)
    what = f"{name}, backend {backend}, dtype {dtype}"
    loss_ref, d_ref = reference(fn, z, y)

    out = np.full_like(z, 9.0)
    loss, d = fn(z, y, out=out)
    assert d is out, what
    close(loss, loss_ref, dtype, what)
    close(out * 11, d_ref * 11, dtype, f"{what}, fresh out")

    # out aliasing the logits: they are overwritten by dlogits
    zz = z.copy()
    loss, d = fn(zz, y, out=zz)
    assert d is zz, what
    close(loss, loss_ref, dtype, f"{what}, out=logits")
    close(zz * 11, d_ref * 11, dtype, f"{what}, out=logits")

    # non-contiguous out
    buf = np.full((11, 8), -3.0, dtype)
    out = buf[:, 1::2]
    loss, d = fn(z, y, out=out)
    assert d is out, what
    close(buf[:, 1::2] * 11, d_ref * 11, dtype, f"{what}, strided out")
    np.testing.assert_array_equal(buf[:, ::2], -3.0, err_msg=f"{what}: wrote outside out")
    close(loss, loss_ref, dtype, f"{what}, strided out")


def test_l2_penalty_matches_reference(backend, dtype):
    rng = make_rng("l2", dtype.name)
    ws = [
        rng.standard_normal((64, 33)).astype(dtype),
        np.zeros((0, 5), dtype),
        rng.standard_normal(1).astype(dtype),
        rng.standard_normal((40, 60)).astype(dtype).T,
        rng.standard_normal(LARGE).astype(dtype),
        rng.standard_normal((2, 2)).astype(dtype) * 1e4,
    ]
    ws[2].flags.writeable = False
    before = [w.copy() for w in ws]
    what = f"l2_penalty, backend {backend}, dtype {dtype}"
    pen_ref, g_ref = reference(nnfast.l2_penalty, ws, 0.7, 128)
    with no_warnings():
        pen, grads = nnfast.l2_penalty(ws, 0.7, 128)
    assert isinstance(pen, float) and isinstance(grads, list) and len(grads) == len(ws), what
    close(pen, pen_ref, dtype, what)
    for i, (g, gr, w, b) in enumerate(zip(grads, g_ref, ws, before)):
        assert g.dtype == dtype and g.shape == w.shape, f"{what}, weights[{i}]"
        close(g, gr, dtype, f"{what}, grads[{i}] {describe('weights', w)}")
        np.testing.assert_array_equal(w, b, err_msg=f"{what}: weights[{i}] mutated")
    # one array in, one array out; lam = 0 gives zeros
    pen1, g1 = nnfast.l2_penalty(ws[0], 0.7, 128)
    assert isinstance(g1, np.ndarray)
    close(pen1, reference(nnfast.l2_penalty, ws[0], 0.7, 128)[0], dtype, what)
    pen0, g0 = nnfast.l2_penalty(ws[0], 0.0, 128)
    assert pen0 == 0.0 and not np.any(g0)
