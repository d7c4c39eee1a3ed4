"""scikit-learn's MLP estimators trained by nnfast's kernels.

``nnfast.sklearn.MLPClassifier`` / ``MLPRegressor`` take scikit-learn's parameters (plus
nnfast's ``batchnorm``, ``decay_rate``, ``dtype``, ``activation="leaky_relu"``,
``solver="rmsprop"``), have its fitted attributes and methods, and subclass scikit-learn's
classes (``isinstance`` checks keep working). With equal ``random_state`` they start from the
same weights and see the same batches as scikit-learn's estimator; float64 training agrees with
it to float tolerance (tests/test_sklearn.py). ``patch()`` / ``unpatch()`` / ``patched()`` put
them into ``sklearn.neural_network`` for unchanged code. What nnfast cannot reproduce (sparse
X, ``loss="poisson"``) runs scikit-learn's own code with a ``FallbackWarning``.

Tested with scikit-learn 1.9 (it uses the private ``_initialize``, ``_validate_input`` and
``_predict`` of scikit-learn's estimators); sample_weight needs scikit-learn >= 1.7.
"""
from ._sklearn._base import FallbackWarning
from ._sklearn._estimators import MLPClassifier, MLPRegressor
from ._sklearn._patch import is_patched, patch, patched, unpatch

__all__ = ["MLPClassifier", "MLPRegressor", "FallbackWarning", "patch", "unpatch", "patched",
           "is_patched"]
