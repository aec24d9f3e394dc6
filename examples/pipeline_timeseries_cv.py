"""
Cross-validation on later years with TimeSeriesSplit
====================================================

A scaler and a TLAG-LSTM in one pipeline, cross-validated on the Lahn data: every fold
trains on the past and is scored on the years that follow, with the hydrological
scorers NSE and KGE from :mod:`sktlag.metrics`. The depth each fold's network grew to
is printed next to its scores, and the figure shows the last fold's test period.

The full run, several minutes per fold on a laptop CPU::

    python examples/pipeline_timeseries_cv.py

This page was built with ``--fast``: the first 700 days, a tiny network and 6 epochs,
so the scores below say nothing about accuracy.
"""

# %%
# Settings: the full run, or ``--fast`` for a smoke run in seconds.
import argparse

parser = argparse.ArgumentParser(description="Cross-validate a TLAG-LSTM pipeline.")
parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
fast = parser.parse_args().fast

# %%
# Cross-validate
# --------------
# Pandas output keeps the dates through the scaler, so the estimator sees them.
from sklearn.model_selection import TimeSeriesSplit, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import PRESETS, TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import get_scorer
from sktlag.plots import plot_prediction

X, y = load_lahn(return_X_y=True, as_frame=True)
params = {"random_state": 0}
if fast:
    X, y = X.iloc[:700], y.iloc[:700]
    params |= {**PRESETS["fast"], "max_epochs": 6}
model = make_pipeline(StandardScaler(), TLAGRegressor(**params))
model.set_output(transform="pandas")
result = cross_validate(
    model, X, y,
    cv=TimeSeriesSplit(n_splits=2 if fast else 3),
    scoring={"nse": get_scorer("nse"), "kge": get_scorer("kge")},
    return_estimator=True,
    return_indices=True,
)
for fold, (nse, kge, fitted) in enumerate(
    zip(result["test_nse"], result["test_kge"], result["estimator"], strict=True), start=1
):
    depth = fitted[-1].n_layers_
    print(f"fold {fold}: NSE {nse:.3f}  KGE {kge:.3f}  depth {depth}")
print(f"mean NSE {result['test_nse'].mean():.3f}")

# %%
# The last fold's test period
# ---------------------------
# Predicted from the years before it; the unit comes with the embedded data.
test = result["indices"]["test"][-1]
fig = plot_prediction(y.iloc[test], result["estimator"][-1].predict(X.iloc[test]),
                      X.index[test], names=[y.name], title="Last fold")
