"""Which parts of the training recipe make a streamflow LSTM accurate: a factor study.

Every configuration is a fixed-depth, one-layer ``TLAGRegressor`` (growth off), so the
study measures the training recipe alone. The reference recipe (``reference``) is the
configuration of NeuralHydrology's ``cudalstm`` that the side-by-side benchmark
(``vs_neuralhydrology.py``) runs: hidden 64, lookback 365, Adam at 1e-3 then 5e-4 from
epoch 20, forget-gate bias 3, dropout 0.4 before the head, gradient norm clipped at 1,
batch 256, 100 epochs. Each other configuration changes one factor of it (or names a
budget variant); ``previous-defaults`` is the package's first-release recipe.

Protocol (the same on every basin): inputs standardized by a ``StandardScaler`` in a
``Pipeline``; fit on the first 80 % of the days (the estimator validates on the last
20 % of those and keeps the best validation epoch); predict the whole series; score
NSE and KGE on the last 20 % of the days. Seeds 0, 1, ...

``--base defaults`` applies the same changes to the package defaults instead (growth
on, the estimator as a user gets it), ``--base one-layer`` to the package defaults at
one layer with growth off; with the configurations ``batch-16`` ... ``batch-256`` and
``lookback-90`` they are the study behind ``batch_size="auto"``, and with ``lookback-90``
and ``lookback-365`` the lookback study by record length.
``--last-years 3 5 10`` cuts every basin to its last 3, 5 and 10 years
(:func:`_basins.last_years`, named ``<basin>_last<N>y`` like the basins of the group
``lahn_short``), the cheapest way to study short records on known data.

Jobs (basin x configuration x seed) run in ``--jobs`` processes, one torch thread each;
every finished job is appended to ``recipe_jobs.jsonl`` in ``--out`` at once, so an
interrupted run keeps what it finished (``--resume`` skips those).

Usage::

    python benchmarks/recipe.py --data path/to/DemoData.xlsx --seeds 3 --jobs 8 --device cuda
    python benchmarks/recipe.py --base defaults --basins lahn_kalkofen yuliang \
        --configs batch-16 batch-32 batch-64 batch-128 batch-256 --last-years 3 5 10
    python benchmarks/recipe.py --quick
"""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path
from typing import Any

import _basins
import _common as C

REFERENCE: dict[str, Any] = {
    "hidden_size": 64,
    "lookback": 365,
    "lr": 1e-3,
    "lr_schedule": {20: 0.5},
    "initial_forget_bias": 3.0,
    "output_dropout": 0.4,
    "clip_gradient_norm": 1.0,
    "batch_size": 256,
    "max_epochs": 100,
    # No early end: the reference trains its whole epoch budget and the best
    # validation epoch is kept.
    "patience": 100,
    "max_epochs_per_layer": 100,
}

#: One change of the reference recipe per entry (None: the reference itself).
CONFIGS: dict[str, dict[str, Any] | None] = {
    "reference": None,
    "lookback-180": {"lookback": 180},
    "lookback-60": {"lookback": 60},
    "no-forget-bias": {"initial_forget_bias": 0.0},
    "no-clipping": {"clip_gradient_norm": None},
    "no-lr-schedule": {"lr_schedule": None},
    "no-output-dropout": {"output_dropout": 0.0},
    "hidden-32": {"hidden_size": 32},
    "batch-16": {"batch_size": 16},
    "batch-32": {"batch_size": 32},
    "batch-64": {"batch_size": 64},
    "batch-128": {"batch_size": 128},
    "batch-256": {"batch_size": 256},
    "lookback-90": {"lookback": 90},
    # The reference's own window, as a change of the package defaults (--base defaults).
    "lookback-365": {"lookback": 365},
    "early-stopping": {"patience": 10, "moving_avg_window": 5},
    "epochs-30": {"max_epochs": 30, "max_epochs_per_layer": 30},
    "lookback-180-epochs-40": {"lookback": 180, "max_epochs": 40, "max_epochs_per_layer": 40},
    "previous-defaults": "previous",  # type: ignore[dict-item]
}

#: The first release's defaults (hidden 32, lookback 60, lr 2e-3, batch 128, 120 epochs,
#: patience 8 on a 5-epoch moving average), at one layer.
PREVIOUS: dict[str, Any] = {
    "hidden_size": 32, "lookback": 60, "lr": 2e-3, "batch_size": 128, "max_epochs": 120,
    "max_epochs_per_layer": 40, "patience": 8, "moving_avg_window": 5,
    "output_dropout": 0.0, "initial_forget_bias": 0.0, "clip_gradient_norm": None,
    "lr_schedule": None,
}

QUICK: dict[str, Any] = {
    "hidden_size": 8, "lookback": 30, "batch_size": 128, "max_epochs": 3,
    "max_epochs_per_layer": 3, "patience": 3, "lr_schedule": {2: 0.5},
}


def config_params(name: str, quick: bool, base: str = "reference") -> dict[str, Any]:
    """Estimator parameters of configuration ``name``: a change of the reference recipe
    at one layer with growth off, or (``base="defaults"``) of the package defaults."""
    change = CONFIGS[name]
    if change == "previous":
        params = dict(PREVIOUS)
    elif base in ("defaults", "one-layer"):
        params = dict(change or {})
    else:
        params = {**REFERENCE, **(change or {})}
    if quick:
        # Tiny, but the factor the configuration changes stays changed.
        changed = change if isinstance(change, dict) else {}
        params.update({k: v for k, v in QUICK.items() if k not in changed})
    if base in ("reference", "one-layer"):
        params.update(initial_num_layers=1, max_layers=1, topo_derivative_threshold=math.inf)
    return params


def basin_label(name: str, years: int | None) -> str:
    """The name of a basin, or of its last ``years`` years."""
    return name if years is None else f"{name}_last{years}y"


def basin_series(source: str, years: int | None, demo_path: str | None, rows: int | None = None):
    """Inputs and target of a basin, of its last ``years`` years, or of its last ``rows``
    rows (quick mode)."""
    basin, = _basins.load_basins([source], demo_path=demo_path)  # one basin, not a group
    if years:
        basin = _basins.last_years(basin, years)
    X, y = basin.X, basin.y
    if rows:
        X, y = X.iloc[-rows:], y.iloc[-rows:]
    return X, y


def training_windows(y_fit, lookback: int) -> int:
    """Training windows of a fit on ``y_fit`` (the estimator's own split and defaults)."""
    import numpy as np

    from sktlag import TLAGRegressor
    from sktlag.windows import fit_split

    fraction = TLAGRegressor().validation_fraction
    values = np.asarray(y_fit, dtype=float).reshape(len(y_fit), -1)
    return len(fit_split(values, lookback, fraction)[0])


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one configuration on one basin with one seed; test scores and times."""
    import numpy as np
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor
    from sktlag.metrics import kge, nse

    torch.set_num_threads(1)
    X, y = basin_series(job["source"], job["years"], job["demo_path"], job["rows"])
    n_fit = int(len(X) * C.TRAIN_FRACTION)
    params = config_params(job["config"], job["quick"], job["base"])
    model = make_pipeline(
        StandardScaler(),
        TLAGRegressor(**params, device=job["device"], n_threads=1, random_state=job["seed"],
                      missing_target="mask"),
    )
    start = time.perf_counter()
    model.fit(X.iloc[:n_fit], y.iloc[:n_fit])
    fit_seconds = time.perf_counter() - start
    pred = np.asarray(model.predict(X)).ravel()[n_fit:]
    obs = y.to_numpy(dtype=float)[n_fit:]
    keep = ~np.isnan(obs)
    est = model[-1]
    history = est.history_
    best = max((row for row in history if "valid_nse" in row), key=lambda r: r["valid_score"])
    return {
        **{k: job[k] for k in ("basin", "config", "seed", "device")},
        "base": job["base"],
        "batch_size": est.batch_size_,
        "n_layers": int(est.n_layers_),
        "train_windows": training_windows(y.iloc[:n_fit], est.lookback),
        "years": len(X) / _basins.DAYS_PER_YEAR,
        "test_nse": float(nse(obs[keep], pred[keep])),
        "test_kge": float(kge(obs[keep], pred[keep])),
        "valid_nse": float(best["valid_nse"]),
        "best_epoch": int(best["epoch"]),
        "epochs": len(history),
        "fit_seconds": fit_seconds,
        "seconds_per_epoch": fit_seconds / max(len(history), 1),
    }


def summarize(results: list[dict[str, Any]], configs: list[str]) -> list[dict[str, Any]]:
    """One row per (basin, configuration): medians over seeds and the change against
    the reference configuration's median on the same basin."""
    rows = []
    basins = sorted({r["basin"] for r in results})
    for basin in basins:
        mine = [r for r in results if r["basin"] == basin]
        ref = C.median([r["test_nse"] for r in mine if r["config"] == "reference"])
        for config in configs:
            runs = [r for r in mine if r["config"] == config]
            if not runs:
                continue
            nses = [r["test_nse"] for r in runs]
            rows.append({
                "basin": basin,
                # Records made before the length was recorded have none.
                "years": runs[0].get("years", math.nan),
                "configuration": config,
                "seeds": len(runs),
                "test NSE (median)": C.median(nses),
                "NSE min to max": C.spread(nses),
                "change vs reference": C.median(nses) - ref,
                "test KGE (median)": C.median([r["test_kge"] for r in runs]),
                "best epoch (median)": C.median([r["best_epoch"] for r in runs]),
                "epochs (median)": C.median([r["epochs"] for r in runs]),
                "fit s (median)": C.median([r["fit_seconds"] for r in runs]),
            })
    return rows


def across_basins(rows: list[dict[str, Any]], configs: list[str],
                  runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: the median over basins of the per-basin median change, and
    the median fit time over all its runs."""
    out = []
    for config in configs:
        mine = [r for r in rows if r["configuration"] == config]
        if not mine:
            continue
        changes = [r["change vs reference"] for r in mine]
        out.append({
            "configuration": config,
            "basins": len(mine),
            "median change of test NSE vs reference": C.median(changes),
            "worst basin": min(changes),
            "best basin": max(changes),
            "median test NSE": C.median([r["test NSE (median)"] for r in mine]),
            "fit s (median over runs)": C.median([r["fit_seconds"] for r in runs
                                                  if r["config"] == config]),
        })
    return out


def across_lengths(rows: list[dict[str, Any]], configs: list[str],
                   runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`across_basins` for each record length (whole years) on its own; empty when
    fewer than two lengths are known."""
    known = [r for r in rows if math.isfinite(r["years"])]
    lengths = sorted({round(r["years"]) for r in known})
    if len(lengths) < 2:
        return []
    out = []
    for years in lengths:
        basins = {r["basin"] for r in known if round(r["years"]) == years}
        out.extend({"years": years, **row} for row in across_basins(
            [r for r in rows if r["basin"] in basins], configs,
            [r for r in runs if r["basin"] in basins]))
    return out


def batch_table(results: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batch-size study: per basin the median test NSE of every batch size, the best,
    what ``batch_size="auto"`` picks and what it gives; and a line across basins."""
    from sktlag.recipe import auto_batch_size

    rows = []
    for basin, mine in _batch_runs(results).items():
        n_train, years = mine[0]["train_windows"], mine[0]["years"]
        by_size = {size: C.median([r["test_nse"] for r in mine if _batch_of(r) == size])
                   for size in {_batch_of(r) for r in mine}}
        sizes = sorted(by_size)
        best = max(sizes, key=lambda b: by_size[b])
        pick = auto_batch_size(n_train)
        row = {"basin": basin, "years": years, "training windows": n_train,
               "seeds": len({r["seed"] for r in mine})}
        row.update({f"NSE at {b}": by_size[b] for b in sizes})
        row.update({"best batch": best, "auto picks": pick,
                    "best - auto": by_size[best] - by_size.get(pick, float("nan")),
                    "auto - 256": by_size.get(pick, float("nan")) - by_size.get(256, float("nan"))})
        row.update(_shortfall_by_chance([(_batch_of(r), r["test_nse"]) for r in mine],
                                        pick, row["best - auto"]))
        rows.append(row)
    shortfalls = [r["best - auto"] for r in rows]
    overall = [{
        "basins": len(rows),
        "auto within 0.02 of the best": sum(1 for v in shortfalls if v <= 0.02),
        "median best - auto": C.median(shortfalls),
        "largest best - auto": max(shortfalls, default=float("nan")),
        "median auto - 256": C.median([r["auto - 256"] for r in rows]),
        "shortfalls beyond chance (p < 0.05)": sum(1 for r in rows
                                                   if r["p (chance)"] < 0.05),
    }] if rows else []
    return rows, overall


def _batch_runs(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs of the batch-size study by basin, on the seeds every batch size ran (a
    seed that ran for some sizes only would move their medians and not the others');
    empty when fewer than two sizes ran. A basin cut short before every size ran is
    left out."""
    # A run without a finite NSE (a diverged fit) has no place in a median.
    runs = [r for r in results if r["config"].startswith("batch-")
            and math.isfinite(r["test_nse"])]
    sizes_run = {r["config"] for r in runs}
    if len(sizes_run) < 2:
        return {}
    by_basin = {}
    for basin in dict.fromkeys(r["basin"] for r in runs):
        mine = [r for r in runs if r["basin"] == basin]
        common = set.intersection(*({r["seed"] for r in mine if r["config"] == c}
                                    for c in sizes_run))
        if common:
            by_basin[basin] = [r for r in mine if r["seed"] in common]
    return by_basin


def batch_pairs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair of batch sizes across the basins: on how many the smaller one scored at
    least as well, the median over the basins of the difference of their medians, and
    how often relabelling each basin's runs of the two at random gives a median
    difference at least as far from zero (a stratified permutation test, two-sided; the
    median, so that one basin no model learns, with NSE far below zero, cannot decide
    it)."""
    import random

    by_basin = _batch_runs(results)
    sizes = sorted({_batch_of(r) for mine in by_basin.values() for r in mine})
    rows = []
    for small, large in itertools.combinations(sizes, 2):
        groups = [[(_batch_of(r), r["test_nse"]) for r in mine
                   if _batch_of(r) in (small, large)] for mine in by_basin.values()]
        measured = _median_differences(groups, small, large)
        observed, extreme = abs(C.median(measured)), 0
        draw = random.Random(0)  # the same table on every replay
        for _ in range(PERMUTATIONS):
            shuffled = []
            for group in groups:
                values = [v for _, v in group]
                draw.shuffle(values)
                shuffled.append(list(zip([s for s, _ in group], values, strict=True)))
            extreme += abs(C.median(_median_differences(shuffled, small, large))) \
                >= observed - 1e-12
        rows.append({"smaller": small, "larger": large, "basins": len(groups),
                     "smaller at or above": sum(d >= 0 for d in measured),
                     "median difference (smaller - larger)": C.median(measured),
                     "p (chance, two-sided)": _p_value(extreme)})
    return rows


def _batch_of(run: dict[str, Any]) -> int:
    """The batch size of a run of the study (its configuration ``batch-<size>``)."""
    return int(run["config"].split("-")[1])


def _median_differences(groups: list[list[tuple[int, float]]], small: int, large: int
                        ) -> list[float]:
    """Per basin, the median NSE of batch ``small`` minus that of ``large``."""
    return [C.median([v for s, v in group if s == small])
            - C.median([v for s, v in group if s == large]) for group in groups]


#: Relabellings of a basin's runs that :func:`_shortfall_by_chance` and
#: :func:`batch_pairs` draw.
PERMUTATIONS = 2000


def _p_value(extreme: int) -> float:
    """The p-value of a permutation test whose statistic ``extreme`` of the
    :data:`PERMUTATIONS` relabellings reached: the measured labelling counts as one of
    them, so p is never 0 (at least 1 / 2001)."""
    return (extreme + 1) / (PERMUTATIONS + 1)


def _shortfall_by_chance(runs: list[tuple[int, float]], pick: int, shortfall: float
                         ) -> dict[str, float]:
    """How far the best batch size beats ``pick`` if the batch size did not matter.

    The basin's runs ``(batch size, test NSE)`` are relabelled at random (a permutation
    test): with a few seeds per size, the best median of several sizes beats any one
    of them by chance. Returns the median shortfall of ``pick`` over the relabellings
    and the share of them at least as large as the one measured (``p``; NaN where
    ``pick`` did not run).
    """
    import random

    sizes = sorted({size for size, _ in runs})
    if pick not in sizes or not math.isfinite(shortfall):
        return {"best - auto by chance": float("nan"), "p (chance)": float("nan")}
    labels, values = [size for size, _ in runs], [nse for _, nse in runs]
    draw = random.Random(0)  # the same table on every replay
    chance = []
    for _ in range(PERMUTATIONS):
        draw.shuffle(values)
        medians = {size: C.median([v for s, v in zip(labels, values, strict=True)
                                   if s == size]) for size in sizes}
        chance.append(max(medians.values()) - medians[pick])
    return {"best - auto by chance": C.median(chance),
            "p (chance)": _p_value(sum(c >= shortfall - 1e-12 for c in chance))}


def rule_table(years=(2, 3, 4, 5, 7, 10, 15, 20, 30, 40)) -> str:
    """What ``batch_size="auto"`` chooses for a daily record of so many years given to
    ``fit`` (every target observed, the default lookback and validation part), and below
    the table for the Lahn table's fit part in ``sktlag run`` (the first 80 %)."""
    import numpy as np

    from sktlag import TLAGRegressor
    from sktlag.datasets import load_lahn
    from sktlag.recipe import auto_batch_size, updates_per_epoch

    lookback = TLAGRegressor().lookback

    def row(label, n_rows: int) -> dict[str, Any]:
        n_train = training_windows(np.zeros(n_rows), lookback)
        size = auto_batch_size(n_train)
        return {"years given to `fit`": label, "training windows": f"{n_train:,}",
                "batch size": size, "updates per epoch": updates_per_epoch(n_train, size),
                "updates at batch 256": updates_per_epoch(n_train, 256)}

    rows = [row(n, round(n * _basins.DAYS_PER_YEAR)) for n in years]
    lahn_fit = int(len(load_lahn().target) * C.TRAIN_FRACTION)
    lahn = row(f"{lahn_fit / _basins.DAYS_PER_YEAR:.1f}", lahn_fit)
    return (C.markdown_table(rows).rstrip() + "\n\nThe Lahn table's fit part in `sktlag run`: "
            + ", ".join(f"{k} {v}" for k, v in lahn.items()))


def main() -> None:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="the research demo table (Yuliang), research layout")
    parser.add_argument("--basins", nargs="*", default=None,
                        help="basin names (default: every basin available)")
    parser.add_argument("--configs", nargs="*", default=None, choices=list(CONFIGS),
                        help="configurations (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--device", default="cpu", help='torch device, e.g. "cuda"')
    parser.add_argument("--base", choices=("reference", "defaults", "one-layer"),
                        default="reference",
                        help="what the configurations change: the reference recipe at one "
                        "layer (default), the package defaults (growth on) or the package "
                        "defaults at one layer")
    parser.add_argument("--last-years", type=int, nargs="*", default=None,
                        help="cut every basin to its last N years (several N: several cuts)")
    parser.add_argument("--records", type=Path, nargs="+", default=None,
                        help="print the tables of these recorded runs (recipe_jobs.jsonl "
                        "files, read together) and fit nothing")
    parser.add_argument("--resume", action="store_true",
                        help="skip jobs already in recipe_jobs.jsonl")
    parser.add_argument("--rule-table", action="store_true",
                        help="print what batch_size='auto' chooses by record length, and exit")
    args = parser.parse_args()
    if args.rule_table:
        print(rule_table())
        return
    seeds = C.seeds_from(args)
    configs = args.configs or list(CONFIGS)
    if args.quick:
        configs = args.configs or ["reference", "no-forget-bias"]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "recipe_jobs.jsonl"
    if args.records:
        # A replay: the tables of recorded runs (of the named basins, if any), nothing
        # is fitted and no data are read.
        done = [run for path in args.records for run in C.read_jsonl(path)]
        if args.basins:
            wanted = set(_basins.basin_names(args.basins))
            done = [run for run in done if run["basin"] in wanted]
        seeds, names = [], []
    else:
        done = C.resumed(log, args.resume)
        # Group names stand for their basins, each a job of its own.
        names = [b.name for b in _basins.load_basins(args.basins, demo_path=args.data)]
        if args.quick and not args.basins:
            names = names[:1]
    finished = {(r["basin"], r["config"], r["seed"]) for r in done}
    cuts = args.last_years or [None]
    # Seed-major order: every configuration of every basin gets one seed before any
    # gets a second, so a run cut short still covers every factor.
    jobs = [
        {"basin": basin_label(b, years), "source": b, "config": c, "seed": s,
         "device": args.device, "quick": args.quick, "base": args.base,
         "rows": 1500 if args.quick else None, "years": years,
         "demo_path": str(args.data) if args.data else None}
        for s in seeds for years in cuts for b in names for c in configs
        if (basin_label(b, years), c, s) not in finished
    ]
    machine = C.machine_info(1)
    start = time.perf_counter()
    results = list(done) + C.run_logged(
        run_job, jobs, args.jobs, log,
        lambda r: (f"{r['basin']:<20} {r['config']:<24} seed {r['seed']} "
                   f"NSE {r['test_nse']:.3f} KGE {r['test_kge']:.3f} "
                   f"{r['fit_seconds']:.0f} s, {r['epochs']} epochs"),
    )
    rows = summarize(results, configs)
    overall = across_basins(rows, configs, results)
    by_length = across_lengths(rows, configs, results)
    batches, batches_overall = batch_table(results)
    pairs = batch_pairs(results)
    tables = [("Across basins", C.markdown_table(overall)),
              *([("Across basins, by record length (whole years)",
                  C.markdown_table(by_length))] if by_length else []),
              ("Per basin", C.markdown_table(rows))]
    if batches:
        tables = [("Batch size: batch_size='auto' against the best batch size",
                   C.markdown_table(batches_overall)),
                  ("Batch size per basin (median test NSE over the seeds)",
                   C.markdown_table(batches)),
                  ("Batch sizes two by two, across basins", C.markdown_table(pairs)),
                  *tables]
    C.write_results(
        args.out, "recipe", "Training recipe factor study", tables,
        {"per_basin": rows, "across_basins": overall, "across_lengths": by_length,
         "batch_sizes": batches, "batch_pairs": pairs,
         "batch_sizes_overall": batches_overall, "runs": results},
        {"seeds": seeds, "base": args.base, "last_years": args.last_years,
         "reference": REFERENCE, "configs": CONFIGS, "previous": PREVIOUS,
         "quick": args.quick, "device": args.device, "jobs": args.jobs,
         "cpu_count": os.cpu_count()},
        machine, time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
