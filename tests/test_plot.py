"""nnfast.plot: the figures hold the data they claim (Agg backend)."""
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (nnfast[plot]) not installed")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nnfast import MLP, plot, selection  # noqa: E402

OPTS = dict(layer_sizes=[4, 6, 3], epochs=3, batch_size=16, lr=0.01)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    X = (rng.normal(size=(3, 4))[y] + rng.normal(size=(90, 4))).astype(np.float32)
    yield X[:60], y[:60], X[60:], y[60:]
    plt.close("all")


def _lines(fig):
    (ax,) = fig.axes
    return ax, {line.get_label(): line for line in ax.get_lines()}


def test_learning_curve_figure(data):
    curve = selection.learning_curve(*data, sizes=[0.5, 1.0], **OPTS)
    fig = plot.plot_learning_curve(curve)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax, lines = _lines(fig)
    assert np.array_equal(lines["J_train"].get_xdata(), [30, 60])
    assert np.array_equal(lines["J_train"].get_ydata(), curve.train_cost)
    assert np.array_equal(lines["J_cv"].get_ydata(), curve.cv_cost)
    assert "size" in ax.get_xlabel() and "cost" in ax.get_ylabel()
    fig.canvas.draw()


def test_validation_curve_figure(data):
    lams = [0.01, 0.1, 1.0]
    search = selection.choose_lambda(*data, lams, **OPTS)
    fig = plot.plot_validation_curve(search)
    ax, lines = _lines(fig)
    assert ax.get_xscale() == "log"
    assert "λ" in ax.get_xlabel() and "cost" in ax.get_ylabel()
    assert np.array_equal(lines["J_cv"].get_xdata(), lams)
    assert np.array_equal(lines["J_cv"].get_ydata(), search.cv_cost)
    assert np.array_equal(lines["J_train"].get_ydata(), search.train_cost)
    (best,) = [line for label, line in lines.items() if label.startswith("best λ")]
    assert best.get_xdata()[0] == search.best_lambda
    assert best.get_ydata()[0] == search.cv_cost.min()
    fig.canvas.draw()


def test_history_figure(data):
    Xt, yt, Xc, yc = data
    model = MLP([4, 6, 3], seed=0)
    hist = model.fit(Xt, yt, epochs=4, validation_data=(Xc, yc), tol=None, progress=False)
    fig = plot.plot_history(hist)
    ax, lines = _lines(fig)
    assert np.array_equal(lines["train loss"].get_xdata(), [1, 2, 3, 4])
    assert np.array_equal(lines["train loss"].get_ydata(), hist.train_loss)
    assert np.array_equal(lines["validation loss"].get_ydata(), hist.val_loss)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    no_val = model.fit(Xt, yt, epochs=2, tol=None, progress=False)
    _, lines = _lines(plot.plot_history(no_val))
    assert list(lines) == ["train loss"]


def test_draws_into_given_axes_and_rejects_bad_input(data):
    fig, ax = plt.subplots()
    hist = MLP([4, 6, 3], seed=0).fit(data[0], data[1], epochs=2, tol=None, progress=False)
    assert plot.plot_history(hist, ax=ax) is fig
    with pytest.raises(TypeError, match="history"):
        plot.plot_history([0.1, 0.2])
    with pytest.raises(TypeError, match="curve"):
        plot.plot_learning_curve(hist)
    with pytest.raises(TypeError, match="search"):
        plot.plot_validation_curve(hist)
    search = selection.choose_lambda(*data, [0.0, 1.0], **OPTS)
    with pytest.raises(ValueError, match="λ = 0"):
        plot.plot_validation_curve(search)
