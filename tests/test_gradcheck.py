"""nnfast.gradcheck: the seed's two-sided differences and relative difference."""
import numpy as np
import pytest
from conftest import make_rng

import nnfast
from nnfast.gradcheck import GradcheckResult


def test_seed_formula_on_a_quadratic():
    """J = Σ a·θ²: dθ = 2aθ; the central difference of a quadratic is exact up to roundoff."""
    rng = make_rng("quadratic")
    a, theta = rng.uniform(0.5, 2.0, 6), rng.standard_normal(6)
    result = nnfast.gradcheck(lambda: float(np.sum(a * theta ** 2)), theta, 2 * a * theta)
    assert isinstance(result, GradcheckResult) and float(result) == result.diff
    assert result.diff < 1e-8
    np.testing.assert_allclose(result.approx[0], 2 * a * theta, rtol=1e-6)


def test_relative_difference_is_the_seeds():
    """diff = ||approx - dθ|| / (||approx|| + ||dθ||): a wrong gradient is caught, per array."""
    w, b = np.array([1.0, -2.0, 0.5]), np.array([0.3])
    loss = lambda: float(w @ w + 3 * b[0])          # noqa: E731
    good, wrong = [2 * w, np.array([3.0])], [2 * w, np.array([-3.0])]
    assert nnfast.gradcheck(loss, [w, b], good).diff < 1e-8
    result = nnfast.gradcheck(loss, [w, b], wrong)
    assert result.per_param[0] < 1e-8 and result.per_param[1] == pytest.approx(1.0)
    approx = np.concatenate([2 * w, [3.0]])
    analytic = np.concatenate(wrong)
    want = (np.linalg.norm(approx - analytic)
            / (np.linalg.norm(approx) + np.linalg.norm(analytic)))
    assert result.diff == pytest.approx(want, rel=1e-6)


def test_params_restored_bit_for_bit_and_zero_gradient():
    rng = make_rng("restore")
    params = [rng.standard_normal((3, 4)), rng.standard_normal(5).astype(np.float32)]
    before = [p.copy() for p in params]
    result = nnfast.gradcheck(lambda: 1.0, params, [np.zeros((3, 4)), np.zeros(5)])
    assert result.diff == 0.0 and result.per_param == [0.0, 0.0]
    for b, p in zip(before, params):
        np.testing.assert_array_equal(b, p)


@pytest.mark.parametrize("fails_at", [0, 1, 5, 6])
@pytest.mark.parametrize("how", ["raises", "returns None", "returns a string"])
def test_params_restored_when_loss_fn_fails(fails_at, how):
    """A loss_fn that raises (or returns no number) on its k-th call: the error propagates
    (TypeError naming loss_fn for a non-number) and every parameter is as it was."""
    rng = make_rng("restore on error")
    params = [rng.standard_normal((2, 2)), rng.standard_normal(3).astype(np.float32)]
    before = [p.copy() for p in params]
    calls = [0]

    def loss():
        calls[0] += 1
        if calls[0] > fails_at:
            if how == "raises":
                raise KeyError("boom")
            return None if how == "returns None" else "1.0x"
        return float(sum(p.sum() for p in params))

    exc, match = (KeyError, "boom") if how == "raises" else (TypeError, "^loss_fn must return")
    with pytest.raises(exc, match=match):
        nnfast.gradcheck(loss, params, [np.zeros((2, 2)), np.zeros(3)])
    for b, p in zip(before, params):
        np.testing.assert_array_equal(b, p)


def test_checks_nnfast_kernels_end_to_end():
    """A one-layer softmax model written with the functional kernels."""
    rng = make_rng("kernels")
    X, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)

    def loss():
        return nnfast.softmax_cross_entropy(nnfast.dense_forward(X, W, b), y)[0]

    _, delta = nnfast.softmax_cross_entropy(nnfast.dense_forward(X, W, b), y)
    dW, db, _ = nnfast.dense_backward(delta, X, W, need_dprev=False)
    assert nnfast.gradcheck(loss, [W, b], [dW, db]).diff < 1e-8


@pytest.mark.parametrize("call,exc,match", [
    (lambda: nnfast.gradcheck(3, [np.zeros(2)], [np.zeros(2)]), TypeError, "loss_fn"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], []), ValueError, "grads"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], [np.zeros(3)]), ValueError,
     "grads\\[0\\]"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2, int)], [np.zeros(2)]), TypeError,
     "params\\[0\\]"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros((3, 4)).T], [np.zeros((4, 3))]),
     ValueError, "contiguous"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], [np.zeros(2)], eps=0.0), ValueError,
     "eps"),
    # a gradient that is not numbers is named, not left to NumPy's "could not convert"
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], [["a", "b"]]), TypeError,
     "grads\\[0\\] must be a real numeric array, got dtype <U1"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], ["ab"]), TypeError, "grads\\[0\\]"),
    (lambda: nnfast.gradcheck(lambda: 0.0, np.zeros(2), "ab"), TypeError, "grads must be"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2), np.zeros(1)],
                              [np.zeros(2), np.array([object()])]), TypeError, "grads\\[1\\]"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], [np.zeros(2, complex)]), TypeError,
     "grads\\[0\\].*complex128"),
    (lambda: nnfast.gradcheck(lambda: 0.0, [np.zeros(2)], [None]), TypeError, "grads\\[0\\]"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_param():
    p = np.zeros(2)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nnfast.gradcheck(lambda: 0.0, [p], [np.zeros(2)])


def test_model_check_gradients_covers_every_param():
    net = nnfast.MLP([8, 16, 16, 4], hidden="tanh", batchnorm=True, l2=0.1, dtype="float64",
                     seed=0)
    rng = make_rng("model")
    X, y = rng.standard_normal((32, 8)), rng.integers(0, 4, 32)
    result = net.check_gradients(X, y)
    assert result.diff < 1e-7
    assert [a.shape for a in result.approx] == [p.shape for p in net.params]


@pytest.mark.parametrize("hidden,output", [("relu", "softmax"), ("tanh", "sigmoid"),
                                           ("leaky_relu", "identity")])
def test_check_gradients_threads_match_serial(hidden, output):
    """n_jobs=2 splits the parameters over threads, each perturbing its own copy: the numerical
    gradients are those of the serial check, and the model's weights are left as they were."""
    rng = np.random.default_rng(3)
    model = nnfast.MLP([12, 9, 7, 3], hidden=hidden, output=output, l2=0.05, dtype="float64",
                       seed=4)
    X = rng.standard_normal((10, 12))
    labels = rng.integers(0, 3, 10)
    y = labels if output == "softmax" else np.eye(3)[labels]
    before = model.flat_params.copy()
    serial = model.check_gradients(X, y, n_jobs=1)
    threaded = model.check_gradients(X, y, n_jobs=2)
    np.testing.assert_array_equal(model.flat_params, before)
    for a, b in zip(serial.approx, threaded.approx):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    assert threaded.diff == pytest.approx(serial.diff, rel=1e-9)
    assert threaded.diff < 1e-7


def test_check_gradients_bad_n_jobs():
    model = nnfast.MLP([4, 3, 2], dtype="float64", seed=0)
    X, y = np.ones((4, 4)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_jobs"):
        model.check_gradients(X, y, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs"):
        model.check_gradients(X, y, n_jobs=1.5)
