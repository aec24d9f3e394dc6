"""Hydrological goodness-of-fit metrics.

All metrics compare an observed discharge series ``y_true`` with a simulated
series ``y_pred``. Both may be 1-D arrays of shape ``(n,)`` or 2-D arrays of
shape ``(n, k)`` holding ``k`` outputs (for example several gauges); rows are
time steps. For 2-D inputs every metric is computed column by column and the
``multioutput`` argument decides what is returned, as in :mod:`sklearn.metrics`:

``"raw_values"``
    one value per output column (a NumPy array of shape ``(k,)``);
``"uniform_average"`` (default)
    the mean of the per-column values, a float;
array-like of shape ``(k,)``
    a weighted average of the per-column values.

For 1-D inputs a float is always returned.

The efficiency and error metrics (NSE, log-NSE, KGE, KGE', Pearson's r, RMSE,
NMAE, MAPE) take ``sample_weight``, one non-negative weight per row, as
scikit-learn's metrics do: a row of weight ``k`` counts as ``k`` copies of it,
a row of weight 0 as no row. The flow-duration-curve signatures and peak
timing read the order of the flows or of the days and take no weights.

Inputs are validated by one shared helper: they must have the same shape
(``(n,)`` and ``(n, 1)`` are treated as the same), at least two rows, and
contain only finite numbers. When a metric is mathematically undefined for
the data (constant observations for NSE/KGE, zero mean flow, no peaks, ...)
an :class:`UndefinedMetricError`, a subclass of :class:`ValueError`, is raised
with a message explaining why.

:func:`evaluate` collects all metrics into a :class:`pandas.DataFrame`, and
:data:`SCORERS` / :func:`get_scorer` expose the efficiency metrics as
scikit-learn scorers.
"""

import copy
import warnings
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import make_scorer

__all__ = [
    "EVALUATE_METRICS",
    "LOG_FLOOR",
    "SCORERS",
    "UndefinedMetricError",
    "evaluate",
    "fhv",
    "flv",
    "fms",
    "get_scorer",
    "kge",
    "kge_prime",
    "kge_prime_scorer",
    "kge_scorer",
    "log_nse",
    "log_nse_scorer",
    "mape",
    "neg_nmae_scorer",
    "neg_rmse_scorer",
    "nmae",
    "nse",
    "nse_scorer",
    "peak_timing",
    "pearson_r",
    "rmse",
]

#: Positive floor applied to flows before taking logarithms in :func:`flv`
#: and :func:`fms`, so that zero (or negative) flows stay finite.
LOG_FLOOR = 1e-6

_UNIFORM = "uniform_average"


class UndefinedMetricError(ValueError):
    """A metric is mathematically undefined for the given data.

    Raised, for example, when the observed series is constant (NSE and KGE
    divide by its variance) or its mean is zero (KGE's bias ratio). It
    subclasses :class:`ValueError`, so ``except ValueError`` catches it.
    """


# ---------------------------------------------------------------------------
# Validation and shared helpers
# ---------------------------------------------------------------------------


def _as_float_array(y, name):
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must contain numbers only: {exc}") from exc
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D with shape (n,) or 2-D with shape (n, k); "
            f"got an array with shape {arr.shape}"
        )
    return arr


#: Rows every metric needs, with or without weights: one row has no spread to score.
_MIN_ROWS = 2


def _check_finite(arr, name):
    bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{name} contains NaN or infinite values; first offending row index: {int(bad_rows[0])}"
        )


def _check_pair(y_true, y_pred):
    """Validate a pair of series and return them as 2-D float arrays.

    Returns ``(obs, sim, single)`` where ``obs`` and ``sim`` have shape
    ``(n, k)`` and ``single`` is true when ``y_true`` was 1-D.
    """
    obs = _as_float_array(y_true, "y_true")
    sim = _as_float_array(y_pred, "y_pred")
    single = obs.ndim == 1
    obs2 = obs.reshape(obs.shape[0], -1) if obs.ndim == 1 else obs
    sim2 = sim.reshape(sim.shape[0], -1) if sim.ndim == 1 else sim
    same = obs.shape == sim.shape or (obs2.shape == sim2.shape and obs2.shape[1] == 1)
    if not same:
        raise ValueError(
            "y_true and y_pred must have the same shape; "
            f"got y_true with shape {obs.shape} and y_pred with shape {sim.shape}"
        )
    if obs2.shape[0] < _MIN_ROWS:
        raise ValueError(f"at least {_MIN_ROWS} rows (time steps) are required; got "
                         f"{obs2.shape[0]}")
    if obs2.shape[1] < 1:
        raise ValueError("y_true and y_pred must have at least one output column")
    _check_finite(obs2, "y_true")
    _check_finite(sim2, "y_pred")
    return obs2, sim2, single


def _aggregate(values, multioutput, single):
    """Turn per-column values into the requested return value."""
    values = np.asarray(values, dtype=float)
    # Checked for a single series too, as scikit-learn's metrics do: a misspelt
    # option must not pass because the series happened to be 1-D.
    if isinstance(multioutput, str):
        if multioutput not in ("raw_values", _UNIFORM):
            raise ValueError(
                "multioutput must be 'raw_values', 'uniform_average' or an array of "
                f"weights; got {multioutput!r}"
            )
    else:
        weights = np.asarray(multioutput, dtype=float)
        if weights.shape != values.shape:
            raise ValueError(
                f"multioutput weights must have shape {values.shape} (one per output); "
                f"got {weights.shape}"
            )
    if single:
        return float(values[0])
    if isinstance(multioutput, str):
        return values if multioutput == "raw_values" else float(np.mean(values))
    return float(np.average(values, weights=weights))


def _weighted_rows(obs, sim, sample_weight):
    """``obs`` and ``sim`` without their rows of weight 0, and the weights of the rest
    as an (n, 1) column (None without ``sample_weight``): a row of weight 0 is no row,
    whatever it holds."""
    if sample_weight is None:
        return obs, sim, None
    n = len(obs)
    w = _as_float_array(sample_weight, "sample_weight")
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row; "
                         f"got {w.shape}")
    bad = np.flatnonzero(~(np.isfinite(w) & (w >= 0)))
    if bad.size:
        raise ValueError(f"sample_weight must be finite and >= 0; row {int(bad[0])} "
                         f"holds {float(w[bad[0]])}")
    if not w.sum() > 0:
        raise ValueError("sample_weight is 0 on every row, so no row is scored")
    scored = w > 0
    if scored.sum() < _MIN_ROWS:
        raise ValueError(f"at least {_MIN_ROWS} rows (time steps) with a positive "
                         f"sample_weight are required; got {int(scored.sum())}")
    return obs[scored], sim[scored], w[scored, None]


def _sum(x, w):
    """Column sums of ``x``, weighted by the column ``w`` (None: unweighted)."""
    return x.sum(axis=0) if w is None else (w * x).sum(axis=0)


def _mean(x, w):
    """Column means of ``x``, weighted by the column ``w`` (None: unweighted)."""
    return x.mean(axis=0) if w is None else (w * x).sum(axis=0) / w.sum()


def _std(x, w):
    """Column standard deviations (population), weighted by ``w``."""
    return x.std(axis=0) if w is None else np.sqrt(_mean((x - _mean(x, w)) ** 2, w))


def _require(ok, message):
    """Raise :class:`UndefinedMetricError` unless ``ok`` holds for every column."""
    ok = np.atleast_1d(np.asarray(ok, dtype=bool))
    if not ok.all():
        where = f" (output column {int(np.flatnonzero(~ok)[0])})" if ok.size > 1 else ""
        raise UndefinedMetricError(message + where)


def _constant_columns(spread: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Which columns do not vary, from their standard deviation and mean: rounding
    leaves a constant a spread of about 1e-17 of its mean, not 0, and a metric dividing
    by that spread would return about 1e30 instead of failing."""
    return spread <= 1e-12 * np.abs(mean)


def _centered(obs, metric, w=None):
    """Deviations of ``obs`` from its column means and their sum of squares
    (weighted by ``w``).

    Raises when a column is constant (`_constant_columns`): ``metric`` would divide by
    zero, or by what rounding left of it.
    """
    mean = _mean(obs, w)
    dev = obs - mean
    ss = _sum(dev**2, w)
    _require(
        ~_constant_columns(_std(obs, w), mean) & (ss > 0),
        f"y_true is constant, so {metric} is undefined: it divides by the variance "
        "of the observed series",
    )
    return dev, ss


def _nonzero_mean(values, name, metric, w=None):
    mean = _mean(values, w)
    _require(mean != 0, f"the mean of {name} is zero, so {metric} is undefined")
    return mean


def _nse_columns(obs, sim, metric="NSE", w=None):
    _, ss_obs = _centered(obs, metric, w)
    return 1.0 - _sum((obs - sim) ** 2, w) / ss_obs


def _pearson_columns(obs, sim, metric, w=None):
    dev_obs, ss_obs = _centered(obs, metric, w)
    mean_sim = _mean(sim, w)
    dev_sim = sim - mean_sim
    ss_sim = _sum(dev_sim**2, w)
    varying = ~_constant_columns(_std(sim, w), mean_sim) & (ss_sim > 0)
    num = _sum(dev_obs * dev_sim, w)
    den = np.sqrt(ss_obs * np.where(varying, ss_sim, 1.0))
    # A constant simulation has no linear association with the observations.
    r = np.where(varying, num / den, 0.0)
    return np.clip(r, -1.0, 1.0)


def _kge_columns(obs, sim, version, w=None):
    """KGE value and components per column, as a dict of arrays."""
    version = str(version)
    if version not in ("2009", "2012"):
        raise ValueError(f"version must be '2009' or '2012'; got {version!r}")
    metric = "KGE" if version == "2009" else "KGE'"
    r = _pearson_columns(obs, sim, metric, w)
    mu_obs = _nonzero_mean(obs, "y_true", metric, w)
    mu_sim = _mean(sim, w)
    sd_obs = _std(obs, w)
    sd_sim = _std(sim, w)
    beta = mu_sim / mu_obs
    if version == "2009":
        name, ratio = "alpha", sd_sim / sd_obs
    else:
        _nonzero_mean(sim, "y_pred", "the variability ratio gamma of KGE'", w)
        name, ratio = "gamma", (sd_sim / mu_sim) / (sd_obs / mu_obs)
    value = 1.0 - np.sqrt((r - 1.0) ** 2 + (ratio - 1.0) ** 2 + (beta - 1.0) ** 2)
    return {"kge": value, "r": r, name: ratio, "beta": beta}


def _round_half_up(x):
    return int(np.floor(x + 0.5))


def _check_fraction(value, name, *, allow_one=True):
    value = float(value)
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value > 0.0 and upper_ok):
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name} must lie in {bound}; got {value}")
    return value


def _log_floors(obs, sim):
    """Logarithms of both series, every flow below the floor of its column at the floor.

    The floor is :data:`LOG_FLOOR`, or the smallest positive observed flow where that
    is smaller. It comes from the observations alone, so every simulation is scored
    against the same observed logarithms; zero or negative flows of either series,
    and simulated flows below every observed one, count as the floor. Observed flows
    keep their order, and FLV and FMS (differences of logarithms) do not depend on the
    unit of observed flows that are all positive (with no simulated flow below them).
    """
    floor = np.minimum(LOG_FLOOR, np.where(obs > 0, obs, np.inf).min(axis=0))
    return (np.log(np.maximum(q, floor)) for q in (obs, sim))


# ---------------------------------------------------------------------------
# Efficiency metrics
# ---------------------------------------------------------------------------


def nse(y_true, y_pred, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Nash-Sutcliffe efficiency (NSE).

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output; see the module notes).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        NSE, in :math:`(-\infty, 1]`; 1 is a perfect fit and 0 is as good as
        predicting the observed mean.

    Raises
    ------
    UndefinedMetricError
        If an observed column is constant.

    Notes
    -----
    .. math::

        \mathrm{NSE} = 1 - \frac{\sum_t (o_t - s_t)^2}{\sum_t (o_t - \bar o)^2}

    with observations :math:`o_t`, simulations :math:`s_t` and observed mean
    :math:`\bar o`. It equals the coefficient of determination computed by
    :func:`sklearn.metrics.r2_score`, except on observations that do not vary
    (up to rounding, a spread of at most 1e-12 of their mean): NSE is undefined
    there and raises, where ``r2_score`` (and an estimator's ``score``) returns 0
    by scikit-learn's convention (1 for a perfect prediction).

    References
    ----------
    Nash, J. E. and Sutcliffe, J. V. (1970). River flow forecasting through
    conceptual models part I - A discussion of principles. *Journal of
    Hydrology*, 10(3), 282-290.

    Examples
    --------
    >>> nse([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    0.5
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    return _aggregate(_nse_columns(obs, sim, w=w), multioutput, single)


def log_nse(y_true, y_pred, epsilon=None, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Nash-Sutcliffe efficiency of log-transformed flows.

    Emphasises low flows: relative rather than absolute errors matter.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    epsilon : float, optional
        Non-negative constant added to both series before the logarithm.
        Defaults to one hundredth of the mean observed flow of each output
        column (Pushpalatha et al., 2012).
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        log-NSE, in :math:`(-\infty, 1]`.

    Raises
    ------
    UndefinedMetricError
        If an observed column is constant, or ``q + epsilon`` is not positive
        for some observed or simulated value.

    Notes
    -----
    .. math::

        \mathrm{logNSE} = 1 - \frac{\sum_t (\ln(o_t + \varepsilon)
        - \ln(s_t + \varepsilon))^2}{\sum_t (\ln(o_t + \varepsilon)
        - \overline{\ln(o + \varepsilon)})^2}

    Negative simulated flows are set to zero before the transform, because
    discharge cannot be negative and data-driven models may undershoot in
    recessions. Observed values are used as they are.

    References
    ----------
    Nash, J. E. and Sutcliffe, J. V. (1970). River flow forecasting through
    conceptual models part I - A discussion of principles. *Journal of
    Hydrology*, 10(3), 282-290.

    Pushpalatha, R., Perrin, C., Le Moine, N. and Andreassian, V. (2012). A
    review of efficiency criteria suitable for evaluating low-flow
    simulations. *Journal of Hydrology*, 420-421, 171-182.
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    _centered(obs, "log-NSE", w)
    if epsilon is None:
        eps = 0.01 * _mean(obs, w)
    else:
        eps = float(epsilon)
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"epsilon must be a finite non-negative number; got {epsilon!r}")
    sim = np.maximum(sim, 0.0)
    for arr, name in ((obs, "y_true"), (sim, "y_pred")):
        _require(
            np.all(arr + eps > 0, axis=0),
            f"log-NSE needs {name} + epsilon > 0 everywhere; pass a larger epsilon",
        )
    values = _nse_columns(np.log(obs + eps), np.log(sim + eps), "log-NSE", w)
    return _aggregate(values, multioutput, single)


def kge(y_true, y_pred, version="2009", return_components=False, *, multioutput=_UNIFORM,
        sample_weight=None):
    r"""Kling-Gupta efficiency (KGE) and its modified form KGE'.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    version : {"2009", "2012"}, default="2009"
        ``"2009"`` is the original KGE of Gupta et al. (2009) with the
        variability ratio :math:`\alpha`; ``"2012"`` is KGE' of Kling et al.
        (2012) with the ratio of coefficients of variation :math:`\gamma`.
    return_components : bool, default=False
        If true, return a dict with keys ``"kge"`` (the KGE or KGE' value),
        ``"r"``, ``"alpha"`` (2009) or ``"gamma"`` (2012) and ``"beta"``.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output). With
        ``return_components=True`` it is applied to each entry of the dict
        separately (an averaged KGE is not recomputed from averaged
        components).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float, ndarray of shape (k,) or dict
        KGE in :math:`(-\infty, 1]`, or the dict described above.

    Raises
    ------
    UndefinedMetricError
        If an observed column is constant or has zero mean, or (KGE') if a
        simulated column has zero mean.

    Notes
    -----
    .. math::

        \mathrm{KGE} = 1 - \sqrt{(r - 1)^2 + (\alpha - 1)^2 + (\beta - 1)^2},
        \quad \alpha = \frac{\sigma_s}{\sigma_o}, \quad
        \beta = \frac{\mu_s}{\mu_o}

        \mathrm{KGE'} = 1 - \sqrt{(r - 1)^2 + (\gamma - 1)^2 + (\beta - 1)^2},
        \quad \gamma = \frac{\sigma_s / \mu_s}{\sigma_o / \mu_o}

    where :math:`r` is Pearson's correlation coefficient and :math:`\mu`,
    :math:`\sigma` are means and (population) standard deviations of the
    simulated (:math:`s`) and observed (:math:`o`) series. If the simulation
    is constant, :math:`r` is taken as 0 (see :func:`pearson_r`), so
    predicting the observed mean gives :math:`1 - \sqrt 2 \approx -0.41`
    (Knoben et al., 2019).

    References
    ----------
    Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009).
    Decomposition of the mean squared error and NSE performance criteria:
    Implications for improving hydrological modelling. *Journal of
    Hydrology*, 377(1-2), 80-91.

    Kling, H., Fuchs, M. and Paulin, M. (2012). Runoff conditions in the upper
    Danube basin under an ensemble of climate change scenarios. *Journal of
    Hydrology*, 424-425, 264-277.

    Knoben, W. J. M., Freer, J. E. and Woods, R. A. (2019). Technical note:
    Inherent benchmark or not? Comparing Nash-Sutcliffe and Kling-Gupta
    efficiency scores. *Hydrology and Earth System Sciences*, 23, 4323-4331.

    Examples
    --------
    >>> obs = [1.0, 2.0, 3.0, 4.0, 5.0]
    >>> round(kge(obs, [2.0, 3.0, 4.0, 5.0, 6.0]), 6)
    0.666667
    >>> parts = kge(obs, [2.0, 4.0, 6.0, 8.0, 10.0], return_components=True)
    >>> parts["r"], parts["alpha"], parts["beta"]
    (1.0, 2.0, 2.0)
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    parts = _kge_columns(obs, sim, version, w)
    if return_components:
        return {key: _aggregate(val, multioutput, single) for key, val in parts.items()}
    return _aggregate(parts["kge"], multioutput, single)


def kge_prime(y_true, y_pred, return_components=False, *, multioutput=_UNIFORM,
              sample_weight=None):
    r"""Modified Kling-Gupta efficiency KGE' (Kling et al., 2012).

    Shorthand for ``kge(y_true, y_pred, version="2012", ...)``; see
    :func:`kge` for parameters, formula and references.

    .. math::

        \mathrm{KGE'} = 1 - \sqrt{(r - 1)^2 + (\gamma - 1)^2 + (\beta - 1)^2},
        \quad \gamma = \frac{\sigma_s / \mu_s}{\sigma_o / \mu_o}, \quad
        \beta = \frac{\mu_s}{\mu_o}

    Returns
    -------
    float, ndarray of shape (k,) or dict
        KGE', or with ``return_components=True`` a dict with keys ``"kge"``,
        ``"r"``, ``"gamma"`` and ``"beta"``.

    References
    ----------
    Kling, H., Fuchs, M. and Paulin, M. (2012). Runoff conditions in the upper
    Danube basin under an ensemble of climate change scenarios. *Journal of
    Hydrology*, 424-425, 264-277.

    Examples
    --------
    >>> kge_prime([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0])
    0.0
    """
    return kge(
        y_true,
        y_pred,
        version="2012",
        return_components=return_components,
        multioutput=multioutput,
        sample_weight=sample_weight,
    )


def pearson_r(y_true, y_pred, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Pearson correlation coefficient between observed and simulated flows.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        Correlation in :math:`[-1, 1]`.

    Raises
    ------
    UndefinedMetricError
        If an observed column is constant.

    Notes
    -----
    .. math::

        r = \frac{\sum_t (o_t - \bar o)(s_t - \bar s)}
        {\sqrt{\sum_t (o_t - \bar o)^2 \sum_t (s_t - \bar s)^2}}

    A constant simulation has no linear association with the observations;
    its correlation is reported as 0 instead of the undefined 0/0, following
    the convention used by Knoben et al. (2019) for the mean-flow benchmark.

    References
    ----------
    Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009).
    Decomposition of the mean squared error and NSE performance criteria:
    Implications for improving hydrological modelling. *Journal of
    Hydrology*, 377(1-2), 80-91.

    Examples
    --------
    >>> pearson_r([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    0.5
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    return _aggregate(_pearson_columns(obs, sim, "Pearson r", w), multioutput, single)


# ---------------------------------------------------------------------------
# Error measures
# ---------------------------------------------------------------------------


def rmse(y_true, y_pred, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Root mean squared error, in the units of the flows.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        RMSE, non-negative; 0 is a perfect fit.

    Notes
    -----
    .. math::

        \mathrm{RMSE} = \sqrt{\frac{1}{n} \sum_t (s_t - o_t)^2}

    References
    ----------
    Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009).
    Decomposition of the mean squared error and NSE performance criteria:
    Implications for improving hydrological modelling. *Journal of
    Hydrology*, 377(1-2), 80-91.

    Examples
    --------
    >>> rmse([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    1.0
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    return _aggregate(np.sqrt(_mean((sim - obs) ** 2, w)), multioutput, single)


def nmae(y_true, y_pred, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Mean absolute error normalised by the mean observed flow.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        NMAE as a fraction (not percent), non-negative; 0 is a perfect fit.

    Raises
    ------
    UndefinedMetricError
        If the mean of an observed column is zero.

    Notes
    -----
    .. math::

        \mathrm{NMAE} = \frac{\frac{1}{n}\sum_t |s_t - o_t|}{|\bar o|}

    The normalisation by the absolute mean observed flow (not by the range
    or by each observation) makes errors comparable between catchments of
    different size and keeps the measure defined when single observations
    are zero.

    References
    ----------
    Willmott, C. J. and Matsuura, K. (2005). Advantages of the mean absolute
    error (MAE) over the root mean square error (RMSE) in assessing average
    model performance. *Climate Research*, 30(1), 79-82.

    Examples
    --------
    >>> nmae([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0])  # doctest: +ELLIPSIS
    0.333...
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    mean_obs = _nonzero_mean(obs, "y_true", "NMAE", w)
    values = _mean(np.abs(sim - obs), w) / np.abs(mean_obs)
    return _aggregate(values, multioutput, single)


def mape(y_true, y_pred, *, multioutput=_UNIFORM, sample_weight=None):
    r"""Mean absolute percentage error, in percent.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).
    sample_weight : array-like of shape (n,), optional
        One non-negative weight per row (see the module notes).

    Returns
    -------
    float or ndarray of shape (k,)
        MAPE in percent, non-negative; 0 is a perfect fit.

    Raises
    ------
    UndefinedMetricError
        If every observed value of a column is zero.

    Notes
    -----
    .. math::

        \mathrm{MAPE} = \frac{100}{|T|} \sum_{t \in T} \frac{|s_t - o_t|}{|o_t|},
        \quad T = \{t : o_t \neq 0\}

    Time steps with zero observed flow (dry days in intermittent rivers) are
    left out, because the relative error is undefined there; the mean runs
    over the remaining steps. Very small observed flows still dominate the
    measure, so prefer :func:`nmae` for rivers that fall nearly dry.

    References
    ----------
    Hyndman, R. J. and Koehler, A. B. (2006). Another look at measures of
    forecast accuracy. *International Journal of Forecasting*, 22(4),
    679-688.

    Examples
    --------
    >>> round(mape([0.0, 1.0, 2.0, 4.0], [5.0, 2.0, 2.0, 3.0]), 4)
    41.6667
    """
    obs, sim, single = _check_pair(y_true, y_pred)
    obs, sim, w = _weighted_rows(obs, sim, sample_weight)
    nonzero = obs != 0
    counts = _sum(nonzero, w)
    _require(counts > 0, "all values of y_true are zero, so MAPE is undefined")
    ratios = np.divide(np.abs(sim - obs), np.abs(obs), out=np.zeros_like(obs), where=nonzero)
    return _aggregate(100.0 * _sum(ratios, w) / counts, multioutput, single)


# ---------------------------------------------------------------------------
# Flow duration curve signatures
# ---------------------------------------------------------------------------


def fhv(y_true, y_pred, h=0.02, *, multioutput=_UNIFORM):
    r"""Percent bias of the high-flow segment of the flow duration curve.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    h : float, default=0.02
        Exceedance probability bounding the high-flow segment, in (0, 1].
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).

    Returns
    -------
    float or ndarray of shape (k,)
        FHV in percent; positive when the simulated peak flows are too large,
        0 for a perfect flow duration curve.

    Raises
    ------
    UndefinedMetricError
        If the observed high flows sum to zero.

    Notes
    -----
    Each series is sorted in decreasing order (its flow duration curve) and
    the :math:`H = \max(1, \mathrm{round}(h n))` largest flows are kept,
    i.e. those with exceedance probability at most :math:`h`:

    .. math::

        \mathrm{FHV} = 100 \, \frac{\sum_{i=1}^{H} (s_{(i)} - o_{(i)})}
        {\sum_{i=1}^{H} o_{(i)}}

    The flows are compared by rank, not by time, so timing errors do not
    matter.

    References
    ----------
    Yilmaz, K. K., Gupta, H. V. and Wagener, T. (2008). A process-based
    diagnostic approach to model evaluation: Application to the NWS
    distributed hydrologic model. *Water Resources Research*, 44, W09417.

    Examples
    --------
    >>> obs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    >>> round(fhv(obs, [1, 2, 3, 4, 5, 6, 7, 8, 11, 12], h=0.2), 4)  # 100 * 4 / 19
    21.0526
    """
    h = _check_fraction(h, "h")
    obs, sim, single = _check_pair(y_true, y_pred)
    count = max(1, _round_half_up(h * obs.shape[0]))
    high_obs = np.sort(obs, axis=0)[::-1][:count].sum(axis=0)
    high_sim = np.sort(sim, axis=0)[::-1][:count].sum(axis=0)
    _require(high_obs != 0, "the high flows of y_true sum to zero, so FHV is undefined")
    return _aggregate(100.0 * (high_sim - high_obs) / high_obs, multioutput, single)


def flv(y_true, y_pred, l=0.3, *, multioutput=_UNIFORM):  # noqa: E741
    r"""Percent bias of the low-flow segment of the flow duration curve.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    l : float, default=0.3
        Fraction of the flow duration curve forming the low-flow segment
        (exceedance probabilities from ``1 - l`` to 1), in (0, 1].
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).

    Returns
    -------
    float or ndarray of shape (k,)
        FLV in percent, 0 for a perfect low-flow segment.

    Raises
    ------
    UndefinedMetricError
        If ``round(l * n)`` is smaller than 2 (too few flows for a segment), or
        if the observed low flows are all equal (the denominator is zero).

    Notes
    -----
    With the :math:`L = \mathrm{round}(l n)` smallest flows of each series in
    log space, and :math:`q_{\min}` the smallest flow,

    .. math::

        \mathrm{FLV} = -100 \, \frac{\sum_{j=1}^{L} (\ln s_{(j)} - \ln s_{\min})
        - \sum_{j=1}^{L} (\ln o_{(j)} - \ln o_{\min})}
        {\sum_{j=1}^{L} (\ln o_{(j)} - \ln o_{\min})}

    Each sum measures how far the low-flow segment rises above the minimum
    flow. Zero (and negative) flows have no logarithm; in both series they, and
    simulated flows below it, are replaced by the small positive floor
    :data:`LOG_FLOOR` (``1e-6``), or by the smallest positive observed flow
    where that is smaller: a floor from the observations alone, so that every
    simulation is scored against the same observed segment. Rivers that are
    dry for more than a fraction ``l`` of the time have a flat observed segment
    and no defined FLV.

    References
    ----------
    Yilmaz, K. K., Gupta, H. V. and Wagener, T. (2008). A process-based
    diagnostic approach to model evaluation: Application to the NWS
    distributed hydrologic model. *Water Resources Research*, 44, W09417.
    """
    l = _check_fraction(l, "l")  # noqa: E741
    obs, sim, single = _check_pair(y_true, y_pred)
    count = _round_half_up(l * obs.shape[0])
    if count < 2:
        raise UndefinedMetricError(
            f"FLV needs at least 2 flows in the low-flow segment; l * n = {l * obs.shape[0]:g}"
        )

    def segment_area(log_q):
        low = np.sort(log_q, axis=0)[:count]
        return np.sum(low - low[0], axis=0)

    area_obs, area_sim = (segment_area(log_q) for log_q in _log_floors(obs, sim))
    _require(area_obs > 0, "the low flows of y_true are all equal, so FLV is undefined")
    return _aggregate(-100.0 * (area_sim - area_obs) / area_obs, multioutput, single)


def fms(y_true, y_pred, lower=0.2, upper=0.7, *, multioutput=_UNIFORM):
    r"""Percent bias of the slope of the mid-segment of the flow duration curve.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    lower, upper : float, default=0.2, 0.7
        Exceedance probabilities bounding the mid-segment,
        ``0 < lower < upper <= 1``.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).

    Returns
    -------
    float or ndarray of shape (k,)
        FMS in percent; positive when the simulated mid-segment is too steep
        (flashy), 0 for a perfect slope.

    Raises
    ------
    UndefinedMetricError
        If the series is too short to separate the two exceedance
        probabilities, or if the observed mid-segment is flat.

    Notes
    -----
    For a series sorted in decreasing order, the flow with exceedance
    probability :math:`p` is taken as :math:`q_p = q_{(i)}` with rank
    :math:`i = \max(1, \mathrm{round}(p n))` (1-based), since
    :math:`P(Q \ge q_{(i)}) = i / n`. Then

    .. math::

        \mathrm{FMS} = 100 \, \frac{(\ln s_{lower} - \ln s_{upper})
        - (\ln o_{lower} - \ln o_{upper})}{\ln o_{lower} - \ln o_{upper}}

    Zero (and negative) flows, and simulated flows below the floor, are replaced by
    :data:`LOG_FLOOR` (``1e-6``), or by the smallest positive observed flow where
    that is smaller, before the logarithm, as in :func:`flv`.

    References
    ----------
    Yilmaz, K. K., Gupta, H. V. and Wagener, T. (2008). A process-based
    diagnostic approach to model evaluation: Application to the NWS
    distributed hydrologic model. *Water Resources Research*, 44, W09417.
    """
    lower = _check_fraction(lower, "lower")
    upper = _check_fraction(upper, "upper")
    if not lower < upper:
        raise ValueError(f"lower must be smaller than upper; got lower={lower}, upper={upper}")
    obs, sim, single = _check_pair(y_true, y_pred)
    n = obs.shape[0]
    i_lower = max(1, _round_half_up(lower * n)) - 1
    i_upper = max(1, _round_half_up(upper * n)) - 1
    if i_lower == i_upper:
        raise UndefinedMetricError(
            f"{n} time steps are too few to separate exceedance probabilities "
            f"{lower} and {upper} for FMS"
        )

    def slope(log_q):
        fdc = np.sort(log_q, axis=0)[::-1]
        return fdc[i_lower] - fdc[i_upper]

    slope_obs, slope_sim = (slope(log_q) for log_q in _log_floors(obs, sim))
    _require(
        slope_obs > 0,
        "the mid-segment of y_true's flow duration curve is flat, so FMS is undefined",
    )
    return _aggregate(100.0 * (slope_sim - slope_obs) / slope_obs, multioutput, single)


# ---------------------------------------------------------------------------
# Peak timing
# ---------------------------------------------------------------------------


def _time_coordinates(index, n):
    """Positions of the time steps, in days for datetime-like indexes."""
    if index is None:
        return np.arange(n, dtype=float)
    idx = pd.Index(index)
    if len(idx) != n:
        raise ValueError(f"index must have one entry per row ({n}); got {len(idx)}")
    if pd.api.types.is_datetime64_any_dtype(idx.dtype):
        times = np.asarray((idx - idx[0]) / pd.Timedelta(days=1), dtype=float)
    elif pd.api.types.is_timedelta64_dtype(idx.dtype):
        times = np.asarray(idx / pd.Timedelta(days=1), dtype=float)
    elif pd.api.types.is_numeric_dtype(idx.dtype):
        times = idx.to_numpy(dtype=float)
    else:
        raise TypeError(f"index must be datetime-like or numeric; got dtype {idx.dtype}")
    return times


def _stretches(times):
    """A label per row: rows of one stretch of the record share it, and a new stretch
    begins after a gap, a step over 1.5 times the usual (median) one.

    Raises :class:`UndefinedMetricError` where the times do not increase (series of
    several basins stacked, dates out of order): peaks cannot be timed there.
    """
    steps = np.diff(times)
    back = np.flatnonzero(~(steps > 0))
    if back.size:
        raise UndefinedMetricError(
            f"the index must increase from row to row, and row {back[0] + 1} does not "
            f"come after row {back[0]}, so peak timing is undefined"
        )
    usual = np.median(steps) if steps.size else 1.0
    return np.concatenate([[0], np.cumsum(steps > 1.5 * usual)])


def _peak_lags(obs, sim, window, times, prominence):
    """Absolute timing error of every observed peak of one column."""
    # Imported here: scipy.signal would add to every `import sktlag`.
    from scipy.signal import find_peaks

    prom = np.std(obs) if prominence is None else prominence
    peaks, _ = find_peaks(obs, prominence=prom)
    if peaks.size == 0:
        raise UndefinedMetricError(
            f"no peaks with prominence >= {prom:g} found in y_true, so peak timing is undefined"
        )
    offsets = np.arange(-window, window + 1)
    view = np.lib.stride_tricks.sliding_window_view
    windows = view(np.pad(sim, window, constant_values=-np.inf), offsets.size)[peaks]
    # Only rows of the peak's own stretch: across a gap in the record (days of missing
    # observations left out) the row ``window`` rows away lies further in time.
    stretch = _stretches(times)
    near = view(np.pad(stretch, window, constant_values=-1), offsets.size)[peaks]
    windows = np.where(near == stretch[peaks, None], windows, -np.inf)
    is_max = windows == windows.max(axis=1, keepdims=True)
    # Among equal maxima, take the one closest to the observed peak.
    best = np.argmin(np.where(is_max, np.abs(offsets), np.inf), axis=1)
    matched = peaks + offsets[best]
    return np.abs(times[matched] - times[peaks])


def peak_timing(y_true, y_pred, window=3, index=None, *, prominence=None, multioutput=_UNIFORM):
    r"""Mean absolute timing error of the simulated flood peaks.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge, equally or unequally spaced in time.
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    window : int, default=3
        Half-width, in time steps, of the window around each observed peak in
        which the simulated maximum is searched.
    index : array-like of shape (n,), optional
        Time stamps of the rows, increasing. With a datetime-like index (for
        example a :class:`pandas.DatetimeIndex`) the error is measured in days,
        with a numeric index in its units. By default it is measured in time
        steps. A step over 1.5 times the index's median spacing is a gap (days of
        missing observations left out), which the window never reaches across; an
        index that does not increase leaves peak timing undefined.
    prominence : float >= 0, optional
        Minimum prominence of an observed peak. Defaults to the standard
        deviation of the observed series of each column.
    multioutput : {"raw_values", "uniform_average"} or array-like, default="uniform_average"
        How to combine the values of several outputs (an array-like of shape (k,):
        one weight per output).

    Returns
    -------
    float or ndarray of shape (k,)
        Mean absolute lag, non-negative; 0 means every simulated peak falls
        on the observed peak.

    Raises
    ------
    UndefinedMetricError
        If no observed peak is found in a column.

    Notes
    -----
    Peaks of the observed series are located with
    :func:`scipy.signal.find_peaks`, keeping those whose prominence is at
    least ``prominence`` (by default the observed standard deviation, which
    discards small fluctuations). For every peak :math:`t_p` the simulated
    maximum inside :math:`[t_p - w, t_p + w]` (clipped to the series, and
    with an index to the stretch between its gaps) is found,
    at :math:`\hat t_p`; if several steps share the maximum, the one closest
    to :math:`t_p` is used. The metric is

    .. math::

        \mathrm{PT} = \frac{1}{P} \sum_{p=1}^{P} |\tau(\hat t_p) - \tau(t_p)|

    where :math:`\tau` maps a row to its time coordinate (days for datetime
    indexes). The result is bounded by the window width, so it should be
    read together with a volume measure such as :func:`fhv`.

    References
    ----------
    Kratzert, F., Klotz, D., Hochreiter, S. and Nearing, G. S. (2021). A note
    on leveraging synergy in multiple meteorological data sets with deep
    learning for rainfall-runoff modeling. *Hydrology and Earth System
    Sciences*, 25, 2685-2703.

    Kratzert, F., Gauch, M., Nearing, G. and Klotz, D. (2022).
    NeuralHydrology - A Python library for deep learning research in
    hydrology. *Journal of Open Source Software*, 7(71), 4050.

    Examples
    --------
    >>> obs = [0, 0, 0, 1, 8, 1, 0, 0, 0, 0]
    >>> sim = [0, 0, 0, 0, 1, 2, 7, 1, 0, 0]
    >>> peak_timing(obs, sim)
    2.0
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 0:
        raise ValueError(f"window must be a non-negative integer; got {window!r}")
    if prominence is not None and (isinstance(prominence, bool)
                                   or not isinstance(prominence, Real)
                                   or not prominence >= 0 or not np.isfinite(prominence)):
        raise ValueError(f"prominence must be a finite number >= 0; got {prominence!r}")
    obs, sim, single = _check_pair(y_true, y_pred)
    times = _time_coordinates(index, obs.shape[0])
    values = np.empty(obs.shape[1])
    for j in range(obs.shape[1]):
        try:
            values[j] = _peak_lags(obs[:, j], sim[:, j], int(window), times, prominence).mean()
        except UndefinedMetricError as exc:
            if obs.shape[1] > 1:
                raise UndefinedMetricError(f"{exc} (output column {j})") from None
            raise
    return _aggregate(values, multioutput, single)


# ---------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------


def _kge_rows(obs, sim, index):
    parts = kge(obs, sim, return_components=True)
    return {
        "kge": parts["kge"],
        "kge_r": parts["r"],
        "kge_alpha": parts["alpha"],
        "kge_beta": parts["beta"],
    }


def _kge_prime_rows(obs, sim, index):
    parts = kge_prime(obs, sim, return_components=True)
    return {
        "kge_prime": parts["kge"],
        "kge_prime_gamma": parts["gamma"],
        "kge_prime_beta": parts["beta"],
    }


def _single_row(name, func):
    return name, lambda obs, sim, index: {name: func(obs, sim)}


def _peak_timing_rows(obs, sim, index):
    return {"peak_timing": peak_timing(obs, sim, index=index)}


# Groups of rows computed together, in the order of the table.
_EVALUATORS = dict(
    [
        _single_row("nse", nse),
        _single_row("log_nse", log_nse),
        ("kge", _kge_rows),
        ("kge_prime", _kge_prime_rows),
        _single_row("pearson_r", pearson_r),
        _single_row("nmae", nmae),
        _single_row("mape", mape),
        _single_row("rmse", rmse),
        _single_row("fhv", fhv),
        _single_row("flv", flv),
        _single_row("fms", fms),
        ("peak_timing", _peak_timing_rows),
    ]
)

#: Row names of the table returned by :func:`evaluate`, in order.
EVALUATE_METRICS = (
    "nse",
    "log_nse",
    "kge",
    "kge_r",
    "kge_alpha",
    "kge_beta",
    "kge_prime",
    "kge_prime_gamma",
    "kge_prime_beta",
    "pearson_r",
    "nmae",
    "mape",
    "rmse",
    "fhv",
    "flv",
    "fms",
    "peak_timing",
)


def _group_of(row):
    if row.startswith("kge_prime"):
        return "kge_prime"
    if row.startswith("kge"):
        return "kge"
    return row


def output_names(y_true, k):
    """Names of the ``k`` outputs of ``y_true``: its columns, its name, or output_0 ..."""
    columns = getattr(y_true, "columns", None)
    if columns is not None:
        return list(columns)
    name = getattr(y_true, "name", None)
    if k == 1 and isinstance(y_true, pd.Series) and name is not None:
        return [name]
    return [f"output_{j}" for j in range(k)]


def evaluate(y_true, y_pred, metrics=None, index=None):
    """Compute a table of hydrological metrics, one column per output.

    Parameters
    ----------
    y_true : array-like of shape (n,) or (n, k)
        Observed discharge. If it is a :class:`pandas.DataFrame` its column
        labels name the outputs (a named :class:`pandas.Series` names its
        single output); otherwise they are ``"output_0"``, ``"output_1"``, ...
    y_pred : array-like of shape (n,) or (n, k)
        Simulated discharge.
    metrics : str or sequence of str, optional
        Rows to compute, a subset of :data:`EVALUATE_METRICS`; all by
        default. The table keeps the order given here.
    index : array-like of shape (n,), optional
        Time stamps passed to :func:`peak_timing` (datetime-like gives
        days).

    Returns
    -------
    pandas.DataFrame
        Index: metric names (``"nse"``, ``"log_nse"``, ``"kge"``,
        ``"kge_r"``, ``"kge_alpha"``, ``"kge_beta"``, ``"kge_prime"``,
        ``"kge_prime_gamma"``, ``"kge_prime_beta"``, ``"pearson_r"``,
        ``"nmae"``, ``"mape"``, ``"rmse"``, ``"fhv"``, ``"flv"``, ``"fms"``,
        ``"peak_timing"``); columns: outputs; values: floats, computed with
        the default parameters of each metric function.

    Raises
    ------
    ValueError
        For invalid inputs (shape mismatch, NaN or infinite values, unknown
        metric names).

    Warns
    -----
    sklearn.exceptions.UndefinedMetricWarning
        When a metric is undefined for an output; its cell is set to NaN so
        the other metrics are still reported.

    Notes
    -----
    The table converts directly to plain Python containers, for example
    ``evaluate(y_true, y_pred).to_dict()`` gives
    ``{output: {metric: value}}``, which :func:`json.dumps` accepts.
    Undefined cells are ``nan`` there, which strict JSON does not allow;
    ``evaluate(...).to_json()`` writes them as ``null`` instead.

    Examples
    --------
    >>> table = evaluate([1.0, 3.0, 2.0, 5.0, 4.0], [1.5, 2.5, 2.0, 4.5, 4.0],
    ...                  metrics=["nse", "rmse"])
    >>> table.to_dict()
    {'output_0': {'nse': 0.925, 'rmse': 0.3872983346207417}}
    """
    obs, sim, _ = _check_pair(y_true, y_pred)
    # One name alone is one metric, not a sequence of letters.
    rows = (EVALUATE_METRICS if metrics is None
            else (metrics,) if isinstance(metrics, str) else tuple(metrics))
    unknown = [row for row in rows if row not in EVALUATE_METRICS]
    if unknown:
        raise ValueError(f"unknown metric names {unknown}; choose from {list(EVALUATE_METRICS)}")
    if index is not None:
        _time_coordinates(index, obs.shape[0])
    names = output_names(y_true, obs.shape[1])
    groups = list(dict.fromkeys(_group_of(row) for row in rows))
    table = pd.DataFrame(np.nan, index=pd.Index(rows, name="metric"), columns=names)
    for j, name in enumerate(names):
        for group in groups:
            try:
                computed = _EVALUATORS[group](obs[:, j], sim[:, j], index)
            except UndefinedMetricError as exc:
                warnings.warn(
                    f"{group} is undefined for output {name!r}: {exc}",
                    UndefinedMetricWarning,
                    stacklevel=2,
                )
                continue
            for row, value in computed.items():
                if row in table.index:
                    table.iloc[table.index.get_loc(row), j] = value
    return table


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------

#: Scorer for :func:`nse` (greater is better).
nse_scorer = make_scorer(nse)
#: Scorer for :func:`kge` (2009 version, greater is better).
kge_scorer = make_scorer(kge)
#: Scorer for :func:`kge_prime` (greater is better).
kge_prime_scorer = make_scorer(kge_prime)
#: Scorer for :func:`log_nse` (greater is better).
log_nse_scorer = make_scorer(log_nse)
#: Scorer returning minus :func:`rmse`.
neg_rmse_scorer = make_scorer(rmse, greater_is_better=False)
#: Scorer returning minus :func:`nmae`.
neg_nmae_scorer = make_scorer(nmae, greater_is_better=False)

#: Hydrological scorers by name, for ``scoring=`` arguments of scikit-learn.
SCORERS = {
    "nse": nse_scorer,
    "kge": kge_scorer,
    "kge_prime": kge_prime_scorer,
    "log_nse": log_nse_scorer,
    "neg_rmse": neg_rmse_scorer,
    "neg_nmae": neg_nmae_scorer,
}


def get_scorer(scoring):
    """Return a scorer by name, looking in :data:`SCORERS` first.

    Parameters
    ----------
    scoring : str or callable
        A name from :data:`SCORERS` (``"nse"``, ``"kge"``, ``"kge_prime"``,
        ``"log_nse"``, ``"neg_rmse"``, ``"neg_nmae"``), any name known to
        :func:`sklearn.metrics.get_scorer` (such as ``"r2"``), or a callable
        scorer, which is returned as scikit-learn does.

    Returns
    -------
    callable
        A scorer ``scorer(estimator, X, y)``; a fresh copy for registered
        names, so callers may modify it.

    Raises
    ------
    ValueError
        If the name is unknown to both registries.

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> X = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]]
    >>> y = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    >>> cross_val_score(LinearRegression(), X, y, cv=2, scoring=get_scorer("kge"))
    array([1., 1.])
    """
    if isinstance(scoring, str) and scoring in SCORERS:
        return copy.deepcopy(SCORERS[scoring])
    return _sklearn_get_scorer(scoring)
