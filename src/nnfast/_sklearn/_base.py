"""The training and inference of ``nnfast.sklearn``'s estimators (a mixin over scikit-learn's).

The estimators subclass scikit-learn's own ``MLPClassifier`` / ``MLPRegressor``: parameters,
validation, label handling, ``predict*``, ``score``, ``partial_fit`` and the fitted attributes
are scikit-learn's, and so is the initialization (``_initialize`` with the same random state:
equal weights for an equal ``random_state``). This mixin replaces the parts that cost time:

- ``_fit``: the epoch loop of scikit-learn's ``_fit_stochastic`` (shuffling with the same
  random state, early stopping, ``n_iter_no_change``, the learning-rate schedules), each epoch
  one ``nnfast.MLP.fit(epochs=1)`` call (compiled step, fused optimizer update, no per-batch
  Python), or, where ``MLP`` cannot weight samples or report scikit-learn's loss (several
  regression outputs), mini-batches of ``_passes.loss_grad`` and a fused optimizer step;
  ``lbfgs`` through ``scipy.optimize.minimize(method="L-BFGS-B")`` on ``loss_grad``.
- ``_forward_pass_fast``: ``MLP.forward``.

``coefs_`` / ``intercepts_`` are views into the model's flat buffer after an nnfast fit;
arrays a user assigns there are copied into the model before the next fit or prediction.
What nnfast cannot reproduce (sparse X, the Poisson loss) runs scikit-learn's own code, with
a ``FallbackWarning``; with nnfast's extras it cannot, so a sparse fit is a ValueError and the
tags say so. A refit (not warm-started) starts from a fresh model, so that batch norm's state
does not survive it.
"""
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse

from .. import MLP
from . import _passes


class FallbackWarning(UserWarning):
    """nnfast.sklearn ran scikit-learn's own implementation for something nnfast lacks."""


_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large"
              " values and need to be preprocessed.")
_STOCHASTIC = ("sgd", "adam", "rmsprop")


class NNFastMLPMixin:
    """nnfast's fit and forward pass for a scikit-learn MLP estimator (see the module doc)."""

    # ------------------------------------------------------------------ the nnfast model --
    def _nn_extras_used(self):
        return [name for name, used in (("activation='leaky_relu'", self.activation ==
                                         "leaky_relu"),
                                        ("solver='rmsprop'", self.solver == "rmsprop"),
                                        ("batchnorm=True", self.batchnorm),
                                        ("decay_rate", self.decay_rate != 0.0)) if used]

    def __sklearn_tags__(self):
        """scikit-learn's tags, but sparse input is accepted only where a fit accepts it:
        nnfast's extras need dense X (a sparse fit with them is a ValueError naming it)."""
        tags = super().__sklearn_tags__()
        if self._nn_extras_used():
            tags.input_tags.sparse = False
        return tags

    def _get_doc_link(self):
        """The page of the scikit-learn estimator this one extends (its parameters, attributes
        and methods; nnfast's extras are in this class's docstring), in the installed
        scikit-learn's version, as the HTML repr's "?" link. scikit-learn's own rule gives ""
        for a class outside ``sklearn``."""
        from sklearn.base import BaseEstimator

        base = next(c for c in type(self).__mro__ if c.__module__.startswith("sklearn."))
        template = BaseEstimator._doc_link_template.fget(self)
        return template.format(estimator_module="sklearn.neural_network",
                               estimator_name=base.__name__)

    def _nn_fallback_reason(self, X):
        if scipy.sparse.issparse(X):
            return "sparse X (nnfast's kernels take dense arrays)"
        if getattr(self, "loss", None) == "poisson":
            return "loss='poisson' (nnfast has no exponential output layer)"
        return None

    def _nn_model(self):
        """The nnfast MLP holding ``coefs_`` / ``intercepts_`` (built, or refreshed from
        arrays assigned to them since)."""
        model = self.__dict__.get("_nn_mlp")
        sizes = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        dtype = np.result_type(self.coefs_[0].dtype, np.float32)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        if (model is None or model.layer_sizes != sizes or model.dtype != dtype
                or model.output != _passes.OUTPUT[self.out_activation_]
                or model.hidden != _passes.HIDDEN[self.activation]
                or model.batchnorm != bool(self.batchnorm)):
            model = self._nn_mlp = MLP(sizes, hidden=_passes.HIDDEN[self.activation],
                                       output=_passes.OUTPUT[self.out_activation_],
                                       batchnorm=bool(self.batchnorm), dtype=dtype, seed=0)
        for i, layer in enumerate(model.layers):
            bias = layer.beta if layer.batchnorm else layer.b
            if self.coefs_[i] is not layer.W:
                layer.W[...] = self.coefs_[i]
            if self.intercepts_[i] is not bias:
                bias[...] = self.intercepts_[i]
        return model

    def _nn_bind(self, model):
        """``coefs_`` / ``intercepts_`` become views into ``model``'s flat buffer."""
        self.coefs_ = [layer.W for layer in model.layers]
        self.intercepts_ = [layer.beta if layer.batchnorm else layer.b for layer in model.layers]

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        model = state.pop("_nn_mlp", None)
        state.pop("_nn_optimizer", None)   # holds weak references; partial_fit restarts it
        if model is not None:
            state["_nn_saved"] = (model.get_config(), model.flat_params.copy(),
                                  model.flat_buffers.copy())
        return state

    def __setstate__(self, state):
        saved = state.pop("_nn_saved", None)
        super().__setstate__(state)
        if saved is not None:
            config, params, buffers = saved
            model = self._nn_mlp = MLP(**config)
            model.flat_params[...] = params
            model.flat_buffers[...] = buffers
            self._nn_bind(model)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ----------------------------------------------------------------------- inference --
    def _forward_pass_fast(self, X, check_input=True):
        if scipy.sparse.issparse(X):
            return self._nn_sparse_forward(X, check_input)
        if (self._nn_fallback_reason(X) is not None or self.out_activation_ not in
                _passes.OUTPUT or self.activation not in _passes.HIDDEN):
            return super()._forward_pass_fast(X, check_input=check_input)
        if check_input:
            from sklearn.utils.validation import validate_data

            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
            if scipy.sparse.issparse(X):
                return self._nn_sparse_forward(X, check_input=False)
        return self._nn_model().forward(X)

    def _nn_sparse_forward(self, X, check_input):
        """scikit-learn's forward pass of sparse X, which has neither batch norm nor leaky
        ReLU: a ValueError naming them instead of a wrong answer or a KeyError."""
        forward = [e for e in self._nn_extras_used()
                   if e.startswith(("batchnorm", "activation"))]
        if forward:
            raise ValueError(f"{', '.join(forward)}: nnfast's own options, whose forward "
                             "pass takes dense X; sparse X is not supported (pass "
                             "X.toarray())")
        return super()._forward_pass_fast(X, check_input=check_input)

    # -------------------------------------------------------------------------- fitting --
    def _fit(self, X, y, sample_weight=None, incremental=False):
        from sklearn.utils import check_random_state
        from sklearn.utils.validation import _check_sample_weight

        reason = self._nn_fallback_reason(X)
        if reason is not None:
            extras = self._nn_extras_used()
            if extras:
                raise ValueError(f"{', '.join(extras)}: nnfast's own options, but this fit "
                                 f"needs scikit-learn's implementation ({reason})")
            warnings.warn(f"nnfast.sklearn: {reason}; running scikit-learn's implementation",
                          FallbackWarning, stacklevel=3)
            if isinstance(self.__dict__.get("_optimizer"), _passes.Schedule):
                del self._optimizer     # nnfast's: scikit-learn's code makes its own
            return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)
        if self.batchnorm and self.solver == "lbfgs":
            raise ValueError("batchnorm=True trains with solver 'sgd', 'adam' or 'rmsprop', "
                             "not 'lbfgs'")
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if self.batchnorm and X.shape[0] < 2:
            raise ValueError(f"batchnorm=True needs at least 2 samples (its batch statistics), "
                             f"got n_samples={X.shape[0]}")
        if self.dtype is not None:
            X = X.astype(self.dtype, copy=False)
        if sample_weight is not None:
            # scikit-learn's checks first (shape, all zero, ...), then the refusal, worded as
            # scikit-learn words an estimator without sample weights
            sample_weight = _check_sample_weight(sample_weight, X)
            if self.batchnorm:
                raise ValueError(f"{type(self).__name__} with batchnorm=True does not support "
                                 "sample weights (its batch statistics are unweighted); fit "
                                 "without sample_weight or with batchnorm=False.")
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
            # a fresh model: batch norm's γ and running statistics are not in coefs_ /
            # intercepts_, and must not survive a refit (refits are idempotent)
            self.__dict__.pop("_nn_mlp", None)
            self.__dict__.pop("_nn_optimizer", None)
            self.__dict__.pop("_optimizer", None)
            if self.solver == "rmsprop":      # what _initialize does for sgd and adam
                self.loss_curve_, self._no_improvement_count = [], 0
                self.best_loss_ = None if self.early_stopping else np.inf
                self.validation_scores_ = [] if self.early_stopping else None
                self.best_validation_score_ = -np.inf if self.early_stopping else None
        model = self._nn_model()
        model.l2 = float(self.alpha)        # scikit-learn's alpha is the seed's λ
        self._nn_bind(model)
        X = np.ascontiguousarray(X, dtype=model.dtype)
        if sample_weight is not None:
            sample_weight = sample_weight.astype(model.dtype, copy=False)
        if self.solver == "lbfgs":
            self._nn_fit_lbfgs(model, X, y, sample_weight)
        else:
            from ._stochastic import fit_stochastic

            fit_stochastic(self, model, X, y, sample_weight, incremental)
        if not np.isfinite(model.flat_params).all() or not all(
                np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(_NONFINITE)
        return self

    def _nn_targets(self, y, model, dense):
        """y as the training call takes it: int64 labels for MLP.fit's softmax (``dense``
        False), else float rows in the model's dtype."""
        if self.out_activation_ == "softmax" and not dense:
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=model.dtype)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *workspace):
        """scikit-learn's ``_loss_grad_lbfgs`` (the ``workspace`` lists it passes are not
        needed): loss and packed gradient at ``packed_coef_inter``, from one ``loss_grad``
        pass on the model's flat buffer."""
        if self._nn_fallback_reason(X) is not None:
            return super()._loss_grad_lbfgs(packed_coef_inter, X, y, sample_weight, *workspace)
        model = self._nn_model()
        model.l2 = float(self.alpha)
        self._nn_bind(model)
        model.flat_params[...] = packed_coef_inter
        X = np.ascontiguousarray(X, dtype=model.dtype)
        Y = np.ascontiguousarray(y, dtype=model.dtype).reshape(X.shape[0], -1)
        loss = _passes.loss_grad(model, X, Y, sample_weight, self.alpha, self.loss,
                                 self.out_activation_)
        return loss, model.flat_grads.astype(np.float64)

    def _nn_fit_lbfgs(self, model, X, y, sample_weight):
        from sklearn.utils.optimize import _check_optimize_result

        Y = self._nn_targets(y, model, dense=True)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if iprint > 0:
            options["iprint"] = iprint
        from ._stochastic import _blas_threads_for

        with warnings.catch_warnings(), _blas_threads_for(model, X.shape[0]):
            # scipy >= 1.15 deprecates iprint/disp for L-BFGS-B
            warnings.simplefilter("ignore", DeprecationWarning)
            res = scipy.optimize.minimize(self._loss_grad_lbfgs,
                                          model.flat_params.astype(np.float64),
                                          method="L-BFGS-B", jac=True, options=options,
                                          args=(X, Y, sample_weight))
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = res.fun
        model.flat_params[...] = res.x
