"""`TLAGEnsemble`: several grown networks, their mean, their spread and calibrated intervals.

Averaging LSTMs trained from different seeds is the usual way to gain accuracy in
streamflow modelling (Kratzert et al. 2019, HESS 23:5089: median NSE over 531 basins
0.732 for one LSTM, 0.759 for an ensemble of 8). The spread of the members says where
they disagree, but it is no prediction interval by itself: members trained on the same
data share their errors, so the spread is too narrow. The intervals are therefore
calibrated on the validation period, by split-conformal prediction on residuals scaled
by the spread:

- on every validation window (the members' own chronological split, never used for
  training), the score is ``r = (y - mean) / u`` with ``u = std + mean(std)``: the
  residual in units of the members' spread, plus the typical spread so that ``u`` never
  collapses where the members happen to agree (with one member, ``u = 1`` and the
  scores are plain residuals);
- an interval of coverage ``c`` is ``mean + u * [q_lo, q_hi]`` with ``q_lo`` and
  ``q_hi`` the conformal quantiles of the scores at ``(1 - c) / 2`` and ``(1 + c) / 2``
  (finite-sample ranks). Signed scores give asymmetric intervals, as discharge errors
  are (peaks are underestimated more often than overestimated).

The same scores define a predictive distribution (``mean + u * r_j`` over all scores
``r_j``), which :meth:`~sktlag.TLAGEnsemble.score_intervals` scores with the CRPS of the
``scoringrules`` package. Validation days also chose each member's best state, so the
calibration is slightly optimistic; the benchmark measures coverage on unseen days.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from .estimator import SeriesRegressorMixin, TLAGRegressor, final_regressor, final_step
from .windows import fit_split

__all__ = ["TLAGEnsemble"]


def _as_2d(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(y.shape[0], -1)


def _fit_member(estimator, X, y, groups):
    return estimator.fit(X, y, groups=groups)


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile of ``scores`` at ``level``.

    The ``ceil((n + 1) * level)``-th smallest score (the ``floor((n + 1) * level)``-th
    for a lower level below 0.5); beyond the scores' range, the extreme score.
    """
    ordered = np.sort(scores)
    n = len(ordered)
    if level >= 0.5:
        rank = math.ceil((n + 1) * level)
    else:
        rank = math.floor((n + 1) * level)
    return float(ordered[min(max(rank, 1), n) - 1])


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

    Attributes
    ----------
    estimators_ : list of TLAGRegressor
        The fitted members.
    seeds_ : ndarray of int
        The ``random_state`` of each member.
    calibration_scores_ : ndarray of shape (n_validation_windows, n_outputs)
        Signed residuals of the validation windows in units of the spread (NaN where
        the target is missing).
    spread_offset_ : ndarray of shape (n_outputs,)
        The mean spread added to the members' standard deviation in the scale ``u``.
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
    }

    def __init__(self, estimator=None, n_members=5, n_jobs=None, random_state=None):
        self.estimator = estimator
        self.n_members = n_members
        self.n_jobs = n_jobs
        self.random_state = random_state

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
        template = self._template()
        rng = check_random_state(self.random_state)
        self.seeds_ = rng.randint(np.iinfo(np.int32).max, size=self.n_members)
        members = [clone(template).set_params(random_state=int(s)) for s in self.seeds_]
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(member, X, y, groups) for member in members
        )
        first = self.estimators_[0]
        self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_
        self.n_outputs_ = first.n_outputs_
        self._calibrate(X, y, groups)
        return self

    def _template(self) -> TLAGRegressor:
        template = TLAGRegressor() if self.estimator is None else self.estimator
        if not isinstance(template, TLAGRegressor):
            raise TypeError(
                f"estimator must be a TLAGRegressor, got {type(template).__name__}; put "
                "scalers in front of the ensemble in a Pipeline"
            )
        return template

    def _calibrate(self, X, y, groups) -> None:
        first = self.estimators_[0]
        y2 = _as_2d(y)
        _, valid = fit_split(
            y2, first.lookback, first.validation_fraction,
            None if groups is None else np.asarray(groups),
        )
        members, _ = self._member_predictions(X, groups=groups)
        members = members[:, valid]
        mean, std = members.mean(axis=0), members.std(axis=0)
        self.spread_offset_ = std.mean(axis=0) if len(std) else np.zeros(y2.shape[1])
        self.calibration_scores_ = (y2[valid] - mean) / self._scale(std)

    def _scale(self, std: np.ndarray) -> np.ndarray:
        # With one member (or members that never disagree) the scale is 1: plain
        # residuals.
        offset = np.where(self.spread_offset_ > 0, self.spread_offset_, 1.0)
        return std + offset

    # ------------------------------------------------------------------ prediction
    def _member_predictions(self, X, **kwargs):
        """Every member's predictions as (n_members, n_rows, n_outputs), and a function
        that gives an array of (n_rows, n_outputs) the members' own output shape."""
        out = [np.asarray(m.predict(X, **kwargs), dtype=np.float64) for m in self.estimators_]
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

    def predict_interval(self, X, coverage=0.9, groups=None, history=None):
        """Prediction intervals calibrated on the validation period.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
        coverage : float, default=0.9
            Nominal share of observations inside the interval, in (0, 1).
        groups, history : optional
            As for :meth:`TLAGRegressor.predict`.

        Returns
        -------
        lower, upper : ndarray of shape (n_rows,) or (n_rows, n_outputs)
        """
        low, high = self._score_quantiles(coverage)
        mean, scale, shape = self._mean_and_scale(X, groups=groups, history=history)
        return shape(mean + scale * low), shape(mean + scale * high)

    def _mean_and_scale(self, X, **kwargs):
        """The members' mean and the calibration scale ``u``, both (n_rows, n_outputs),
        and the function that gives an array the members' output shape."""
        check_is_fitted(self, "estimators_")
        members, shape = self._member_predictions(X, **kwargs)
        return members.mean(axis=0), self._scale(members.std(axis=0)), shape

    def _score_quantiles(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        if not (isinstance(coverage, Real) and 0 < coverage < 1):
            raise ValueError(f"coverage must lie in (0, 1), got {coverage!r}")
        low, high = [], []
        for k in range(self.calibration_scores_.shape[1]):
            scores = self.calibration_scores_[:, k]
            scores = scores[np.isfinite(scores)]
            if len(scores) == 0:
                raise ValueError(f"output {k} has no observed validation target to calibrate on")
            low.append(_conformal_quantile(scores, (1 - coverage) / 2))
            high.append(_conformal_quantile(scores, (1 + coverage) / 2))
        return np.array(low), np.array(high)

    def predictive_samples(self, X, groups=None, history=None) -> np.ndarray:
        """Draws of the calibrated predictive distribution, one per calibration score.

        Returns
        -------
        ndarray of shape (n_rows, n_outputs, n_scores)
            ``mean + u * r_j`` for every calibration score ``r_j`` of the output (NaN
            where the output's score is missing).
        """
        mean, scale, _ = self._mean_and_scale(X, groups=groups, history=history)
        return self._samples(mean, scale)

    def _samples(self, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return mean[:, :, None] + scale[:, :, None] * self.calibration_scores_.T[None]

    def score_intervals(self, X, y, coverage=0.9, groups=None, history=None) -> dict:
        """Coverage, mean width and CRPS of the calibrated predictions on ``X, y``.

        Rows where ``y`` is NaN are left out.

        Returns
        -------
        dict
            Per output (a list of one entry per output): ``coverage`` (share of
            observations inside the interval), ``mean_width`` (in the units of ``y``),
            ``crps`` (mean CRPS of the predictive distribution, units of ``y``; from
            ``scoringrules.crps_ensemble``) and ``n`` (rows scored), plus the nominal
            ``nominal_coverage``.
        """
        # Imported here: it takes seconds to import, and only this method needs it.
        import scoringrules

        # The members predict once for the interval and the samples.
        low, high = self._score_quantiles(coverage)
        mean, scale, _ = self._mean_and_scale(X, groups=groups, history=history)
        lower, upper = mean + scale * low, mean + scale * high
        samples = self._samples(mean, scale)
        y2 = _as_2d(y)
        outputs = []
        for k in range(y2.shape[1]):
            seen = np.isfinite(y2[:, k])
            draws = samples[seen, k]
            draws = draws[:, np.isfinite(draws).all(axis=0)]
            obs = y2[seen, k]
            inside = (obs >= lower[seen, k]) & (obs <= upper[seen, k])
            crps = scoringrules.crps_ensemble(obs, draws) if len(obs) else np.array([])
            outputs.append({
                "coverage": float(inside.mean()) if len(obs) else math.nan,
                "mean_width": float((upper[seen, k] - lower[seen, k]).mean())
                if len(obs) else math.nan,
                "crps": float(np.mean(crps)) if len(obs) else math.nan,
                "n": int(seen.sum()),
            })
        return {"nominal_coverage": float(coverage), "outputs": outputs}

    @property
    def n_layers_(self) -> list[int]:
        """Depth of every member."""
        check_is_fitted(self, "estimators_")
        return [m.n_layers_ for m in self.estimators_]


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
