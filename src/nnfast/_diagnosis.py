"""The results of ``nnfast.selection``'s sweeps, and ``diagnose``, which reads them (or plain train
and CV errors) as the lecture does: high bias, high variance, both, or fine."""
import math
from dataclasses import dataclass, field

import numpy as np

from ._validate import real


@dataclass
class LambdaSearch:
    """What ``choose_lambda`` found. ``table``: one dict per λ, in grid order, with ``lambda``,
    ``train_cost`` and ``cv_cost`` (unregularized, averaged over folds in the k-fold form),
    ``train_accuracy`` and ``cv_accuracy`` (None for regression). ``best_model``: trained with
    ``best_lambda`` (on all of X_train in the k-fold form)."""
    best_lambda: float
    best_model: object      # the nnfast.MLP trained with best_lambda
    table: list
    n_folds: int = 0

    @property
    def lambdas(self):
        return np.array([row["lambda"] for row in self.table])

    @property
    def train_cost(self):
        return np.array([row["train_cost"] for row in self.table])

    @property
    def cv_cost(self):
        return np.array([row["cv_cost"] for row in self.table])

    def __repr__(self):
        return (f"LambdaSearch(best_lambda={self.best_lambda:g}, "
                f"{len(self.table)} values, cv_cost={self.cv_cost.min():.4g})")


@dataclass
class LearningCurve:
    """What ``learning_curve`` measured: ``sizes`` (training rows used), ``train_cost`` (J_train
    on the rows used) and ``cv_cost`` (J_cv), unregularized and averaged over ``seeds``;
    ``train_costs`` / ``cv_costs`` hold one row per seed."""
    sizes: np.ndarray
    train_cost: np.ndarray
    cv_cost: np.ndarray
    train_costs: np.ndarray
    cv_costs: np.ndarray
    seeds: tuple = field(default=(0,))


_REMEDIES = {
    "high bias": ["a larger network (more hidden units or layers)", "train longer",
                  "decrease λ", "add features (e.g. polynomial features)"],
    "high variance": ["get more training examples", "a smaller network (fewer units or layers)",
                      "increase λ", "use fewer features"],
}


@dataclass
class Diagnosis:
    """``verdict`` ("high bias", "high variance", "both" or "fine"), the numbers it was read
    from, and the lecture's ``remedies``."""
    verdict: str
    train_error: float
    cv_error: float
    baseline_error: float
    bias_gap: float
    variance_gap: float
    threshold: float
    remedies: list

    def __str__(self):
        text = (f"{self.verdict}: train {self.train_error:.4g}, cv {self.cv_error:.4g}, "
                f"baseline {self.baseline_error:.4g} (bias gap {self.bias_gap:.4g}, variance "
                f"gap {self.variance_gap:.4g}, threshold {self.threshold:.4g})")
        if self.remedies:
            text += "; try: " + "; ".join(self.remedies)
        return text


def diagnose(train_error, cv_error=None, baseline_error=None, *, threshold=0.1):
    """Bias/variance from training and cross-validation error (or cost).

    ``diagnose(train_error, cv_error, baseline_error=None)``, or ``diagnose(result)`` with a
    ``LambdaSearch`` (the best λ's train and CV cost) or a ``LearningCurve`` (its largest size).

    Thresholds, the lecture's reading made numeric: the bias gap is ``train - baseline`` (the
    baseline — e.g. human-level error — defaults to 0, a perfect fit), the variance gap is
    ``cv - train``. A gap is "large" when it exceeds ``threshold × cv_error`` (default 10 % of
    the CV error): large bias gap → "high bias", large variance gap → "high variance", both →
    "both", neither → "fine". With the lecture's speech-recognition figures (baseline 10.6 %):
    train 10.8 / cv 14.8 → high variance; 15.0 / 15.5 → high bias; 15.0 / 19.7 → both.
    Returns a ``Diagnosis`` with the numbers and the remedies.
    """
    if isinstance(train_error, (LambdaSearch, LearningCurve)):
        if cv_error is not None:
            raise TypeError("diagnose(result) takes no cv_error; it reads it from the result")
        result = train_error
        if isinstance(result, LambdaSearch):
            row = next(r for r in result.table if r["lambda"] == result.best_lambda)
            train_error, cv_error = row["train_cost"], row["cv_cost"]
        else:
            train_error, cv_error = result.train_cost[-1], result.cv_cost[-1]
    elif cv_error is None:
        raise TypeError("diagnose() needs cv_error, or a LambdaSearch / LearningCurve result "
                        f"as its first argument (got {type(train_error).__name__})")
    train_error = real(train_error, "train_error", 0.0)
    cv_error = real(cv_error, "cv_error", 0.0)
    baseline_error = 0.0 if baseline_error is None else real(baseline_error, "baseline_error",
                                                             0.0)
    threshold = real(threshold, "threshold", 0.0)
    for name, value in (("train_error", train_error), ("cv_error", cv_error),
                        ("baseline_error", baseline_error)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    bias_gap = train_error - baseline_error
    variance_gap = cv_error - train_error
    limit = threshold * cv_error
    bias, variance = bias_gap > limit, variance_gap > limit
    verdict = ("both" if bias and variance else "high bias" if bias
               else "high variance" if variance else "fine")
    remedies = (_REMEDIES["high bias"] if bias else []) + (_REMEDIES["high variance"]
                                                           if variance else [])
    return Diagnosis(verdict, train_error, cv_error, baseline_error, bias_gap, variance_gap,
                     threshold, list(remedies))
