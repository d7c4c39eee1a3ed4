"""``nnfast.torch`` optimizers against ``torch.optim`` in a real training loop, float32.

A square ReLU MLP on a batch of 32, its 1e4..1e7 parameters in 6 tensors (three
``nn.Linear(w, w)``: weights and biases), in 60 (thirty of them) or in 1 (one
``nn.Linear(w, w, bias=False)``): the per-tensor cost of a step shows in the 60-tensor case.
Before every timed ``opt.step()`` an untimed setup runs ``zero_grad``, the forward pass and
``backward`` — so each step meets freshly written gradients, as in training. Implementations, in
group ``torch-<optimizer>-float32-<parameters>`` (6 tensors) or
``torch-<optimizer>-float32-<parameters>-in-<1|60>``: ``nnfast`` (``nnfast.torch.<optimizer>``),
``torch-fused`` (``fused=True``; torch has no fused RMSprop), ``torch-foreach``
(``foreach=True``) and ``torch-for-loop`` (``foreach=False``, torch's default on the CPU).
Every implementation steps the same model from the same weights; only the step is timed.

The groups have no NumPy baseline, so the ratios table of ``bench/conftest.py`` skips them; read
the ratios off the min column. On a shared machine, load changes between benchmarks move whole
groups; ``python -m bench.bench_torch_front`` instead interleaves the implementations step by
step (each meets the same load) and prints a Markdown table: torch's min step time ÷ nnfast's,
per optimizer, size and number of tensors.
"""
import itertools
import time

import pytest

from nnfast import _bench

from .harness import UNTIMED_MAX, label

SIZES = (10**4, 10**5, 10**6, 10**7)
#: tensors the parameters are spread over: layers = tensors // 2 (weights and biases), or one
#: bias-free layer
TENSORS = (6, 1, 60)
OPTIMIZERS = {"SGD": dict(lr=0.01, momentum=0.9), "Adam": dict(lr=1e-3),
              "AdamW": dict(lr=1e-3, weight_decay=0.01), "RMSprop": dict(lr=1e-3)}
IMPLS = {"nnfast": None, "torch-fused": dict(fused=True), "torch-foreach": dict(foreach=True),
         "torch-for-loop": dict(foreach=False)}
BATCH = 32
#: pedantic rounds per size: enough for a stable minimum, short enough for 1e7
ROUNDS = {10**4: 300, 10**5: 200, 10**6: 40, 10**7: 15}


def _loop(torch, name, impl, size, tensors=6):
    """(setup, step): setup computes fresh gradients, step is the optimizer's step."""
    n_layers = max(1, tensors // 2)
    width = max(1, round((size / n_layers) ** 0.5))
    torch.manual_seed(0)
    layers = []
    for _ in range(n_layers):
        layers += [torch.nn.Linear(width, width, bias=tensors > 1), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    assert len(list(model.parameters())) == tensors
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


def _group(name, size, tensors):
    return f"torch-{name}-float32-{label(size)}" + ("" if tensors == 6 else f"-in-{tensors}")


@pytest.mark.parametrize("tensors", TENSORS)
@pytest.mark.parametrize("size", SIZES, ids=label)
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_torch_front_step(benchmark, name, impl, size, tensors):
    torch = pytest.importorskip("torch", reason="torch is not installed: nnfast.torch is not "
                                                "benchmarked (pip install 'nnfast[torch]')")
    if impl == "torch-fused" and name == "RMSprop":
        pytest.skip("torch.optim.RMSprop has no fused implementation")
    benchmark.group = _group(name, size, tensors)
    benchmark.extra_info["backend"] = impl
    if benchmark.disabled and (size > UNTIMED_MAX // 10 or tensors != 6):
        pytest.skip(f"{size} parameters in {tensors} tensors: run only when timing "
                    "(--benchmark-enable)")
    setup, step = _loop(torch, name, impl, size, tensors)
    benchmark.pedantic(step, setup=setup, rounds=1 if benchmark.disabled else ROUNDS[size],
                       iterations=1, warmup_rounds=0 if benchmark.disabled else 1)


def interleaved_table(sizes=SIZES, rounds=None, tensors=TENSORS):
    """Markdown rows: per optimizer, size and number of tensors, nnfast's min step time and
    torch's ÷ nnfast's, all implementations stepping in turn (setup untimed),
    ``rounds or ROUNDS[size]`` steps each."""
    import torch
    rows = ["| optimizer | parameters | tensors | nnfast step | torch fused | torch foreach | "
            "torch for-loop |", "|---|---|---|---|---|---|---|"]
    for name, size, n in itertools.product(OPTIMIZERS, sizes, tensors):
        impls = [i for i in IMPLS if not (i == "torch-fused" and name == "RMSprop")]
        loops = {i: _loop(torch, name, i, size, n) for i in impls}
        best = dict.fromkeys(impls, float("inf"))
        for _ in range(rounds or ROUNDS[size]):
            for impl, (setup, step) in loops.items():
                setup()
                start = time.perf_counter()
                step()
                best[impl] = min(best[impl], time.perf_counter() - start)
        del loops
        ours = best["nnfast"]
        cells = [f"{best[i] / ours:.2f}×" if i in best else "—"
                 for i in ("torch-fused", "torch-foreach", "torch-for-loop")]
        shown = _bench.format_seconds(ours)
        settings = ", ".join(f"{k}={v}" for k, v in OPTIMIZERS[name].items())
        rows.append(f"| {name} ({settings}) | {label(size)} | {n} | {shown} | "
                    + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def test_interleaved_table_runs():
    """The table maker, at the smallest size for two steps (so that it cannot rot)."""
    pytest.importorskip("torch", reason="torch is not installed: nnfast.torch is not "
                                        "benchmarked (pip install 'nnfast[torch]')")
    rows = interleaved_table(sizes=SIZES[:1], rounds=2)
    assert len(rows) == 2 + len(OPTIMIZERS) * len(TENSORS) and \
        all(r.count("|") == 8 for r in rows), rows


if __name__ == "__main__":
    interleaved_table()
