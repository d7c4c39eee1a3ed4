"""An epoch's batches in one call (``src/kernels/epoch.pyx`` through
``nnfast._cython.step``'s ``run_batches``): the same parameters, losses and optimizer state as the
batch-by-batch loop (``EPOCH_KERNEL = False``) bit for bit, in ``MLP.fit`` and in the
scikit-learn front; where it does not serve, the loop runs; bad arguments to the kernel raise."""
import contextlib
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import nnfast
from nnfast import optim
from nnfast._cython import epoch, step


@contextlib.contextmanager
def epoch_kernel(on):
    saved = step.EPOCH_KERNEL
    step.EPOCH_KERNEL = on
    try:
        yield
    finally:
        step.EPOCH_KERNEL = saved


@contextlib.contextmanager
def counting():
    """The batch counts ``epoch.run_batches`` applied, call by call."""
    calls, original = [], epoch.run_batches

    def counted(*args):
        done = original(*args)
        calls.append(done)
        return done

    epoch.run_batches = counted
    try:
        yield calls
    finally:
        epoch.run_batches = original


def data(dt, out, n=203, features=7, k=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(dt)
    if out == "softmax":
        y = rng.integers(0, k, n)
    elif out == "sigmoid":
        y = (rng.random((n, k)) > 0.5).astype(dt)
    else:
        y = rng.standard_normal((n, k)).astype(dt)
    return X, y


def fit_both(make_net, X, y, make_optimizer=None, **fit_kwargs):
    """(params, history, optimizer t, batch counts the kernel applied) of the same fit with the
    epoch kernel off and on (``make_optimizer``: a fresh optimizer instance for each)."""
    results = []
    for on in (False, True):
        with epoch_kernel(on), counting() as calls:
            net = make_net()
            opt = make_optimizer() if make_optimizer else None
            kwargs = dict(fit_kwargs, optimizer=opt) if opt else fit_kwargs
            history = net.fit(X, y, **kwargs)
            results.append((net._layout.flat_params.copy(), history, opt and opt.t,
                            list(calls)))
    return results


OPTIMIZERS = {
    "adam": lambda: optim.Adam(lr=0.01),
    "adamw-torch": lambda: optim.Adam(lr=0.01, style="torch", decoupled=True, weight_decay=0.1),
    "adam-sklearn": lambda: optim.Adam(lr=0.01, style="sklearn", weight_decay=0.01),
    "sgd": lambda: optim.SGD(lr=0.05, weight_decay=0.01),
    "momentum": lambda: optim.Momentum(lr=0.05),
    "nesterov-torch": lambda: optim.Momentum(lr=0.05, style="torch", nesterov=True,
                                             dampening=0.0),
    "momentum-sklearn": lambda: optim.Momentum(lr=0.05, style="sklearn", nesterov=True),
    "rmsprop": lambda: optim.RMSprop(lr=0.01),
    "rmsprop-torch": lambda: optim.RMSprop(lr=0.01, style="torch", weight_decay=0.01),
}


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("out", ["softmax", "sigmoid", "identity"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_equals_batch_by_batch(dt, out, name):
    X, y = data(dt, out)
    k = y.shape[1] if y.ndim == 2 else 4
    make = lambda: nnfast.MLP([7, 9, 5, k], output=out, dtype=dt, l2=1e-3, seed=3)  # noqa: E731
    (p0, h0, t0, c0), (p1, h1, t1, c1) = fit_both(make, X, y, epochs=3, batch_size=32, seed=5,
                                                  make_optimizer=OPTIMIZERS[name])
    assert c0 == []
    # the first step validates through step_flat; every other batch ran in the kernel
    assert sum(c1) == 3 * 7 - 1, c1
    assert t0 == t1 == 21
    np.testing.assert_array_equal(p1, p0)
    assert h1.train_loss == h0.train_loss


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n,batch", [(203, 32), (64, 64), (65, 64), (5, 2), (1, 1)])
def test_shapes_activations_shuffle(hidden, shuffle, n, batch):
    X, y = data("float32", "softmax", n=n, features=3, k=3)
    make = lambda: nnfast.MLP([3, 6, 3], hidden=hidden, dtype="float32", l2=0.01,  # noqa: E731
                              seed=0)
    (p0, h0, _, _), (p1, h1, _, c1) = fit_both(make, X, y, epochs=2, batch_size=batch,
                                               shuffle=shuffle, seed=2)
    batches = -(-n // batch)
    assert sum(c1) == 2 * batches - 1
    np.testing.assert_array_equal(p1, p0)
    assert h1.train_loss == h0.train_loss


def test_validation_and_early_stopping_unchanged():
    X, y = data("float64", "softmax", n=300)
    Xv, yv = data("float64", "softmax", n=80, seed=9)
    make = lambda: nnfast.MLP([7, 16, 4], dtype="float64", seed=0)  # noqa: E731
    (p0, h0, _, _), (p1, h1, _, c1) = fit_both(
        make, X, y, epochs=30, batch_size=16, validation_data=(Xv, yv), patience=3,
        optimizer="adam", lr=0.05, seed=1)
    assert sum(c1) > 0
    np.testing.assert_array_equal(p1, p0)
    assert h1.val_loss == h0.val_loss and h1.epochs == h0.epochs
    assert h1.best_epoch == h0.best_epoch


def test_non_finite_loss_raises_as_the_loop_does():
    """A batch with a non-finite J is not applied by the kernel: the loop reruns it and raises
    step's error; fit restores the last good epoch's weights either way."""
    X, y = data("float64", "identity", n=256)
    X[200] = 1e200                                         # overflows in the forward pass
    outcomes = []
    for on in (False, True):
        with epoch_kernel(on), counting() as calls:
            net = nnfast.MLP([7, 8, 4], output="identity", dtype="float64", seed=0)
            with pytest.raises(FloatingPointError) as info:
                net.fit(X, y, epochs=2, batch_size=32, shuffle=False)
            outcomes.append((str(info.value), net._layout.flat_params.copy(), list(calls)))
    assert outcomes[0][0] == outcomes[1][0]
    assert "non-finite loss in epoch 1" in outcomes[1][0]
    np.testing.assert_array_equal(outcomes[0][1], outcomes[1][1])
    assert outcomes[1][2][0] == 5         # batches 1-5 applied (the first one by the loop)


def test_sklearn_front_equals_batch_by_batch():
    from sklearn.exceptions import ConvergenceWarning      # a dependency: never skipped

    from nnfast.sklearn import MLPClassifier, MLPRegressor

    X, y = data("float64", "softmax", n=240)
    _, t = data("float64", "identity", n=240, k=1)   # one output: the front runs run_epoch
    cases = [
        (MLPClassifier, y, dict(solver="adam")),
        (MLPClassifier, y, dict(solver="sgd", momentum=0.9, nesterovs_momentum=True,
                                learning_rate="invscaling")),
        (MLPClassifier, y, dict(solver="sgd", momentum=0.0, learning_rate="adaptive")),
        (MLPRegressor, t[:, 0], dict(solver="adam", dtype="float32")),
    ]
    for cls, target, kwargs in cases:
        fitted = []
        for on in (False, True):
            with epoch_kernel(on), counting() as calls, warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = cls(hidden_layer_sizes=(12,), max_iter=6, batch_size=50, random_state=0,
                          **kwargs)
                est.fit(X, target)
            fitted.append((est, list(calls)))
        (a, _), (b, calls) = fitted
        assert sum(calls) > 0, (cls, kwargs)
        for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(wa, wb)
        assert a.loss_curve_ == b.loss_curve_ and a.t_ == b.t_


def test_not_served_where_it_does_not_apply():
    """Batch norm, an optimizer on another backend, a subclass with its own step_flat, batches
    worth two threads: the batch-by-batch loop runs them (the kernel is never called)."""
    X, y = data("float32", "softmax", n=128)

    class Custom(optim.SGD):
        def step_flat(self, param, grad):
            super().step_flat(param, grad)

    cases = [
        (lambda: nnfast.MLP([7, 6, 4], batchnorm=True, dtype="float32", seed=0), {}),
        (lambda: nnfast.MLP([7, 6, 4], dtype="float32", seed=0),
         {"optimizer": Custom(lr=0.1)}),
    ]
    for make, kwargs in cases:
        with counting() as calls:
            make().fit(X, y, epochs=2, batch_size=16, **kwargs)
        assert calls == []
    with counting() as calls, nnfast.use_backend("numba"):
        nnfast.MLP([7, 6, 4], dtype="float32", seed=0).fit(X, y, epochs=1, batch_size=16)
    assert calls == []
    saved = step.MODE
    step.MODE = "2"                       # every batch chunked: pstep's, not this kernel's
    try:
        with counting() as calls:
            nnfast.MLP([7, 6, 4], dtype="float32", seed=0).fit(X, y, epochs=1, batch_size=16)
    finally:
        step.MODE = saved
    assert calls == []


def kernel_args(dt="float64", out="softmax", n=10, **override):
    X, y = data(dt, out, n=n, features=3, k=2)
    sizes = np.array([3, 4, 2], np.int64)
    n_p = 3 * 4 + 4 * 2 + 4 + 2
    args = dict(output=out, X=X, y=y, order=np.arange(n), bounds=np.array([0, 5, n]),
                start=0, sizes=sizes, params=np.zeros(n_p, dt), grads=np.zeros(n_p, dt),
                kind=3, slope=0.01, lam=0.0, rule="sgd_update", states=[],
                args=np.full((2, 2), 0.1), losses=np.zeros(2))
    args.update(override)
    return list(args.values())


def test_kernel_runs_and_counts():
    assert epoch.run_batches(*kernel_args()) == 2
    assert epoch.run_batches(*kernel_args(start=1)) == 1
    assert epoch.run_batches(*kernel_args(start=2)) == 0


@pytest.mark.parametrize("override,match", [
    (dict(order=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10])), "order must be in"),
    (dict(order=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, -1])), "order must be in"),
    (dict(y=np.array([0, 1, 2, 0, 1, 0, 1, 0, 1, 0])), "labels must be in"),
    (dict(bounds=np.array([0, 5, 11])), "bounds must rise"),
    (dict(bounds=np.array([0, 6, 5])), "bounds must rise"),
    (dict(start=3), "start must be in"),
    (dict(start=-1), "start must be in"),
    (dict(sizes=np.array([4, 4, 2])), "sizes must start"),
    (dict(sizes=np.array([3, 0, 2])), "sizes must be positive"),
    (dict(params=np.zeros(5)), "params and grads"),
    (dict(args=np.full((2, 3), 0.1)), "takes 2 scalars"),
    (dict(args=np.full((1, 2), 0.1)), "a row per batch"),
    (dict(losses=np.zeros(1)), "a row per batch"),
    (dict(rule="adam_update", args=np.full((2, 9), 0.1), states=[np.zeros(26)]),
     "takes 2 state arrays"),
    (dict(rule="adam_update", args=np.full((2, 9), 0.1), states=[np.zeros(26), np.zeros(3)]),
     "state arrays must have"),
    (dict(rule="lbfgs"), "rule must be one of"),
    (dict(output="tanh"), "output must be one of"),
    (dict(y=np.zeros(9, np.int64)), "y has 9 rows"),
])
def test_kernel_bad_arguments(override, match):
    with pytest.raises(ValueError, match=match):
        epoch.run_batches(*kernel_args(**override))


def test_kernel_targets_shape_and_dtype():
    with pytest.raises(ValueError, match="y must have 2 columns"):
        epoch.run_batches(*kernel_args(out="identity", y=np.zeros((10, 3))))
    with pytest.raises(ValueError):              # float32 targets for a float64 network
        epoch.run_batches(*kernel_args(out="identity", y=np.zeros((10, 2), np.float32)))
    with pytest.raises(ValueError):              # read-only state arrays are not written
        state = np.zeros(26)
        state.flags.writeable = False
        epoch.run_batches(*kernel_args(rule="momentum_update", args=np.full((2, 6), 0.1),
                                       states=[state]))


def test_every_rule_of_the_optimizers_is_served():
    """Each nnfast.optim rule's kernel is one the epoch kernel runs, with its scalar count."""
    for cls in (optim.SGD, optim.Momentum, optim.RMSprop, optim.Adam):
        rule = cls().rule
        code, n_args, n_states = epoch.RULES[rule.kernel]
        assert len(rule.kernel_args(0.1, 1)) == n_args
        assert len(rule.state_names) == n_states
    assert set(epoch.OUTPUTS) == {"softmax", "sigmoid", "identity"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("first", [1, 2, 999, 10**9])
def test_args_table_rows_are_kernel_args(name, first):
    """The epoch's scalars, built without a tuple per step, are ``kernel_args`` of each step
    bit for bit (flags as 0/1)."""
    from nnfast import _rules

    rule = OPTIMIZERS[name]().rule
    table = _rules.kernel_args_table(rule, 0.0123, first, 40)
    assert table.shape == (40, len(rule.kernel_args(0.0123, first)))
    for i, row in enumerate(table):
        expected = np.array(rule.kernel_args(0.0123, first + i), np.float64)
        np.testing.assert_array_equal(row, expected)
    assert _rules.kernel_args_table(rule, 0.1, first, 0).shape[0] == 0


@pytest.fixture(params=[0, 1], ids=["tn", "tt"])
def delta_gemm(request):
    """Both ways of δ_prev = δ Wᵀ (cpu.h), whichever this CPU picks by default."""
    step.set_delta_gemm(request.param)
    yield request.param
    step.set_delta_gemm()


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("hidden", ["relu", "tanh"])
def test_each_delta_gemm_epoch_equals_loop(delta_gemm, dt, hidden):
    X, y = data(dt, "softmax", n=150)
    make = lambda: nnfast.MLP([7, 20, 9, 4], hidden=hidden, dtype=dt, l2=1e-3,  # noqa: E731
                              seed=3)
    (p0, h0, _, _), (p1, h1, _, c1) = fit_both(make, X, y, epochs=2, batch_size=32, seed=5)
    assert sum(c1) == 2 * 5 - 1
    np.testing.assert_array_equal(p1, p0)
    assert h1.train_loss == h0.train_loss


@pytest.mark.parametrize("dt,rtol", [("float32", 2e-5), ("float64", 1e-12)])
def test_delta_gemm_tt_and_tn_agree(dt, rtol):
    """The two GEMMs compute the same δ_prev, within rounding."""
    from nnfast._cython import grid

    rng = np.random.default_rng(4)
    sizes = np.array([16, 40, 24, 5], np.int64)
    n_w, n_b = int((sizes[:-1] * sizes[1:]).sum()), int(sizes[1:].sum())
    X = rng.standard_normal((33, 16)).astype(dt)
    y = rng.integers(0, 5, 33)
    W = (rng.standard_normal((1, n_w)) * 0.3).astype(dt)
    b = (rng.standard_normal((1, n_b)) * 0.1).astype(dt)
    out = []
    for choice in (0, 1):
        step.set_delta_gemm(choice)
        try:
            dW, db = np.zeros_like(W), np.zeros_like(b)
            bufs = [np.zeros((1, 33 * n_b), dt) for _ in range(3)]
            J = grid.softmax_grid(X, y, sizes, W, b, dW, db, *bufs, 3, 0.0, np.array([0.01]))
            out.append((J, dW, db))
        finally:
            step.set_delta_gemm()
    assert out[0][0] == pytest.approx(out[1][0], rel=rtol)
    for u, v in zip(out[0][1:], out[1][1:]):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * np.abs(u).max())


def test_calls_capped_by_work(monkeypatch):
    """An epoch's batches go in calls of at most CALL_WORK multiply-adds (Ctrl-C is seen
    between calls), with the same results as one call per epoch."""
    X, y = data("float32", "softmax", n=203)
    make = lambda: nnfast.MLP([7, 9, 4], dtype="float32", seed=3)  # noqa: E731
    (p0, h0, _, c0), = fit_both(make, X, y, epochs=2, batch_size=32, seed=5)[1:]
    assert c0 == [6, 7]
    monkeypatch.setattr(step, "CALL_WORK", 3 * 32 * (7 * 9 + 9 * 4) * 3)   # three batches
    (p1, h1, _, c1), = fit_both(make, X, y, epochs=2, batch_size=32, seed=5)[1:]
    assert c1 == [3, 3, 3, 3, 1]
    np.testing.assert_array_equal(p1, p0)
    assert h1.train_loss == h0.train_loss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_ctrl_c_stops_a_long_fit():
    """SIGINT in the middle of fit's epochs (kernel calls of ~0.1 s) raises KeyboardInterrupt
    at once; the fit would otherwise run for minutes."""
    code = (
        "import signal, numpy as np, nnfast\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((100000, 64)).astype(np.float32)\n"
        "y = rng.integers(0, 10, 100000)\n"
        "net = nnfast.MLP([64, 128, 64, 10], dtype='float32', seed=0)\n"
        "net.fit(X[:128], y[:128], epochs=1, batch_size=64)\n"
        "print('start', flush=True)\n"
        "try:\n"
        "    net.fit(X, y, epochs=1000, batch_size=64, tol=None)\n"
        "    print('finished', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "start"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out.strip() == "interrupted"


@pytest.mark.parametrize("core,expected", [("Haswell", 0), ("zen", 0), ("SkylakeX", None),
                                           (None, None)])
def test_delta_gemm_follows_openblas_core(core, expected):
    """TT only where OpenBLAS may run its small-matrix kernels: OPENBLAS_CORETYPE naming a core
    without them means TN; otherwise the CPU decides (TT with AVX-512F)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if core is not None:
        env["OPENBLAS_CORETYPE"] = core
    code = ("from nnfast._cython import grid, step\n"
            "import numpy as np\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "print(grid.delta_gemm(), int(f.get('AVX512F', False)))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    chosen, avx512 = int(out[0]), int(out[1])
    assert chosen == (avx512 if expected is None else expected)
