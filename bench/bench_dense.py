"""Dense layers at MLP shapes (batch m, fan_in k, fan_out n): forward ``relu(a W + b)`` with z
kept, and backward (dW, db, and δ_prev through relu's derivative). Groups are labelled
``m x k x n``; the GEMM runs through BLAS in every backend, so ratios measure the epilogues and
the cost of a call. The baseline, "numpy", is the NumPy expression itself (the reference kernel
called without nnfast's checks: ``nnfast._bench.numpy_setup``)."""
import pytest

from .harness import DTYPES, label, run_case

#: MNIST MLP first layer (128×784·784×512), a small layer (32×64·64×128), a square hidden
#: layer, a 10-class output layer, and the small shapes where a call's checks and dispatch cost
#: more than its arithmetic: a 10-row batch into 30 units, and one row of a tiny layer.
SHAPES = [(128, 784, 512), (32, 64, 128), (256, 512, 512), (128, 512, 10), (10, 64, 30),
          (1, 8, 4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=label)
@pytest.mark.parametrize("kernel", ["dense_forward", "dense_backward"])
def test_dense(benchmark, backend, kernel, dtype, shape):
    run_case(benchmark, backend, kernel, dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=label)
@pytest.mark.parametrize("kernel", ["dense_forward", "dense_backward"])
def test_dense_numpy(benchmark, kernel, dtype, shape):
    run_case(benchmark, "numpy", kernel, dtype, shape)
