"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators trained by nnfast."""
from numbers import Real

from sklearn.neural_network import MLPClassifier as _SKClassifier
from sklearn.neural_network import MLPRegressor as _SKRegressor
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import NNFastMLPMixin

_EXTRAS = {
    "activation": [StrOptions({"identity", "logistic", "tanh", "relu", "leaky_relu"})],
    "solver": [StrOptions({"lbfgs", "sgd", "adam", "rmsprop"})],
    "batchnorm": ["boolean"],
    "decay_rate": [Interval(Real, 0, None, closed="left")],
    "dtype": [StrOptions({"float32", "float64"}), None],
}

_EXTRAS_DOC = """
    nnfast's extras, beyond scikit-learn's parameters (same names, defaults and meanings):

    activation : also "leaky_relu" (the seed's, slope 0.01).
    solver : also "rmsprop" (the seed's ``S = βS + (1-β)dθ²``, ``θ -= α dθ / sqrt(S + ε)``
        with ``β = beta_2``, ``ε = epsilon``).
    batchnorm : bool, default=False. Batch normalization of every hidden layer's z (stochastic
        solvers, no sample_weight); ``intercepts_`` of those layers then hold batch norm's β.
    decay_rate : float, default=0.0. The seed's decay ``α = α_schedule / (1 + decay_rate ·
        epoch)``, epochs counted over every fit of this estimator.
    dtype : "float32", "float64" or None (default: X's dtype when float32, else float64 —
        scikit-learn's rule). The dtype of the weights and of the training arithmetic.
"""


def _init(est, base, arguments):
    """``base.__init__`` with scikit-learn's parameters; nnfast's extras stored beside them."""
    params = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
    extras = {name: params.pop(name) for name in ("batchnorm", "decay_rate", "dtype")}
    base.__init__(est, **params)
    for name, value in extras.items():
        setattr(est, name, value)


class MLPClassifier(NNFastMLPMixin, _SKClassifier):
    __doc__ = ("scikit-learn's ``MLPClassifier`` (parameters, attributes, methods), trained "
               "by nnfast's kernels.\n" + _EXTRAS_DOC)

    _parameter_constraints = {**_SKClassifier._parameter_constraints, **_EXTRAS}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batchnorm=False, decay_rate=0.0, dtype=None):
        _init(self, _SKClassifier, locals())


class MLPRegressor(NNFastMLPMixin, _SKRegressor):
    __doc__ = ("scikit-learn's ``MLPRegressor`` (parameters, attributes, methods), trained "
               "by nnfast's kernels; ``loss='poisson'`` runs scikit-learn's code (a "
               "FallbackWarning).\n" + _EXTRAS_DOC)

    _parameter_constraints = {**_SKRegressor._parameter_constraints, **_EXTRAS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batchnorm=False, decay_rate=0.0, dtype=None):
        _init(self, _SKRegressor, locals())
