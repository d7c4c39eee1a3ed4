"""Activations and their derivatives, elementwise over 1e3..1e7 elements, and softmax by shape.

Also the pair a backward pass really runs for sigmoid and tanh layers: the forward activation
and then its derivative from ``a`` (groups ``sigmoid_fwd_grad-…``, ``tanh_fwd_grad-…``).
The elementwise and softmax groups' baseline, "numpy", is the NumPy expression itself (the reference kernel
called without nnfast's checks: ``nnfast._bench.numpy_setup``).
"""
import numpy as np
import pytest

import nnfast

from .harness import DTYPES, SIZES, SIZES_TO_1E7, label, run, run_case

ELEMENTWISE = ("sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
               "leaky_relu", "leaky_relu_grad")
#: Kernels also timed at 1e7 elements (memory-bound: the size where bandwidth decides).
TO_1E7 = ("sigmoid", "tanh", "relu")
SOFTMAX_SHAPES = [(64, 10), (1024, 10), (256, 1000), (4096, 100), (1024, 1000)]

CASES = [(k, n) for k in ELEMENTWISE for n in (SIZES_TO_1E7 if k in TO_1E7 else SIZES)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,size", CASES, ids=[f"{k}-{label(n)}" for k, n in CASES])
def test_elementwise(benchmark, backend, kernel, dtype, size):
    run_case(benchmark, backend, kernel, dtype, (size,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,size", CASES, ids=[f"{k}-{label(n)}" for k, n in CASES])
def test_elementwise_numpy(benchmark, kernel, dtype, size):
    run_case(benchmark, "numpy", kernel, dtype, (size,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=label)
def test_softmax(benchmark, backend, dtype, shape):
    run_case(benchmark, backend, "softmax", dtype, shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=label)
def test_softmax_numpy(benchmark, dtype, shape):
    run_case(benchmark, "numpy", "softmax", dtype, shape)


def _forward_and_grad(name, n, dtype):
    forward, grad = getattr(nnfast, name), getattr(nnfast, name + "_grad")
    x = np.random.default_rng(0).normal(0.0, 2.0, n).astype(dtype)
    a = np.empty_like(x)
    g = np.empty_like(x)

    def step():
        forward(x, out=a)
        grad(a, out=g)
    return step


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7[1:], ids=label)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_forward_and_grad(benchmark, backend, name, dtype, size):
    run(benchmark, backend, f"{name}_fwd_grad-{dtype}-{label(size)}", size,
        lambda: _forward_and_grad(name, size, dtype), (name, name + "_grad"))
