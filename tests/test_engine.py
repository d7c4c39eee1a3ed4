"""The network-step engine of the Cython backend (``src/kernels/engine.pyx`` through
``nnfast._cython.step``): an epoch's batches in one call give the same parameters, losses and
optimizer state as the batch-by-batch loop (``EPOCH_KERNEL = False``) bit for bit, in
``MLP.fit`` and in the scikit-learn front; results do not depend on the thread count; row
chunks agree with one pass to rounding; where the engine does not serve, the loop runs; bad
arguments to the kernel raise."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import nnfast
from nnfast import optim
from nnfast._cython import engine, step


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
    """The batch counts the engine's epoch calls (plans with an optimizer rule) applied, call
    by call."""
    calls, original = [], engine.run

    def counted(plan, *args):
        done = original(plan, *args)
        if plan.rule is not None:
            calls.append(done)
        return done

    engine.run = counted
    try:
        yield calls
    finally:
        engine.run = original


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
    """Batch norm, an optimizer on another backend, a subclass with its own step_flat: the
    batch-by-batch loop runs them (the engine's epoch call never runs)."""
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


def kernel_args(dt="float64", out="softmax", n=10, rule="sgd_update", sizes=(3, 4, 2),
                lambdas=(0.0,), threads=1, **override):
    """(plan, arguments of ``engine.run``) of a small problem, with ``override``."""
    X, y = data(dt, out, n=n, features=3, k=2)
    plan = engine.Plan(np.array(sizes, np.int64), out, 3, 0.01, np.array(lambdas), rule, threads,
                       dt)
    n_p = 3 * 4 + 4 * 2 + 4 + 2
    args = dict(X=X, y=y, order=np.arange(n), bounds=np.array([0, 5, n]), start=0,
                params=np.zeros(n_p, dt), grads=np.zeros(n_p, dt), states=[],
                args=np.full((2, 2), 0.1), losses=np.zeros(2))
    args.update(override)
    return [plan] + list(args.values())


def test_kernel_runs_and_counts():
    assert engine.run(*kernel_args()) == 2
    assert engine.run(*kernel_args(start=1)) == 1
    assert engine.run(*kernel_args(start=2)) == 0


@pytest.mark.parametrize("override,match", [
    (dict(order=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10])), "order must be in"),
    (dict(order=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, -1])), "order must be in"),
    (dict(y=np.array([0, 1, 2, 0, 1, 0, 1, 0, 1, 0])), "labels must be in"),
    (dict(order=None, y=np.array([0, 1, 2, 0, 1, 0, 1, 0, 1, 0])), "labels must be in"),
    (dict(bounds=np.array([0, 5, 11])), "bounds must rise"),
    (dict(bounds=np.array([0, 6, 5])), "bounds must rise"),
    (dict(start=3), "start must be in"),
    (dict(start=-1), "start must be in"),
    (dict(X=np.zeros((10, 4))), "X must have 3 columns"),
    (dict(params=np.zeros(5)), "params and grads"),
    (dict(args=np.full((2, 3), 0.1)), r"args must be \(2, 2\)"),
    (dict(args=np.full((1, 2), 0.1)), r"args must be \(2, 2\)"),
    (dict(args=None), r"args must be \(2, 2\)"),
    (dict(losses=np.zeros(1)), "a row per batch"),
    (dict(y=np.zeros(9, np.int64)), "y has 9 rows"),
])
def test_kernel_bad_arguments(override, match):
    with pytest.raises(ValueError, match=match):
        engine.run(*kernel_args(**override))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=(4,)), "sizes must name"),
    (dict(sizes=(3, 0, 2)), "sizes must be positive"),
    (dict(rule="lbfgs"), "rule must be None or one of"),
    (dict(out="tanh"), "output must be one of"),
    (dict(threads=0), "threads must be >= 1"),
    (dict(lambdas=()), "lambdas must hold"),
])
def test_plan_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernel_args(**kwargs)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        engine.Plan(np.array([3, 2], np.int64), "softmax", 3, 0.0, np.zeros(1), None, 1, "int32")


def test_kernel_rule_states_targets_and_dtype():
    with pytest.raises(ValueError, match="takes 2 state arrays"):
        engine.run(*kernel_args(rule="adam_update", args=np.full((2, 9), 0.1),
                                states=[np.zeros(26)]))
    with pytest.raises(ValueError, match="state arrays must have"):
        engine.run(*kernel_args(rule="adam_update", args=np.full((2, 9), 0.1),
                                states=[np.zeros(26), np.zeros(3)]))
    with pytest.raises(ValueError, match="one batch per call"):
        engine.run(*kernel_args(rule=None, args=None))
    with pytest.raises(ValueError, match=r"y must be \(10, 2\)"):
        engine.run(*kernel_args(out="identity", y=np.zeros((10, 3))))
    with pytest.raises(ValueError):              # float32 targets for a float64 network
        engine.run(*kernel_args(out="identity", y=np.zeros((10, 2), np.float32)))
    with pytest.raises(TypeError, match="X must be float32"):   # float64 data, float32 plan
        plan, *rest = kernel_args()
        engine.run(kernel_args(dt="float32")[0], *rest)
    with pytest.raises(ValueError):              # read-only state arrays are not written
        state = np.zeros(26)
        state.flags.writeable = False
        engine.run(*kernel_args(rule="momentum_update", args=np.full((2, 6), 0.1),
                                states=[state]))
    with pytest.raises(ValueError):              # nor read-only parameters
        params = np.zeros(26)
        params.flags.writeable = False
        engine.run(*kernel_args(params=params))


def test_every_rule_of_the_optimizers_is_served():
    """Each nnfast.optim rule's kernel is one the epoch kernel runs, with its scalar count."""
    for cls in (optim.SGD, optim.Momentum, optim.RMSprop, optim.Adam):
        rule = cls().rule
        code, n_args, n_states = engine.RULES[rule.kernel]
        assert len(rule.kernel_args(0.1, 1)) == n_args
        assert len(rule.state_names) == n_states
    assert set(engine.OUTPUTS) == {"softmax", "sigmoid", "identity"}


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
    rng = np.random.default_rng(4)
    sizes = np.array([16, 40, 24, 5], np.int64)
    n_p = int((sizes[:-1] * sizes[1:]).sum() + sizes[1:].sum())
    X = rng.standard_normal((33, 16)).astype(dt)
    y = rng.integers(0, 5, 33)
    params = (rng.standard_normal(n_p) * 0.3).astype(dt)
    plan = engine.Plan(sizes, "softmax", 3, 0.0, np.array([0.01]), None, 1, dt)
    out = []
    for choice in (0, 1):
        step.set_delta_gemm(choice)
        try:
            grads, J = np.zeros_like(params), np.zeros(1)
            engine.run(plan, X, y, None, np.array([0, 33]), 0, params, grads, [], None, J)
            out.append((J[0], grads))
        finally:
            step.set_delta_gemm()
    assert out[0][0] == pytest.approx(out[1][0], rel=rtol)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=rtol,
                               atol=rtol * np.abs(out[0][1]).max())


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
    code = ("from nnfast._cython import engine, step\n"
            "import numpy as np\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "print(engine.delta_gemm(), int(f.get('AVX512F', False)))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    chosen, avx512 = int(out[0]), int(out[1])
    assert chosen == (avx512 if expected is None else expected)


# ---- threads: results never depend on the thread count ------------------------------------

@contextlib.contextmanager
def engine_threads(n):
    """The engine's plans made with ``n`` threads (as on a machine with that many usable CPUs
    and ``set_num_threads(n)``), whatever this machine has."""
    from nnfast import _backend

    saved = step._cpus, _backend._num_threads
    step._cpus, _backend._num_threads = n, None
    try:
        yield
    finally:
        step._cpus, _backend._num_threads = saved


def chunked_data(dt, out, n=1000, features=50, k=3, seed=2):
    return data(dt, out, n=n, features=features, k=k, seed=seed)


CHUNKED = dict(layer_sizes=[50, 300, 100, 3], l2=1e-3)     # 45k weights: batches of 256 rows
                                                           # run as 2 chunks, 1024 as 4


def test_chunks_by_shape():
    plan = step.plan(nnfast.MLP(**CHUNKED, seed=0))
    assert [plan.chunks(m) for m in (1, 64, 127, 128, 256, 512, 767, 768, 1024, 4096, 10**5)] \
        == [1, 1, 1, 2, 2, 2, 2, 3, 4, 16, 16]
    small = step.plan(nnfast.MLP([7, 9, 4], seed=0))
    # 99 weights: a chunk needs >= 3367 rows for 10⁶ multiply-adds
    assert [small.chunks(m) for m in (200, 4096, 8000, 10**5)] == [1, 1, 2, 16]


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("out", ["softmax", "sigmoid", "identity"])
def test_fit_bit_identical_for_any_thread_count(dt, out):
    """1, 2, 3 and 8 threads: the same parameters and losses bit for bit (batches of 256 and
    1024 rows: 2 and 4 chunks, shuffled and gathered by the engine; and the first batch through
    the loop)."""
    X, y = chunked_data(dt, out, n=2048)
    results = []
    for n in (1, 2, 3, 8):
        with engine_threads(n):
            net = nnfast.MLP(**CHUNKED, output=out, dtype=dt, seed=0)
            h = net.fit(X, y, epochs=2, batch_size=256, seed=1, progress=False)
            h2 = net.fit(X, y, epochs=1, batch_size=1024, seed=2, progress=False)
            results.append((net._layout.flat_params.copy(), h.train_loss + h2.train_loss,
                            step.plan(net, "adam_update").threads))
    assert [r[2] for r in results] == [1, 2, 3, 8]
    for params, losses, _ in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        assert losses == results[0][1]


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_train_step_and_grid_bit_identical_for_any_thread_count(dt):
    X, y = chunked_data(dt, "softmax", n=1024)
    grads = []
    for n in (1, 2, 4):
        with engine_threads(n):
            net = nnfast.MLP(**CHUNKED, dtype=dt, seed=0)
            opt = optim.Adam(lr=1e-2)
            losses = [net.train_step(X, y, opt) for _ in range(3)]
            grads.append((net._layout.flat_params.copy(), losses,
                          [g.copy() for g in net.gradients(X, y)]))
    for params, losses, g in grads[1:]:
        np.testing.assert_array_equal(params, grads[0][0])
        assert losses == grads[0][1]
        for u, v in zip(g, grads[0][2]):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dt,rtol", [("float32", 1e-4), ("float64", 1e-11)])
@pytest.mark.parametrize("out,hidden", [("softmax", "relu"), ("sigmoid", "tanh"),
                                        ("identity", "leaky_relu"), ("softmax", "sigmoid")])
@pytest.mark.parametrize("m", [256, 800, 4096])
def test_chunks_agree_with_the_reference_to_rounding(dt, rtol, out, hidden, m):
    """Row chunks (2, 3 and 16 of them) change how dW's sum over rows is grouped: the
    gradients and J agree with the NumPy reference to rounding."""
    X, y = chunked_data(dt, out, n=m)
    net = nnfast.MLP(**CHUNKED, output=out, hidden=hidden, dtype=dt, seed=0)
    assert step.plan(net).chunks(m) > 1
    with nnfast.use_backend("cython"):
        J, got = net.loss(X, y), [g.copy() for g in net.gradients(X, y)]
    with nnfast.use_backend("reference"):
        J_ref, want = net.loss(X, y), net.gradients(X, y)
    assert J == pytest.approx(J_ref, rel=rtol)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


def test_grid_of_models_equals_separate_models():
    """K models side by side (a λ grid): each model's gradients equal its own plan's, bit for
    bit, with and without chunks, on any thread count."""
    X, y = chunked_data("float32", "softmax", n=300)
    lambdas = [0.0, 0.01, 0.1]
    net = nnfast.MLP(**CHUNKED, dtype="float32", seed=0)
    n_w, n_b = net._layout.n_weights, net._layout.flat_params.size - net._layout.n_weights
    params = np.concatenate([np.tile(net.flat_params[:n_w], 3), np.tile(net.flat_params[n_w:], 3)])
    for m in (64, 300):
        for threads in (1, 3):
            plan = step.plan(net, None, lambdas, threads)
            grads, J = np.zeros_like(params), np.zeros(1)
            engine.run(plan, X, y, None, np.array([0, m]), 0, params, grads, [], None, J)
            total = 0.0
            for k, lam in enumerate(lambdas):
                one = engine.Plan(net._layout.grid_arrays[0], "softmax", net._kind, net.slope,
                                  np.array([lam]), None, 1, "float32")
                g1, J1 = np.zeros(n_w + n_b, np.float32), np.zeros(1)
                engine.run(one, X, y, None, np.array([0, m]), 0, net.flat_params.copy(), g1, [],
                           None, J1)
                np.testing.assert_array_equal(grads[k * n_w:(k + 1) * n_w], g1[:n_w])
                np.testing.assert_array_equal(grads[3 * n_w + k * n_b:3 * n_w + (k + 1) * n_b],
                                              g1[n_w:])
                total += J1[0]
            assert J[0] == total


def test_set_num_threads_bounds_the_engine():
    from nnfast import _backend

    saved = step._cpus, _backend._num_threads
    try:
        step._cpus, _backend._num_threads = 8, 3
        assert step.threads() == 3
        _backend._num_threads = None
        assert step.threads() == 8
        _backend._num_threads = 1
        assert step.plan(nnfast.MLP([7, 9, 4], seed=0)).threads == 1
    finally:
        step._cpus, _backend._num_threads = saved


def test_usable_cpus_bound_the_engine():
    """One allowed CPU (affinity): plans of one thread."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "import nnfast\n"
            "from nnfast._cython import step\n"
            "print(step.threads(), step.plan(nnfast.MLP([7, 9, 4], seed=0)).threads)")
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.split() == ["1", "1"]


def test_late_thread_backs_off_to_one_thread_with_the_same_results():
    """A thread that starts its chunks late (as a descheduled one would) makes the engine run
    the next batches on one thread, then try again; the results do not change."""
    X, y = chunked_data("float32", "softmax", n=2048)
    with engine_threads(1):
        want = nnfast.MLP(**CHUNKED, seed=0)
        want.fit(X, y, epochs=2, batch_size=256, seed=1, progress=False)
    with engine_threads(2):
        net = nnfast.MLP(**CHUNKED, seed=0)
        engine.set_test_delay(3000)              # 3 ms per chunk of the second thread
        try:
            net.fit(X, y, epochs=2, batch_size=256, seed=1, progress=False)
        finally:
            engine.set_test_delay(0)
        stats = step.plan(net, "adam_update").stats()
    np.testing.assert_array_equal(net.flat_params, want.flat_params)
    # 15 batches in the engine: the first parallel pass is not judged, the second is late (4
    # batches on one thread), the next late again (8 more): 3 parallel, 12 serial
    assert stats["late"] >= 2 and stats["serial"] >= 12, stats
    assert stats["parallel"] + stats["serial"] == 15, stats


# ---- processes and Python threads ------------------------------------------------------------

def fit_params(X, y, epochs=2):
    net = nnfast.MLP(**CHUNKED, seed=0)
    net.fit(X, y, epochs=epochs, batch_size=256, seed=1, progress=False)
    return net.flat_params.copy()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_child_trains_after_the_parent_used_threads():
    """libgomp after fork(): a child of a process whose OpenMP team has run trains, with the
    same results (and the parent goes on)."""
    X, y = chunked_data("float32", "softmax")
    with engine_threads(2):
        want = fit_params(X, y)                  # the OpenMP team ran in this process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # fork of a threaded process
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if np.array_equal(fit_params(X, y), want) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        np.testing.assert_array_equal(fit_params(X, y), want)


def test_python_threads_train_at_once():
    """Four Python threads fit at once (each with its own OpenMP team), and two threads step one
    model's plan at once (the second in a call gets its own workspace): results as alone."""
    X, y = chunked_data("float32", "softmax")
    with engine_threads(2):
        want = fit_params(X, y)
        got, errors = [None] * 4, []

        def train(i):
            try:
                got[i] = fit_params(X, y)
            except BaseException as exc:          # noqa: BLE001 (reported below)
                errors.append(exc)

        workers = [threading.Thread(target=train, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors, errors
        for g in got:
            np.testing.assert_array_equal(g, want)
        net = nnfast.MLP(**CHUNKED, seed=0)
        plan = step.plan(net)
        grads = [np.zeros_like(net.flat_params) for _ in range(2)]
        J = [np.zeros(1) for _ in range(2)]

        def grad(i):
            for _ in range(20):
                engine.run(plan, X, y, None, np.array([0, 512]), 0, net.flat_params, grads[i],
                           [], None, J[i])

        workers = [threading.Thread(target=grad, args=(i,)) for i in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        np.testing.assert_array_equal(grads[0], grads[1])
        assert J[0][0] == J[1][0]


FIT_PROBE = """
import hashlib, numpy as np, nnfast
rng = np.random.default_rng(2)
X = rng.standard_normal((1000, 50)).astype(np.float32)
y = rng.integers(0, 3, 1000)
net = nnfast.MLP([50, 300, 100, 3], l2=1e-3, seed=0)
net.fit(X, y, epochs=2, batch_size=256, seed=1, progress=False)
print(hashlib.sha256(net.flat_params.tobytes()).hexdigest())
"""


def test_fits_in_processes_at_once_and_one_thread_agree():
    """Two fresh processes at once (each with the default threads: the CPUs it may use), twice,
    and one with NNFAST's thread bound 1 (OMP-free): the same parameters bit for bit."""
    import hashlib

    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 50)).astype(np.float32)
    y = rng.integers(0, 3, 1000)
    with engine_threads(1):
        want = hashlib.sha256(fit_params(X, y)).hexdigest()
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-c", FIT_PROBE], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert out.split()[0] == want


def test_trained_models_pickle_and_copy():
    """A model that has trained (its layout has engine plans beside it) pickles and deep-copies
    as before (joblib and Dask send models between processes), and the copy trains on exactly
    as the original."""
    import copy
    import pickle

    X, y = chunked_data("float32", "softmax", n=512)
    net = nnfast.MLP(**CHUNKED, seed=0)
    opt = optim.Adam(lr=1e-2)
    net.fit(X, y, epochs=1, batch_size=256, seed=1, progress=False)
    net.train_step(X, y, opt)
    for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        np.testing.assert_array_equal(twin.flat_params, net.flat_params)
        a, b = optim.Adam(lr=1e-2), optim.Adam(lr=1e-2)
        mine = nnfast.MLP(**CHUNKED, seed=0)
        mine.flat_params[...] = net.flat_params
        assert twin.train_step(X, y, a) == mine.train_step(X, y, b)
        np.testing.assert_array_equal(twin.flat_params, mine.flat_params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_many_gives_the_same_bits_on_any_thread_count(dtype):
    """``update_many`` (nnfast.torch's step) splits a tensor of 2**17 elements or more over the
    threads in fixed blocks and shares the smaller tensors out among them: every thread count
    gives the bits of one ``nnfast.adam_update`` call per tensor."""
    rng = np.random.default_rng(5)
    sizes = [5000] * 30 + [1, 7, (1 << 17) + 3, 0, 40000]
    start = [(rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype),
              np.abs(rng.normal(size=n)).astype(dtype), np.abs(rng.normal(size=n)).astype(dtype))
             for n in sizes]
    args = np.array([1e-3, 0.9, 0.999, 1e-8, 0.01, 1, 1 - 0.9 ** 3, 1 - 0.999 ** 3, 0])
    want = [[a.copy() for a in t] for t in start]
    for p, g, m, v in want:
        nnfast.adam_update(p, g, m, v, 3, 1e-3, weight_decay=0.01, decoupled=True,
                           style="torch")
    for threads in (1, 2, 3):
        got = [[a.copy() for a in t] for t in start]
        addresses = [np.array([t[k].ctypes.data for t in got], np.int64) for k in range(4)]
        engine.update_many("adam_update", dtype == np.float64, *addresses,
                           np.array(sizes, np.int64), args, threads)
        for i, (a, b) in enumerate(zip(got, want)):
            for x, y in zip(a, b):
                assert np.array_equal(x, y), (threads, i)
