"""nnfast._network, the parts of ``MLP``: the layout keeps each parameter's offset, every
backend's ``step`` module provides the network pass that ``_backend.network_step`` picks, and
batch-norm running statistics follow one rule in the public kernel and in training."""
import importlib

import numpy as np
import pytest

import nnfast
from nnfast import _backend
from nnfast._network.layout import Layout, counts

BACKEND_MODULES = ("activations", "losses", "dense", "batchnorm", "optim", "step")


@pytest.mark.parametrize("batchnorm", [False, True])
def test_layout_offsets_locate_every_parameter(batchnorm):
    sizes = [5, 7, 4, 3]
    layout = Layout(sizes, batchnorm, np.dtype(np.float64))
    assert layout.flat_params.size == counts(sizes, batchnorm)[0]
    layout.flat_params[...] = np.arange(layout.flat_params.size)
    layout.flat_grads[...] = -np.arange(layout.flat_grads.size)
    ends = []
    for name, offset, p, g in zip(layout.param_names, layout.offsets, layout.params,
                                  layout.grads):
        want = np.arange(offset, offset + p.size).reshape(p.shape)
        np.testing.assert_array_equal(p, want, err_msg=name)
        np.testing.assert_array_equal(g, -want, err_msg=name)
        ends.append((offset, offset + p.size))
    assert sorted(ends)[0][0] == 0 and sorted(ends)[-1][1] == layout.flat_params.size
    assert all(a[1] == b[0] for a, b in zip(sorted(ends), sorted(ends)[1:]))   # no gaps
    assert layout.weights.size == layout.n_weights == sum(a * b for a, b in
                                                          zip(sizes[:-1], sizes[1:]))
    assert (layout.step_arrays is None) == batchnorm


def test_network_step_is_the_backends_step_module(backend):
    network = _backend.network_step()
    assert network is importlib.import_module(f"nnfast._{backend}.step").network


def test_auto_runs_networks_on_network_order():
    with nnfast.use_backend("auto"):
        first = next(b for b in _backend.NETWORK_ORDER if _backend.available(b))
        assert _backend.network_step() is importlib.import_module(
            f"nnfast._{first}.step").network


@pytest.mark.parametrize("bn", [False, True])
def test_every_step_module_agrees_with_the_reference(backend, bn):
    """The objective and gradients of each backend's network pass against the reference's
    (the Numba whole-network kernel included: no batch norm, integer labels)."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 3, 9)
    net = nnfast.MLP([6, 5, 4, 3], hidden="tanh", batchnorm=bn, l2=0.1, dtype="float64",
                     seed=2)
    got = (net.loss(X, y, training=True), net.gradients(X, y))
    with nnfast.use_backend("reference"):
        want = (net.loss(X, y, training=True), net.gradients(X, y))
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for name, g, w in zip(net.param_names, got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13, err_msg=name)


def test_training_and_the_public_kernel_update_running_statistics_alike():
    """MLP.forward(training=True) moves a batch-norm layer's running statistics exactly as
    nnfast.batchnorm_forward does on the same z (one rule: batchnorm.update_running)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 4))
    net = nnfast.MLP([4, 6, 2], batchnorm=True, dtype="float64", seed=1)
    layer = net.layers[0]
    z = X @ layer.W
    mean, var = layer.running_mean.copy(), layer.running_var.copy()
    nnfast.batchnorm_forward(z, layer.gamma, layer.beta, mean, var, momentum=0.1, eps=1e-5)
    with nnfast.use_backend("reference"):
        net.forward(X, training=True)
    np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(layer.running_var, var, rtol=1e-14, atol=1e-15)
    assert not np.array_equal(mean, np.zeros(6))
