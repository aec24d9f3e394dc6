"""The artifacts of a fit: JSON, text, spreadsheets, figures and the model file.

:func:`~sktlag.write_artifacts` writes everything a study needs into one directory:

========================================  =====================================================
``lstm_architecture_evolution.json``      architectures tried, growth decisions, final depth,
                                          best epoch, hyperparameters
``lstm_evolution.png``                    validation NSE and moving average, depth, losses
``lstm_loss.png``                         training and validation loss
``lstm_prediction.png``                   observed and predicted discharge of the test period
``adaptive_lstm_model.pth``               the model (see :func:`sktlag.save_model`)
``adaptive_lstm_architecture.txt``        a readable summary of the network and the fit
``topological_derivatives_history.xlsx``  one row per growth decision, one column per
                                          candidate position
``predictions.xlsx``                      date, observed, predicted (test period)
``metrics.json``                          metrics of the test (and training, validation) period
========================================  =====================================================

The directory is built under a temporary name next to its destination and renamed into
place only when every file is complete, so an error never leaves a partial directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._record import EPOCH, VALID_NSE, decision_table, decisions_from_table, describe_decision
from ._version import __version__
from .conformal import ADAPT_RATE, HIGH_FLOW_QUANTILE, check_coverage
from .ensemble import (
    CALIBRATION_WINDOWS,
    final_ensemble,
    judged_observations,
    member_template,
    members_of,
)
from .estimator import TLAGRegressor, final_regressor
from .io import check_destination, hidden_sibling_name, write_table
from .metrics import evaluate, output_names
from .persistence import save_model, to_plain
from .plots import history_arrays, plot_evolution, plot_loss, plot_prediction
from .windows import fit_split

__all__ = [
    "ARTIFACT_FILES",
    "architecture_summary",
    "architecture_text",
    "check_output_dir",
    "derivative_table",
    "fit_periods",
    "json_ready",
    "metrics_summary",
    "prediction_columns",
    "prediction_table",
    "write_artifacts",
]

#: File name of every artifact, by the key :func:`~sktlag.write_artifacts` returns it under.
ARTIFACT_FILES: dict[str, str] = {
    "architecture_json": "lstm_architecture_evolution.json",
    "evolution_png": "lstm_evolution.png",
    "loss_png": "lstm_loss.png",
    "prediction_png": "lstm_prediction.png",
    "model": "adaptive_lstm_model.pth",
    "architecture_txt": "adaptive_lstm_architecture.txt",
    "derivatives_xlsx": "topological_derivatives_history.xlsx",
    "predictions_xlsx": "predictions.xlsx",
    "metrics_json": "metrics.json",
}

# ---------------------------------------------------------------------- helpers
def json_ready(value: Any) -> Any:
    """Plain data for strict JSON: NaN becomes null, infinities the strings "inf"/"-inf"."""
    value = to_plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_ready(item) for item in value]
    return value


def _json_text(data: dict) -> str:
    return json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n"


def _dates_of(*candidates) -> pd.DatetimeIndex | None:
    for candidate in candidates:
        if isinstance(candidate, pd.DatetimeIndex):
            return candidate
        index = getattr(candidate, "index", None)
        if isinstance(index, pd.DatetimeIndex):
            return index
    return None


def _interrupted(est: TLAGRegressor) -> bool:
    return bool(getattr(est, "interrupted_", False))


def _stop_reason(est: TLAGRegressor, decisions: list[dict[str, Any]]) -> str:
    rule = getattr(est, "growth_stop_rule_", None)
    if rule == "interrupted" or _interrupted(est):
        return "interrupted"
    if rule == "early_stopping":
        return "stopped by EarlyStopping"
    if decisions and not decisions[-1]["inserted"]:
        return str(decisions[-1]["reason"])
    if rule == "max_epochs" or len(est.history_) >= est.max_epochs:
        return "max_epochs reached"
    return "unknown"


# ---------------------------------------------------------------------- contents
def architecture_summary(model, *, metadata: dict | None = None) -> dict[str, Any]:
    """The content of ``lstm_architecture_evolution.json`` as a dict.

    Parameters
    ----------
    model : TLAGRegressor or Pipeline
        A fitted regressor, or a pipeline ending in one.
    metadata : dict, optional
        Stored under ``"metadata"`` (for example the data source).

    Returns
    -------
    dict
        ``sktlag_version``, ``final_n_layers``, ``final_architecture`` (the spec of the
        fitted network), ``n_parameters``, ``best_epoch``, ``best_valid_nse``,
        ``best_score``, ``epochs_trained``, ``stop_reason`` (in words), ``stop_rule``
        (``growth_stop_rule_``), ``interrupted``, ``batch_size`` (the windows per
        training batch the fit used: ``batch_size``, or what ``"auto"`` chose),
        ``architectures`` (one entry per depth tried: ``n_layers``, ``first_epoch``,
        ``last_epoch``, ``epochs``, ``best_valid_nse``, ``best_valid_nse_ma``,
        ``best_epoch``), ``growth_decisions`` (one entry per decision, the columns of
        ``topological_derivatives_history.xlsx``), ``hyperparameters`` and ``metadata``.
        For an ensemble: ``sktlag_version``, ``interrupted``, ``n_members``,
        ``seeds``, ``final_n_layers`` (one per member), ``members`` (one such dict per
        member) and ``metadata``.
    """
    ensemble = final_ensemble(model)
    if ensemble is not None:
        members = [architecture_summary(m) for m in ensemble.estimators_]
        return to_plain({
            "sktlag_version": __version__,
            "interrupted": any(m["interrupted"] for m in members),
            "n_members": len(members),
            "seeds": ensemble.seeds_,
            "final_n_layers": [m["final_n_layers"] for m in members],
            "members": members,
            "metadata": metadata or {},
        })
    est = final_regressor(model)
    arrays = history_arrays(est)
    best = arrays["best_epoch"]
    at_best = arrays[VALID_NSE][arrays[EPOCH] == best] if best is not None else []
    nse_at_best = float(at_best[0]) if len(at_best) else None
    architectures = []
    for arch in est.growth_history_:
        entry = dict(arch)
        # Files written before the record counted epochs per architecture.
        entry.setdefault("epochs", int(arch["last_epoch"]) - int(arch["first_epoch"]) + 1)
        architectures.append(entry)
    decisions = decisions_from_table(est.derivative_history_)
    module = est.net_.module_
    return to_plain({
        "sktlag_version": __version__,
        "interrupted": _interrupted(est),
        "final_n_layers": int(est.n_layers_),
        "final_architecture": module.get_spec(),
        "n_parameters": int(sum(p.numel() for p in module.parameters())),
        "best_epoch": best,
        "best_valid_nse": nse_at_best,
        "best_score": getattr(est, "best_score_", None),
        "epochs_trained": len(est.history_),
        "batch_size": int(est.batch_size_),
        "stop_rule": getattr(est, "growth_stop_rule_", None),
        "stop_reason": _stop_reason(est, decisions),
        "architectures": architectures,
        "growth_decisions": decisions,
        "hyperparameters": est.get_params(deep=False),
        "metadata": metadata or {},
    })


def _adaptive_centre(ensemble) -> str:
    """What the adaptive band of ``ensemble`` is centred on, in words."""
    # The fitted coefficients, which the band uses (whatever the parameter says now).
    if not ensemble.error_coefficient_.any():
        return "the mean"
    phi = " / ".join(f"{c:.3f}" for c in ensemble.error_coefficient_)
    return (f"the mean plus the last observed error times {phi} per day since it "
            "(lag-one coefficient of the calibration errors)")


def _thresholds(ensemble) -> str:
    """The high-flow threshold of each output, in words."""
    return " / ".join(f"{t:.4g}" for t in ensemble.high_flow_threshold_) + (
        f" (high-flow threshold, the fit period's {HIGH_FLOW_QUANTILE:.0%} quantile)")


def architecture_text(model) -> str:
    """The content of ``adaptive_lstm_architecture.txt``: network, growth and settings.

    For an ensemble, the text of every member under a heading of its own.
    """
    ensemble = final_ensemble(model)
    if ensemble is not None:
        # Windows of a day without discharge give no score (NaN).
        counts = np.isfinite(ensemble.calibration_scores_).sum(axis=0)
        windows = " / ".join(map(str, counts)) + (
            " windows (by output)" if len(counts) > 1 else " windows")
        lines = [f"TLAG-LSTM ensemble of {len(ensemble.estimators_)} members (sktlag "
                 f"{__version__}), seeds {', '.join(map(str, ensemble.seeds_))}",
                 "  prediction: the members' mean; intervals calibrated by conformal scores "
                 f"on {windows} "
                 f"({CALIBRATION_WINDOWS[ensemble.calibration_]}; scale {ensemble.scale_})",
                 f"  adaptive band: centred on {_adaptive_centre(ensemble)}",
                 *([f"  bands of their own for the days forecast above "
                    f"{_thresholds(ensemble)} and for the others"]
                   if ensemble.band_classes_ is not None else []), ""]
        for i, member in enumerate(ensemble.estimators_, start=1):
            lines += [f"=== member {i} (random_state {member.random_state}) ===",
                      *architecture_text(member).splitlines()[1:], ""]
        return "\n".join(lines)
    est = final_regressor(model)
    summary = architecture_summary(est)
    lines = ["TLAG-LSTM (sktlag " + summary["sktlag_version"] + ")", ""]
    lines += est.net_.module_.describe().splitlines()
    names = getattr(est, "feature_names_in_", None)
    lines += [
        f"  inputs: {est.n_features_in_} features"
        + (f" ({', '.join(map(str, names))})" if names is not None else ""),
        f"  lookback: {est.lookback} time steps",
        "",
        "Training",
        f"  epochs trained: {summary['epochs_trained']}"
        + ("  (INTERRUPTED)" if summary["interrupted"] else ""),
        f"  batch size: {summary['batch_size']} windows"
        + (" (chosen by batch_size='auto')" if est.batch_size == "auto" else ""),
        f"  stopped because: {summary['stop_reason']}",
    ]
    if summary["best_epoch"] is not None:
        lines.append(f"  fitted model: state of epoch {summary['best_epoch']}, "
                     f"validation NSE {_nse_text(summary['best_valid_nse'])}")
    lines += ["", "Architectures tried",
              "  layers  epochs     best validation NSE  at epoch"]
    for arch in summary["architectures"]:
        lines.append(f"  {arch['n_layers']:>6}  {arch['first_epoch']:>4}-{arch['last_epoch']:<5}"
                     f"  {_nse_text(arch['best_valid_nse']):>19}  "
                     f"{'-' if arch['best_epoch'] is None else arch['best_epoch']}")
    lines += ["", "Growth decisions"]
    lines += [f"  {describe_decision(d)}" for d in summary["growth_decisions"]] or ["  none"]
    lines += ["", "Hyperparameters"]
    lines += [f"  {k} = {v!r}" for k, v in summary["hyperparameters"].items()]
    return "\n".join(lines) + "\n"


def _nse_text(value) -> str:
    """An NSE to four places, or n/a where it is undefined (a validation discharge that
    does not vary: no epoch had one)."""
    return f"{value:.4f}" if value is not None and math.isfinite(value) else "n/a"


def derivative_table(model) -> pd.DataFrame:
    """One row per growth decision: epoch, depth, one column per candidate position, outcome.

    The growth decisions as a table: ``epoch``, ``n_layers_before``,
    ``derivative_1`` .. ``derivative_k``, ``relative_derivative_1`` .. and
    ``holdout_statistic_1`` .. (empty where the depth had fewer positions or nothing
    was computed), then ``position`` (where the layer went),
    ``inserted``, ``rule``, ``reason`` and the numbers of the decision.
    """
    ensemble = final_ensemble(model)
    if ensemble is not None:
        frames = [derivative_table(m).assign(member=i)
                  for i, m in enumerate(ensemble.estimators_, start=1)]
        frame = pd.concat(frames, ignore_index=True)
        return frame[["member", *[c for c in frame.columns if c != "member"]]]
    est = final_regressor(model)
    return decision_table(decisions_from_table(est.derivative_history_))


def prediction_table(
    y_true, y_pred, dates=None, *, names: Sequence[str] | None = None, lower=None, upper=None,
    corrected=None,
) -> pd.DataFrame:
    """Observed and predicted values side by side, indexed by date.

    One output gives the columns ``observed`` and ``predicted`` (then ``corrected``
    with the forecast corrected by the observed errors, and ``lower`` and ``upper``
    with an interval); several give ``observed_<name>``, ``predicted_<name>``
    (``corrected_<name>``, ``lower_<name>``, ``upper_<name>``) per output.
    ``y_true=None`` (days without observations) leaves out the observed columns. The
    index is a :class:`pandas.DatetimeIndex` named ``"date"`` when ``dates`` are known
    (then :func:`sktlag.io.read_table` reads the written table back, given
    ``target="observed"``), a row number otherwise; dates with a time zone are given as
    their local wall time (a spreadsheet holds none).
    """
    sim = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    obs = None if y_true is None else np.asarray(y_true, dtype=float).reshape(sim.shape)
    names = list(names) if names is not None else output_names(y_true, sim.shape[1])
    columns = {}
    more = {key: np.asarray(values, dtype=float).reshape(sim.shape)
            for key, values in (("corrected", corrected), ("lower", lower), ("upper", upper))
            if values is not None}
    for j in range(len(names)):
        if obs is not None:
            columns[_column(names, j, "observed")] = obs[:, j]
        columns[_column(names, j, "predicted")] = sim[:, j]
        for key, values in more.items():
            columns[_column(names, j, key)] = values[:, j]
    if dates is not None:
        index = pd.DatetimeIndex(dates, name="date")
        if index.tz is not None:
            index = index.tz_localize(None)  # a spreadsheet holds no time zone
    else:
        index = pd.RangeIndex(len(sim), name="row")
    return pd.DataFrame(columns, index=index)


def prediction_columns(table: pd.DataFrame, key: str, names: Sequence[str]) -> np.ndarray:
    """The ``key`` columns (``"predicted"``, ``"lower"``, ...) of a
    :func:`prediction_table` with outputs ``names``, as (n_rows, n_outputs)."""
    return table[[_column(names, j, key) for j in range(len(names))]].to_numpy()


def _column(names: Sequence[str], j: int, key: str) -> str:
    """The name of output ``j``'s ``key`` column: the key alone for one output."""
    return key if len(names) == 1 else f"{key}_{names[j]}"


def _period(y_true, y_pred, dates, names) -> dict[str, Any]:
    obs = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    sim = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    seen = np.isfinite(obs)
    entry: dict[str, Any] = {
        "n_rows": int(len(obs)),
        "n_scored": int(seen.any(axis=1).sum()),
        "n_scored_by_output": {name: int(n) for name, n in zip(names, seen.sum(axis=0),
                                                               strict=True)},
    }
    if dates is not None and len(dates):
        entry["start"] = pd.Timestamp(dates[0]).date().isoformat()
        entry["end"] = pd.Timestamp(dates[-1]).date().isoformat()
    # Each output on its own observed days: a gap at one gauge must not hide the
    # errors of another on those days.
    entry["metrics"] = {}
    days = None if dates is None else pd.DatetimeIndex(dates)
    for j, name in enumerate(names):
        rows = seen[:, j]
        if rows.sum() < 2:
            continue
        index = None if days is None else days[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined metrics are reported as null
            table = evaluate(pd.DataFrame(obs[rows, j], columns=[name]), sim[rows, j],
                             index=index)
        entry["metrics"][name] = table[name].to_dict()
    return entry


def metrics_summary(
    model,
    periods: dict[str, tuple[Any, Any, Any]],
    *,
    names: Sequence[str] | None = None,
    metadata: dict | None = None,
    intervals: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The content of ``metrics.json``.

    Parameters
    ----------
    model : TLAGRegressor or Pipeline
        The fitted model.
    periods : dict of str to (y_true, y_pred, dates)
        Observed and predicted values (and the dates, or None) per period name, such as
        ``"train"``, ``"validation"``, ``"test"``.
    names : sequence of str, optional
        Output names (the metric columns); default from the observed values.
    metadata : dict, optional
        Stored under ``"metadata"``.
    intervals : dict of str to dict, optional
        Per period name, the scores of each band by its name (``"fixed"``,
        ``"adaptive"``: results of :meth:`sktlag.TLAGEnsemble.score_intervals`), stored
        in that period as ``intervals``: ``nominal_coverage``, ``calibration``,
        ``scale``, ``min_value``, ``adapt_rate``, ``error_coefficient`` (per output, the
        lag-one coefficient of the errors that corrects the adaptive band's centre; 0
        without correction), ``band_classes`` (``"high_flow"`` or None) and ``bands``,
        per band and output its
        scores (``coverage``, ``mean_width``, ``relative_width``, ``high_flow_coverage``,
        ``crps``, ``n``, ``n_high_flow`` and the same at every level of ``levels``); an
        optional entry ``"shown"`` names the band the figure and the table show, stored
        as ``shown`` (None without it).

    Returns
    -------
    dict
        ``n_layers``, ``fit_seconds``, ``epochs_trained``, ``best_epoch``,
        ``interrupted`` and ``periods``: per period ``n_rows``, ``n_scored`` (rows with
        an observation of any output), ``n_scored_by_output``, ``start``, ``end`` and
        ``metrics`` (``{output: {metric: value}}``, all rows of
        :func:`sktlag.metrics.evaluate`, each output on the rows where it is observed;
        an output observed on fewer than two rows has none). For an ensemble,
        ``n_members`` and one value per member in ``n_layers``, ``fit_seconds``,
        ``epochs_trained`` and ``best_epoch``.
    """
    members = members_of(model)
    fields = {
        "n_layers": [int(m.n_layers_) for m in members],
        "fit_seconds": [getattr(m, "fit_time_", None) for m in members],
        "epochs_trained": [len(m.history_) for m in members],
        "best_epoch": [history_arrays(m)["best_epoch"] for m in members],
    }
    ensemble = final_ensemble(model)
    if ensemble is None:
        fields = {key: values[0] for key, values in fields.items()}
    else:
        fields = {"n_members": len(members), **fields}
    result = {
        "sktlag_version": __version__,
        "interrupted": any(_interrupted(m) for m in members),
        **fields,
        "periods": {},
        "metadata": metadata or {},
    }
    for period, (y_true, y_pred, dates) in periods.items():
        k = np.asarray(y_true).reshape(len(y_true), -1).shape[1]
        period_names = list(names) if names is not None else output_names(y_true, k)
        result["periods"][period] = _period(y_true, y_pred, dates, period_names)
        if intervals and period in intervals:
            bands = dict(intervals[period])
            shown = bands.pop("shown", None)
            first = next(iter(bands.values()))
            result["periods"][period]["intervals"] = {
                "nominal_coverage": first["nominal_coverage"],
                "calibration": first["calibration"],
                "scale": first["scale"],
                # Scores a caller gathered without the key (one band): null.
                "band_classes": first.get("band_classes"),
                "min_value": first["min_value"],
                "adapt_rate": bands["adaptive"]["adapt_rate"] if "adaptive" in bands else None,
                "error_coefficient": (dict(zip(period_names,
                                               bands["adaptive"]["error_coefficient"],
                                               strict=True))
                                      if "adaptive" in bands else None),
                "bands": {band: dict(zip(period_names, scores["outputs"], strict=True))
                          for band, scores in bands.items()},
                "shown": shown,
            }
    return to_plain(result)


def fit_periods(model, y_train, groups=None) -> dict[str, np.ndarray]:
    """Rows of the series given to ``fit`` that trained and that validated the model.

    The split is the estimator's own (:func:`sktlag.windows.fit_split`: chronological
    within each group, the last ``validation_fraction`` of the windows with an observed
    target validate, after a gap of ``lookback - 1`` windows). Pass the ``groups``
    given to ``fit``, if any. For an ensemble, the split of its member template: every
    member validates on it (with ``calibration="blocks"`` each member also leaves out
    a block of the training rows).
    """
    ensemble = final_ensemble(model)
    est = final_regressor(model) if ensemble is None else member_template(ensemble)
    y2 = np.asarray(y_train, dtype=float).reshape(len(y_train), -1)
    groups = None if groups is None else np.asarray(groups)
    train, valid = fit_split(y2, est.lookback, est.validation_fraction, groups)
    return {"train": train, "validation": valid}


# ---------------------------------------------------------------------- the directory
def check_output_dir(out_dir: str | os.PathLike[str], overwrite: bool = False,
                     inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Check that ``out_dir`` may receive the artifacts; return it as a Path.

    Parameters
    ----------
    out_dir : str or path-like
    overwrite : bool, default=False
        Whether a non-empty directory may be replaced: one that holds artifacts only
        (the names of :data:`ARTIFACT_FILES`), or a link to a directory (the link is
        replaced, the directory it names is kept).
    inputs : sequence of str or path-like, default=()
        Files the run reads (its table): a directory that holds one is never replaced.

    Raises
    ------
    FileExistsError
        If it exists and is not a directory, or is a non-empty directory and
        ``overwrite`` is False, or holds anything but artifacts.
    ValueError
        If it is the working directory or holds it, or holds one of ``inputs``: the
        artifacts replace their directory as a whole, which would delete them; or if it
        is a mount point, which cannot be replaced.
    OSError
        If it cannot be created where it is (:func:`sktlag.io.check_destination`: a
        file above it, a folder without write permission).
    """
    given = out_dir
    # Absolute without following links, so that '.' and 'sub/..' have a name to publish
    # under and the working directory is recognised however it is written.
    out_dir = Path(os.path.abspath(out_dir))
    cwd = Path.cwd()
    if out_dir == cwd or out_dir in cwd.parents:
        raise ValueError(
            f"output directory '{given}' is the working directory or holds it; the "
            "artifacts replace their directory as a whole: choose a directory below it"
        )
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise FileExistsError(f"'{given}' exists and is not a directory")
        if os.path.ismount(out_dir):
            # Found now, not after the fit: a mount point cannot be renamed away.
            raise ValueError(
                f"output directory '{given}' is a mount point; the artifacts replace "
                "their directory as a whole, which cannot be done to one: choose a "
                "directory inside it"
            )
        if not overwrite and any(out_dir.iterdir()):
            raise FileExistsError(
                f"output directory '{given}' is not empty; choose a new directory or "
                "allow replacing it"
            )
        homes = {out_dir, Path(os.path.realpath(out_dir))}
        held = [path for path in inputs
                if homes & {*Path(os.path.realpath(path)).parents,
                            *Path(os.path.abspath(path)).parents}]
        if held:
            raise ValueError(
                f"output directory '{given}' holds the input '{held[0]}'; the artifacts "
                "replace their directory as a whole, which would delete it: choose "
                "another directory"
            )
        # Replacing a directory of earlier artifacts is what overwrite is for; anything
        # else in it would be deleted with it. (A link is replaced, what it names kept.)
        others = [] if out_dir.is_symlink() else sorted(
            path.name + "/" * path.is_dir() for path in out_dir.iterdir()
            if path.is_dir() or path.name not in ARTIFACT_FILES.values())
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise FileExistsError(
                f"output directory '{given}' holds {len(others)} entries that are not "
                f"artifacts ({shown}); replacing it would delete them: choose a new "
                "directory, or remove them"
            )
    check_destination(given, create_parents=True)
    return out_dir


def _fresh_sibling(out_dir: Path, tag: str) -> Path:
    while True:
        candidate = out_dir.with_name(hidden_sibling_name(out_dir, tag))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate


def _publish(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the complete ``staging`` directory to ``out_dir``, replacing it if allowed."""
    check_output_dir(out_dir, overwrite)
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    retired = _fresh_sibling(out_dir, "old")
    retired.rmdir()
    os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        os.replace(retired, out_dir)
        raise
    if retired.is_symlink():
        retired.unlink()  # a link to a directory: the link goes, what it named stays
    else:
        shutil.rmtree(retired, ignore_errors=True)
    if retired.exists() or retired.is_symlink():
        warnings.warn(f"the replaced '{out_dir.name}' could not be removed completely: "
                      f"'{retired}' is left", UserWarning, stacklevel=3)


def _remove_unfinished(staging: Path | None, created: list[Path]) -> None:
    """Remove the staging directory of a write that failed (if it was made), and the
    folders above it that the write created (nearest first; any that holds something
    else stays)."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _write_figure(fig, path: Path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi)


def _ensemble_test_period(model, ensemble, X_test, observed: np.ndarray, coverage,
                          band: str) -> tuple[np.ndarray, dict, dict, dict]:
    """An ensemble's mean on the test days, the band shown (``lower``, ``upper``), its
    centre as a column (``corrected``, for the adaptive band with error correction) and
    both bands' scores (none without an observed day), from a single pass of the members
    over the test windows, which all four share."""
    coverage = check_coverage(coverage)
    # The ensemble's own input: after the pipeline's scalers, if any.
    X_final = model[:-1].transform(X_test) if hasattr(model, "steps") else X_test
    predicted = ensemble._mean_and_std(X_final)
    mean, std, shape = predicted
    judged = judged_observations(members_of(model)[0], X_test, observed)
    seen = bool(np.isfinite(judged).any())
    adapt = band == "adaptive" and seen
    # stacklevel 3: the caller of write_artifacts.
    _, centre, lower, upper = ensemble._forecast(
        X_final, coverage, observed=judged if adapt else None, predicted=predicted,
        stacklevel=3)
    # The adaptive band's centre is a column of the table (as in sktlag.forecast), not a
    # line of the figure.
    corrected = ({"corrected": centre} if adapt and ensemble.error_correction_ is not None
                 else {})
    scored = {}
    if seen:
        scored = {method: ensemble._scored(mean, std, judged, coverage, None,
                                           method == "adaptive", ADAPT_RATE)
                  for method in ("fixed", "adaptive")}
        scored["shown"] = "adaptive" if adapt else "fixed"
    return shape(mean), {"lower": lower, "upper": upper}, corrected, scored


def write_artifacts(
    model,
    out_dir: str | os.PathLike[str],
    *,
    X_test=None,
    y_test=None,
    dates=None,
    X_train=None,
    y_train=None,
    groups=None,
    overwrite: bool = False,
    dpi: int = 150,
    metadata: dict | None = None,
    coverage: float = 0.9,
    unit: str | Sequence[str] | None = None,
    band: str = "adaptive",
) -> dict[str, Path]:
    """Write the artifacts of a fitted model into ``out_dir``, all or nothing.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted :class:`~sktlag.TLAGRegressor` or :class:`~sktlag.TLAGEnsemble`, or a
        fitted pipeline ending in one (its ``StandardScaler`` steps go into the model
        file). For an ensemble, the test period also gets calibrated intervals: a band
        in ``lstm_prediction.png``, ``lower`` and ``upper`` columns in
        ``predictions.xlsx`` (see ``band``; with the adaptive band and the ensemble's
        ``error_correction``, also ``corrected``, the band's centre:
        :meth:`~sktlag.TLAGEnsemble.predict_corrected`), and in ``metrics.json`` the
        scores of the fixed band and of the band that adapts to each day's observation
        (:meth:`~sktlag.TLAGEnsemble.score_intervals`). Where the test period does not
        continue the fit, its first ``lookback - 1`` days are predicted from padding:
        they neither adapt the band nor count in its scores.
    out_dir : str or path-like
        The directory to create. Missing parent directories are created.
    X_test, y_test : array-like or DataFrame, optional
        The test period. With both, ``lstm_prediction.png`` and ``predictions.xlsx``
        are written and ``metrics.json`` scores the test period; without them those two
        files are left out. It is predicted as one series: for the test periods of
        several series, write the artifacts of each in turn.
    dates : sequence of datetime-like, optional
        The date of each test row; by default the index of ``X_test`` or ``y_test``
        when it is a :class:`pandas.DatetimeIndex`.
    X_train, y_train : array-like or DataFrame, optional
        The series given to ``fit``; with both, ``metrics.json`` also scores the
        training and the validation period (the estimator's own split).
    groups : array-like of shape (n_rows,), optional
        The series labels of ``X_train`` given to ``fit``, if any: the periods are
        then split, and the windows predicted, within each series.
    overwrite : bool, default=False
        Replace an existing non-empty ``out_dir`` (only after the new one is complete)
        that holds artifacts only: a directory with other files is refused, not
        deleted (:func:`~sktlag.report.check_output_dir`).
    dpi : int, default=150
        Resolution of the figures.
    metadata : dict, optional
        Plain information (data source, split) stored in the JSON files and the model.
    coverage : float, default=0.9
        Nominal coverage of an ensemble's intervals.
    unit : str or sequence of str, optional
        The unit of the discharge on the axis of ``lstm_prediction.png``; by default
        the data say it (see :func:`~sktlag.plots.plot_prediction`).
    band : {"adaptive", "fixed"}, default="adaptive"
        The band of an ensemble in ``lstm_prediction.png`` and ``predictions.xlsx``:
        the band of each test day adapted to the observations of the days before it
        (a forecaster's band, which held its coverage on new years of every basin of
        the benchmarks), or the band fixed at fit time (a simulation's band, which
        needs no observation). Without observed test days, the fixed band.

    Returns
    -------
    dict of str to pathlib.Path
        The written files by key (see :data:`~sktlag.report.ARTIFACT_FILES`).

    Raises
    ------
    FileExistsError
        If ``out_dir`` is a non-empty directory and ``overwrite`` is False, or a file.
    """
    ensemble = final_ensemble(model)
    if band not in ("adaptive", "fixed"):
        raise ValueError(f"band must be 'adaptive' or 'fixed', got {band!r}")
    out_dir = check_output_dir(out_dir, overwrite)
    if (X_test is None) != (y_test is None) or (X_train is None) != (y_train is None):
        raise ValueError("pass X_test with y_test and X_train with y_train")
    # The folders above it this call creates go again if it fails.
    created = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh_sibling(out_dir, "tmp")
    except BaseException:
        _remove_unfinished(None, created)
        raise
    written: dict[str, Path] = {}

    making: list[str] = []  # the artifact being made, for the message of an error

    def target(key: str) -> Path:
        making[:] = [ARTIFACT_FILES[key]]
        written[key] = out_dir / ARTIFACT_FILES[key]
        return staging / ARTIFACT_FILES[key]

    try:
        periods = {}
        names = None
        if X_train is not None:
            pred = model.predict(X_train, groups=groups)
            obs = np.asarray(y_train, dtype=float)
            train_dates = _dates_of(X_train, y_train)
            names = output_names(y_train, obs.reshape(len(obs), -1).shape[1])
            for period, rows in fit_periods(model, y_train, groups).items():
                periods[period] = (obs[rows], pred[rows],
                                   None if train_dates is None else train_dates[rows])
        intervals, bounds, corrected = {}, {}, {}
        if X_test is not None:
            test_dates = pd.DatetimeIndex(dates) if dates is not None else _dates_of(
                X_test, y_test)
            observed = np.asarray(y_test, dtype=float)
            if ensemble is None:
                test_pred = model.predict(X_test)
            else:
                test_pred, bounds, corrected, scored = _ensemble_test_period(
                    model, ensemble, X_test, observed, coverage, band)
                if scored:
                    intervals["test"] = scored
            names = output_names(y_test, test_pred.reshape(len(test_pred), -1).shape[1])
            periods["test"] = (observed, test_pred, test_dates)
            _write_figure(plot_prediction(y_test, test_pred, test_dates, names=names,
                                          ylabel="discharge", coverage=coverage, unit=unit,
                                          **bounds),
                          target("prediction_png"), dpi)
            write_table(prediction_table(y_test, test_pred, test_dates, names=names, **bounds,
                                         **corrected),
                        target("predictions_xlsx"))

        target("architecture_json").write_text(
            _json_text(architecture_summary(model, metadata=metadata)), encoding="utf-8")
        target("architecture_txt").write_text(architecture_text(model), encoding="utf-8")
        _write_figure(plot_evolution(model), target("evolution_png"), dpi)
        _write_figure(plot_loss(model), target("loss_png"), dpi)
        save_model(model, target("model"), metadata=metadata)
        write_table(derivative_table(model), target("derivatives_xlsx"), index=False)
        target("metrics_json").write_text(
            _json_text(metrics_summary(model, periods, names=names, metadata=metadata,
                                       intervals=intervals)),
            encoding="utf-8")
        making.clear()
        _publish(staging, out_dir, overwrite)
    except OSError as exc:
        _remove_unfinished(staging, created)
        # A full disk or a file size limit (a system error, with its number) while a
        # file was written: say which file, for which directory.
        if not making or exc.errno is None:
            raise
        raise OSError(exc.errno, f"cannot write {making[0]} for '{out_dir}': "
                                 f"{exc.strerror or exc}", exc.filename) from exc
    except BaseException:
        _remove_unfinished(staging, created)
        raise
    return {key: written[key] for key in ARTIFACT_FILES if key in written}
