"""Forecasting with a fitted model: the days to predict, the days before them, and the
discharge observed so far.

Two things a forecaster needs are not in ``predict`` alone. ``Pipeline.predict(X,
history=H)`` hands ``H`` to its last step as it is, so the regressor would read raw
inputs where it was fitted on scaled ones; and an ensemble's adaptive band learns only
from the observations of the rows it predicts, so the discharge observed on the days
before ``X`` would not correct its first day. :func:`sktlag.forecast` does both: the history
rows go through the pipeline's transformers like ``X``, and the ensemble predicts the
history days and ``X`` as one series, whose band runs through the observed history into
``X``. The ``sktlag predict`` command forecasts with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .ensemble import final_ensemble, judged_observations, members_of
from .estimator import _check_history_dates, observations
from .metrics import output_names
from .report import prediction_table

__all__ = ["BANDS", "band_observations", "forecast"]

#: The bands :func:`sktlag.forecast` gives an ensemble's predictions: ``"adaptive"`` adapts to
#: (and, with error correction, is centred by) the discharge observed before each day;
#: ``"fixed"`` keeps the band calibrated at fit time.
BANDS = ("adaptive", "fixed")


def forecast(model, X, *, history=None, observed=None, history_observed=None,
             coverage=0.9, band="adaptive", names=None) -> pd.DataFrame:
    """Predictions (and an ensemble's band) for the days of ``X``, as a forecaster makes them.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        Fitted; a pipeline ends in one of the two and transforms ``X`` and ``history``
        alike.
    X : array-like of shape (n_rows, n_features)
        The raw inputs of the days to predict, as given to the model's ``predict``.
    history : array-like of shape (n_history, n_features), optional
        The raw inputs of the days directly before ``X`` (see ``history`` of
        :meth:`TLAGRegressor.predict`). Dated frames must end the day before ``X``.
    observed : array-like of shape (n_rows,) or (n_rows, n_outputs), optional
        The discharge observed on the days of ``X``, NaN where not (yet) known. Written
        in the ``observed`` column(s); for an ensemble's adaptive band, each day's band
        adapts to the observations of the days before it.
    history_observed : array-like of shape (n_history,) or (n_history, n_outputs), optional
        The discharge observed on the history days, NaN where not known: the adaptive
        band starts ``X`` from them (the first day of ``X`` corrected by the error of the
        last history day). Needs ``history``; only the days past its first
        ``lookback - 1`` count (see Notes), and a history read wholly from padding warns.
    coverage : float, default=0.9
        Nominal coverage of an ensemble's band.
    band : {"adaptive", "fixed"}, default="adaptive"
        An ensemble's band: adaptive where any day is observed (fixed otherwise), or the
        band fixed at fit time. Ignored for a single regressor, which gives no band.
    names : sequence of str, optional
        Output names for the columns of several outputs (default: the columns of
        ``observed``, else ``output_0``, ...).

    Returns
    -------
    pandas.DataFrame
        :func:`sktlag.report.prediction_table` of the days of ``X``: ``predicted`` (the
        members' mean for an ensemble), ``lower`` and ``upper`` for an ensemble, and
        ``observed`` when given; with an ensemble's adaptive band and its
        ``error_correction``, also ``corrected``: the forecast corrected by the last
        error observed before each day, the band's centre
        (:meth:`~sktlag.TLAGEnsemble.predict_corrected`). Indexed by date where ``X``
        has a :class:`pandas.DatetimeIndex`.

    Notes
    -----
    The observations of days predicted from padding (the first ``lookback - 1`` days
    of the history and ``X``, unless they continue the days given to ``fit``) judge the
    padding rather than the model, so the band does not learn from them.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie strictly between 0 and 1, got {coverage!r}")
    if history_observed is not None and history is None:
        raise ValueError("history_observed holds the discharge of the history days: give "
                         "their inputs as history as well")
    est = members_of(model)[0]  # also: a fitted sktlag model (or pipeline), or an error
    names = output_names(observed, est.n_outputs_) if names is None else list(names)
    if len(names) != est.n_outputs_:
        raise ValueError(f"names holds {len(names)} name(s); the model predicts "
                         f"{est.n_outputs_} output(s)")
    if history is not None:
        _check_history_columns(history, X)
        _check_history_dates(history, X)
    days = _days_observed(X, history, observed, history_observed, est.n_outputs_)
    learned_from = None
    if band == "adaptive" and final_ensemble(model) is not None:
        learned_from = _judged(est, X, history, days)
        _warn_if_history_unused(est, days, learned_from, len(X))
    pred, bounds = _predict(model, X, history, learned_from, coverage)
    dated = isinstance(X, pd.DataFrame) and isinstance(X.index, pd.DatetimeIndex)
    return prediction_table(None if observed is None else days[len(days) - len(X):], pred,
                            X.index if dated else None, names=names, **bounds)


def _check_history_columns(history, X) -> None:
    """Refuse a history frame whose columns are not those of ``X``, in their order: the
    two are read as one series (a pipeline's first step would otherwise name neither)."""
    if isinstance(history, pd.DataFrame) and isinstance(X, pd.DataFrame) \
            and list(history.columns) != list(X.columns):
        raise ValueError(f"history has the columns {list(history.columns)}, X has "
                         f"{list(X.columns)}: give the history the columns of X, in order")


def band_observations(model, X, *, history=None, observed=None,
                      history_observed=None) -> np.ndarray | None:
    """The observations an ensemble's adaptive band learns from in :func:`sktlag.forecast`.

    Returns
    -------
    ndarray of shape (n_history + n_rows, n_outputs) or None
        The discharge of the history days, then of the days of ``X``; NaN where not
        observed or predicted from padding. None for a single regressor, or where no
        day is observed (the band then stays fixed).
    """
    if final_ensemble(model) is None:
        return None
    est = members_of(model)[0]
    return _judged(est, X, history,
                   _days_observed(X, history, observed, history_observed, est.n_outputs_))


def _judged(est, X, history, days: np.ndarray) -> np.ndarray | None:
    """``days`` without the days predicted from padding (the first days of the history,
    or of X without one, unless they continue the fit: the model kept the fit's last
    days as their history); None where no day is left."""
    judged = judged_observations(est, history if history is not None else X, days)
    return judged if np.isfinite(judged).any() else None


def _warn_if_history_unused(est, days, judged, n_rows: int) -> None:
    """Warn where the history's discharge was given but every observed history day was
    predicted from padding, so the band cannot learn from it."""
    n_history = len(days) - n_rows
    if not np.isfinite(days[:n_history]).any():
        return
    if judged is not None and np.isfinite(judged[:n_history]).any():
        return
    warnings.warn(
        f"the band does not learn from the discharge of the {n_history} history day(s): "
        f"each is predicted from padding (a lookback of {est.lookback} days reads the "
        f"{est.lookback - 1} days before each day); give more than {est.lookback - 1} "
        "history days",
        UserWarning, stacklevel=3)


def _days_observed(X, history, observed, history_observed, n_outputs) -> np.ndarray:
    """The discharge of the history days, then of the days of ``X``, NaN where not
    observed: a new (n_history + n_rows, n_outputs) array."""
    parts = [(history, history_observed, "history_observed"), (X, observed, "observed")]
    return np.concatenate([
        np.full((len(rows), n_outputs), np.nan) if values is None
        else observations(values, len(rows), n_outputs, name, rows)
        for rows, values, name in parts if rows is not None
    ])


def _predict(model, X, history, observed, coverage):
    """Predictions for ``X`` and, for an ensemble, its band (else an empty dict)."""
    steps = getattr(model, "steps", None)
    if steps and len(steps) > 1:
        # Pipeline.predict would hand the history to its last step untransformed.
        transformers = model[:-1]
        X = transformers.transform(X)
        history = None if history is None else transformers.transform(history)
    final = model[-1] if steps else model
    context = {} if history is None else {"history": history}
    if final_ensemble(final) is None:
        return final.predict(X, **context), {}
    # stacklevel 3: a warning names the caller of forecast.
    if observed is None:
        pred, _, lower, upper = final._forecast(X, coverage, stacklevel=3, **context)
        return pred, {"lower": lower, "upper": upper}
    # The history days are predicted too (the band runs through them into X); the
    # same windows give the predictions of X.
    n = len(X)
    if history is not None:
        X = (pd.concat([history, X]) if isinstance(X, pd.DataFrame)
             and isinstance(history, pd.DataFrame)
             else np.concatenate([np.asarray(history), np.asarray(X)]))
    pred, centre, lower, upper = final._forecast(X, coverage, observed=observed,
                                                 stacklevel=3)
    columns = {"lower": lower[-n:], "upper": upper[-n:]}
    if final.error_correction_ is not None:
        # The band's centre, as a forecast of its own.
        columns["corrected"] = centre[-n:]
    return pred[-n:], columns
