"""``nnfast.torch`` optimizers against ``torch.optim`` in a real training loop, float32.

A square ReLU MLP (three ``nn.Linear(w, w)``, w chosen for 1e4..1e7 parameters) on a batch of
32; before every timed ``opt.step()`` an untimed setup runs ``zero_grad``, the forward pass and
``backward`` — so each step meets freshly written gradients, as in training. Implementations, in
group ``torch-<optimizer>-float32-<parameters>``: ``nnfast`` (``nnfast.torch.<optimizer>``),
``torch-fused`` (``fused=True``; torch has no fused RMSprop), ``torch-foreach``
(``foreach=True``) and ``torch-for-loop`` (``foreach=False``, torch's default on the CPU).
Every implementation steps the same model from the same weights; only the step is timed.

The groups have no NumPy baseline, so the ratios table of ``bench/conftest.py`` skips them; read
the ratios off the min column (the README's "Use from PyTorch" table is one such run).
"""
import pytest

from .harness import UNTIMED_MAX, label

SIZES = (10**4, 10**5, 10**6, 10**7)
OPTIMIZERS = {"SGD": dict(lr=0.01, momentum=0.9), "Adam": dict(lr=1e-3),
              "AdamW": dict(lr=1e-3, weight_decay=0.01), "RMSprop": dict(lr=1e-3)}
IMPLS = {"nnfast": None, "torch-fused": dict(fused=True), "torch-foreach": dict(foreach=True),
         "torch-for-loop": dict(foreach=False)}
BATCH = 32
#: pedantic rounds per size: enough for a stable minimum, short enough for 1e7
ROUNDS = {10**4: 200, 10**5: 100, 10**6: 20, 10**7: 8}


def _loop(torch, name, impl, size):
    """(setup, step): setup computes fresh gradients, step is the optimizer's step."""
    width = round((size / 3) ** 0.5)
    torch.manual_seed(0)
    layers = []
    for _ in range(3):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    x = torch.randn(BATCH, width)
    if impl == "nnfast":
        import nnfast.torch
        opt = getattr(nnfast.torch, name)(model.parameters(), **OPTIMIZERS[name])
    else:
        opt = getattr(torch.optim, name)(model.parameters(), **OPTIMIZERS[name], **IMPLS[impl])

    def setup():
        opt.zero_grad()
        model(x).square().mean().backward()

    for _ in range(3):  # state allocated, first-step branches passed, kernels compiled
        setup()
        opt.step()
    return setup, opt.step


@pytest.mark.parametrize("size", SIZES, ids=label)
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_torch_front_step(benchmark, name, impl, size):
    torch = pytest.importorskip("torch", reason="torch is not installed: nnfast.torch is not "
                                                "benchmarked (pip install 'nnfast[torch]')")
    if impl == "torch-fused" and name == "RMSprop":
        pytest.skip("torch.optim.RMSprop has no fused implementation")
    benchmark.group = f"torch-{name}-float32-{label(size)}"
    benchmark.extra_info["backend"] = impl
    if benchmark.disabled and size > UNTIMED_MAX // 10:
        pytest.skip(f"{size} parameters: run only when timing (--benchmark-enable)")
    setup, step = _loop(torch, name, impl, size)
    benchmark.pedantic(step, setup=setup, rounds=1 if benchmark.disabled else ROUNDS[size],
                       iterations=1, warmup_rounds=0 if benchmark.disabled else 1)
