"""The ``sktlag`` command: fit on a table (or the embedded Lahn data), write the artifacts.

``sktlag run [TABLE] --out DIR``
    Splits the series in time order (first 64 % training, next 16 % validation for the
    growth decisions, last 20 % test), standardizes the inputs on the first 80 %,
    grows and trains a TLAG-LSTM, prints the epoch table, the growth decisions and the
    test metrics, and writes the artifacts of :func:`sktlag.write_artifacts`.
``sktlag predict MODEL TABLE --out FILE``
    Predicts with a saved model file and writes dates, predictions and, when the table
    has the target column, observed values. The table needs only the dates and the
    model's feature columns; ``--history HIST_TABLE`` or ``--warmup-days N`` give the
    days before the first prediction as warm-up.

Bad input (missing files, unusable tables, damaged model files, an output that exists)
ends with one line on stderr and exit status 2. Ctrl-C (SIGINT) and SIGTERM (what a job
scheduler or ``kill`` sends) during training keep the best state so far and still write
the artifacts, marked ``"interrupted": true``; the exit status is then 130 after SIGINT
and 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import math
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback
from tqdm.auto import tqdm

from ._command import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, INTERRUPTED
from ._record import N_LAYERS, VALID_NSE, decisions_from_table, describe_decision
from ._version import __version__
from .conformal import ADAPT_RATE, HIGH_FLOW_QUANTILE, MAX_LEAD, interval_coverage
from .datasets import load_lahn
from .ensemble import (
    CALIBRATION_WINDOWS,
    TLAGEnsemble,
    final_ensemble,
    judged_observations,
    members_of,
)
from .estimator import PRESETS, TLAGRegressor
from .forecasting import band_observations, forecast
from .growth import CRITERIA
from .io import (
    DATE_COLUMN_NAMES,
    check_destination,
    check_table_suffix,
    means_discharge,
    read_table,
    write_table,
)
from .persistence import load_model
from .recipe import updates_per_epoch
from .report import (
    check_output_dir,
    fit_periods,
    metrics_summary,
    prediction_columns,
    write_artifacts,
)
from .windows import minimum_rows

__all__ = ["main"]

#: The research code's sequential split: the first 80 % fit (of which the estimator
#: validates on the last 20 %, i.e. 16 % of all rows), the last 20 % test.
FIT_FRACTION = 0.8
VALIDATION_FRACTION = 0.2
#: Exit status after SIGTERM: 128 + its number, as a shell reports a process it ended,
#: so a scheduler sees the job was stopped even though the artifacts were written.
EXIT_TERMINATED = 128 + int(signal.SIGTERM)
#: The metrics printed at the end of a run.
HEADLINE_METRICS = ("nse", "kge", "kge_prime", "log_nse", "rmse")
#: Nominal coverage of an ensemble's prediction intervals.
COVERAGE = 0.9


class CommandError(ValueError):
    """A problem with the command's input, reported as one line."""


# ---------------------------------------------------------------------- progress
class EpochProgressBar(Callback):
    """A tqdm bar over epochs with the current depth and validation NSE.

    Parameters
    ----------
    total : int
        The epoch budget (``max_epochs``); training usually stops earlier, when growth
        ends.
    file : file object, optional
        Where the bar is drawn (default: tqdm's, standard error). Copies of the bar
        draw on the same stream.
    """

    def __init__(self, total: int, file=None):
        self.total = total
        self.file = file

    def __sklearn_clone__(self):
        # sklearn's clone would deep-copy the stream (an ensemble clones its template
        # for every member), and a terminal's stream cannot be copied.
        return type(self)(self.total, file=self.file)

    def on_train_begin(self, net, **kwargs):
        self.bar_ = tqdm(total=self.total, desc="epochs", unit="epoch", file=self.file,
                         dynamic_ncols=True, disable=None, leave=True)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        nse = row.get(VALID_NSE, float("nan"))
        self.bar_.set_postfix(layers=row.get(N_LAYERS), valid_nse=f"{nse:.3f}",
                              refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        # An interrupted fit may end mid-epoch: show the epochs that completed.
        self.bar_.n = len(net.history)
        self.bar_.close()


class _LinesAboveBar(io.TextIOBase):
    """A text stream that prints complete lines above any tqdm bar on ``stream``."""

    def __init__(self, stream):
        self._stream = stream
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            tqdm.write(line, file=self._stream)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            tqdm.write(self._pending, file=self._stream)
            self._pending = ""
        self._stream.flush()


#: An ANSI colour (select graphic rendition) escape sequence.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class _ReaderMayLeave(io.TextIOBase):
    """Standard output that outlives its reader (``sktlag run ... | head``).

    Once a write fails because the reader has gone, the rest of the output goes to the
    null device: the command finishes its work (a fit and its artifacts) instead of
    ending with the first line it can no longer print.
    """

    def __init__(self, stream):
        self._stream = stream
        self._gone = False
        self._terminal = bool(getattr(stream, "isatty", lambda: False)())

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", None)

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                # skorch colours the epoch table's losses on any stream: off a
                # terminal (a log, a pipe) the escape codes are noise.
                self._stream.write(text if self._terminal else _COLOUR.sub("", text))
            except OSError as exc:
                self._leave_if_gone(exc)
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._leave_if_gone(exc)

    def _leave_if_gone(self, exc: OSError) -> None:
        # Windows says "invalid argument" where POSIX says "broken pipe".
        if not (isinstance(exc, BrokenPipeError)
                or (os.name == "nt" and exc.errno == errno.EINVAL)):
            raise exc
        self._leave()

    def _leave(self) -> None:
        self._gone = True
        # What the stream still buffers, and Python's flush at exit, go to the null
        # device, not into an error at exit (as Python's documentation on SIGPIPE does).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)


@contextlib.contextmanager
def _printing_above_bar():
    stream = sys.stdout
    with contextlib.redirect_stdout(_LinesAboveBar(stream)) as wrapper:
        try:
            yield stream
        finally:
            wrapper.flush()


# ---------------------------------------------------------------------- arguments
def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _batch_size(value: str) -> int | str:
    return value if value == "auto" else _positive_int(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sktlag`` command."""
    parser = argparse.ArgumentParser(
        prog="sktlag",
        description="Streamflow prediction with a depth-growing LSTM (TLAG-LSTM).",
    )
    parser.add_argument("--version", action="version", version=f"sktlag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="fit on a table (default: the embedded Lahn data) and write artifacts",
        description="Fit a TLAG-LSTM with a sequential 64/16/20 % split (training, "
        "validation, test) and write the artifacts into a new directory.",
    )
    run.add_argument("table", nargs="?", metavar="TABLE",
                     help=".xlsx/.csv table of daily series (research layout: year, month, "
                     "day, discharge, stations; or tidy: a date column). Default: the "
                     "embedded Lahn data.")
    run.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="output directory (must be new or empty unless --force)")
    run.add_argument("--force", action="store_true",
                     help="replace an output directory of earlier artifacts once the new one is "
                     "complete")
    data = run.add_argument_group("data")
    data.add_argument("--target", nargs="+", metavar="COL",
                      help="target column(s); default: the column after year, month, day "
                      "(research layout), or the one column whose name means discharge, "
                      "such as Q, Qobs, discharge, flow (tidy layout); q_kalkofen for the "
                      "Lahn data")
    data.add_argument("--features", nargs="+", metavar="COL",
                      help="feature columns; default: all other value columns "
                      "(precipitation and temperature for the Lahn data)")
    data.add_argument("--layout", choices=["auto", "research", "tidy"], default="auto",
                      help="table layout (default: auto)")
    data.add_argument("--date-column", default=None, metavar="COL",
                      help="the date column of a tidy table (default: the one named "
                      f"{' or '.join(DATE_COLUMN_NAMES)}, in any case)")
    data.add_argument("--sheet", default=None, metavar="NAME",
                      help="workbook sheet, by name or 0-based position (default: 0)")
    data.add_argument("--missing-target", choices=["raise", "mask"], default=None,
                      help="empty target cells: an error (raise, default) or left out of "
                      "the loss and the scores (mask)")
    model = run.add_argument_group("model")
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a named hyperparameter set (hydrology: the reference "
                       "LSTM recipe at one layer, about 9 min; short_record: the same with "
                       "batches of 32, for ten years of daily data or less; research: the "
                       "original study's settings, slow; fast: a quick smoke run)")
    model.add_argument("--lookback", type=int, metavar="N", help="days per input window")
    model.add_argument("--hidden-size", type=int, metavar="N", help="LSTM width")
    model.add_argument("--max-layers", type=int, metavar="N", help="largest depth")
    model.add_argument("--max-epochs", type=int, metavar="N", help="epoch budget")
    model.add_argument("--threshold", type=float, metavar="X",
                       help="growth threshold, on the scale of --criterion")
    model.add_argument("--criterion", choices=CRITERIA,
                       help="what the threshold is compared with (see the user guide)")
    model.add_argument("--lr", type=float, metavar="X", help="Adam learning rate")
    model.add_argument("--batch-size", type=_batch_size, metavar="N",
                       help="windows per training batch, or auto (the default: the largest "
                       "of 16 to 256 that gives at least 45 updates per epoch)")
    model.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    model.add_argument("--seed", type=int, default=0, metavar="N",
                       help="random seed (default: 0)")
    model.add_argument("--members", type=_positive_int, default=1, metavar="N",
                       help="fit an ensemble of N members with their own seeds (drawn from "
                       "--seed): the mean prediction and 90 %% intervals calibrated on the "
                       "validation period (default: 1, a single model)")
    model.add_argument("--calibration", choices=("validation", "blocks"), default="validation",
                       help="where an ensemble's intervals are calibrated: on the validation "
                       "windows (the default), or also on one block of the training part "
                       "per member that the member does not train on")
    model.add_argument("--interval-scale", choices=("spread", "flow"), default=None,
                       help="the unit of an ensemble's interval scores: the members' spread, "
                       "or the spread plus a part that grows with the predicted flow, so "
                       "the band widens on floods (default: the ensemble's, "
                       f"{TLAGEnsemble().scale})")
    model.add_argument("--band", choices=("adaptive", "fixed"), default=None,
                       help="an ensemble's 90 %% band in predictions.xlsx and "
                       "lstm_prediction.png: adaptive (the default) adapts each test day's "
                       "band to the observed discharge of the days before it, as a "
                       "forecaster's band; fixed keeps the band calibrated at fit time, as "
                       "for a simulation without observations (metrics.json scores both)")
    model.add_argument("--error-correction", choices=("ar1", "none"), default=None,
                       help="the centre of an ensemble's adaptive band: ar1 (the default) "
                       "corrects the mean by the last observed error, carried over by the "
                       "lag-one coefficient of the calibration errors per day; none keeps "
                       "the mean")
    model.add_argument("--band-classes", choices=("high_flow", "none"), default=None,
                       help="high_flow gives the days an ensemble forecasts above the fit "
                       f"period's {HIGH_FLOW_QUANTILE * 100:g} %% quantile a band of their own, "
                       "calibrated on the "
                       "validation windows it forecast so; none, one band for all days "
                       "(default: the ensemble's, "
                       f"{TLAGEnsemble().band_classes or 'none'})")
    model.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                       help="processes fitting ensemble members at once (default: all "
                       "--members; on fewer cores they share them, which keeps every core "
                       "busy to the end); with more than one, members print no epoch "
                       "table, and an interrupt ends the command without artifacts")
    run.add_argument("--quiet", action="store_true",
                     help="no epoch table, progress bar or growth messages")
    run.set_defaults(handler=_run)

    predict = commands.add_parser(
        "predict", help="predict with a saved model file",
        description="Predict every row of a table with a model written by 'sktlag run' "
        "(adaptive_lstm_model.pth). The table needs daily dates without gaps and the "
        "model's feature columns; its target column (observed values, empty cells "
        "allowed) is optional. The first lookback - 1 predictions need the days before "
        "the table: give them with --history or --warmup-days, otherwise they read "
        "padding (a warning says so) unless the table continues the training period.",
    )
    predict.add_argument("model", type=Path, metavar="MODEL", help="a .pth model file")
    predict.add_argument("table", type=Path, metavar="TABLE", help="an .xlsx or .csv table")
    predict.add_argument("--out", type=Path, default=Path("predictions.xlsx"), metavar="FILE",
                         help="output .xlsx or .csv (default: predictions.xlsx)")
    predict.add_argument("--target", nargs="+", metavar="COL",
                         help="observed column(s) to write next to the predictions; default: "
                         "the model's target (stored by 'sktlag run'), otherwise the one "
                         "column whose name means discharge; none when the table lacks it")
    warmup = predict.add_mutually_exclusive_group()
    warmup.add_argument("--history", type=Path, metavar="HIST_TABLE",
                        help="a table with the same feature columns for the days directly "
                        "before the first day of TABLE (first sheet of a workbook); its last "
                        "lookback - 1 rows are the warm-up; its observed discharge, if any, "
                        "adapts an ensemble's band (see --band)")
    warmup.add_argument("--warmup-days", type=_positive_int, metavar="N",
                        help="the first N rows of TABLE are history only: used as warm-up, "
                        "not predicted")
    predict.add_argument("--band", choices=["adaptive", "fixed"], default=None,
                         help="an ensemble's 90 %% band: adaptive (the default) adapts each "
                         "day's band to the observed discharge of the days before it, in the "
                         "history and the table, where they have any; fixed keeps the band "
                         "calibrated at fit time")
    predict.add_argument("--layout", choices=["auto", "research", "tidy"], default="auto")
    predict.add_argument("--date-column", default=None, metavar="COL",
                         help="the date column of a tidy TABLE and HIST_TABLE (default: "
                         f"the one named {' or '.join(DATE_COLUMN_NAMES)}, in any case)")
    predict.add_argument("--sheet", default=None, metavar="NAME",
                         help="workbook sheet of TABLE, by name or 0-based position "
                         "(default: 0)")
    predict.add_argument("--force", action="store_true", help="replace an existing FILE")
    predict.set_defaults(handler=_predict)
    return parser


# ---------------------------------------------------------------------- run
_OPTION_PARAMS = {
    "lookback": "lookback",
    "hidden_size": "hidden_size",
    "max_layers": "max_layers",
    "max_epochs": "max_epochs",
    "threshold": "topo_derivative_threshold",
    "criterion": "derivative_criterion",
    "lr": "lr",
    "batch_size": "batch_size",
    "threads": "n_threads",
    "missing_target": "missing_target",
}


def _hyperparameters(args) -> dict:
    params = dict(PRESETS[args.preset]) if args.preset else {}
    for option, name in _OPTION_PARAMS.items():
        value = getattr(args, option)
        if value is not None:
            params[name] = value
    params.update(random_state=args.seed, verbose=0 if args.quiet else 1,
                  validation_fraction=VALIDATION_FRACTION)
    return params


def _load_data(args) -> tuple[pd.DataFrame, pd.Series | pd.DataFrame, str]:
    target = None
    if args.target is not None:
        target = args.target[0] if len(args.target) == 1 else list(args.target)
    for option, value in (("--sheet", args.sheet), ("--date-column", args.date_column)):
        if args.table is None and value is not None:
            raise CommandError(f"{option} is about a TABLE, and none was given (the "
                               "embedded Lahn data is read)")
    if args.table is None:
        X, y = load_lahn(return_X_y=True, as_frame=True,
                         target=target if target is not None else "q_kalkofen",
                         features=args.features)
        return X, y, "Lahn (embedded, sktlag.datasets.load_lahn)"
    table = read_table(
        args.table, layout=args.layout, target=target, features=args.features,
        sheet_name=args.sheet, allow_missing_target=args.missing_target == "mask",
        date_column=args.date_column,
    )
    if table.target_rule == "name":
        # Always said, also with --quiet: the command chose the target.
        print(f"target: {table.target_names[0]} (the one column whose name means "
              "discharge; --target chooses another)")
    return table.X, table.y, f"{args.table} ({table.layout} layout)"


def _fit_rows(n_rows: int) -> int:
    """Rows of the fit part of a table of ``n_rows`` (the rest is the test part)."""
    return int(n_rows * FIT_FRACTION)


def _rows_needed(lookback: int) -> int:
    """The fewest table rows whose fit part holds :func:`minimum_rows` and that leave a
    test day."""
    fit_rows = minimum_rows(lookback, VALIDATION_FRACTION)

    def enough(m: int) -> bool:
        return _fit_rows(m) >= fit_rows and m - _fit_rows(m) >= 1

    # int(m * FIT_FRACTION) >= fit_rows from about fit_rows / FIT_FRACTION on: start a
    # few rows below it (the product's rounding), not at fit_rows.
    m = max(fit_rows, math.floor(fit_rows / FIT_FRACTION) - 2)
    while not enough(m):
        m += 1
    return m


def _split(X, y, lookback: int, source: str):
    """The fit and the test part of the table, or an error that says how long it must be."""
    n = len(X)
    fit_rows = minimum_rows(lookback, VALIDATION_FRACTION)
    needed = _rows_needed(lookback)
    if n < needed:
        raise CommandError(
            f"{source} has {n} rows, too short: with a lookback of {lookback} rows (days) "
            f"its {FIT_FRACTION:.0%} fit part needs {fit_rows} rows (sktlag.windows."
            f"minimum_rows), so the table needs at least {needed}; use a longer table or "
            "a smaller --lookback"
        )
    n_fit = _fit_rows(n)
    return X.iloc[:n_fit], y.iloc[:n_fit], X.iloc[n_fit:], y.iloc[n_fit:]


def _span(index) -> str:
    if isinstance(index, pd.DatetimeIndex) and len(index):
        return f"{index[0].date()} .. {index[-1].date()}, {len(index)} days"
    return f"{len(index)} rows"


def _feature_list(columns, shown: int = 8) -> str:
    """``3 features: P, T, E`` (the first ``shown`` named): an input read by mistake
    (a simulation, an upstream gauge) shows before the fit."""
    names = [str(name) for name in columns]
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return (f"{len(names)} feature{'s' if len(names) != 1 else ''}: "
            f"{', '.join(names[:shown])}{more}")


def _target_names(y) -> list[str]:
    return [str(c) for c in y.columns] if isinstance(y, pd.DataFrame) else [str(y.name)]


def _lowest_value(y) -> float | list[float] | None:
    """The lowest value of an ensemble's bands: 0 for a target that is a discharge
    (never negative), no limit (-inf) for any other, nor for one whose name means
    discharge but whose values (of the fit period, the days the ensemble learns from) go
    below 0 (net or anomaly flows: a floor would cut their band); one number where they
    agree."""
    frame = y if isinstance(y, pd.DataFrame) else y.to_frame()
    limits = [0.0 if means_discharge(name) and not (frame[column] < 0).any() else -math.inf
              for name, column in zip(_target_names(y), frame.columns, strict=True)]
    if len(set(limits)) > 1:
        return limits
    return None if limits[0] == -math.inf else limits[0]


def _growth_lines(est: TLAGRegressor) -> list[str]:
    decisions = decisions_from_table(est.derivative_history_)
    return [f"  {describe_decision(d)}" for d in decisions] or [
        "  no growth decision was reached"
    ]


def _run(args) -> int:
    try:
        out_dir = check_output_dir(args.out, args.force,
                                   inputs=[args.table] if args.table is not None else [])
    except FileExistsError as exc:
        # --force replaces a non-empty directory, never a file.
        hint = " (--force)" if Path(args.out).is_dir() else ""
        raise CommandError(f"{exc}{hint}") from exc
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    X, y, source = _load_data(args)
    params = _hyperparameters(args)
    X_fit, y_fit, X_test, y_test = _split(
        X, y, params.get("lookback", TLAGRegressor().lookback), source)
    if not args.quiet:
        print(f"data: {source}; target {', '.join(_target_names(y))}; "
              f"{_feature_list(X.columns)}")
        print(f"fit (training + validation): {_span(X_fit.index)}")
        print(f"test: {_span(X_test.index)}")

    if args.calibration == "blocks" and args.members < 2:
        raise CommandError("--calibration blocks needs --members 2 or more: each member "
                           "leaves out a block of the training part the others calibrate on")
    if args.jobs is not None and args.members < 2:
        raise CommandError("--jobs needs --members 2 or more: it sets how many processes "
                           "fit ensemble members at once")
    for option, value in (("--interval-scale", args.interval_scale), ("--band", args.band),
                          ("--error-correction", args.error_correction),
                          ("--band-classes", args.band_classes)):
        if value is not None and args.members < 2:
            raise CommandError(f"{option} needs --members 2 or more: intervals come from "
                               "an ensemble")
    est = TLAGRegressor(**params)
    final, jobs = est, 1
    if args.members > 1:
        # All members at once by default: with one process per core, the last round
        # leaves cores idle (5 members on 2 cores: 3 rounds).
        jobs = args.jobs or args.members
        if jobs > 1:
            # Epoch tables and bars of members in parallel processes would interleave.
            est.set_params(verbose=0)
            if not args.quiet:
                print(f"fitting {args.members} members in {jobs} processes ...")
        final = TLAGEnsemble(est, n_members=args.members, n_jobs=jobs,
                             random_state=args.seed, calibration=args.calibration,
                             min_value=_lowest_value(y_fit))
        if args.interval_scale is not None:
            final.set_params(scale=args.interval_scale)
        if args.error_correction is not None:
            final.set_params(error_correction=None if args.error_correction == "none"
                             else args.error_correction)
        if args.band_classes is not None:
            final.set_params(band_classes=None if args.band_classes == "none"
                             else args.band_classes)
    pipe = Pipeline([("scaler", StandardScaler()), ("tlag", final)])
    pipe.set_output(transform="pandas")
    start = time.perf_counter()
    with _printing_above_bar() as terminal:
        if not args.quiet and jobs == 1:
            bar = EpochProgressBar(est.max_epochs, file=terminal)
            est.set_params(callbacks=[("progress", bar)])
        pipe.fit(X_fit, y_fit)
    seconds = time.perf_counter() - start
    members = members_of(pipe)
    # The bar belongs to this command, not to the model its artifacts describe.
    for model in (est, *members):
        model.set_params(callbacks=None)
    interrupted = any(getattr(m, "interrupted_", False) for m in members)

    periods = fit_periods(pipe, y_fit)
    metadata = {
        "data": source,
        "target_names": _target_names(y),
        "feature_names": [str(c) for c in X.columns],
        "split": {
            "fit_rows": len(X_fit), "test_rows": len(X_test),
            "training_windows": len(periods["train"]),
            "validation_windows": len(periods["validation"]),
        },
        "command": "sktlag run",
    }
    if len(members) > 1:
        metadata["split"]["member_training_windows"] = [
            _trained_windows(m, len(periods["train"])) for m in members]
    paths = write_artifacts(pipe, out_dir, X_test=X_test, y_test=y_test, X_train=X_fit,
                            y_train=y_fit, overwrite=args.force, metadata=metadata,
                            band=args.band or "adaptive")
    metrics = json.loads(paths["metrics_json"].read_text(encoding="utf-8"))
    print()
    if interrupted:
        held = ("the best state so far" if any(len(m.history_) for m in members)
                else "the untrained network (no epoch completed)")
        print("training was interrupted: the artifacts are marked as interrupted")
        print(f"sktlag: training interrupted; the artifacts in {out_dir} hold {held}",
              file=sys.stderr)
    print(f"fitted in {seconds:.0f} s")
    batch_lines = [_batch_line(member, len(periods["train"])) for member in members]
    # Members that left out blocks of different sizes trained on different windows, and
    # batch_size="auto" may have chosen differently for them: then each says its own.
    one_batch_line = len(set(batch_lines)) == 1
    if one_batch_line:
        print(f"  batch size {batch_lines[0]}")
    for i, member in enumerate(members, start=1):
        which = f"member {i}: " if len(members) > 1 else ""
        layers = "LSTM layer" if member.n_layers_ == 1 else "LSTM layers"
        print(f"  {which}{member.n_layers_} {layers} (best epoch {member.best_epoch_} of "
              f"{len(member.history_)})")
        if not one_batch_line:
            print(f"    batch size {batch_lines[i - 1]}")
        if not args.quiet:
            print("  growth decisions:")
            print("\n".join("  " + line for line in _growth_lines(member)))
    observed = (metrics["periods"].get("test") or {}).get("n_scored", len(X_test))
    unobserved = f", {observed} observed" if observed < len(X_test) else ""
    print(f"test metrics ({_span(X_test.index)}{unobserved}):")
    lines = _metric_lines(metrics) or ["none: no test day is observed"]
    print("\n".join("  " + line for line in lines))
    print(f"artifacts in {out_dir}/:")
    for path in paths.values():
        print(f"  {path.name:<40} {path.stat().st_size / 1024:>8.1f} KiB")
    # Non-zero although the artifacts exist: a script or scheduler must not take an
    # interrupted fit for a finished one.
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _trained_windows(est: TLAGRegressor, period_windows: int) -> int:
    """The windows of an epoch of ``est``, as skorch counted them: with
    calibration='blocks' a member trains on fewer than the table's training period holds
    (``period_windows``, said where no epoch was recorded; an epoch cut short is not in
    the history)."""
    if not len(est.history_):
        return period_windows
    return sum(batch.get("train_batch_size", 0) for batch in est.history_[-1]["batches"])


def _batch_line(est: TLAGRegressor, period_windows: int) -> str:
    """The batch size a fit used, how it was chosen and the updates per epoch it gave."""
    n_train_windows = _trained_windows(est, period_windows)
    size = est.batch_size_
    how = "chosen by batch_size='auto' for" if est.batch_size == "auto" else "for"
    return (f"{size} ({how} {n_train_windows} training windows: "
            f"{updates_per_epoch(n_train_windows, size)} updates per epoch)")


def _metric_lines(metrics: dict, period: str = "test") -> list[str]:
    """A compact table of the headline metrics of one period of ``metrics.json``."""
    entry = metrics["periods"].get(period)
    if not entry or not entry["metrics"]:
        return []
    header = f"{'output':<16}" + "".join(f"{m:>10}" for m in HEADLINE_METRICS)
    lines = [header]
    for output, values in entry["metrics"].items():
        cells = "".join(
            f"{values.get(m):>10.4f}" if isinstance(values.get(m), float) else f"{'n/a':>10}"
            for m in HEADLINE_METRICS
        )
        lines.append(f"{output:<16}{cells}")
    return lines + _interval_lines(entry.get("intervals"))


def _number(value, spec: str) -> str:
    """``value`` formatted, or n/a for an undefined one (null in the JSON file)."""
    return "n/a" if value is None or value != value else format(value, spec)


def _floor_text(limit, bands: dict) -> str:
    """``, never below 0`` for the limit of ``metrics.json`` (absent in files of sktlag
    0.2.0): one for every output, or per output where they differ."""
    if limit is None:
        return ""
    if not isinstance(limit, list):
        return f", never below {limit:g}"
    outputs = next(iter(bands.values()))
    return "".join(f", {output} never below {float(value):g}"
                   for output, value in zip(outputs, limit, strict=True)
                   if float(value) != -math.inf)


def _correction_text(intervals: dict) -> str:
    """The adaptive band's error correction of ``metrics.json``, in words ("" without
    one: files of sktlag 0.2.0, or a band centred on the mean)."""
    coefficients = intervals.get("error_coefficient") or {}
    if not any(coefficients.values()):
        return ""
    phi = " / ".join(f"{c:.2f}" for c in coefficients.values())
    return f"; centred on the forecast corrected by the last observed error, times {phi} a day"


def _classes_text(intervals: dict) -> str:
    """The bands' classes of ``metrics.json`` in words ("" for one band for all days, and
    in files written before the classes)."""
    if intervals.get("band_classes") != "high_flow":
        return ""
    return "; the days forecast above the high-flow threshold have bands of their own"


def _interval_lines(intervals: dict | None) -> list[str]:
    """Per band and output of ``metrics.json``: coverage at every level, width, high flows."""
    if not intervals:
        return []
    nominal = f"{intervals['nominal_coverage']:.0%}"
    floor = _floor_text(intervals.get("min_value"), intervals["bands"])
    described = {
        "fixed": f"fixed band (calibrated on {CALIBRATION_WINDOWS[intervals['calibration']]}"
                 f", scale {intervals['scale']}{floor}{_classes_text(intervals)})",
        "adaptive": f"adaptive band (each day adapts to the observations before it, rate "
                    f"{intervals['adapt_rate']:g}{_correction_text(intervals)})"
                    if intervals["adapt_rate"] else "",
    }
    lines, short = [], False
    for band, outputs in intervals["bands"].items():
        shown = " [predictions.xlsx]" if band == intervals.get("shown") else ""
        lines.append(f"{described[band]}{shown}:")
        for output, scores in outputs.items():
            levels = scores["levels"]
            # (Files of sktlag 0.2.0 do not say which levels lack scores.)
            marks = ["*" if v.get("spans_all_scores") else "" for v in levels.values()]
            short = short or any(marks)
            coverages = (_number(v["coverage"], ".1%").rstrip("%") + mark
                         for v, mark in zip(levels.values(), marks, strict=True))
            lines.append(
                f"  {output:<14}{nominal} coverage {_number(scores['coverage'], '.1%')} (high "
                f"flows {_number(scores['high_flow_coverage'], '.1%')}), width "
                f"{_number(scores['relative_width'], '.2f')} test std, CRPS "
                f"{_number(scores['crps'], '.4g')}; coverage at "
                f"{'/'.join(f'{float(c) * 100:g}' for c in levels)} %: "
                f"{' / '.join(coverages)} %")
    if short:
        lines.append("  * too few calibration scores for this level: its band spans all of "
                     "them and covers less than nominal")
    return lines


# ---------------------------------------------------------------------- predict
def _day(stamp) -> str:
    return f"{pd.Timestamp(stamp):%Y-%m-%d}"


def _targets_to_read(args, model_targets: list[str], n_outputs: int) -> list[str] | None:
    """The table's observed column of each of the model's outputs, in the model's order
    (None: the table's own discharge column).

    ``--target`` gives them by position, or by the model's own names in any order; a
    model's name given for another output is refused.
    """
    named = args.target
    if not named:
        return model_targets or None
    if len(named) != n_outputs:
        raise CommandError(
            f"--target names {_column_count(named)}, but '{args.model}' predicts "
            f"{n_outputs} output{'s' if n_outputs > 1 else ''}"
        )
    if sorted(named) == sorted(model_targets):
        return model_targets
    for position, name in enumerate(named):
        if name in model_targets and model_targets.index(name) != position:
            raise CommandError(
                f"--target gives {name!r} as the observed column of output {position + 1}, "
                f"but output {model_targets.index(name) + 1} of '{args.model}' is {name!r}; "
                f"name the observed column of each output in its order "
                f"({', '.join(model_targets)})"
            )
    return list(named)


def _observations(table, targets: list[str] | None):
    """The observations of ``targets`` in ``table``, a column of NaN for each one it
    lacks (None where it holds none); its own target where ``targets`` is None."""
    if table.y is None or targets is None or len(table.target_names) == len(targets):
        return table.y
    return table.y.reindex(columns=targets)


def _read_history(args, targets, features, start):
    """The table of ``--history``, which must end the day before ``start``."""
    past = read_table(args.history, layout=args.layout, target=targets, features=features,
                      allow_missing_target=True, require_target=False,
                      date_column=args.date_column)
    expected = start - pd.Timedelta(days=1)
    if past.dates[-1] != expected:
        raise CommandError(
            f"'{args.history}' ends on {_day(past.dates[-1])}, but the history must end on "
            f"{_day(expected)}, the day before '{args.table}' starts ({_day(start)})"
        )
    return past


def _padding_warning(est, X: pd.DataFrame, history: pd.DataFrame | None) -> str | None:
    """The warning for predictions whose window reaches before the known days, if any."""
    needed = est.lookback - 1
    known = 0 if history is None else len(history)
    # The model's lookback - 1 first days read padding, or none where they continue
    # the fit (the model keeps the fit's last days as their history).
    padded = min(est._padded_rows(history if history is not None else X) - known, len(X))
    if padded <= 0:
        return None
    return (
        f"{known} history day(s) before {_day(X.index[0])}, but the model's lookback of "
        f"{est.lookback} days needs {needed}: the first {padded} prediction(s) read "
        "padding (the means of the inputs given to fit) for the missing days; give the "
        "days before with --history or --warmup-days"
    )


def _column_count(names) -> str:
    return f"{len(names)} column{'s' if len(names) != 1 else ''} ({', '.join(names)})"


def _predict(args) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out '{out}' is a folder; name a .csv or .xlsx file")
    if out.exists() and not args.force:
        raise CommandError(f"'{out}' exists; choose another --out or replace it (--force)")
    check_table_suffix(out)
    check_destination(out)
    read = [Path(args.table)] + ([Path(args.history)] if args.history is not None else [])
    if out.exists() and any(out.samefile(path) for path in read if path.exists()):
        raise CommandError(f"--out '{out}' is the table it reads; name another file")
    model, metadata = load_model(args.model, return_metadata=True)
    est = members_of(model)[0]
    ensemble = final_ensemble(model)
    if args.band is not None and ensemble is None:
        raise CommandError(f"--band applies to an ensemble's model file (sktlag run --members "
                           f"2 or more); '{args.model}' holds one model, without a band")
    band_kind = args.band or "adaptive"
    # A pipeline's names are those of its first step: its regressor may have seen an
    # array from a scaler.
    features = getattr(model, "feature_names_in_", None)
    if features is None:
        raise CommandError(
            f"'{args.model}': the model was fitted without column names, so the table's "
            "columns cannot be matched; predict from Python instead"
        )
    features = [str(f) for f in features]
    targets = _targets_to_read(args, list(metadata.get("target_names") or []), est.n_outputs_)
    table = read_table(args.table, layout=args.layout, sheet_name=args.sheet,
                       date_column=args.date_column,
                       target=targets, features=features, allow_missing_target=True,
                       require_target=False)
    absent = [name for name in targets or [] if name not in table.target_names]
    if args.target and absent:
        # The model's own targets may be absent (future days); one named here must not.
        raise CommandError(f"'{args.table}': no target column(s) {absent}")
    X, y = table.X, _observations(table, targets)
    if y is not None and len(_target_names(y)) != est.n_outputs_:
        # Only a target found by its name can miscount: the model's file names none.
        raise CommandError(
            f"'{args.table}': {_column_count(table.target_names)} read as observed "
            f"discharge, but '{args.model}' predicts {est.n_outputs_} outputs and names "
            "none of them; --target names the table's observed column of each output"
        )
    history = history_y = None
    if args.history is not None:
        past = _read_history(args, targets, features, table.dates[0])
        history, history_y = past.X, _observations(past, targets)
    elif args.warmup_days is not None:
        if args.warmup_days >= len(X):
            raise CommandError(
                f"--warmup-days {args.warmup_days} leaves no rows to predict: "
                f"'{args.table}' has {len(X)} rows"
            )
        history, X = X.iloc[: args.warmup_days], X.iloc[args.warmup_days :]
        if y is not None:
            history_y, y = y.iloc[: args.warmup_days], y.iloc[args.warmup_days :]
    warning = _padding_warning(est, X, history)
    if warning:
        print(f"sktlag: warning: {warning}", file=sys.stderr)

    days = {"history": history, "observed": y, "history_observed": history_y}
    observed = (band_observations(model, X, **days) if band_kind == "adaptive" else None)
    names = _target_names(y) if y is not None else list(targets or [])
    if y is None and len(names) != est.n_outputs_:
        names = [f"output_{j}" for j in range(est.n_outputs_)]
    frame = forecast(model, X, **days, coverage=COVERAGE, band=band_kind, names=names)
    write_table(frame, out)
    if history is not None:
        source = args.history if args.history is not None else args.table
        print(f"warm-up: {_span(history.index)} from '{source}'")
    if table.target_rule == "name":
        print(f"observed: {table.target_names[0]} (the one column whose name means "
              "discharge; --target chooses another)")
    elif y is None:
        print("observed: none (the table has no target column)")
    elif absent:
        print(f"observed: {', '.join(table.target_names)} ({', '.join(absent)} not in the "
              "table)")
    if ensemble is not None:
        if observed is None:
            why = " (no observed discharge to adapt to)" if band_kind == "adaptive" else ""
            print(f"band: {COVERAGE:.0%}, fixed, calibrated on "
                  f"{CALIBRATION_WINDOWS[ensemble.calibration_]}{why}")
        else:
            days_seen = np.isfinite(observed).any(axis=1)
            print(f"band: {COVERAGE:.0%}, adaptive: each day's band adapts to the observed "
                  f"discharge of the days before it ({int(days_seen.sum())} observed days in "
                  f"the history and the table; rate {ADAPT_RATE:g})")
            ahead = len(days_seen) - 1 - int(np.flatnonzero(days_seen)[-1])
            if ahead >= 2 and ensemble.calibration_errors_ is not None:
                beyond = (f"; beyond {MAX_LEAD} days, that of {MAX_LEAD}" if ahead > MAX_LEAD
                          else "")
                print(f"band: the last {ahead} days follow the last observed day: each has "
                      f"the band of a forecast as many days ahead (1 to {ahead}{beyond})")
    print(f"{len(frame)} predictions ({_span(X.index)}) written to {out}")
    observed = _scored_observations(est, X, history, y)
    if np.isfinite(observed).sum() >= 2:
        for key, title in (("predicted", None),
                           ("corrected", "corrected by the last observed error (the band's "
                            "centre):")):
            try:
                pred = prediction_columns(frame, key, names)
            except KeyError:  # no corrected forecast: no adaptive band corrects one
                continue
            if title:
                print(title)
            summary = metrics_summary(model, {"table": (observed, pred, X.index)},
                                      names=names)
            print("\n".join(_metric_lines(summary, "table")))
        if ensemble is not None:
            band = {key: prediction_columns(frame, key, names) for key in ("lower", "upper")}
            print("\n".join(_band_lines(ensemble, observed, band, names)))
    return EXIT_OK


def _scored_observations(est, X, history, y) -> np.ndarray:
    """The table's observations the printed scores count, in the shape of ``y``: NaN on
    the days predicted from padding (the padding warning names them), whose errors judge
    the padding, not the model, as in the scores of ``sktlag run``."""
    if y is None:
        return np.empty(0)
    observed = np.asarray(y, dtype=float)
    known = 0 if history is None else len(history)
    days = np.concatenate([np.full((known, *observed.shape[1:]), np.nan), observed])
    return judged_observations(est, history if history is not None else X, days)[known:]


def _band_lines(ensemble, observed: np.ndarray, band: dict, names: list[str]) -> list[str]:
    """How the written band covered the table's observations, per output."""
    observed = observed.reshape(len(observed), -1)
    lower = np.asarray(band["lower"], dtype=float).reshape(observed.shape)
    upper = np.asarray(band["upper"], dtype=float).reshape(observed.shape)
    lines = []
    for k, name in enumerate(names):
        scores = interval_coverage(observed[:, k], lower[:, k], upper[:, k],
                                   ensemble.high_flow_threshold_[k])
        lines.append(f"{name:<16}{COVERAGE:.0%} band: coverage {_number(scores['coverage'], '.1%')}"
                     f" (high flows {_number(scores['high_flow_coverage'], '.1%')}), width "
                     f"{_number(scores['relative_width'], '.2f')} std of the observations")
    return lines


# ---------------------------------------------------------------------- entry point
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]):
    """Raise ``KeyboardInterrupt`` in the main thread on SIGTERM while active.

    A scheduler (Slurm, a container runtime, ``timeout``) stops a job with SIGTERM;
    handled like Ctrl-C, the training loop keeps its best state and the artifacts are
    still written. The signal number is appended to ``received``; the previous handler
    is restored on exit. Outside the main thread (where Python cannot handle signals),
    nothing is installed.
    """

    def interrupt(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        # None: a handler installed outside Python, which cannot be put back.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _warnings_as_lines():
    """Warnings as one line each, ``sktlag: warning: ...``, as the command's own are
    (Python's format adds a source line that means nothing to a user of the command)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"sktlag: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sktlag`` command with ``argv`` (default: ``sys.argv[1:]``).

    While the command runs, SIGTERM is handled like Ctrl-C (a ``KeyboardInterrupt``).

    Returns
    -------
    int
        The exit status: 0 on success; 2 for bad input or usage (after one line
        ``sktlag: error: ...`` on stderr); 130 after Ctrl-C (SIGINT) and 143 after
        SIGTERM, whether training was interrupted (the artifacts are written and marked
        interrupted) or the command was interrupted elsewhere (nothing is written).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    terminated: list[int] = []
    # No standard output at all (pythonw) stays so: print writes nothing there.
    stdout = None if sys.stdout is None else _ReaderMayLeave(sys.stdout)
    try:
        with (_sigterm_as_interrupt(terminated), _warnings_as_lines(),
              contextlib.nullcontext() if stdout is None else contextlib.redirect_stdout(stdout)):
            try:
                code = args.handler(args)
            finally:
                if stdout is not None:
                    # What is still buffered, while a reader that left can be told.
                    stdout.flush()
    # ImportError: an optional reader is missing (e.g. xlrd for .xls tables); the
    # message says which extra to install.
    except (OSError, ValueError, TypeError, ImportError) as exc:
        print(f"sktlag: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and terminated:
        return EXIT_TERMINATED
    return code


if __name__ == "__main__":
    sys.exit(main())
