"""Activations and their derivatives: the reference against the seed's formulas, every backend
against the reference on awkward arrays, ``out=``, dtypes, and a few Hypothesis properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnfast
from conftest import (awkward_arrays, awkward_matrices, close, describe, make_rng, no_warnings,
                      reference, require_backend)

BACKEND_MODULES = ("activations",)

#: name -> (public function, extra keyword arguments)
ELEMENTWISE = {
    "sigmoid": (nnfast.sigmoid, {}),
    "sigmoid_grad": (nnfast.sigmoid_grad, {}),
    "tanh": (nnfast.tanh, {}),
    "tanh_grad": (nnfast.tanh_grad, {}),
    "relu": (nnfast.relu, {}),
    "relu_grad": (nnfast.relu_grad, {}),
    "leaky_relu": (nnfast.leaky_relu, {}),
    "leaky_relu_grad": (nnfast.leaky_relu_grad, {}),
    "leaky_relu slope=0.2": (nnfast.leaky_relu, {"slope": 0.2}),
    "leaky_relu_grad slope=0.2": (nnfast.leaky_relu_grad, {"slope": 0.2}),
    "identity": (nnfast.identity, {}),
}


# --- the reference against the seed's formulas ------------------------------------------------

def _z():
    return np.linspace(-8.0, 8.0, 161)


def test_reference_sigmoid_formula():
    with nnfast.use_backend("reference"):
        z = _z()
        np.testing.assert_allclose(nnfast.sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-15)
        a = nnfast.sigmoid(np.array([0.0, 2.0], dtype=np.float32))
        np.testing.assert_allclose(a, [0.5, 0.8807971], rtol=1e-7)
        a = nnfast.sigmoid(z)
        np.testing.assert_allclose(nnfast.sigmoid_grad(a), a * (1 - a), rtol=1e-15)
        # g'(z) = a(1 - a) is the derivative: central differences of the sigmoid itself.
        h = 1e-6
        fd = (nnfast.sigmoid(z + h) - nnfast.sigmoid(z - h)) / (2 * h)
        np.testing.assert_allclose(nnfast.sigmoid_grad(a), fd, rtol=0, atol=1e-9)  # roundoff ~1e-10
        with no_warnings():
            a = nnfast.sigmoid(np.array([-1e4, 1e4, -745.0, 800.0]))
        np.testing.assert_array_equal(a, [0.0, 1.0, np.exp(-745.0) / (1 + np.exp(-745.0)), 1.0])


def test_reference_tanh_formula():
    with nnfast.use_backend("reference"):
        z = _z()
        np.testing.assert_allclose(nnfast.tanh(z),
                                   (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z)),
                                   rtol=1e-14, atol=1e-16)
        a = nnfast.tanh(z)
        np.testing.assert_allclose(nnfast.tanh_grad(a), 1 - a ** 2, rtol=1e-15)
        h = 1e-6
        fd = (nnfast.tanh(z + h) - nnfast.tanh(z - h)) / (2 * h)
        np.testing.assert_allclose(nnfast.tanh_grad(a), fd, rtol=0, atol=1e-9)


def test_reference_relu_and_leaky_relu_formulas():
    with nnfast.use_backend("reference"):
        z = np.array([-2.0, -1e-300, -0.0, 0.0, 1e-300, 3.0])
        np.testing.assert_array_equal(nnfast.relu(z), [0, 0, 0, 0, 1e-300, 3.0])
        # seed: g'(z) = 0 if z < 0, 1 if z >= 0 (so 1 at z = 0, and at -0.0 == 0).
        np.testing.assert_array_equal(nnfast.relu_grad(z), [0, 0, 1, 1, 1, 1])
        np.testing.assert_array_equal(nnfast.leaky_relu(z), np.where(z >= 0, z, 0.01 * z))
        # the seed's leaky slope is 0.01
        np.testing.assert_array_equal(nnfast.leaky_relu_grad(z), [0.01, 0.01, 1, 1, 1, 1])
        np.testing.assert_array_equal(nnfast.leaky_relu(z, slope=0.5), np.where(z >= 0, z, 0.5 * z))
        np.testing.assert_array_equal(nnfast.leaky_relu_grad(z, slope=0.5), [0.5, 0.5, 1, 1, 1, 1])


def test_reference_softmax_formula():
    with nnfast.use_backend("reference"):
        z = make_rng("softmax formula").standard_normal((6, 5))
        e = np.exp(z)
        np.testing.assert_allclose(nnfast.softmax(z), e / e.sum(axis=1, keepdims=True),
                                   rtol=1e-14)
        np.testing.assert_allclose(nnfast.softmax(z).sum(axis=1), 1.0, rtol=1e-15)
        with no_warnings():
            s = nnfast.softmax(np.array([[1.0, 1.0], [0.0, 1e4]]))
        np.testing.assert_array_equal(s, [[0.5, 0.5], [0.0, 1.0]])
        # 1-D input is one row, more leading axes are rows too
        np.testing.assert_allclose(nnfast.softmax(z[0]), nnfast.softmax(z[:1])[0], rtol=1e-15)
        z3 = z.reshape(2, 3, 5)
        np.testing.assert_allclose(nnfast.softmax(z3), nnfast.softmax(z).reshape(2, 3, 5),
                                   rtol=1e-15)


def test_reference_identity_is_a_copy():
    x = np.arange(5.0)
    y = nnfast.identity(x)
    assert y is not x and not np.shares_memory(x, y)
    np.testing.assert_array_equal(y, x)


# --- every backend against the reference -------------------------------------------------------

def _check_elementwise(name, backend, dtype, label, x):
    fn, kwargs = ELEMENTWISE[name]
    what = f"{name}, backend {backend}, dtype {dtype}, {describe(label, x)}"
    before = x.copy()
    expected = reference(fn, x, **kwargs)
    got = fn(x, **kwargs)
    assert isinstance(got, np.ndarray), what
    assert got.dtype == dtype, f"{what}: result dtype {got.dtype}"
    assert got.shape == x.shape, f"{what}: result shape {got.shape}"
    assert not np.shares_memory(got, x), f"{what}: result shares memory with the input"
    np.testing.assert_array_equal(x, before, err_msg=f"{what}: input was mutated")
    close(got, expected, dtype, what, equal_nan=True)
    # NaN in, NaN out; a non-NaN never becomes NaN
    if name not in ("relu_grad", "leaky_relu_grad") and not name.startswith("leaky_relu_grad"):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_matches_reference(name, backend, dtype):
    for label, x in awkward_arrays(dtype):
        finite = np.all(np.isfinite(x))
        if finite:
            with no_warnings():
                _check_elementwise(name, backend, dtype, label, x)
        else:
            _check_elementwise(name, backend, dtype, label, x)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_activation_ranges_and_grads_on_extremes(name, backend, dtype):
    """Finite input gives finite, in-range output; sigmoid and tanh saturate exactly."""
    z = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=dtype)
    fn = ELEMENTWISE[name][0]
    with no_warnings():
        a = fn(z)
    what = f"{name}, backend {backend}, dtype {dtype}"
    assert np.all(np.isfinite(a)), what
    if name == "sigmoid":
        assert np.all((a >= 0) & (a <= 1)), what
        assert a[0] == 0.0 and a[-1] == 1.0 and a[3] == 0.5, what
    if name == "tanh":
        assert a[0] == -1.0 and a[-1] == 1.0 and a[3] == 0.0, what


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_out(name, backend, dtype):
    fn, kwargs = ELEMENTWISE[name]
    rng = make_rng("out", name, dtype.name)
    x = (rng.standard_normal((13, 7)) * 2).astype(dtype)
    expected = reference(fn, x, **kwargs)
    what = f"{name}, backend {backend}, dtype {dtype}"

    out = np.full(x.shape, 123.0, dtype)
    assert fn(x, out=out, **kwargs) is out, what
    close(out, expected, dtype, f"{what}, fresh out")

    # out aliasing the input: computed in place
    y = x.copy()
    assert fn(y, out=y, **kwargs) is y, what
    close(y, expected, dtype, f"{what}, out=x in place")

    # non-contiguous out: only its elements are written
    buf = np.full((13, 14), -7.0, dtype)
    out = buf[:, ::2]
    assert fn(x, out=out, **kwargs) is out, what
    close(out, expected, dtype, f"{what}, strided out")
    np.testing.assert_array_equal(buf[:, 1::2], -7.0, err_msg=f"{what}: wrote outside out")

    # Fortran-ordered out, input non-contiguous
    out = np.empty(x.shape, dtype, order="F")
    xs = np.asfortranarray(x)
    assert fn(xs, out=out, **kwargs) is out, what
    close(out, expected, dtype, f"{what}, Fortran out")

    # out overlapping the input but not identical to it (shifted view)
    buf = np.concatenate([x.reshape(-1), np.zeros(1, dtype)])
    xin, out = buf[:-1], buf[1:]
    expected_flat = reference(fn, xin.copy(), **kwargs)
    fn(xin, out=out, **kwargs)
    close(out, expected_flat, dtype, f"{what}, out overlapping the input by a shift")


def _softmax_check(backend, dtype, label, x):
    what = f"softmax, backend {backend}, dtype {dtype}, {describe(label, x)}"
    before = x.copy()
    expected = reference(nnfast.softmax, x)
    got = nnfast.softmax(x)
    assert got.dtype == dtype and got.shape == x.shape, what
    np.testing.assert_array_equal(x, before, err_msg=f"{what}: input was mutated")
    close(got, expected, dtype, what)
    if got.size:
        assert np.all((got >= 0) & (got <= 1)), what
        np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=x.shape[-1] * 2e-7
                                   if dtype == np.float32 else x.shape[-1] * 1e-15,
                                   err_msg=what)


def test_softmax_matches_reference(backend, dtype):
    rng = make_rng("softmax", dtype.name)
    with no_warnings():
        for label, x in awkward_matrices(dtype):
            _softmax_check(backend, dtype, label, x)
        _softmax_check(backend, dtype, "1-D (11,)", rng.standard_normal(11).astype(dtype))
        _softmax_check(backend, dtype, "3-D (2, 3, 4)",
                       rng.standard_normal((2, 3, 4)).astype(dtype))
        _softmax_check(backend, dtype, "constant rows (5, 3)", np.full((5, 3), 7.0, dtype))
    # masked logits: -inf entries get probability 0 (meaningful; a row needs one finite entry)
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]], dtype=dtype)
    got = nnfast.softmax(x)
    close(got, reference(nnfast.softmax, x), dtype, f"softmax with -inf, backend {backend}")
    assert got[0, 1] == 0 and got[1, 1] == 1 and got[1, 0] == 0


def test_softmax_out(backend, dtype):
    x = make_rng("softmax out").standard_normal((9, 4)).astype(dtype)
    expected = reference(nnfast.softmax, x)
    what = f"softmax, backend {backend}, dtype {dtype}"
    out = np.empty_like(x)
    assert nnfast.softmax(x, out=out) is out
    close(out, expected, dtype, what)
    y = x.copy()
    assert nnfast.softmax(y, out=y) is y
    close(y, expected, dtype, f"{what}, out=x")
    buf = np.full((9, 8), 5.0, dtype)
    assert nnfast.softmax(x, out=buf[:, 2:6]) is not None
    close(buf[:, 2:6], expected, dtype, f"{what}, strided out")
    np.testing.assert_array_equal(buf[:, :2], 5.0)
    np.testing.assert_array_equal(buf[:, 6:], 5.0)


# --- Hypothesis properties ----------------------------------------------------------------------

_finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                    elements=_finite))
def test_property_softmax_rows_are_distributions(name, x):
    require_backend(name, BACKEND_MODULES)
    with nnfast.use_backend(name):
        with no_warnings():
            s = nnfast.softmax(x)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    if s.size:
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-5)
        close(s, reference(nnfast.softmax, x), np.float32, f"softmax {name}")


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                    elements=st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)))
def test_property_sigmoid_tanh_in_range_and_equal_reference(name, x):
    require_backend(name, BACKEND_MODULES)
    with nnfast.use_backend(name):
        with no_warnings():
            a = nnfast.sigmoid(x)
            t = nnfast.tanh(x)
    assert np.all((a >= 0) & (a <= 1)) and np.all((t >= -1) & (t <= 1))
    close(a, reference(nnfast.sigmoid, x), np.float64, f"sigmoid {name}")
    close(t, reference(nnfast.tanh, x), np.float64, f"tanh {name}")
    # monotone: sorting the input sorts the output
    flat = np.sort(x.reshape(-1))
    with nnfast.use_backend(name):
        assert np.all(np.diff(nnfast.sigmoid(flat)) >= 0)
