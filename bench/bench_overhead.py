"""Call overhead: 64 elements, where validation and dispatch cost more than the arithmetic.

The baseline of each ``overhead-…`` group is the plain NumPy expression a user would write
("numpy"); each backend is timed through the public function, and ``<backend>-kernel`` calls the
low-level kernel directly, so public minus kernel is what nnfast's checks and dispatch cost.
"""
import numpy as np
import pytest

from nnfast import _backend, _bench

from .harness import BACKENDS, DTYPES, run

N = 64


def _arrays(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=N).astype(dtype)
    return x, np.empty_like(x)


def _numpy_relu(dtype):
    x, out = _arrays(dtype)
    return lambda: np.maximum(x, 0, out=out)


def _numpy_sigmoid(dtype):
    x, out = _arrays(dtype)

    def sigmoid():
        np.negative(x, out=out)
        np.exp(out, out=out)
        np.add(out, 1.0, out=out)
        np.reciprocal(out, out=out)
    return sigmoid


def _numpy_sgd(dtype):
    p, g, _ = _bench.optimizer_arrays((N,), np.dtype(dtype), np.random.default_rng(0), 0)

    def sgd():
        np.subtract(p, 1e-3 * g, out=p)
    return sgd


def _numpy_adam(dtype):
    p, g, (m, v) = _bench.optimizer_arrays((N,), np.dtype(dtype), np.random.default_rng(0), 2)
    b1, b2, bc1, bc2 = 0.9, 0.999, 1 - 0.9 ** 10, 1 - 0.999 ** 10

    def adam():
        np.multiply(m, b1, out=m)
        np.add(m, (1 - b1) * g, out=m)
        np.multiply(v, b2, out=v)
        np.add(v, (1 - b2) * g * g, out=v)
        np.subtract(p, 1e-3 * (m / bc1) / np.sqrt(v / bc2 + 1e-8), out=p)
    return adam


def _numpy_softmax(dtype):
    x = np.random.default_rng(0).normal(size=(8, 8)).astype(dtype)
    out = np.empty_like(x)

    def softmax():
        np.exp(x - x.max(axis=1, keepdims=True), out=out)
        np.divide(out, out.sum(axis=1, keepdims=True), out=out)
    return softmax


NUMPY = {"relu": _numpy_relu, "sigmoid": _numpy_sigmoid, "sgd_update": _numpy_sgd,
         "adam_update": _numpy_adam, "softmax": _numpy_softmax}
SHAPE = {"softmax": (8, 8)}


def _kernel_only(kernel, backend, dtype):
    """The low-level kernel of ``backend`` called directly on validated arrays."""
    (module, name), = _bench.LOW_LEVEL[kernel]
    fn = getattr(_backend._module(backend, module), name)
    if kernel in ("relu", "sigmoid"):
        x, out = _arrays(dtype)
        return lambda: fn(x, out)
    p, g, _ = _bench.optimizer_arrays((N,), np.dtype(dtype), np.random.default_rng(0), 0)
    return lambda: fn(p, g, 1e-3, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", list(NUMPY))
def test_numpy_expression(benchmark, kernel, dtype):
    run(benchmark, "numpy", f"overhead-{kernel}-{dtype}-{N}", N, lambda: NUMPY[kernel](dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", list(NUMPY))
def test_public_call(benchmark, backend, kernel, dtype):
    shape = SHAPE.get(kernel, (N,))
    run(benchmark, backend, f"overhead-{kernel}-{dtype}-{N}", N,
        lambda: _bench.CASES[kernel].setup(shape, np.dtype(dtype), np.random.default_rng(0)),
        kernel)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["relu", "sigmoid", "sgd_update"])
@pytest.mark.parametrize("impl", BACKENDS)
def test_kernel_only(benchmark, impl, kernel, dtype):
    reason = _bench.missing(impl, kernel)
    if reason:
        pytest.skip(reason)
    run(benchmark, f"{impl}-kernel", f"overhead-{kernel}-{dtype}-{N}", N,
        lambda: _kernel_only(kernel, impl, dtype))
