"""Optimizer updates, in place: the reference against the seed's formulas step by step, every
backend against the reference over many steps for every style and option, lists of arrays."""
import numpy as np
import pytest

import nnfast
from conftest import LARGE, close, describe, make_rng, no_warnings, reference, update_grads

BACKEND_MODULES = ("optim",)

STEPS = 50

#: id -> (function, number of state arrays, keyword arguments); adam also gets step=t
CONFIGS = {
    "sgd": (nnfast.sgd_update, 0, dict(lr=0.05)),
    "sgd wd": (nnfast.sgd_update, 0, dict(lr=0.05, weight_decay=0.01)),
    "momentum seed": (nnfast.momentum_update, 1, dict(lr=0.05, beta=0.9)),
    "momentum seed beta=0": (nnfast.momentum_update, 1, dict(lr=0.05, beta=0.0)),
    "momentum torch": (nnfast.momentum_update, 1, dict(lr=0.05, beta=0.9, style="torch")),
    "momentum torch dampening wd": (nnfast.momentum_update, 1,
                                    dict(lr=0.05, beta=0.8, style="torch", dampening=0.1,
                                         weight_decay=0.01)),
    "momentum torch nesterov": (nnfast.momentum_update, 1,
                                dict(lr=0.05, beta=0.9, style="torch", nesterov=True)),
    "momentum torch nesterov wd": (nnfast.momentum_update, 1,
                                   dict(lr=0.05, beta=0.9, style="torch", nesterov=True,
                                        weight_decay=0.02)),
    "momentum sklearn": (nnfast.momentum_update, 1, dict(lr=0.05, beta=0.9, style="sklearn")),
    "momentum sklearn nesterov": (nnfast.momentum_update, 1,
                                  dict(lr=0.05, beta=0.9, style="sklearn", nesterov=True)),
    "rmsprop seed": (nnfast.rmsprop_update, 1, dict(lr=0.01)),
    "rmsprop seed eps=1e-3 wd": (nnfast.rmsprop_update, 1,
                                 dict(lr=0.01, beta=0.9, eps=1e-3, weight_decay=0.01)),
    "rmsprop torch": (nnfast.rmsprop_update, 1, dict(lr=0.01, beta=0.99, style="torch")),
    "rmsprop torch wd": (nnfast.rmsprop_update, 1,
                         dict(lr=0.01, beta=0.99, style="torch", weight_decay=0.01)),
    "adam seed": (nnfast.adam_update, 2, dict(lr=0.01)),
    "adam seed wd": (nnfast.adam_update, 2, dict(lr=0.01, weight_decay=0.01)),
    "adam torch": (nnfast.adam_update, 2, dict(lr=0.01, style="torch")),
    "adam torch wd": (nnfast.adam_update, 2, dict(lr=0.01, style="torch", weight_decay=0.01)),
    "adamw torch": (nnfast.adam_update, 2,
                    dict(lr=0.01, style="torch", weight_decay=0.05, decoupled=True)),
    "adam sklearn": (nnfast.adam_update, 2,
                     dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, style="sklearn")),
    "adam seed decoupled": (nnfast.adam_update, 2,
                            dict(lr=0.01, weight_decay=0.05, decoupled=True)),
}


def _call(name, param, grad, states, t):
    fn, _, kwargs = CONFIGS[name]
    if fn is nnfast.adam_update:
        return fn(param, grad, *states, t, **kwargs)
    return fn(param, grad, *states, **kwargs)


def _grad(rng, shape, dtype, layout):
    g = update_grads(rng, shape, dtype)
    if layout == "strided grad":
        g = np.repeat(g.reshape(-1), 2)[::2].reshape(shape) if g.ndim == 1 else \
            np.asfortranarray(g)
    elif layout == "read-only grad":
        g.flags.writeable = False
    return g


#: (param shape, grad layout)
PARAMS = [
    ((0,), "C"),
    ((1,), "C"),
    ((1023,), "strided grad"),
    ((37, 29), "strided grad"),
    ((4097,), "read-only grad"),
    ((LARGE,), "C"),
]


def _run(name, backend, dtype, shape, layout, steps=STEPS):
    """``steps`` updates by the backend in force and by the reference, compared every step."""
    nstates = CONFIGS[name][1]
    rng = make_rng("updates", name, dtype.name, shape)
    p = (0.5 * rng.standard_normal(shape)).astype(dtype)
    states = [np.zeros(shape, dtype) for _ in range(nstates)]
    p_ref, states_ref = p.copy(), [s.copy() for s in states]
    for t in range(1, steps + 1):
        g = _grad(rng, shape, dtype, layout)
        g0 = g.copy()
        what = (f"{name}, backend {backend}, dtype {dtype}, step {t}, "
                f"{describe(layout, g)}, param {p.shape}")
        with no_warnings():
            assert _call(name, p, g, states, t) is None, what
        reference(_call, name, p_ref, g, states_ref, t)
        np.testing.assert_array_equal(g, g0, err_msg=f"{what}: grad mutated")
        close(p, p_ref, dtype, f"{what}: param", normwise=True)
        for i, (s, sr) in enumerate(zip(states, states_ref)):
            close(s, sr, dtype, f"{what}: state {i}", normwise=True)
        assert p.dtype == dtype and all(s.dtype == dtype for s in states), what


@pytest.mark.parametrize("name", CONFIGS)
def test_update_matches_reference_over_many_steps(name, backend, dtype):
    for shape, layout in PARAMS:
        size = int(np.prod(shape))
        _run(name, backend, dtype, shape, layout, steps=STEPS if size < 2000 else 3)


@pytest.mark.parametrize("name", CONFIGS)
def test_list_of_arrays_equals_per_array_calls(name, backend, dtype):
    nstates = CONFIGS[name][1]
    rng = make_rng("multi", name, dtype.name)
    shapes = [(3, 4), (5,), (0,), (1,), (257, 3)]
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
    sts = [[np.zeros(s, dtype) for s in shapes] for _ in range(nstates)]
    ps1 = [p.copy() for p in ps]
    sts1 = [[s.copy() for s in st] for st in sts]
    for t in range(1, 11):
        gs = [update_grads(rng, s, dtype) for s in shapes]
        _call(name, ps, gs, sts, t)
        for i in range(len(shapes)):
            _call(name, ps1[i], gs[i], [st[i] for st in sts1], t)
    what = f"{name}, backend {backend}, dtype {dtype}: list call vs per-array calls"
    for i in range(len(shapes)):
        close(ps[i], ps1[i], dtype, f"{what}, param[{i}]", normwise=True)
        for k in range(nstates):
            close(sts[k][i], sts1[k][i], dtype, f"{what}, state {k}[{i}]", normwise=True)
    # tuples work like lists
    pt = tuple(p.copy() for p in ps)
    _call(name, pt, tuple(gs), tuple(tuple(s.copy() for s in st) for st in sts), 11)


def test_flat_buffer_views_update_like_separate_arrays(backend, dtype):
    """A model's params as views of one flat buffer: one call on the buffer == per-view calls."""
    rng = make_rng("flat", dtype.name)
    flat = rng.standard_normal(4 * 3 + 3).astype(dtype)
    m, v = np.zeros_like(flat), np.zeros_like(flat)
    views = [flat[:12].reshape(4, 3), flat[12:]]
    sep = [x.copy() for x in views]
    sm, sv = [np.zeros_like(x) for x in sep], [np.zeros_like(x) for x in sep]
    for t in range(1, 6):
        g = update_grads(rng, flat.size, dtype)
        nnfast.adam_update(flat, g, m, v, t, lr=0.01)
        nnfast.adam_update(sep, [g[:12].reshape(4, 3), g[12:]], sm, sv, t, lr=0.01)
    close(views[0], sep[0], dtype, f"flat buffer, backend {backend}", normwise=True)
    close(views[1], sep[1], dtype, f"flat buffer, backend {backend}", normwise=True)


@pytest.mark.parametrize("name", [n for n in CONFIGS if "wd" not in n and "decoupled" not in n
                                  and "adamw" not in n])
def test_zero_and_tiny_gradients(name, backend, dtype):
    """Where ε matters: exact zeros, tiny and huge gradients (no weight decay, no cancellation)."""
    nstates = CONFIGS[name][1]
    g = np.array([0.0, -0.0, 1e-30, -1e-20, 1e-10, -1e-6, 1e-3, 1.0, -1e4, 1e8][
        : 10 if dtype == np.float64 else 9], dtype=dtype)
    p = np.linspace(-1, 1, g.size).astype(dtype)
    states = [np.zeros_like(p) for _ in range(nstates)]
    p_ref, states_ref = p.copy(), [s.copy() for s in states]
    for t in range(1, 6):
        gt = g if t % 2 else g[::-1].copy()
        what = f"{name}, backend {backend}, dtype {dtype}, tiny/zero/huge gradients, step {t}"
        with no_warnings():
            _call(name, p, gt, states, t)
        reference(_call, name, p_ref, gt, states_ref, t)
        assert np.all(np.isfinite(p)), what
        close(p, p_ref, dtype, f"{what}: param")
        for i, (s, sr) in enumerate(zip(states, states_ref)):
            close(s, sr, dtype, f"{what}: state {i}")


# --- the reference against the seed's formulas --------------------------------------------------

def _seed_steps(name, p, grads):
    """The lecture's update rules written out in float64."""
    V = np.zeros_like(p)
    S = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if name == "sgd":
            p = p - 0.05 * g
        elif name == "momentum":
            V = 0.9 * V + (1 - 0.9) * g
            p = p - 0.05 * V
        elif name == "rmsprop":
            S = 0.999 * S + (1 - 0.999) * g ** 2
            p = p - 0.01 * g / np.sqrt(S + 1e-8)
        else:
            V = 0.9 * V + (1 - 0.9) * g
            S = 0.999 * S + (1 - 0.999) * g ** 2
            Vc, Sc = V / (1 - 0.9 ** t), S / (1 - 0.999 ** t)
            p = p - 0.01 * Vc / np.sqrt(Sc + 1e-8)
    return p


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_reference_is_the_seed_formula(name):
    rng = make_rng("seed", name)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(STEPS)]
    p = p0.copy()
    states = [np.zeros(50) for _ in range({"sgd": 0, "momentum": 1, "rmsprop": 1,
                                          "adam": 2}[name])]
    cfg = {"sgd": "sgd", "momentum": "momentum seed", "rmsprop": "rmsprop seed",
           "adam": "adam seed"}[name]
    with nnfast.use_backend("reference"):
        for t, g in enumerate(grads, start=1):
            _call(cfg, p, g, states, t)
    np.testing.assert_allclose(p, _seed_steps(name, p0, grads), rtol=1e-12, atol=1e-14)


def test_reference_docstring_examples_and_decay():
    with nnfast.use_backend("reference"):
        p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
        nnfast.sgd_update(p, g, lr=0.1)
        np.testing.assert_array_equal(p, np.float32(1) - np.float32(0.1) * np.float32(0.5))
        p = np.zeros(4, np.float32)
        g = np.ones(4, np.float32)
        m, v = np.zeros_like(p), np.zeros_like(p)
        nnfast.adam_update(p, g, m, v, step=1, lr=0.1)
        np.testing.assert_allclose(p, -0.1, rtol=1e-7)
        # weight decay: sgd adds wd·θ to dθ; AdamW scales θ by 1 - α·wd first
        p = np.array([2.0])
        nnfast.sgd_update(p, np.array([0.0]), lr=0.1, weight_decay=0.5)
        assert p[0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)
        p, m, v = np.array([2.0]), np.zeros(1), np.zeros(1)
        nnfast.adam_update(p, np.array([0.0]), m, v, 1, lr=0.1, weight_decay=0.5, decoupled=True)
        assert p[0] == pytest.approx(2.0 * (1 - 0.1 * 0.5))
    # the seed's example: α0 = 0.2, decay_rate = 1
    assert nnfast.inverse_time_decay(0.2, 1.0, 3) == pytest.approx(0.05)
    assert [nnfast.inverse_time_decay(0.2, 1, e) for e in range(4)] == pytest.approx(
        [0.2, 0.1, 0.2 / 3, 0.05])
    assert nnfast.inverse_time_decay(0.2, 0.0, 100) == 0.2
