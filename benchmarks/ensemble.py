"""An ensemble of members against a single model, at the package defaults.

Usage::

    python benchmarks/ensemble.py --data ../shared/data/DemoData.xlsx   # Lahn and Yuliang
    python benchmarks/ensemble.py --quick                               # seconds (CI)
    python benchmarks/ensemble.py --records benchmarks/records/ensemble.json

For each basin (the embedded Lahn data, and the research demo table when ``--data`` is
given) the first 80 % of the rows fit (the estimator validates on the last 20 % of
those, which also calibrates the intervals) and the last 20 % test. One
``TLAGEnsemble`` of ``--members`` default ``TLAGRegressor`` members is fitted with
``n_jobs=--jobs`` worker processes of one torch thread each. Every member *is* a single
model (the same defaults, its own seed), so the single-model figures are the members'
own: their mean (what one fit with a random seed gives on average), median and range
of test NSE and KGE, and their median fit time (measured
inside each member's ``fit``, in a worker that had a core to itself when ``--jobs`` is
at most the number of cores). The ensemble's figures: test NSE and KGE of the mean,
coverage and mean width of the 90 % intervals on the test days, CRPS of the calibrated
predictive distribution (``scoringrules``), and the wall time of the whole ensemble fit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np  # noqa: E402
from _common import (  # noqa: F401 (REPO_ROOT puts the checkout on the path)
    REPO_ROOT,
    base_parser,
    demo_dataset,
    fmt,
    lahn_dataset,
    machine_info,
    markdown_table,
    median,
    warm_up,
    write_results,
)

QUICK = {"hidden_size": 4, "lookback": 10, "max_epochs": 3, "max_epochs_per_layer": 2,
         "max_layers": 2, "batch_size": 64, "derivative_samples": 16,
         "num_power_iterations": 6}
COVERAGE = 0.9


def run_basin(data: dict, members: int, jobs: int, quick: bool, seed: int) -> dict:
    from sktlag import TLAGEnsemble, TLAGRegressor
    from sktlag.metrics import kge, nse

    X, y, n = data["X"], data["y"], data["n_train"]
    member = TLAGRegressor(**(QUICK if quick else {}), n_threads=1)
    ensemble = TLAGEnsemble(member, n_members=members, n_jobs=jobs, random_state=seed)
    start = time.perf_counter()
    ensemble.fit(X[:n], y[:n])
    wall = time.perf_counter() - start
    X_test, y_test = X[n:], y[n:]
    # The test period directly follows the fit period: its first windows read the last
    # fit rows as history, as in the command.
    history = X[:n]
    single = []
    for m in ensemble.estimators_:
        pred = m.predict(X_test, history=history)
        single.append({"seed": int(m.random_state), "n_layers": int(m.n_layers_),
                       "nse": float(nse(y_test, pred)), "kge": float(kge(y_test, pred)),
                       "fit_s": float(m.fit_time_)})
    mean = ensemble.predict(X_test, history=history)
    scores = ensemble.score_intervals(X_test, y_test, coverage=COVERAGE, history=history)
    out = scores["outputs"][0]
    return {
        "basin": data["name"],
        "note": data["note"],
        "n_fit_rows": int(n),
        "n_test_rows": int(len(y_test)),
        "members": single,
        "ensemble": {"nse": float(nse(y_test, mean)), "kge": float(kge(y_test, mean)),
                     "coverage": out["coverage"], "mean_width": out["mean_width"],
                     "crps": out["crps"], "wall_s": wall},
        "target_std": float(np.std(y_test)),
        "jobs": jobs,
    }


def _jobs(run: dict) -> int:
    """Worker processes of a run; records written before they were stored used 2."""
    return run.get("jobs", 2)


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        nses = [m["nse"] for m in r["members"]]
        kges = [m["kge"] for m in r["members"]]
        one = median([m["fit_s"] for m in r["members"]])
        e = r["ensemble"]
        rows.append({
            "basin": r["basin"],
            "jobs": _jobs(r),
            "test days": r["n_test_rows"],
            "test std": fmt(r["target_std"]),
            "single NSE: mean, median (range)":
                f"{fmt(np.mean(nses))}, {fmt(median(nses))} ({fmt(min(nses))} to "
                f"{fmt(max(nses))})",
            "ensemble NSE": fmt(e["nse"]),
            "gain over mean, median":
                f"{e['nse'] - np.mean(nses):+.3f}, {e['nse'] - median(nses):+.3f}",
            "single KGE: mean, median": f"{fmt(np.mean(kges))}, {fmt(median(kges))}",
            "ensemble KGE": fmt(e["kge"]),
            "90 % coverage": f"{e['coverage']:.1%}",
            "mean width": fmt(e["mean_width"]),
            "CRPS": fmt(e["crps"]),
            "depths": ",".join(str(m["n_layers"]) for m in r["members"]),
            "one fit [s]: median (range)":
                f"{one:.0f} ({min(m['fit_s'] for m in r['members']):.0f} to "
                f"{max(m['fit_s'] for m in r['members']):.0f})",
            # Time ratios are printed by compare_jobs, against members that had a core
            # each: with more processes than cores the members' own times stretch.
            "ensemble [s]": f"{e['wall_s']:.0f}",
        })
    return markdown_table(rows)


def compare_jobs(runs: list[dict]) -> str:
    """Wall time of the same ensemble fitted with different numbers of processes.

    The reference of every ratio is the median member fit of the run with the fewest
    processes (there each member had a core to itself, if it had no more processes than
    cores); with more processes than cores the members' own fit times are stretched.
    """
    lines = []
    for basin in dict.fromkeys(r["basin"] for r in runs):
        same = sorted((r for r in runs if r["basin"] == basin), key=lambda r: _jobs(r))
        if len(same) < 2:
            continue
        one = median([m["fit_s"] for m in same[0]["members"]])
        walls = ", ".join(
            f"{r['ensemble']['wall_s']:.0f} s with {_jobs(r)} processes (ratio "
            f"{r['ensemble']['wall_s'] / one:.2f})" for r in same
        )
        lines.append(f"{basin}: one fit {one:.0f} s; ensemble {walls}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--data", type=Path, default=None,
                        help="the research demo table (DemoData.xlsx) for the Yuliang basin")
    parser.add_argument("--members", type=int, default=5, help="ensemble members (5)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes fitting members (2: one per core here)")
    parser.add_argument("--basins", nargs="+", choices=["lahn", "yuliang"],
                        default=["lahn", "yuliang"],
                        help="basins to run (yuliang needs --data)")
    parser.add_argument("--records", type=Path, nargs="+", default=None,
                        help="print the tables of earlier runs' JSON instead of running (a "
                        "later file replaces an earlier run of the same basin and processes)")
    args = parser.parse_args(argv)
    if args.records is not None:
        # A later record replaces an earlier run of the same basin and process count
        # (a rerun on a quiet machine).
        latest = {}
        for path in args.records:
            for run in json.loads(path.read_text())["results"]["basins"]:
                latest[(run["basin"], _jobs(run))] = run
        runs = sorted(latest.values(), key=lambda r: _jobs(r))
        print(table(runs))
        print()
        print(compare_jobs(runs))
        return
    members = 2 if args.quick else args.members
    start = time.perf_counter()
    warm_up()
    datasets = []
    if "lahn" in args.basins:
        datasets.append(lahn_dataset(rows=400 if args.quick else None))
    if "yuliang" in args.basins and args.data is not None:
        datasets.append(demo_dataset(args.data, rows=400 if args.quick else None))
    results = []
    for data in datasets:
        result = run_basin(data, members, args.jobs, args.quick, seed=0)
        results.append(result)
        print(table([result]), flush=True)
    text = table(results)
    print()
    print(text)
    settings = {"members": members, "jobs": args.jobs, "coverage": COVERAGE,
                "member_params": QUICK if args.quick else "TLAGRegressor() defaults",
                "member_threads": 1, "ensemble_random_state": 0}
    write_results(
        args.out, "ensemble", "Ensemble against single models",
        [("Test period (last 20 % of the rows)", text)],
        {"basins": results}, settings, machine_info(threads=1),
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    sys.exit(main())
