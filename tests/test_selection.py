"""nnfast.selection: choose_lambda, learning_curve, diagnose."""
import importlib

import numpy as np
import pytest
from conftest import require_backend

import nnfast
from nnfast import MLP, _grid, selection


def _blobs(n, dtype, seed=0):
    """Three noisy, overlapping Gaussian classes in 4 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(0, 1.0, (3, 4))
    X = centers[y] + rng.normal(0, 1.0, (n, 4))
    return X.astype(dtype), y


OPTS = dict(layer_sizes=[4, 8, 3], epochs=5, batch_size=16, lr=0.01)


@pytest.fixture(params=["float32", "float64"])
def data(request):
    X, y = _blobs(120, request.param)
    return request.param, X[:80], y[:80], X[80:], y[80:]


def test_default_grid_is_the_seeds():
    grid = selection.DEFAULT_LAMBDAS
    assert len(grid) == 11
    assert grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(10.24)
    assert np.allclose(np.array(grid[1:]) / np.array(grid[:-1]), 2.0)


def test_choose_lambda_picks_the_lowest_unregularized_cv_cost(data):
    dtype, Xt, yt, Xc, yc = data
    lams = [0.01, 0.3, 3.0, 30.0]
    res = selection.choose_lambda(Xt, yt, Xc, yc, lams, dtype=dtype, **OPTS)
    assert [row["lambda"] for row in res.table] == lams
    assert res.best_lambda == lams[int(np.argmin(res.cv_cost))]
    assert res.best_model.l2 == res.best_lambda and res.best_model.dtype == np.dtype(dtype)
    # the table's numbers are the best model's own, without the L2 term
    best = res.table[lams.index(res.best_lambda)]
    plain = res.best_model.copy()
    plain_cfg = plain.get_config()
    plain_cfg["l2"] = 0.0
    zero = MLP(**plain_cfg)
    zero.flat_params[...] = res.best_model.flat_params
    assert best["cv_cost"] == zero.loss(Xc, yc)
    assert best["train_cost"] == zero.loss(Xt, yt)
    assert best["cv_accuracy"] == np.mean(res.best_model.predict(Xc) == yc)
    # with a large λ the regularized objective differs from the reported cost
    assert res.best_model.loss(Xc, yc) > best["cv_cost"]
    # λ = 30 shrinks the weights far enough to underfit: a higher training cost than λ = 0.01
    assert res.table[3]["train_cost"] > res.table[0]["train_cost"]


def test_unregularized_cost_equals_loss_with_l2_zero():
    X, y = _blobs(40, "float64")
    model = MLP([4, 5, 3], l2=2.0, dtype="float64", seed=1)
    twin = MLP([4, 5, 3], l2=0.0, dtype="float64", seed=1)
    assert selection.unregularized_cost(model, X, y) == twin.loss(X, y)
    assert model.loss(X, y) > twin.loss(X, y)


def test_sweep_is_the_same_serially_and_in_parallel():
    X, y = _blobs(90, "float32", seed=3)
    lams = [0.01, 1.0, 10.0]
    serial = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, seed=7, **OPTS)
    parallel = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, seed=7, n_jobs=2,
                                       **OPTS)
    assert serial.table == parallel.table
    assert np.array_equal(serial.best_model.flat_params, parallel.best_model.flat_params)
    other_seed = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, seed=8, **OPTS)
    assert other_seed.table != serial.table
    # the workers run on the caller's backend, not on their own default
    with nnfast.use_backend("reference"):
        ref_serial = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, seed=7, **OPTS)
        ref_parallel = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, seed=7,
                                               n_jobs=2, **OPTS)
    assert ref_serial.table == ref_parallel.table


def test_k_fold_form():
    X, y = _blobs(60, "float64", seed=4)
    lams = [0.01, 5.0]
    res = selection.choose_lambda(X, y, lambdas=lams, cv=3, dtype="float64", **OPTS)
    assert res.n_folds == 3 and len(res.table) == 2
    assert res.best_lambda == lams[int(np.argmin(res.cv_cost))]
    # each row is the mean over the folds of a model trained on the other folds
    order = np.random.default_rng(0).permutation(60)
    parts = np.array_split(order, 3)
    costs = []
    for i in range(3):
        tr = np.concatenate([p for j, p in enumerate(parts) if j != i])
        m = MLP([4, 8, 3], l2=lams[1], dtype="float64", seed=0)
        m.fit(X[tr], y[tr], epochs=5, batch_size=16, lr=0.01, tol=None, seed=0, progress=False)
        costs.append(selection.unregularized_cost(m, X[parts[i]], y[parts[i]]))
    assert res.table[1]["cv_cost"] == pytest.approx(np.mean(costs), rel=1e-12)
    assert res.best_model.l2 == res.best_lambda


def test_regression_has_no_accuracy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    res = selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], [0.01, 1.0],
                                  layer_sizes=[3, 4, 1], output="identity", dtype="float64",
                                  epochs=3, batch_size=10, lr=0.01)
    assert all(row["cv_accuracy"] is None and row["train_accuracy"] is None for row in res.table)


def test_learning_curve_shapes_and_sizes(data):
    dtype, Xt, yt, Xc, yc = data
    curve = selection.learning_curve(Xt, yt, Xc, yc, sizes=(0.25, 0.5, 1.0), seeds=(0, 1),
                                     dtype=dtype, **OPTS)
    assert curve.sizes.tolist() == [20, 40, 80]
    assert curve.train_costs.shape == curve.cv_costs.shape == (2, 3)
    assert np.allclose(curve.train_cost, curve.train_costs.mean(axis=0))
    assert np.allclose(curve.cv_cost, curve.cv_costs.mean(axis=0))
    assert np.all(np.isfinite(curve.cv_costs)) and np.all(curve.cv_costs > 0)
    # the last point (all rows, seed 0) is a plain fit on a permutation of the training set
    rows = np.random.default_rng(0).permutation(80)
    m = MLP([4, 8, 3], dtype=dtype, seed=0)
    m.fit(Xt[rows], yt[rows], epochs=5, batch_size=16, lr=0.01, tol=None, seed=0,
          progress=False)
    assert curve.cv_costs[0, -1] == selection.unregularized_cost(m, Xc, yc)
    assert curve.train_costs[0, -1] == selection.unregularized_cost(m, Xt[rows], yt[rows])


def test_learning_curve_counts_and_parallel():
    X, y = _blobs(100, "float32", seed=5)
    a = selection.learning_curve(X[:70], y[:70], X[70:], y[70:], sizes=[10, 35, 70], **OPTS)
    b = selection.learning_curve(X[:70], y[:70], X[70:], y[70:], sizes=[10, 35, 70], n_jobs=2,
                                 **OPTS)
    assert a.sizes.tolist() == [10, 35, 70]
    assert np.array_equal(a.cv_costs, b.cv_costs)
    assert np.array_equal(a.train_costs, b.train_costs)


@pytest.mark.parametrize("train, cv, base, verdict", [
    (10.8, 14.8, 10.6, "high variance"),      # the lecture's speech-recognition figures
    (15.0, 15.5, 10.6, "high bias"),
    (15.0, 19.7, 10.6, "both"),
    (10.8, 11.0, 10.6, "fine"),
    (0.02, 0.30, None, "high variance"),      # baseline 0
    (0.30, 0.31, None, "high bias"),
])
def test_diagnose_verdicts(train, cv, base, verdict):
    d = selection.diagnose(train, cv, base)
    assert d.verdict == verdict
    assert d.train_error == train and d.cv_error == cv
    assert d.baseline_error == (0.0 if base is None else base)
    assert d.variance_gap == pytest.approx(cv - train)
    assert d.bias_gap == pytest.approx(train - d.baseline_error)
    if verdict in ("high bias", "both"):
        assert "decrease λ" in d.remedies
    if verdict in ("high variance", "both"):
        assert "get more training examples" in d.remedies and "increase λ" in d.remedies
    if verdict == "fine":
        assert d.remedies == []
    assert verdict in str(d)


def test_diagnose_threshold_and_results(data):
    assert selection.diagnose(10.8, 14.8, 10.6, threshold=0.5).verdict == "fine"
    dtype, Xt, yt, Xc, yc = data
    res = selection.choose_lambda(Xt, yt, Xc, yc, [0.01, 1.0], dtype=dtype, **OPTS)
    d = selection.diagnose(res)
    row = res.table[[0.01, 1.0].index(res.best_lambda)]
    assert (d.train_error, d.cv_error) == (row["train_cost"], row["cv_cost"])
    curve = selection.learning_curve(Xt, yt, Xc, yc, sizes=[0.5, 1.0], dtype=dtype, **OPTS)
    d = selection.diagnose(curve, baseline_error=0.1)
    assert (d.train_error, d.cv_error, d.baseline_error) == (curve.train_cost[-1],
                                                             curve.cv_cost[-1], 0.1)


def test_bad_inputs():
    X, y = _blobs(30, "float64")
    with pytest.raises(TypeError, match=r"unknown options \['epoch', 'hiden'\]"):
        selection.choose_lambda(X, y, X, y, [1.0], epoch=3, hiden="relu", **OPTS)
    with pytest.raises(TypeError, match="layer_sizes"):
        selection.choose_lambda(X, y, X, y, [1.0], epochs=2)
    with pytest.raises(TypeError, match="l2"):
        selection.choose_lambda(X, y, X, y, [1.0], l2=0.5, **OPTS)
    with pytest.raises(ValueError, match=r"lambdas\[1\]"):
        selection.choose_lambda(X, y, X, y, [1.0, -2.0], **OPTS)
    with pytest.raises(ValueError, match="lambdas"):
        selection.choose_lambda(X, y, X, y, [], **OPTS)
    with pytest.raises(TypeError, match="X_cv and y_cv"):
        selection.choose_lambda(X, y, X, None, [1.0], **OPTS)
    with pytest.raises(ValueError, match="y_cv"):
        selection.choose_lambda(X, y, X, y[:5], [1.0], **OPTS)
    with pytest.raises(ValueError, match="X_train"):
        selection.choose_lambda(X[0], y, X, y, [1.0], **OPTS)
    with pytest.raises(ValueError, match="cv"):
        selection.choose_lambda(X, y, lambdas=[1.0], cv=1, **OPTS)
    with pytest.raises(ValueError, match="n_jobs"):
        selection.choose_lambda(X, y, X, y, [1.0], n_jobs=0, **OPTS)
    with pytest.raises(ValueError, match="seed"):
        selection.choose_lambda(X, y, X, y, [1.0], seed=None, **OPTS)
    with pytest.raises(ValueError, match=r"sizes\[0\]"):
        selection.learning_curve(X, y, X, y, sizes=[0.0, 1.0], **OPTS)
    with pytest.raises(ValueError, match="increasing"):
        selection.learning_curve(X, y, X, y, sizes=[1.0, 0.5], **OPTS)
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        selection.learning_curve(X, y, X, y, sizes=[5, 31], **OPTS)
    with pytest.raises(TypeError, match="seeds"):
        selection.learning_curve(X, y, X, y, seed=3, **OPTS)
    with pytest.raises(ValueError, match="cv_error"):
        selection.diagnose(0.1, -1.0)
    with pytest.raises(TypeError, match="cv_error"):
        selection.diagnose(0.1)
    with pytest.raises(TypeError, match="train_error"):
        selection.diagnose("low", 0.2)
    with pytest.raises(ValueError, match="threshold"):
        selection.diagnose(0.1, 0.2, threshold=-1)


# ---------------------------------------------------------------- the batched λ grid --
def _targets(output, y):
    if output == "softmax":
        return y
    if output == "sigmoid":
        return np.stack([y == 0, y == 2], axis=1).astype(float)
    return np.stack([y * 0.5, -y], axis=1).astype(float)


# float64: the batched and the separate fits differ only in rounding — the layer-0 GEMM has
# K·n columns instead of n (BLAS may block it differently) and the loss kernel's 1/(K·m) is
# scaled back by K — so after 5 epochs they agree to ~1e-15; 1e-10 leaves room for another
# BLAS. float32: the same rounding at 6e-8 per operation, carried through every step of
# training (measured: ≤ 1.2e-7 on the parameters here); 2e-5 is 100x that and far below any
# real difference (the λ values differ by 10x).
TOL = {"float64": 1e-10, "float32": 2e-5}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,hidden,sizes", [
    ("softmax", "relu", [4, 8, 6, 3]),
    ("softmax", "leaky_relu", [4, 8, 3]),
    ("sigmoid", "tanh", [4, 7, 5, 2]),
    ("identity", "sigmoid", [4, 6, 2]),
    ("softmax", "identity", [4, 3]),               # no hidden layer: layer 0 is the output
])
def test_batched_grid_matches_separate_fits(dtype, output, hidden, sizes):
    X, y = _blobs(100, dtype, seed=6)
    t = _targets(output, y)
    lams = [0.0, 0.03, 0.3, 3.0]
    opts = dict(layer_sizes=sizes, hidden=hidden, output=output, dtype=dtype, seed=2,
                epochs=5, batch_size=16, lr=0.01)
    fast = selection.choose_lambda(X[:70], t[:70], X[70:], t[70:], lams, batched=True, **opts)
    slow = selection.choose_lambda(X[:70], t[:70], X[70:], t[70:], lams, batched=False, **opts)
    for f, s in zip(fast.table, slow.table):
        assert f.keys() == s.keys() and f["lambda"] == s["lambda"]
        for key in ("train_cost", "cv_cost", "train_accuracy", "cv_accuracy"):
            if s[key] is None:
                assert f[key] is None
            else:
                assert f[key] == pytest.approx(s[key], rel=TOL[dtype], abs=TOL[dtype]), key
    assert fast.best_lambda == slow.best_lambda
    assert fast.best_model.get_config() == slow.best_model.get_config()
    for a, b in zip(fast.best_model.params, slow.best_model.params):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("fit", [
    dict(optimizer="sgd", lr=0.05, decay_rate=0.5),
    dict(optimizer="momentum", lr=0.05, beta=0.8, style="torch"),
    dict(optimizer="rmsprop", lr=0.005, shuffle=False),
    dict(optimizer="adam", lr=0.01, beta1=0.8, weight_decay=0.01, decoupled=True),
])
def test_batched_grid_every_optimizer_and_option(fit):
    X, y = _blobs(90, "float64", seed=8)
    opts = dict(layer_sizes=[4, 8, 3], dtype="float64", seed=1, epochs=4, batch_size=20, **fit)
    lams = [0.01, 1.0, 8.0]
    fast = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, batched=True, **opts)
    slow = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, batched=False, **opts)
    assert fast.cv_cost == pytest.approx(slow.cv_cost, rel=1e-10)
    assert fast.train_cost == pytest.approx(slow.train_cost, rel=1e-10)
    np.testing.assert_allclose(fast.best_model.flat_params, slow.best_model.flat_params,
                               rtol=1e-10, atol=1e-12)
    # the option reached the fit: without it the models differ
    kept = ("layer_sizes", "dtype", "seed", "epochs", "batch_size", "optimizer", "lr")
    plain = {k: v for k, v in opts.items() if k in kept}
    other = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, **plain)
    assert not np.allclose(other.cv_cost, fast.cv_cost, rtol=1e-10)


def test_batched_grid_k_fold_and_chunks():
    X, y = _blobs(90, "float64", seed=9)
    lams = [0.01 * 2 ** i for i in range(8)]          # two chunks of the batched grid
    opts = dict(layer_sizes=[4, 6, 3], dtype="float64", epochs=3, batch_size=16, lr=0.02)
    fast = selection.choose_lambda(X, y, lambdas=lams, cv=3, **opts)
    slow = selection.choose_lambda(X, y, lambdas=lams, cv=3, batched=False, **opts)
    assert fast.n_folds == slow.n_folds == 3
    assert fast.cv_cost == pytest.approx(slow.cv_cost, rel=1e-10)
    assert fast.best_lambda == slow.best_lambda
    threads = selection.choose_lambda(X, y, lambdas=lams, cv=3, n_jobs=2, **opts)
    assert threads.table == fast.table


def test_batched_grid_falls_back_where_it_does_not_apply():
    X, y = _blobs(60, "float64", seed=10)
    lams = [0.01, 1.0]
    base = dict(layer_sizes=[4, 6, 3], dtype="float64", epochs=3, batch_size=16, lr=0.02)
    for extra, why in ((dict(batchnorm=True), "batch norm"), (dict(tol=1e-4), "early stopping"),
                       (dict(optimizer=nnfast.optim.Adam(lr=0.01)), "Optimizer instance")):
        with pytest.raises(ValueError, match=why):
            selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], lams, batched=True,
                                    **base, **extra)
    for extra in (dict(batchnorm=True), dict(tol=1e-4)):
        res = selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], lams, **base, **extra)
        slow = selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], lams, batched=False,
                                       **base, **extra)
        assert res.table == slow.table
    # soft (one-hot) softmax targets: separate fits inside the batched tasks, same table
    onehot = np.eye(3)[y]
    fast = selection.choose_lambda(X[:40], onehot[:40], X[40:], onehot[40:], lams, **base)
    slow = selection.choose_lambda(X[:40], onehot[:40], X[40:], onehot[40:], lams,
                                   batched=False, **base)
    assert fast.table == slow.table
    with pytest.raises(TypeError, match="batched"):
        selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], lams, batched="yes", **base)
    with pytest.raises(TypeError, match=r"unknown options \['beta9'\].*beta1"):
        selection.choose_lambda(X[:40], y[:40], X[40:], y[40:], lams, beta9=0.5, **base)
    # bad targets raise as MLP.fit raises
    with pytest.raises(ValueError, match="labels in"):
        selection.choose_lambda(X[:40], y[:40] + 3, X[40:], y[40:], lams, **base)


def test_learning_curve_passes_optimizer_options_to_the_fit():
    X, y = _blobs(90, "float64", seed=11)
    opts = dict(layer_sizes=[4, 6, 3], dtype="float64", epochs=3, batch_size=16, lr=0.02,
                optimizer="momentum")
    plain = selection.learning_curve(X[:60], y[:60], X[60:], y[60:], sizes=[30, 60], **opts)
    torch_style = selection.learning_curve(X[:60], y[:60], X[60:], y[60:], sizes=[30, 60],
                                           beta=0.5, style="torch", **opts)
    m = MLP([4, 6, 3], dtype="float64", seed=0)
    rows = np.random.default_rng(0).permutation(60)[:30]
    m.fit(X[rows], y[rows], epochs=3, batch_size=16, lr=0.02, optimizer="momentum", beta=0.5,
          style="torch", tol=None, seed=0, progress=False)
    assert torch_style.cv_cost[0] == selection.unregularized_cost(m, X[60:], y[60:])
    assert not np.allclose(plain.cv_cost, torch_style.cv_cost)
    with pytest.raises(TypeError, match=r"unknown options \['beta1'\].*'beta'"):
        selection.learning_curve(X[:60], y[:60], X[60:], y[60:], beta1=0.5, **opts)


@pytest.mark.parametrize("backend", ["reference", "numba", "cython"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,hidden,sizes", [
    ("softmax", "relu", [4, 8, 6, 3]),
    ("softmax", "tanh", [4, 5, 3]),
    ("sigmoid", "leaky_relu", [4, 7, 5, 2]),
    ("identity", "sigmoid", [4, 6, 2]),
    ("identity", "identity", [4, 2]),              # no hidden layer: layer 0 is the output
])
def test_grid_kernel_of_each_backend_matches_its_separate_fits(backend, dtype, output, hidden,
                                                               sizes):
    """``nnfast._grid.train`` on each backend (Cython's and Numba's grid kernels; the reference
    runs the NumPy-batched network) against ``MLP.fit`` per λ on the same backend. 70 rows in
    batches of 16: the last batch has 6 rows (a second workspace)."""
    require_backend(backend)
    X, y = _blobs(70, dtype, seed=11)
    t = _targets(output, y)
    lams = [0.0, 0.05, 2.0]
    mlp = dict(layer_sizes=sizes, hidden=hidden, output=output, dtype=dtype, seed=3)
    fit = dict(epochs=3, batch_size=16, lr=0.01, seed=3, progress=False)
    with nnfast.use_backend(backend):
        assert (_grid._compiled_kernel(output) is None) == (backend == "reference")
        models = _grid.train(lams, mlp, fit, X, t)
        for lam, model in zip(lams, models):
            alone = MLP(l2=lam, **mlp)
            alone.fit(X, t, **fit)
            assert model.l2 == lam
            np.testing.assert_allclose(model.flat_params, alone.flat_params, rtol=TOL[dtype],
                                       atol=TOL[dtype], err_msg=f"λ = {lam}")
    # λ matters: the models differ from each other
    assert not np.allclose(models[0].flat_params, models[2].flat_params, rtol=1e-3)


def test_grid_kernel_refuses_mismatched_buffers():
    """Numba's grid kernel runs on buffers ``_grid._Compiled`` builds (internal, like the step
    kernels)."""
    require_backend("numba")
    from nnfast._numba import grid

    K, m, sizes = 2, 5, np.array([3, 4, 2], np.int64)
    n_w, n_b = 3 * 4 + 4 * 2, 4 + 2
    X = np.ones((m, 3))
    y = np.zeros(m, np.int64)
    bufs = [np.zeros((K, n)) for n in (n_w, n_b, n_w, n_b, m * n_b, m * n_b, m * n_b)]
    args = (X, y, sizes, *bufs, nnfast._kinds.RELU, 0.01, np.array([0.1, 1.0]))
    assert np.isfinite(grid.softmax_grid(*args))


def test_engine_grid_refuses_mismatched_buffers():
    """The Cython grid is the engine with K models: one dtype, and buffers too short for K
    models or the layer sizes are a ValueError, never a write past their end."""
    require_backend("cython")
    from nnfast._cython import engine

    K, m, sizes = 2, 5, np.array([3, 4, 2], np.int64)
    n_p = K * (3 * 4 + 4 * 2 + 4 + 2)
    X, y = np.ones((m, 3)), np.zeros(m, np.int64)
    plan = engine.Plan(sizes, "softmax", nnfast._kinds.RELU, 0.01, np.array([0.1, 1.0]), None,
                       1, "float64")
    params, grads, J = np.zeros(n_p), np.zeros(n_p), np.zeros(1)
    bounds = np.array([0, m])
    assert engine.run(plan, X, y, None, bounds, 0, params, grads, [], None, J) == 1
    assert np.isfinite(J[0])
    with pytest.raises(TypeError, match="X must be float64"):          # one dtype throughout
        engine.run(plan, X.astype(np.float32), y, None, bounds, 0, params.astype(np.float32),
                   grads.astype(np.float32), [], None, J)
    with pytest.raises(ValueError, match="dtype mismatch"):
        engine.run(plan, X, y, None, bounds, 0, params.astype(np.float32), grads, [], None, J)
    for short in ((params[:-1], grads), (params, grads[:-1])):
        with pytest.raises(ValueError, match="params and grads must have"):
            engine.run(plan, X, y, None, bounds, 0, *short, [], None, J)
    with pytest.raises(ValueError, match="X must have 3 columns"):
        engine.run(plan, np.ones((m, 2)), y, None, bounds, 0, params, grads, [], None, J)
    with pytest.raises(ValueError, match="rows"):
        engine.run(plan, X, y[:3], None, bounds, 0, params, grads, [], None, J)
    targets = engine.Plan(sizes, "identity", nnfast._kinds.RELU, 0.01, np.array([0.1, 1.0]),
                          None, 1, "float64")
    with pytest.raises(ValueError, match="y must be"):
        engine.run(targets, X, np.zeros((m, 3)), None, bounds, 0, params, grads, [], None, J)
