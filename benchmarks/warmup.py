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

import time

import _common as C
import numpy as np
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.metrics import nse


def run(quick: bool, seed: int, threads: int = 1) -> dict:
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
                          random_state=seed, n_threads=threads, **params),
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
        print(rows[-1], flush=True)  # folds take minutes in the full run
    summary = {
        key: float(np.mean([r[key] for r in rows]))
        for key in ("nse_padded", "nse_warm_up", "nse_first_lookback_days_padded",
                    "nse_first_lookback_days_warm_up")
    }
    return {"lookback": lookback, "n_splits": n_splits, "params": params, "seed": seed,
            "folds": rows, "mean": summary}


def main(argv: list[str] | None = None) -> None:
    args = C.base_parser(__doc__.splitlines()[0], default_seeds=1).parse_args(argv)
    C.set_threads(args.threads)
    machine = C.machine_info(args.threads)
    C.warm_up()
    start = time.perf_counter()
    result = run(args.quick, C.seeds_from(args)[0], args.threads)
    rows = [
        {
            "fold": r["fold"],
            "test start": r["test_start"],
            "NSE padded": r["nse_padded"],
            "NSE warm-up": r["nse_warm_up"],
            "NSE first lookback days, padded": r["nse_first_lookback_days_padded"],
            "NSE first lookback days, warm-up": r["nse_first_lookback_days_warm_up"],
        }
        for r in result["folds"]
    ]
    m = result["mean"]
    rows.append({
        "fold": "mean", "test start": "",
        "NSE padded": m["nse_padded"], "NSE warm-up": m["nse_warm_up"],
        "NSE first lookback days, padded": m["nse_first_lookback_days_padded"],
        "NSE first lookback days, warm-up": m["nse_first_lookback_days_warm_up"],
    })
    C.write_results(
        args.out, "warmup", "Warm-up: padded vs real history in TimeSeriesSplit folds",
        [("Cross-validated NSE on the Lahn data", C.markdown_table(rows))],
        data=result,
        settings={"quick": args.quick, "lookback": result["lookback"],
                  "n_splits": result["n_splits"], "params": result["params"],
                  "seed": result["seed"]},
        machine=machine, seconds=time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
