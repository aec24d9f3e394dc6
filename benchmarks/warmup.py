"""Cross-validated NSE on the Lahn data: padded start of each test fold vs real warm-up.

With ``TimeSeriesSplit`` every test fold directly follows its training rows. Predicting
the fold as a bare array pads the first ``lookback - 1`` windows; predicting it as a
DataFrame whose index continues the training index lets the estimator read the real
preceding days. Both predictions come from the same fitted model, so the difference is
the warm-up alone.

Usage::

    python benchmarks/warmup.py                # full: lookback 365, 5 folds
    python benchmarks/warmup.py --quick        # seconds, for CI
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import nse


def run(quick: bool, seed: int) -> dict:
    X, y = load_lahn(return_X_y=True, as_frame=True)
    if quick:
        X, y = X.iloc[:1500], y.iloc[:1500]
        lookback, n_splits = 60, 2
        params = dict(hidden_size=8, max_epochs=3, max_epochs_per_layer=3)
    else:
        lookback, n_splits = 365, 5
        params = dict(hidden_size=16, max_epochs=15, max_epochs_per_layer=15, lr=3e-3)
    rows = []
    for fold, (train, test) in enumerate(TimeSeriesSplit(n_splits=n_splits).split(X)):
        start = time.perf_counter()
        pipe = make_pipeline(
            StandardScaler(),
            TLAGRegressor(lookback=lookback, topo_derivative_threshold=np.inf,
                          random_state=seed, **params),
        ).set_output(transform="pandas")
        pipe.fit(X.iloc[train], y.iloc[train])
        X_test, y_test = X.iloc[test], y.iloc[test].to_numpy()
        warm = pipe.predict(X_test)
        # A bare array has no index to continue: the same model, padded.
        padded = pipe[-1].predict(pipe[0].transform(X_test).set_axis(range(len(test))))
        head = slice(0, lookback - 1)
        rows.append({
            "fold": fold,
            "test_start": str(X_test.index[0].date()),
            "test_days": len(test),
            "nse_padded": nse(y_test, padded),
            "nse_warm_up": nse(y_test, warm),
            "nse_first_lookback_days_padded": nse(y_test[head], padded[head]),
            "nse_first_lookback_days_warm_up": nse(y_test[head], warm[head]),
            "seconds": time.perf_counter() - start,
        })
        print(rows[-1], flush=True)
    summary = {
        key: float(np.mean([r[key] for r in rows]))
        for key in ("nse_padded", "nse_warm_up", "nse_first_lookback_days_padded",
                    "nse_first_lookback_days_warm_up")
    }
    return {"lookback": lookback, "n_splits": n_splits, "params": params, "seed": seed,
            "folds": rows, "mean": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    result = run(args.quick, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warmup.json").write_text(json.dumps(result, indent=2))
    lines = ["| fold | test start | NSE padded | NSE warm-up | first-window NSE padded "
             "| first-window NSE warm-up |", "|---|---|---|---|---|---|"]
    for r in result["folds"]:
        lines.append(
            f"| {r['fold']} | {r['test_start']} | {r['nse_padded']:.3f} | "
            f"{r['nse_warm_up']:.3f} | {r['nse_first_lookback_days_padded']:.3f} | "
            f"{r['nse_first_lookback_days_warm_up']:.3f} |"
        )
    m = result["mean"]
    lines.append(
        f"| mean | | {m['nse_padded']:.3f} | {m['nse_warm_up']:.3f} | "
        f"{m['nse_first_lookback_days_padded']:.3f} | {m['nse_first_lookback_days_warm_up']:.3f} |"
    )
    table = "\n".join(lines)
    (args.out / "warmup.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
