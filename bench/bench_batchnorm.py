"""Batch normalization of (batch, features) hidden layers: training forward (with the running
statistics' update) and backward. Each group's baseline, "numpy", is the pass as plain NumPy
(the reference kernel called without nnfast's checks: ``nnfast._bench.numpy_setup``)."""
import pytest

from .harness import DTYPES, label, run_case

SHAPES = [(32, 128), (128, 512), (1024, 256), (256, 2048)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=label)
@pytest.mark.parametrize("kernel", ["batchnorm_forward", "batchnorm_backward"])
def test_batchnorm(benchmark, backend, kernel, dtype, shape):
    run_case(benchmark, backend, kernel, dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=label)
@pytest.mark.parametrize("kernel", ["batchnorm_forward", "batchnorm_backward"])
def test_batchnorm_numpy(benchmark, kernel, dtype, shape):
    run_case(benchmark, "numpy", kernel, dtype, shape)
