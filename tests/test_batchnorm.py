"""Batch normalization: forward (training and inference, running statistics) and backward. The
reference against the formulas, torch and central differences; every backend against it."""
import numpy as np
import pytest

import nnfast
from conftest import (LARGE, central_difference, close, describe, make_rng, no_warnings,
                      reference)

BACKEND_MODULES = ("batchnorm",)


def _inputs(dtype, m, n, layout="C", offset=0.0, key=""):
    rng = make_rng("bn", dtype.name, m, n, layout, offset, key)
    z = (rng.standard_normal((m, n)) * 2 + offset).astype(dtype)
    gamma = (1 + 0.5 * rng.standard_normal(n)).astype(dtype)
    beta = rng.standard_normal(n).astype(dtype)
    rm = rng.standard_normal(n).astype(dtype)
    rv = (0.5 + rng.random(n)).astype(dtype)
    if layout == "transposed":
        z = np.ascontiguousarray(z.T).T
    elif layout == "Fortran":
        z = np.asfortranarray(z)
    elif layout == "strided":
        z = np.repeat(z, 2, axis=0)[::2]
        gamma = np.repeat(gamma, 2)[::2]
    elif layout == "read-only":
        for x in (z, gamma, beta):
            x.flags.writeable = False
    return z, gamma, beta, rm, rv


#: (m, n, layout, offset); (64, 2048) is 2**17 elements
CASES = [
    (2, 1, "C", 0.0),
    (2, 3, "C", 0.0),
    (7, 5, "C", 0.0),
    (1023, 3, "C", 0.0),
    (3, 4097, "C", 0.0),
    (40, 6, "transposed", 0.0),
    (17, 9, "Fortran", 0.0),
    (12, 5, "strided", 0.0),
    (9, 4, "read-only", 0.0),
    (200, 8, "C", 50.0),  # mean far from 0: a one-pass E[z²] - E[z]² variance loses digits
    (64, LARGE // 64, "C", 0.0),
]


# --- the reference against the formulas ---------------------------------------------------------

def test_reference_forward_formula_and_running_stats():
    z, gamma, beta, rm, rv = _inputs(np.dtype(np.float64), 9, 4)
    rm0, rv0 = rm.copy(), rv.copy()
    with nnfast.use_backend("reference"):
        out, cache = nnfast.batchnorm_forward(z, gamma, beta, rm, rv, momentum=0.2, eps=1e-3)
    mu, var = z.mean(axis=0), z.var(axis=0)
    np.testing.assert_allclose(out, gamma * (z - mu) / np.sqrt(var + 1e-3) + beta, rtol=1e-13)
    np.testing.assert_allclose(rm, 0.8 * rm0 + 0.2 * mu, rtol=1e-14)
    np.testing.assert_allclose(rv, 0.8 * rv0 + 0.2 * z.var(axis=0, ddof=1), rtol=1e-14)
    np.testing.assert_allclose(cache.xhat, (z - mu) / np.sqrt(var + 1e-3), rtol=1e-13)
    with nnfast.use_backend("reference"):
        out, cache = nnfast.batchnorm_forward(z, gamma, beta, rm, rv, eps=1e-3, training=False)
    assert cache is None
    np.testing.assert_allclose(out, gamma * (z - rm) / np.sqrt(rv + 1e-3) + beta, rtol=1e-13)


def test_reference_matches_torch_batchnorm1d():
    torch = pytest.importorskip("torch", reason="torch is not installed: no torch comparison")
    z, gamma, beta, rm, rv = _inputs(np.dtype(np.float64), 11, 5)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    tz = torch.tensor(z, requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    tout = torch.nn.functional.batch_norm(tz, trm, trv, tg, tb, training=True, momentum=0.1,
                                          eps=1e-5)
    R = make_rng("bn torch").standard_normal((11, 5))
    (tout * torch.tensor(R)).sum().backward()
    with nnfast.use_backend("reference"):
        out, cache = nnfast.batchnorm_forward(z, gamma, beta, rm, rv)
        dz, dgamma, dbeta = nnfast.batchnorm_backward(R, cache)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-13)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-13)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dgamma, tg.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dbeta, tb.grad.numpy(), rtol=1e-12)


def test_backward_is_central_difference(backend):
    z, gamma, beta, rm, rv = _inputs(np.dtype(np.float64), 6, 3, key="fd")
    R = make_rng("bn fd").standard_normal((6, 3))

    def loss():
        out, _ = nnfast.batchnorm_forward(z, gamma, beta, rm.copy(), rv.copy())
        return np.sum(R * out)

    _, cache = nnfast.batchnorm_forward(z, gamma, beta, rm.copy(), rv.copy())
    dz, dgamma, dbeta = nnfast.batchnorm_backward(R, cache)
    for got, x, name in ((dz, z, "dz"), (dgamma, gamma, "dgamma"), (dbeta, beta, "dbeta")):
        np.testing.assert_allclose(got, central_difference(loss, x), rtol=1e-6, atol=1e-8,
                                   err_msg=f"{name}, backend {backend}")


# --- backends against the reference -------------------------------------------------------------

def _conditioning(z, gamma, m):
    """Per-column factor by which float rounding in (z - μ) is amplified into out and x̂:
    κ = max|z| / σ (times |γ| for out), at least sqrt(m) for the sums over m rows. A column of 3
    nearly equal values (σ/|μ| ~ 1e-2, seen in the (3, 4097) case) has κ ~ 100: there reference
    and compiled kernels both lie ~1e-5 from the exact float64 result, on opposite sides."""
    z64 = np.asarray(z, dtype=np.float64)
    sigma = np.sqrt(z64.var(axis=0) + 1e-5)
    kappa = np.max(np.abs(z64), axis=0, initial=0.0) / sigma
    return np.maximum(np.sqrt(m), kappa * np.maximum(np.abs(gamma.astype(np.float64)), 1.0))


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0])
def test_forward_train_matches_reference(momentum, backend, dtype):
    for m, n, layout, offset in CASES:
        z, gamma, beta, rm, rv = _inputs(dtype, m, n, layout, offset)
        before = [x.copy() for x in (z, gamma, beta)]
        rm_ref, rv_ref = rm.copy(), rv.copy()
        what = (f"batchnorm_forward train momentum={momentum}, backend {backend}, dtype {dtype}, "
                f"{describe(layout, z)}, offset {offset}")
        out_r, cache_r = reference(nnfast.batchnorm_forward, z, gamma, beta, rm_ref, rv_ref,
                                   momentum)
        with no_warnings():
            out, cache = nnfast.batchnorm_forward(z, gamma, beta, rm, rv, momentum)
        assert out.dtype == dtype and out.shape == (m, n), what
        s = np.sqrt(m)
        f = _conditioning(z, gamma, m)  # absolute errors allowed: atol * f per column
        close(out / f, out_r / f, dtype, f"{what}: out (/ conditioning)")
        close(cache.xhat / f, cache_r.xhat / f, dtype, f"{what}: cache.xhat (/ conditioning)")
        close(cache.invstd, cache_r.invstd, dtype, f"{what}: cache.invstd", scale=s)
        close(rm, rm_ref, dtype, f"{what}: running_mean", scale=s * (1 + offset))
        close(rv, rv_ref, dtype, f"{what}: running_var", scale=s)
        for x, x0, name in zip((z, gamma, beta), before, ("z", "gamma", "beta")):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: {name} mutated")


def test_forward_infer_matches_reference(backend, dtype):
    for m, n, layout, offset in CASES + [(0, 4, "C", 0.0), (1, 6, "C", 0.0)]:
        z, gamma, beta, rm, rv = _inputs(dtype, m, n, layout, offset)
        before = [x.copy() for x in (z, gamma, beta, rm, rv)]
        what = (f"batchnorm_forward inference, backend {backend}, dtype {dtype}, "
                f"{describe(layout, z)}")
        out_r, _ = reference(nnfast.batchnorm_forward, z, gamma, beta, rm, rv, training=False)
        with no_warnings():
            out, cache = nnfast.batchnorm_forward(z, gamma, beta, rm, rv, training=False)
        assert cache is None and out.dtype == dtype and out.shape == (m, n), what
        close(out, out_r, dtype, what, scale=1 + offset)
        for x, x0, name in zip((z, gamma, beta, rm, rv), before,
                               ("z", "gamma", "beta", "running_mean", "running_var")):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: {name} changed")
        # out= given
        o = np.full((m, n), np.nan, dtype)
        assert nnfast.batchnorm_forward(z, gamma, beta, rm, rv, training=False, out=o)[0] is o
        close(o, out_r, dtype, f"{what}, out=", scale=1 + offset)


def test_backward_matches_reference(backend, dtype):
    for m, n, layout, offset in CASES:
        z, gamma, beta, rm, rv = _inputs(dtype, m, n, layout, offset)
        rng = make_rng("bn dout", m, n, layout)
        dout = rng.standard_normal((m, n)).astype(dtype)
        if layout == "transposed":
            dout = np.ascontiguousarray(dout.T).T
        elif layout == "read-only":
            dout.flags.writeable = False
        what = f"batchnorm_backward, backend {backend}, dtype {dtype}, {describe(layout, dout)}"
        # both from the same forward cache, so only the backward kernel differs
        _, cache = reference(nnfast.batchnorm_forward, z, gamma, beta, rm.copy(), rv.copy())
        before = [dout.copy(), cache.xhat.copy(), cache.gamma.copy(), cache.invstd.copy()]
        dz_r, dg_r, db_r = reference(nnfast.batchnorm_backward, dout, cache)
        with no_warnings():
            dz, dg, db = nnfast.batchnorm_backward(dout, cache)
        s = np.sqrt(m)
        # dz = γ·invstd/m · (m·dout - dβ - x̂·dγ): the bracket's rounding is amplified by γ·invstd
        f = np.maximum(s, np.abs(cache.gamma) * cache.invstd * np.max(np.abs(dout), axis=0))
        assert dz.dtype == dg.dtype == db.dtype == dtype, what
        close(dz / f, dz_r / f, dtype, f"{what}: dz (/ conditioning)")
        close(dg, dg_r, dtype, f"{what}: dgamma", scale=s)
        close(db, db_r, dtype, f"{what}: dbeta", scale=s)
        for x, x0, name in zip((dout, cache.xhat, cache.gamma, cache.invstd), before,
                               ("dout", "cache.xhat", "cache.gamma", "cache.invstd")):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: {name} mutated")
        # out aliasing dout
        if dout.flags.writeable and dout.flags.c_contiguous:
            d2 = dout.copy()
            res = nnfast.batchnorm_backward(d2, cache, out=d2)
            assert res[0] is d2, what
            close(d2 / f, dz_r / f, dtype, f"{what}: out=dout (/ conditioning)")
            close(res[1], dg_r, dtype, f"{what}: dgamma with out=dout", scale=s)
            close(res[2], db_r, dtype, f"{what}: dbeta with out=dout", scale=s)


def test_train_then_infer_over_many_batches(backend, dtype):
    """Running statistics after 20 batches equal the reference's, and inference uses them."""
    rng = make_rng("bn many", dtype.name)
    n = 6
    rm, rv = np.zeros(n, dtype), np.ones(n, dtype)
    rm_r, rv_r = rm.copy(), rv.copy()
    gamma, beta = np.ones(n, dtype), np.zeros(n, dtype)
    for _ in range(20):
        z = (rng.standard_normal((32, n)) * 3 + 1).astype(dtype)
        nnfast.batchnorm_forward(z, gamma, beta, rm, rv)
        reference(nnfast.batchnorm_forward, z, gamma, beta, rm_r, rv_r)
    what = f"running stats after 20 batches, backend {backend}, dtype {dtype}"
    close(rm, rm_r, dtype, what, scale=10)
    close(rv, rv_r, dtype, what, scale=10)
    out, _ = nnfast.batchnorm_forward(z, gamma, beta, rm, rv, training=False)
    close(out, (z - rm_r) / np.sqrt(rv_r.astype(np.float64) + 1e-5), dtype, what, scale=10)
