"""Training an MLP: one mini-batch step, and ``fit`` — epochs of shuffled mini-batches with the
seed's learning-rate decay, a validation loss per epoch, early stopping with a restore of the
best epoch's weights, and a restore of the last good weights when the loss stops being finite.
"""
import inspect
import math
import time

import numpy as np

from .. import _backend, _blas
from .. import optim as _optim
from .._validate import integer, real
from .inputs import check_writable, check_X, check_y, flag

FIT_OPTIONS = ("optimizer", "lr", "epochs", "batch_size", "decay_rate", "validation_data",
               "tol", "patience", "shuffle", "seed", "progress")


class History:
    """What ``MLP.fit`` did: per-epoch ``train_loss`` (mean mini-batch objective, L2 included),
    ``val_loss`` (on ``validation_data``, inference mode; empty without it), ``lr`` per epoch,
    ``epochs`` run, ``stopped`` ("max_epochs" or "no_improvement"), ``best_epoch`` (1-based, the
    epoch of the lowest monitored loss; after an early stop the model holds its weights) and
    wall ``time`` in seconds."""

    def __init__(self):
        self.train_loss, self.val_loss, self.lr = [], [], []
        self.epochs, self.stopped, self.time, self.best_epoch = 0, "max_epochs", 0.0, None

    def __repr__(self):
        last = f", train_loss[-1]={self.train_loss[-1]:.6g}" if self.train_loss else ""
        return f"History(epochs={self.epochs}, stopped={self.stopped!r}{last})"


def step(net, network, ws, X, y, optimizer, rows=None):
    """One mini-batch on validated (X, y) (``rows``: on those rows of X and y): forward,
    backward, one fused optimizer update of the flat parameters — in one call where the
    backend's network step fuses the update (``run_batches``) — and returns J before the update.
    A non-finite J raises FloatingPointError with nothing updated (the batch-norm running
    statistics are put back)."""
    layout = net._layout
    fused = getattr(network, "run_batches", None)     # a backend's step with the update fused
    if fused is not None and not net.batchnorm:
        served = fused(net, optimizer, X, y, rows, [0, X.shape[0] if rows is None else
                                                    rows.shape[0]], 0)
        if served:
            return served[0]
        # not served, or not yet (the optimizer's first, validating step; a non-finite J:
        # nothing was applied, and the pass below raises)
    if net.batchnorm:
        np.copyto(layout.buffers_backup, layout.flat_buffers)
    if rows is None:
        loss = network.objective(net, ws, X, y, training=True, update_stats=True,
                                 with_grads=True)
    else:
        loss = network.rows_objective(net, ws, X, y, rows)
    if not math.isfinite(loss):
        if net.batchnorm:
            np.copyto(layout.flat_buffers, layout.buffers_backup)
        raise FloatingPointError(f"the training loss is {loss}; weights were not updated "
                                 "(lower the learning rate or standardize X)")
    optimizer.step_flat(layout.flat_params, layout.flat_grads)
    return loss


def _check_optimizer_options(optimizer, options):
    """TypeError naming ``fit`` and what it accepts, for options the named optimizer lacks."""
    cls = _optim._NAMES.get(optimizer.lower()) if isinstance(optimizer, str) else None
    if cls is None or not options:
        return          # an unknown name is reported by optim.make
    accepted = [p for p in inspect.signature(cls).parameters if p != "lr"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hint = (" (momentum: use optimizer='momentum' with beta=0.9)"
                if optimizer.lower() == "sgd" and "momentum" in unknown else "")
        raise TypeError(f"fit() got unexpected keyword argument(s) {unknown}{hint}; fit takes "
                        f"{', '.join(FIT_OPTIONS)} and the options of optimizer={optimizer!r}: "
                        f"{', '.join(accepted) or 'none'}")


def batch_bounds(net, n, batch_size):
    """The mini-batches of an epoch over n rows as bounds [0, b, 2b, ..., n]; with batch norm a
    last batch of one row (no batch statistics) joins the one before it."""
    starts = list(range(0, n, batch_size))
    if net.batchnorm and n - starts[-1] == 1:
        if len(starts) == 1:
            raise ValueError("batch norm in training mode needs at least 2 samples, got 1")
        starts.pop()
    return starts + [n]


def run_epoch(net, network, optimizer, X, y, order, bounds):
    """One pass of ``step`` over the mini-batches ``bounds`` (``batch_bounds``) of validated
    (X, y): batch j is rows ``order[bounds[j]:bounds[j + 1]]``, gathered into the workspace
    (``order`` None: the rows as they are; else an int64 array). Returns the mean training
    objective; a non-finite loss raises ``step``'s FloatingPointError with that batch not
    applied. For ``fit`` and the scikit-learn front's epochs (which validate once, then shuffle
    with their own generator)."""
    total, j, n_batches = 0.0, 0, len(bounds) - 1
    # A backend that runs batches in one call (Cython: ``run_batches``) takes what it serves.
    batches = getattr(network, "run_batches", None)
    while j < n_batches:
        if batches is not None:
            served = batches(net, optimizer, X, y, order, bounds, j)
            if served is None:
                batches = None
            elif served:                # some applied: the backend goes on from there
                for loss in served:
                    total += loss * (bounds[j + 1] - bounds[j])
                    j += 1
                continue
        # batch j this loop's way (a non-finite J raises here, with the batch not applied)
        lo, hi = bounds[j], bounds[j + 1]
        ws = net._workspace(hi - lo)
        if order is not None:
            loss = step(net, network, ws, X, y, optimizer, rows=order[lo:hi])
        else:
            loss = step(net, network, ws, X[lo:hi], y[lo:hi], optimizer)
        total += loss * (hi - lo)
        j += 1
    return total / X.shape[0]


def fit(net, X, y, optimizer, lr, epochs, batch_size, decay_rate, validation_data, tol,
        patience, shuffle, seed, progress, optimizer_kwargs):
    """``MLP.fit`` (documented there): checks every argument, then trains."""
    X = check_X(net, X)
    n = X.shape[0]
    y = check_y(net, y, n)
    check_writable(net)
    epochs = integer(epochs, "epochs", low=1)
    batch_size = min(200, n) if batch_size is None else integer(batch_size, "batch_size",
                                                                low=1)
    batch_size = min(batch_size, n)
    decay_rate = real(decay_rate, "decay_rate", 0.0)
    if tol is not None:
        tol = real(tol, "tol")
    patience = integer(patience, "patience", low=1)
    shuffle = flag(shuffle, "shuffle")
    progress = flag(progress, "progress")
    if seed is not None:
        seed = integer(seed, "seed", low=0)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X_val = check_X(net, validation_data[0], "validation_data[0]")
        val = (X_val, check_y(net, validation_data[1], X_val.shape[0], "validation_data[1]"))
    bounds = batch_bounds(net, n, batch_size)
    if lr is not None:
        lr = real(lr, "lr", 0.0)
    _check_optimizer_options(optimizer, optimizer_kwargs)
    # A name starts at fit's default α0 = 1e-3; an instance keeps its lr unless one is given.
    default = 1e-3 if lr is None and not isinstance(optimizer, _optim.Optimizer) else lr
    opt = _optim.make(optimizer, default, **optimizer_kwargs)
    with _backend.serial_kernels(), _blas.serial():
        return _Trainer(net, opt, seed).run(X, y, epochs, bounds, decay_rate, val, tol,
                                            patience, shuffle, progress)


class _NoBar:
    """The epochs without a progress bar (``progress=False``), with tqdm's calls fit makes."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __iter__(self):
        return iter(range(self.epochs))

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


class _Snapshot:
    """A copy of a model's trained state: flat parameters and batch-norm buffers."""

    def __init__(self, layout):
        self.params, self.buffers = layout.flat_params.copy(), layout.flat_buffers.copy()

    def take(self, layout):
        np.copyto(self.params, layout.flat_params)
        np.copyto(self.buffers, layout.flat_buffers)

    def restore(self, layout):
        np.copyto(layout.flat_params, self.params)
        np.copyto(layout.flat_buffers, self.buffers)


class _Trainer:
    """The epochs of one ``fit``: ``good`` holds the weights at the end of the last finished
    epoch (restored when the loss stops being finite), ``best`` those of the epoch with the
    lowest monitored loss (restored on an early stop)."""

    def __init__(self, net, opt, seed):
        self.net, self.opt, self.layout = net, opt, net._layout
        self.network = _backend.network_step()
        self.rng = np.random.default_rng(seed)
        self.good, self.best = _Snapshot(self.layout), None

    def _epoch(self, epoch, X, y, order, bounds, shuffle):
        """One pass over the mini-batches; returns the mean training objective."""
        try:
            return run_epoch(self.net, self.network, self.opt, X, y,
                             order if shuffle else None, bounds)
        except FloatingPointError as exc:
            self.good.restore(self.layout)
            raise FloatingPointError(
                f"non-finite loss in epoch {epoch + 1} (lr={self.opt.lr:.3g}): {exc}; "
                f"weights restored to the end of epoch {epoch}") from None

    def run(self, X, y, epochs, bounds, decay_rate, val, tol, patience, shuffle, progress):
        opt, layout, lr0 = self.opt, self.layout, self.opt.lr
        order = np.arange(X.shape[0])
        history = History()
        best, stale, lowest = math.inf, 0, math.inf
        start_time = time.perf_counter()
        if progress:
            from tqdm.auto import tqdm

            # disable=None: tqdm writes only to a terminal (a log file would get \r-joined
            # fragments)
            bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=None, leave=True)
        else:
            bar = _NoBar(epochs)     # tqdm's import alone is ~40 ms of a process's first fit
        try:
            for epoch in bar:
                opt.lr = lr0 / (1.0 + decay_rate * epoch)
                if shuffle:
                    self.rng.shuffle(order)
                train_loss = self._epoch(epoch, X, y, order, bounds, shuffle)
                history.train_loss.append(train_loss)
                history.lr.append(opt.lr)
                history.epochs = epoch + 1
                monitored = train_loss
                if val is not None:
                    ws = self.net._workspace(val[0].shape[0])
                    monitored = self.network.objective(self.net, ws, val[0], val[1],
                                                       training=False, update_stats=False,
                                                       with_grads=False)
                    history.val_loss.append(monitored)
                    bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{monitored:.4g}",
                                    refresh=False)
                else:
                    bar.set_postfix(loss=f"{train_loss:.4g}", refresh=False)
                if not (math.isfinite(monitored) and np.isfinite(layout.flat_params).all()):
                    self.good.restore(layout)
                    raise FloatingPointError(
                        f"non-finite weights or loss after epoch {epoch + 1}; weights restored "
                        f"to the end of epoch {epoch} (lower the learning rate)")
                self.good.take(layout)
                if monitored < lowest:
                    lowest, history.best_epoch = monitored, epoch + 1
                    if tol is not None and epoch + 1 < epochs:   # weights to go back to
                        if self.best is None:
                            self.best = _Snapshot(layout)
                        else:
                            self.best.take(layout)
                if tol is not None:
                    if monitored < best - tol:
                        best, stale = monitored, 0
                    else:
                        best, stale = min(best, monitored), stale + 1
                        if stale >= patience:
                            history.stopped = "no_improvement"
                            self.best.restore(layout)
                            break
        finally:
            bar.close()
            history.time = time.perf_counter() - start_time
        return history
