"""``nnfast.torch.fuse`` in a PyTorch training loop, float32, Adam, against the unfused loop.

A full training step is ``zero_grad``, the forward pass, ``cross_entropy``, ``backward`` and
``opt.step()``, on a ReLU MLP (``SIZES``), one fixed batch. Implementations, in group
``fuse-<sizes>-b<batch>``:

- ``torch``: the ``torch.nn.Sequential`` with ``torch.optim.Adam(fused=True)``;
- ``fuse+nnfast.Adam``: ``nnfast.torch.fuse`` of the same Sequential with ``nnfast.torch.Adam``;
- ``fuse+torch.Adam``: the fused module with ``torch.optim.Adam(fused=True)``;
- ``nnfast.MLP``: nnfast's own ``MLP.train_step`` on the same network (no torch at all: the
  floor of what a torch loop around nnfast's passes can reach).

The groups have no NumPy baseline; read the ratios off the table that
``python -m bench.bench_fuse`` prints instead: it interleaves the implementations step by step
(each meets the same load), takes each one's median step over ``rounds`` rounds of ``steps``
steps, and prints the load average at its start and end and the CPU (a run on a machine whose
load exceeds 0.5 is not a reference run). ``--digits`` adds the README's digits loop (accuracy
and wall time, fused and not).
"""
import argparse
import copy
import os
import time

import numpy as np
import pytest

#: (layer sizes, batch): the issue's small networks and a large one
NETS = (((64, 128, 128, 10), 32), ((8, 64, 64, 2), 64), ((784, 512, 256, 10), 128))
IMPLS = ("torch", "fuse+nnfast.Adam", "fuse+torch.Adam", "nnfast.MLP")


def _sequential(torch, sizes):
    torch.manual_seed(0)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def make_step(impl, sizes, batch):
    """A function running one full training step of ``impl``."""
    import torch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    if impl == "nnfast.MLP":
        import nnfast

        net = nnfast.MLP(list(sizes), dtype="float32", seed=0)
        opt = nnfast.optim.Adam(lr=1e-3)
        return lambda: net.train_step(X, y, opt)
    import nnfast.torch

    model = _sequential(torch, sizes)
    if impl.startswith("fuse"):
        model = nnfast.torch.fuse(model)
    opt = (nnfast.torch.Adam(model.parameters(), lr=1e-3) if impl == "fuse+nnfast.Adam"
           else torch.optim.Adam(model.parameters(), lr=1e-3, fused=True))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = cross_entropy(model(Xt), yt)
        loss.backward()
        opt.step()
    return step


def _label(sizes, batch):
    return "-".join(map(str, sizes)) + f"-b{batch}"


@pytest.mark.parametrize("net", NETS, ids=lambda n: _label(*n))
@pytest.mark.parametrize("impl", IMPLS)
def test_fused_training_step(benchmark, impl, net):
    pytest.importorskip("torch", reason="torch is not installed: nnfast.torch.fuse is not "
                                        "benchmarked (pip install 'nnfast[torch]')")
    sizes, batch = net
    benchmark.group = "fuse-" + _label(sizes, batch)
    benchmark.extra_info["backend"] = impl
    step = make_step(impl, sizes, batch)
    for _ in range(3):
        step()
    benchmark(step)


def interleaved(nets=NETS, rounds=7, steps=None, impls=IMPLS):
    """{(net label, impl): median step seconds of each round}: the implementations of a network
    take turns, ``steps`` steps each per round (default: ~0.1 s of steps)."""
    out = {}
    for sizes, batch in nets:
        fns = {impl: make_step(impl, sizes, batch) for impl in impls}
        for fn in fns.values():
            for _ in range(5):
                fn()
        n = steps or max(20, int(0.1 / max(1e-6, _time_one(fns["torch"]))))
        for _ in range(rounds):
            for impl, fn in fns.items():
                times = []
                for _ in range(n):
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                out.setdefault((_label(sizes, batch), impl), []).append(float(np.median(times)))
    return out


def gemm_floor(sizes, batch, repeats=200):
    """The best time of the step's matrix products alone through ``torch.mm`` (torch's BLAS
    and threads): the forward's x·Wᵀ per layer, the backward's δᵀ·a (dW) per layer and δ·W (δ
    of the layer below) for all but the first — the floor under any step of this network that
    runs torch's GEMMs, or GEMMs as fast."""
    import torch

    torch.manual_seed(0)
    acts = [torch.randn(batch, n) for n in sizes]
    Ws = [torch.randn(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    def products():
        for i, W in enumerate(Ws):
            torch.mm(acts[i], W.t())
        for i in range(len(Ws) - 1, -1, -1):
            torch.mm(acts[i + 1].t(), acts[i])
            if i:
                torch.mm(acts[i + 1], Ws[i])
    for _ in range(10):
        products()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        products()
        best = min(best, time.perf_counter() - t)
    return best


def loop_floor(sizes, batch, repeats=300):
    """The median time of the loop's parts that stay torch's whatever runs the network:
    ``zero_grad`` and ``nnfast.torch.Adam``'s step over tensors of the network's shapes, and
    ``cross_entropy`` with its backward through autograd from logits that are a leaf — no
    forward or backward pass of the network at all. No fused module's loop can beat it."""
    import torch

    import nnfast.torch

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(sizes[i + 1], *(() if b else (sizes[i],))))
              for i in range(len(sizes) - 1) for b in (0, 1)]
    logits = torch.nn.Parameter(torch.randn(batch, sizes[-1]))
    y = torch.randint(0, sizes[-1], (batch,))
    opt = nnfast.torch.Adam(params + [logits], lr=1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(logits, y).backward()
        for p in params:
            p.grad = torch.zeros_like(p)    # what a network's backward would hand over
        opt.step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[10:]))


def _time_one(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def table(results):
    """Markdown rows: per network, each implementation's best round median and torch's ÷ it,
    with the spread of its rounds (max/min - 1)."""
    rows = ["| network, batch | " + " | ".join(IMPLS) + " |", "|---" * (len(IMPLS) + 1) + "|"]
    for label in dict.fromkeys(k[0] for k in results):
        base = min(results[(label, "torch")])
        cells = []
        for impl in IMPLS:
            r = results.get((label, impl))
            if r is None:
                cells.append("—")
                continue
            best = min(r)
            spread = max(r) / best - 1
            cells.append(f"{best * 1e6:.0f} µs ({base / best:.2f}×, ±{spread:.0%})")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def digits_loop(fused, epochs=10, seed=0):
    """The README's digits loop with torch's Adam or fused and nnfast's: (test accuracy, s)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import nnfast.torch

    X, y = load_digits(return_X_y=True)
    X = ((X - X.mean(0)) / (X.std(0) + 1e-8)).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    Xtr, Xte, ytr = torch.from_numpy(Xtr), torch.from_numpy(Xte), torch.from_numpy(ytr)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    if fused:
        net = nnfast.torch.fuse(net)
        opt = nnfast.torch.Adam(net.parameters(), lr=1e-3)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(Xtr), generator=g)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    took = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((net(Xte).argmax(1).numpy() == yte).mean())
    return accuracy, took


def test_interleaved_table_runs():
    """The table maker on the smallest network, two rounds of two steps (so it cannot rot)."""
    pytest.importorskip("torch", reason="torch is not installed: nnfast.torch.fuse is not "
                                        "benchmarked (pip install 'nnfast[torch]')")
    rows = table(interleaved(nets=NETS[1:2], rounds=2, steps=2))
    assert len(rows) == 3 and rows[2].count("×") == len(IMPLS), rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--digits", action="store_true", help="also the digits loop")
    args = parser.parse_args(argv)
    from nnfast import _machine

    print(f"CPU: {_machine._cpu_model()}; load average at start: {os.getloadavg()[0]:.2f}")
    for row in table(interleaved(rounds=args.rounds)):
        print(row, flush=True)
    for sizes, batch in NETS:
        print(f"{_label(sizes, batch)}: its GEMMs alone through torch.mm "
              f"{gemm_floor(sizes, batch) * 1e6:.0f} µs (best); the loop without the network "
              f"(zero_grad, cross_entropy and its backward, nnfast.torch.Adam's step) "
              f"{loop_floor(sizes, batch) * 1e6:.0f} µs (median)", flush=True)
    if args.digits:
        for fused in (False, True, False, True):
            accuracy, took = digits_loop(fused)
            print(f"digits, {'fuse + nnfast.torch.Adam' if fused else 'torch (fused Adam)'}: "
                  f"accuracy {accuracy:.4f}, {took:.2f} s", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def test_digits_loop_reaches_torch_accuracy():
    """The digits loop fused (with nnfast.torch.Adam) ends within 0.01 of torch's accuracy."""
    pytest.importorskip("torch", reason="torch is not installed (pip install 'nnfast[torch]')")
    theirs, _ = digits_loop(False, epochs=5)
    ours, _ = digits_loop(True, epochs=5)
    assert theirs > 0.9 and abs(ours - theirs) <= 0.01, (ours, theirs)


if __name__ == "__main__":
    main()
