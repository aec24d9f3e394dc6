"""
Tuning the growth threshold with GridSearchCV
=============================================

``topo_derivative_threshold`` decides how large the topological derivative must be
for a layer to be inserted; ``inf`` switches growth off (a one-layer LSTM). The
search scores every setting by NSE on later years (``TimeSeriesSplit``) and refits
the best one on all rows. ``search.best_estimator_`` is then a grown model like any
other: the figure shows how it grew.

The full run (long: every candidate is fitted once per fold)::

    python examples/grid_search_threshold.py

This page was built with ``--fast``: the first 600 days, a tiny network, 6 epochs and
two of the three thresholds.
"""

# %%
# Settings: the full run, or ``--fast`` for a smoke run in seconds.
import argparse

parser = argparse.ArgumentParser(description="Tune the growth threshold.")
parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
fast = parser.parse_args().fast

# %%
# The search
# ----------
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import PRESETS, TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import get_scorer
from sktlag.plots import plot_evolution

X, y = load_lahn(return_X_y=True, as_frame=True)
params = {"random_state": 0}
thresholds = [np.inf, 0.3, 0.1]
if fast:
    X, y = X.iloc[:600], y.iloc[:600]
    params |= {**PRESETS["fast"], "max_epochs": 6}
    thresholds = [np.inf, 0.1]
model = Pipeline([("scale", StandardScaler()), ("tlag", TLAGRegressor(**params))])
model.set_output(transform="pandas")
search = GridSearchCV(
    model,
    {"tlag__topo_derivative_threshold": thresholds},
    cv=TimeSeriesSplit(n_splits=2),
    scoring=get_scorer("nse"),
)
search.fit(X, y)
table = pd.DataFrame(search.cv_results_)[
    ["param_tlag__topo_derivative_threshold", "mean_test_score", "rank_test_score"]
]
print(table.to_string(index=False))
best = search.best_estimator_[-1]
print(f"best threshold {search.best_params_['tlag__topo_derivative_threshold']}, "
      f"refitted depth {best.n_layers_}")

# %%
# How the refitted model grew
# ---------------------------
# Validation NSE, depth and losses per epoch; dashed lines mark insertions, the star
# the epoch whose state is the fitted model.
fig = plot_evolution(search.best_estimator_)
