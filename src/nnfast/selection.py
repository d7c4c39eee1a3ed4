"""Model selection and diagnostics: the lecture's way of tuning a network.

``choose_lambda`` trains one model per λ of a grid and keeps the one with the lowest
cross-validation cost *without* the regularization term; ``learning_curve`` measures J_train and
J_cv against the training-set size; ``diagnose`` reads train and CV error as high bias, high
variance, both, or fine, and names the lecture's remedies.

Every model of a sweep is built and trained from the same ``seed`` (initial weights and
shuffling), so a sweep gives the same table serially and with any ``n_jobs``. Sweeps run through
joblib, so ``joblib.parallel_backend("dask")`` spreads them over a Dask cluster.
"""
import math

import numpy as np

from . import _blas, _grid
from . import optim as _optim
from ._backend import network_backend, use_backend
from ._diagnosis import Diagnosis, LambdaSearch, LearningCurve, diagnose  # noqa: F401
from ._validate import integer, real
from .model import MLP

#: The seed lecture's grid: 0.01 doubled ten times, 0.01 … 10.24.
DEFAULT_LAMBDAS = tuple(0.01 * 2 ** i for i in range(11))

_MLP_OPTIONS = ("layer_sizes", "hidden", "output", "batchnorm", "init", "dtype", "seed", "slope",
                "init_scale")
_FIT_OPTIONS = ("optimizer", "lr", "epochs", "batch_size", "decay_rate", "tol", "patience",
                "shuffle", "progress")

#: joblib backend of a sweep with n_jobs > 1, chosen by measurement on this 2-core (shared,
#: busy: noisy) machine. digits 1257x64 float32, MLP [64, 32, 10], Adam, batch 64, 20 epochs,
#: 8 λ values, n_jobs=2, three calls in a row (s): serial 0.56 0.54 0.59; threads 0.54 0.65
#: 0.33; processes (loky) 1.08 0.20 0.18 — the first loky call pays ~0.9 s of worker start-up,
#: later ones reuse the workers and run ~2.9x faster than serial, ~2x faster than threads. A fit
#: is many small GEMMs and kernel calls with Python (holding the GIL) between them, so threads
#: mostly wait for each other. Every table is identical across the three (checked).
_PREFER = "processes"

#: Most λ values trained as one batched network (``nnfast._grid``): a longer grid is split into
#: near-equal chunks, one joblib task each, so n_jobs=2 keeps both cores busy. The split
#: depends on the grid alone, never on n_jobs, so the table does too. Measured (digits 1257x64
#: float32, 64-128-64-10, Adam, batch 64, 20 epochs, one BLAS thread, load ~7-10 on 2 cores;
#: CPU s): 11 λ in one network 0.62, 6 λ 0.35, 1 λ 0.10 (separate: 11 x ~0.1 + Python).
_GRID_CHUNK = 6
#: joblib backend of the batched chunks, by measurement: they spend their time in BLAS and
#: nnfast's kernels, which release the GIL, so threads keep both cores busy without worker
#: start-up (the grid kernels of the compiled backends run a whole mini-batch of every λ in one
#: GIL-free call; the figures below are of the NumPy-batched form, before them). The default sweep of bench_selection.py (11 λ, 100 epochs, n_jobs=2), fresh
#: process each, load 8-9 on the 2 cores (s): processes 7.90 8.55, threads 7.11 7.61; the
#: whole sweep's CPU time on threads 3.05-3.53 s. (np.matmul releases the GIL even for these
#: small products: a pure-Python thread counts as fast beside a thread looping on the batched
#: matmul as beside one sleeping.) Every chunk runs on ONE BLAS thread (set
#: around the sweep; loky workers get one by themselves): the GEMMs of a batch are small (64
#: rows by 128x64 per model) and a second BLAS thread cost far more than it gave — 11 λ, 20
#: epochs, load ~10: 1.26 s with one thread, 75.7 s with two (spinning threads).
_GRID_PREFER = "threads"


def unregularized_cost(model, X, y):
    """The model's cost on (X, y) without the L2 term — ``MLP.loss`` of the same weights with
    ``l2=0`` (inference mode)."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an nnfast.MLP, got {type(model).__name__}")
    config = model.get_config()
    config["l2"] = 0.0
    plain = MLP(**config)
    plain.flat_params[...] = model.flat_params
    plain.flat_buffers[...] = model.flat_buffers
    return float(plain.loss(X, y))


def accuracy(model, X, y):
    """Fraction of correctly classified rows for output "softmax" or "sigmoid"; None for
    regression (output "identity")."""
    if model.output == "identity":
        return None
    y = np.asarray(y)
    pred = model.predict(X)
    if model.output == "softmax":
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        return float(np.mean(pred == labels))
    return float(np.mean(pred.reshape(y.shape) == y))


def _optimizer_options(optimizer):
    """The option names of the optimizer ``fit`` would build (none for an instance)."""
    import inspect

    if not isinstance(optimizer, str):
        return []
    cls = type(_optim.make(optimizer))     # an unknown name is a ValueError here
    return [p for p in inspect.signature(cls).parameters if p != "lr"]


def _split_options(options, caller):
    accepted = _optimizer_options(options.get("optimizer", "adam"))
    unknown = sorted(set(options) - set(_MLP_OPTIONS) - set(_FIT_OPTIONS) - set(accepted)
                     - {"l2"})
    if unknown:
        raise TypeError(f"{caller}() got unknown options {unknown}; MLP options are "
                        f"{list(_MLP_OPTIONS)}, fit options {list(_FIT_OPTIONS)}, options of "
                        f"optimizer={options.get('optimizer', 'adam')!r}: {accepted}")
    if "l2" in options and caller == "choose_lambda":
        raise TypeError("choose_lambda() sets l2 itself; pass the grid as lambdas")
    if "layer_sizes" not in options:
        raise TypeError(f"{caller}() needs layer_sizes, e.g. layer_sizes=[64, 32, 10]")
    mlp = {k: v for k, v in options.items() if k in _MLP_OPTIONS}
    fit = {k: v for k, v in options.items() if k in _FIT_OPTIONS or k in accepted}
    mlp.setdefault("seed", 0)
    if mlp["seed"] is None:
        raise ValueError(f"{caller}() needs an int seed (None would not be reproducible)")
    mlp["seed"] = integer(mlp["seed"], "seed", low=0)
    fit.setdefault("tol", None)          # no early stopping unless asked
    fit.setdefault("progress", False)
    fit["seed"] = mlp["seed"]
    return mlp, fit


def _train_and_score(mlp, fit, l2, X_train, y_train, X_cv, y_cv):
    """One model of a sweep: (model, train cost, cv cost, train accuracy, cv accuracy)."""
    model = MLP(l2=l2, **mlp)
    model.fit(X_train, y_train, **fit)
    return _score(model, X_train, y_train, X_cv, y_cv)


def _score(model, X_train, y_train, X_cv, y_cv):
    return (model, unregularized_cost(model, X_train, y_train),
            unregularized_cost(model, X_cv, y_cv), accuracy(model, X_train, y_train),
            accuracy(model, X_cv, y_cv))


def _train_grid_and_score(mlp, fit, lambdas, X_train, y_train, X_cv, y_cv):
    """The models of several λ on one fold, trained as one batched network
    (``nnfast._grid``); separate fits where the targets need them (soft softmax labels)."""
    models = _grid.train(lambdas, mlp, fit, X_train, y_train)
    if models is None:
        return [_train_and_score(mlp, fit, lam, X_train, y_train, X_cv, y_cv)
                for lam in lambdas]
    return [_score(model, X_train, y_train, X_cv, y_cv) for model in models]


def _in_backend(backend, f, args):
    with use_backend(backend):
        return f(*args)


def _run(tasks, n_jobs, prefer=_PREFER):
    """Runs (function, args) tasks, in order, serially or through joblib. Every task runs on the
    caller's network backend: a worker process starts on "auto", and another backend's kernels
    round differently, which would make the table depend on n_jobs."""
    backend = network_backend()
    if n_jobs is None or n_jobs == 1:
        return [_in_backend(backend, f, args) for f, args in tasks]
    from joblib import Parallel, delayed
    return Parallel(n_jobs=n_jobs, prefer=prefer)(delayed(_in_backend)(backend, f, args)
                                                  for f, args in tasks)


def _check_pair(X, y, name_X, name_y):
    if X is None or y is None:
        raise TypeError(f"{name_X} and {name_y} must be arrays, got {type(X).__name__} and "
                        f"{type(y).__name__}")
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{name_X} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"{name_y} has {y.shape[0] if y.ndim else 0} rows but {name_X} has "
                         f"{X.shape[0]}")
    return X, y


def _check_n_jobs(n_jobs):
    if n_jobs is not None:
        n_jobs = integer(n_jobs, "n_jobs")
        if n_jobs == 0:
            raise ValueError("n_jobs must be a positive count, -1 (all cores) or None, got 0")
    return n_jobs


def choose_lambda(X_train, y_train, X_cv=None, y_cv=None, lambdas=None, *, cv=5, n_jobs=None,
                  batched=None, **options):
    """The seed's procedure for the regularization strength λ (the MLP's ``l2``).

    For each λ of ``lambdas`` (default the grid 0.01, 0.02, 0.04, … 10.24), trains
    ``MLP(l2=λ, **mlp_options).fit(X_train, y_train, **fit_options)`` and measures the cost on
    (X_cv, y_cv) *without* the regularization term; the λ of the lowest CV cost wins (the first
    one on ties). ``options`` are split by name: MLP options (``layer_sizes`` — required —,
    ``hidden``, ``output``, ``batchnorm``, ``init``, ``dtype``, ``seed``, ``slope``,
    ``init_scale``) and fit options (``optimizer``, ``lr``, ``epochs``, ``batch_size``,
    ``decay_rate``, ``tol``, ``patience``, ``shuffle``, ``progress``); unknown names raise
    TypeError. ``seed`` (default 0) gives every model the same initial weights and shuffling.
    ``tol`` defaults to None here (no early stopping), ``progress`` to False.

    Without X_cv/y_cv, the k-fold form: ``cv`` folds of a permutation of X_train (drawn from
    ``seed``); each λ's costs are averaged over the folds and the best λ is refitted on all of
    X_train. ``n_jobs``: models trained in parallel through joblib (None or 1: serially; the
    table is the same either way).

    ``batched``: the models of the grid train as one batched network (stacked weights, one
    pass over each mini-batch for every λ, large GEMMs: ``nnfast._grid``), split into chunks
    of at most 6 λ (one joblib task each), with the same results as separate fits to float
    rounding. None (default): batched where it applies, separate fits otherwise — batch norm,
    early stopping (``tol``), an Optimizer instance, soft softmax targets; True: batched or a
    ValueError saying why not; False: one ``MLP.fit`` per λ (the oracle of the batched path).
    Options of the named optimizer (e.g. ``beta1``, ``style``, ``weight_decay``) pass through
    to the fit. Returns a ``LambdaSearch``.
    """
    X_train, y_train = _check_pair(X_train, y_train, "X_train", "y_train")
    n_jobs = _check_n_jobs(n_jobs)
    if lambdas is None:
        lambdas = DEFAULT_LAMBDAS
    if isinstance(lambdas, (str, bytes)) or not hasattr(lambdas, "__len__") or not len(lambdas):
        raise ValueError("lambdas must be a non-empty sequence of numbers >= 0")
    lambdas = [real(lam, f"lambdas[{i}]", 0.0) for i, lam in enumerate(lambdas)]
    mlp, fit = _split_options(options, "choose_lambda")
    if (X_cv is None) != (y_cv is None):
        raise TypeError("give both X_cv and y_cv, or neither (k-fold form)")
    if X_cv is not None:
        X_cv, y_cv = _check_pair(X_cv, y_cv, "X_cv", "y_cv")
        folds = [(X_train, y_train, X_cv, y_cv)]
    else:
        k = integer(cv, "cv", low=2)
        if k > X_train.shape[0]:
            raise ValueError(f"cv={k} folds need at least {k} rows of X_train, got "
                             f"{X_train.shape[0]}")
        order = np.random.default_rng(mlp["seed"]).permutation(X_train.shape[0])
        parts = np.array_split(order, k)
        folds = []
        for i, test in enumerate(parts):
            train = np.concatenate([p for j, p in enumerate(parts) if j != i])
            folds.append((X_train[train], y_train[train], X_train[test], y_train[test]))
    if batched not in (None, True, False):
        raise TypeError(f"batched must be None, True or False, got {batched!r}")
    why_not = _grid.applies(mlp, fit)
    if batched and why_not:
        raise ValueError(f"batched=True does not cover {why_not}; use batched=None or False")
    if batched is False or why_not:
        tasks = [(_train_and_score, (mlp, fit, lam) + fold) for lam in lambdas for fold in folds]
        results = _run(tasks, n_jobs)
    else:
        chunks = np.array_split(np.array(lambdas), -(-len(lambdas) // _GRID_CHUNK))
        tasks = [(_train_grid_and_score, (mlp, fit, [float(lam) for lam in chunk]) + fold)
                 for fold in folds for chunk in chunks]
        with _blas.serial():
            done = _run(tasks, n_jobs, _GRID_PREFER)
        per_fold = [[r for rs in done[f * len(chunks):(f + 1) * len(chunks)] for r in rs]
                    for f in range(len(folds))]
        results = [per_fold[f][i] for i in range(len(lambdas)) for f in range(len(folds))]

    def mean(runs, j):
        return None if runs[0][j] is None else float(np.mean([r[j] for r in runs]))

    table, models = [], []
    for i, lam in enumerate(lambdas):
        runs = results[i * len(folds):(i + 1) * len(folds)]
        row = {"lambda": lam, "train_cost": mean(runs, 1), "cv_cost": mean(runs, 2),
               "train_accuracy": mean(runs, 3), "cv_accuracy": mean(runs, 4)}
        table.append(row)
        models.append(runs[0][0])
    costs = [row["cv_cost"] for row in table]
    if not all(math.isfinite(c) for c in costs):
        bad = [lam for lam, c in zip(lambdas, costs) if not math.isfinite(c)]
        raise FloatingPointError(f"non-finite CV cost for λ = {bad}")
    best = int(np.argmin(costs))
    if X_cv is not None:
        best_model = models[best]
    else:
        best_model = MLP(l2=lambdas[best], **mlp)
        best_model.fit(X_train, y_train, **fit)
    return LambdaSearch(lambdas[best], best_model, table, 0 if X_cv is not None else len(folds))


def _sizes(sizes, n):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or not len(sizes):
        raise ValueError("sizes must be a non-empty sequence of fractions in (0, 1] or counts")
    counts = []
    for i, s in enumerate(sizes):
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            c = integer(s, f"sizes[{i}]", low=1)
        else:
            frac = real(s, f"sizes[{i}]", 0.0, 1.0, low_open=True)
            c = max(1, int(round(frac * n)))
        if c > n:
            raise ValueError(f"sizes[{i}] asks for {c} rows but X_train has {n}")
        counts.append(c)
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"sizes must give strictly increasing row counts, got {counts}")
    return counts


def _curve_point(mlp, fit, l2, seed, m, X_train, y_train, X_cv, y_cv):
    rows = np.random.default_rng(seed).permutation(X_train.shape[0])[:m]
    mlp = dict(mlp, seed=seed)
    fit = dict(fit, seed=seed)
    _, j_train, j_cv, _, _ = _train_and_score(mlp, fit, l2, X_train[rows], y_train[rows], X_cv,
                                              y_cv)
    return j_train, j_cv


def learning_curve(X_train, y_train, X_cv, y_cv, sizes=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                                                        0.9, 1.0), seeds=(0,), *, l2=0.0,
                   n_jobs=None, **options):
    """J_train and J_cv (both without the L2 term) against the training-set size.

    For every size (a fraction of X_train in (0, 1] or a row count; strictly increasing) and
    every seed, trains ``MLP(l2=l2, seed=seed, **mlp_options)`` on that many rows of X_train (a
    random subset drawn from the seed), scores J_train on those rows and J_cv on (X_cv, y_cv),
    and averages over the seeds. Options as in ``choose_lambda`` (``seed`` is replaced by
    ``seeds``). Returns a ``LearningCurve``.
    """
    X_train, y_train = _check_pair(X_train, y_train, "X_train", "y_train")
    X_cv, y_cv = _check_pair(X_cv, y_cv, "X_cv", "y_cv")
    n_jobs = _check_n_jobs(n_jobs)
    if "seed" in options:
        raise TypeError("learning_curve() takes seeds=(...), not seed")
    if isinstance(seeds, (int, np.integer)):
        seeds = (seeds,)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or not len(seeds):
        raise ValueError("seeds must be a non-empty sequence of ints >= 0")
    seeds = tuple(integer(s, f"seeds[{i}]", low=0) for i, s in enumerate(seeds))
    l2 = real(l2, "l2", 0.0)
    counts = _sizes(sizes, X_train.shape[0])
    mlp, fit = _split_options(options, "learning_curve")
    tasks = [(_curve_point, (mlp, fit, l2, s, m, X_train, y_train, X_cv, y_cv))
             for s in seeds for m in counts]
    results = np.array(_run(tasks, n_jobs), dtype=np.float64).reshape(len(seeds), len(counts), 2)
    train, cv = results[..., 0], results[..., 1]
    return LearningCurve(np.array(counts), train.mean(axis=0), cv.mean(axis=0), train, cv,
                         seeds)
