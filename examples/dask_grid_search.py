"""
Searching the growth threshold on a Dask cluster
================================================

The search itself is plain scikit-learn (``GridSearchCV`` with ``TimeSeriesSplit``);
joblib's Dask backend sends its fits to the workers of a Dask cluster. Needs the
``dask`` extra: ``pip install "sktlag[dask]"``.

Against a running cluster (one scheduler, workers on as many machines as you have)::

    dask scheduler                                   # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1
    python examples/dask_grid_search.py --scheduler tcp://HOST:8786

To try it on one machine, ``--local`` starts a ``LocalCluster`` on 127.0.0.1::

    python examples/dask_grid_search.py --local --workers 2

``--fast`` shrinks the data, the network and the grid to a smoke test of a few seconds
per fit. The workers must be able to import ``sktlag`` (same version as here). This
page was built with ``--local --fast --workers 2``.
"""

from __future__ import annotations

import argparse
import logging
import time

import joblib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import PRESETS, TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import kge_scorer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the example."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://scheduler:8786",
    )
    where.add_argument(
        "--local", action="store_true",
        help="start a LocalCluster on 127.0.0.1 instead (for trying the recipe out)",
    )
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the local cluster (default: 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per fit (default: 1, one fit per worker core)")
    parser.add_argument("--fast", action="store_true",
                        help="tiny data, network and grid: a smoke test, not a result")
    parser.add_argument("--random-state", type=int, default=0,
                        help="seed of every fit (default: 0)")
    return parser.parse_args(argv)


def build_search(fast: bool, threads: int, random_state: int) -> GridSearchCV:
    """A grid search over ``topo_derivative_threshold``, scored by NSE and KGE."""
    if fast:
        settings = {**PRESETS["fast"], "max_epochs": 6, "lookback": 7}
        thresholds = [0.0, np.inf]
        n_splits = 2
    else:
        settings = {"hidden_size": 32, "lookback": 60, "max_epochs": 100, "max_layers": 4}
        thresholds = [0.03, 0.1, 0.3, np.inf]
        n_splits = 3
    model = Pipeline([
        ("scale", StandardScaler()),
        ("tlag", TLAGRegressor(**settings, n_threads=threads, random_state=random_state)),
    ])
    # Frames, not arrays, reach the regressor: each test fold reads the end of its
    # training fold as warm-up instead of padding.
    model.set_output(transform="pandas")
    return GridSearchCV(
        model,
        {"tlag__topo_derivative_threshold": thresholds},
        cv=TimeSeriesSplit(n_splits=n_splits),
        scoring={"nse": "r2", "kge": kge_scorer},
        refit="nse",
        n_jobs=-1,
    )


def load_data(fast: bool) -> tuple[pd.DataFrame, pd.Series]:
    """Daily inputs and discharge at Kalkofen, from the embedded Lahn dataset."""
    X, y = load_lahn(as_frame=True, return_X_y=True)
    start = "2019-01-01" if fast else "2000-01-01"
    return X.loc[start:], y.loc[start:]


def connect(args: argparse.Namespace):
    """A Dask client (and the local cluster it talks to, or None)."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        return Client(args.scheduler, timeout="60s"), None
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def report(search: GridSearchCV) -> str:
    """The search results as a small table, best first."""
    res = search.cv_results_
    table = pd.DataFrame({
        "threshold": [p["tlag__topo_derivative_threshold"] for p in res["params"]],
        "NSE mean": res["mean_test_nse"],
        "NSE std": res["std_test_nse"],
        "KGE mean": res["mean_test_kge"],
        "rank": res["rank_test_nse"],
    }).sort_values("rank")
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def plot_scores(search: GridSearchCV) -> Figure:
    """Mean test NSE and KGE of every threshold, with one standard deviation."""
    res = search.cv_results_
    labels = [str(p["tlag__topo_derivative_threshold"]) for p in res["params"]]
    fig = Figure(figsize=(6.0, 3.5), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(labels))
    for offset, key, name in ((-0.2, "nse", "NSE"), (0.2, "kge", "KGE")):
        ax.bar(positions + offset, res[f"mean_test_{key}"], width=0.4,
               yerr=res[f"std_test_{key}"], capsize=3, label=name)
    ax.set_xticks(positions, labels)
    ax.set_xlabel("topo_derivative_threshold")
    ax.set_ylabel("mean test score over the folds")
    ax.axhline(0.0, color="#495057", linewidth=0.8)
    ax.legend()
    return fig


# %%
# Run the search on the cluster
# -----------------------------
args = parse_args()
X, y = load_data(args.fast)
search = build_search(args.fast, args.threads, args.random_state)
client, cluster = connect(args)
try:
    n_workers = len(client.scheduler_info()["workers"])
    print(f"scheduler {client.scheduler.address}: {n_workers} workers")
    print(f"{len(X)} days, {X.shape[1]} inputs; "
          f"{len(search.param_grid['tlag__topo_derivative_threshold'])} thresholds x "
          f"{search.cv.n_splits} folds")
    start = time.perf_counter()
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)
    seconds = time.perf_counter() - start
finally:
    client.close()
    if cluster is not None:
        cluster.close()

# %%
# The results
# -----------
print(report(search))
best = search.best_estimator_.named_steps["tlag"]
print(f"best threshold: {search.best_params_['tlag__topo_derivative_threshold']} "
      f"(NSE {search.best_score_:.3f}); the refitted model has {best.n_layers_} LSTM "
      f"layer{'' if best.n_layers_ == 1 else 's'}")
print(f"search and refit took {seconds:.1f} s")
fig = plot_scores(search)
