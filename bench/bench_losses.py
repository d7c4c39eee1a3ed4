"""Losses fused with their output delta: softmax cross-entropy by (batch, classes) shape,
binary cross-entropy and squared error by element count, and the L2 penalty. Each group's
baseline, "numpy", is the loss as plain NumPy (the reference kernel called without nnfast's
checks: ``nnfast._bench.numpy_setup``)."""
import pytest

from .harness import DTYPES, SIZES, label, run_case

#: (batch, classes): MNIST-like (1024, 10), ImageNet-like (256, 1000), and around them.
CLASS_SHAPES = [(64, 10), (1024, 10), (8192, 10), (256, 100), (256, 1000), (1024, 1000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=label)
def test_softmax_cross_entropy(benchmark, backend, dtype, shape):
    run_case(benchmark, backend, "softmax_cross_entropy", dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=label)
def test_softmax_cross_entropy_numpy(benchmark, dtype, shape):
    run_case(benchmark, "numpy", "softmax_cross_entropy", dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES, ids=label)
@pytest.mark.parametrize("kernel", ["sigmoid_binary_cross_entropy", "mean_squared_error",
                                    "l2_penalty"])
def test_elementwise_loss(benchmark, backend, kernel, dtype, size):
    run_case(benchmark, backend, kernel, dtype, (size,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES, ids=label)
@pytest.mark.parametrize("kernel", ["sigmoid_binary_cross_entropy", "mean_squared_error",
                                    "l2_penalty"])
def test_elementwise_loss_numpy(benchmark, kernel, dtype, size):
    run_case(benchmark, "numpy", kernel, dtype, (size,))
