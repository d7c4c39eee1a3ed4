"""nnfast.MLP: every configuration against the reference backend, PyTorch and central
differences; training on digits; persistence; steady-state allocation; bad input."""
import gc
import itertools
import math
import tracemalloc

import numpy as np
import pytest
from conftest import close, make_rng, require_backend, run_python

import nnfast

HIDDEN = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
OUTPUTS = ("softmax", "sigmoid", "identity")
CONFIGS = list(itertools.product(HIDDEN, OUTPUTS, (False, True)))
CONFIG_IDS = [f"{h}-{o}-{'bn' if bn else 'plain'}" for h, o, bn in CONFIGS]


def problem(output, m=13, sizes=(5, 7, 6, 3), dtype=np.float64, key=0):
    """Random X and targets of the right kind for ``output``."""
    rng = make_rng("mlp", output, m, key)
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    k = sizes[-1]
    if output == "softmax":
        y = rng.integers(0, k, m)
    elif output == "sigmoid":
        y = rng.integers(0, 2, (m, k))
    else:
        y = rng.standard_normal((m, k)).astype(dtype)
    return X, y


def model(hidden, output, bn, sizes=(5, 7, 6, 3), dtype="float64", l2=0.3, seed=3):
    net = nnfast.MLP(list(sizes), hidden=hidden, output=output, batchnorm=bn, l2=l2,
                     dtype=dtype, seed=seed)
    if bn:   # move γ, β and the running statistics off their trivial initial values
        rng = make_rng("bn", hidden, output)
        for layer in net.layers[:-1]:
            layer.gamma[...] = rng.uniform(0.5, 1.5, layer.gamma.shape)
            layer.beta[...] = rng.uniform(-0.5, 0.5, layer.beta.shape)
            layer.running_mean[...] = rng.uniform(-0.5, 0.5, layer.beta.shape)
            layer.running_var[...] = rng.uniform(0.5, 2.0, layer.beta.shape)
    else:
        for layer in net.layers:
            layer.b[...] = make_rng("b", hidden, output).uniform(-0.3, 0.3, layer.b.shape)
    return net


# ------------------------------------------------------------------------- gradients --
@pytest.mark.parametrize("hidden,output,bn", CONFIGS, ids=CONFIG_IDS)
def test_gradcheck_every_configuration(hidden, output, bn):
    """The seed's gradient check, < 1e-7 in float64, L2 on, batch norm in training mode."""
    net = model(hidden, output, bn)
    X, y = problem(output)
    before = net.flat_params.copy()
    result = net.check_gradients(X, y)
    assert result.diff < 1e-7, (result, net.param_names)
    # Per array, a small gradient (b0 under sigmoid: norm 4e-3) meets the finite difference's
    # roundoff, ~ulp(J)/eps per element, so its relative diff grows as 1/eps (1.8e-7 at 1e-7,
    # 2e-9 at 1e-5: measured). eps=1e-5 keeps both roundoff and truncation (eps²) far below 1e-7.
    # Some gradients are exactly 0: β of a batch-norm layer followed (through identity) by
    # another batch norm, which removes any shift. Their relative diff is noise over noise.
    result = net.check_gradients(X, y, eps=1e-5)
    for name, diff, approx, g in zip(net.param_names, result.per_param, result.approx,
                                     net.gradients(X, y)):
        if np.linalg.norm(approx) + np.linalg.norm(g) > 1e-8:
            assert diff < 1e-7, (name, result)
    np.testing.assert_array_equal(net.flat_params, before)   # restored bit for bit


def test_gradcheck_of_float32_model_runs_in_float64():
    net = model("tanh", "softmax", True, dtype="float32")
    X, y = problem("softmax", dtype=np.float32)
    assert net.check_gradients(X, y).diff < 1e-7
    assert net.dtype == np.float32


def test_gradients_deep_network_and_single_layer():
    for sizes in [(4, 3), (4, 6, 5, 5, 4, 3)]:
        net = model("leaky_relu", "softmax", True, sizes=sizes)
        X, y = problem("softmax", sizes=sizes)
        assert net.check_gradients(X, y).diff < 1e-7, sizes


def test_l2_term_is_the_seeds():
    """J = loss + λ/(2m) Σ W² over weight matrices only; gradient gets λ/m · W."""
    lam, (X, y) = 0.7, problem("identity")
    plain, reg = model("tanh", "identity", False, l2=0.0), model("tanh", "identity", False, l2=lam)
    m = X.shape[0]
    weights = [layer.W for layer in reg.layers]
    expected = plain.loss(X, y) + lam / (2 * m) * sum(float(np.sum(w * w)) for w in weights)
    assert reg.loss(X, y) == pytest.approx(expected, rel=1e-12)
    g_plain, g_reg = plain.gradients(X, y), reg.gradients(X, y)
    for name, p, gp, gr in zip(reg.param_names, reg.params, g_plain, g_reg):
        extra = lam / m * p if name.startswith("W") else 0.0
        np.testing.assert_allclose(gr, gp + extra, rtol=1e-12, atol=1e-14, err_msg=name)


# ------------------------------------------------------------ backends vs reference --
@pytest.mark.parametrize("hidden,output,bn", [c for c in CONFIGS if c[0] in ("relu", "tanh")],
                         ids=[i for c, i in zip(CONFIGS, CONFIG_IDS) if c[0] in ("relu", "tanh")])
def test_every_backend_matches_reference(backend, dtype, hidden, output, bn):
    sizes = (9, 16, 12, 4)
    X, y = problem(output, m=33, sizes=sizes, dtype=dtype)
    net = model(hidden, output, bn, sizes=sizes, dtype=dtype.name)
    got = (net.forward(X), net.forward(X, training=bn), net.loss(X, y), net.gradients(X, y))
    with nnfast.use_backend("reference"):
        ref_net = model(hidden, output, bn, sizes=sizes, dtype=dtype.name)
        want = (ref_net.forward(X), ref_net.forward(X, training=bn), ref_net.loss(X, y),
                ref_net.gradients(X, y))
    what = f"{backend} {dtype} {hidden}-{output}-bn={bn}"
    close(got[0], want[0], dtype, f"forward, {what}", scale=10)
    close(got[1], want[1], dtype, f"forward(training), {what}", scale=10)
    close(got[2], want[2], dtype, f"loss, {what}", scale=10)
    for name, g, w in zip(net.param_names, got[3], want[3]):
        close(g, w, dtype, f"gradient {name}, {what}", scale=30)
    close(net.flat_buffers, ref_net.flat_buffers, dtype, f"running statistics, {what}", scale=10)


# ------------------------------------------------------------------------- PyTorch --
def torch_twin(net):
    """A torch.nn model with the same weights (float64) and the matching loss function."""
    torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch comparison")
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
            "leaky_relu": lambda: nn.LeakyReLU(net.slope)}
    mods, params = [], []
    for layer in net.layers:
        fan_in, fan_out = layer.W.shape
        lin = nn.Linear(fan_in, fan_out, bias=not layer.batchnorm).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.W.T.astype(np.float64)))
            if lin.bias is not None:
                lin.bias.copy_(torch.from_numpy(layer.b.astype(np.float64)))
        mods.append(lin)
        params.append(lin.weight)
        if layer is net.layers[-1]:
            params.append(lin.bias)
            break
        if layer.batchnorm:
            bn = nn.BatchNorm1d(fan_out, eps=nnfast.model.BN_EPS,
                                momentum=nnfast.model.BN_MOMENTUM).double()
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(layer.gamma.astype(np.float64)))
                bn.bias.copy_(torch.from_numpy(layer.beta.astype(np.float64)))
                bn.running_mean.copy_(torch.from_numpy(layer.running_mean.astype(np.float64)))
                bn.running_var.copy_(torch.from_numpy(layer.running_var.astype(np.float64)))
            mods.append(bn)
            params += [bn.weight, bn.bias]
        else:
            params.append(lin.bias)
        mods.append(acts[net.hidden]())
    seq = nn.Sequential(*mods)

    def objective(X, y):
        logits = seq(torch.from_numpy(np.asarray(X, np.float64)))
        m = logits.shape[0]
        if net.output == "softmax":
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(y)))
        elif net.output == "sigmoid":
            t = torch.from_numpy(np.asarray(y, np.float64).reshape(logits.shape))
            loss = nn.functional.binary_cross_entropy_with_logits(logits, t,
                                                                  reduction="sum") / m
        else:
            t = torch.from_numpy(np.asarray(y, np.float64).reshape(logits.shape))
            loss = ((logits - t) ** 2).sum() / (2 * m)
        weights = [mod.weight for mod in seq if isinstance(mod, nn.Linear)]
        return loss + net.l2 / (2 * m) * sum((w ** 2).sum() for w in weights), logits

    return torch, seq, params, objective


@pytest.mark.parametrize("hidden,output,bn", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch(hidden, output, bn):
    net = model(hidden, output, bn)
    torch, seq, params, objective = torch_twin(net)
    X, y = problem(output)
    seq.train()
    loss_t, _ = objective(X, y)
    loss_t.backward()
    assert net.loss(X, y, training=True) == pytest.approx(loss_t.item(), rel=1e-12)
    for name, g, p in zip(net.param_names, net.gradients(X, y), params):
        want = p.grad.numpy().T if name.startswith("W") else p.grad.numpy()
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-13, err_msg=name)
    # training forward updates running statistics as torch does; inference uses them
    net.forward(X, training=True)
    seq.eval()
    with torch.no_grad():
        loss_eval, logits = objective(X, y)
    assert net.loss(X, y) == pytest.approx(loss_eval.item(), rel=1e-12)
    if output == "softmax":
        want = torch.softmax(logits, 1).numpy()
    elif output == "sigmoid":
        want = torch.sigmoid(logits).numpy()
    else:
        want = logits.numpy()
    np.testing.assert_allclose(net.forward(X), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,torch_name,kwargs", [
    ("adam", "Adam", {}),
    ("momentum", "SGD", {"momentum": 0.9}),
    ("rmsprop", "RMSprop", {"alpha": 0.99}),
    ("adam_w", "AdamW", {"weight_decay": 0.1}),
])
def test_train_steps_match_torch_optimizer(name, torch_name, kwargs):
    """Several fused steps on the flat buffer equal torch's per-tensor optimizer."""
    net = model("tanh", "softmax", True)
    torch, seq, params, objective = torch_twin(net)
    opt = {"adam": nnfast.optim.Adam(lr=0.01, style="torch"),
           "momentum": nnfast.optim.Momentum(lr=0.05, beta=0.9, style="torch"),
           "rmsprop": nnfast.optim.RMSprop(lr=0.01, beta=0.99, style="torch"),
           "adam_w": nnfast.optim.Adam(lr=0.01, style="torch", weight_decay=0.1,
                                       decoupled=True)}[name]
    t_opt = getattr(torch.optim, torch_name)(params, lr=opt.lr, **kwargs)
    seq.train()
    for step in range(5):
        X, y = problem("softmax", key=step)
        loss = net.train_step(X, y, opt)
        t_opt.zero_grad()
        loss_t, _ = objective(X, y)
        loss_t.backward()
        t_opt.step()
        assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    for pname, p, tp in zip(net.param_names, net.params, params):
        want = tp.detach().numpy().T if pname.startswith("W") else tp.detach().numpy()
        np.testing.assert_allclose(p, want, rtol=1e-9, atol=1e-12, err_msg=pname)


# ------------------------------------------------------------------- flat buffers --
def test_params_and_grads_are_views_of_flat_buffers():
    net = model("relu", "softmax", True)
    assert len(net.params) == len(net.grads) == len(net.param_names) == 3 + 3 + 2
    for p, g in zip(net.params, net.grads):
        assert np.shares_memory(p, net.flat_params) and np.shares_memory(g, net.flat_grads)
    assert sum(p.size for p in net.params) == net.flat_params.size
    X, y = problem("softmax")
    grads = net.gradients(X, y)
    for g, view in zip(grads, net.grads):
        np.testing.assert_array_equal(g, view)
        assert not np.shares_memory(g, net.flat_grads)      # fresh copies
    before = [p.copy() for p in net.params]
    nnfast.sgd_update(net.flat_params, net.flat_grads, lr=0.5)
    for b, p, g in zip(before, net.params, grads):
        np.testing.assert_allclose(p, b - 0.5 * g, rtol=1e-12, atol=1e-15)


def test_init_schemes():
    sizes = [400, 300, 10]
    he = nnfast.MLP(sizes, init="he", seed=0, dtype="float64")
    assert he.layers[0].W.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    xavier = nnfast.MLP(sizes, init="xavier", seed=0, dtype="float64")
    limit = math.sqrt(6 / 700)
    assert np.abs(xavier.layers[0].W).max() <= limit
    assert xavier.layers[0].W.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    normal = nnfast.MLP(sizes, init="normal", init_scale=0.01, seed=0, dtype="float64")
    assert normal.layers[0].W.std() == pytest.approx(0.01, rel=0.02)
    for net in (he, xavier, normal):
        assert not net.layers[0].b.any()
    np.testing.assert_array_equal(nnfast.MLP(sizes, seed=5).flat_params,
                                  nnfast.MLP(sizes, seed=5).flat_params)


# ------------------------------------------------------------------------ training --
@pytest.fixture(scope="module")
def digits():
    from nnfast._data import digits_split

    return digits_split(seed=0, dtype=None)


@pytest.mark.parametrize("optimizer,lr,bn", [("adam", 1e-3, False), ("adam", 1e-3, True),
                                            ("momentum", 0.1, False), ("rmsprop", 1e-3, False),
                                            ("sgd", 0.1, False)])
def test_fit_learns_digits(digits, optimizer, lr, bn):
    Xtr, Xte, ytr, yte = digits
    net = nnfast.MLP([64, 64, 10], seed=0, batchnorm=bn)
    hist = net.fit(Xtr, ytr, optimizer=optimizer, lr=lr, epochs=15, batch_size=64, seed=0,
                   progress=False, validation_data=(Xte, yte), tol=None)
    assert hist.epochs == 15 and hist.stopped == "max_epochs"
    assert len(hist.train_loss) == len(hist.val_loss) == 15
    assert hist.train_loss[-1] < 0.25 * hist.train_loss[0]
    assert (net.predict(Xte) == yte).mean() > 0.93
    assert len(net._workspaces) <= 3        # batch, last batch, validation set


def test_fit_decay_early_stopping_and_reproducibility(digits):
    Xtr, _, ytr, _ = digits
    runs = []
    for _ in range(2):
        net = nnfast.MLP([64, 32, 10], seed=1)
        hist = net.fit(Xtr[:300], ytr[:300], lr=0.01, epochs=500, decay_rate=1.0, tol=1e-2,
                       patience=3, batch_size=50, seed=2, progress=False)
        runs.append((net.flat_params.copy(), hist))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    hist = runs[0][1]
    assert hist.stopped == "no_improvement" and hist.epochs < 500
    assert hist.lr[:3] == pytest.approx([0.01, 0.005, 0.01 / 3])     # α0 / (1 + rate·epoch)
    assert hist.val_loss == []


def test_fit_accepts_optimizer_instance_and_one_hot(digits):
    Xtr, _, ytr, _ = digits
    onehot = np.eye(10)[ytr[:200]]
    net = nnfast.MLP([64, 10], seed=0)
    opt = nnfast.optim.Adam(lr=0.01, style="torch")
    net.fit(Xtr[:200], onehot, optimizer=opt, epochs=3, batch_size=32, progress=False)
    assert opt.t == 3 * 7
    with pytest.raises(TypeError, match="beta1"):
        net.fit(Xtr[:200], ytr[:200], optimizer=opt, beta1=0.5, progress=False)


def test_fit_single_row_tail_with_batchnorm_is_merged():
    X, y = problem("softmax", m=11)
    net = model("relu", "softmax", True)
    hist = net.fit(X, y, batch_size=5, epochs=2, progress=False)    # 5 + 5 + 1 → 5 + 6
    assert hist.epochs == 2 and all(map(math.isfinite, hist.train_loss))


def test_nonfinite_loss_stops_with_error_and_restores_weights():
    rng = make_rng("blowup")
    X = rng.standard_normal((64, 4)) * 10
    y = rng.standard_normal(64) * 100
    net = nnfast.MLP([4, 16, 1], output="identity", dtype="float64", seed=0)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="epoch"):
        net.fit(X, y, optimizer="sgd", lr=10.0, epochs=50, batch_size=8, progress=False,
                tol=None)
    assert np.isfinite(net.flat_params).all()


def test_train_step_returns_loss_before_update():
    X, y = problem("identity")
    net = model("relu", "identity", False)
    loss0 = net.loss(X, y, training=True)
    assert net.train_step(X, y, nnfast.optim.SGD(lr=0.01)) == pytest.approx(loss0, rel=1e-12)
    assert net.loss(X, y) < loss0


def test_predict_shapes():
    X, _ = problem("softmax")
    assert model("relu", "softmax", False).predict(X).shape == (13,)
    proba = model("relu", "softmax", False).predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    sig = nnfast.MLP([5, 4, 1], output="sigmoid", seed=0)
    assert set(np.unique(sig.predict(X))) <= {0, 1} and sig.predict(X).shape == (13,)
    reg = nnfast.MLP([5, 4, 2], output="identity", seed=0)
    assert reg.predict(X).shape == (13, 2)
    with pytest.raises(ValueError, match="predict_proba"):
        reg.predict_proba(X)


# -------------------------------------------------------------------- persistence --
def test_save_load_roundtrip(tmp_path, digits):
    Xtr, Xte, ytr, _ = digits
    net = nnfast.MLP([64, 32, 16, 10], hidden="leaky_relu", batchnorm=True, l2=0.01,
                     dtype="float64", seed=4, slope=0.05)
    net.fit(Xtr, ytr, epochs=2, progress=False)
    path = net.save(tmp_path / "model")
    assert path.endswith(".npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"config", "flat_params", "flat_buffers"}
    loaded = nnfast.MLP.load(path)
    assert loaded.get_config() == net.get_config()
    np.testing.assert_array_equal(loaded.predict_proba(Xte), net.predict_proba(Xte))
    np.testing.assert_array_equal(loaded.flat_buffers, net.flat_buffers)


# ------------------------------------------------------------- steady-state memory --
@pytest.mark.parametrize("bn", [False, True])
def test_train_steps_do_not_grow_memory(bn):
    """Workspaces are reused: after warm-up, many more steps leave traced memory flat."""
    X, y = problem("softmax", m=64, sizes=(20, 32, 16, 5), dtype=np.float32)
    net = nnfast.MLP([20, 32, 16, 5], batchnorm=bn, l2=0.01, seed=0)
    opt = nnfast.optim.Adam()
    for _ in range(20):
        net.train_step(X, y, opt)
    tracemalloc.start()
    try:
        for _ in range(20):
            net.train_step(X, y, opt)
        gc.collect()        # what remains after collection is what a step keeps
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            net.train_step(X, y, opt)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"traced memory grew by {grown} bytes over 300 steps"
    assert len(net._workspaces) == 1


def test_fit_epochs_do_not_grow_memory():
    X, y = problem("softmax", m=200, sizes=(20, 32, 5), dtype=np.float32)
    net = nnfast.MLP([20, 32, 5], seed=0)
    opt = nnfast.optim.Adam()
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=64, progress=False, tol=None)
    tracemalloc.start()
    try:
        net.fit(X, y, optimizer=opt, epochs=2, batch_size=64, progress=False, tol=None)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        net.fit(X, y, optimizer=opt, epochs=40, batch_size=64, progress=False, tol=None)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 16384, f"traced memory grew by {grown} bytes over 40 epochs"


# ---------------------------------------------------------------------- bad input --
def _bad_calls():
    X, y = problem("softmax", sizes=(5, 7, 6, 3))
    Xnan = X.copy()
    Xnan[2, 1] = np.nan
    opt = nnfast.optim.Adam()
    return [
        ("wrong feature count", lambda n: n.fit(X[:, :4], y), ValueError, "features"),
        ("labels outside classes", lambda n: n.fit(X, y + 3), ValueError, "y holds labels"),
        ("negative label", lambda n: n.train_step(X, y - 1, opt), ValueError, "y holds labels"),
        ("float labels", lambda n: n.fit(X, y.astype(float)), TypeError, "must be integers"),
        ("string labels", lambda n: n.fit(X, y.astype(str)), TypeError, "y must be integer"),
        ("NaN in X", lambda n: n.fit(Xnan, y), ValueError, "X contains NaN"),
        ("empty X", lambda n: n.fit(X[:0], y[:0]), ValueError, "X is empty"),
        ("1-D X", lambda n: n.predict(X[0]), ValueError, "2-D"),
        ("mismatched lengths", lambda n: n.fit(X, y[:-1]), ValueError, "y has shape"),
        ("unknown optimizer", lambda n: n.fit(X, y, optimizer="adagrad"), ValueError,
         "optimizer"),
        ("optimizer option typo", lambda n: n.fit(X, y, beta=0.3), TypeError, "beta"),
        ("bad lr", lambda n: n.fit(X, y, lr=-1.0), ValueError, "lr"),
        ("bad epochs", lambda n: n.fit(X, y, epochs=0), ValueError, "epochs"),
        ("bad batch_size", lambda n: n.fit(X, y, batch_size=1.5), TypeError, "batch_size"),
        ("bad validation X", lambda n: n.fit(X, y, validation_data=(X[:, :2], y)), ValueError,
         "validation_data\\[0\\]"),
        ("bad validation y", lambda n: n.fit(X, y, validation_data=(X, y + 5)), ValueError,
         "validation_data\\[1\\]"),
        ("not an optimizer", lambda n: n.train_step(X, y, "adam"), TypeError, "optimizer"),
        ("one-row batch norm step", lambda n: n.train_step(X[:1], y[:1], opt), ValueError,
         "at least 2"),
    ]


@pytest.mark.parametrize("label,call,exc,match", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_input_raises_and_leaves_model_unchanged(label, call, exc, match):
    net = model("relu", "softmax", True)
    before = (net.flat_params.copy(), net.flat_buffers.copy())
    with pytest.raises(exc, match=match):
        call(net)
    np.testing.assert_array_equal(net.flat_params, before[0])
    np.testing.assert_array_equal(net.flat_buffers, before[1])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"hidden": "softplus"}, ValueError, "hidden"),
    ({"hidden": None}, TypeError, "hidden"),
    ({"output": "tanh"}, ValueError, "output"),
    ({"init": "glorot"}, ValueError, "init"),
    ({"dtype": "int32"}, TypeError, "dtype"),
    ({"dtype": "nonsense"}, TypeError, "dtype"),
    ({"l2": -1.0}, ValueError, "l2"),
    ({"batchnorm": "yes"}, TypeError, "batchnorm"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"layer_sizes": [5]}, ValueError, "layer_sizes"),
    ({"layer_sizes": [5, 0, 3]}, ValueError, "layer_sizes\\[1\\]"),
    ({"layer_sizes": "5,3"}, TypeError, "layer_sizes"),
    ({"layer_sizes": [5, 1]}, ValueError, "softmax"),
    ({"layer_sizes": [6, 10**30, 3]}, ValueError, "^layer_sizes .* parameters.*memory"),
    ({"layer_sizes": [6, 10**400, 3]}, ValueError, "^layer_sizes .* parameters.*memory"),
    ({"layer_sizes": [10**6, 10**6]}, ValueError, "^layer_sizes .* parameters.*memory"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    args = {"layer_sizes": [5, 4, 3], **kwargs}
    with pytest.raises(exc, match=match):
        nnfast.MLP(**args)


def test_bad_targets_for_sigmoid_and_identity():
    X, _ = problem("sigmoid")
    sig = nnfast.MLP([5, 3], output="sigmoid", seed=0)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        sig.loss(X, np.full((13, 3), 2))
    reg = nnfast.MLP([5, 1], output="identity", seed=0)
    assert math.isfinite(reg.loss(X, np.zeros(13)))
    with pytest.raises(ValueError, match="NaN"):
        reg.loss(X, np.full(13, np.nan))
    with pytest.raises(ValueError, match="outputs"):
        reg.loss(X, np.zeros((13, 2)))



@pytest.mark.parametrize("backend", ["reference", "numba", "cython"])
@pytest.mark.parametrize("buffer", ["flat_params", "flat_buffers"])
def test_training_a_read_only_model_names_the_buffer(backend, buffer):
    """Made read-only after a first step (the optimizer's fast path is then primed)."""
    require_backend(backend)
    X, y = problem("softmax", m=8, sizes=(5, 4, 3), dtype=np.float32)
    net = nnfast.MLP([5, 4, 3], batchnorm=buffer == "flat_buffers", seed=0)
    opt = nnfast.optim.Adam()
    with nnfast.use_backend(backend):
        net.train_step(X, y, opt)
        getattr(net, buffer).flags.writeable = False
        before = net.flat_params.copy()
        for call in (lambda: net.train_step(X, y, opt),
                     lambda: net.fit(X, y, epochs=1, progress=False)):
            with pytest.raises(ValueError, match=f"^the model's {buffer} is read-only"):
                call()
        np.testing.assert_array_equal(net.flat_params, before)
        # the optimizer alone, on the buffer it has seen before
        if buffer == "flat_params":
            with pytest.raises(ValueError, match="read-only"):
                opt.step_flat(net.flat_params, net.flat_grads)


# ------------------------------------------------------------- fit: what a new user meets --
def test_early_stop_restores_the_best_epoch(digits):
    """Issue 7: fit stopped early kept the last weights, not the best ones."""
    Xtr, Xte, ytr, yte = digits
    net = nnfast.MLP([64, 64, 10], seed=3)
    hist = net.fit(Xtr[:400], ytr[:400], lr=0.05, epochs=200, batch_size=20,
                   validation_data=(Xte, yte), tol=0.0, patience=4, seed=0, progress=False)
    assert hist.stopped == "no_improvement"
    best = int(np.argmin(hist.val_loss))
    assert hist.best_epoch == best + 1 and hist.best_epoch < hist.epochs
    assert net.loss(Xte, yte) == pytest.approx(hist.val_loss[best], rel=1e-6)
    assert net.loss(Xte, yte) < hist.val_loss[-1]
    # without early stopping: every epoch, the last weights
    net = nnfast.MLP([64, 64, 10], seed=3)
    hist = net.fit(Xtr[:400], ytr[:400], lr=0.05, epochs=6, batch_size=20,
                   validation_data=(Xte, yte), tol=None, seed=0, progress=False)
    assert hist.epochs == 6 and hist.stopped == "max_epochs"
    assert net.loss(Xte, yte) == pytest.approx(hist.val_loss[-1], rel=1e-6)


@pytest.mark.parametrize("optimizer, kwargs, match", [
    ("adam", {"verbose": True}, r"^fit\(\) got unexpected keyword argument\(s\) \['verbose'\]; "
                                r"fit takes optimizer, lr, epochs.*optimizer='adam': beta1"),
    ("sgd", {"momentum": 0.9}, r"\['momentum'\] \(momentum: use optimizer='momentum' with "
                               r"beta=0.9\).*optimizer='sgd': weight_decay"),
    ("rmsprop", {"beta1": 0.9}, r"\['beta1'\].*optimizer='rmsprop': beta, eps, style"),
])
def test_fit_names_unknown_options(optimizer, kwargs, match):
    X, y = problem("softmax", m=8, sizes=(5, 3), dtype=np.float32)
    net = nnfast.MLP([5, 3], seed=0)
    before = net.flat_params.copy()
    with pytest.raises(TypeError, match=match):
        net.fit(X, y, optimizer=optimizer, epochs=1, **kwargs)
    np.testing.assert_array_equal(net.flat_params, before)


def test_fit_progress_writes_nothing_into_a_log():
    """stderr redirected to a file: no bar fragments (tqdm writes only to a terminal)."""
    code = ("import numpy as np, nnfast\n"
            "X = np.random.default_rng(0).standard_normal((40, 5)).astype('float32')\n"
            "y = (X[:, 0] > 0).astype(int)\n"
            "h = nnfast.MLP([5, 4, 2], seed=0).fit(X, y, epochs=3, tol=None)\n"
            "print('epochs', h.epochs)\n")
    r = run_python("-c", code, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "epochs 3\n"
    assert "\r" not in r.stderr and "fit:" not in r.stderr, r.stderr
