"""scikit-learn's ``_fit_stochastic`` epoch loop over nnfast's training calls.

Same control flow, messages and random-state use as scikit-learn's (the validation split, the
per-epoch shuffle of the sample indices), so an equal ``random_state`` gives equal batches. Where
``MLP`` computes scikit-learn's loss (classifiers, one regression output, no sample weights) an
epoch is ``MLP.fit``'s own epoch (``nnfast._network.training.run_epoch``) over the rows in the
shuffled order, each batch gathered into the model's workspace; X and y are validated once per
fit, not per epoch. Otherwise it is a loop of ``_passes.loss_grad`` and the optimizer's fused
``step_flat`` on the epoch's shuffled copy.
"""
import math
import warnings

import numpy as np

from .. import _backend, _blas
from .._network import inputs, training
from . import _passes


def _blas_threads_for(model, batch_size):
    """One BLAS thread for the training passes, as ``MLP.fit`` runs them (``nnfast._blas``: a
    GEMM split over threads waits a scheduler slice when the other core is busy; measured here on
    bench/bench_sklearn.py's cases at load 5-8: digits 0.48-0.62 s with one BLAS thread against
    1.33-10.1 s with two)."""
    sizes = model.layer_sizes
    return _blas.serial(max(batch_size * a * b for a, b in zip(sizes[:-1], sizes[1:])))


def shuffled(sample_idx, random_state):
    """``sklearn.utils.shuffle(sample_idx, random_state=random_state)`` for a 1-D index array,
    the same draws and result (tests/test_sklearn.py checks it against scikit-learn's): its
    ``resample`` shuffles ``arange(n)`` with ``random_state.shuffle`` and indexes by it. Without
    its input checks: 23 µs instead of 240 µs per epoch at 1257 rows (100 epochs of digits)."""
    perm = np.arange(sample_idx.shape[0])
    random_state.shuffle(perm)
    return sample_idx[perm]


def _split(est, X, y, sample_weight):
    from sklearn.base import is_classifier
    from sklearn.model_selection import train_test_split

    stratify = y if is_classifier(est) and est.n_outputs_ == 1 else None
    arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
    parts = train_test_split(*arrays, random_state=est._random_state,
                             test_size=est.validation_fraction, stratify=stratify)
    X_train, X_val, y_train, y_val = parts[:4]
    sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
    if X_val.shape[0] < 2:
        raise ValueError("The validation set is too small. Increase 'validation_fraction' or "
                         "the size of your dataset.")
    if is_classifier(est):
        y_val = est._label_binarizer.inverse_transform(y_val)
    return X_train, y_train, sw_train, X_val, y_val, sw_val


def _improvement(est, early_stopping, X_val, y_val, sw_val):
    """scikit-learn's ``_update_no_improvement_count``."""
    if early_stopping:
        y_pred = est._predict(X_val, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            score = np.nan
        else:
            from sklearn.base import is_classifier
            from sklearn.metrics import accuracy_score, r2_score

            scorer = accuracy_score if is_classifier(est) else r2_score
            score = float(scorer(y_val, y_pred, sample_weight=sw_val))
        est.validation_scores_.append(score)
        if est.verbose:
            print("Validation score: %f" % score)
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_coefs = [c.copy() for c in est.coefs_]
            est._best_intercepts = [i.copy() for i in est.intercepts_]
            model = est.__dict__.get("_nn_mlp")
            if model is not None and model.batchnorm:   # γ and running statistics too
                est._nn_best_state = (model.flat_params.copy(), model.flat_buffers.copy())
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if est.loss_curve_[-1] < est.best_loss_:
            est.best_loss_ = est.loss_curve_[-1]


def _epoch_batches(est, model, opt, X, Y, sw, batch_size):
    """One epoch of ``loss_grad`` + fused step over the rows in order; the mean batch loss."""
    total = 0.0
    for lo in range(0, X.shape[0], batch_size):
        hi = min(lo + batch_size, X.shape[0])
        loss = _passes.loss_grad(model, X[lo:hi], Y[lo:hi], None if sw is None else sw[lo:hi],
                                 est.alpha, est.loss, est.out_activation_)
        opt.step_flat(model.flat_params, model.flat_grads)
        total += loss * (hi - lo)
    return total / X.shape[0]


def fit_stochastic(est, model, X, y, sample_weight, incremental):
    from sklearn.base import is_classifier

    # ``_optimizer``: scikit-learn's name, for its learning-rate state (read by its tests)
    if (not incremental or est.__dict__.get("_nn_optimizer") is None
            or not isinstance(est.__dict__.get("_optimizer"), _passes.Schedule)):
        est._optimizer = _passes.Schedule(est)
        est._nn_optimizer = _passes.make_optimizer(est, est.learning_rate_init)
    schedule, opt = est._optimizer, est._nn_optimizer
    est.__dict__.pop("_nn_best_state", None)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    early_stopping = est.early_stopping
    if early_stopping:
        X_train, y_train, sw_train, X_val, y_val, sw_val = _split(est, X, y, sample_weight)
    else:
        X_train, y_train, sw_train = X, y, sample_weight
        X_val = y_val = sw_val = None
    n_samples = X_train.shape[0]
    if est.batch_size == "auto":
        batch_size = min(200, n_samples)
    else:
        if est.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                          "to be clipped")
        batch_size = int(np.clip(est.batch_size, 1, n_samples))
    by_epoch = sw_train is None and (is_classifier(est) or est.n_outputs_ == 1)
    Y = est._nn_targets(y_train, model, dense=not by_epoch)
    if by_epoch:                   # what MLP.fit checks, once for all epochs
        X_train = inputs.check_X(model, X_train)
        Y = inputs.check_y(model, Y, n_samples)
        inputs.check_writable(model)
    sample_idx = np.arange(n_samples, dtype=int)
    try:
        # every kernel from the backend the network runs on, as inside MLP.fit
        with (_backend.use_backend(_backend.network_backend()), _backend.serial_kernels(),
              _blas_threads_for(model, batch_size)):
            _epochs(est, model, opt, schedule, X_train, Y, sw_train, X_val, y_val, sw_val,
                    sample_idx, batch_size, by_epoch, early_stopping, incremental)
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    if early_stopping:
        best = est.__dict__.pop("_nn_best_state", None)
        if best is not None:     # batch norm: the whole model of the best epoch
            model.flat_params[...], model.flat_buffers[...] = best
        else:
            for dst, src in zip(est.coefs_ + est.intercepts_,
                                est._best_coefs + est._best_intercepts):
                dst[...] = src


def _epochs(est, model, opt, schedule, X_train, Y, sw_train, X_val, y_val, sw_val, sample_idx,
            batch_size, by_epoch, early_stopping, incremental):
    """The epochs of one fit (one for partial_fit), as scikit-learn's loop runs them."""
    from sklearn.exceptions import ConvergenceWarning

    n_samples = X_train.shape[0]
    diverged = False
    est.n_iter_ = 0
    if by_epoch:
        network = _backend.network_step()
        bounds = training.batch_bounds(model, n_samples, batch_size)
    for _ in range(est.max_iter):
        if est.shuffle:
            sample_idx = shuffled(sample_idx, est._random_state)
        opt.lr = schedule.learning_rate / (1.0 + est.decay_rate * len(est.loss_curve_))
        if diverged:
            loss = math.nan      # scikit-learn goes on with non-finite weights
        elif by_epoch:
            try:
                loss = training.run_epoch(model, network, opt, X_train, Y,
                                          sample_idx if est.shuffle else None, bounds)
            except FloatingPointError:
                diverged, loss = True, math.nan
                model.flat_params[...] = np.nan
        elif est.shuffle:
            loss = _epoch_batches(est, model, opt, X_train.take(sample_idx, axis=0),
                                  Y.take(sample_idx, axis=0),
                                  None if sw_train is None else sw_train[sample_idx], batch_size)
        else:
            loss = _epoch_batches(est, model, opt, X_train, Y, sw_train, batch_size)
        est.n_iter_ += 1
        est.loss_ = loss
        est.t_ += n_samples
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        _improvement(est, early_stopping, X_val, y_val, sw_val)
        schedule.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            if early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (est.tol, est.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                       "epochs." % (est.tol, est.n_iter_no_change))
            if schedule.trigger_stopping(msg, est.verbose):
                break
            est._no_improvement_count = 0
        if incremental:
            break
        if est.n_iter_ == est.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % est.max_iter,
                          ConvergenceWarning)
