"""nnfast.sklearn: scikit-learn's check_estimator, meta-estimators, parity with scikit-learn's
own MLP estimators, the patch, and the nnfast extras."""
import pickle
import warnings

import numpy as np
import pytest
import sklearn
import sklearn.neural_network
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import nnfast
from nnfast.sklearn import FallbackWarning, MLPClassifier, MLPRegressor

SKClassifier = sklearn.neural_network._multilayer_perceptron.MLPClassifier
SKRegressor = sklearn.neural_network._multilayer_perceptron.MLPRegressor

#: Checks not expected to pass, with the reason (empty: every check passes).
EXPECTED_FAILED = {}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


# scikit-learn's own settings for its MLPs in these checks (max_iter=100): the checks' data
# sets are tiny, so the default (100,) hidden layer stays quick.
@parametrize_with_checks([MLPClassifier(max_iter=100, random_state=0),
                          MLPRegressor(max_iter=100, random_state=0)],
                         expected_failed_checks=_expected_failed)
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------------------ parity --
def _digits(n=300):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _same_start(ours, theirs, X, y):
    """Fit scikit-learn's estimator for one epoch, give both its initial weights through
    coefs_/intercepts_ with warm_start (as a user would), and return them ready to fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init = clone(theirs).set_params(max_iter=1).fit(X, y)
    for est in (ours, theirs):
        est.set_params(warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)                  # sets classes_ and the network's shapes
        est.coefs_ = [c.copy() for c in init.coefs_]
        est.intercepts_ = [b.copy() for b in init.intercepts_]
    return ours, theirs


def _max_diff(a, b):
    pairs = zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_)
    return max(np.abs(p - q).max() for p, q in pairs)


SOLVERS = [dict(solver="sgd", nesterovs_momentum=False), dict(solver="sgd"),
           dict(solver="sgd", momentum=0.0), dict(solver="adam"), dict(solver="rmsprop")]


@pytest.mark.parametrize("options", SOLVERS[:4], ids=["sgd-momentum", "sgd-nesterov", "sgd",
                                                      "adam"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_one_epoch_matches_sklearn_classifier(options, activation):
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(32, 16), activation=activation, shuffle=False,
              learning_rate_init=0.01, max_iter=1, random_state=0, **options)
    ours, theirs = _same_start(MLPClassifier(**kw), SKClassifier(**kw), X, y)
    for est in (ours, theirs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    assert _max_diff(ours, theirs) < 1e-6
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    assert ours.t_ == theirs.t_ and ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("options", [SOLVERS[1], SOLVERS[3]], ids=["sgd-nesterov", "adam"])
def test_regressor_matches_sklearn_loss_convention(options, n_outputs):
    """Several outputs: scikit-learn reports half the mean over rows and outputs."""
    X, y = make_regression(200, 10, n_targets=n_outputs, random_state=0)
    y = y / 100.0
    kw = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0, learning_rate_init=0.01,
              **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPRegressor(**kw).fit(X, y), SKRegressor(**kw).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    assert _max_diff(ours, theirs) < 1e-6


@pytest.mark.parametrize("Ours,Theirs", [(MLPClassifier, SKClassifier),
                                         (MLPRegressor, SKRegressor)])
def test_lbfgs_and_sample_weight_match_sklearn(Ours, Theirs):
    X, y = _digits(200)
    if Ours is MLPRegressor:
        y = y / 10.0
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(y))
    for solver in ("lbfgs", "adam"):
        kw = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=20, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = Ours(**kw).fit(X, y, sample_weight=w)
            theirs = Theirs(**kw).fit(X, y, sample_weight=w)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
        assert _max_diff(ours, theirs) < 1e-6


def test_shuffled_training_follows_sklearn():
    """Equal random_state: equal initial weights, equal batches, equal early stopping."""
    X, y = _digits(400)
    kw = dict(hidden_layer_sizes=(32,), max_iter=15, random_state=3, early_stopping=True,
              n_iter_no_change=3, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kw).fit(X, y), SKClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert _max_diff(ours, theirs) < 1e-6
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("backend", ["auto"] + nnfast.backends())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_epochs_are_mlp_fit_epochs_bit_for_bit(monkeypatch, backend, dtype):
    """The front's epoch (``run_epoch`` over the shuffled order, X validated once) trains
    exactly as ``MLP.fit(epochs=1, shuffle=False)`` on the epoch's shuffled copy: same kernels
    (those of the network's backend, the optimizer's too), same batches, same bits."""
    import types

    from nnfast._network import training
    from nnfast._sklearn import _stochastic

    X, y = _digits(300)
    kw = dict(hidden_layer_sizes=(24, 16), max_iter=3, random_state=1, batch_size=64,
              dtype=dtype)

    def by_fit(model, network, opt, Xt, Yt, order, bounds):
        if order is not None:
            Xt, Yt = Xt.take(order, axis=0), Yt.take(order, axis=0)
        return model.fit(Xt, Yt, optimizer=opt, lr=opt.lr, epochs=1, batch_size=64, tol=None,
                         shuffle=False, progress=False).train_loss[0]

    with warnings.catch_warnings(), nnfast.use_backend(backend):
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X, y)
        monkeypatch.setattr(_stochastic, "training", types.SimpleNamespace(
            run_epoch=by_fit, batch_bounds=training.batch_bounds))
        reference = MLPClassifier(**kw).fit(X, y)
    assert ours.loss_curve_ == reference.loss_curve_
    for a, b in zip(ours.coefs_ + ours.intercepts_, reference.coefs_ + reference.intercepts_):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [1, 2, 7, 1257])
def test_shuffled_is_sklearns_shuffle(n):
    """The front's per-epoch shuffle draws what ``sklearn.utils.shuffle`` draws (if scikit-learn
    changes its shuffle, this fails before the parity tests do)."""
    from sklearn.utils import check_random_state, shuffle

    from nnfast._sklearn._stochastic import shuffled

    ours, theirs = check_random_state(5), check_random_state(5)
    a = b = np.arange(n)
    for _ in range(4):
        a, b = shuffled(a, ours), shuffle(b, random_state=theirs)
        np.testing.assert_array_equal(a, b)
    assert ours.randint(1 << 30) == theirs.randint(1 << 30)     # same state afterwards


def test_float32_trains_in_float32_and_agrees():
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X.astype(np.float32), y)
        theirs = SKClassifier(**kw).fit(X.astype(np.float32), y)
        forced = MLPClassifier(dtype="float32", **kw).fit(X, y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + forced.coefs_)
    assert ours.predict_proba(X).dtype == np.float32
    assert _max_diff(ours, theirs) < 1e-4
    assert _max_diff(ours, forced) < 1e-5


def test_partial_fit_matches_sklearn():
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(16,), random_state=0, solver="sgd", learning_rate_init=0.05)
    ours, theirs = MLPClassifier(**kw), SKClassifier(**kw)
    for est in (ours, theirs):
        for lo in range(0, 300, 100):
            est.partial_fit(X[lo:lo + 100], y[lo:lo + 100], classes=np.arange(10))
    assert _max_diff(ours, theirs) < 1e-6
    assert ours.t_ == theirs.t_ == 300


# ------------------------------------------------------------ labels and targets --
def test_string_labels_multilabel_and_multioutput():
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0).fit(
            X, names[y])
        assert set(clf.predict(X)) <= set(names) and clf.score(X, names[y]) > 0.9
        proba = clf.predict_proba(X)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-6)
        Y = np.stack([y % 2, y > 4, y == 0], axis=1).astype(int)       # multilabel
        multi = MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0).fit(X, Y)
        assert multi.out_activation_ == "logistic" and multi.predict(X).shape == Y.shape
        assert (multi.predict(X) == Y).mean() > 0.8
        T = np.stack([y, -y], axis=1) / 10.0                           # multi-output
        reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=50, random_state=0).fit(X, T)
        ref = SKRegressor(hidden_layer_sizes=(32,), max_iter=50, random_state=0).fit(X, T)
    assert reg.predict(X).shape == T.shape
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), atol=1e-6)
    assert reg.score(X, T) > 0.5


# ------------------------------------------------------------- in scikit-learn --
def test_meta_estimators_clone_pickle_set_output():
    from sklearn.model_selection import (GridSearchCV, cross_val_score, learning_curve)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.01,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(clf, {"alpha": [1e-4, 1e-1]}, cv=3).fit(X, y)
        assert isinstance(search.best_estimator_, MLPClassifier)
        pipe = make_pipeline(StandardScaler(), clone(clf)).fit(X, y)
        assert pipe.score(X, y) > 0.9
        assert cross_val_score(clf, X, y, cv=3).mean() > 0.8
        sizes, train, test = learning_curve(clf, X, y, cv=3, train_sizes=[0.5, 1.0])
        assert train.shape == (2, 3) and np.all(train > 0.8)
        fitted = clone(clf).fit(X, y)
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "coefs_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    # the restored weights are the model's again: partial_fit changes what predict sees
    before = restored.predict_proba(X)
    restored.partial_fit(X, y)
    assert not np.array_equal(restored.predict_proba(X), before)
    pd = pytest.importorskip("pandas")
    pipe = make_pipeline(StandardScaler(), clone(clf)).set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(pd.DataFrame(X, columns=[f"px{i}" for i in range(64)]), y)
    assert list(pipe[-1].feature_names_in_[:2]) == ["px0", "px1"]


def test_patch_swaps_the_classes_for_unchanged_code():
    import sklearn.neural_network as nn

    from nnfast import sklearn as nsk

    assert nn.MLPClassifier is SKClassifier and not nsk.is_patched()
    early = nn.MLPClassifier                      # bound before the patch: not covered
    nsk.patch()
    try:
        from sklearn.neural_network import MLPClassifier as Late
        assert Late is MLPClassifier and nn.MLPRegressor is MLPRegressor and nsk.is_patched()
        assert early is SKClassifier
    finally:
        nsk.unpatch()
    assert nn.MLPClassifier is SKClassifier and nn.MLPRegressor is SKRegressor
    with nsk.patched():
        assert nn.MLPClassifier is MLPClassifier
        X, y = _digits(100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = nn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5).fit(X, y)
        assert isinstance(est, SKClassifier) and hasattr(est, "_nn_mlp")
    assert nn.MLPClassifier is SKClassifier


def test_fallbacks_warn_and_match_sklearn():
    import scipy.sparse

    X, y = _digits(100)
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(FallbackWarning, match="sparse X"):
            ours = MLPClassifier(**kw).fit(scipy.sparse.csr_matrix(X), y)
        theirs = SKClassifier(**kw).fit(scipy.sparse.csr_matrix(X), y)
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))
        with pytest.warns(FallbackWarning, match="poisson"):
            MLPRegressor(loss="poisson", **kw).fit(X, y + 1.0)
        with pytest.raises(ValueError, match="rmsprop.*sparse"):
            MLPClassifier(solver="rmsprop", **kw).fit(scipy.sparse.csr_matrix(X), y)


# ------------------------------------------------------------------ the extras --
@pytest.mark.parametrize("extra", [dict(activation="leaky_relu"), dict(solver="rmsprop"),
                                   dict(batchnorm=True), dict(decay_rate=0.1),
                                   dict(dtype="float32")])
def test_extras_train(extra):
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=100, learning_rate_init=0.01,
                            random_state=0,
                            **extra).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_curve_[-1] < clf.loss_curve_[0]
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_decay_rate_is_the_seeds_inverse_time_decay():
    X, y = _digits(200)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, solver="sgd", decay_rate=0.5,
                        learning_rate_init=0.1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf._nn_optimizer.lr == pytest.approx(nnfast.inverse_time_decay(0.1, 0.5, 2))


@pytest.mark.parametrize("bad,exc,match", [
    (dict(activation="softsign"), ValueError, "activation"),
    (dict(solver="newton"), ValueError, "solver"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(decay_rate=-1.0), ValueError, "decay_rate"),
    (dict(batchnorm="yes"), ValueError, "batchnorm"),
    (dict(batchnorm=True, solver="lbfgs"), ValueError, "batchnorm"),
])
def test_bad_parameters_name_themselves(bad, exc, match):
    X, y = _digits(50)
    with pytest.raises(exc, match=match):
        MLPClassifier(**bad).fit(X, y)


def test_warm_start_with_changed_activation_follows_sklearn():
    """A parameter changed between warm-started fits takes effect, as in scikit-learn."""
    X, y = _digits(200)
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kw).fit(X, y), SKClassifier(**kw).fit(X, y)
        for est in (ours, theirs):
            est.set_params(activation="tanh").fit(X, y)
    assert _max_diff(ours, theirs) < 1e-6
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)


# ------------------------------------------- scikit-learn's rules for the extras --
EXTRAS = [dict(activation="leaky_relu"), dict(solver="rmsprop"), dict(batchnorm=True),
          dict(decay_rate=0.1), dict(dtype="float32")]
_SAMPLE_WEIGHT_CHECKS = ("check_sample_weights_pandas_series",
                         "check_sample_weights_not_an_array", "check_sample_weights_list",
                         "check_sample_weights_shape", "check_sample_weights_not_overwritten",
                         "check_sample_weight_equivalence_on_dense_data",
                         "check_classifiers_one_label_sample_weights")


def _expected_failed_extras(estimator):
    """The checks that nnfast's extras fail by design, with the reason."""
    failed = dict(_expected_failed(estimator))
    if estimator.batchnorm:
        failed.update(dict.fromkeys(_SAMPLE_WEIGHT_CHECKS, (
            "batchnorm=True refuses sample_weight (ValueError, after scikit-learn's own "
            "sample_weight checks): its batch statistics are unweighted")))
    if estimator.dtype == "float32":
        failed["check_sample_weight_equivalence_on_dense_data"] = (
            "float32 arithmetic: the probabilities of the two fits differ by an ulp (6e-8), "
            "the check's rtol is 1e-7")
    return failed


@parametrize_with_checks([cls(max_iter=100, random_state=0, **extra) for extra in EXTRAS
                          for cls in (MLPClassifier, MLPRegressor)],
                         expected_failed_checks=_expected_failed_extras)
def test_check_estimator_with_each_extra(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["adam", "sgd", "rmsprop"])
def test_batchnorm_refit_is_idempotent(Est, solver):
    """Fitting twice with a fixed random_state gives what a fresh estimator's fit gives, bit
    for bit: nothing of the first fit (batch norm's γ, running statistics) survives."""
    X, y = _digits(200)
    if Est is MLPRegressor:
        y = y / 9.0
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0, batchnorm=True,
              solver=solver, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fresh = Est(**kw).fit(X, y)
        twice = Est(**kw).fit(X, y).fit(X, y)
        other_first = Est(**kw).fit(X[::-1], y[::-1]).fit(X, y)
    out = "predict_proba" if Est is MLPClassifier else "predict"
    expected = getattr(fresh, out)(X)
    for est in (twice, other_first):
        np.testing.assert_array_equal(getattr(est, out)(X), expected)
        np.testing.assert_array_equal(est._nn_mlp.flat_buffers, fresh._nn_mlp.flat_buffers)
    assert twice.loss_curve_ == fresh.loss_curve_


@pytest.mark.parametrize("extra", EXTRAS)
def test_sparse_tag_matches_what_fit_accepts(extra):
    """The sparse tag is True only where a sparse fit trains (scikit-learn's fallback, default
    options); with an extra it is False and a sparse fit is a ValueError saying so."""
    import scipy.sparse
    from sklearn.utils import get_tags

    X, y = _digits(60)
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    assert get_tags(MLPClassifier(**kw)).input_tags.sparse
    est = MLPClassifier(**kw, **extra)
    uses_extra = extra != dict(dtype="float32")      # dtype is not one of the extras' options
    assert get_tags(est).input_tags.sparse is not uses_extra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FallbackWarning)
        if uses_extra:
            with pytest.raises(ValueError, match="sparse"):
                est.fit(scipy.sparse.csr_matrix(X), y)
        else:
            est.fit(scipy.sparse.csr_matrix(X), y)


def test_sparse_predict_of_a_model_with_a_forward_extra():
    """Predicting sparse X with a model fitted on dense X: the same as dense X where
    scikit-learn's forward pass is the model's; a ValueError naming the option where it is not
    (batch norm, leaky ReLU), not a wrong answer."""
    import scipy.sparse

    X, y = _digits(100)
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for extra, fails in ((dict(batchnorm=True), "batchnorm"),
                             (dict(activation="leaky_relu"), "leaky_relu"),
                             (dict(solver="rmsprop"), None), (dict(decay_rate=0.5), None)):
            est = MLPClassifier(**kw, **extra).fit(X, y)
            if fails:
                with pytest.raises(ValueError, match=f"{fails}.*sparse X is not supported"):
                    est.predict_proba(scipy.sparse.csr_matrix(X))
            else:
                np.testing.assert_allclose(est.predict_proba(scipy.sparse.csr_matrix(X)),
                                           est.predict_proba(X), rtol=1e-6, atol=1e-7)


def test_batchnorm_sample_weight_refused_after_sklearns_checks():
    X, y = _digits(60)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, batchnorm=True)
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero"):
        est.fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\), expected \(60,\)"):
        est.fit(X, y, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="MLPClassifier with batchnorm=True does not support "
                                         "sample weights"):
        est.fit(X, y, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match="n_samples=1"):
        est.fit(X[:1], y[:1])


@pytest.mark.parametrize("Est, Theirs", [(MLPClassifier, SKClassifier),
                                         (MLPRegressor, SKRegressor)])
def test_doc_link_is_the_extended_estimators_page(Est, Theirs):
    """The HTML repr's "?" links to the page of the scikit-learn estimator extended (of the
    installed version), where the repr before linked nowhere."""
    link = Est(batchnorm=True)._get_doc_link()
    assert link == Theirs()._get_doc_link()
    assert link.startswith("https://scikit-learn.org/") and \
        link.endswith(f"sklearn.neural_network.{Theirs.__name__}.html")
    assert f'href="{link}"' in Est()._repr_html_()


@pytest.mark.parametrize("batchnorm", [False, True])
def test_early_stopping_keeps_the_best_epochs_whole_model(batchnorm, monkeypatch):
    """After early stopping the model is the best epoch's — with batch norm its γ and running
    statistics too, not only coefs_/intercepts_: its validation score is best_validation_score_."""
    from nnfast._sklearn import _stochastic

    seen = {}
    split = _stochastic._split

    def spy(*args, **kwargs):
        parts = seen["parts"] = split(*args, **kwargs)
        return parts
    monkeypatch.setattr(_stochastic, "_split", spy)
    X, y = _digits(400)
    est = MLPRegressor(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=2,
                       max_iter=200, random_state=0, batchnorm=batchnorm,
                       learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y / 9.0)
    X_val, y_val = seen["parts"][3], seen["parts"][4]
    assert est.validation_scores_[-1] < est.best_validation_score_   # the last was not best
    assert est.score(X_val, y_val) == est.best_validation_score_
