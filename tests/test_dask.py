"""Model selection on a Dask cluster through joblib's Dask backend, on loopback only.

A ``GridSearchCV`` over ``topo_derivative_threshold`` runs once in this process and once
on a ``distributed.LocalCluster`` of two worker processes; the scores must agree. Every
fit also reports the id of the process it was scored in, so the test cannot pass by
running the search here.
"""

import contextlib
import logging
import os
import signal
import threading

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from sktlag import TLAGRegressor

from .conftest import FAST, make_series

distributed = pytest.importorskip("distributed")

#: Hard bound on the cluster part of the test (start, search, shutdown), in seconds.
CLUSTER_DEADLINE_S = 90


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise TimeoutError in the main thread after ``seconds`` (POSIX; no bound elsewhere)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"the Dask part of the test ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _search() -> GridSearchCV:
    # n_threads=1 pins torch's CPU threads inside every fit. Worker processes start with
    # other thread settings than this one (the nanny sets OMP_NUM_THREADS=1), and a
    # different number of threads may change how sums are split, hence the last bits.
    est = TLAGRegressor(**{**FAST, "max_epochs": 6, "n_threads": 1}, random_state=0)

    def process_id(estimator, X, y):
        # Defined here, so that it travels to the workers by value.
        return float(os.getpid())

    return GridSearchCV(
        est,
        {"topo_derivative_threshold": [-np.inf, np.inf]},
        cv=TimeSeriesSplit(n_splits=2),
        scoring={"nse": "r2", "pid": process_id},
        refit=False,
    )


def test_grid_search_on_a_local_cluster_matches_the_local_search():
    X, y = make_series(n_rows=200)
    local = _search().fit(X, y).cv_results_

    with _deadline(CLUSTER_DEADLINE_S):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tcp",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            with distributed.Client(cluster) as client:
                assert client.scheduler.address.startswith("tcp://127.0.0.1:")
                worker_pids = set(client.run(os.getpid).values())
                with joblib.parallel_config(backend="dask", n_jobs=-1):
                    remote = _search().fit(X, y).cv_results_
        finally:
            cluster.close(timeout=30)

    # The fits were scored in the worker processes, not here.
    assert set(local["split0_test_pid"]) | set(local["split1_test_pid"]) == {os.getpid()}
    remote_pids = {int(p) for k in (0, 1) for p in remote[f"split{k}_test_pid"]}
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert remote_pids <= worker_pids

    assert remote["params"] == local["params"]
    for key in ("split0_test_nse", "split1_test_nse", "mean_test_nse", "std_test_nse",
                "rank_test_nse"):
        np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
    assert np.isfinite(local["mean_test_nse"]).all()


def test_ensemble_members_fit_on_a_local_cluster():
    from skorch.callbacks import Callback

    from sktlag import TLAGEnsemble

    class ProcessId(Callback):
        # Defined here, so that it travels to the workers by value.
        def on_train_begin(self, net, **kwargs):
            self.pid_ = os.getpid()

    X, y = make_series(n_rows=200)
    params = {**FAST, "max_epochs": 4, "n_threads": 1}

    def ensemble():
        member = TLAGRegressor(**params, callbacks=[("pid", ProcessId())])
        return TLAGEnsemble(member, n_members=2, random_state=0)

    local = ensemble().fit(X, y)
    with _deadline(CLUSTER_DEADLINE_S):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            protocol="tcp", dashboard_address=None, silence_logs=logging.ERROR,
        )
        try:
            with distributed.Client(cluster) as client:
                worker_pids = set(client.run(os.getpid).values())
                with joblib.parallel_config(backend="dask", n_jobs=-1):
                    remote = ensemble().fit(X, y)
        finally:
            cluster.close(timeout=30)

    pids = {dict(m.net_.callbacks_)["pid"].pid_ for m in remote.estimators_}
    assert pids <= worker_pids and os.getpid() not in pids
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))
