"""`TLAGEnsemble`: several grown networks, their mean, their spread and calibrated intervals.

Averaging LSTMs trained from different seeds is the usual way to gain accuracy in
streamflow modelling (Kratzert et al. 2019, HESS 23:5089: median NSE over 531 basins
0.732 for one LSTM, 0.759 for an ensemble of 8). The spread of the members says where
they disagree, but it is no prediction interval by itself: members trained on the same
data share their errors, so the spread is too narrow. The intervals are therefore
calibrated on the validation period, by split-conformal prediction on scaled
residuals:

- on every validation window (the members' own chronological split, never used for
  training), the score is ``r = (y - mean) / u``, the residual in units of a scale
  ``u`` (:func:`sktlag.conformal.interval_scale`), chosen by ``scale``: with
  ``"flow"`` (the default), the members' spread plus a part that grows in proportion
  to the predicted flow, as discharge errors do, so the band widens on floods and
  narrows on dry days; with ``"spread"``, ``u = std + mean(std)``, the members' spread
  plus the typical spread so that ``u`` never collapses where the members happen to
  agree (with one member, the spread is 0, its typical value taken as 1);
- an interval of coverage ``c`` is ``mean + u * [q_lo, q_hi]`` with ``q_lo`` and
  ``q_hi`` the conformal quantiles of the scores at ``(1 - c) / 2`` and ``(1 + c) / 2``
  (finite-sample ranks). Signed scores give asymmetric intervals, as discharge errors
  are (peaks are underestimated more often than overestimated).

Where the scores come from is the ``calibration`` parameter:

- ``"validation"``: the validation windows above (split-conformal);
- ``"blocks"``: also the training part of the fit period, cut into one block per
  member; member ``m`` never trains on the targets of block ``m`` (they are masked), so
  its predictions there are out of sample, in the spirit of the out-of-bag scores of
  EnbPI (Xu and Xie 2021, ICML), which average every model that did not see a day; here
  one member did not. The scores then span every season and year of the fit period
  instead of its last stretch, at the price of each member training on
  ``1 / n_members`` fewer windows. A block score is one member's residual in the
  ensemble's scale, around the ensemble's mean at prediction time: one member errs
  more than the mean, so these scores lean wide. The windows next to a block share
  input days with it (no gap is left): only its targets are unseen.

When observations arrive after the predictions (forecasting), ``observed`` in
:meth:`~sktlag.TLAGEnsemble.predict_interval` adapts the band to them
(:func:`sktlag.conformal.adaptive_levels`): each observed day's score replaces the
oldest in the pool (as many as there are calibration scores: about a fifth of the fit
period's days with ``"validation"``, nearly all of them with ``"blocks"``, which
therefore learns a new period more slowly), and the miscoverage follows adaptive
conformal inference. With ``groups``, every series adapts on its own. With
``error_correction="ar1"`` (the default) that band is centred on the forecast
corrected by the last observed error (:func:`sktlag.conformal.corrected_centre`): the
mean plus ``phi ** k`` times the error of the last observed day, ``k`` days back, with
``phi`` the lag-one coefficient of the calibration windows' errors
(:func:`sktlag.conformal.error_coefficient`), and its scores are those of the
corrected forecast on the calibration windows. A model's errors in discharge last for
days (a missed flood, a drifting baseflow); a forecaster who sees yesterday's error
carries most of it into today.

With ``band_classes="high_flow"`` the days the ensemble's mean forecasts above the
high-flow threshold (the fit period's 90th percentile) and the other days each get a
band of their own (:func:`sktlag.conformal.high_flow_classes`): from the scores of the
calibration windows of their class, adapting to the observations of their class alone
(Mondrian conformal prediction). A forecast flood errs by more than a forecast dry
spell, even in units of the flow scale; one pool of scores spends the band's misses
on the floods.

The same scores define a predictive distribution (``mean + u * r_j`` over all scores
``r_j``), which :meth:`~sktlag.TLAGEnsemble.score_intervals` scores with the CRPS of the
``scoringrules`` package. Validation days also chose each member's best state, so the
calibration is slightly optimistic; the benchmark measures coverage on unseen days.
"""

from __future__ import annotations

import functools
import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .conformal import (
    ADAPT_RATE,
    HIGH_FLOW_QUANTILE,
    REPORTED_COVERAGES,
    LeadCalibration,
    _smallest_pools,
    check_coverage,
    check_rate,
    corrected_centre,
    error_coefficient,
    high_flow_classes,
    interval_bounds,
    interval_scale,
    lead_scores,
    level_key,
    min_calibration_scores,
    predictive_draws,
    scale_levels,
    score_bands,
)
from .estimator import (
    SeriesRegressorMixin,
    TLAGRegressor,
    _check_finite,
    _check_same_dates,
    final_regressor,
    final_step,
    naming_errors,
    observations,
)
from .windows import fit_split, group_starts

__all__ = ["TLAGEnsemble"]

#: scikit-learn's warnings about column names that differ from the fit's (its messages
#: "X has feature names, but ..." and "X does not have valid feature names, but ...").
_FEATURE_NAMES_WARNING = r"X (has|does not have valid) feature names, but"

#: Where the calibration scores come from, by the value of ``calibration``.
CALIBRATION_WINDOWS = {
    "validation": "the validation windows",
    "blocks": "the validation windows and, for each member, the block of the training "
              "part it did not train on",
}


def _plain_limit(limit: np.ndarray | None) -> float | list[float] | None:
    """The lowest values of the bands as the scores report them: None, one number for
    every output, or one per output where they differ (-inf: none)."""
    if limit is None:
        return None
    return float(limit[0]) if (limit == limit[0]).all() else limit.tolist()


def _as_2d(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(y.shape[0], -1)


def _warn_each_once(said, stacklevel: int) -> None:
    """Raise each distinct ``(category, message)`` of ``said`` once, in order."""
    for category, message in dict.fromkeys(said):
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def judged_observations(estimator, rows, observed: np.ndarray) -> np.ndarray:
    """A copy of ``observed`` (one row per day of ``rows``) without the days predicted from
    padding: the first ``lookback - 1`` of ``rows`` (the first rows predicted), unless
    they continue the days given to ``fit``. Their errors judge the padding, not the
    model, so an adaptive band neither learns from them nor is scored on them."""
    judged = np.array(observed, dtype=float)
    judged[: estimator._padded_rows(rows)] = np.nan
    return judged


def _fit_member(estimator, X, y, groups):
    """The fitted member and the warnings its fit raised, as (category, message)."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            estimator.fit(X, y, groups=groups)
    except BaseException:
        # A warning may explain the failure (a record too short): raised before it.
        _warn_each_once(((w.category, str(w.message)) for w in caught), stacklevel=2)
        raise
    return estimator, [(w.category, str(w.message)) for w in caught]


class TLAGEnsemble(SeriesRegressorMixin, RegressorMixin, BaseEstimator):
    """An ensemble of :class:`TLAGRegressor` fitted with different seeds.

    Every member is a clone of ``estimator`` with its own ``random_state``, fitted on the
    same series (each grows its own depth). ``predict`` is the members' mean;
    ``predict(X, return_std=True)`` also returns their standard deviation, and
    :meth:`predict_interval` gives intervals calibrated on the validation period (see
    the module notes).

    Parameters
    ----------
    estimator : TLAGRegressor, default=None
        The member template; None means ``TLAGRegressor()``. Its ``random_state`` is
        replaced by one seed per member.
    n_members : int, default=5
        Number of members.
    n_jobs : int, default=None
        Members fitted in parallel through joblib (None: one at a time, unless a
        ``joblib.parallel_backend`` context says otherwise, e.g. ``"dask"`` for a
        cluster). Each member uses the ``n_threads`` of ``estimator``.
    random_state : int, RandomState instance or None, default=None
        Draws the members' seeds.
    calibration : {"validation", "blocks"}, default="validation"
        Where the interval's calibration scores come from (see the module notes):
        the validation windows, or also one out-of-sample block of the training part
        per member (each member then trains on ``1 / n_members`` less; needs one
        series, no ``groups``, and at least 2 members).
    scale : {"flow", "spread"}, default="flow"
        The unit of the scores (:func:`sktlag.conformal.interval_scale`): the members'
        spread plus a part that grows with the predicted flow (for a non-negative
        target such as discharge: the band widens on floods), or the spread plus its
        typical value. On new years of eleven basins both bands held their coverage
        alike, and the flow scale's adaptive band covered more of the high flows
        (``docs/forecasting.md``).
    min_value : float, array-like of shape (n_outputs,) or None, default=None
        The lowest value of the bands and of the predictive distribution's draws (None:
        no limit), for every output or one per output (-inf: none for that output).
        For discharge, 0: a band reaching below zero on a dry day spends its width on
        flows that cannot occur. An observation at or above it is inside the raised
        band whenever it was inside the band; one below it is outside, so give it only
        for a target that cannot go below it (``sktlag run`` gives 0 to each target
        whose name means discharge).
    error_correction : {"ar1"} or None, default="ar1"
        The centre of the adaptive band (``observed`` in :meth:`predict_interval`,
        ``adaptive=True`` in :meth:`score_intervals`): the mean corrected by the last
        observed error, which decays by the errors' lag-one coefficient per day
        (``"ar1"``), or the mean itself (None). The fixed band is always centred on the
        mean. On the new years of twenty-eight basins the corrected band held its
        coverage at half the width, and covered at least 83 % of the high flows on
        every record of three years or more (``docs/forecasting.md``).
    band_classes : {"high_flow"} or None, default="high_flow"
        A band of their own for the days the mean forecasts above
        ``high_flow_threshold_`` and for the other days (see the module notes), or one
        band for all days (None, the only band before sktlag 0.3). On the new years of
        thirty-eight records both held the share of all days alike, at the same width,
        and the classes covered more of the high flows (``docs/forecasting.md``).
        Fitted with ``groups``, the threshold is one for all series: the floods of a
        series whose forecasts never reach it share the band of the other days.

    Attributes
    ----------
    estimators_ : list of TLAGRegressor
        The fitted members.
    seeds_ : ndarray of int
        The ``random_state`` of each member.
    calibration_scores_ : ndarray of shape (n_scores, n_outputs)
        Signed residuals of the calibration windows in units of the scale ``u`` (see
        ``scale``), in the order of the rows given to ``fit``: time order, series after
        series with ``groups`` (NaN where the target is missing).
    spread_offset_ : ndarray of shape (n_outputs,)
        The members' typical spread ``s`` on the validation windows, which the scale
        ``u`` adds to their standard deviation (with ``scale="flow"``, in proportion
        to the predicted flow).
    flow_level_ : ndarray of shape (n_outputs,)
        The mean predicted flow (its positive part) on the validation windows: the
        typical flow of ``scale="flow"`` (NaN for ensembles saved before it existed).
    high_flow_threshold_ : ndarray of shape (n_outputs,)
        The fit period's 90th percentile of each output (over every series when fitted
        with ``groups``): days above it are the high flows :meth:`score_intervals`
        scores on their own.
    min_value_ : ndarray of shape (n_outputs,)
        The lowest value of each output's bands and draws (-inf: no limit).
    calibration_, scale_, error_correction_, band_classes_ : str or None
        ``calibration``, ``scale``, ``error_correction`` and ``band_classes`` as the
        fit calibrated with them: bands, draws, the corrected forecast and what the
        reports and model files say follow these until the next fit, whatever
        ``set_params`` sets in between.
    error_coefficient_ : ndarray of shape (n_outputs,)
        The lag-one coefficient ``phi`` of the errors on the calibration windows, in
        [0, 1] (0 with ``error_correction=None``).
    corrected_scores_ : ndarray of shape (n_scores, n_outputs)
        The calibration windows' scores around the corrected forecast, each window
        corrected by the observed errors of the calibration windows before it: the
        adaptive band's first pool (``calibration_scores_`` itself with
        ``error_correction=None``).
    calibration_errors_, calibration_mean_, calibration_spread_ : ndarray of shape \
(n_scores, n_outputs)
        On the calibration windows: observation minus prediction, and the members' mean
        and spread. The scores of a forecast issued several days ahead come from them
        (the adaptive band of a day after days without observation; None for
        ensembles saved before).
    calibration_starts_ : ndarray of int
        The first calibration window of each stretch of consecutive windows (of one
        part and one series): no lead reaches across them.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` has string column names.
    n_outputs_ : int

    Examples
    --------
    >>> from sktlag import TLAGEnsemble, TLAGRegressor
    >>> from sktlag.datasets import load_lahn
    >>> X, y = load_lahn(return_X_y=True)
    >>> ens = TLAGEnsemble(TLAGRegressor(max_epochs=2), n_members=2,
    ...                    random_state=0).fit(X[:600], y[:600])  # doctest: +SKIP
    >>> lower, upper = ens.predict_interval(X[600:700], coverage=0.9)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "n_members": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "calibration": [StrOptions({"validation", "blocks"})],
        "scale": [StrOptions({"spread", "flow"})],
        # -inf is no limit, as in a list; +inf and NaN are refused in fit, with a reason.
        "min_value": [Interval(Real, None, None, closed="both"), "array-like", None],
        "error_correction": [StrOptions({"ar1"}), None],
        "band_classes": [StrOptions({"high_flow"}), None],
    }

    def __init__(self, estimator=None, n_members=5, n_jobs=None, random_state=None,
                 calibration="validation", scale="flow", min_value=None,
                 error_correction="ar1", band_classes="high_flow"):
        self.estimator = estimator
        self.n_members = n_members
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.calibration = calibration
        self.scale = scale
        self.min_value = min_value
        self.error_correction = error_correction
        self.band_classes = band_classes

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        """Fit ``n_members`` clones of ``estimator`` and calibrate the intervals.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
            Inputs by time step.
        y : array-like of shape (n_rows,) or (n_rows, n_outputs)
            Targets by time step.
        groups : array-like of shape (n_rows,), optional
            Series labels, as for :meth:`TLAGRegressor.fit`.

        Returns
        -------
        self : TLAGEnsemble
        """
        # Checked before any member trains; y is read only for a limit per output.
        per_output = not (self.min_value is None or isinstance(self.min_value, Real))
        self._lowest_values(_as_2d(y).shape[1] if per_output and y is not None else 1)
        with self._unchanged_if_fit_fails():
            template = self._template()
            rng = check_random_state(self.random_state)
            self.seeds_ = rng.randint(np.iinfo(np.int32).max, size=self.n_members)
            members = [clone(template).set_params(random_state=int(s)) for s in self.seeds_]
            targets = [y] * self.n_members
            if self.calibration == "blocks":
                members, targets, blocks = self._held_out_blocks(members, y, groups)
            fitted = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_member)(member, X, target, groups)
                for member, target in zip(members, targets, strict=True)
            )
            self.estimators_ = [member for member, _ in fitted]
            # Raised here, where the caller's filters apply (a worker process has its own),
            # and once: the members fit the same record and mostly say the same.
            # 3: past scikit-learn's fit wrapper, at the caller of fit.
            _warn_each_once((w for _, said in fitted for w in said), stacklevel=3)
            first = self.estimators_[0]
            self.n_features_in_ = first.n_features_in_
            if hasattr(first, "feature_names_in_"):
                self.feature_names_in_ = first.feature_names_in_
            elif hasattr(self, "feature_names_in_"):  # a refit on an array: no names now
                del self.feature_names_in_
            self.n_outputs_ = first.n_outputs_
            # The settings the calibration follows: prediction and the reports keep to
            # them until the next fit (scores of one scale read on another would give a
            # wrong band).
            self.calibration_ = self.calibration
            self.scale_, self.error_correction_ = self.scale, self.error_correction
            self.band_classes_ = self.band_classes
            self._calibrate(X, y, groups, blocks if self.calibration == "blocks" else None)
            self.min_value_ = self._lowest_values(self.n_outputs_)
        return self

    def _lowest_values(self, n_outputs: int) -> np.ndarray:
        """``min_value`` as one limit per output (-inf: none), or a clear error."""
        if isinstance(self.min_value, bool):  # a Real to Python, a slip to anyone
            raise ValueError(f"min_value must be a number or None, got {self.min_value!r}")
        if self.min_value is None:
            return np.full(n_outputs, -np.inf)
        values = np.asarray(self.min_value, dtype=np.float64)
        if values.ndim == 0:  # one number for every output
            values = np.full(n_outputs, float(values))
        if values.shape != (n_outputs,):
            raise ValueError(f"min_value has shape {values.shape} for {n_outputs} outputs: "
                             "give one number, or one per output")
        if np.isnan(values).any() or np.isposinf(values).any():
            raise ValueError(f"min_value must hold numbers or -inf (no limit), got "
                             f"{self.min_value!r}")
        return values

    def _held_out_blocks(self, members, y, groups):
        """Members that each never train on one block of the training part.

        Returns the members (set to mask missing targets, with the validation fraction
        that keeps every member's validation windows those of a plain fit), their
        targets (block ``m`` NaN for member ``m``) and the blocks' rows.
        """
        if groups is not None:
            raise ValueError("calibration='blocks' needs one series; with groups use "
                             "calibration='validation'")
        if self.n_members < 2:
            raise ValueError("calibration='blocks' needs n_members >= 2 (one member "
                             "has no block it did not train on)")
        # The blocks are cut with the members' settings before their own fit checks them.
        members[0]._validate_params()
        y2 = _as_2d(y)
        # The members mask their blocks: NaN the template would reject must not pass.
        _check_finite(y2, "y", None, allow_nan=members[0].missing_target == "mask")
        lookback = members[0].lookback
        train, valid = fit_split(y2, lookback, members[0].validation_fraction)
        blocks = np.array_split(train, self.n_members)
        if min(len(b) for b in blocks) == 0:
            raise ValueError(f"calibration='blocks' needs at least {self.n_members} "
                             f"training windows, the fit has {len(train)}")
        masked_members, targets = [], []
        for member, block in zip(members, blocks, strict=True):
            target = y2.copy()
            target[block] = np.nan
            # fit_split validates on ceil(fraction * windows): a fraction just below
            # len(valid) / windows gives the plain fit's validation windows exactly.
            n_windows = len(train) - len(block) + len(valid) + lookback - 1
            fraction = (len(valid) - 0.5) / n_windows
            if not np.array_equal(fit_split(target, lookback, fraction)[1], valid):
                raise RuntimeError("the masked fit would validate on other windows")
            masked_members.append(member.set_params(missing_target="mask",
                                                    validation_fraction=fraction))
            targets.append(target if np.ndim(y) == 2 else target.ravel())
        return masked_members, targets, blocks
    def _template(self) -> TLAGRegressor:
        return member_template(self)

    def _missing_target(self) -> str:
        return self._template().missing_target

    def _calibrate(self, X, y, groups, blocks=None) -> None:
        y2 = _as_2d(y)
        # The template's own split: with blocks, every member validates on it too.
        template = self._template()
        _, valid = fit_split(y2, template.lookback, template.validation_fraction,
                             None if groups is None else np.asarray(groups))
        self.high_flow_threshold_ = np.nanquantile(y2, HIGH_FLOW_QUANTILE, axis=0)
        members, _ = self._member_predictions(X, groups=groups)
        mean, spread = members.mean(axis=0), members.std(axis=0)
        self.spread_offset_, self.flow_level_ = scale_levels(mean[valid], spread[valid])
        # Every calibration row's prediction: the mean on the validation windows; on
        # block m member m's, out of sample for it alone, in the ensemble's scale.
        centre = mean.copy()
        for m, block in enumerate(blocks or []):
            centre[block] = members[m, block]
        rows = np.sort(np.concatenate([valid, *(blocks or [])]))
        # In row order (time order within each series): the adaptive band replaces the
        # first scores first.
        self.calibration_scores_ = (y2[rows] - centre[rows]) / self._scale(mean[rows],
                                                                           spread[rows])
        self._calibrate_correction(y2, mean, centre, spread, [valid, *(blocks or [])],
                                   groups)

    def _calibrate_correction(self, y2, mean, centre, spread, parts, groups) -> None:
        """``error_coefficient_`` and ``corrected_scores_`` from the calibration rows.

        Each part (the validation windows, every block) is corrected by its own
        observed errors only: the days of the training part before it are in sample.
        Within a part, a day without an observed target carries the error over as it
        does in prediction (``phi ** k``).
        """
        starts = set(self._starts(groups, len(y2)).tolist())
        observed = np.full_like(y2, np.nan)
        for part in parts:
            observed[part] = y2[part]
            starts.add(int(part[0]))
        starts = sorted(starts)
        self.error_coefficient_ = (error_coefficient(observed - centre, starts)
                                   if self.error_correction_ == "ar1"
                                   else np.zeros(y2.shape[1]))
        shift = corrected_centre(centre, observed, self.error_coefficient_, starts) - centre
        rows = np.sort(np.concatenate(parts))
        # The scale of the ensemble's mean moved by the same correction, as in
        # prediction (a block's centre is one member's; its scale, the ensemble's).
        self.corrected_scores_ = (y2[rows] - centre[rows] - shift[rows]) / self._scale(
            mean[rows] + shift[rows], spread[rows])
        # What the scores of longer leads are made of: a forecast issued k days ahead
        # is corrected by phi ** k times the error k windows before, within a stretch.
        self.calibration_errors_ = observed[rows] - centre[rows]
        self.calibration_mean_, self.calibration_spread_ = mean[rows], spread[rows]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        self.calibration_starts_ = np.union1d(
            np.concatenate([[0], breaks]), np.flatnonzero(np.isin(rows, starts))
        ).astype(np.int64)

    def _scale(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return interval_scale(std, self.spread_offset_, mean,
                              self.flow_level_ if self.scale_ == "flow" else None)

    def _lead_scores(self, lead: int) -> np.ndarray:
        """The calibration scores of a forecast issued ``lead`` days ahead: those of the
        uncorrected forecast for 0, the corrected scores for 1, and for longer leads
        each window corrected by ``phi ** lead`` times the error ``lead`` windows before
        (windows without one left out, NaN)."""
        if lead == 0:
            return self.calibration_scores_
        if lead == 1:
            return self.corrected_scores_
        return lead_scores(self.calibration_errors_, self.calibration_mean_,
                           self.error_coefficient_, lead,
                           lambda centre: self._scale(centre, self.calibration_spread_),
                           self.calibration_starts_)

    def _leads(self, mean, std) -> LeadCalibration | None:
        """The longer leads' calibration for an adaptive band over these rows (None for
        an ensemble saved before it was kept: every day then keeps the band of the
        last observed day's state)."""
        if getattr(self, "calibration_errors_", None) is None:
            return None
        return LeadCalibration(mean, self.error_coefficient_,
                               lambda centre: self._scale(centre, std),
                               functools.cache(self._lead_scores))

    def __setstate__(self, state):
        # Ensembles saved by sktlag 0.2.0 and earlier calibrated on validation windows
        # only and kept no high-flow threshold: their high flows cannot be told apart.
        state.setdefault("calibration", "validation")
        # Before the flow scale, every score was in units of the spread.
        state.setdefault("scale", "spread")
        if "calibration_scores_" in state and "flow_level_" not in state:
            state["flow_level_"] = np.full(state["calibration_scores_"].shape[1], np.nan)
        if "calibration_scores_" in state and "high_flow_threshold_" not in state:
            state["high_flow_threshold_"] = np.full(state["calibration_scores_"].shape[1], np.nan)
        # Before the error correction, the adaptive band was centred on the mean.
        state.setdefault("error_correction", None)
        # Before the longer leads had scores of their own, every day after the last
        # observed one kept that day's band.
        for name in ("calibration_errors_", "calibration_mean_", "calibration_spread_",
                     "calibration_starts_"):
            state.setdefault(name, None)
        if "calibration_scores_" in state and "corrected_scores_" not in state:
            state["error_coefficient_"] = np.zeros(state["calibration_scores_"].shape[1])
            state["corrected_scores_"] = state["calibration_scores_"]
        # Before the lowest value, bands had no limit.
        state.setdefault("min_value", None)
        # Before the fitted copies of the three settings, prediction read the parameters.
        if "calibration_scores_" in state:
            state.setdefault("calibration_", state["calibration"])
            state.setdefault("scale_", state["scale"])
            state.setdefault("error_correction_", state["error_correction"])
        # Before the classes, one band for all days.
        state.setdefault("band_classes", None)
        if "calibration_scores_" in state:
            state.setdefault("band_classes_", None)
        if "calibration_scores_" in state and "min_value_" not in state:
            state["min_value_"] = np.full(state["calibration_scores_"].shape[1], -np.inf)
        super().__setstate__(state)

    # ------------------------------------------------------------------ prediction
    def _member_predictions(self, X, **kwargs):
        """Every member's predictions as (n_members, n_rows, n_outputs), and a function
        that gives an array of (n_rows, n_outputs) the members' own output shape."""
        # The columns are checked once, in the ensemble's name; the members' own checks
        # would repeat each of its warnings once per member.
        # (Only the shape and the names: the members check the values.)
        for what, rows in (("X", X), ("history", kwargs.get("history"))):
            if rows is not None:
                with naming_errors(what):
                    validate_data(self, rows, reset=False, dtype=None,
                                  ensure_all_finite=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _FEATURE_NAMES_WARNING, UserWarning)
            out = [np.asarray(m.predict(X, **kwargs), dtype=np.float64)
                   for m in self.estimators_]
        one_dimensional = out[0].ndim == 1
        stacked = np.stack([p.reshape(len(p), -1) for p in out])
        return stacked, (lambda values: values.ravel() if one_dimensional else values)

    def predict(self, X, return_std=False, groups=None, history=None):
        """The members' mean prediction (and their standard deviation).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        return_std : bool, default=False
            Also return the members' standard deviation (their spread, not calibrated:
            use :meth:`predict_interval` for intervals).
        groups, history : optional
            As for :meth:`TLAGRegressor.predict`.

        Returns
        -------
        y_mean : ndarray of shape (n_rows,) or (n_rows, n_outputs)
        y_std : ndarray of the same shape
            Only with ``return_std=True``.
        """
        check_is_fitted(self, "estimators_")
        members, shape = self._member_predictions(X, groups=groups, history=history)
        mean = shape(members.mean(axis=0))
        if return_std:
            return mean, shape(members.std(axis=0))
        return mean

    def predict_interval(self, X, coverage=0.9, groups=None, history=None, observed=None,
                         adapt_rate=ADAPT_RATE):
        """Prediction intervals calibrated on the fit period.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        coverage : float, default=0.9
            Nominal share of observations inside the interval, in (0, 1).
        groups, history : optional
            As for :meth:`TLAGRegressor.predict`.
        observed : array-like of shape (n_rows,) or (n_rows, n_outputs), optional
            Observations that arrive after each row's prediction (NaN: none). The band
            of row ``t`` then adapts to the observations of the rows before it, by
            adaptive conformal inference (:func:`sktlag.conformal.adaptive_levels`),
            and with ``error_correction`` is centred on the mean corrected by the last
            error observed before it (:func:`sktlag.conformal.corrected_centre`): it
            need not contain the mean. A row ``k`` rows after the last observed one
            gets the band of a forecast issued ``k`` days ahead
            (:func:`sktlag.conformal.lead_bounds`), and a row no observed row precedes
            the band of the uncorrected forecast. The band learns
            nothing from the days of ``history``; :func:`sktlag.forecast` also takes
            their observations.
        adapt_rate : float, default=0.05
            Step of the adaptive band's miscoverage per observed row.

        Returns
        -------
        lower, upper : ndarray of shape (n_rows,) or (n_rows, n_outputs)

        Warns
        -----
        UserWarning
            Where an output (with ``band_classes``, one of its classes of days) has
            fewer calibration scores than ``coverage`` needs
            (:func:`sktlag.conformal.min_calibration_scores`): the band then spans all of
            them and covers less than nominal.
        """
        _, _, low, high = self._forecast(X, coverage, groups, history, observed, adapt_rate)
        return low, high

    def _forecast(self, X, coverage, groups=None, history=None, observed=None,
                  adapt_rate=ADAPT_RATE, predicted=None, stacklevel=2):
        """The mean, the band's centre and the band, from one pass of the members (each
        in the members' output shape): what :meth:`predict`, :meth:`predict_corrected`
        and :meth:`predict_interval` give, for a caller that needs them all.
        ``predicted``: what :meth:`_mean_and_std` gave for ``X``, for a caller that
        scores the same rows too (the members then do not predict them again).
        ``stacklevel``: the frame a warning names, counted from the caller as
        :func:`warnings.warn` counts (2: the caller's caller, the user of a public
        method that calls this one)."""
        coverage, adapt_rate = check_coverage(coverage), check_rate(adapt_rate)
        # + 2: past this method and the one that warns.
        mean, std, shape = predicted or self._mean_and_std(X, groups=groups, history=history)
        classes = self._classes(mean)
        self._warn_if_too_few_scores(coverage, classes, stacklevel=stacklevel + 2)
        if observed is not None:
            observed = self._observations(observed, len(mean), "observed", X)
        centre, scale, scores, leads = self._band(mean, std, observed, groups)
        low, high = interval_bounds(centre, scale, scores, coverage, observed, adapt_rate,
                                    self._starts(groups, len(mean)), self._limit(), leads,
                                    classes)
        return shape(mean), shape(centre), shape(low), shape(high)

    def predict_corrected(self, X, observed, groups=None, history=None):
        """The forecast corrected by the last error observed before each row.

        ``mean_t + phi ** k * (observed_s - mean_s)``, with ``s = t - k`` the last row
        before ``t`` (of the same series) whose observation is known and ``phi`` the
        output's ``error_coefficient_`` (:func:`sktlag.conformal.corrected_centre`): the
        output updating of real-time flood forecasting, and the centre of the adaptive
        band of :meth:`predict_interval`. A row with no observed row before it keeps
        the mean, as does every row with ``error_correction=None`` (``phi`` is 0).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        observed : array-like of shape (n_rows,) or (n_rows, n_outputs)
            The observations, NaN where not (yet) known; row ``t`` reads only those of
            the rows before it.
        groups, history : optional
            As for :meth:`TLAGRegressor.predict`.

        Returns
        -------
        ndarray of shape (n_rows,) or (n_rows, n_outputs)
        """
        mean, _, shape = self._mean_and_std(X, groups=groups, history=history)
        return shape(self._corrected(mean, self._observations(observed, len(mean),
                                                              "observed", X), groups))

    def _warn_if_too_few_scores(self, coverage: float, classes=None,
                                stacklevel: int = 3) -> None:
        """Warn, once per call, where an output (or one of its ``classes`` of days) has
        too few calibration scores for ``coverage``: its band then spans all of them and
        covers less than nominal."""
        needed = min_calibration_scores(coverage)
        counts = _smallest_pools(self.calibration_scores_, classes)
        short = [f"output {k}: {n}" for k, n in enumerate(counts) if n < needed]
        if short:
            warnings.warn(
                f"a {coverage:g} band needs {needed} calibration scores, and this ensemble "
                f"has fewer ({', '.join(short)}): the band spans all of them and covers "
                "less than nominal; calibrate on more windows (a longer record, or "
                "calibration='blocks') or ask for a lower coverage",
                UserWarning, stacklevel=stacklevel,
            )

    def _band(self, mean, std, observed=None, groups=None):
        """The band's centre, scale and calibration scores: around the mean for the fixed
        band; around the forecast corrected by the errors observed before each row for
        the adaptive one (with ``error_correction``)."""
        if observed is None:
            return mean, self._scale(mean, std), self.calibration_scores_, None
        centre = self._corrected(mean, observed, groups)
        return (centre, self._scale(centre, std), self.corrected_scores_,
                self._leads(mean, std))

    def _classes(self, mean):
        """The classes of the days (by the members' mean) and of the calibration windows,
        or None for one band (also for an ensemble saved before the windows' mean was
        kept)."""
        if self.band_classes_ is None or self.calibration_mean_ is None:
            return None
        return (high_flow_classes(mean, self.high_flow_threshold_),
                high_flow_classes(self.calibration_mean_, self.high_flow_threshold_))

    def _corrected(self, mean, observed, groups=None):
        return corrected_centre(mean, observed, self.error_coefficient_,
                                self._starts(groups, len(mean)))

    def _observations(self, y, n_rows: int, name: str, X=None) -> np.ndarray:
        return observations(y, n_rows, self.n_outputs_, name, X)

    def _limit(self) -> np.ndarray | None:
        """``min_value_``, or None where no output has a limit (nothing to raise)."""
        return None if np.isneginf(self.min_value_).all() else self.min_value_

    @staticmethod
    def _starts(groups, n_rows: int) -> np.ndarray:
        return np.unique(group_starts(None if groups is None else np.asarray(groups), n_rows))

    def _mean_and_std(self, X, **kwargs):
        """The members' mean and standard deviation, both (n_rows, n_outputs), and the
        function that gives an array the members' output shape."""
        check_is_fitted(self, "estimators_")
        members, shape = self._member_predictions(X, **kwargs)
        return members.mean(axis=0), members.std(axis=0), shape

    def predictive_samples(self, X, groups=None, history=None) -> np.ndarray:
        """Draws of the calibrated predictive distribution, one per calibration score.

        Returns
        -------
        ndarray of shape (n_rows, n_outputs, n_scores)
            ``mean + u * r_j`` for every calibration score ``r_j`` of the output (NaN
            where the output's score is missing), raised to ``min_value_``.
        """
        mean, std, _ = self._mean_and_std(X, groups=groups, history=history)
        return predictive_draws(mean, self._scale(mean, std), self.calibration_scores_,
                                self._limit())

    def score_intervals(self, X, y, coverage=0.9, groups=None, history=None,
                        adaptive=False, adapt_rate=ADAPT_RATE,
                        coverages=REPORTED_COVERAGES) -> dict:
        """How the calibrated predictions hold on ``X, y``.

        Rows where ``y`` is NaN are left out. With ``adaptive=True`` the band of each
        row adapts to the observations of the rows before it (``observed=y`` in
        :meth:`predict_interval`, centred on the corrected forecast with
        ``error_correction``): what a forecaster who receives each day's observation
        gets.

        Returns
        -------
        dict
            ``nominal_coverage``, ``method`` (``"fixed"`` or ``"adaptive"``),
            ``calibration``, ``scale``, ``band_classes``, ``min_value`` (the bands'
            lowest value: None, one number, or a list of one per output where they
            differ, -inf for none),
            ``adapt_rate`` and ``error_coefficient`` (the lag-one coefficient of each
            output's errors that corrects the adaptive band's centre; both None for
            the fixed band) and ``outputs``,
            one entry per output: at ``coverage``, ``coverage`` (share of observations
            inside), ``mean_width`` (units of ``y``), ``relative_width`` (over the
            observations' standard deviation) and ``high_flow_coverage`` (days above
            ``high_flow_threshold_``); ``levels``, the same four at each of
            ``coverages``, with ``spans_all_scores`` (the output, or with
            ``band_classes`` one of its classes of days, has fewer calibration scores
            than the level needs: its band spans all of them and covers less than
            nominal); ``crps`` (mean CRPS of the predictive distribution, units of
            ``y``, from ``scoringrules.crps_ensemble``; for the adaptive method around
            the corrected forecast, with the corrected scores; of all of them, whatever
            ``band_classes``); ``n``
            and ``n_high_flow`` (rows scored).

        Warns
        -----
        UserWarning
            As :meth:`predict_interval`, for ``coverage``.
        """
        coverage, adapt_rate = check_coverage(coverage), check_rate(adapt_rate)
        # The members predict once for every band and the samples.
        mean, std, _ = self._mean_and_std(X, groups=groups, history=history)
        self._warn_if_too_few_scores(coverage, self._classes(mean))
        _check_same_dates(X, y, "y")  # the rest of y's checks are _scored's
        return self._scored(mean, std, y, coverage, groups, adaptive, adapt_rate, coverages)

    def _scored(self, mean, std, y, coverage, groups, adaptive, adapt_rate,
                coverages=REPORTED_COVERAGES) -> dict:
        """:meth:`score_intervals` from the members' mean and spread on the scored rows
        (checked ``coverage`` and ``adapt_rate``)."""
        y2 = self._observations(y, len(mean), "y")
        centre, scale, scores, leads = self._band(mean, std, y2 if adaptive else None, groups)
        scored = score_bands(y2, centre, scale, scores,
                             sorted({coverage, *coverages}), self.high_flow_threshold_, adaptive,
                             adapt_rate, self._starts(groups, len(mean)), self._limit(), leads,
                             self._classes(mean))
        outputs = [{**out["levels"][level_key(coverage)], **out} for out in scored]
        return {"nominal_coverage": coverage, "method": "adaptive" if adaptive else "fixed",
                "calibration": self.calibration_, "scale": self.scale_,
                "band_classes": self.band_classes_,
                # The limit the bands were raised to (the fit's, whatever the parameter
                # says now).
                "min_value": _plain_limit(self._limit()),
                "adapt_rate": adapt_rate if adaptive else None,
                # The fit's coefficients (what the band used, whatever the parameter
                # says now).
                "error_coefficient": self.error_coefficient_.tolist() if adaptive else None,
                "outputs": outputs}

    @property
    def n_layers_(self) -> list[int]:
        """Depth of every member."""
        check_is_fitted(self, "estimators_")
        return [m.n_layers_ for m in self.estimators_]


def member_template(ensemble: TLAGEnsemble) -> TLAGRegressor:
    """The regressor every member of ``ensemble`` is a clone of (``TLAGRegressor()`` when
    ``estimator`` is None); a TypeError for anything else."""
    template = TLAGRegressor() if ensemble.estimator is None else ensemble.estimator
    if not isinstance(template, TLAGRegressor):
        raise TypeError(
            f"estimator must be a TLAGRegressor, got {type(template).__name__}; put "
            "scalers in front of the ensemble in a Pipeline"
        )
    return template


def final_ensemble(model) -> TLAGEnsemble | None:
    """The :class:`TLAGEnsemble` of ``model`` (itself, or a pipeline's last step), or None."""
    final = final_step(model)
    return final if isinstance(final, TLAGEnsemble) else None


def members_of(model) -> list[TLAGRegressor]:
    """The regressors of a fitted model: an ensemble's members, or the regressor itself.

    ``model`` may be a pipeline ending in either.
    """
    ensemble = final_ensemble(model)
    if ensemble is not None:
        check_is_fitted(ensemble, "estimators_")
        return list(ensemble.estimators_)
    return [final_regressor(model)]
