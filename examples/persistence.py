"""
Saving and loading a model: the .pth file and joblib
====================================================

``sktlag.save_model`` writes the grown architecture, its weights, the input and target
standardization and the history of the fit as plain data; ``sktlag.load_model`` reads
it with ``torch.load(weights_only=True)``, so opening a model file never runs code.
joblib pickles the whole Python object instead (only load pickles you trust). The
figure is drawn from the loaded model alone: the history travels with the file.

The full run::

    python examples/persistence.py

This page was built with ``--fast``: the first 600 days, a tiny network and 6 epochs.
"""

# %%
# Settings: the full run, or ``--fast`` for a smoke run in seconds.
import argparse

parser = argparse.ArgumentParser(description="Save a fitted model and load it back.")
parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
fast = parser.parse_args().fast

# %%
# Fit
# ---
import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sktlag
from sktlag.datasets import load_lahn
from sktlag.plots import plot_loss

X, y = load_lahn(return_X_y=True, as_frame=True)
params = {"random_state": 0}
if fast:
    X, y = X.iloc[:600], y.iloc[:600]
    params |= {**sktlag.PRESETS["fast"], "max_epochs": 6}
n_fit = int(0.8 * len(X))
model = make_pipeline(StandardScaler(), sktlag.TLAGRegressor(**params))
model.set_output(transform="pandas")
model.fit(X.iloc[:n_fit], y.iloc[:n_fit])
expected = model.predict(X.iloc[n_fit:])

# %%
# Save and load, both ways
# ------------------------
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "model.pth"
    sktlag.save_model(model, path)
    loaded = sktlag.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X.iloc[n_fit:]), expected)
    print(f".pth: {path.stat().st_size / 1024:.1f} KiB, {loaded[-1].n_layers_} layers, "
          "identical predictions")

    pickled = Path(folder) / "model.joblib"
    joblib.dump(model, pickled)
    np.testing.assert_array_equal(joblib.load(pickled).predict(X.iloc[n_fit:]), expected)
    print(f"joblib: {pickled.stat().st_size / 1024:.1f} KiB, identical predictions")

# %%
# The loaded model's training history
# -----------------------------------
fig = plot_loss(loaded)
