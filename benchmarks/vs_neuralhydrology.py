"""Side by side: NeuralHydrology's reference LSTM against sktlag, same basins, same split.

NeuralHydrology (NH) is the field's reference framework for LSTM rainfall-runoff
models. For every basin and seed this script trains

- ``nh``: NH's ``cudalstm`` in the reference single-basin setup (hidden size 64,
  sequences of 365 days, NSE loss, Adam with learning rate 1e-3 then 5e-4 from epoch
  20, forget-gate bias 3, output dropout 0.4, gradient norm clipped at 1, batches of
  256, 100 epochs, validated after every epoch). It is scored twice on the test
  period: with the weights of the epoch that scored best on the validation period
  (``nh-best``, the counterpart of sktlag, which keeps its best validation state) and
  with the weights of the last epoch (``nh-last``);
- ``sktlag``: ``make_pipeline(StandardScaler(), TLAGRegressor(...))`` fitted on the
  training and validation days, with ``validation_fraction`` set so that its internal
  validation windows are exactly the validation days of NH.

Both are scored with :mod:`sktlag.metrics` (NSE, KGE 2009) on exactly the same test
days (days with a missing observation are left out for both). NH is driven through its
Python API only: the script writes NH's *generic* dataset (one netCDF file per basin
under ``<work>/data/time_series/``, basin list files) and one YAML configuration per
run into ``--work`` (default: a temporary folder, removed afterwards), calls
``neuralhydrology.nh_run.start_run`` and ``eval_run`` and reads the test predictions
from NH's result pickle.

Basins: by default the four gauges of the embedded Lahn dataset
(:func:`sktlag.datasets.load_lahn`; inputs the four precipitation and four temperature
series, never a discharge series; targets ``q_kalkofen``, ``q_marburg``, ``q_leun``,
``q_dillenburg``), split into training 1989-11-01 to 2009-10-11, validation 2009-10-12
to 2014-10-07 and test 2014-10-08 to 2020-12-31; with ``--data``, also the research demo
table (basin ``yuliang``). ``--basins`` also takes any basin or group of the benchmark
basin set (``_basins.py``: ``lahn_short``, ``vistula``, ``spotpy_hymod``, ...), split
64/16/20 % in time order (:func:`_basins.split_masks`), the split of the other studies.

Every finished job (one model, basin and seed) is appended to ``vs_nh_jobs.jsonl`` in
``--out`` at once, so a cut run keeps what it finished; ``--resume`` skips those jobs.

Wall times are end to end per model: NH's ``start_run`` (data preparation, training
and the validation after every epoch; the test evaluation is timed apart) against the
sktlag pipeline's ``fit`` (which also validates after every epoch). With
``--parallel N`` several runs share the machine (and the GPU), so their times include
that contention; use ``--parallel 1`` for clean timings.

Needs, besides sktlag: ``neuralhydrology==1.13.0`` and what it brings (xarray, netCDF4
and cftime, ruamel.yaml, numba, h5py, tensorboard). Install them with
``pip install -e ".[neuralhydrology]"`` after the torch build you want (``make bench-nh``
does it on top of the CPU build). PyYAML writes the configuration files.

Usage::

    python benchmarks/vs_neuralhydrology.py --device cuda:0 --parallel 8 --seeds 3 \\
        --data path/to/DemoData.xlsx
    python benchmarks/vs_neuralhydrology.py --quick
    python benchmarks/vs_neuralhydrology.py --skip-nh --sktlag-preset fast --basins leun
    python benchmarks/vs_neuralhydrology.py --basins lahn_short vistula spotpy_hymod \
        --parallel 2 --out benchmarks/results/nh_short --resume
    python benchmarks/vs_neuralhydrology.py --records VARIANT.jsonl NH.jsonl \
        --against DEFAULTS.jsonl   # a --sktlag-params variant against the defaults
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import pickle
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import _basins
import _common as C
import numpy as np
import pandas as pd

from sktlag.metrics import kge, nse

NAME = "vs_neuralhydrology"

#: Short basin names of the Lahn gauges and their target columns.
LAHN_BASINS = {
    "kalkofen": "q_kalkofen",
    "marburg": "q_marburg",
    "leun": "q_leun",
    "dillenburg": "q_dillenburg",
}
#: Jobs already run, one JSON line per job, in ``--out``.
JOBS_LOG = "vs_nh_jobs.jsonl"

#: The issue's split of the Lahn series; periods follow each other without a gap.
LAHN_SPLIT = {
    "train_start": "1989-11-01",
    "valid_start": "2009-10-12",
    "test_start": "2014-10-08",
    "test_end": "2020-12-31",
}
#: Quick mode: the last few years only (NH still reads a year of inputs before the
#: training start as the history of the first training sequences).
QUICK_SPLIT = {
    "train_start": "2016-01-01",
    "valid_start": "2019-01-01",
    "test_start": "2020-01-01",
    "test_end": "2020-12-31",
}

NH_EPOCHS, NH_QUICK_EPOCHS = 100, 2
NH_SEQ_LENGTH, NH_HIDDEN = 365, 64
SKTLAG_QUICK_PRESET = "fast"
MODELS = ("nh-best", "nh-last", "sktlag")


# ---------------------------------------------------------------------------- basins
def _day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).normalize()


def _split(train_start, valid_start, test_start, test_end) -> dict[str, pd.Timestamp]:
    """The four period boundaries; training ends the day before validation starts."""
    split = {
        "train_start": _day(train_start),
        "valid_start": _day(valid_start),
        "test_start": _day(test_start),
        "test_end": _day(test_end),
    }
    bounds = list(split.values())
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        raise SystemExit(f"the split dates must increase: {[str(b.date()) for b in bounds]}")
    one_day = pd.Timedelta(days=1)
    split["train_end"] = split["valid_start"] - one_day
    split["valid_end"] = split["test_start"] - one_day
    return split


def lahn_basins(names: list[str], split: dict[str, pd.Timestamp]) -> list[dict[str, Any]]:
    """One basin per Lahn gauge: the 8 meteorological inputs and the gauge's discharge."""
    from sktlag.datasets import load_lahn

    bunch = load_lahn(as_frame=True, target=list(LAHN_BASINS.values()))
    inputs = list(bunch.feature_names)
    basins = []
    for name in names:
        target = LAHN_BASINS[name]
        # Only the inputs and this gauge's discharge go into the basin's table, so that
        # no other gauge's discharge can leak in as an input.
        frame = pd.concat([bunch.data, bunch.target[[target]]], axis=1)
        basins.append({
            "basin": f"lahn_{name}", "short": name, "frame": frame, "inputs": inputs,
            "target": target, "split": split,
            "note": "Lahn: 4 precipitation + 4 temperature series as inputs",
        })
    return basins


def set_basins(names: list[str], demo_path: Path | None) -> list[dict[str, Any]]:
    """Basins of the benchmark set (:mod:`_basins`), split 64/16/20 % in time order.

    The target column keeps the name of the basin's discharge series (``q`` where it
    has none).
    """
    basins = []
    for basin in _basins.load_basins(names, demo_path=demo_path):
        masks = _basins.split_masks(basin)
        dates = basin.dates
        target = str(basin.y.name or "q")
        if target in basin.input_names:
            raise SystemExit(f"{basin.name}: the target name {target!r} is also an input")
        basins.append({
            "basin": basin.name, "short": basin.name, "years": basin.years,
            "frame": pd.concat([basin.X, basin.y.rename(target)], axis=1),
            "inputs": basin.input_names, "target": target,
            "split": _split(dates[0], dates[masks.valid][0], dates[masks.test][0], dates[-1]),
            "note": f"{basin.years:.1f} years, {basin.regime}; inputs "
                    f"{', '.join(basin.input_names)}; split 64/16/20 %; {basin.source}",
        })
    return basins


# ---------------------------------------------------------------------------- scores
def score(truth: pd.Series, pred: pd.Series, split: dict[str, pd.Timestamp]) -> dict[str, Any]:
    """NSE and KGE on the test days with an observation, the same days for every model.

    A prediction missing on one of those days gives NaN scores rather than a score on
    fewer days, so that no model is scored on an easier subset.
    """
    days = truth.loc[split["test_start"]:split["test_end"]].dropna()
    sim = pred.reindex(days.index).to_numpy(dtype=np.float64)
    missing = int((~np.isfinite(sim)).sum())
    out = {"n_test_days": len(days), "missing_predictions": missing}
    if missing or len(days) < 2:
        return {**out, "test_nse": float("nan"), "test_kge": float("nan")}
    obs = days.to_numpy(dtype=np.float64)
    return {**out, "test_nse": float(nse(obs, sim)), "test_kge": float(kge(obs, sim))}


def valid_nse(truth: pd.Series, pred: pd.Series, split: dict[str, pd.Timestamp]) -> float:
    """NSE on the validation days with an observation (NaN where undefined)."""
    days = truth.loc[split["valid_start"]:split["valid_end"]].dropna()
    sim = pred.reindex(days.index).to_numpy(dtype=np.float64)
    if len(days) < 2 or not np.isfinite(sim).all():
        return float("nan")
    try:
        return float(nse(days.to_numpy(dtype=np.float64), sim))
    except ValueError:
        return float("nan")


# ---------------------------------------------------------------------------- NH side
def _nh_date(day: pd.Timestamp) -> str:
    return day.strftime("%d/%m/%Y")  # the only date format NH's configuration reads


def write_nh_dataset(work: Path, basin: dict[str, Any]) -> dict[str, Path]:
    """Write the basin in NH's generic layout; return the data folder and basin file."""
    import xarray as xr

    data_dir = work / "data"
    series_dir = data_dir / "time_series"
    series_dir.mkdir(parents=True, exist_ok=True)
    frame = basin["frame"][basin["inputs"] + [basin["target"]]].astype(np.float64)
    frame.index = pd.DatetimeIndex(frame.index, name="date")
    # NH finds the time axis by the coordinate name ``date``; missing values are NaN.
    xr.Dataset.from_dataframe(frame).to_netcdf(series_dir / f"{basin['basin']}.nc")
    basin_file = work / "basins" / f"{basin['basin']}.txt"
    basin_file.parent.mkdir(parents=True, exist_ok=True)
    basin_file.write_text(basin["basin"] + "\n", encoding="utf-8")
    return {"data_dir": data_dir, "basin_file": basin_file}


def nh_device(device: str) -> str:
    """NH accepts ``cpu``, ``mps`` or ``cuda:N`` only; plain ``cuda`` means GPU 0."""
    return "cuda:0" if device == "cuda" else device


def nh_config(basin: dict[str, Any], seed: int, paths: dict[str, Path], run_parent: Path,
              settings: dict[str, Any]) -> dict[str, Any]:
    """The run configuration: the reference single-basin LSTM setup of the issue."""
    split = basin["split"]
    return {
        "experiment_name": f"{basin['basin']}_seed{seed}",
        "run_dir": str(run_parent),
        "train_basin_file": str(paths["basin_file"]),
        "validation_basin_file": str(paths["basin_file"]),
        "test_basin_file": str(paths["basin_file"]),
        "train_start_date": _nh_date(split["train_start"]),
        "train_end_date": _nh_date(split["train_end"]),
        "validation_start_date": _nh_date(split["valid_start"]),
        "validation_end_date": _nh_date(split["valid_end"]),
        "test_start_date": _nh_date(split["test_start"]),
        "test_end_date": _nh_date(split["test_end"]),
        "device": nh_device(settings["device"]),
        "seed": seed,
        # Every epoch is validated and its weights kept, so the best one can be scored.
        "validate_every": 1,
        "validate_n_random_basins": 1,
        "save_validation_results": True,
        "save_weights_every": 1,
        "metrics": ["NSE"],
        "model": "cudalstm",
        "head": "regression",
        "output_activation": "linear",
        "hidden_size": settings["nh_hidden"],
        "initial_forget_bias": 3,
        "output_dropout": 0.4,
        "optimizer": "Adam",
        "loss": "NSE",
        "learning_rate": {0: 1e-3, 20: 5e-4},
        "batch_size": 256,
        "epochs": settings["nh_epochs"],
        "clip_gradient_norm": 1,
        "predict_last_n": 1,
        "seq_length": settings["nh_seq_length"],
        "num_workers": 0,
        "log_interval": 5,
        "log_tensorboard": False,
        "log_n_figures": 0,
        "verbose": 1 if settings["nh_verbose"] else 0,
        "dataset": "generic",
        "data_dir": str(paths["data_dir"]),
        "dynamic_inputs": list(basin["inputs"]),
        "target_variables": [basin["target"]],
        "static_attributes": [],
    }


def _nh_series(result_file: Path, basin: str, target: str) -> pd.Series:
    """The simulated series of one basin from NH's ``*_results.p``, indexed by date."""
    with result_file.open("rb") as handle:
        results = pickle.load(handle)  # NH's own output file, written by this run
    per_frequency = results[basin]
    frequency = next(iter(per_frequency))  # one daily frequency in this setup
    sim = per_frequency[frequency]["xr"][f"{target}_sim"]
    # predict_last_n = 1: one time step per date.
    sim = sim.isel(time_step=-1) if "time_step" in sim.dims else sim
    return pd.Series(sim.to_numpy().astype(np.float64),
                     index=pd.DatetimeIndex(sim["date"].to_numpy()))


def run_nh(basin: dict[str, Any], seed: int, work: Path, settings: dict[str, Any]) -> list[dict]:
    """Train NH on one basin, pick the best validation epoch, score best and last epoch."""
    import yaml
    from neuralhydrology.nh_run import eval_run, start_run

    if not settings["nh_verbose"]:
        # NH logs every epoch at INFO level; keep the benchmark's own lines readable.
        logging.getLogger("neuralhydrology").setLevel(logging.WARNING)
    paths = write_nh_dataset(work, basin)
    run_parent = work / "runs" / f"{basin['basin']}_seed{seed}"
    run_parent.mkdir(parents=True, exist_ok=True)
    config = nh_config(basin, seed, paths, run_parent, settings)
    config_file = work / "configs" / f"{basin['basin']}_seed{seed}.yml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    before = {p for p in run_parent.iterdir() if p.is_dir()}
    hook = sys.excepthook  # NH installs its own hook; the benchmark keeps Python's
    start = time.perf_counter()
    try:
        start_run(config_file=config_file)
    finally:
        sys.excepthook = hook
    train_seconds = time.perf_counter() - start
    new = sorted({p for p in run_parent.iterdir() if p.is_dir()} - before,
                 key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"NH made no run folder under {run_parent}")
    run_dir = new[-1]

    truth = basin["frame"][basin["target"]]
    split = basin["split"]
    epochs = sorted(int(p.name.removeprefix("model_epoch"))
                    for p in (run_dir / "validation").glob("model_epoch*"))
    curve = {}
    for epoch in epochs:
        result_file = run_dir / "validation" / f"model_epoch{epoch:03d}" / "validation_results.p"
        if result_file.exists():
            curve[epoch] = valid_nse(truth, _nh_series(result_file, basin["basin"],
                                                       basin["target"]), split)
    finite = {e: v for e, v in curve.items() if np.isfinite(v)}
    last = settings["nh_epochs"]
    best = max(finite, key=finite.get) if finite else last

    rows, evaluated = [], {}
    for model, epoch in (("nh-best", best), ("nh-last", last)):
        if epoch not in evaluated:  # the best epoch may be the last one
            start = time.perf_counter()
            try:
                eval_run(run_dir=run_dir, period="test", epoch=epoch)
            finally:
                sys.excepthook = hook
            result_file = run_dir / "test" / f"model_epoch{epoch:03d}" / "test_results.p"
            evaluated[epoch] = (_nh_series(result_file, basin["basin"], basin["target"]),
                                time.perf_counter() - start)
        pred, eval_seconds = evaluated[epoch]
        rows.append({
            "model": model, "basin": basin["short"], "seed": seed,
            **score(truth, pred, split),
            "valid_nse": curve.get(epoch, float("nan")),
            "fit_seconds": train_seconds, "predict_seconds": eval_seconds,
            "epochs": last, "epoch_used": epoch, "depth": 1,
            "valid_nse_by_epoch": [curve.get(e) for e in epochs] if model == "nh-best" else None,
        })
    return rows


# ---------------------------------------------------------------------------- sktlag side
def sktlag_params(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters: a named preset (``defaults`` = none) plus overrides."""
    from sktlag.estimator import PRESETS

    if preset == "defaults":
        params = {}
    elif preset in PRESETS:
        params = dict(PRESETS[preset])
    else:
        raise SystemExit(f"unknown --sktlag-preset {preset!r}; choose 'defaults' or one of "
                         f"{sorted(PRESETS)}")
    return {**params, **overrides}


def fit_rows(basin: dict[str, Any], lookback: int) -> pd.DataFrame:
    """Rows the pipeline is fitted on: training and validation days, plus history.

    The ``lookback - 1`` days before the training start (where the series has them)
    come along as inputs only: no window ends on them, so the targets from the training
    start on are all trained on, as NH does with its warm-up inputs.
    """
    split, frame = basin["split"], basin["frame"]
    first = max(frame.index[0], split["train_start"] - pd.Timedelta(days=lookback - 1))
    return frame.loc[first:split["valid_end"]]


def validation_fraction(rows: pd.DataFrame, target: str, lookback: int,
                        valid_start: pd.Timestamp) -> float:
    """The fraction that makes the estimator validate on exactly the validation days.

    The estimator validates on the last ``ceil(fraction * n)`` of its ``n`` windows with
    an observed target (a window per row with ``lookback - 1`` rows before it). Aiming
    half a window below the wanted count makes the ceiling land on it exactly.
    """
    observed = rows[target].notna().to_numpy()
    ends = np.arange(lookback - 1, len(rows))
    ends = ends[observed[ends]]
    n_valid = int((rows.index[ends] >= valid_start).sum())
    if n_valid < 2 or len(ends) - n_valid < 2:
        raise SystemExit(f"{target}: too few observed days for training and validation")
    return (n_valid - 0.5) / len(ends)


def run_sktlag(basin: dict[str, Any], seed: int, settings: dict[str, Any]) -> list[dict]:
    """Fit the scaler + TLAGRegressor pipeline on training and validation days; score."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor

    params = dict(settings["sktlag_params"])
    lookback = TLAGRegressor(**params).lookback
    rows = fit_rows(basin, lookback)
    target, inputs, split = basin["target"], basin["inputs"], basin["split"]
    if rows[target].isna().any():
        params.setdefault("missing_target", "mask")
    params.update(
        random_state=seed, device=settings["device"], n_threads=settings["threads"],
        validation_fraction=validation_fraction(rows, target, lookback, split["valid_start"]),
    )
    pipeline = make_pipeline(StandardScaler(), TLAGRegressor(**params))
    start = time.perf_counter()
    pipeline.fit(rows[inputs].to_numpy(np.float64), rows[target].to_numpy(np.float64))
    fit_seconds = time.perf_counter() - start
    # The whole series in one call: every test day gets its real preceding days.
    frame = basin["frame"].loc[rows.index[0]:split["test_end"]]
    start = time.perf_counter()
    pred = pd.Series(np.asarray(pipeline.predict(frame[inputs].to_numpy(np.float64)),
                                dtype=np.float64).reshape(-1), index=frame.index)
    predict_seconds = time.perf_counter() - start
    est = pipeline[-1]
    truth = basin["frame"][target]
    return [{
        "model": "sktlag", "basin": basin["short"], "seed": seed,
        **score(truth, pred, split),
        "valid_nse": valid_nse(truth, pred, split),
        "fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
        "epochs": len(est.history_), "epoch_used": None, "depth": int(est.n_layers_),
        "validation_fraction": params["validation_fraction"],
        # What the recipe chose for this record, and how growth ended.
        "batch_size": int(est.batch_size_), "lookback": int(est.lookback),
        "stop_rule": est.growth_stop_rule_,
        "architecture_epochs": [a["last_epoch"] - a["first_epoch"] + 1
                                for a in est.growth_history_],
    }]


# ---------------------------------------------------------------------------- jobs
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One model on one basin with one seed, in a worker process: its key and rows."""
    settings = job["settings"]
    basin, seed = job["basin"], job["seed"]
    key = {"kind": job["kind"], "basin": basin["short"], "seed": seed}
    start = time.perf_counter()
    try:
        if job["kind"] == "nh":
            rows = run_nh(basin, seed, Path(settings["work"]), settings)
        else:
            rows = run_sktlag(basin, seed, settings)
    except Exception:  # one failed run must not lose the others' results
        message = traceback.format_exc()
        print(f"[{basin['short']}] seed {seed} {job['kind']} FAILED:\n{message}", flush=True)
        models = ("nh-best", "nh-last") if job["kind"] == "nh" else ("sktlag",)
        return {**key, "rows": [{"model": m, "basin": basin["short"], "seed": seed,
                                 "error": message, "test_nse": float("nan"),
                                 "test_kge": float("nan")} for m in models]}
    for row in rows:
        row["years"] = basin.get("years")
        if job["kind"] == "sktlag":  # a record says what it fitted (--sktlag-params)
            row["params"] = settings["sktlag_params"]
    return {**key, "seconds": time.perf_counter() - start, "rows": rows}


def job_line(job: dict[str, Any]) -> str:
    """What a finished job prints: one line per model."""
    return "\n".join(
        f"[{row['basin']}] seed {row['seed']} {row['model']:8s} test NSE "
        f"{row['test_nse']:.3f} KGE {row['test_kge']:.3f}"
        + ("" if "error" in row else f" valid NSE {row['valid_nse']:.3f} fit "
           f"{row['fit_seconds']:.1f} s (job {job['seconds']:.1f} s)")
        for row in job["rows"])


def prepare_process(threads: int, device: str) -> None:
    """Pay the one-time costs of a process before any timed run.

    torch's first optimizer imports ``torch._dynamo`` (seconds) and the first use of a
    GPU creates its CUDA context; without this the first run of every process would
    carry them. (NH's data preparation compiles a numba function on its first call in
    a process; that stays in the first NH run of each process, a few seconds.)
    """
    import torch

    torch.set_num_threads(threads)
    C.warm_up()
    if device.startswith("cuda"):
        torch.zeros(1, device=device)
        torch.cuda.synchronize(device)


def run_jobs(jobs: list[dict[str, Any]], parallel: int, log: Path,
             resume: bool) -> list[dict]:
    """Run the jobs in ``parallel`` spawned worker processes; return every model's rows.

    Spawned workers, not forks: CUDA cannot be used in a forked child of a process that
    touched it, and every worker starts with clean global state (NH's logging, torch
    threads). With ``resume``, the jobs already in ``log`` are not run again.
    """
    done = C.resumed(log, resume)
    wanted_params = jobs[0]["settings"].get("sktlag_params", {}) if jobs else {}
    for row in (row for d in done if d["kind"] == "sktlag" for row in d["rows"]):
        # Rows recorded before the parameters were kept are the defaults' fits; a failed
        # job's row records none.
        if "error" not in row and row.get("params", {}) != wanted_params:
            raise ValueError(
                f"{log} holds sktlag fits of {row.get('params', {})}, this run's are "
                f"{wanted_params}: resume from a log of the same --sktlag-params"
            )
    finished = {(d["kind"], d["basin"], d["seed"]) for d in done}
    todo = [job for job in jobs
            if (job["kind"], job["basin"]["short"], job["seed"]) not in finished]
    wanted = {(job["kind"], job["basin"]["short"], job["seed"]) for job in jobs}
    done = [d for d in done if (d["kind"], d["basin"], d["seed"]) in wanted]
    if todo:
        log.parent.mkdir(parents=True, exist_ok=True)
        settings = todo[0]["settings"]
        done += C.run_logged(run_job, todo, min(parallel, len(todo)), log, job_line,
                             prepare_process, (settings["threads"], settings["device"]))
    return [row for job in done for row in job["rows"]]


# ---------------------------------------------------------------------------- tables
def _join(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def basin_table(runs: list[dict[str, Any]], basin: str) -> list[dict[str, Any]]:
    """Per-model medians and spreads over the seeds for one basin."""
    table = []
    for model in MODELS:
        mine = [r for r in runs if r["basin"] == basin and r["model"] == model]
        if not mine:
            continue
        ok = [r for r in mine if "error" not in r]
        if model == "sktlag":
            epochs = _join(f"{r['epochs']} (depth {r['depth']}"
                           + (f", {r['stop_rule']})" if "stop_rule" in r else ")") for r in ok)
        elif model == "nh-best":
            epochs = _join(f"{r['epoch_used']} of {r['epochs']}" for r in ok)
        else:
            epochs = _join(r["epochs"] for r in ok)
        table.append({
            "model": model,
            "test NSE (median)": C.median([r["test_nse"] for r in mine]),
            "NSE min to max": C.spread([r["test_nse"] for r in mine]),
            "test KGE (median)": C.median([r["test_kge"] for r in mine]),
            "KGE min to max": C.spread([r["test_kge"] for r in mine]),
            "valid NSE (median)": C.median([r["valid_nse"] for r in ok]),
            "fit s (median)": C.median([r["fit_seconds"] for r in ok]),
            "epochs": epochs,
            "failed runs": len(mine) - len(ok),
        })
    return table


def _median_of(runs: list[dict[str, Any]], basin: str, model: str, key: str) -> float:
    """The median of ``key`` over one model's runs (seeds) on one basin; NaN if none."""
    return C.median([r.get(key, float("nan")) for r in runs
                     if r["basin"] == basin and r["model"] == model])


def overview(runs: list[dict[str, Any]], basins: list[str]) -> list[dict[str, Any]]:
    """One line per basin: NH (best epoch) against sktlag, what sktlag's recipe chose
    (batch size) and how its growth ended, over the seeds (runs recorded before these
    were kept leave those cells empty)."""
    med = functools.partial(_median_of, runs)
    rows = []
    for basin in basins:
        nh, sk = med(basin, "nh-best", "test_nse"), med(basin, "sktlag", "test_nse")
        nh_s, sk_s = med(basin, "nh-best", "fit_seconds"), med(basin, "sktlag", "fit_seconds")
        fits = [r for r in runs if r["basin"] == basin and r["model"] == "sktlag"
                and "stop_rule" in r]
        rows.append({
            "basin": basin, "years": med(basin, "sktlag", "years"),
            "NH test NSE": nh, "sktlag test NSE": sk, "sktlag - NH": sk - nh,
            "NH test KGE": med(basin, "nh-best", "test_kge"),
            "sktlag test KGE": med(basin, "sktlag", "test_kge"),
            "NH fit s": nh_s, "sktlag fit s": sk_s,
            "sktlag batch": C.counts([r["batch_size"] for r in fits]),
            "growth ended by": C.counts([r["stop_rule"] for r in fits]),
        })
    return rows


def depth_rows(runs: list[dict[str, Any]], basins: list[str],
               grid_records: list[Path]) -> list[dict[str, Any]]:
    """One line per basin, shortest record first: the defaults and NH at its best and
    last epoch (these runs), the recipe's batch, and from ``growth_pays.py``'s
    ``grid_records`` (a study of its own, with its own fits of the defaults) the best
    fixed depth on the test days (an upper bound no user gets; the depth that was best
    in each seed), the one validation picks and that study's defaults; empty where not
    recorded."""
    import growth_pays  # a replay's only use of it: its module imports fitting code

    grid = [row for row in growth_pays.defaults_table(growth_pays.load_records(grid_records))
            if "best fixed NSE" in row]
    fixed = {row["basin"]: row for row in grid}
    if len(fixed) < len(grid):
        raise ValueError("the fixed-depth records hold a basin at several epoch budgets; "
                         "give the records of one budget")
    med = functools.partial(_median_of, runs)
    rows = []
    for row in overview(runs, basins):
        depths = fixed.get(row["basin"], {})
        rows.append({
            "basin": row["basin"], "years": row["years"],
            "sktlag test NSE": row["sktlag test NSE"], "NH best epoch": row["NH test NSE"],
            "NH last epoch": med(row["basin"], "nh-last", "test_nse"),
            "sktlag batch": row["sktlag batch"],
            "grid: best fixed depth NSE": depths.get("best fixed NSE", math.nan),
            "grid: best depth by seed": depths.get("best fixed depth", ""),
            "grid: validation pick NSE": depths.get("validation pick NSE", math.nan),
            "grid: defaults NSE": depths.get("test NSE", math.nan),
        })
    # Records of unknown length (the dated Lahn split) last.
    return sorted(rows, key=lambda row: (math.isnan(row["years"]), row["years"]))


def overview_summary(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """How many basins sktlag matches or beats NH on, the median difference, on how many
    its median fit took no longer than NH's, and on how many growth ended by its own rule
    in most seeds."""
    # A basin where sktlag ran and every run failed counts against it (NaN is below).
    ran = {r["basin"] for r in runs if r["model"] == "sktlag"}
    differences = [r["sktlag - NH"] for r in rows
                   if np.isfinite(r["NH test NSE"]) and r["basin"] in ran]
    failed = sum(not np.isfinite(d) for d in differences)
    failures = f" (every sktlag run failed on {failed})" if failed else ""
    parts = [f"sktlag at or above NH on {sum(d >= 0 for d in differences)} of "
             f"{len(differences)} basins{failures}; median difference "
             f"{C.median(differences):+.3f}."] if differences else []
    times = [(r["sktlag fit s"], r["NH fit s"]) for r in rows
             if np.isfinite(r["sktlag fit s"]) and np.isfinite(r["NH fit s"])]
    if times:
        parts.append(f"sktlag's median fit took no longer than NH's on "
                     f"{sum(sk <= nh for sk, nh in times)} of {len(times)} basins.")
    endings = [[r["stop_rule"] in C.OWN_RULES for r in runs
                if r["basin"] == row["basin"] and r["model"] == "sktlag" and "stop_rule" in r]
               for row in rows]
    endings = [ended for ended in endings if ended]
    if endings:
        own = sum(sum(ended) > len(ended) / 2 for ended in endings)
        parts.append(f"sktlag's growth ended by its own rule ({', '.join(C.OWN_RULES)}) in "
                     f"most seeds on {own} of {len(endings)} basins.")
    return " ".join(parts) + "\n" if parts else ""


def last_epoch_summary(runs: list[dict[str, Any]], basins: list[str]) -> str:
    """sktlag against NH's last epoch: its reference run as it ends after 100 epochs,
    without choosing an epoch on the validation years (the overview compares with NH's
    best validation epoch, the counterpart of sktlag's kept best state)."""
    med = functools.partial(_median_of, runs)
    ran = {r["basin"] for r in runs if r["model"] == "sktlag"}
    last = {b: med(b, "nh-last", "test_nse") for b in basins if b in ran}
    differences = [med(b, "sktlag", "test_nse") - nse for b, nse in last.items()
                   if np.isfinite(nse)]
    if not differences:
        return ""
    return (f"Against NH's last epoch: sktlag at or above it on "
            f"{sum(d >= 0 for d in differences)} of {len(differences)} basins; median "
            f"difference {C.median(differences):+.3f}.\n")


#: Upper ends (years, inclusive) of the record-length classes a variant is summarised by.
LENGTH_CLASSES = (2.5, 5.5, 15.0, float("inf"))


def _length_class(years: float) -> str:
    if not np.isfinite(years):  # the dated Lahn split and older records store none
        return "unknown length"
    low = 0.0
    for high in LENGTH_CLASSES:
        if years <= high:
            return f"over {low:g} years" if high == float("inf") else f"{low:g} to {high:g} years"
        low = high
    raise ValueError(f"no length class for {years} years")


def _sktlag_seeds(runs: list[dict[str, Any]], basin: str) -> set[int]:
    """The seeds of the sktlag fits recorded on ``basin`` (not NeuralHydrology's, which
    a replay may hold beside them, nor failed runs)."""
    return {r["seed"] for r in runs
            if r["basin"] == basin and r["model"] == "sktlag" and "error" not in r}


def variant_rows(runs: list[dict[str, Any]], baseline: list[dict[str, Any]],
                 basins: list[str], matched: bool = False) -> list[dict[str, Any]]:
    """One line per basin recorded in both: the sktlag runs of ``runs`` (a variant, e.g.
    ``--sktlag-params``) against those of ``baseline``, as medians over each one's seeds
    (``matched``: over the seeds both recorded on that basin, so that a variant run on
    fewer seeds meets the same seeds, not the baseline's median)."""
    rows = []
    for basin in basins:
        if matched:
            seeds = _sktlag_seeds(runs, basin) & _sktlag_seeds(baseline, basin)
            runs_b = [r for r in runs if r["basin"] == basin and r["seed"] in seeds]
            base_b = [r for r in baseline if r["basin"] == basin and r["seed"] in seeds]
            rows += variant_rows(runs_b, base_b, [basin])
            continue
        new = _median_of(runs, basin, "sktlag", "test_nse")
        old = _median_of(baseline, basin, "sktlag", "test_nse")
        if np.isnan(new) or np.isnan(old):
            continue
        years = _median_of(runs, basin, "sktlag", "years")
        new_s = _median_of(runs, basin, "sktlag", "fit_seconds")
        old_s = _median_of(baseline, basin, "sktlag", "fit_seconds")
        rows.append({
            "basin": basin, "years": years, "length": _length_class(years),
            "baseline NSE": old, "variant NSE": new, "variant - baseline": new - old,
            "baseline fit s": old_s, "variant fit s": new_s, "fit time ratio": new_s / old_s,
        })
    return rows


def variant_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The variant's change by record-length class and over all basins."""
    classes = [*dict.fromkeys(r["length"] for r in sorted(rows, key=lambda r: r["years"])),
               "all"]
    summary = []
    for name in classes:
        mine = [r for r in rows if name in ("all", r["length"])]
        changes = [r["variant - baseline"] for r in mine]
        summary.append({
            "records": name, "basins": len(mine),
            "variant at or above baseline": f"{sum(c >= 0 for c in changes)} of {len(mine)}",
            "median change": C.median(changes),
            "worst": min(changes), "best": max(changes),
            "median fit time ratio": C.median([r["fit time ratio"] for r in mine]),
        })
    return summary


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="the research demo table (DemoData.xlsx): adds basin 'yuliang'")
    parser.add_argument("--basins", nargs="+", default=None,
                        choices=[*LAHN_BASINS, *_basins.BASIN_NAMES, *_basins.GROUPS],
                        metavar="BASIN",
                        help="basins to run: the Lahn gauges by short name "
                             f"({', '.join(LAHN_BASINS)}; the dated split) or basins and "
                             "groups of the benchmark set (_basins.py; split 64/16/20 %%) "
                             "(default: the four Lahn gauges, plus 'yuliang' with --data; "
                             "with --quick: kalkofen)")
    parser.add_argument("--resume", action="store_true",
                        help=f"skip the jobs already in {JOBS_LOG} in --out")
    parser.add_argument("--work", type=Path, default=None,
                        help="working folder for NH's data, configurations and runs "
                             "(default: a temporary folder, removed at the end)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of both models: cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="worker processes, one job (model, basin, seed) each; every "
                             "worker uses --threads torch threads (default 1)")
    parser.add_argument("--records", type=Path, nargs="+", default=None,
                        help="only print the tables of earlier result files (JSON) or "
                             f"jobs logs ({JOBS_LOG}); with --basins, of those basins only")
    parser.add_argument("--against", type=Path, nargs="+", default=None,
                        help="with --records: also compare the sktlag runs of --records (a "
                             "variant) with the sktlag runs of these records (the baseline), "
                             "per basin and by record length")
    parser.add_argument("--fixed-depths", type=Path, nargs="+", default=None,
                        help="with --records: growth_pays.py jobs logs of fixed depths on "
                             "the same basins; adds a table per basin of the defaults, NH, "
                             "the best fixed depth and the batch the recipe chose")
    parser.add_argument("--matched-seeds", action="store_true",
                        help="with --against: compare each basin on the seeds both "
                             "recorded (a variant run on fewer seeds than its baseline)")
    parser.add_argument("--skip-nh", action="store_true", help="run sktlag only")
    parser.add_argument("--skip-sktlag", action="store_true", help="run NH only")
    parser.add_argument("--nh-epochs", type=int, default=None,
                        help=f"NH training epochs (default {NH_EPOCHS}, {NH_QUICK_EPOCHS} "
                             "with --quick)")
    parser.add_argument("--nh-seq-length", type=int, default=NH_SEQ_LENGTH,
                        help=f"NH input sequence length in days (default {NH_SEQ_LENGTH})")
    parser.add_argument("--nh-hidden", type=int, default=NH_HIDDEN,
                        help=f"NH LSTM hidden size (default {NH_HIDDEN})")
    parser.add_argument("--nh-verbose", action="store_true",
                        help="keep NH's log lines and progress bars")
    parser.add_argument("--sktlag-preset", default=None,
                        help="a name of sktlag.estimator.PRESETS, or 'defaults' for the "
                             f"estimator's defaults (default 'defaults', "
                             f"'{SKTLAG_QUICK_PRESET}' with --quick)")
    parser.add_argument("--sktlag-params", type=C.json_object, default={},
                        help='JSON object of TLAGRegressor parameters that override the '
                             'preset, e.g. \'{"max_epochs": 200}\'')
    for key, default in LAHN_SPLIT.items():
        parser.add_argument(f"--{key.replace('_', '-')}", default=None,
                            help=f"Lahn split: {key.replace('_', ' ')} (default {default}; "
                                 f"{QUICK_SPLIT[key]} with --quick)")
    args = parser.parse_args(argv)
    if args.skip_nh and args.skip_sktlag:
        parser.error("--skip-nh and --skip-sktlag together leave nothing to run")
    if args.matched_seeds and not args.against:
        parser.error("--matched-seeds compares a variant with a baseline: give --against")
    if args.against and not args.records:
        parser.error("--against compares recordings: give the variant's with --records")
    if args.fixed_depths and not args.records:
        parser.error("--fixed-depths adds to a replay: give the runs with --records")
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    return args


def recorded_runs(path: Path) -> list[dict[str, Any]]:
    """The model runs of a result file (``.json``) or of a jobs log (``.jsonl``)."""
    if Path(path).suffix == ".jsonl":
        return [row for job in C.read_jsonl(path) for row in job["rows"]]
    return json.loads(Path(path).read_text())["results"]["runs"]


def _recorded(paths: list[Path]) -> list[dict[str, Any]]:
    """The runs of ``paths``: of the same model, basin and seed in several files, the
    first good one (a failed run gives way to a later rerun)."""
    kept: dict[tuple, dict[str, Any]] = {}
    for path in paths:
        for run in recorded_runs(path):
            key = (run["basin"], run["model"], run["seed"])
            if key not in kept or ("error" in kept[key] and "error" not in run):
                kept[key] = run
    return list(kept.values())


def recorded_basin(name: str) -> list[str]:
    """The basin labels the runs of ``name`` (as ``--basins`` takes it) are recorded
    under: a Lahn gauge's short name itself (the dated split; ``lahn_<gauge>`` is the
    same gauge in the benchmark set, split 64/16/20 %), the group's basins for a group."""
    return [name] if name in LAHN_BASINS else _basins.basin_names([name])


def report_records(paths: list[Path], against: list[Path] | None = None,
                   matched: bool = False, basins: list[str] | None = None,
                   fixed_depths: list[Path] | None = None) -> None:
    """Print the tables of earlier runs from their result files or jobs logs (no fitting);
    with ``against``, also their sktlag runs against those of the ``against`` records
    (``matched``: on the seeds both recorded); with ``basins``, of those basins only;
    with ``fixed_depths`` (``growth_pays.py`` records), also each basin's best fixed
    depth (:func:`depth_rows`)."""
    runs = _recorded(paths)
    if basins:
        wanted = {label for name in basins for label in recorded_basin(name)}
        runs = [run for run in runs if run["basin"] in wanted]
    shorts = list(dict.fromkeys(r["basin"] for r in runs))
    print("## Overview (medians over seeds)\n")
    rows = overview(runs, shorts)
    print(C.markdown_table(rows) + "\n" + overview_summary(rows, runs)
          + last_epoch_summary(runs, shorts))
    if fixed_depths:
        print("## Per basin: the defaults, NH and the best fixed depth (medians over seeds)\n")
        print(C.markdown_table(depth_rows(runs, shorts, fixed_depths)) + "\n")
    if against:
        compared = variant_rows(runs, _recorded(against), shorts, matched)
        seeds = "the seeds both recorded" if matched else "seeds"
        print(f"## sktlag variant against baseline (medians over {seeds})\n")
        print(C.markdown_table(compared) + "\n")
        print("## Variant against baseline, by record length\n")
        print(C.markdown_table(variant_summary(compared)) + "\n")
    for basin in shorts:
        print(f"## Basin {basin}\n")
        print(C.markdown_table(basin_table(runs, basin)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.records:
        report_records(args.records, args.against, args.matched_seeds, args.basins,
                       args.fixed_depths)
        return
    C.set_threads(args.threads)
    seeds = C.seeds_from(args)
    defaults = QUICK_SPLIT if args.quick else LAHN_SPLIT
    split = _split(*(getattr(args, key) or defaults[key] for key in LAHN_SPLIT))
    names = args.basins or (["kalkofen"] if args.quick else
                            [*LAHN_BASINS, *(["yuliang"] if args.data else [])])
    if "yuliang" in names and args.data is None:
        raise SystemExit("basin 'yuliang' needs --data path/to/DemoData.xlsx")
    basins = lahn_basins([n for n in names if n in LAHN_BASINS], split)
    others = [n for n in names if n not in LAHN_BASINS]
    if others:
        basins += set_basins(others, args.data)
    if not basins:
        raise SystemExit(f"none of the basins {names} could be loaded on this machine")

    preset = args.sktlag_preset or (SKTLAG_QUICK_PRESET if args.quick else "defaults")
    work = args.work if args.work is not None else Path(tempfile.mkdtemp(prefix="vs_nh_"))
    work.mkdir(parents=True, exist_ok=True)
    settings = {
        "device": args.device,
        "threads": args.threads,
        "work": str(work),
        "nh_epochs": args.nh_epochs or (NH_QUICK_EPOCHS if args.quick else NH_EPOCHS),
        "nh_seq_length": args.nh_seq_length,
        "nh_hidden": args.nh_hidden,
        "nh_verbose": args.nh_verbose,
        "sktlag_preset": preset,
        "sktlag_params": sktlag_params(preset, args.sktlag_params),
    }

    machine = C.machine_info(args.threads)
    if not args.skip_nh:
        from importlib.metadata import version

        # Fails here, before any run, when NH is not installed.
        machine["versions"]["neuralhydrology"] = version("neuralhydrology")
        machine["versions"]["xarray"] = version("xarray")
    if args.device.startswith("cuda"):
        import torch

        machine["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
        machine["platform"] += f"; GPU {machine['gpu']}"

    kinds = [k for k, skip in (("nh", args.skip_nh), ("sktlag", args.skip_sktlag)) if not skip]
    # Seed-major: every basin gets a seed before any gets the next, so a cut run still
    # covers every basin.
    jobs = [{"kind": kind, "basin": basin, "seed": seed, "settings": settings}
            for seed in seeds for basin in basins for kind in kinds]
    start = time.perf_counter()
    try:
        runs = run_jobs(jobs, args.parallel, args.out / JOBS_LOG, args.resume)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start

    shorts = [b["short"] for b in basins]
    setup = [f"Seeds {seeds}; device {args.device}; {args.parallel} worker process(es), "
             f"{args.threads} torch thread(s) each."]
    if not args.skip_nh:
        setup.append(
            f"NH: cudalstm, hidden {settings['nh_hidden']}, sequences of "
            f"{settings['nh_seq_length']} days, NSE loss, {settings['nh_epochs']} epochs; "
            "nh-best uses the epoch with the best validation NSE, nh-last the last epoch; "
            "fit s is start_run (training, with validation after every epoch)."
        )
    if not args.skip_sktlag:
        setup.append(
            f"sktlag: StandardScaler + TLAGRegressor, preset '{preset}', parameters "
            f"{json.dumps(settings['sktlag_params'])}; it keeps its best validation "
            "state; fit s is the pipeline's fit (with validation after every epoch)."
        )
    setup.append("Scores with sktlag.metrics on the same test days.")
    sections = [("Setup", " ".join(setup))]
    if len(basins) > 1 and not (args.skip_nh or args.skip_sktlag):
        rows = overview(runs, shorts)
        sections.append(("Overview (medians over seeds)",
                         C.markdown_table(rows) + "\n" + overview_summary(rows, runs)))
    for basin in basins:
        s = basin["split"]
        n_test = int(basin["frame"][basin["target"]].loc[s["test_start"]:s["test_end"]]
                     .notna().sum())
        text = (
            f"{basin['basin']}: target {basin['target']}; {basin['note']}. Training "
            f"{s['train_start'].date()} to {s['train_end'].date()}, validation "
            f"{s['valid_start'].date()} to {s['valid_end'].date()}, test "
            f"{s['test_start'].date()} to {s['test_end'].date()} ({n_test} test days "
            "with an observation).\n\n" + C.markdown_table(basin_table(runs, basin["short"]))
        )
        sections.append((f"Basin {basin['short']}", text))
    failures = [r for r in runs if "error" in r]
    if failures:
        sections.append(("Failed runs", "\n".join(
            f"- {r['basin']} seed {r['seed']} {r['model']}: "
            f"{r['error'].strip().splitlines()[-1]}" for r in failures)))

    recorded = {k: v for k, v in settings.items() if k != "work"}
    recorded.update(
        seeds=seeds, parallel=args.parallel, quick=args.quick, basins=shorts,
        skip_nh=args.skip_nh, skip_sktlag=args.skip_sktlag,
        splits={b["short"]: {k: str(v.date()) for k, v in b["split"].items()} for b in basins},
        nh_config=None if args.skip_nh else {
            k: v for k, v in nh_config(basins[0], seeds[0], {"data_dir": Path(),
                                                             "basin_file": Path()},
                                       Path(), settings).items()
            if not k.endswith(("_dir", "_file", "_date")) and k not in
            ("experiment_name", "seed", "dynamic_inputs", "target_variables")
        },
    )
    C.write_results(args.out, NAME, "NeuralHydrology against sktlag", sections,
                    {"runs": runs}, recorded, machine, seconds)
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed; see 'Failed runs' above")


if __name__ == "__main__":
    main()
