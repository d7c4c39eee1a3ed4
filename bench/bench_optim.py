"""Fused optimizer updates, in place over 1e3..1e7 parameters; for Adam also PyTorch's CPU
``torch.optim.Adam`` (``fused=True``, and the single-tensor ``foreach=False`` loop) on the same
arrays (``torch.from_numpy`` shares their memory), in the same groups."""
import numpy as np
import pytest

from nnfast import _bench

from .harness import DTYPES, SIZES_TO_1E7, label, run, run_case

UPDATES = ("sgd_update", "momentum_update", "rmsprop_update", "adam_update")
GROUP = {"sgd_update": "sgd", "momentum_update": "momentum", "rmsprop_update": "rmsprop",
         "adam_update": "adam"}
TORCH_ADAM = {"torch-fused": {"fused": True}, "torch-foreach=False": {"foreach": False}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7, ids=label)
@pytest.mark.parametrize("kernel", UPDATES)
def test_update(benchmark, backend, kernel, dtype, size):
    run_case(benchmark, backend, kernel, dtype, (size,), group_kernel=GROUP[kernel])


def _torch_adam(size, dtype, options):
    torch = pytest.importorskip("torch", reason="torch is an optional peer for this benchmark")
    param, grad, _ = _bench.optimizer_arrays((size,), np.dtype(dtype), np.random.default_rng(0), 0)
    p = torch.from_numpy(param)
    p.grad = torch.from_numpy(grad)
    opt = torch.optim.Adam([p], lr=1e-3, **options)
    for _ in range(9):  # step 10 like nnfast's case: state allocated, bias corrections generic
        opt.step()
    return opt.step


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7[1:], ids=label)
@pytest.mark.parametrize("impl", list(TORCH_ADAM))
def test_torch_adam(benchmark, impl, dtype, size):
    run(benchmark, impl, f"adam-{dtype}-{label(size)}", size,
        lambda: _torch_adam(size, dtype, TORCH_ADAM[impl]))
