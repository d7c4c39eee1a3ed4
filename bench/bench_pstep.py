"""µs per model step — grid.pyx at K = 1 (the serial step)
against pstep.pyx's row-chunked step on the caller alone (t1) and with the helper thread (t2),
for 2 and 4 chunks; and µs per step of MLP.fit. Configurations alternate in rounds (the load
of a shared machine drifts). ``python bench/bench_pstep.py [--busy]``: --busy starts one
``while True: pass`` process for the duration."""
import os
import subprocess
import sys
import time

import numpy as np

import nnfast
from nnfast import _blas, _constants as K
from nnfast._cython import grid, pstep, step

CASES = [([100, 64, 1], 200, np.float32, "sigmoid"), ([100, 64, 1], 200, np.float64, "sigmoid"),
         ([64, 128, 64, 10], 64, np.float32, "softmax")]
GAP_US = 30     # Python work between two steps of a fit (optimizer, batch gather)


def arrays(sizes, m, dt, out, rng):
    sizes = np.array(sizes, np.int64)
    n_w, n_b = int((sizes[:-1] * sizes[1:]).sum()), int(sizes[1:].sum())
    X = rng.standard_normal((m, sizes[0])).astype(dt)
    W = (rng.standard_normal((1, n_w)) * 0.1).astype(dt)
    b = np.zeros((1, n_b), dt)
    y = (rng.integers(0, sizes[-1], m) if out == "softmax"
         else rng.integers(0, 2, (m, sizes[-1])).astype(dt))
    return sizes, X, y, W, b, np.empty_like(W), np.empty_like(b), np.empty((1, m * n_b), dt)


def calls(call, n, out):
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
        end = time.perf_counter() + GAP_US * 1e-6
        while time.perf_counter() < end:
            pass


def kernel_table(rng, rounds=5, n=300):
    for sizes, m, dt, out in CASES:
        s, X, y, W, b, dW, db, z = arrays(sizes, m, dt, out, rng)
        a, d, lam = np.empty_like(z), np.empty_like(z), np.array([1e-4])
        g, p = getattr(grid, out + "_grid"), getattr(pstep, out + "_step")
        configs = {"grid": None, "c2t1": (2, 1), "c2t2": (2, 2), "c4t1": (4, 1), "c4t2": (4, 2)}
        times = {k: [] for k in configs}
        taken = {k: 0 for k in configs}
        for _ in range(rounds):
            for name, cfg in configs.items():
                if cfg is None:
                    calls(lambda: g(X, y, s, W, b, dW, db, z, a, d, K.RELU, 0.01, lam), n,
                          times[name])
                    continue
                pstep.n_chunks, pstep.threads = cfg
                t0 = pstep.stats()[2]
                calls(lambda: p(X, y, s, W, b, dW, db, K.RELU, 0.01, 1e-4), n, times[name])
                taken[name] += pstep.stats()[2] - t0
        print(f"{'-'.join(map(str, sizes))} m={m} {np.dtype(dt).name}:")
        for name, t in times.items():
            t = np.array(t) * 1e6
            print(f"  {name:5s} mean {t.mean():6.1f}  p50 {np.median(t):6.1f}  "
                  f"p90 {np.percentile(t, 90):6.1f}  p99 {np.percentile(t, 99):7.1f} µs"
                  + (f"  taken over {taken[name]}/{rounds * n}" if configs[name] else ""))


def fit_table(rng, epochs=3):
    X = rng.standard_normal((20000, 100)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64)
    configs = {"warmup": ("1", 1), "grid": ("1", 1), "c2t1": ("2", 1), "c2t2": ("2", 2)}
    times = {k: [] for k in configs}
    for _ in range(3):
        for name, (chunked, threads) in configs.items():
            step.MODE, step._pstep, pstep.n_chunks, pstep.threads = chunked, pstep, 2, threads
            with nnfast.use_backend("cython"):
                net = nnfast.MLP([100, 64, 2], seed=0)
                t0 = time.perf_counter()
                net.fit(X, y, epochs=epochs, batch_size=200, seed=0, progress=False, tol=None)
                times[name].append((time.perf_counter() - t0) / (epochs * 100) * 1e6)
    step.MODE = step._mode(os.environ.get("NNFAST_STEP_THREADS"))
    del times["warmup"]
    print("MLP.fit 100-64-2 softmax, batch 200, float32, Adam: µs per step incl. Python "
          "(median of 3) " + "  ".join(f"{k} {np.median(v):.1f}" for k, v in times.items()))


def main(busy=False):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        print(f"load average {os.getloadavg()}, busy loop: {busy}")
        with _blas.serial():
            kernel_table(np.random.default_rng(0))
        fit_table(np.random.default_rng(1))
        print(f"load average {os.getloadavg()}")
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()


if __name__ == "__main__":
    main(busy="--busy" in sys.argv)
