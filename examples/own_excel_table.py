"""
Your own Excel table: read, fit, write the artifacts
====================================================

The research layout has the columns year, month, day, then the discharge, then one
column per station. This example writes such a workbook from the Lahn data into a
temporary folder (replace ``path`` with your file), reads it with
:func:`sktlag.io.read_table` (which checks dates and values and says exactly what is
wrong), fits on the first 80 % and scores the last 20 %, then writes the artifacts
of :func:`sktlag.write_artifacts`. The discharge column is named ``discharge_m3s``,
so the figures know its unit.

The full run::

    python examples/own_excel_table.py

This page was built with ``--fast``: the first 600 days, a tiny network and 6 epochs.
"""

# %%
# Settings: the full run, or ``--fast`` for a smoke run in seconds.
import argparse

parser = argparse.ArgumentParser(description="Fit on your own Excel table.")
parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
fast = parser.parse_args().fast

# %%
# A workbook in the research layout
# ---------------------------------
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sktlag
from sktlag.datasets import load_lahn
from sktlag.io import read_table
from sktlag.metrics import evaluate
from sktlag.plots import plot_prediction

files = tempfile.TemporaryDirectory()  # removed at the end
folder = Path(files.name)
path = folder / "my_basin.xlsx"
frame = load_lahn(as_frame=True).frame.iloc[:600 if fast else None]
workbook = pd.DataFrame({"Year": frame.index.year, "month": frame.index.month,
                         "day": frame.index.day})
workbook["discharge_m3s"] = frame["q_kalkofen"].to_numpy()
for station in ("p_dillenburg", "p_marburg", "p_leun", "p_kalkofen", "t_kalkofen"):
    workbook[station] = frame[station].to_numpy()
workbook.to_excel(path, index=False)

# %%
# Read, fit and score
# -------------------
table = read_table(path)  # year, month, day first: the research layout
print(f"{path.name}: {table.layout} layout, target {table.target_names[0]}, "
      f"stations {', '.join(table.feature_names)}, {len(table.X)} days")
n_fit = int(0.8 * len(table.X))
X_fit, X_test = table.X.iloc[:n_fit], table.X.iloc[n_fit:]
y_fit, y_test = table.y.iloc[:n_fit], table.y.iloc[n_fit:]

params = {"random_state": 0}
if fast:
    params |= {**sktlag.PRESETS["fast"], "max_epochs": 6}
model = make_pipeline(StandardScaler(), sktlag.TLAGRegressor(**params))
model.set_output(transform="pandas")
model.fit(X_fit, y_fit)
scores = evaluate(y_test, model.predict(X_test), metrics=["nse", "kge", "rmse"])
print(scores.round(3).to_string())

# %%
# The artifacts
# -------------
# ``lstm_prediction.png`` among them is the figure below.
written = sktlag.write_artifacts(model, folder / "results", X_test=X_test, y_test=y_test,
                                 X_train=X_fit, y_train=y_fit)
print("artifacts:", ", ".join(p.name for p in written.values()))
fig = plot_prediction(y_test, model.predict(X_test), X_test.index,
                      names=table.target_names)
files.cleanup()
