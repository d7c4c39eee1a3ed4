"""The update styles reproduce torch.optim and scikit-learn's MLP optimizers over many steps.

Each test runs the same gradients through the trusted implementation and through nnfast (every
backend, both dtypes, a list of two parameter arrays in one call) and compares every step.
"""
import numpy as np
import pytest

import nnfast
from conftest import make_rng, update_grads

BACKEND_MODULES = ("optim",)

STEPS = 50
SHAPES = [(7, 5), (5,)]

#: torch/sklearn do the same arithmetic in another order; after 50 steps the float32 results
#: differ by a few ulp of the parameters, float64 by a few ulp of float64.
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-11, atol=1e-13)}


def _grads(dtype, key):
    rng = make_rng("torch optim", key, dtype.name)
    params = [(0.5 * rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    grads = [[update_grads(rng, s, dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _compare(got, expected, dtype, what):
    """Elementwise rtol, and normwise: an absolute error of rtol · max|θ| (an element that
    crosses 0 keeps the rounding error of the larger values it passed through)."""
    tol = TOL[dtype]
    for i, (g, e) in enumerate(zip(got, expected)):
        atol = max(tol["atol"], tol["rtol"] * float(np.max(np.abs(e))))
        np.testing.assert_allclose(g, e, rtol=tol["rtol"], atol=atol,
                                   err_msg=f"{what}, param[{i}]")


def _torch_run(torch, opt_cls, params, grads, **kwargs):
    """Parameters after each of the steps of a torch optimizer, as NumPy arrays."""
    tparams = [torch.tensor(p.copy()) for p in params]
    opt = opt_cls(tparams, **kwargs)
    history = []
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        opt.step()
        history.append([tp.detach().numpy().copy() for tp in tparams])
    return history


TORCH_SGD = {
    "plain": dict(lr=0.05),
    "weight_decay": dict(lr=0.05, weight_decay=0.01),
    "momentum": dict(lr=0.05, momentum=0.9),
    "momentum dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "momentum dampening weight_decay": dict(lr=0.05, momentum=0.8, dampening=0.1,
                                            weight_decay=0.02),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "nesterov weight_decay": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
}


@pytest.mark.parametrize("case", TORCH_SGD)
def test_torch_sgd(case, backend, dtype):
    torch = pytest.importorskip("torch", reason="torch is not installed: no torch comparison")
    kw = TORCH_SGD[case]
    params, grads = _grads(dtype, "sgd " + case)
    expected = _torch_run(torch, torch.optim.SGD, params, grads, **kw)
    ps = [p.copy() for p in params]
    vs = [np.zeros_like(p) for p in params]
    mom = kw.get("momentum", 0.0)
    for t, gs in enumerate(grads, start=1):
        if mom == 0.0:
            nnfast.sgd_update(ps, gs, kw["lr"], weight_decay=kw.get("weight_decay", 0.0))
        else:
            # torch's first step sets the buffer to dθ: dampening 0 there
            damp = 0.0 if t == 1 else kw.get("dampening", 0.0)
            nnfast.momentum_update(ps, gs, vs, kw["lr"], mom, style="torch", dampening=damp,
                                   nesterov=kw.get("nesterov", False),
                                   weight_decay=kw.get("weight_decay", 0.0))
        _compare(ps, expected[t - 1], dtype, f"torch.optim.SGD {case}, backend {backend}, "
                                             f"dtype {dtype}, step {t}")


TORCH_RMSPROP = {
    "default": dict(lr=0.01),
    "alpha eps weight_decay": dict(lr=0.01, alpha=0.9, eps=1e-4, weight_decay=0.01),
}


@pytest.mark.parametrize("case", TORCH_RMSPROP)
def test_torch_rmsprop(case, backend, dtype):
    torch = pytest.importorskip("torch", reason="torch is not installed: no torch comparison")
    kw = TORCH_RMSPROP[case]
    params, grads = _grads(dtype, "rmsprop " + case)
    expected = _torch_run(torch, torch.optim.RMSprop, params, grads, **kw)
    ps = [p.copy() for p in params]
    sq = [np.zeros_like(p) for p in params]
    for t, gs in enumerate(grads, start=1):
        nnfast.rmsprop_update(ps, gs, sq, kw["lr"], beta=kw.get("alpha", 0.99),
                              eps=kw.get("eps", 1e-8), style="torch",
                              weight_decay=kw.get("weight_decay", 0.0))
        _compare(ps, expected[t - 1], dtype, f"torch.optim.RMSprop {case}, backend {backend}, "
                                             f"dtype {dtype}, step {t}")


TORCH_ADAM = {
    "Adam default": ("Adam", dict(lr=0.01)),
    "Adam betas eps": ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6)),
    "Adam weight_decay": ("Adam", dict(lr=0.01, weight_decay=0.05)),
    "AdamW default": ("AdamW", dict(lr=0.01)),
    "AdamW weight_decay": ("AdamW", dict(lr=0.01, weight_decay=0.1, betas=(0.85, 0.99))),
}


@pytest.mark.parametrize("case", TORCH_ADAM)
def test_torch_adam(case, backend, dtype):
    torch = pytest.importorskip("torch", reason="torch is not installed: no torch comparison")
    cls_name, kw = TORCH_ADAM[case]
    params, grads = _grads(dtype, "adam " + case)
    expected = _torch_run(torch, getattr(torch.optim, cls_name), params, grads, **kw)
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    b1, b2 = kw.get("betas", (0.9, 0.999))
    # AdamW's default weight decay is 0.01, Adam's 0
    wd = kw.get("weight_decay", 0.01 if cls_name == "AdamW" else 0.0)
    for t, gs in enumerate(grads, start=1):
        nnfast.adam_update(ps, gs, ms, vs, t, kw["lr"], b1, b2, kw.get("eps", 1e-8), wd,
                           style="torch", decoupled=cls_name == "AdamW")
        _compare(ps, expected[t - 1], dtype, f"torch.optim.{case}, backend {backend}, "
                                             f"dtype {dtype}, step {t}")


# --- scikit-learn's optimizers (sklearn.neural_network._stochastic_optimizers) -----------------

def _sklearn_optimizers():
    return pytest.importorskip("sklearn.neural_network._stochastic_optimizers",
                               reason="scikit-learn is not installed: no sklearn comparison")


@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.5, True), (0.0, False)])
def test_sklearn_sgd(momentum, nesterov, backend, dtype):
    so = _sklearn_optimizers()
    params, grads = _grads(dtype, f"sk sgd {momentum} {nesterov}")
    sk_params = [p.copy() for p in params]
    opt = so.SGDOptimizer(sk_params, learning_rate_init=0.05, momentum=momentum,
                          nesterov=nesterov)
    ps = [p.copy() for p in params]
    vs = [np.zeros_like(p) for p in params]
    for t, gs in enumerate(grads, start=1):
        opt.update_params(sk_params, gs)
        nnfast.momentum_update(ps, gs, vs, 0.05, momentum, style="sklearn", nesterov=nesterov)
        _compare(ps, sk_params, dtype, f"sklearn SGDOptimizer momentum={momentum} "
                                       f"nesterov={nesterov}, backend {backend}, dtype {dtype}, "
                                       f"step {t}")
        _compare(vs, opt.velocities, dtype, f"sklearn SGD velocities, backend {backend}, step {t}")


@pytest.mark.parametrize("kw", [dict(), dict(beta_1=0.8, beta_2=0.99, epsilon=1e-4)],
                         ids=["default", "betas epsilon"])
def test_sklearn_adam(kw, backend, dtype):
    so = _sklearn_optimizers()
    params, grads = _grads(dtype, f"sk adam {sorted(kw.items())}")
    sk_params = [p.copy() for p in params]
    opt = so.AdamOptimizer(sk_params, learning_rate_init=0.01, **kw)
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    for t, gs in enumerate(grads, start=1):
        opt.update_params(sk_params, gs)
        nnfast.adam_update(ps, gs, ms, vs, t, 0.01, kw.get("beta_1", 0.9),
                           kw.get("beta_2", 0.999), kw.get("epsilon", 1e-8), style="sklearn")
        _compare(ps, sk_params, dtype, f"sklearn AdamOptimizer {kw}, backend {backend}, "
                                       f"dtype {dtype}, step {t}")
