"""Figures for model selection: learning curve, validation curve, loss history (matplotlib, the
optional extra ``nnfast[plot]``). Every function returns the matplotlib Figure; pass ``ax`` to
draw into an existing Axes instead."""
import numpy as np

from .model import History
from .selection import LambdaSearch, LearningCurve


def _axes(ax):
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("nnfast.plot needs matplotlib: pip install 'nnfast[plot]'") from None
    if ax is None:
        fig, ax = plt.subplots()
        return fig, ax
    return ax.figure, ax


def _cost_curves(ax, x, train_cost, cv_cost, xlabel, title):
    """J_train and J_cv (unregularized) against x: the body of both curve figures."""
    ax.plot(x, train_cost, "o-", label="J_train")
    ax.plot(x, cv_cost, "o-", label="J_cv")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cost (without regularization)")
    ax.set_title(title)


def plot_learning_curve(curve, ax=None):
    """J_train and J_cv (unregularized) against the training-set size, from ``learning_curve``."""
    if not isinstance(curve, LearningCurve):
        raise TypeError(f"curve must be a LearningCurve (nnfast.selection.learning_curve), got "
                        f"{type(curve).__name__}")
    fig, ax = _axes(ax)
    _cost_curves(ax, curve.sizes, curve.train_cost, curve.cv_cost, "training set size m",
                 "Learning curve")
    ax.legend()
    return fig


def plot_validation_curve(search, ax=None):
    """Train and CV cost (unregularized) against λ on a log x-axis, the chosen λ marked, from
    ``choose_lambda``."""
    if not isinstance(search, LambdaSearch):
        raise TypeError(f"search must be a LambdaSearch (nnfast.selection.choose_lambda), got "
                        f"{type(search).__name__}")
    if np.any(search.lambdas <= 0):
        raise ValueError("the log λ axis cannot show λ = 0; leave 0 out of the grid to plot it")
    fig, ax = _axes(ax)
    _cost_curves(ax, search.lambdas, search.train_cost, search.cv_cost, "λ (l2)",
                 "Validation curve")
    best = int(np.argmin(search.cv_cost))
    ax.plot([search.lambdas[best]], [search.cv_cost[best]], "r*", markersize=14,
            label=f"best λ = {search.best_lambda:g}")
    ax.set_xscale("log")
    ax.legend()
    return fig


def plot_history(history, ax=None):
    """Training loss per epoch (and validation loss, when the fit had ``validation_data``) of
    ``MLP.fit``'s History."""
    if not isinstance(history, History):
        raise TypeError(f"history must be an nnfast.History (what MLP.fit returns), got "
                        f"{type(history).__name__}")
    if not history.train_loss:
        raise ValueError("history has no epochs to plot")
    fig, ax = _axes(ax)
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train loss")
    if history.val_loss:
        ax.plot(epochs[:len(history.val_loss)], history.val_loss, label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training history")
    ax.legend()
    return fig
