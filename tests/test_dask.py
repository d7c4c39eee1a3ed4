"""A λ sweep on a Dask cluster (the ``dask`` extra) gives the serial table."""
import numpy as np
import pytest

from nnfast import selection

distributed = pytest.importorskip(
    "distributed", reason="the dask extra is not installed (pip install 'nnfast[dask]')")
joblib = pytest.importorskip("joblib")

OPTS = dict(layer_sizes=[4, 8, 3], epochs=4, batch_size=16, lr=0.01, seed=5)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.mark.parametrize("batched", [None, False], ids=["batched", "separate"])
def test_sweep_on_a_local_cluster_matches_serial(client, batched):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)
    X = rng.normal(0, 1.0, (3, 4))[y] + rng.normal(0, 1.0, (90, 4))
    lams = [0.01, 0.1, 1.0, 3.0, 10.0, 20.0, 40.0]      # two chunks of the batched grid
    serial = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, batched=batched,
                                     **OPTS)
    assert len(client.scheduler_info()["workers"]) == 2
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_backend("dask"):
            spread = selection.choose_lambda(X[:60], y[:60], X[60:], y[60:], lams, n_jobs=2,
                                             batched=batched, **OPTS)
    assert stream.data, "no task ran on the Dask workers"
    assert {task["worker"] for task in stream.data} <= set(client.scheduler_info()["workers"])
    assert spread.table == serial.table
    assert spread.best_lambda == serial.best_lambda
    assert np.array_equal(spread.best_model.flat_params, serial.best_model.flat_params)
