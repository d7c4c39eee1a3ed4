"""Fused optimizer updates, in place over 1e3..1e7 parameters, and the same updates in the peers
(optional: ``pip install ".[peers]"``) in the same groups, on the same arrays where the peer can
share them:

- ``torch-fused``, ``torch-foreach``, ``torch-foreach=False``: ``torch.optim.SGD`` (plain, and
  with momentum for ``momentum``), ``RMSprop``, ``Adam`` on one CPU tensor made with
  ``torch.from_numpy`` (it shares the arrays' memory) and its ``.grad``, with ``fused=True``,
  ``foreach=True`` (the multi-tensor path) and ``foreach=False`` (the per-tensor loop). A
  variant that torch does not have (``RMSprop`` takes no ``fused=``) is skipped with torch's own
  message.
- ``optax-jit``: the matching ``optax`` transformation (``sgd``, ``sgd(momentum=...)``,
  ``rmsprop``, ``adam``) and ``optax.apply_updates`` in one ``jax.jit`` function with donated
  buffers (JAX's way to update in place), float32 only (JAX needs x64 mode for float64, which
  would change every other JAX benchmark in the process).

Each peer runs the update of its library's own definition with nnfast's hyper-parameters
(torch's momentum is ``v = βv + g`` where the seed's is ``v = βv + (1-β)g``): the memory traffic,
which bounds these kernels, is the same.
"""
import numpy as np
import pytest

from nnfast import _bench

from .harness import DTYPES, SIZES_TO_1E7, label, run, run_case

UPDATES = ("sgd_update", "momentum_update", "rmsprop_update", "adam_update")
GROUP = {"sgd_update": "sgd", "momentum_update": "momentum", "rmsprop_update": "rmsprop",
         "adam_update": "adam"}
LR, BETA, BETA_SQ, EPS = 1e-3, 0.9, 0.999, 1e-8
TORCH_VARIANTS = {"torch-fused": {"fused": True}, "torch-foreach": {"foreach": True},
                  "torch-foreach=False": {"foreach": False}}
PEERS = tuple(TORCH_VARIANTS) + ("optax-jit",)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7, ids=label)
@pytest.mark.parametrize("kernel", UPDATES)
def test_update(benchmark, backend, kernel, dtype, size):
    run_case(benchmark, backend, kernel, dtype, (size,), group_kernel=GROUP[kernel])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7, ids=label)
@pytest.mark.parametrize("kernel", UPDATES)
def test_update_numpy(benchmark, kernel, dtype, size):
    """The baseline: the update as plain NumPy (``nnfast._bench.numpy_setup``)."""
    run_case(benchmark, "numpy", kernel, dtype, (size,), group_kernel=GROUP[kernel])


def _torch_update(kernel, size, dtype, options):
    torch = pytest.importorskip("torch", reason="torch is an optional peer (nnfast[peers])")
    param, grad, _ = _bench.optimizer_arrays((size,), np.dtype(dtype), np.random.default_rng(0), 0)
    p = torch.from_numpy(param)
    p.grad = torch.from_numpy(grad)
    make = {"sgd_update": lambda: torch.optim.SGD([p], lr=LR, **options),
            "momentum_update": lambda: torch.optim.SGD([p], lr=LR, momentum=BETA, **options),
            "rmsprop_update": lambda: torch.optim.RMSprop([p], lr=LR, alpha=BETA_SQ, eps=EPS,
                                                          **options),
            "adam_update": lambda: torch.optim.Adam([p], lr=LR, eps=EPS, **options)}[kernel]
    try:
        opt = make()
        for _ in range(9):  # step 10 like nnfast's case: state allocated, bias corrections generic
            opt.step()
    except (RuntimeError, TypeError) as exc:  # RMSprop has no fused=; unsupported dtypes
        pytest.skip(f"torch {torch.__version__}: {exc}")
    return opt.step


def _optax_update(kernel, size, dtype):
    jax = pytest.importorskip("jax", reason="JAX is an optional peer (nnfast[peers])")
    optax = pytest.importorskip("optax", reason="optax is an optional peer (nnfast[peers])")
    if dtype != "float32":
        pytest.skip("JAX computes in float32 unless x64 mode is on for the whole process")
    tx = {"sgd_update": lambda: optax.sgd(LR),
          "momentum_update": lambda: optax.sgd(LR, momentum=BETA),
          "rmsprop_update": lambda: optax.rmsprop(LR, decay=BETA_SQ, eps=EPS),
          "adam_update": lambda: optax.adam(LR, eps=EPS)}[kernel]()
    param, grad, _ = _bench.optimizer_arrays((size,), np.dtype(dtype), np.random.default_rng(0), 0)

    def apply(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    apply = jax.jit(apply, donate_argnums=(0, 1))
    params, grads = jax.numpy.asarray(param), jax.numpy.asarray(grad)
    box = [params, tx.init(params)]

    def step():
        box[0], box[1] = apply(box[0], box[1], grads)
        jax.block_until_ready(box[0])
    for _ in range(9):
        step()
    return step


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES_TO_1E7[1:], ids=label)
@pytest.mark.parametrize("impl", PEERS)
@pytest.mark.parametrize("kernel", UPDATES)
def test_peer_update(benchmark, kernel, impl, dtype, size):
    if impl == "optax-jit":
        def make():
            return _optax_update(kernel, size, dtype)
    else:
        def make():
            return _torch_update(kernel, size, dtype, TORCH_VARIANTS[impl])
    run(benchmark, impl, f"{GROUP[kernel]}-{dtype}-{label(size)}", size, make)
