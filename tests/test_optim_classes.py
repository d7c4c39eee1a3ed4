"""nnfast.optim: each optimizer over several steps against the seed's formulas, torch.optim and
scikit-learn's solvers; lazy state, settable lr, names, bad arguments."""
import numpy as np
import pytest
from conftest import make_rng

import nnfast
from nnfast import optim

SHAPES = [(4, 3), (3,), (2, 5)]
STEPS = 6


def arrays(key, dtype=np.float64):
    rng = make_rng("optim", key)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def gradients(step, dtype=np.float64):
    rng = make_rng("grads", step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def run(opt, params):
    for t in range(STEPS):
        opt.step(params, gradients(t, params[0].dtype))
    return params


# ------------------------------------------------------------------ seed's formulas --
def seed_run(kind, params, lr, beta=0.9, beta2=0.999, eps=1e-8):
    params = [p.copy() for p in params]
    V = [np.zeros_like(p) for p in params]
    S = [np.zeros_like(p) for p in params]
    for t in range(STEPS):
        for p, g, v, s in zip(params, gradients(t), V, S):
            if kind == "sgd":
                p -= lr * g
            elif kind == "momentum":           # V = βV + (1-β)dθ; θ = θ - αV
                v[...] = beta * v + (1 - beta) * g
                p -= lr * v
            elif kind == "rmsprop":            # S = βS + (1-β)dθ²; θ -= α dθ/sqrt(S+ε)
                s[...] = beta * s + (1 - beta) * g * g
                p -= lr * g / np.sqrt(s + eps)
            else:                              # Adam with bias correction, ε inside the root
                v[...] = beta * v + (1 - beta) * g
                s[...] = beta2 * s + (1 - beta2) * g * g
                v_corr, s_corr = v / (1 - beta ** (t + 1)), s / (1 - beta2 ** (t + 1))
                p -= lr * v_corr / np.sqrt(s_corr + eps)
    return params


@pytest.mark.parametrize("kind,opt", [
    ("sgd", lambda: optim.SGD(lr=0.1)),
    ("momentum", lambda: optim.Momentum(lr=0.1, beta=0.9)),
    ("rmsprop", lambda: optim.RMSprop(lr=0.01, beta=0.9)),
    ("adam", lambda: optim.Adam(lr=0.01, beta1=0.9, beta2=0.999)),
])
def test_seed_formulas(kind, opt):
    o = opt()
    beta = getattr(o, "beta", getattr(o, "beta1", 0.9))
    want = seed_run(kind, arrays(kind), o.lr, beta=beta)
    got = run(o, arrays(kind))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    assert o.t == STEPS


# ------------------------------------------------------------------------- PyTorch --
TORCH_CASES = [
    ("SGD", {"lr": 0.1}, lambda: optim.SGD(lr=0.1)),
    ("SGD", {"lr": 0.1, "weight_decay": 0.01}, lambda: optim.SGD(lr=0.1, weight_decay=0.01)),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, lambda: optim.Momentum(lr=0.1, style="torch")),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3},
     lambda: optim.Momentum(lr=0.1, beta=0.8, style="torch", dampening=0.3)),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     lambda: optim.Momentum(lr=0.1, style="torch", nesterov=True)),
    ("RMSprop", {"lr": 0.01, "alpha": 0.99}, lambda: optim.RMSprop(lr=0.01, beta=0.99,
                                                                   style="torch")),
    ("Adam", {"lr": 0.01}, lambda: optim.Adam(lr=0.01, style="torch")),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1},
     lambda: optim.Adam(lr=0.01, style="torch", weight_decay=0.1)),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1},
     lambda: optim.Adam(lr=0.01, style="torch", weight_decay=0.1, decoupled=True)),
]


@pytest.mark.parametrize("torch_name,torch_kwargs,make", TORCH_CASES,
                         ids=[f"{c[0]}-{'-'.join(map(str, c[1].items()))}" for c in TORCH_CASES])
def test_matches_torch(torch_name, torch_kwargs, make):
    torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch comparison")
    start = arrays(torch_name)
    tparams = [torch.tensor(p, requires_grad=True) for p in start]
    topt = getattr(torch.optim, torch_name)(tparams, **torch_kwargs)
    for t in range(STEPS):
        for tp, g in zip(tparams, gradients(t)):
            tp.grad = torch.from_numpy(g)
        topt.step()
    got = run(make(), [p.copy() for p in start])
    for g, tp in zip(got, tparams):
        np.testing.assert_allclose(g, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_torch_momentum_first_step_sets_velocity_to_gradient():
    """torch: buf = dθ on the first step (no dampening), then βV + (1-dampening)dθ."""
    o = optim.Momentum(lr=1.0, beta=0.5, style="torch", dampening=0.5)
    p, g = [np.zeros(3)], [np.ones(3)]
    o.step(p, g)
    np.testing.assert_allclose(p[0], -1.0)                  # V = dθ = 1
    o.step(p, g)
    np.testing.assert_allclose(p[0], -1.0 - (0.5 + 0.5))     # V = 0.5·1 + 0.5·1


# -------------------------------------------------------------------- scikit-learn --
def test_matches_sklearn_solvers():
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    for make_sk, make_nn in [
        (lambda ps: AdamOptimizer(ps, learning_rate_init=0.01),
         lambda: optim.Adam(lr=0.01, style="sklearn")),
        (lambda ps: SGDOptimizer(ps, learning_rate_init=0.1, momentum=0.9, nesterov=False),
         lambda: optim.Momentum(lr=0.1, style="sklearn")),
        (lambda ps: SGDOptimizer(ps, learning_rate_init=0.1, momentum=0.9, nesterov=True),
         lambda: optim.Momentum(lr=0.1, style="sklearn", nesterov=True)),
    ]:
        start = arrays("sk")
        sk_params = [p.copy() for p in start]
        sk = make_sk(sk_params)
        for t in range(STEPS):
            sk.update_params(sk_params, gradients(t))
        got = run(make_nn(), [p.copy() for p in start])
        for g, w in zip(got, sk_params):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------ behaviour --
@pytest.mark.parametrize("name", ["SGD", "Momentum", "RMSprop", "Adam"])
def test_state_belongs_to_the_arrays_of_the_first_step(name):
    """Issue 7: stepping a second model's same-shaped arrays reused the first model's moments
    and step count. Now the state is the first arrays': other arrays are refused (also after
    the first ones are freed and their memory reused), new views of the same memory are not."""
    o = getattr(optim, name)(lr=0.1)
    assert o._state == {}
    params = arrays("lazy")
    o.step(params, gradients(0))
    assert len(o._state) == 3
    o.step([p.reshape(-1).reshape(p.shape) for p in params], gradients(1))   # same memory
    assert o.t == 2
    before = [p.copy() for p in params]
    others = [p.copy() for p in params]             # a second model of the same shapes
    for bad in (others, params[:1], params[::-1], [others[0], params[1], params[2]]):
        with pytest.raises(ValueError, match=f"^this {name} holds the state of other arrays"):
            o.step(bad, gradients(2)[:len(bad)])
    for b, p in zip(before, params + others):
        np.testing.assert_array_equal(b, p)
    assert o.t == 2
    # memory freed and reused by a new array at the same address: still refused
    flat = np.zeros(5)
    o2 = getattr(optim, name)(lr=0.1)
    o2.step(flat, np.ones(5))
    address = flat.__array_interface__["data"][0]
    del flat
    again = np.zeros(5)
    if again.__array_interface__["data"][0] == address:
        with pytest.raises(ValueError, match="holds the state of other arrays"):
            o2.step(again, np.ones(5))
    o.reset()
    assert o.t == 0 and o._state == {}


def test_single_array_and_float32():
    o = optim.RMSprop(lr=0.01)
    p = np.ones(5, np.float32)
    o.step(p, np.full(5, 2.0, np.float32))
    assert p.dtype == np.float32 and (p < 1).all()


def test_lr_is_settable_and_checked():
    o = optim.SGD(lr=0.5)
    p = [np.zeros(2)]
    o.lr = 0.25
    o.step(p, [np.ones(2)])
    np.testing.assert_allclose(p[0], -0.25)
    with pytest.raises(ValueError, match="lr"):
        o.lr = -1.0
    assert o.lr == 0.25


def test_make_by_name():
    assert isinstance(optim.make("adam", lr=0.1, beta1=0.8), optim.Adam)
    assert optim.make("Momentum").lr == 0.01
    assert isinstance(optim.make("rmsprop", style="torch"), optim.RMSprop)
    o = optim.SGD()
    assert optim.make(o, lr=0.3) is o and o.lr == 0.3
    with pytest.raises(ValueError, match="optimizer"):
        optim.make("adagrad")
    with pytest.raises(TypeError, match="optimizer"):
        optim.make(3)
    with pytest.raises(TypeError, match="beta1"):
        optim.make("sgd", beta1=0.3)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: optim.Adam(beta1=1.0), ValueError, "beta1"),
    (lambda: optim.Adam(style="keras"), ValueError, "style"),
    (lambda: optim.Adam(decoupled=1), TypeError, "decoupled"),
    (lambda: optim.Momentum(dampening=0.1), ValueError, "dampening"),
    (lambda: optim.Momentum(nesterov="yes"), TypeError, "nesterov"),
    (lambda: optim.RMSprop(style="sklearn"), ValueError, "style"),
    (lambda: optim.RMSprop(eps=-1), ValueError, "eps"),
    (lambda: optim.SGD(lr="fast"), TypeError, "lr"),
    (lambda: optim.SGD(weight_decay=-0.1), ValueError, "weight_decay"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_step_leaves_params_and_state_unchanged():
    o = optim.Adam(lr=0.1)
    params = arrays("bad")
    o.step(params, gradients(0))
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match="grad"):
        o.step(params, gradients(1)[:2])
    with pytest.raises(ValueError, match="grad\\[1\\]"):
        o.step(params, [gradients(1)[0], np.ones(4), gradients(1)[2]])
    params[0].flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        o.step(params, gradients(1))
    for b, p in zip(before, params):
        np.testing.assert_array_equal(b, p)
    assert o.t == 1


def test_repr():
    assert repr(optim.SGD(lr=0.5)) == "SGD(lr=0.5, weight_decay=0.0)"
    assert "decoupled=True" in repr(optim.Adam(decoupled=True))


def test_public_names():
    assert nnfast.optim is optim
    assert [c.__name__ for c in (optim.SGD, optim.Momentum, optim.RMSprop, optim.Adam)] == [
        "SGD", "Momentum", "RMSprop", "Adam"]


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=0.1, weight_decay=0.01),
    lambda: optim.Momentum(lr=0.1),
    lambda: optim.Momentum(lr=0.1, style="torch", dampening=0.2, nesterov=True),
    lambda: optim.Momentum(lr=0.1, style="sklearn", nesterov=True),
    lambda: optim.RMSprop(lr=0.01),
    lambda: optim.RMSprop(lr=0.01, style="torch", weight_decay=0.1),
    lambda: optim.Adam(lr=0.01),
    lambda: optim.Adam(lr=0.01, style="torch", weight_decay=0.1, decoupled=True),
    lambda: optim.Adam(lr=0.01, style="sklearn"),
], ids=["sgd", "momentum-seed", "momentum-torch", "momentum-sklearn", "rmsprop-seed",
        "rmsprop-torch", "adam-seed", "adamw-torch", "adam-sklearn"])
def test_step_flat_equals_step(make, dtype):
    """The MLP's trusted path (validated once, then the kernel directly) is the same update."""
    rng = make_rng("flat", dtype.name)
    start = rng.standard_normal(50).astype(dtype)
    a, b = make(), make()
    pa, pb = start.copy(), start.copy()
    gb = np.empty_like(start)                   # the same grad buffer every step, as MLP's
    for t in range(STEPS):
        g = rng.standard_normal(50).astype(dtype)
        if t == 3:
            a.lr = b.lr = a.lr / 2              # a schedule changes lr between steps
        a.step([pa], [g])
        np.copyto(gb, g)
        b.step_flat(pb, gb)
    np.testing.assert_array_equal(pa, pb)
    assert a.t == b.t == STEPS
