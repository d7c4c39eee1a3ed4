"""Scikit-learn's digits, split and standardized: the data set of the demo, the training tests
and ``bench/bench_step.py``, loaded one way in one place (it ships with scikit-learn: no
download)."""
import numpy as np


def digits_split(seed=0, test_size=0.25, dtype=np.float32):
    """``(X_train, X_test, y_train, y_test)``: a stratified split (``seed``), features scaled by
    the training part's mean and standard deviation (``StandardScaler``), as ``dtype`` (None:
    float64, as the scaler returns them)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed,
                                          stratify=y)
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    if dtype is not None:
        Xtr, Xte = Xtr.astype(dtype), Xte.astype(dtype)
    return Xtr, Xte, ytr, yte
