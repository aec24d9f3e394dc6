"""The conformal arithmetic of the ensemble's intervals, as pure functions on scores.

A score is a signed residual in units of a scale: ``r = (y - mean) / u``. An interval of
coverage ``c`` is ``mean + u * [q_lo, q_hi]``, with ``q_lo`` and ``q_hi`` quantiles of
the calibration scores; everything here works on scores alone, so it is the same for
every way the scores were gathered (:class:`sktlag.TLAGEnsemble` says which).

- :func:`conformal_quantile` and :func:`score_quantiles`: split-conformal quantiles with
  finite-sample ranks (Vovk et al. 2005; Lei et al. 2018, JASA 113:1094).
- :func:`adaptive_levels`: as observations arrive, each observed day's score joins the
  pool the quantiles are taken from (and the oldest leaves, as in EnbPI, Xu and Xie
  2021, ICML), and the miscoverage ``a_t`` of the next interval follows adaptive
  conformal inference (Gibbs and Candes 2021, NeurIPS 34):
  ``a_{t+1} = a_t + rate * ((1 - c) - miss_t)``, with ``miss_t = 1`` when the
  observation of day ``t`` fell outside that day's interval. Over ``T`` observed days
  the share of misses differs from ``1 - c`` by at most
  ``(max(a_1, 1 - a_1) + rate) / (rate * T)`` as long as the pool's extremes bound the
  scores, whatever the river does.
- :func:`interval_scale`: the scale ``u`` itself, from the members' spread alone or
  growing with the predicted flow as well (discharge errors grow with the flow: a
  fixed share of the band would be spent on the many low-flow days and too little
  left for the floods).
- :func:`error_coefficient` and :func:`corrected_centre`: a forecaster's band is
  centred on the prediction corrected by the last observed error, which decays by a
  lag-one coefficient per day (AR(1) output updating of real-time flood forecasting,
  e.g. Refsgaard 1997, Nordic Hydrology 28:65): a model's errors in discharge last for
  days (a missed flood, a drifting baseflow), so yesterday's error says much about
  today's.
- :func:`lead_bounds` (with :func:`lead_times`, :func:`lead_shift`,
  :func:`lead_scores` and :class:`LeadCalibration`): a forecast issued ``k`` days after
  the last observed day has errors of its own lead, larger than the next day's; its
  band comes from the calibration scores of that lead and adapts, with delayed
  feedback, to the same forecasts on the observed days.
- :func:`interval_bounds`: the band itself, fixed or adapted to observations, and
  never below a lowest value where one is given (discharge is never negative: a band
  reaching below zero on a dry day would spend width on values that cannot occur).
  With classes (:func:`high_flow_classes`) every class of days gets a band of its own,
  from its own calibration scores and adapting to its own days (Mondrian conformal
  prediction, Vovk et al. 2005): the errors of a forecast flood are not those
  of a dry spell, and one pool spends the band's misses on the floods.
- :func:`interval_coverage`: what a hydrologist reads of a band (coverage, width
  relative to the spread of the observations, coverage of high flows), and
  :func:`score_bands`, the same at several coverages with the CRPS of the predictive
  distribution.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = [
    "ADAPT_RATE",
    "DELAYED_STEP",
    "FLOW_FLOOR",
    "HIGH_FLOW_QUANTILE",
    "MAX_LEAD",
    "MIN_CLASS_WINDOWS",
    "REPORTED_COVERAGES",
    "LeadCalibration",
    "adaptive_levels",
    "check_coverage",
    "check_rate",
    "conformal_quantile",
    "corrected_centre",
    "error_coefficient",
    "high_flow_classes",
    "interval_bounds",
    "interval_coverage",
    "interval_scale",
    "lead_bounds",
    "lead_scores",
    "lead_shift",
    "lead_times",
    "level_key",
    "min_calibration_scores",
    "predictive_draws",
    "scale_levels",
    "score_bands",
    "score_quantiles",
]

#: Nominal coverages every interval method is scored at.
REPORTED_COVERAGES = (0.5, 0.8, 0.9, 0.95)

#: Step of the adaptive band's miscoverage per observed day (:func:`adaptive_levels`).
ADAPT_RATE = 0.05

#: High flows are the days above this quantile of the fit period's discharge.
HIGH_FLOW_QUANTILE = 0.9

#: The longest lead with a band of its own (days): a forecast further ahead gets the
#: band of this lead (around its own, barely corrected, centre). It bounds the cost of
#: a long forecast to this many adaptive runs over the series.
MAX_LEAD = 60

#: The largest step of a lead's miscoverage times its lead. A forecast's miss is known
#: only ``lead`` days after its band was issued, so the miscoverage takes ``lead`` steps
#: before the first of them shows: beyond about one in all, it overshoots and swings
#: between the widest band the pool allows and an empty one. Leads up to
#: ``DELAYED_STEP / ADAPT_RATE`` (10 days) keep the full step.
DELAYED_STEP = 0.5

#: With the flow scale, the share of the typical spread a day of zero predicted flow
#: keeps (:func:`interval_scale`): where the members agree on a dry day, the band still
#: has a width, and no score divides by zero.
FLOW_FLOOR = 0.1


def check_coverage(coverage) -> float:
    """``coverage`` as a float in (0, 1), or a ValueError that names it."""
    if isinstance(coverage, bool) or not (isinstance(coverage, Real) and 0 < coverage < 1):
        raise ValueError(f"coverage must lie in (0, 1), got {coverage!r}")
    return float(coverage)


def check_rate(rate) -> float:
    """``rate`` as a positive finite float, or a ValueError that names it."""
    if isinstance(rate, bool) or not (isinstance(rate, Real) and 0 < rate < math.inf):
        raise ValueError(f"rate must be a positive number, got {rate!r}")
    return float(rate)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile of ``scores`` at ``level``.

    The ``ceil((n + 1) * level)``-th smallest score (the ``floor((n + 1) * level)``-th
    for a lower level below 0.5); beyond the scores' range, the extreme score. Scores
    that are not finite are left out, as everywhere in this module.
    """
    if not 0.0 <= level <= 1.0:  # NaN fails too
        raise ValueError(f"level must be in [0, 1], got {level!r}")
    scores = np.asarray(scores, dtype=np.float64)
    ordered = np.sort(scores[np.isfinite(scores)])
    if not len(ordered):
        raise ValueError("no finite scores to take a quantile of")
    return _ordered_quantile(ordered, level)


def level_key(coverage: float) -> str:
    """The key of a coverage's entry in the scores of :func:`score_bands`: ``"0.9"``."""
    return f"{coverage:g}"


def _snapped(position: float) -> float:
    """``position`` as the whole number it is in exact arithmetic, where it is one.

    A level such as ``(1 - 0.9) / 2`` is 0.04999... in floating point: a product that
    is a whole number in exact arithmetic is taken as that number, or a rank would be
    one off.
    """
    if abs(position - round(position)) <= 1e-9 * max(1.0, position):
        return round(position)
    return position


def _ordered_quantile(ordered, level: float) -> float:
    """:func:`conformal_quantile` of scores already sorted."""
    n = len(ordered)
    position = _snapped((n + 1) * level)
    rank = math.ceil(position) if level >= 0.5 else math.floor(position)
    return float(ordered[min(max(rank, 1), n) - 1])


def min_calibration_scores(coverage: float) -> int:
    """The fewest calibration scores a central band of ``coverage`` can be taken from.

    With ``n`` scores the band's lower rank is ``floor((n + 1) * (1 - coverage) / 2)``;
    below 1 both ranks fall outside the scores, the band spans all of them and covers
    less than ``coverage``.

    Examples
    --------
    >>> min_calibration_scores(0.9), min_calibration_scores(0.95)
    (19, 39)
    """
    coverage = check_coverage(coverage)
    return math.ceil(_snapped(2 / (1 - coverage))) - 1


#: The fewest calibration windows of an output a class of days needs for a band from
#: scores of its own (:func:`interval_bounds` with ``classes``): those of a 90 % band,
#: the default. One count for every coverage, so that the bands of several coverages
#: stay nested: with a count that grew with the coverage, a small class would switch
#: from its own scores to all of them between two coverages, and its wider band could
#: come out narrower.
MIN_CLASS_WINDOWS = min_calibration_scores(0.9)


def _check_calibration(calibration: np.ndarray, n_outputs: int) -> None:
    """One column of calibration scores per output, or a clear error."""
    if calibration.ndim != 2 or calibration.shape[1] != n_outputs:
        raise ValueError(f"calibration has shape {calibration.shape}: one column per "
                         f"output is needed, for {n_outputs} outputs")


def _finite_columns(scores: np.ndarray) -> list[np.ndarray]:
    columns = []
    for k in range(scores.shape[1]):
        column = scores[:, k]
        column = column[np.isfinite(column)]
        if len(column) == 0:
            raise ValueError(f"output {k} has no observed validation target to calibrate on")
        columns.append(column)
    return columns


def score_quantiles(scores: np.ndarray, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper score quantiles of a central interval of ``coverage``.

    Parameters
    ----------
    scores : ndarray of shape (n_scores, n_outputs)
        Calibration scores; NaN (an unobserved target) is left out.
    coverage : float in (0, 1)

    Returns
    -------
    low, high : ndarray of shape (n_outputs,)
        The conformal quantiles at ``(1 - coverage) / 2`` and ``(1 + coverage) / 2``.
    """
    coverage = check_coverage(coverage)
    columns = _finite_columns(scores)
    low = [conformal_quantile(c, (1 - coverage) / 2) for c in columns]
    high = [conformal_quantile(c, (1 + coverage) / 2) for c in columns]
    return np.array(low), np.array(high)


def adaptive_levels(
    calibration: np.ndarray, new_scores: np.ndarray, coverage: float, rate: float,
    lead: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adaptive conformal inference over days whose scores become known one by one.

    The interval of day ``t`` uses only the scores of days up to ``t - lead`` (with
    the default ``lead=1``, of the days before ``t``), in two ways:

    - the pool of scores slides: every observed day's score replaces the oldest score
      of the pool (the calibration scores first, in their time order), as EnbPI updates
      its residuals (Xu and Xie 2021), so the band learns the new period's errors;
    - its miscoverage ``a_t`` starts at ``1 - coverage`` and moves by
      ``rate * ((1 - coverage) - miss)`` after every observed day (Gibbs and Candes
      2021), so a run of misses widens the band until the misses are paid back.

    With ``lead > 1`` the band of day ``t`` is a forecast issued ``lead`` days ahead, on
    day ``t - lead``: the miss of day ``t`` is counted against that band, when day
    ``t``'s score arrives (adaptive conformal inference with delayed feedback), so the
    share of misses is held for the forecasts of that lead.

    A day without observation (NaN score) changes neither. A miscoverage at or below 0
    gives the widest interval the pool allows; a score beyond it (a flood larger than
    any the pool holds) still counts as a miss, so ``a_t`` keeps falling and the band
    stays at its widest until covered days have paid the misses back (the bound of the
    module docstring assumes the pool's extremes bound the scores). At or above 1 the
    interval is empty by definition: it is drawn as the pool's median and always counts
    as a miss.

    Parameters
    ----------
    calibration : ndarray of shape (n_scores, n_outputs)
        The calibration scores, oldest first; NaN is left out.
    new_scores : ndarray of shape (n_days, n_outputs)
        The score of each new day, ``(y - mean) / u``, in time order; NaN where unobserved.
    coverage : float in (0, 1)
        Nominal coverage.
    rate : float > 0
        The step ``gamma`` of the miscoverage.
    lead : int >= 1, default=1
        Days between the last score a band reads and the day it is for.

    Returns
    -------
    low, high : ndarray of shape (n_days, n_outputs)
        The score quantiles of each day's interval.
    miscoverage : ndarray of shape (n_days, n_outputs)
        ``a_t``, the miscoverage each day's interval was built for.
    """
    coverage, rate = check_coverage(coverage), check_rate(rate)
    if isinstance(lead, bool) or not isinstance(lead, Integral) or lead < 1:
        raise ValueError(f"lead must be an int >= 1, got {lead!r}")
    target = 1.0 - coverage
    n_days, n_outputs = new_scores.shape
    _check_calibration(calibration, n_outputs)
    columns = _finite_columns(calibration)
    low, high = np.empty((n_days, n_outputs)), np.empty((n_days, n_outputs))
    miscoverage = np.empty((n_days, n_outputs))
    for k, column in enumerate(columns):
        arrival = deque(column.tolist())
        pool = sorted(arrival)
        a = target
        for t in range(n_days):
            # Day t - lead's score arrives: it judges the band issued for that day and
            # joins the pool.
            seen = t - lead
            score = float(new_scores[seen, k]) if seen >= 0 else math.nan
            if math.isfinite(score):
                lo, hi, issued = low[seen, k], high[seen, k], miscoverage[seen, k]
                # At a >= 1 the interval is empty by definition, drawn as the median: a
                # miss even for a score tied with it, which keeps a below
                # 1 + rate * (1 - coverage) as the guarantee needs.
                a += rate * (target - float(issued >= 1 or score < lo or score > hi))
                del pool[bisect.bisect_left(pool, arrival.popleft())]
                bisect.insort(pool, score)
                arrival.append(score)
            # The quantiles at the clipped level; the state itself is not clipped, so a
            # run of misses is paid back by as many covered days (the guarantee needs it).
            level = min(max(a, 0.0), 1.0)
            low[t, k] = _ordered_quantile(pool, min(level / 2, 0.5))
            high[t, k] = _ordered_quantile(pool, max(1 - level / 2, 0.5))
            miscoverage[t, k] = a
    return low, high, miscoverage


def _last_observed(errors: np.ndarray, starts) -> tuple[np.ndarray, np.ndarray]:
    """For every row and output, the row of the last finite error strictly before it in
    its series (-1 where none) and the number of rows since it."""
    n_rows = len(errors)
    rows = np.arange(n_rows)[:, None]
    seen = np.where(np.isfinite(errors), rows, -1)
    last = np.full_like(seen, -1)
    last[1:] = np.maximum.accumulate(seen, axis=0)[:-1]
    last = np.where(last >= _first_rows(n_rows, starts)[:, None], last, -1)
    return last, rows - last


def _first_rows(n_rows: int, starts) -> np.ndarray:
    """The first row of each row's series."""
    first = np.zeros(n_rows, dtype=np.int64)
    first[list(starts)] = list(starts)
    return np.maximum.accumulate(first)


def error_coefficient(errors: np.ndarray, starts=(0,)) -> np.ndarray:
    """The lag-one coefficient of each output's errors, in [0, 1].

    The least-squares ``phi`` of ``e_t = phi * e_{t-1}`` over every pair of consecutive
    rows of one series whose errors are both known, clipped to [0, 1]: errors that
    alternate in sign carry nothing to the next day (0), and errors are never taken to
    grow from day to day (at most 1). 0 where an output has no such pair or only zero
    errors.

    Parameters
    ----------
    errors : ndarray of shape (n_rows, n_outputs)
        Observation minus prediction, in time order; NaN where unknown.
    starts : sequence of int
        First rows of the series, ascending, beginning with 0: no pair spans two series.

    Returns
    -------
    ndarray of shape (n_outputs,)
    """
    today, yesterday = errors[1:], errors[:-1]
    pair = np.isfinite(today) & np.isfinite(yesterday)
    pair[[s - 1 for s in starts if s > 0]] = False
    cross = np.where(pair, today * yesterday, 0.0).sum(axis=0)
    square = np.where(pair, yesterday**2, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        coefficient = np.where(square > 0, cross / square, 0.0)
    return np.clip(coefficient, 0.0, 1.0)


def corrected_centre(
    mean: np.ndarray, observed: np.ndarray, coefficient: np.ndarray, starts=(0,)
) -> np.ndarray:
    """The prediction of each day corrected by the last error observed before it.

    ``mean_t + phi ** k * (observed_s - mean_s)``, with ``s = t - k`` the last day
    before ``t`` of the same series whose observation is known, and ``phi`` the output's
    :func:`error_coefficient`: the error of yesterday carries over by ``phi``, that of
    ``k`` days ago by ``phi ** k``. A day with no observed day before it in its series
    keeps ``mean_t``; so does every day where ``phi`` is 0.

    Parameters
    ----------
    mean, observed : ndarray of shape (n_days, n_outputs)
        The prediction and the observations (NaN: not observed), in time order.
    coefficient : ndarray of shape (n_outputs,)
        ``phi`` of each output, in [0, 1].
    starts : sequence of int
        First rows of the series, ascending, beginning with 0.

    Returns
    -------
    ndarray of shape (n_days, n_outputs)
    """
    if observed.shape != mean.shape:
        raise ValueError(f"observed has shape {observed.shape}, the predictions "
                         f"{mean.shape}: one value per row and output")
    if not len(mean):
        return mean.copy()
    errors = observed - mean
    last, lag = _last_observed(errors, starts)
    carried = np.take_along_axis(errors, np.maximum(last, 0), axis=0)
    with np.errstate(under="ignore"):
        weight = np.where(last >= 0, np.asarray(coefficient, np.float64) ** lag, 0.0)
    # Where nothing was observed before, ``carried`` holds row 0's error, which may be
    # NaN: 0 * NaN would spread it.
    return mean + np.where(weight > 0, weight * carried, 0.0)


def interval_scale(
    std: np.ndarray, offset: np.ndarray, mean: np.ndarray | None = None,
    flow_level: np.ndarray | None = None,
) -> np.ndarray:
    """The scale ``u`` of the scores ``(y - mean) / u``, per day and output.

    - Spread (``flow_level`` None): ``u = std + offset``, the members' standard
      deviation plus their typical spread, so that ``u`` never collapses where the
      members happen to agree.
    - Flow: ``u = std + offset * (FLOW_FLOOR + max(mean, 0) / flow_level)``: the part
      added to the spread grows in proportion to the predicted flow (the linear
      heteroscedastic error model of hydrology, e.g. McInerney et al. 2017, WRR
      53:2199), equal to about ``offset`` on a day of typical flow and to
      ``FLOW_FLOOR * offset`` on a dry one.

    Parameters
    ----------
    std : ndarray of shape (n_days, n_outputs)
        The members' standard deviation.
    offset : ndarray of shape (n_outputs,)
        The typical spread; positive.
    mean : ndarray of shape (n_days, n_outputs), optional
        The members' mean: needed with ``flow_level``.
    flow_level : ndarray of shape (n_outputs,), optional
        The typical predicted flow; positive.

    Returns
    -------
    ndarray of shape (n_days, n_outputs)
    """
    # No typical spread (one member, or members that never disagree) or no typical flow
    # (a river predicted dry throughout) counts as 1: the scale stays positive.
    offset = np.where(offset > 0, offset, 1.0)
    if flow_level is None:
        return std + offset
    flow_level = np.where(flow_level > 0, flow_level, 1.0)
    return std + offset * (FLOW_FLOOR + np.maximum(mean, 0.0) / flow_level)


def scale_levels(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The typical spread and the typical predicted flow of the calibration windows: the
    ``offset`` and ``flow_level`` of :func:`interval_scale`.

    Parameters
    ----------
    mean, std : ndarray of shape (n_windows, n_outputs)
        The members' mean and standard deviation on the calibration windows.

    Returns
    -------
    offset, flow_level : ndarray of shape (n_outputs,)
        The mean of ``std`` and of the positive part of ``mean`` (zeros without
        windows).
    """
    if not len(mean):
        return np.zeros(mean.shape[1]), np.zeros(mean.shape[1])
    return std.mean(axis=0), np.maximum(mean, 0.0).mean(axis=0)


def lead_times(observed: np.ndarray, starts=(0,)) -> np.ndarray:
    """Days from the last observed day before each day (of its series) to the day itself,
    per output: the lead of the forecast that day gets; 0 where no day before it in its
    series is observed.

    Parameters
    ----------
    observed : ndarray of shape (n_days, n_outputs)
        NaN where a day is not observed.
    starts : sequence of int
        First rows of the series, ascending, beginning with 0.

    Returns
    -------
    ndarray of int, shape (n_days, n_outputs)
    """
    last, lag = _last_observed(observed, starts)
    return np.where(last >= 0, lag, 0)


def lead_shift(errors: np.ndarray, coefficient: np.ndarray, lead: int,
               starts=(0,)) -> np.ndarray:
    """The correction of a forecast issued ``lead`` days ahead: ``phi ** lead`` times the
    error ``lead`` days before each day, NaN where that day lies before its series'
    first day or its error is unknown.

    Parameters
    ----------
    errors : ndarray of shape (n_days, n_outputs)
        Observation minus prediction; NaN where unknown.
    coefficient : ndarray of shape (n_outputs,)
        ``phi`` of each output (:func:`error_coefficient`).
    lead : int >= 1
    starts : sequence of int
        First rows of the series, ascending, beginning with 0.

    Returns
    -------
    ndarray of shape (n_days, n_outputs)
    """
    if isinstance(lead, bool) or not isinstance(lead, Integral) or lead < 1:
        raise ValueError(f"lead must be an int >= 1, got {lead!r}")
    n_days = len(errors)
    before = np.full(errors.shape, np.nan)
    if lead < n_days:
        before[lead:] = errors[:n_days - lead]
    before[np.arange(n_days) - lead < _first_rows(n_days, starts)] = np.nan
    with np.errstate(under="ignore"):
        return np.asarray(coefficient, np.float64) ** lead * before


def lead_scores(errors: np.ndarray, mean: np.ndarray, coefficient: np.ndarray, lead: int,
                scale: Callable[[np.ndarray], np.ndarray], starts=(0,)) -> np.ndarray:
    """The scores of a forecast issued ``lead`` days ahead on the calibration windows:
    ``(e_t - phi ** lead * e_{t-lead}) / u(mean_t + phi ** lead * e_{t-lead})``, NaN
    where the window ``lead`` days before lies outside the stretch (:func:`lead_shift`).

    Parameters
    ----------
    errors : ndarray of shape (n_scores, n_outputs)
        Observation minus the calibration windows' prediction.
    mean : ndarray of shape (n_scores, n_outputs)
        The prediction the scale is taken at (the ensemble's mean).
    coefficient : ndarray of shape (n_outputs,)
    lead : int >= 1
    scale : callable
        ``scale(centre)``: the scale ``u`` of the windows for that centre.
    starts : sequence of int
        First windows of the stretches of consecutive windows.
    """
    shift = lead_shift(errors, coefficient, lead, starts)
    return (errors - shift) / scale(mean + shift)


@dataclass(frozen=True)
class LeadCalibration:
    """What an adaptive band needs on the days more than one day after the last observed
    one, where its forecast is of a longer lead than the calibration scores'.

    Attributes
    ----------
    mean : ndarray of shape (n_days, n_outputs)
        The forecast before any correction.
    coefficient : ndarray of shape (n_outputs,)
        ``phi`` of each output.
    scale : callable
        ``scale(centre)``: the scale ``u`` of the days for a band centred on ``centre``
        (n_days, n_outputs).
    scores : callable
        ``scores(lead)``: the calibration scores of the forecast of that lead, (n_scores,
        n_outputs); ``scores(0)``, those of the forecast without correction, for the
        days no observed day precedes.
    """

    mean: np.ndarray
    coefficient: np.ndarray
    scale: Callable[[np.ndarray], np.ndarray]
    scores: Callable[[int], np.ndarray]


def lead_bounds(leads: LeadCalibration, observed: np.ndarray, lead: int, coverage: float,
                rate: float = ADAPT_RATE, starts=(0,), within=None):
    """The band of every day as a forecast issued ``lead`` days before it.

    Centred on ``mean_t + phi ** lead * (observed_s - mean_s)`` with ``s = t - lead``,
    in units of the scale of that centre; its quantiles adapt (:func:`adaptive_levels`
    with ``lead``, at the step ``min(rate, DELAYED_STEP / lead)``) to the scores of the
    same forecast on the days up to ``s``, starting from the calibration scores of that
    lead. A day whose day ``s`` is not observed
    has no such forecast (NaN centre). An output with fewer calibration scores of that
    lead than ``coverage`` needs (:func:`min_calibration_scores`: a lead about as long
    as the calibration windows) starts from those of the uncorrected forecast
    (``leads.scores(0)``), which spread at least as widely: an error that lasts by
    ``phi`` per day varies less after the correction than before it.

    ``within``, a pair of boolean masks ``(days, windows)`` of shapes (n_days,
    n_outputs) and (n_scores, n_outputs), restricts the band to one class
    (:func:`interval_bounds` with ``classes``): it starts from the scores of the class's
    calibration windows (all of them where the class has fewer than
    :data:`MIN_CLASS_WINDOWS`) and adapts to the class's days alone.

    Returns
    -------
    centre, scale, low, high : ndarray of shape (n_days, n_outputs)
    """
    mean = leads.mean
    shift = lead_shift(observed - mean, leads.coefficient, lead, starts)
    centre = mean + shift
    scale = leads.scale(np.where(np.isfinite(centre), centre, mean))
    scores = (observed - centre) / scale
    if within is not None:
        scores = np.where(within[0], scores, np.nan)
    pool = _class_pool(leads.scores(lead), within)
    enough = np.isfinite(pool).sum(axis=0) >= min_calibration_scores(coverage)
    if not enough.all():
        pool = np.where(enough, pool, _class_pool(leads.scores(0), within))
    step = min(check_rate(rate), DELAYED_STEP / lead)
    low, high = np.empty_like(mean), np.empty_like(mean)
    for rows in np.split(np.arange(len(mean)), list(starts)[1:]):
        low[rows], high[rows], _ = adaptive_levels(pool, scores[rows], coverage, step, lead)
    return centre, scale, low, high


def interval_bounds(
    mean: np.ndarray, scale: np.ndarray, calibration: np.ndarray, coverage: float,
    observed: np.ndarray | None = None, rate: float = ADAPT_RATE, starts=(0,),
    min_value: np.ndarray | None = None, leads: LeadCalibration | None = None,
    classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The band ``mean + scale * [low, high]`` of ``coverage``, per day and output.

    Without ``observed``, ``low`` and ``high`` are the quantiles of the
    ``calibration`` scores (:func:`score_quantiles`); with it, each day's quantiles
    adapt to the scores of the observations before it (:func:`adaptive_levels`), every
    stretch that begins at a row of ``starts`` (a series of its own) on its own.

    Parameters
    ----------
    mean, scale : ndarray of shape (n_days, n_outputs)
    calibration : ndarray of shape (n_scores, n_outputs)
    coverage : float in (0, 1)
    observed : ndarray of shape (n_days, n_outputs), optional
        NaN where a day is not observed.
    rate : float > 0
        The adaptive band's step.
    starts : sequence of int
        First rows of the series, ascending, beginning with 0.
    min_value : ndarray of shape (n_outputs,), optional
        The lowest value of each output (-inf: none): both bounds are raised to it.
        An observation at or above it is inside the raised band exactly when it is
        inside the band itself, unless the whole band lies below ``min_value`` and the
        observation equals it. The adaptive band's misses are counted on the band
        itself, so the floor never changes how the band adapts.
    leads : LeadCalibration, optional
        With ``observed``: a day ``k`` days after the last observed one gets the
        quantiles of a forecast of lead ``k`` (:func:`lead_bounds`; of lead
        :data:`MAX_LEAD` beyond it), and a day no observed day precedes those of
        ``leads.scores(0)`` at ``coverage``; ``mean`` and ``scale`` must then be each
        day's centre and scale, as :func:`corrected_centre` gives them, and
        ``calibration`` is not read. Without it, every day's quantiles come from one
        adaptive run over every observed day's score, whose state stays as it was over
        the days without observation.
    classes : tuple, optional
        ``(days, windows)``, two arrays of integer labels of shapes (n_days,
        n_outputs) and (n_scores, n_outputs): the class of each day and of each
        calibration window (of the scores of every lead with ``leads``), e.g.
        :func:`high_flow_classes`. Each class gets the band above from the scores of its
        own windows, adapting to its own days alone (Mondrian conformal prediction); a
        class with fewer windows of an output than :data:`MIN_CLASS_WINDOWS` (what a
        90 % band needs, at every coverage) starts from all of them.

    Returns
    -------
    lower, upper : ndarray of shape (n_days, n_outputs)
    """
    _check_calibration(calibration, mean.shape[1])
    if observed is not None and observed.shape != mean.shape:
        raise ValueError(f"observed has shape {observed.shape}, the predictions "
                         f"{mean.shape}: one value per row and output")
    if classes is None:
        low, high = _score_levels(mean, scale, calibration, coverage, observed, rate,
                                  starts, leads)
    else:
        days, windows = _checked_classes(classes, mean.shape, calibration.shape)
        low, high = np.empty_like(mean), np.empty_like(mean)
        for label in np.unique(days).tolist():
            within = (days == label, windows == label)
            low_c, high_c = _score_levels(mean, scale, calibration, coverage, observed,
                                          rate, starts, leads, within)
            low, high = np.where(within[0], low_c, low), np.where(within[0], high_c, high)
    return _raised(mean + scale * low, min_value), _raised(mean + scale * high, min_value)


def high_flow_classes(mean: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """The class of each day by its forecast: 1 where ``mean`` lies above the output's
    high-flow ``threshold`` (a forecast flood), else 0.

    Parameters
    ----------
    mean : ndarray of shape (n_days, n_outputs)
        The forecast the class is read from (the ensemble's mean, before any correction:
        the same for the band of every lead).
    threshold : ndarray of shape (n_outputs,)

    Returns
    -------
    ndarray of int of shape (n_days, n_outputs)
    """
    return (np.asarray(mean) > np.asarray(threshold)).astype(np.int64)


def _checked_classes(classes, days_shape, windows_shape) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` as two integer arrays of the days' and the windows' shapes."""
    days, windows = (np.asarray(part) for part in classes)
    for part, shape, name in ((days, days_shape, "days"), (windows, windows_shape,
                                                            "calibration windows")):
        # A float label may be NaN, which equals no label: its days would get no band.
        if not (np.issubdtype(part.dtype, np.integer) or part.dtype == np.bool_):
            raise ValueError(f"the classes of the {name} are of type {part.dtype}: "
                             "integer labels are needed")
        if part.shape != shape:
            raise ValueError(f"the classes of the {name} have shape {part.shape}, not "
                             f"{shape}: one label per {name[:-1]} and output")
    return days, windows


def _class_pool(pool: np.ndarray, within) -> np.ndarray:
    """The scores of ``pool`` of one class's windows (NaN elsewhere, so left out), or
    all of an output's scores where the class has fewer than :data:`MIN_CLASS_WINDOWS`."""
    if within is None:
        return pool
    own = np.where(within[1], pool, np.nan)
    enough = np.isfinite(own).sum(axis=0) >= MIN_CLASS_WINDOWS
    return np.where(enough, own, pool)


def _smallest_pools(calibration: np.ndarray, classes=None) -> np.ndarray:
    """Per output, the fewest calibration scores a band draws on: all of the output's,
    or with ``classes`` those of the smallest class of the days with windows enough of
    its own (:data:`MIN_CLASS_WINDOWS`; a class with fewer draws on all of them)."""
    finite = np.isfinite(calibration)
    smallest = finite.sum(axis=0)
    if classes is None:
        return smallest
    days, windows = (np.asarray(part) for part in classes)
    for k in range(calibration.shape[1]):
        for label in np.unique(days[:, k]).tolist():
            own = int((finite[:, k] & (windows[:, k] == label)).sum())
            if own >= MIN_CLASS_WINDOWS:
                smallest[k] = min(smallest[k], own)
    return smallest


def _score_levels(mean, scale, calibration, coverage, observed, rate, starts, leads,
                  within=None) -> tuple[np.ndarray, np.ndarray]:
    """The score quantiles of :func:`interval_bounds` (of one class's band ``within``):
    fixed ones of shape (n_outputs,) without ``observed``, else one per day."""
    if observed is None:
        return score_quantiles(_class_pool(calibration, within), coverage)
    if leads is not None:
        return _lead_levels(leads, observed, coverage, rate, starts, within)
    scores = (observed - mean) / scale
    if within is not None:
        scores = np.where(within[0], scores, np.nan)
    pool = _class_pool(calibration, within)
    low, high = np.empty_like(mean), np.empty_like(mean)
    for rows in np.split(np.arange(len(mean)), list(starts)[1:]):
        low[rows], high[rows], _ = adaptive_levels(pool, scores[rows], coverage, rate)
    return low, high


def _lead_levels(leads: LeadCalibration, observed: np.ndarray, coverage: float, rate: float,
                 starts, within=None) -> tuple[np.ndarray, np.ndarray]:
    """Each day's score quantiles by its lead: the fixed ones of the uncorrected
    forecast where no observed day precedes it, else those of its lead's band."""
    lead = np.minimum(lead_times(observed, starts), MAX_LEAD)
    plain_low, plain_high = score_quantiles(_class_pool(leads.scores(0), within), coverage)
    low = np.broadcast_to(plain_low, observed.shape).copy()
    high = np.broadcast_to(plain_high, observed.shape).copy()
    for k in np.unique(lead[lead >= 1]).tolist():
        _, _, low_k, high_k = lead_bounds(leads, observed, k, coverage, rate, starts, within)
        low = np.where(lead == k, low_k, low)
        high = np.where(lead == k, high_k, high)
    return low, high


def _raised(values: np.ndarray, min_value: np.ndarray | None) -> np.ndarray:
    """``values`` of shape (n_days, n_outputs, ...) raised to each output's
    ``min_value`` (NaN stays NaN)."""
    if min_value is None:
        return values
    floor = np.asarray(min_value, dtype=np.float64)
    return np.maximum(values, floor.reshape(floor.shape + (1,) * (values.ndim - 2)))


def score_bands(
    y: np.ndarray, mean: np.ndarray, scale: np.ndarray, calibration: np.ndarray,
    coverages, high_flow: np.ndarray, adaptive: bool = False, rate: float = ADAPT_RATE,
    starts=(0,), min_value: np.ndarray | None = None, leads: LeadCalibration | None = None,
    classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """How the bands of several coverages, and the predictive distribution, hold on ``y``.

    Parameters
    ----------
    y, mean, scale : ndarray of shape (n_days, n_outputs)
        Observations (NaN: left out), and the band's centre and scale.
    calibration : ndarray of shape (n_scores, n_outputs)
    coverages : sequence of float
    high_flow : ndarray of shape (n_outputs,)
        Days above it are also scored on their own.
    adaptive : bool, default=False
        Each day's band adapts to the observations of the days before it
        (:func:`interval_bounds` with ``observed=y``).
    rate, starts, min_value, leads, classes
        As for :func:`interval_bounds` (``min_value`` also raises the draws of the
        predictive distribution, which are drawn from all of ``calibration`` on every
        day, whatever its class).

    Returns
    -------
    outputs : list of dict
        One per output. ``levels``: per coverage (keyed :func:`level_key`),
        :func:`interval_coverage` of its band and ``spans_all_scores``, whether the
        output has fewer calibration scores than the coverage needs, or with
        ``classes`` one of its classes of days, of those it draws on
        (:func:`min_calibration_scores`: the band then spans all of them and covers
        less than nominal); ``crps``: the mean CRPS of the predictive
        distribution ``mean + scale * r`` over the calibration scores ``r``
        (``scoringrules.crps_ensemble``, units of ``y``; NaN without observations).
    """
    levels = sorted(set(coverages))
    for low, high in itertools.pairwise(levels):
        if level_key(low) == level_key(high):
            raise ValueError(f"coverages {low!r} and {high!r} would both be keyed "
                             f"'{level_key(low)}': give coverages that differ in the first "
                             "six digits")
    # Imported here: it takes seconds to import, and only scoring needs it.
    import scoringrules

    bands = {c: interval_bounds(mean, scale, calibration, c, y if adaptive else None, rate,
                                starts, min_value, leads, classes)
             for c in sorted(set(coverages))}
    samples = predictive_draws(mean, scale, calibration, min_value)
    pools = _smallest_pools(calibration, classes)
    outputs = []
    for k in range(y.shape[1]):
        seen = np.isfinite(y[:, k])
        draws = samples[seen, k]
        draws = draws[:, np.isfinite(draws).all(axis=0)]
        # The CRPS of the draws' empirical distribution, by quantile decomposition
        # (O(m log m)); named, since the default of scoringrules before 0.9 was the
        # fair estimator, a different score.
        crps = (scoringrules.crps_ensemble(y[seen, k], draws, estimator="qd")
                if seen.any() else None)
        outputs.append({
            "levels": {level_key(c): {**interval_coverage(y[:, k], low[:, k], high[:, k],
                                                       high_flow[k]),
                                  "spans_all_scores": int(pools[k]) < min_calibration_scores(c)}
                       for c, (low, high) in bands.items()},
            "crps": float(np.mean(crps)) if crps is not None else math.nan,
        })
    return outputs


def predictive_draws(mean: np.ndarray, scale: np.ndarray, calibration: np.ndarray,
                     min_value: np.ndarray | None = None) -> np.ndarray:
    """``mean + scale * r_j`` for every calibration score ``r_j``: shape (n_days,
    n_outputs, n_scores), NaN where an output's score is missing; raised to each
    output's ``min_value`` where given (a distribution censored there: for an
    observation at or above it, the CRPS can only fall)."""
    _check_calibration(calibration, mean.shape[1])
    return _raised(mean[:, :, None] + scale[:, :, None] * calibration.T[None], min_value)


def interval_coverage(
    y: np.ndarray, lower: np.ndarray, upper: np.ndarray, high_flow: float | None = None
) -> dict:
    """Coverage and width of a band on the observed days of one output.

    Parameters
    ----------
    y, lower, upper : ndarray of shape (n_days,)
        Observations (NaN: not observed, left out) and the band.
    high_flow : float, optional
        Days with ``y`` above it are also scored on their own.

    Returns
    -------
    dict
        ``coverage`` (share of observed days inside the band, bounds included),
        ``mean_width`` (units of ``y``), ``relative_width`` (mean width over the
        standard deviation of the observations), ``n``; with ``high_flow``, also
        ``high_flow_coverage`` and ``n_high_flow`` (NaN and 0 when no day exceeds it).
    """
    seen = np.isfinite(y)
    obs, lo, hi = y[seen], lower[seen], upper[seen]
    inside = (obs >= lo) & (obs <= hi)
    width = hi - lo
    spread = float(np.std(obs)) if len(obs) else math.nan
    out = {
        "coverage": float(inside.mean()) if len(obs) else math.nan,
        "mean_width": float(width.mean()) if len(obs) else math.nan,
        "relative_width": float(width.mean() / spread) if len(obs) and spread > 0 else math.nan,
        "n": int(len(obs)),
    }
    if high_flow is not None:
        high = obs > high_flow
        out["high_flow_coverage"] = float(inside[high].mean()) if high.any() else math.nan
        out["n_high_flow"] = int(high.sum())
    return out
