"""Cross-validate a scaler + TLAG-LSTM pipeline on the Lahn data with TimeSeriesSplit.

Every fold trains on the past and is scored on the years that follow, with the
hydrological scorers NSE and KGE from :mod:`sktlag.metrics`. The depth each fold's
network grew to is printed next to its scores.

Run ``python examples/pipeline_timeseries_cv.py`` (several minutes per fold on a
laptop CPU) or add ``--fast`` for a tiny smoke run on the first rows.
"""

import argparse

from sklearn.model_selection import TimeSeriesSplit, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import PRESETS, TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import get_scorer


def main(fast: bool) -> None:
    X, y = load_lahn(return_X_y=True, as_frame=True)
    params = {"random_state": 0}
    if fast:
        X, y = X.iloc[:700], y.iloc[:700]
        params |= {**PRESETS["fast"], "max_epochs": 6}
    model = make_pipeline(StandardScaler(), TLAGRegressor(**params))
    # Pandas output keeps the dates through the scaler.
    model.set_output(transform="pandas")
    result = cross_validate(
        model, X, y,
        cv=TimeSeriesSplit(n_splits=2 if fast else 3),
        scoring={"nse": get_scorer("nse"), "kge": get_scorer("kge")},
        return_estimator=True,
    )
    for fold, (nse, kge, fitted) in enumerate(
        zip(result["test_nse"], result["test_kge"], result["estimator"], strict=True), start=1
    ):
        depth = fitted[-1].n_layers_
        print(f"fold {fold}: NSE {nse:.3f}  KGE {kge:.3f}  depth {depth}")
    print(f"mean NSE {result['test_nse'].mean():.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    main(parser.parse_args().fast)
