"""``patch()`` / ``unpatch()`` / ``patched()``: nnfast's estimators inside
``sklearn.neural_network``, as scikit-learn-intelex's ``patch_sklearn()`` does for its own.

Covered: every lookup of ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` made while
the patch is on — ``from sklearn.neural_network import MLPClassifier`` run after ``patch()``,
``sklearn.neural_network.MLPClassifier(...)``, and code that imports its modules after the patch.
Not covered: a name bound before ``patch()`` (``from sklearn.neural_network import
MLPClassifier`` executed earlier keeps scikit-learn's class, as with scikit-learn-intelex),
estimators constructed before it, and ``sklearn.neural_network._multilayer_perceptron``, the
private module (nnfast's classes subclass the classes defined there).
"""
import contextlib

import sklearn.neural_network as _nn

from ._estimators import MLPClassifier, MLPRegressor

_NAMES = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
_ORIGINAL = {name: getattr(_nn, name) for name in _NAMES}


def patch():
    """Make ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` nnfast's."""
    for name, cls in _NAMES.items():
        setattr(_nn, name, cls)


def unpatch():
    """Give ``sklearn.neural_network`` back scikit-learn's own classes."""
    for name, cls in _ORIGINAL.items():
        setattr(_nn, name, cls)


def is_patched():
    """True while ``sklearn.neural_network`` holds nnfast's classes."""
    return all(getattr(_nn, name) is cls for name, cls in _NAMES.items())


@contextlib.contextmanager
def patched():
    """``with nnfast.sklearn.patched(): ...`` — patched inside, the previous state after."""
    was = is_patched()
    patch()
    try:
        yield
    finally:
        if not was:
            unpatch()
