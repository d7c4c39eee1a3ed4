"""The ``nnfast demo``: train an MLP on scikit-learn's digits and time it against the reference.

One training (hidden layers (128, 64), ReLU, Adam, batch 64, float32) runs with the backend in
force and again, from the same initial weights and shuffling, under
``nnfast.use_backend("reference")`` (plain NumPy); the ratio of the two times is this machine's
speedup. A short untimed warm-up first pays any one-off compilation (Numba's first call).

With ``plot_dir`` (``nnfast demo --plot DIR``) the lecture's diagnostics follow, on the same
split (the held-out quarter as the cross-validation set): ``choose_lambda`` over the seed's λ
grid, a learning curve, and the timed fit's loss history (that fit then also scores the held-out
set after every epoch) — saved as three PNG files.
"""
import os
import time

import numpy as np

from . import _backend
from ._data import digits_split
from ._files import replacing
from .model import MLP

HIDDEN = (128, 64)
BATCH_SIZE = 64


def _train(data, epochs, lr, seed, progress, validate=False):
    Xtr, Xte, ytr, yte = data
    net = MLP([Xtr.shape[1], *HIDDEN, 10], hidden="relu", seed=seed)
    start = time.perf_counter()
    history = net.fit(Xtr, ytr, optimizer="adam", lr=lr, epochs=epochs, batch_size=BATCH_SIZE,
                      tol=None, seed=seed, progress=progress,
                      validation_data=(Xte, yte) if validate else None)
    elapsed = time.perf_counter() - start
    accuracy = float(np.mean(net.predict(Xte) == yte))
    return accuracy, elapsed, history


def _plots(data, history, epochs, lr, seed, plot_dir, say):
    """The validation curve, learning curve and loss history as Figures, saved as PNG files in
    ``plot_dir``; returns ({name: Figure}, [paths])."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("nnfast demo --plot needs matplotlib: pip install 'nnfast[plot]'") \
            from None
    from . import plot, selection

    Xtr, Xte, ytr, yte = data
    options = dict(layer_sizes=[Xtr.shape[1], *HIDDEN, 10], epochs=epochs, lr=lr,
                   batch_size=BATCH_SIZE, seed=seed)
    search = selection.choose_lambda(Xtr, ytr, Xte, yte, n_jobs=2, **options)
    del options["seed"]
    curve = selection.learning_curve(Xtr, ytr, Xte, yte, seeds=(seed,), n_jobs=2, **options)
    best = search.table[[row["lambda"] for row in search.table].index(search.best_lambda)]
    # read on classification error against a 1 % baseline, as in the README's walk-through
    diagnosis = selection.diagnose(1 - best["train_accuracy"], 1 - best["cv_accuracy"],
                                   baseline_error=0.01)
    say(f"choose_lambda: best λ = {search.best_lambda:g}; on error: {diagnosis}")
    os.makedirs(plot_dir, exist_ok=True)
    figures, paths = {}, []
    for name, draw, result in (("learning_curve", plot.plot_learning_curve, curve),
                               ("validation_curve", plot.plot_validation_curve, search),
                               ("loss_history", plot.plot_history, history)):
        fig = Figure()          # no pyplot: nothing opens a window or keeps global state
        draw(result, ax=fig.add_subplot())
        path = os.path.join(plot_dir, name + ".png")
        with replacing(path) as f:          # whole or not at all
            fig.savefig(f, format="png", dpi=100)
        figures[name] = fig
        paths.append(path)
        say(f"saved {path}")
    return figures, paths


def run_demo(epochs=30, progress=True, compare_reference=True, lr=1e-3, seed=0, out=print, *,
             compare=None, plot_dir=None):
    """Train on digits and report; returns a dict with ``accuracy``, ``time`` (seconds),
    ``backend``, ``epochs``, ``n_train``, ``n_test``, ``final_loss`` and, with
    ``compare_reference``, ``reference_time``, ``reference_accuracy`` and ``speedup``
    (reference time ÷ time). ``compare`` is the command line's name for ``compare_reference``.
    ``plot_dir``: also choose λ, measure a learning curve and save the three figures there
    (``figures``: name → matplotlib Figure, ``plots``: the PNG paths, in the result).
    ``out`` receives the printed lines (``None`` prints nothing)."""
    if compare is not None:
        compare_reference = compare
    say = out if out is not None else (lambda *_: None)
    data = digits_split(seed)
    backend = _backend.get_backend()
    say(f"nnfast demo: digits, {len(data[0])} train / {len(data[1])} test samples, "
        f"MLP 64-{'-'.join(map(str, HIDDEN))}-10, Adam, batch {BATCH_SIZE}, {epochs} epochs, "
        f"backend {backend!r}"
        + (f" (networks on {_backend.network_backend()!r})" if backend == "auto" else ""))
    _train(data, 1, lr, seed, False)                         # warm-up: compilation, caches
    accuracy, elapsed, history = _train(data, epochs, lr, seed, progress, plot_dir is not None)
    result = {"backend": backend, "epochs": epochs, "n_train": len(data[0]),
              "n_test": len(data[1]), "accuracy": accuracy, "time": elapsed,
              "final_loss": history.train_loss[-1]}
    say(f"test accuracy {accuracy:.2%}, training time {elapsed:.3f} s "
        f"({elapsed / epochs * 1e3:.1f} ms/epoch)")
    if compare_reference:
        with _backend.use_backend("reference"):
            ref_accuracy, ref_elapsed, _ = _train(data, epochs, lr, seed, progress)
        speedup = ref_elapsed / elapsed
        result.update(reference_time=ref_elapsed, reference_accuracy=ref_accuracy,
                      speedup=speedup)
        say(f"NumPy reference: accuracy {ref_accuracy:.2%}, time {ref_elapsed:.3f} s; "
            f"speedup {speedup:.2f}x")
    if plot_dir is not None:
        result["figures"], result["plots"] = _plots(data, history, epochs, lr, seed,
                                                    os.fspath(plot_dir), say)
    return result
