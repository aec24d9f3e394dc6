"""Does the first growth decision's promise hold on held-out windows? On every basin we have.

For each basin and seed this fits the package defaults up to their first growth decision
(the same epochs, learning-rate schedule and restored best state as a growing fit) with
``derivative_criterion="holdout"`` and a threshold no statistic reaches, so the decision
computes everything and inserts nothing. It prints, per basin and seed:

- the validation NSE of the one-layer network at the decision;
- the relative derivative ``d / (2 L)`` on the training sample (the default criterion);
- the held-out statistic of the same direction (``sktlag.growth.holdout_statistic``):
  its mean second-order gain over 8 blocks of validation windows, in units of its
  standard error. Near 0 the direction's promise is what fitting the training sample's
  noise gives; above about 2 it holds on windows it was not chosen on.

Inputs are standardized (``StandardScaler`` in a ``Pipeline``) and fit on the first 80 %
of the days, as in ``growth_pays.py``. Whether a second layer then helped is what
``growth_pays.py`` records (``benchmarks/records/growth_jobs.jsonl``).

Usage::

    python benchmarks/holdout_check.py --data path/to/DemoData.xlsx \\
        --vistula path/to/modelskill.whl --seeds 3
    python benchmarks/holdout_check.py --records benchmarks/records/holdout_check.json
    python benchmarks/holdout_check.py --quick
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import _basins
import _common as C
from skorch.callbacks import Callback

#: A threshold no held-out statistic reaches: the decision computes and never inserts.
NEVER = 1e300

QUICK: dict[str, Any] = {
    "hidden_size": 8, "lookback": 20, "max_epochs": 6, "max_epochs_per_layer": 3,
    "patience": 2, "moving_avg_window": 2, "derivative_samples": 32,
    "num_power_iterations": 10,
}


class EndAtFirstDecision(Callback):
    """End training once growth has ended: here only the decision is wanted, not the
    training on that follows a decision taken at the epoch cap."""

    def on_epoch_begin(self, net, **kwargs):
        from sktlag.callbacks import GrowthStopped

        if len(net.history) > 1 and net.history[-2].get("growth_stopped"):
            del net.history[-1]  # the epoch that will not run
            raise GrowthStopped("first decision taken")


def first_decision(basin, seed: int, quick: bool, threads: int) -> dict[str, Any]:
    """The defaults fitted to their first decision on one basin: its numbers."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor

    X, y = basin.X, basin.y
    if quick:
        X, y = X.iloc[-1500:], y.iloc[-1500:]
    n_fit = int(len(X) * C.TRAIN_FRACTION)
    est = TLAGRegressor(**(QUICK if quick else {}), derivative_criterion="holdout",
                        topo_derivative_threshold=NEVER, n_threads=threads,
                        random_state=seed, callbacks=[("end", EndAtFirstDecision())])
    start = time.perf_counter()
    make_pipeline(StandardScaler(), est).fit(X.iloc[:n_fit], y.iloc[:n_fit])
    seconds = time.perf_counter() - start
    decisions = est.derivative_history_
    if not len(decisions) or decisions["rule"].iloc[0] != "threshold":
        raise RuntimeError(f"{basin.name}: the fit ended before its first decision "
                           f"({est.growth_stop_rule_})")
    first = decisions.iloc[0]
    return {"basin": basin.name, "seed": seed, "epoch": int(first["epoch"]),
            "epochs trained": len(est.history_),
            "valid NSE": float(first["architecture_score"]),
            "relative derivative": float(first["relative_derivative_1"]),
            "held-out statistic": float(first["holdout_statistic_1"]),
            "decision s": float(first["seconds"]), "fit s": seconds}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per basin: the seeds' statistics and how many exceed 2."""
    out = []
    for basin in dict.fromkeys(r["basin"] for r in rows):
        group = [r for r in rows if r["basin"] == basin]
        stats = [r["held-out statistic"] for r in group]
        out.append({"basin": basin, "seeds": len(group),
                    "valid NSE (median)": C.median([r["valid NSE"] for r in group]),
                    "relative derivative": C.spread([r["relative derivative"] for r in group]),
                    "held-out statistic": C.spread(stats),
                    "above 2": sum(s > 2 for s in stats if math.isfinite(s))})
    return out


def group_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group of basins (Lahn, Yuliang, Vistula) and over all: the validation NSE at
    the decision, the relative derivatives (and how many are at or below the default
    threshold, where the default stops growth), the statistics' range, median and how
    many exceed 2."""
    from sktlag import TLAGRegressor

    threshold = TLAGRegressor().topo_derivative_threshold
    groups = {r["basin"].split("_")[0]: None for r in rows}
    out = []
    for group in [*groups, "all"]:
        members = [r for r in rows if group == "all" or r["basin"].split("_")[0] == group]
        stats = [r["held-out statistic"] for r in members]
        rel = [r["relative derivative"] for r in members]
        out.append({"basins": group, "decisions": len(stats),
                    "valid NSE": C.spread([r["valid NSE"] for r in members]),
                    "relative derivative": C.spread(rel),
                    f"relative <= {threshold:g}": sum(v <= threshold for v in rel),
                    "held-out statistic": C.spread(stats, digits=2),
                    "held-out statistic (median)": C.median(stats),
                    "above 2": sum(v > 2 for v in stats if math.isfinite(v))})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--data", type=Path, default=None, help="the Yuliang demo table")
    parser.add_argument("--vistula", type=Path, default=None,
                        help="modelskill 1.3.2 wheel or vistula.msk (Vistula gauges)")
    parser.add_argument("--basins", nargs="*", default=None, help="basin or group names")
    parser.add_argument("--records", type=Path, default=None,
                        help="only print the tables again from a saved holdout_check.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.records is not None:
        rows = json.loads(args.records.read_text())["results"]["rows"]
    else:
        C.set_threads(args.threads)
        basins = _basins.load_basins(args.basins, demo_path=args.data,
                                     vistula_path=args.vistula)
        if args.quick and not args.basins:
            basins = basins[:1]
        rows = []
        for seed in C.seeds_from(args):
            for basin in basins:
                rows.append(first_decision(basin, seed, args.quick, args.threads))
                print({k: C.fmt(v) for k, v in rows[-1].items()}, flush=True)
    per_basin, per_group = summary(rows), group_summary(rows)
    C.write_results(
        args.out, "holdout_check", "The first growth decision, checked on held-out windows",
        [("Per basin and seed", C.markdown_table(rows)),
         ("Per basin", C.markdown_table(per_basin)),
         ("Per group of basins", C.markdown_table(per_group))],
        {"rows": rows, "summary": per_basin, "groups": per_group},
        {"quick": args.quick, "seeds": sorted({r["seed"] for r in rows}),
         "threads": args.threads, "records": args.records},
        C.machine_info(args.threads), time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
