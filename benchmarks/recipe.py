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

Jobs (basin x configuration x seed) run in ``--jobs`` processes, one torch thread each;
every finished job is appended to ``recipe_jobs.jsonl`` in ``--out`` at once, so an
interrupted run keeps what it finished (``--resume`` skips those).

Usage::

    python benchmarks/recipe.py --data path/to/DemoData.xlsx --seeds 3 --jobs 8 --device cuda
    python benchmarks/recipe.py --quick
"""

from __future__ import annotations

import json
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
    "batch-128": {"batch_size": 128},
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


def config_params(name: str, quick: bool) -> dict[str, Any]:
    """Estimator parameters of configuration ``name`` (one layer, growth off)."""
    change = CONFIGS[name]
    if change == "previous":
        params = dict(PREVIOUS)
    else:
        params = {**REFERENCE, **(change or {})}
    if quick:
        params.update(QUICK)
    params.update(initial_num_layers=1, max_layers=1, topo_derivative_threshold=math.inf)
    return params


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one configuration on one basin with one seed; test scores and times."""
    import numpy as np
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor
    from sktlag.metrics import kge, nse

    torch.set_num_threads(1)
    basin = _basins.load_basins([job["basin"]], demo_path=job["demo_path"])[0]
    X, y = basin.X, basin.y
    if job["rows"]:
        X, y = X.iloc[-job["rows"]:], y.iloc[-job["rows"]:]
    n_fit = int(len(X) * C.TRAIN_FRACTION)
    params = config_params(job["config"], job["quick"])
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
    parser.add_argument("--resume", action="store_true",
                        help="skip jobs already in recipe_jobs.jsonl")
    args = parser.parse_args()
    seeds = C.seeds_from(args)
    configs = args.configs or list(CONFIGS)
    if args.quick:
        configs = args.configs or ["reference", "no-forget-bias"]
    names = args.basins or [b.name for b in _basins.load_basins(demo_path=args.data)]
    if args.quick and not args.basins:
        names = names[:1]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "recipe_jobs.jsonl"
    done = []
    if args.resume and log.exists():
        done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    elif log.exists():
        log.unlink()
    finished = {(r["basin"], r["config"], r["seed"]) for r in done}
    # Seed-major order: every configuration of every basin gets one seed before any
    # gets a second, so a run cut short still covers every factor.
    jobs = [
        {"basin": b, "config": c, "seed": s, "device": args.device, "quick": args.quick,
         "rows": 1500 if args.quick else None,
         "demo_path": str(args.data) if args.data else None}
        for s in seeds for b in names for c in configs if (b, c, s) not in finished
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
    C.write_results(
        args.out, "recipe", "Training recipe factor study",
        [("Across basins", C.markdown_table(overall)),
         ("Per basin", C.markdown_table(rows))],
        {"per_basin": rows, "across_basins": overall, "runs": results},
        {"seeds": seeds, "reference": REFERENCE, "configs": CONFIGS, "previous": PREVIOUS,
         "quick": args.quick, "device": args.device, "jobs": args.jobs,
         "cpu_count": os.cpu_count()},
        machine, time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
