"""`TLAGRegressor`: a depth-growing LSTM regressor that behaves like any scikit-learn regressor.

The estimator is the scikit-learn facade: it holds the hyperparameters, validates the
input, standardizes the targets and cuts the series into windows; the training module
builds and runs the skorch net around :class:`sktlag.model.GrowingLSTM` and its growth
callbacks. The fitted net is kept as ``net_``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._record import architectures, decision_table, decisions_from_table
from ._training import (
    CALLBACK_NAMES,
    RECIPE_NAMES,
    build_net,
    check_device,
    interruption_message,
    lr_factors,
    predict_windows,
    threads_for,
    torch_threads,
    train,
)
from .growth import CRITERIA, EIGENSOLVERS, HESSIAN_PRODUCTS, INSERTION_STRATEGIES
from .io import LARGEST_VALUE, MISSING_CODES
from .metrics import _constant_columns
from .recipe import ShortRecordWarning, record_problems, resolve_batch_size
from .windows import (
    WindowDataset,
    fewest_windows,
    fit_split,
    group_starts,
    holdout_blocks,
    minimum_rows,
    padded_series,
)

__all__ = ["PRESETS", "TLAGRegressor", "final_regressor"]

#: NeuralHydrology's training recipe at one layer (see ``"hydrology"`` below).
_HYDROLOGY = {
    "hidden_size": 64,
    "lookback": 180,
    "max_layers": 1,
    "max_epochs": 100,
    "max_epochs_per_layer": 100,
    "patience": 100,
}

#: Named hyperparameter sets (documented with their measured accuracy and time in
#: ``docs/benchmarks.md``).
#:
#: ``"hydrology"``: the training recipe of the field's reference LSTM
#: (NeuralHydrology's ``cudalstm`` setup: hidden 64, forget-gate bias 3, dropout 0.4
#: before the head, gradient norm clipped at 1, 100 epochs, learning rate halved at
#: epoch 20; batches from the record, ``batch_size="auto"``: 128 on 31 years, where
#: NeuralHydrology takes 256)
#: with a 180-day lookback, which measured as accurate as 365 days at half the cost;
#: one layer, no growth, every epoch trained, best validation epoch kept.
#: ``"short_record"``: the same recipe with a fixed batch of 32, for records of about
#: ten years of daily data or less; measured against batches of 256 (a dozen updates
#: per epoch there), on the research demo and on the last 11 years of the Lahn it
#: reached a higher test NSE at the same fit time (``benchmarks/vs_research.py``).
#: ``"research"``: the research code's ``main()`` (hours on a laptop CPU); its
#: derivative is a different quantity, so only its rule is kept: the raw derivative
#: against its threshold 0.01, no validation rule, the best single epoch.
#: ``"fast"``: tiny, for smoke tests and examples.
PRESETS: dict[str, dict] = {
    "hydrology": dict(_HYDROLOGY),
    "short_record": {**_HYDROLOGY, "batch_size": 32},
    "research": {
        "hidden_size": 128,
        "initial_num_layers": 3,
        "max_layers": 10,
        "dropout": 0.2,
        "output_dropout": 0.0,
        "initial_forget_bias": 0.0,
        "clip_gradient_norm": None,
        "lr_schedule": None,
        "lr": 1e-4,
        "batch_size": 128,
        "patience": 150,
        "moving_avg_window": 5,
        "max_epochs_per_layer": 10000,
        "max_epochs": 100000,
        "lookback": 30,
        "topo_derivative_threshold": 0.01,
        "derivative_criterion": "raw",
        "min_improvement": -math.inf,
        "select_by": "epoch",
        "growth_optimizer": "fresh",
        "num_power_iterations": 10,
    },
    "fast": {
        "hidden_size": 8,
        "max_layers": 3,
        "max_epochs": 12,
        "max_epochs_per_layer": 4,
        "patience": 2,
        "moving_avg_window": 2,
        "lookback": 7,
        "batch_size": 128,
        # Dropout before the head regularizes long trainings; a smoke run is too short.
        "output_dropout": 0.0,
        "derivative_samples": 64,
        "num_power_iterations": 20,
    },
}


#: Inputs larger than this in magnitude saturate the LSTM gates (a warning suggests
#: scaling them).
_LARGE_INPUT = 1e3


def _first_bad(values: np.ndarray, test) -> tuple[int, int, int] | None:
    bad = test(values)
    if not bad.any():
        return None
    rows, cols = np.nonzero(bad.reshape(len(values), -1))
    return int(rows[0]), int(cols[0]), int(bad.sum())


@contextlib.contextmanager
def naming_errors(what: str):
    """Prefix ``what:`` to the ValueErrors of the block: scikit-learn's input checks
    speak of X, also where they check the ``history`` rows."""
    if what == "X":
        yield
        return
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _check_finite(values: np.ndarray, what: str, columns: list[str] | None, allow_nan=False):
    """Raise a ValueError naming the first NaN/inf cell by row and column."""
    # Fast path without an array-sized temporary: a NaN or inf makes the sum non-finite
    # (an overflow alone only sends us to the exact check below, which then passes).
    if values.size == 0 or np.isfinite(values.sum(dtype=np.float64)):
        return
    checks = [("inf", np.isinf)] if allow_nan else [("NaN", np.isnan), ("inf", np.isinf)]
    for label, test in checks:
        found = _first_bad(values, test)
        if found is None:
            continue
        row, col, count = found
        name = repr(columns[col]) if columns is not None else str(col)
        raise ValueError(
            f"{what} contains {label} at row {row}, column {name} ({count} {label} value(s) "
            f"in total); remove or impute them first (e.g. SimpleImputer in a "
            f"Pipeline), they are never filled silently"
        )


def _check_magnitude(values: np.ndarray, what: str, columns: list[str] | None) -> None:
    """Raise a ValueError naming the first value beyond :data:`~sktlag.io.LARGEST_VALUE`
    by row and column: in float32, where the network computes, it would be infinite."""
    # Fast path without an array-sized temporary (a NaN, of a masked target, sends us
    # to the exact check, where it compares False).
    if values.size == 0 or (values.max() <= LARGEST_VALUE
                            and values.min() >= -LARGEST_VALUE):
        return
    with np.errstate(invalid="ignore"):
        found = _first_bad(values, lambda v: np.abs(v) > LARGEST_VALUE)
    if found is None:
        return
    row, col, count = found
    name = repr(columns[col]) if columns is not None else str(col)
    value = values.reshape(len(values), -1)[row, col]
    raise ValueError(
        f"{what} holds {value:g} at row {row}, column {name} ({count} value(s) beyond "
        f"{LARGEST_VALUE:.3g} in total): too large for float32, where the network "
        "computes; check the units or rescale"
    )


def _check_missing_codes(y: np.ndarray, what: str = "y") -> None:
    """Refuse targets that hold a code agencies write for a missing value (-999 ...)."""
    for code in MISSING_CODES:
        rows = np.flatnonzero((y == code).reshape(len(y), -1).any(axis=1))
        if len(rows):
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            raise ValueError(
                f"{what} holds {code:g} in rows {shown} ({len(rows)} in total): the "
                "missing-value code of GRDC, CAMELS and many agencies, not a discharge; "
                "replace it with NaN (missing_target='mask' leaves those days out)"
            )


def _outputs(n: int) -> str:
    return f"{n} output" if n == 1 else f"{n} outputs"


def _check_same_dates(X, y, name: str) -> None:
    """Refuse a dated ``y`` of as many rows as a dated ``X`` but on other days: rows are
    paired by position, so a shifted or reversed ``y`` would give each day the flow of
    another. Days, not stamps: a daily mean stamped 08:00 pairs with the inputs of its
    day stamped at midnight."""
    if not (isinstance(X, pd.DataFrame) and isinstance(X.index, pd.DatetimeIndex)
            and isinstance(y, pd.Series | pd.DataFrame)
            and isinstance(y.index, pd.DatetimeIndex)) or len(y) != len(X):
        return
    days = y.index
    if days.tz is not None and X.index.tz is not None:
        days = days.tz_convert(X.index.tz)  # the same instants, on X's calendar
    # Elementwise: the same days in another unit are the same days.
    other = np.flatnonzero(np.asarray(days.normalize() != X.index.normalize()))
    if not len(other):
        return
    row = int(other[0])
    raise ValueError(
        f"{name} is dated otherwise than X: its row {row} is {_stamp_text(y.index[row])}, "
        f"that of X {_stamp_text(X.index[row])}; rows are paired by position, so give "
        f"{name} one row per row of X, of the same day and in the same order"
    )


def observations(y, n_rows: int, n_outputs: int, name: str, X=None) -> np.ndarray:
    """``y`` as (n_rows, n_outputs) floats, NaN where a day has no observation; a
    ValueError for another shape, other dates than a dated ``X``, an infinite value, a
    value beyond float32 or a missing-value code."""
    _check_same_dates(X, y, name)
    y2 = np.asarray(y, dtype=float)
    shape = (len(y2), 1 if y2.ndim == 1 else y2.shape[1]) if y2.ndim in (1, 2) else None
    if shape != (n_rows, n_outputs):
        held = (f"{shape[0]} rows of {_outputs(shape[1])}" if shape
                else f"an array of shape {y2.shape}")
        raise ValueError(f"{name} holds {held}; the model predicts {n_rows} rows of "
                         f"{_outputs(n_outputs)} for X")
    y2 = y2.reshape(n_rows, -1)
    _check_finite(y2, name, None, allow_nan=True)
    _check_magnitude(y2, name, None)
    _check_missing_codes(y2, name)
    return y2


def _check_numeric_frame(X, what: str) -> None:
    if isinstance(X, pd.DataFrame):
        repeated = X.columns[X.columns.duplicated()].unique().tolist()
        if repeated:
            # X[name] would be a frame of those columns, not one of them.
            raise ValueError(f"{what} has the column name(s) {repeated} more than once; "
                             "give each column a name of its own")
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if bad:
            raise TypeError(
                f"{what} has non-numeric columns {bad} (dtypes "
                f"{[str(X[c].dtype) for c in bad]}); convert or drop them"
            )


def _check_time_order(X, groups, what: str = "X") -> None:
    """Refuse dates that are missing (NaT), go back or repeat within a series (each
    group, or all of ``X``, named ``what``).

    Only a :class:`~pandas.DatetimeIndex` says when a row is; other indexes (row numbers,
    labels) are taken as given in time order.
    """
    if not isinstance(X, pd.DataFrame) or not isinstance(X.index, pd.DatetimeIndex):
        return
    if X.index.hasnans:  # NaT compares False with every date: no order to check
        row = int(np.flatnonzero(X.index.isna())[0])
        raise ValueError(f"{what} has no date in row {row} (NaT): every row needs its date; "
                         "give it or drop the row")
    dates = X.index.to_numpy()
    back = dates[1:] <= dates[:-1]
    if groups is not None:  # a new series may start on any date
        back &= groups[1:] == groups[:-1]
    if not back.any():
        return
    row = int(np.argmax(back)) + 1
    day, before = X.index[row], X.index[row - 1]
    how = (f"repeats the date of row {row - 1}" if day == before
           else f"comes after row {row - 1} ({_stamp_text(before)})")
    if groups is None:
        remedy = f"sort them with {what}.sort_index() and drop repeated dates"
        if what == "X":
            remedy += " (several series one after another: pass groups)"
    else:
        label = groups[row]
        label = label.item() if isinstance(label, np.generic) else label  # np.int64(0): 0
        remedy = f"sort the rows of series {label!r} by date and drop repeated dates"
    raise ValueError(
        f"{what} is not in time order: row {row} ({_stamp_text(day)}) {how}; the rows must "
        f"run forward in time, one per time step: {remedy}"
    )


def _stamp_text(stamp) -> str:
    """A date as a hydrologist writes it: the day alone where the time is midnight."""
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


class SeriesRegressorMixin:
    """What the regressors of time series share: scikit-learn tags (one or several
    targets, no NaN in ``X``: gaps in the inputs must be filled, they are never filled
    silently), ``score`` with the series' ``groups``, and fits that leave the estimator
    as they found it when they fail."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = False
        return tags

    # With metadata routing, a search that routes ``groups`` scores each test fold with
    # them (a test fold of several series would otherwise read across their seams).
    __metadata_request__score = {"groups": True}

    def score(self, X, y, sample_weight=None, groups=None):
        """Coefficient of determination R² of ``predict(X, groups=groups)``.

        On one series R² is the Nash-Sutcliffe efficiency of hydrology. Where an output's
        observations do not vary, it is undefined: 1 for a perfect prediction, 0
        otherwise (scikit-learn's convention); several outputs are averaged.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        y : array-like of shape (n_rows,) or (n_rows, n_outputs)
            With ``missing_target="mask"``, NaN marks a day without an observation,
            left out of its output's score. An output with fewer than two observed days
            has no score: NaN, and so is the average (a fold of a cross-validation where a
            gauge has no data scores NaN rather than the other gauges' mean).
        sample_weight : array-like of shape (n_rows,), optional
        groups : array-like of shape (n_rows,), optional
            Series labels, as for ``predict``: without them, the first windows of a
            series read the end of the one before it.

        Returns
        -------
        score : float
        """
        # Days without an observation are left out where the fit masks them, as in
        # the validation NSE; elsewhere a NaN target is an error, as in fit.
        masked = self._missing_target() == "mask"
        _check_same_dates(X, y, "y")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y",
                        ensure_all_finite="allow-nan" if masked else True)
        predicted = np.asarray(self.predict(X, groups=groups))
        predicted = predicted.reshape(len(predicted), -1)
        # One row per row of X and one column per output: a y of the same size in
        # another shape (two outputs in one long column) would be scored all the same.
        observed = observations(y, *predicted.shape, "y")
        weights = (None if sample_weight is None
                   else _check_sample_weight(sample_weight, observed, dtype=np.float64))
        scores = []
        for obs, pred in zip(observed.T, predicted.T, strict=True):
            seen = ~np.isnan(obs)
            obs, pred = obs[seen], pred[seen]
            if len(obs) < 2:  # no series to score the output on (scikit-learn's NaN)
                scores.append(np.nan)
                continue
            # R² is undefined where the observations do not vary: scikit-learn's 1 for a
            # perfect prediction, 0 otherwise, also where rounding of the mean left a
            # spread of 1e-16 (which scored -1e28).
            if _constant_columns(obs.std(keepdims=True), obs.mean(keepdims=True))[0]:
                scores.append(float((obs == pred).all()))
            else:
                scores.append(r2_score(obs, pred, sample_weight=None if weights is None
                                       else weights[seen]))
        return float(np.mean(scores))

    def _missing_target(self) -> str:
        """How the fit treats a target row without an observation: ``missing_target``."""
        return self.missing_target

    @contextlib.contextmanager
    def _unchanged_if_fit_fails(self):
        """Run a fit that, if it raises, leaves the estimator as it found it.

        A fit sets its attributes phase by phase (the input's columns first, the network
        last): one that fails half-way would leave a model mixing two fits, e.g. the old
        network with the new target's shape, or look fitted after a failed first fit.
        """
        before = dict(vars(self))
        if getattr(self, "warm_start", False) and hasattr(self, "net_"):
            # A warm start trains the fitted net in place: what is put back is a copy of
            # the fitted state (copied as pickled, so that module_ is the copy's
            # net_.module_); the parameters stay the caller's objects.
            # A callback that cannot be copied (one holding an open file, or a tensor
            # with a gradient history) leaves the net to be put back as it is: the
            # copy guards against a failure and must not cause one.
            with contextlib.suppress(Exception):
                copied = vars(copy.deepcopy(self))
                before.update({name: value for name, value in copied.items()
                               if name.endswith("_")})
        try:
            yield
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise


def _next_label(index: pd.Index):
    """The label of the row after the last of ``index``: one more of its most common
    step (the smallest of those as common), or of its calendar step (the next month of a
    monthly index, whatever its length).

    A daily index with a time zone steps whole days of the calendar, 23 or 25 hours
    across a change of daylight saving time: a step of whole days on the wall clock is
    taken on the wall clock, any other in absolute time (an hourly index skips the hour
    the clocks skip).
    """
    calendar = _calendar_step(index)
    if calendar is not None:
        return index[-1] + calendar
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        wall = index.tz_localize(None)
        wall_step = _usual_step(wall)
        if wall_step % pd.Timedelta(days=1) == pd.Timedelta(0):
            return (wall[-1] + wall_step).tz_localize(index.tz, ambiguous=False,
                                                      nonexistent="shift_forward")
    return index[-1] + _usual_step(index)


def _usual_step(index: pd.Index):
    """The most common step of ``index``, the smallest of those as common: a day missing
    at the end of a record is a gap, not a new step."""
    return pd.Series(index[1:] - index[:-1]).mode().iloc[0]


def _check_history_dates(history, X) -> None:
    """Refuse a dated ``history`` out of time order, or that does not end the day (the
    step) before ``X`` begins: it would be read as the days before ``X`` all the same."""
    _check_time_order(history, None, "history")
    if not (isinstance(history, pd.DataFrame) and isinstance(X, pd.DataFrame)
            and isinstance(history.index, pd.DatetimeIndex)
            and isinstance(X.index, pd.DatetimeIndex) and len(history) >= 2 and len(X)):
        return
    expected = _next_label(history.index)
    if expected != X.index[0]:
        raise ValueError(
            f"history ends on {_when(history.index[-1])}, so X should start on "
            f"{_when(expected)}, but it starts on {_when(X.index[0])}: give the rows that "
            "directly precede X, in time order"
        )


def _when(stamp: pd.Timestamp) -> str:
    """A date, with its time of day where it has one."""
    return stamp.date().isoformat() if stamp == stamp.normalize() else str(stamp)


def _calendar_step(index: pd.Index):
    """The step of a date index whose rows are months, years, business days or any other
    step of the calendar rather than of time (its own frequency, or the one pandas
    infers from it); None for any other index."""
    if not isinstance(index, pd.DatetimeIndex):
        return None
    freq = index.freq
    if freq is None and len(index) >= 3:
        with contextlib.suppress(TypeError, ValueError):
            freq = pd.infer_freq(index)
    if freq is None:
        return None
    step = pd.tseries.frequencies.to_offset(freq)
    return None if isinstance(step, pd.offsets.Tick) else step


class TLAGRegressor(SeriesRegressorMixin, RegressorMixin, BaseEstimator):
    """Topologically Layer Adaptive Growing LSTM regressor for time series (e.g. streamflow).

    The network starts with ``initial_num_layers`` LSTM layers. Each architecture trains
    until the moving average of the validation NSE stops improving; then a topological
    derivative is computed for every position where a residual LSTM layer could be
    inserted, and the layer goes where it is largest, if it exceeds
    ``topo_derivative_threshold`` and the depth is below ``max_layers``. Otherwise
    growth ends, and training with it, unless the decision came at the architecture's
    ``max_epochs_per_layer`` cap: then it trains on to its own plateau. Likewise, when
    the validation rule finds that a layer inserted at a cap did not pay, the
    architecture before it trains on from its cap. The fitted model is the best
    validation state of the whole run.

    Parameters
    ----------
    hidden_size : int, default=32
        Width of every LSTM layer.
    initial_num_layers : int, default=1
        Depth at the start of training.
    max_layers : int, default=4
        Largest depth growth may reach.
    dropout : float, default=0.0
        Dropout on the input of every layer after the first (``dropout_between_layers``
        in the research code).
    output_dropout : float, default=0.4
        Dropout on the top layer's last hidden state, before the linear head
        (``output_dropout`` in NeuralHydrology).
    initial_forget_bias : float, default=3.0
        Forget-gate bias the LSTM layers start from (``initial_forget_bias`` in
        NeuralHydrology). Layers inserted by growth start from growth's own values.
    lookback : int, default=180
        Rows (days) in every input window: the prediction for row ``t`` reads rows
        ``t - lookback + 1 .. t``.
    lr : float, default=1e-3
        Adam learning rate (``learning_rate`` in the research code).
    lr_schedule : dict of int to float, sequence of (int, float) or None, default=((20, 0.5),)
        Factors of ``lr`` from given epochs on: the default trains at ``lr`` until
        epoch 19 and at ``0.5 * lr`` from epoch 20 (epochs of this ``fit``, counted from
        1, over all architectures). None: ``lr`` throughout.
    clip_gradient_norm : float or None, default=1.0
        Largest norm of the gradient of all parameters together; larger gradients are
        scaled down to it before the optimizer step. None: no clipping.
    batch_size : int or "auto", default="auto"
        Windows per training batch. ``"auto"`` picks it from the record: the largest
        of 16, 32, 64, 128 and 256 that gives at least 45 updates per epoch
        (:func:`sktlag.recipe.auto_batch_size`), so 128 on a record of 30 years, 32 on
        one of 10 and 16 on one of a few, where 256 would leave a handful of updates
        per epoch. The value used is ``batch_size_``.
    max_epochs : int, default=80
        Epochs over all architectures together.
    max_epochs_per_layer : int, default=40
        Epochs one architecture may train before a growth decision is forced. It only
        keeps epochs for growth: once a decision declines to grow (including at
        ``max_layers``), the network trains on to its own plateau (``patience``) or
        ``max_epochs``; so does an architecture whose grown successor did not pay
        (the ``"validation"`` rule), from where its cap had stopped it.
    patience : int, default=8
        Epochs without improvement of the moving-average validation NSE that end an
        architecture's training.
    moving_avg_window : int, default=5
        Epochs in the moving average of the validation NSE. Each architecture's
        average starts with its first full window, so a grown network is judged on as
        many epochs as its parent; an architecture that ends sooner is judged on the
        mean over all its epochs.
    topo_derivative_threshold : float, default=0.1
        A layer is inserted only where the topological derivative exceeds this value;
        ``inf`` disables growth (a fixed-depth LSTM). With
        ``derivative_criterion="relative"`` the derivative is ``d / (2 L)``: the
        relative decrease of the sample loss ``L`` that a new layer promises per unit of
        its parameters' squared norm (second order, along its best direction, with the
        downstream adjoint held fixed as the method's derivative is defined: an
        optimistic figure, checked on the real loss by the backtracking search), the
        same on any basin and target scaling. The default asks a layer to promise at least a
        0.1 % lower loss at the starting scale 0.1; measured values were 0.11 to 3.1 on
        basins the network learned and mostly below 0.1 where it learned nothing
        (``docs/benchmarks.md``, section 3).
    derivative_criterion : {"relative", "raw", "holdout"}, default="relative"
        ``"raw"`` compares the Hessian eigenvalue ``d`` itself with the threshold (its
        size follows the loss, so the target's scaling changes it). ``"holdout"``
        checks each position's direction on ``derivative_samples`` validation windows
        in 8 consecutive blocks and compares the mean second-order gain over the blocks,
        in units of its standard error (a t statistic), with the threshold: a layer
        goes in only where its promise holds on windows it was not chosen on (about 2
        is a sensible threshold; values near 0 mean the direction fits noise). Each
        decision then also builds one gradient graph and runs one Hessian-vector
        product per block.
    min_improvement : float, default=0.005
        Growth also ends when a grown architecture does not raise the run's best
        moving-average validation NSE by more than this (the ``"validation"`` rule).
    select_by : {"moving_average", "epoch"}, default="moving_average"
        How the fitted architecture is chosen among those tried: by the best moving
        average of its validation NSE (robust to a single lucky epoch), or by the best
        single epoch. Either way its weights are its best single epoch.
    growth_optimizer : {"fresh", "keep"}, default="fresh"
        After an insertion, ``"keep"`` continues with the same Adam state for the
        existing parameters and adds the new layer's; ``"fresh"`` re-creates Adam.
    num_power_iterations : int, default=40
        Budget of Hessian-vector products per candidate position for the eigen-solver.
    eigensolver : {"lanczos", "power"}, default="lanczos"
        Lanczos (full reorthogonalization) or power iteration shifted to find the
        largest algebraic eigenvalue.
    eigensolver_tol : float, default=0.03
        Stopping tolerance of the eigen-solver, relative to the eigenvalue: the Ritz
        residual bound for Lanczos, the change of the Rayleigh quotient for power
        iteration. A position stops earlier than ``num_power_iterations`` products once
        it is met. On trained networks, 0.03 chose the position of a solve to 1e-8
        with relative derivatives within 0.0044 (relative) of it, in 12 to 17 products
        where 1e-3 (the former default) took 22 to 28. On 17 records of 3 to 5 years
        the median record's test NSE did not change, and the decisions' median share of
        a fit's time fell from 0.194 to 0.133 (``docs/benchmarks.md``, section 5).
    hessian_products : {"auto", "expansion", "exact", "difference"}, default="auto"
        How the eigen-solver's Hessian-vector products are computed. ``"expansion"``:
        exact products of the Hamiltonian's second-order Taylor polynomial at zero,
        whose coefficients are moments of the derivative sample computed once per
        decision (:func:`sktlag.growth.hamiltonian_expansion`); no pass through a
        recurrent layer, so a product costs a few small matrix products on any device.
        ``"exact"``: by double backward through the virtual layers; on CUDA without
        cuDNN, whose fused LSTM kernels have no double backward. ``"difference"``:
        central differences of first-order gradients, two forward-backward passes of
        the virtual layers per product that cuDNN can run, at a step of the cube root
        of the machine epsilon (4.9e-3 in float32), with an error of order the step
        squared. All three choose the same position and direction on trained networks
        (``docs/benchmarks.md``, section 5). ``"auto"``: the expansion, on every
        device. Each decision records the kind it used in ``derivative_history_``.
    init_scale : float, default=0.1
        First scale tried by the backtracking search for the new layer's parameters.
    min_init_scale : float, default=1e-4
        Smallest scale tried; if even that raises the loss too much, the layer starts at
        zero (function-preserving).
    backtracking_tolerance : float, default=0.0
        A scale is accepted when the sample loss with the new layer is at most
        ``(1 + backtracking_tolerance)`` times the loss without it.
    growth_strategy : {"topological", "random", "append_zero"}, default="topological"
        Where and how a layer is inserted once growth is decided. ``"topological"`` is
        TLAG; ``"random"`` (random position, random direction, same backtracking) and
        ``"append_zero"`` (zero layer on top) are ablations for comparisons.
    derivative_samples : int, default=128
        Training windows (a fixed random sample) the derivatives are computed on.
    validation_fraction : float, default=0.2
        The last fraction of the training windows validates (chronological split, with
        a gap of ``lookback - 1`` windows so that no window is in both parts).
    missing_target : {"raise", "mask"}, default="raise"
        ``"raise"``: NaN in ``y`` is an error. ``"mask"``: NaN targets are left out of
        the loss, the validation NSE and the growth decisions.
    warm_start : bool, default=False
        If True and the estimator is fitted (also after an interrupted fit, or read
        back with :func:`sktlag.load_model` or joblib), ``fit`` continues from the
        fitted network instead of starting over (e.g. fine-tuning on another basin):
        from its depth (``n_layers_``, not ``initial_num_layers``) and weights, with a
        fresh Adam optimizer, for ``max_epochs`` *more* epochs. The target
        standardization and padding values of the first fit are kept, ``X`` must have
        the same features and ``y`` the same outputs, and ``hidden_size``, ``dropout``
        and ``output_dropout`` cannot change. The
        plateau detection starts afresh, so growth continues at the next plateau (with
        the current threshold and ``max_layers``). ``history_`` and
        ``derivative_history_`` are extended, epoch numbers continue. The fitted state,
        scored on the new validation windows, competes with the new epochs for the
        best, so continuing never ends on a worse validation score than it began.
    n_threads : int or None, default=None
        Torch CPU threads during ``fit`` and ``predict``. None uses torch's own count:
        the process's cores, or its share where a parallel runner set one (joblib's
        process workers and Dask's workers start torch with their share). On an idle
        2-core machine two threads made an epoch 1.4 to 1.5x faster than one, at the
        defaults and at the research preset; with the other core busy, 2.2 to 2.6x
        *slower* (``benchmarks/vs_research.py``). Pass 1 when other work shares the
        cores. The count changes the rounding of float sums, so fits are bit-identical
        for the same ``random_state`` and the same count (``n_threads_``), and
        otherwise agree to about 7 significant digits (e.g. ``GridSearchCV(n_jobs=1)``
        against ``n_jobs=2``).
    device : str, default="cpu"
        Torch device, e.g. ``"cuda"``.
    callbacks : list of (str, skorch.callbacks.Callback), default=None
        Further skorch callbacks for the training net (progress bars, loggers ...),
        run after the growth callbacks. The names must not be those of the
        estimator's own: ``lr_schedule``, ``clip_gradient``, ``valid_nse``,
        ``checkpoint``, ``non_finite``, ``plateau`` or ``growth``. As in skorch, the
        objects themselves train with the net, so what they record after a fit is that
        fit's (read it there); ``clone`` the estimator for callbacks in a fresh state.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, batch order and the derivative sample. With the same value and
        the same ``n_threads`` on the CPU, fits give identical predictions, in any
        process.
    verbose : int, default=0
        0 silent; 1 prints the epoch table and the growth decisions.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net (its ``module_`` is the best architecture of the run).
    module_ : GrowingLSTM
        The fitted network.
    n_layers_ : int
        Depth of the fitted network.
    growth_history_ : list of dict
        One entry per architecture tried: depth, epochs, best validation NSE.
    derivative_history_ : pandas.DataFrame
        One row per growth decision: epoch, depth, derivative of every position,
        chosen position, scale, backtracking steps, HVPs used and how they were
        computed (``hessian_products``), seconds, ``reason``.
        A decision that could not be computed has ``inserted`` False and a reason
        starting with ``"not computable"``.
    history_ : skorch.History
        Per-epoch records of the completed epochs (``train_loss``, ``valid_loss``,
        ``valid_nse``, ``valid_score``, ``valid_nse_ma``, ``n_layers``,
        ``layer_added``, ``growth_stopped``, ``non_finite`` ...).
    batch_size_ : int
        Windows per training batch in the last ``fit`` (``batch_size``, or the value
        ``"auto"`` chose).
    best_epoch_ : int or None
        Epoch whose weights the fitted network holds (None if no epoch validated).
    best_score_ : float
        Validation score of that epoch (the validation NSE wherever it is defined).
    growth_stop_rule_ : str
        What ended growth: a rule (``"validation"``, ``"threshold"``, ``"max_layers"``,
        ``"not_computable"``; training then ends at the current architecture's plateau
        or ``max_epochs``; ``"validation"`` also when the architecture that ends with
        the budget did not beat the best before it), ``"max_epochs"`` (the epoch budget
        ran out before a rule ended growth), ``"early_stopping"`` (skorch's
        ``EarlyStopping`` among ``callbacks`` ended it) or ``"interrupted"``. A fit that cannot
        grow (``max_layers=initial_num_layers``) ends with ``"max_layers"`` at its
        first plateau or ``max_epochs_per_layer``, with ``"max_epochs"`` when the
        budget comes first.
    n_threads_ : int
        Torch CPU threads the last ``fit`` ran on (``n_threads`` or torch's own count).
    interrupted_ : bool
        True when the last ``fit`` was ended by a ``KeyboardInterrupt`` (Ctrl-C) rather
        than by the growth rule, ``max_epochs`` or skorch's ``EarlyStopping`` (which
        stops by raising one). The estimator is still fitted and
        usable; see Notes.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` has string column names.
    n_outputs_ : int
    target_mean_, target_scale_ : ndarray of shape (n_outputs,)
        Target standardization, fitted on the training rows.
    padding_values_ : ndarray of shape (n_features,)
        Input values used in front of the series at ``predict`` (per-feature means of
        the input given to ``fit``, its validation rows included), where rows have no
        ``lookback - 1`` predecessors.
    warmup_rows_ : ndarray of shape (lookback - 1, n_features)
        The last input rows seen in ``fit``, used as real history by ``predict`` for a
        frame that continues the training index.
    warmup_index_ : object or None
        The index value at which such a frame starts (the day after the last training
        day for a daily index); None when ``fit`` had no index to continue.
    n_masked_targets_ : int
        Target values left out because they were NaN (``missing_target="mask"``).
    fit_time_ : float
        Seconds spent in the last ``fit``.

    Notes
    -----
    Rows are time-ordered. ``predict`` returns one value per row: the first
    ``lookback - 1`` rows have incomplete history, which is padded with
    ``padding_values_``; their predictions are less reliable.
    ``score`` is R^2, which on a discharge series is the Nash-Sutcliffe efficiency.

    **Interrupted fits.** A ``KeyboardInterrupt`` during training (mid-epoch, during a
    growth decision or its backtracking search) ends ``fit`` normally, with a
    ``UserWarning`` and ``interrupted_ = True``. As after a complete fit, the model is
    the best validated state of the run so far, architecture included: a state that
    completed an epoch, never the half-trained weights of the epoch cut short, nor a
    layer whose insertion was cut short (it is removed). If no epoch completed, it is
    the state training started from. The epoch cut short is not in ``history_``, a
    decision cut short is not in ``derivative_history_``. ``warm_start=True`` continues
    from there. An interrupt outside the training loop (e.g. during input validation)
    propagates as usual.

    **Numerical trouble.** Only finite weights are ever kept. When a training epoch
    ends with a NaN or inf loss or parameters, the architecture's best weights are
    restored with a fresh optimizer, a ``RuntimeWarning`` is issued and the epoch is
    treated as a plateau, so the growth rule decides next. A growth decision that
    cannot be computed (a non-finite loss, Hessian-vector product or eigenpair) inserts
    nothing, warns, is recorded, and ends growth as a below-threshold derivative would.
    Where the validation targets are constant the NSE is undefined; checkpoints and
    plateaus then follow ``valid_score`` = 1 - validation MSE in standardized units. A
    target constant over the training windows warns (nothing can be learned from it)
    and is predicted as that constant, give or take the network's noise. Inputs are not
    scaled internally: values beyond 1e3 in magnitude give a ``UserWarning`` suggesting
    a scaler.
    """

    _parameter_constraints: dict = {
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "initial_num_layers": [Interval(Integral, 1, None, closed="left")],
        "max_layers": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lookback": [Interval(Integral, 1, None, closed="left")],
        "output_dropout": [Interval(Real, 0, 1, closed="left")],
        "initial_forget_bias": [Interval(Real, None, None, closed="both")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [dict, tuple, list, None],
        "clip_gradient_norm": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_epochs_per_layer": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "moving_avg_window": [Interval(Integral, 1, None, closed="left")],
        "topo_derivative_threshold": [Interval(Real, None, None, closed="both")],
        "derivative_criterion": [StrOptions(set(CRITERIA))],
        "min_improvement": [Interval(Real, None, None, closed="both")],
        "select_by": [StrOptions({"moving_average", "epoch"})],
        "growth_optimizer": [StrOptions({"keep", "fresh"})],
        "num_power_iterations": [Interval(Integral, 2, None, closed="left")],
        "eigensolver": [StrOptions(set(EIGENSOLVERS))],
        "eigensolver_tol": [Interval(Real, 0, None, closed="left")],
        "hessian_products": [StrOptions(set(HESSIAN_PRODUCTS))],
        "init_scale": [Interval(Real, 0, None, closed="neither")],
        "min_init_scale": [Interval(Real, 0, None, closed="neither")],
        "backtracking_tolerance": [Interval(Real, 0, None, closed="left")],
        "growth_strategy": [StrOptions(set(INSERTION_STRATEGIES))],
        "derivative_samples": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "missing_target": [StrOptions({"raise", "mask"})],
        "warm_start": ["boolean"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_size=32,
        initial_num_layers=1,
        max_layers=4,
        dropout=0.0,
        output_dropout=0.4,
        initial_forget_bias=3.0,
        lookback=180,
        lr=1e-3,
        lr_schedule=((20, 0.5),),
        clip_gradient_norm=1.0,
        batch_size="auto",
        max_epochs=80,
        max_epochs_per_layer=40,
        patience=8,
        moving_avg_window=5,
        topo_derivative_threshold=0.1,
        derivative_criterion="relative",
        min_improvement=0.005,
        select_by="moving_average",
        growth_optimizer="fresh",
        num_power_iterations=40,
        eigensolver="lanczos",
        eigensolver_tol=3e-2,
        hessian_products="auto",
        init_scale=0.1,
        min_init_scale=1e-4,
        backtracking_tolerance=0.0,
        growth_strategy="topological",
        derivative_samples=128,
        validation_fraction=0.2,
        missing_target="raise",
        warm_start=False,
        n_threads=None,
        device="cpu",
        callbacks=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_size = hidden_size
        self.initial_num_layers = initial_num_layers
        self.max_layers = max_layers
        self.dropout = dropout
        self.output_dropout = output_dropout
        self.initial_forget_bias = initial_forget_bias
        self.lookback = lookback
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.clip_gradient_norm = clip_gradient_norm
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.max_epochs_per_layer = max_epochs_per_layer
        self.patience = patience
        self.moving_avg_window = moving_avg_window
        self.topo_derivative_threshold = topo_derivative_threshold
        self.derivative_criterion = derivative_criterion
        self.min_improvement = min_improvement
        self.select_by = select_by
        self.growth_optimizer = growth_optimizer
        self.num_power_iterations = num_power_iterations
        self.eigensolver = eigensolver
        self.eigensolver_tol = eigensolver_tol
        self.hessian_products = hessian_products
        self.init_scale = init_scale
        self.min_init_scale = min_init_scale
        self.backtracking_tolerance = backtracking_tolerance
        self.growth_strategy = growth_strategy
        self.derivative_samples = derivative_samples
        self.validation_fraction = validation_fraction
        self.missing_target = missing_target
        self.warm_start = warm_start
        self.n_threads = n_threads
        self.device = device
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_X(self, X, *, reset: bool, what: str = "X") -> np.ndarray:
        """``X`` (or the ``history`` rows, named ``what`` in the errors) as an array."""
        _check_numeric_frame(X, what)
        columns = list(map(str, X.columns)) if isinstance(X, pd.DataFrame) else None
        with naming_errors(what):
            X = validate_data(
                self, X, reset=reset, dtype=[np.float32, np.float64],
                ensure_all_finite=False, ensure_min_samples=1,
            )
        _check_finite(X, what, columns)
        _check_magnitude(X, what, columns)
        return X

    def _validate_y(self, y, n_rows: int) -> np.ndarray:
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        _check_numeric_frame(y, "y")
        columns = list(map(str, y.columns)) if isinstance(y, pd.DataFrame) else None
        y = check_array(
            y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False,
            input_name="y", ensure_min_samples=1,
        )
        if len(y) != n_rows:
            raise ValueError(
                f"X and y must have the same number of rows, got {n_rows} and {len(y)}"
            )
        _check_finite(y, "y", columns, allow_nan=self.missing_target == "mask")
        _check_magnitude(y, "y", columns)
        _check_missing_codes(y)
        return y

    def _check_hyperparameters(self) -> None:
        lr_factors(self.lr_schedule)
        own = (*RECIPE_NAMES, *CALLBACK_NAMES)
        for entry in self.callbacks or []:
            if isinstance(entry, tuple | list) and entry and entry[0] in own:
                raise ValueError(
                    f"callback name {entry[0]!r} is taken by the estimator's own callbacks "
                    f"{own}; choose another name"
                )
        if self.initial_num_layers > self.max_layers:
            raise ValueError(
                f"initial_num_layers={self.initial_num_layers} exceeds "
                f"max_layers={self.max_layers}"
            )
        if self.min_init_scale > self.init_scale:
            raise ValueError(
                f"min_init_scale={self.min_init_scale} exceeds init_scale={self.init_scale}"
            )
        check_device(self.device)

    def _check_length(self, n_rows: int, groups) -> None:
        """Every series (each group, or the whole of ``X``) is long enough to split."""
        minimum = minimum_rows(self.lookback, self.validation_fraction)
        needed = (f"with lookback={self.lookback} and validation_fraction="
                  f"{self.validation_fraction} at least {minimum} rows are needed (a training "
                  "and a validation part of full windows)")
        if groups is None:
            if n_rows < minimum:
                raise ValueError(f"X has {n_rows} rows (n_samples = {n_rows}); {needed}")
            return
        # group_starts checks the shape and the blocks; each block's first row and length:
        first, lengths = np.unique(group_starts(groups, n_rows), return_counts=True)
        short = [(label, n) for label, n in zip(groups[first].tolist(), lengths, strict=True)
                 if n < minimum]
        if short:
            names = ", ".join(f"{label!r} ({n} rows)" for label, n in short)
            several = len(short) > 1
            raise ValueError(f"group{'s' if several else ''} {names} "
                             f"{'are' if several else 'is'} too short: in each group {needed}")

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None):
        """Grow and train the network on a time-ordered series.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
            Inputs by time step (rows in time order).
        y : array-like of shape (n_rows,) or (n_rows, n_outputs)
            Targets by time step (e.g. discharge at one or several gauges).
        groups : array-like of shape (n_rows,), optional
            Series labels (e.g. basins), each a contiguous block of rows. Windows never
            cross from one group to the next; every group is split chronologically.

        Returns
        -------
        self : TLAGRegressor
        """
        start = time.perf_counter()
        continuing = self.warm_start and hasattr(self, "net_")
        frame = X if isinstance(X, pd.DataFrame) else None
        with self._unchanged_if_fit_fails():
            X, y, groups = self._validate_fit_input(X, frame, y, groups, continuing)
            train_ends, valid_ends = self._split(y, groups)
            self._adapt_to_record(y, groups, train_ends, valid_ends, continuing)
            if not continuing:
                self._fit_scaling(X, y, train_ends)
            self._store_warmup(X, frame, groups)
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            train_set, valid_set = self._window_datasets(X, y, train_ends, valid_ends)
            self._train(train_set, valid_set, seed, continuing)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _validate_fit_input(self, X, frame, y, groups, continuing: bool):
        """Checked ``X``, ``y`` as (rows, outputs) and ``groups`` as an array or None.

        ``frame`` is ``X`` when it is a DataFrame (its column names go into warnings).
        """
        self._check_hyperparameters()
        X = self._validate_X(X, reset=not continuing)
        _check_same_dates(frame, y, "y")
        y = self._validate_y(y, len(X))
        if continuing:
            self._check_continuation(y.reshape(len(y), -1))
        self._y_ndim = y.ndim  # predictions take the shape of the last fit's target
        self._warn_large_inputs(X, frame)
        groups = None if groups is None else np.asarray(groups)
        self._check_length(len(X), groups)
        _check_time_order(frame, groups)
        return X, y.reshape(len(y), -1), groups

    def _split(self, y: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation window ends (windows with an observed target)."""
        self.n_masked_targets_ = int(np.isnan(y).sum())
        if self.verbose and self.n_masked_targets_:
            print(
                f"{self.n_masked_targets_} missing target values masked out of the loss, "
                "the validation NSE and the growth decisions"
            )
        train_ends, valid_ends = fit_split(y, self.lookback, self.validation_fraction, groups)
        if len(train_ends) < 2 or len(valid_ends) < 2:
            raise ValueError(
                f"only {len(train_ends)} training and {len(valid_ends)} validation windows "
                "have an observed target; more rows with observed targets are needed"
            )
        return train_ends, valid_ends

    def _adapt_to_record(self, y: np.ndarray, groups, train_ends: np.ndarray,
                         valid_ends: np.ndarray, continuing: bool) -> None:
        """Set ``batch_size_`` and warn about what the record cannot carry."""
        self.batch_size_ = resolve_batch_size(self.batch_size, len(train_ends))

        def shortest(ends: np.ndarray) -> tuple[object, int] | None:
            # The series with the fewest of these windows; None for one series.
            return None if groups is None else fewest_windows(ends, groups)

        def fewest_training(ends: np.ndarray) -> int:
            return len(ends) if groups is None else shortest(ends)[1]

        def lookback_that_fits() -> int | None:
            # The largest lookback whose training windows are at least the rows it
            # spends on history in every series (None: not even 2 windows at 1).
            # Training windows grow as the lookback shrinks, so the test is monotone:
            # a bisection, one split per step (each a pass over every row).
            def fits(lb: int) -> bool:
                n = fewest_training(fit_split(y, lb, self.validation_fraction, groups)[0])
                return n >= max(2 * (lb - 1), 2)

            low, high = 0, self.lookback - 1  # fits(low) (0: sentinel), not fits(high + 1)
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(middle) else (low, middle - 1)
            return low or None

        depth = self.n_layers_ if continuing else self.initial_num_layers
        may_grow = self.max_layers > depth and self.topo_derivative_threshold < math.inf
        for problem in record_problems(
            n_train_windows=len(train_ends), n_valid_windows=len(valid_ends),
            lookback=self.lookback, batch_size=self.batch_size_, may_grow=may_grow,
            lookback_that_fits=lookback_that_fits,
            shortest_training=shortest(train_ends), shortest_validation=shortest(valid_ends),
        ):
            warnings.warn(problem, ShortRecordWarning, stacklevel=4)

    def _fit_scaling(self, X: np.ndarray, y: np.ndarray, train_ends: np.ndarray) -> None:
        self.n_outputs_ = y.shape[1]
        train_targets = y[train_ends]
        observed = (~np.isnan(train_targets)).sum(axis=0)
        if (observed < 2).any():
            k = int(np.argmax(observed < 2))
            raise ValueError(
                f"y column {k} has {observed[k]} observed values in the {len(train_ends)} "
                "training windows; each output needs at least 2 to be learned (the "
                "training part is the first 1 - validation_fraction of the windows)"
            )
        self.target_mean_ = np.nanmean(train_targets, axis=0)
        scale = np.nanstd(train_targets, axis=0)
        # Rounding leaves a constant a spread of about 1e-17 of its mean, not 0.
        constant = _constant_columns(scale, self.target_mean_)
        self.target_scale_ = np.where(constant, 1.0, scale)
        for k in np.flatnonzero(constant):
            which = "y" if len(constant) == 1 else f"y column {k}"
            warnings.warn(
                f"{which} is constant ({self.target_mean_[k]:g}) over the training "
                "windows (a river dry through the whole training part?): there is nothing "
                "to learn, and it is predicted as that value give or take the network's "
                "noise; fit on a part where the discharge varies",
                UserWarning, stacklevel=4,
            )
        self.padding_values_ = X.mean(axis=0)

    def _window_datasets(self, X, y, train_ends, valid_ends):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        # torch warns about read-only arrays (e.g. a memory map): give it its own copy.
        X_t = torch.from_numpy(X32 if X32.flags.writeable else X32.copy())
        y_t = torch.from_numpy(((y - self.target_mean_) / self.target_scale_).astype(np.float32))
        return (WindowDataset(X_t, y_t, train_ends, self.lookback),
                WindowDataset(X_t, y_t, valid_ends, self.lookback))

    def _train(self, train_set, valid_set, seed: int, continuing: bool) -> None:
        rows = np.random.default_rng(seed).choice(
            len(train_set), min(self.derivative_samples, len(train_set)), replace=False
        )
        # Partials of the datasets' methods, not closures: a net must pickle mid-fit
        # (skorch's Checkpoint with f_pickle does it every epoch).
        derivative_sample = functools.partial(train_set.gather, np.sort(rows), self.device)
        # The held-out check adds a gradient graph per block: only where it decides.
        holdout_sample = None
        if self.derivative_criterion == "holdout":
            blocks = holdout_blocks(len(valid_set), self.derivative_samples)
            holdout_sample = functools.partial(valid_set.gather_blocks, blocks, self.device)

        params = {**self.get_params(deep=False), "batch_size": self.batch_size_}
        earlier = decisions_from_table(self.derivative_history_) if continuing else []
        net = self.net_ if continuing else build_net(
            params, self.n_features_in_, self.n_outputs_, valid_set=valid_set,
            derivative_sample=derivative_sample, holdout_sample=holdout_sample, seed=seed,
        )
        outcome = train(net, params, train_set, valid_set, derivative_sample=derivative_sample,
                        holdout_sample=holdout_sample, seed=seed, continuing=continuing)
        self.net_ = net
        self.module_ = net.module_
        self.n_layers_ = self.module_.num_layers
        self.n_threads_ = threads_for(self.n_threads)
        self.history_ = net.history
        self.interrupted_ = outcome.interrupted
        self.best_epoch_ = outcome.best_epoch
        self.best_score_ = outcome.best_score
        self.growth_stop_rule_ = outcome.stop_rule
        self.growth_history_ = architectures(net.history)
        # A warm start appends its decisions to those of the earlier fits.
        self.derivative_history_ = decision_table(earlier + outcome.decisions)
        if outcome.interrupted:
            message = interruption_message(net, outcome)
            if self.verbose:
                print(message)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _check_continuation(self, y2: np.ndarray) -> None:
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2.shape[1]} outputs, the fitted model predicts {self.n_outputs_}"
            )
        spec = self.net_.module_.get_spec()
        # The net also stays on its device: derivative samples would go to a new one.
        fixed = [("hidden_size", spec["hidden_size"]), ("dropout", spec["dropout"]),
                 ("output_dropout", spec.get("output_dropout", 0.0)),
                 ("device", self.net_.device)]
        for name, fitted in fixed:
            if getattr(self, name) != fitted:
                raise ValueError(
                    f"warm_start cannot change {name} (fitted {fitted}, now "
                    f"{getattr(self, name)}); fit with warm_start=False to start over"
                )

    def _warn_large_inputs(self, X: np.ndarray, X_frame) -> None:
        # max(|x|) per column, without an array-sized temporary
        magnitude = (
            np.maximum(X.max(axis=0), -X.min(axis=0)) if len(X) else np.zeros(X.shape[1])
        )
        column = int(np.argmax(magnitude))
        if magnitude[column] <= _LARGE_INPUT:
            return
        name = repr(str(X_frame.columns[column])) if X_frame is not None else str(column)
        warnings.warn(
            f"X has values up to {magnitude[column]:.3g} in magnitude (column {name}); "
            "LSTM gates saturate on unscaled inputs and learn little from them: scale X, "
            "e.g. with a StandardScaler in a Pipeline",
            UserWarning,
            stacklevel=4,
        )

    def __getstate__(self):
        # ``module_`` is ``net_.module_``. Pickled only inside ``net_``, whose unpickling
        # maps tensors to an available device (a model trained on CUDA loads on a
        # CPU-only machine), and the two names still point to one module afterwards.
        state = dict(super().__getstate__())
        state.pop("module_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "net_" in self.__dict__:
            self.module_ = self.net_.module_
            if "batch_size_" not in self.__dict__:
                # Pickled before batch_size="auto" existed: the batch size was the
                # parameter. (Not setdefault: its default would be evaluated, and fail,
                # for every model fitted with "auto".)
                self.batch_size_ = int(self.batch_size)

    def _store_warmup(self, X: np.ndarray, X_frame, groups) -> None:
        # The last lookback - 1 rows seen in fit: predict() uses them as real history
        # for a frame whose index continues the training index (the next test fold).
        pad = self.lookback - 1
        self.warmup_rows_ = X[len(X) - pad :].copy() if pad > 0 else X[:0].copy()
        self.warmup_index_ = None
        if X_frame is not None and groups is None and len(X_frame.index) >= 2:
            try:
                self.warmup_index_ = _next_label(X_frame.index)
            except TypeError:  # an index without arithmetic (e.g. strings)
                self.warmup_index_ = None

    def _warmup_for(self, X_original, history) -> np.ndarray | None:
        if history is None:
            return self._fit_days_before(X_original)
        rows = self._validate_X(history, reset=False, what="history")
        _check_history_dates(history, X_original)
        if self.lookback == 1:
            return None
        # A history that itself continues the fit (the days since it, in a forecast
        # loop) follows the fit's last days; any other, padding.
        before = self._fit_days_before(history)
        if before is not None:
            rows = np.concatenate([before, rows])
        # The last lookback - 1 rows, or all of a shorter history (padding goes first).
        return rows[max(len(rows) - (self.lookback - 1), 0) :]

    def _fit_days_before(self, frame) -> np.ndarray | None:
        """``warmup_rows_`` where ``frame`` starts where the frame given to fit ended."""
        expected = getattr(self, "warmup_index_", None)
        if expected is None or not isinstance(frame, pd.DataFrame) or len(frame) == 0:
            return None
        try:
            follows = bool(frame.index[0] == expected)
        except (TypeError, ValueError):
            return None
        return self.warmup_rows_ if follows else None

    def _padded_rows(self, X) -> int:
        """How many first rows of ``X`` :meth:`predict` reads padding for, without a
        ``history``: none where ``X`` continues the frame given to ``fit``."""
        return 0 if self._fit_days_before(X) is not None else self.lookback - 1

    def predict(self, X, groups=None, history=None):
        """Predict targets for every row of a time-ordered series.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        groups : array-like of shape (n_rows,), optional
            Series labels as in :meth:`fit`; windows do not cross groups.
        history : array-like of shape (n_history, n_features), optional
            The rows that directly precede ``X`` (in the same units as ``X``); their last
            ``lookback - 1`` rows replace the padding (a shorter history that continues
            the frame given to ``fit`` follows its last rows). Dated frames must meet:
            the history's next day is the first of ``X``. Not with ``groups``.

        Returns
        -------
        y : ndarray of shape (n_rows,) or (n_rows, n_outputs)
            In the units of the ``y`` given to ``fit``.

        Notes
        -----
        A row without ``lookback - 1`` predecessors in ``X`` reads padding values
        (``padding_values_``). Real history replaces them when ``history`` is given, or
        when ``X`` is a DataFrame whose index directly continues the index of the frame
        given to ``fit`` (e.g. a ``TimeSeriesSplit`` test fold after its training fold;
        in a ``Pipeline`` use ``set_output(transform="pandas")`` so the index reaches
        the estimator): then the last ``lookback - 1`` rows seen in ``fit``
        (``warmup_rows_``) are used.
        """
        check_is_fitted(self, "net_")
        X_original = X
        X = self._validate_X(X, reset=False)
        if history is not None and groups is not None:
            raise ValueError("history cannot be combined with groups")
        history = self._warmup_for(X_original, history) if groups is None else None
        series, ends = padded_series(
            X, self.lookback, self.padding_values_,
            None if groups is None else np.asarray(groups), history,
        )
        _check_time_order(X_original, None if groups is None else np.asarray(groups))
        dataset = WindowDataset(
            torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)), None, ends,
            self.lookback,
        )
        with torch_threads(self.n_threads):
            pred = predict_windows(self.net_.module_, dataset, self.batch_size_)
        pred = pred * self.target_scale_ + self.target_mean_
        return pred.ravel() if self._y_ndim == 1 else pred


def final_step(model):
    """``model`` itself, or the last step of a pipeline."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def final_regressor(model, *, fitted: bool = True) -> TLAGRegressor:
    """The :class:`TLAGRegressor` of ``model``: itself, or the last step of a pipeline.

    Raises
    ------
    TypeError
        If ``model`` is neither.
    sklearn.exceptions.NotFittedError
        If ``fitted`` is True and the regressor is not fitted.
    """
    est = final_step(model)
    if not isinstance(est, TLAGRegressor):
        raise TypeError(
            f"expected a TLAGRegressor or a pipeline ending in one, got {type(est).__name__}"
        )
    if fitted:
        check_is_fitted(est, "net_")
    return est
