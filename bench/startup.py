"""Start-up cost as a user pays it: fresh processes, one after another (issue 6).

    python bench/startup.py                 # every measurement, 3 repeats
    python bench/startup.py --repeats 1 --backends auto --no-demo

Each figure is the median (and min-max) over ``--repeats`` new Python processes:

- ``import nnfast`` (NumPy already imported);
- the first ``MLP.train_step`` of a process, loading the backend included (64-128-64-10,
  float32, Adam, batch 64), per backend (``NNFAST_BACKEND``), with a cold Numba cache (a new,
  empty ``NUMBA_CACHE_DIR`` per process), a warm one (the same shape run before) and a warm one
  for a new shape of a depth seen before (64-100-50-10); the second step beside it;
- ``nnfast demo`` wall time with a cold cache (a fresh install's first run) and a warm one.

Not a timed test (absolute times on a shared machine say little): a report to read beside the
CPU it names. The README's "Start-up" section quotes a run.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

STEP = """
import time
import numpy as np
t0 = time.perf_counter()
import nnfast
t1 = time.perf_counter()
rng = np.random.default_rng(0)
sizes = {sizes!r}
X = rng.standard_normal((64, sizes[0])).astype(np.float32)
y = rng.integers(0, sizes[-1], 64)
model = nnfast.MLP(sizes, seed=0)
opt = nnfast.optim.Adam()
t2 = time.perf_counter()
model.train_step(X, y, opt)
t3 = time.perf_counter()
model.train_step(X, y, opt)
t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3)
"""

SHAPE = [64, 128, 64, 10]
NEW_SHAPE = [64, 100, 50, 10]


def _run(code, env):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def _env(cache, backend="auto"):
    # The backend through NNFAST_BACKEND, read on first use: loading it is part of the step.
    return dict(os.environ, NUMBA_CACHE_DIR=cache, NNFAST_BACKEND=backend)


def _fmt(values, unit=1e3, suffix="ms"):
    med = statistics.median(values) * unit
    lo, hi = min(values) * unit, max(values) * unit
    return f"{med:8.1f} {suffix} ({lo:.1f}-{hi:.1f})"


def first_steps(backend, repeats):
    """{case: [(import, first step, second step), ...]} for one backend."""
    rows = {"cold": [], "warm": [], "warm, new shape": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = _env(cache, backend)
            for case, sizes in (("cold", SHAPE), ("warm", SHAPE), ("warm, new shape", NEW_SHAPE)):
                out = _run(STEP.format(sizes=sizes), env)
                rows[case].append(tuple(map(float, out.split())))
    return rows


def demo(repeats):
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = _env(cache)
            for times in (cold, warm):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "nnfast", "demo", "--no-progress"],
                               env=env, check=True, capture_output=True, timeout=900)
                times.append(time.perf_counter() - start)
    return cold, warm


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "baseline"
    return f"{name}, {os.cpu_count()} cores, {simd}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["auto", "cython", "numba"])
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args(argv)
    print(f"# nnfast start-up, {args.repeats} fresh process(es) each; CPU: {_cpu()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"# first train_step of {'-'.join(map(str, SHAPE))} float32 Adam b64; median (min-max)")
    print(f"{'backend':8} {'cache':16} {'import nnfast':>26} {'first step':>26} "
          f"{'second step':>26}")
    for backend in args.backends:
        for case, runs in first_steps(backend, args.repeats).items():
            imports, firsts, seconds = zip(*runs)
            print(f"{backend:8} {case:16} {_fmt(imports):>26} {_fmt(firsts):>26} "
                  f"{_fmt(seconds):>26}", flush=True)
    if not args.no_demo:
        cold, warm = demo(args.repeats)
        print(f"nnfast demo wall: cold cache {_fmt(cold, 1, 's')}, warm {_fmt(warm, 1, 's')}")


if __name__ == "__main__":
    main()
