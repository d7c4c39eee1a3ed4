"""``nnfast.sklearn`` against scikit-learn's own MLPClassifier, fit wall time.

Cases (the issue's): ``digits-float32`` — scikit-learn's digits (70/30 split, X/16), hidden
(128, 64), adam, batch 64, 100 epochs; ``synthetic-float32`` / ``synthetic-float64`` —
``make_classification(20000, 100, random_state=0)`` (75/25 split), hidden (64,), adam, batch
200, 20 epochs. Both estimators get equal settings (``random_state=0``, ``tol=0`` and
``n_iter_no_change`` above ``max_iter``, so every epoch runs); equal random states give both
the same initial weights and batches. ``patched`` is unchanged scikit-learn code (``from
sklearn.neural_network import MLPClassifier``) after ``nnfast.sklearn.patch()``.

``python -m bench.bench_sklearn`` runs every (case, implementation) in a fresh process — the
time is the process's first ``fit``, with its first-call overhead (Numba cache loads, BLAS
warm-up, workspace allocation) — interleaving the implementations, and prints the README's
table: fit seconds, speedup, test accuracy of each, and the fraction of the GEMM limit reached.
The GEMM limit: the time of the training's matrix products alone (forward, dW and δ GEMMs of
every batch of every epoch, run with NumPy in the same process as the scikit-learn fit) is
what no implementation can go below; ``limit = t_sklearn / t_gemm`` bounds the speedup, and
``fraction = speedup / limit = t_gemm / t_nnfast``.

In the test suite the smoke test below runs one tiny case of each implementation, untimed.
"""
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

CASES = {
    "digits-float32": dict(data="digits", dtype="float32", hidden=(128, 64), batch=64,
                           epochs=100),
    "synthetic-float32": dict(data="synthetic", dtype="float32", hidden=(64,), batch=200,
                              epochs=20),
    "synthetic-float64": dict(data="synthetic", dtype="float64", hidden=(64,), batch=200,
                              epochs=20),
}
IMPLS = ("nnfast", "sklearn", "patched")


def load(data, dtype, n=None):
    if data == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        X, frac = X / 16.0, 0.7
    else:
        from sklearn.datasets import make_classification
        X, y = make_classification(n or 20000, 100, random_state=0)
        frac = 0.75
    X = X.astype(dtype)
    cut = int(frac * len(X))
    return X[:cut], y[:cut], X[cut:], y[cut:]


def estimator(impl, case):
    if impl == "nnfast":
        from nnfast.sklearn import MLPClassifier
    elif impl == "patched":
        import nnfast.sklearn
        nnfast.sklearn.patch()
        from sklearn.neural_network import MLPClassifier   # unchanged user code
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier(case["hidden"], solver="adam", batch_size=case["batch"],
                         max_iter=case["epochs"], tol=0.0,
                         n_iter_no_change=case["epochs"] + 1, random_state=0)


def gemm_time(clf, X, batch, epochs):
    """Seconds of the training's GEMMs alone: per batch, z = a W for every layer, dW = aᵀ δ for
    every layer and δ Wᵀ for all but the first, on scikit-learn's weights and shapes."""
    Ws = [np.asarray(W) for W in clf.coefs_]
    starts = range(0, X.shape[0], batch)
    t = time.perf_counter()
    for _ in range(epochs):
        for lo in starts:
            acts = [X[lo:lo + batch]]
            for W in Ws:
                acts.append(acts[-1] @ W)
            delta = acts[-1]
            for i in range(len(Ws) - 1, -1, -1):
                acts[i].T @ delta
                if i:
                    delta = delta @ Ws[i].T
    return time.perf_counter() - t


def run_one(impl, name, n=None, epochs=None):
    """Fit in this process; a dict of the fit's seconds, test accuracy and (scikit-learn) the
    GEMM-only seconds."""
    from sklearn.exceptions import ConvergenceWarning

    case = dict(CASES[name])
    if epochs is not None:
        case["epochs"] = epochs
    Xtr, ytr, Xte, yte = load(case["data"], case["dtype"], n)
    clf = estimator(impl, case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        clf.fit(Xtr, ytr)
        seconds = time.perf_counter() - t
    out = {"impl": impl, "case": name, "seconds": seconds, "accuracy": clf.score(Xte, yte),
           "class": f"{type(clf).__module__}.{type(clf).__name__}"}
    if impl == "sklearn":
        out["gemm_seconds"] = gemm_time(clf, Xtr, case["batch"], case["epochs"])
    return out


def run_fresh(impl, name, blas_threads=None, cpus=None):
    """``run_one`` in a fresh Python process (first-call overhead included); ``blas_threads``
    sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS there (default: the environment's), ``cpus``
    the number of this process's CPUs it may run on (its affinity: nnfast's engine uses them
    all; default: all of them)."""
    code = ("import json, bench.bench_sklearn as b; "
            f"print(json.dumps(b.run_one({impl!r}, {name!r})))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(blas_threads)
    allowed = sorted(os.sched_getaffinity(0))[:cpus] if cpus else None
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, env=env,
                         preexec_fn=(lambda: os.sched_setaffinity(0, allowed)) if allowed
                         else None)
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(results):
    lines = ["| case | scikit-learn | nnfast.sklearn | speedup | patched | accuracy sk / nn / "
             "patched | GEMM limit | fraction of limit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in [n for n in CASES if any(x["case"] == n for x in results)]:
        r = {x["impl"]: x for x in results if x["case"] == name}
        sk, nn, pa = r["sklearn"], r["nnfast"], r["patched"]
        limit = sk["seconds"] / sk["gemm_seconds"]
        speedup = sk["seconds"] / nn["seconds"]
        lines.append(
            f"| {name} | {sk['seconds']:.2f} s | {nn['seconds']:.2f} s | {speedup:.1f}x | "
            f"{pa['seconds']:.2f} s ({sk['seconds'] / pa['seconds']:.1f}x) | "
            f"{sk['accuracy']:.3f} / {nn['accuracy']:.3f} / {pa['accuracy']:.3f} | "
            f"{limit:.1f}x | {speedup / limit:.0%} |")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads of every fit's process (both implementations)")
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs every fit's process may run on (its affinity; default: all)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh processes per (case, implementation), interleaved; the "
                             "table shows medians (for a shared, noisy machine)")
    args = parser.parse_args(argv)
    runs = []
    for _ in range(args.repeats):
        for name in CASES:
            for impl in ("sklearn", "nnfast", "patched"):
                runs.append(run_fresh(impl, name, args.blas_threads, args.cpus))
                print(json.dumps(runs[-1]), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    results = medians(runs)
    if args.repeats > 1:
        print(f"medians of {args.repeats} fresh processes each; seconds min-max:")
        for r in results:
            print(f"  {r['case']} {r['impl']}: {r['min']:.2f}-{r['max']:.2f} s")
    print(table(results))


def medians(runs):
    """One result per (case, implementation): the median seconds (and GEMM seconds) of its
    runs, with their min and max; accuracy of the first run (every run trains the same)."""
    import statistics

    out = []
    for key in dict.fromkeys((r["case"], r["impl"]) for r in runs):
        group = [r for r in runs if (r["case"], r["impl"]) == key]
        merged = dict(group[0])
        seconds = [r["seconds"] for r in group]
        merged.update(seconds=statistics.median(seconds), min=min(seconds), max=max(seconds))
        if "gemm_seconds" in merged:
            merged["gemm_seconds"] = statistics.median(r["gemm_seconds"] for r in group)
        out.append(merged)
    return out


def test_bench_sklearn_smoke():
    """Each implementation fits a small synthetic case (2 epochs, 2000 rows): the script runs,
    the patched class is nnfast's, and the two estimators agree."""
    import nnfast.sklearn

    runs = {}
    try:
        for impl in IMPLS:
            runs[impl] = run_one(impl, "synthetic-float32", n=2000, epochs=2)
    finally:
        nnfast.sklearn.unpatch()
    assert runs["patched"]["class"] == "nnfast._sklearn._estimators.MLPClassifier"
    assert runs["sklearn"]["gemm_seconds"] > 0
    assert abs(runs["nnfast"]["accuracy"] - runs["sklearn"]["accuracy"]) <= 0.01
    assert "| synthetic-float32 |" in table(list(runs.values()))


if __name__ == "__main__":
    main()
