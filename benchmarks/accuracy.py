"""Accuracy and search cost: growing TLAG-LSTM against a fixed-depth grid and ablations.

For every dataset and seed this fits

- ``tlag``: ``TLAGRegressor`` growing from 1 layer (topological insertion);
- ``fixed-d`` for d = 1 .. max_layers: the same network at fixed depth d, same hidden
  size, learning rate, batch size, patience and total epoch budget (the grid search a
  user would otherwise run);
- ``random``: the same growth schedule, but the layer goes to a random position with a
  random direction (scaled by the same backtracking search);
- ``append_zero``: the same growth schedule, a zero-initialized layer always on top.

Split as in the research code: the first 80 % of the rows train (the estimator validates
on the last 20 % of those), the last 20 % test; lookback 30. Writes one result pair per
dataset: ``accuracy_lahn`` and (with ``--data``) ``accuracy_demodata``.

Usage::

    python benchmarks/accuracy.py --data path/to/DemoData.xlsx --seeds 3
    python benchmarks/accuracy.py --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

from sktlag import TLAGRegressor
from sktlag.metrics import kge, nse

FULL = {
    "hidden_size": 16,
    "lookback": 30,
    "lr": 5e-3,
    "batch_size": 256,
    "max_epochs": 12,
    "max_epochs_per_layer": 4,
    "patience": 2,
    "moving_avg_window": 2,
    "derivative_samples": 256,
    "num_power_iterations": 40,
    "max_layers": 3,
}
QUICK = {
    "hidden_size": 8,
    "lookback": 30,
    "lr": 1e-2,
    "batch_size": 128,
    "max_epochs": 4,
    "max_epochs_per_layer": 2,
    "patience": 1,
    "moving_avg_window": 1,
    "derivative_samples": 32,
    "num_power_iterations": 10,
    "max_layers": 2,
}
QUICK_ROWS = 700


def variants(settings: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Name and estimator parameters of every model compared."""
    base = {k: v for k, v in settings.items() if k != "max_layers"}
    max_layers = settings["max_layers"]
    grown = {**base, "initial_num_layers": 1, "max_layers": max_layers}
    out = [("tlag", {**grown, "growth_strategy": "topological"})]
    for depth in range(1, max_layers + 1):
        # One architecture for the whole epoch budget; patience ends it as in TLAG.
        out.append((f"fixed-{depth}", {
            **base, "initial_num_layers": depth, "max_layers": depth,
            "max_epochs_per_layer": base["max_epochs"],
        }))
    out.append(("random", {**grown, "growth_strategy": "random"}))
    out.append(("append_zero", {**grown, "growth_strategy": "append_zero"}))
    return out


def run_one(data: dict[str, Any], params: dict[str, Any], seed: int, threads: int) -> dict:
    """Fit one model; test scores on the last 20 % of the rows."""
    X, y, n_train = data["X"], data["y"], data["n_train"]
    est = TLAGRegressor(**params, n_threads=threads, random_state=seed)
    start = time.perf_counter()
    est.fit(X[:n_train], y[:n_train])
    fit_seconds = time.perf_counter() - start
    # Predicting the whole series gives every test row its real preceding rows.
    pred = est.predict(X)[n_train:]
    truth = y[n_train:]
    growth = est.derivative_history_
    growth_seconds = float(growth["seconds"].sum()) if len(growth) else 0.0
    depths = [int(d) for d in est.history_[:, "n_layers"]]
    return {
        "test_nse": float(nse(truth, pred)),
        "test_kge": float(kge(truth, pred)),
        "best_valid_nse": float(np.nanmax(est.history_[:, "valid_nse"])),
        "final_depth": int(est.n_layers_),
        "max_depth_tried": max(depths),
        "epochs": len(est.history_),
        "fit_seconds": fit_seconds,
        "growth_seconds": growth_seconds,
        "n_hvp": int(growth["n_hvp"].sum()) if len(growth) else 0,
    }


def summarize(runs: list[dict[str, Any]], names: list[str], max_layers: int) -> dict:
    """Per-variant medians and spreads; grid cost and the validation-selected depth."""
    rows = []
    for name in names:
        mine = [r for r in runs if r["variant"] == name]
        rows.append({
            "model": name,
            "test NSE (median)": C.median([r["test_nse"] for r in mine]),
            "NSE min to max": C.spread([r["test_nse"] for r in mine]),
            "test KGE (median)": C.median([r["test_kge"] for r in mine]),
            "KGE min to max": C.spread([r["test_kge"] for r in mine]),
            "final depth": " ".join(str(r["final_depth"]) for r in mine),
            "epochs (median)": C.median([r["epochs"] for r in mine]),
            "fit s (median)": C.median([r["fit_seconds"] for r in mine]),
        })
    grid_names = [f"fixed-{d}" for d in range(1, max_layers + 1)]
    per_seed = []
    for seed in sorted({r["seed"] for r in runs}):
        seed_runs = {r["variant"]: r for r in runs if r["seed"] == seed}
        grid = [seed_runs[n] for n in grid_names if n in seed_runs]
        if "tlag" not in seed_runs or not grid:
            continue
        grid_seconds = sum(r["fit_seconds"] for r in grid)
        picked = max(grid, key=lambda r: r["best_valid_nse"])
        tlag = seed_runs["tlag"]
        per_seed.append({
            "seed": seed,
            "TLAG fit s": tlag["fit_seconds"],
            "grid fit s (sum)": grid_seconds,
            "TLAG / grid time": tlag["fit_seconds"] / grid_seconds,
            "TLAG growth share": tlag["growth_seconds"] / tlag["fit_seconds"],
            "TLAG depth": tlag["final_depth"],
            "TLAG test NSE": tlag["test_nse"],
            "grid pick (by valid NSE)": picked["variant"],
            "grid pick test NSE": picked["test_nse"],
        })
    medians = {name: next(r for r in rows if r["model"] == name)["test NSE (median)"]
               for name in names}
    best_fixed = max(grid_names, key=lambda n: medians[n])
    return {
        "table": rows,
        "per_seed": per_seed,
        "best_fixed_by_median_test_nse": best_fixed,
        "best_fixed_median_test_nse": medians[best_fixed],
        "tlag_median_test_nse": medians["tlag"],
        "median_tlag_over_grid_time": C.median([s["TLAG / grid time"] for s in per_seed]),
        "median_growth_share": C.median([s["TLAG growth share"] for s in per_seed]),
        "median_grid_pick_test_nse": C.median([s["grid pick test NSE"] for s in per_seed]),
    }


def run_dataset(key: str, data: dict[str, Any], args: argparse.Namespace,
                settings: dict[str, Any], machine: dict[str, Any]) -> None:
    seeds = C.seeds_from(args)
    names = [name for name, _ in variants(settings)]
    runs = []
    start = time.perf_counter()
    for seed in seeds:
        for name, params in variants(settings):
            result = run_one(data, params, seed, args.threads)
            result.update(variant=name, seed=seed)
            runs.append(result)
            print(
                f"[{key}] seed {seed} {name:12s} test NSE {result['test_nse']:.3f} "
                f"KGE {result['test_kge']:.3f} depth {result['final_depth']} "
                f"{result['fit_seconds']:.1f} s", flush=True,
            )
    summary = summarize(runs, names, settings["max_layers"])
    seconds = time.perf_counter() - start
    n, n_train = len(data["y"]), data["n_train"]
    tlag = summary["tlag_median_test_nse"]
    best = summary["best_fixed_median_test_nse"]
    verdict = (
        f"Median test NSE: TLAG {tlag:.3f}; best fixed depth "
        f"({summary['best_fixed_by_median_test_nse']}, chosen on the test set, an upper "
        f"bound for a grid) {best:.3f}; a grid picked by validation NSE "
        f"{summary['median_grid_pick_test_nse']:.3f}. TLAG took "
        f"{summary['median_tlag_over_grid_time']:.2f} of the whole grid's wall time "
        f"(median over seeds); growth decisions were "
        f"{100 * summary['median_growth_share']:.1f} % of TLAG's fit time."
    )
    sections = [
        ("Data", f"{data['name']}: {n} rows, {data['X'].shape[1]} inputs, first {n_train} rows "
                 f"train (last 20 % of them validate), last {n - n_train} rows test. "
                 f"{data['note']}. Seeds: {seeds}."),
        ("Test scores by model", C.markdown_table(summary["table"])),
        ("Search cost per seed", C.markdown_table(summary["per_seed"])),
        ("Summary", verdict),
    ]
    C.write_results(
        args.out, f"accuracy_{key}", f"Accuracy and search cost: {data['name']}", sections,
        {"runs": runs, "summary": summary}, {**settings, "seeds": seeds,
                                             "threads": args.threads, "quick": args.quick},
        machine, seconds,
    )


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="path to DemoData.xlsx (research layout); Lahn always runs")
    parser.add_argument("--lahn-rows", type=int, default=None,
                        help="use only the last N days of the Lahn series (default: all)")
    parser.add_argument("--only", choices=["lahn", "demodata"], default=None,
                        help="run one dataset only")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    settings = dict(QUICK if args.quick else FULL)
    C.warm_up()
    machine = C.machine_info(args.threads)
    rows = QUICK_ROWS if args.quick else None
    if args.only in (None, "lahn"):
        lahn_rows = rows if args.lahn_rows is None else args.lahn_rows
        run_dataset("lahn", C.lahn_dataset(lahn_rows), args, settings, machine)
    if args.only in (None, "demodata"):
        if args.data is None:
            print("no --data given: DemoData.xlsx skipped")
        else:
            run_dataset("demodata", C.demo_dataset(args.data, rows), args, settings, machine)


if __name__ == "__main__":
    main()
