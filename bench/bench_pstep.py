"""EXPERIMENT (exp/parallel-step): µs per model step, grid.pyx (K = 1) against pstep.pyx's
row-chunked step without and with the helper thread. Run as a script:
``python bench/bench_pstep.py [--busy]`` (--busy: one `while True: pass` process holds a core)."""
import subprocess
import sys
import time

import numpy as np

from nnfast import _blas, _constants as K
from nnfast._cython import grid, pstep

CASES = [([100, 64, 1], 200, np.float32, "sigmoid"), ([100, 64, 1], 200, np.float64, "sigmoid"),
         ([64, 128, 64, 10], 64, np.float32, "softmax")]


def arrays(sizes, m, dt, out, rng):
    sizes = np.array(sizes, np.int64)
    n_w, n_b = int((sizes[:-1] * sizes[1:]).sum()), int(sizes[1:].sum())
    X = rng.standard_normal((m, sizes[0])).astype(dt)
    W = (rng.standard_normal((1, n_w)) * 0.1).astype(dt)
    b = np.zeros((1, n_b), dt)
    y = (rng.integers(0, sizes[-1], m) if out == "softmax"
         else rng.integers(0, 2, (m, sizes[-1])).astype(dt))
    return sizes, X, y, W, b, np.empty_like(W), np.empty_like(b), np.empty((1, m * n_b), dt)


def timed(call, n, gap_us):
    """µs per call, median of 7 rounds of n calls, `gap_us` of Python busy work between calls
    (a fit's optimizer and batch gather)."""
    rounds = []
    for _ in range(7):
        total = 0.0
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            total += time.perf_counter() - t0
            end = time.perf_counter() + gap_us * 1e-6
            while time.perf_counter() < end:
                pass
        rounds.append(total / n * 1e6)
    return float(np.median(rounds))


def main(busy=False, n=400, gap_us=30):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    rng = np.random.default_rng(0)
    rows = []
    try:
        with _blas.serial():
            for sizes, m, dt, out in CASES:
                s, X, y, W, b, dW, db, z = arrays(sizes, m, dt, out, rng)
                a, d = np.empty_like(z), np.empty_like(z)
                lam = np.array([1e-4])
                g = getattr(grid, out + "_grid")
                p = getattr(pstep, out + "_step")
                res = {"grid": timed(lambda: g(X, y, s, W, b, dW, db, z, a, d, K.RELU, 0.01, lam),
                                     n, gap_us)}
                for chunks in (2, 4):
                    pstep.n_chunks = chunks
                    for threads in (1, 2):
                        pstep.threads = threads
                        t0 = pstep.stats()[2]
                        res[f"c{chunks}t{threads}"] = timed(
                            lambda: p(X, y, s, W, b, dW, db, K.RELU, 0.01, 1e-4), n, gap_us)
                        res[f"c{chunks}t{threads}_taken"] = pstep.stats()[2] - t0
                rows.append((f"{'-'.join(map(str, sizes))} m={m} {np.dtype(dt).name}", res))
    finally:
        if burner is not None:
            burner.kill()
    for name, res in rows:
        print(name, " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in res.items()))


if __name__ == "__main__":
    main(busy="--busy" in sys.argv)
