"""Tests for sktlag.metrics."""

import json
import math
import warnings

import hydroeval as he
import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_score

from sktlag import metrics as M
from sktlag.datasets import load_lahn

OBS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
SHIFTED = OBS + 1.0  # bias only
DOUBLED = 2.0 * OBS  # scaled by a constant

# Metrics whose value depends on the joint distribution of (obs, sim) pairs
# only, not on their order in time.
ORDER_FREE = {
    "nse": M.nse,
    "log_nse": M.log_nse,
    "kge": M.kge,
    "kge_prime": M.kge_prime,
    "pearson_r": M.pearson_r,
    "nmae": M.nmae,
    "mape": M.mape,
    "rmse": M.rmse,
    "fhv": M.fhv,
    "flv": M.flv,
    "fms": M.fms,
}
ALL_METRICS = {**ORDER_FREE, "peak_timing": M.peak_timing}


def _hydroeval(fn, sim, obs, **kwargs):
    return np.ravel(he.evaluator(fn, np.asarray(sim), np.asarray(obs), **kwargs))


def _flows(rng, n, k=None):
    shape = (n,) if k is None else (n, k)
    return rng.gamma(shape=2.0, scale=20.0, size=shape) + 0.5


# ---------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------


def test_nse_hand_computed():
    # SSE = 5, SST = 10
    assert M.nse(OBS, SHIFTED) == pytest.approx(0.5)
    # SSE = 1 + 4 + 9 + 16 + 25 = 55
    assert M.nse(OBS, DOUBLED) == pytest.approx(1 - 55 / 10)


def test_nse_identities():
    assert M.nse(OBS, OBS) == 1.0
    assert M.nse(OBS, np.full_like(OBS, OBS.mean())) == pytest.approx(0.0, abs=1e-15)


def test_log_nse_hand_computed():
    obs = np.exp([0.0, 1.0, 2.0])
    sim = np.exp([0.0, 1.0, 3.0])
    # log residuals (0, 0, 1), log deviations (-1, 0, 1)
    assert M.log_nse(obs, sim, epsilon=0.0) == pytest.approx(0.5)


def test_log_nse_default_epsilon_is_one_percent_of_mean_flow():
    obs = np.array([0.0, 2.0, 4.0, 10.0])
    sim = np.array([1.0, 2.0, 3.0, 9.0])
    eps = 0.01 * obs.mean()
    expected = M.nse(np.log(obs + eps), np.log(sim + eps))
    assert M.log_nse(obs, sim) == pytest.approx(expected)


def test_log_nse_sets_negative_simulations_to_zero():
    obs = np.array([1.0, 2.0, 4.0, 8.0])
    assert M.log_nse(obs, [-3.0, 2.0, 4.0, 8.0]) == M.log_nse(obs, [0.0, 2.0, 4.0, 8.0])


def test_log_nse_rejects_log_of_zero_and_bad_epsilon():
    with pytest.raises(M.UndefinedMetricError, match="epsilon"):
        M.log_nse([0.0, 1.0, 2.0], [1.0, 1.0, 2.0], epsilon=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        M.log_nse([1.0, 2.0], [1.0, 2.0], epsilon=-1.0)


def test_kge_hand_computed_bias():
    # r = 1, alpha = 1, beta = 4 / 3
    parts = M.kge(OBS, SHIFTED, return_components=True)
    assert set(parts) == {"kge", "r", "alpha", "beta"}
    assert parts["r"] == pytest.approx(1.0)
    assert parts["alpha"] == pytest.approx(1.0)
    assert parts["beta"] == pytest.approx(4 / 3)
    assert parts["kge"] == pytest.approx(2 / 3)
    assert M.kge(OBS, SHIFTED) == pytest.approx(2 / 3)


def test_kge_hand_computed_scaled():
    # r = 1, alpha = 2, beta = 2
    assert M.kge(OBS, DOUBLED) == pytest.approx(1 - math.sqrt(2))


def test_kge_prime_hand_computed_bias():
    # gamma = (sigma / 4) / (sigma / 3) = 3 / 4, beta = 4 / 3 -> 1 - sqrt(1/16 + 1/9)
    parts = M.kge_prime(OBS, SHIFTED, return_components=True)
    assert set(parts) == {"kge", "r", "gamma", "beta"}
    assert parts["gamma"] == pytest.approx(0.75)
    assert parts["beta"] == pytest.approx(4 / 3)
    assert parts["kge"] == pytest.approx(7 / 12)
    assert M.kge(OBS, SHIFTED, version="2012") == pytest.approx(7 / 12)


def test_kge_prime_of_scaled_prediction():
    # a constant factor changes neither correlation nor coefficient of variation
    parts = M.kge_prime(OBS, 3.0 * OBS, return_components=True)
    assert parts["r"] == pytest.approx(1.0)
    assert parts["gamma"] == pytest.approx(1.0)
    assert parts["beta"] == pytest.approx(3.0)
    assert parts["kge"] == pytest.approx(-1.0)


def test_kge_perfect_prediction():
    assert M.kge(OBS, OBS) == pytest.approx(1.0)
    assert M.kge_prime(OBS, OBS) == pytest.approx(1.0)


def test_kge_of_mean_predictor_is_one_minus_sqrt_two():
    parts = M.kge(OBS, np.full_like(OBS, OBS.mean()), return_components=True)
    assert parts["r"] == 0.0
    assert parts["alpha"] == 0.0
    assert parts["kge"] == pytest.approx(1 - math.sqrt(2))


def test_kge_rejects_unknown_version():
    with pytest.raises(ValueError, match="version"):
        M.kge(OBS, OBS, version="2021")


def test_kge_accepts_integer_version():
    assert M.kge(OBS, SHIFTED, version=2012) == pytest.approx(7 / 12)


def test_kge_zero_means():
    with pytest.raises(M.UndefinedMetricError, match="mean of y_true is zero"):
        M.kge([-1.0, 1.0], [0.0, 1.0])
    with pytest.raises(M.UndefinedMetricError, match="mean of y_pred is zero"):
        M.kge_prime([1.0, 2.0], [-1.0, 1.0])


def test_pearson_r_hand_computed():
    # deviations (-1, 0, 1) and (-1, 1, 0): 1 / sqrt(2 * 2)
    assert M.pearson_r([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert M.pearson_r(OBS, -OBS) == pytest.approx(-1.0)
    assert M.pearson_r(OBS, [7.0] * 5) == 0.0


def test_rmse_hand_computed():
    assert M.rmse(OBS, SHIFTED) == pytest.approx(1.0)
    assert M.rmse([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0]) == pytest.approx(1.0)
    assert M.rmse(OBS, OBS) == 0.0


def test_nmae_hand_computed():
    # mean absolute error 1, mean observed flow 3
    assert M.nmae(OBS, SHIFTED) == pytest.approx(1 / 3)
    assert M.nmae([0.0, 4.0], [1.0, 4.0]) == pytest.approx(0.25)
    with pytest.raises(M.UndefinedMetricError, match="NMAE"):
        M.nmae([-1.0, 1.0], [0.0, 1.0])


def test_mape_hand_computed():
    # 100 * mean(1/1, 1/2, 1/3, 1/4, 1/5) = 100 * 137 / 300
    assert M.mape(OBS, SHIFTED) == pytest.approx(100 * 137 / 300)


def test_mape_skips_zero_observations():
    # rows with y_true == 0 are left out: 100 * (1 + 0 + 0.25) / 3
    assert M.mape([0.0, 1.0, 2.0, 4.0], [5.0, 2.0, 2.0, 3.0]) == pytest.approx(125 / 3)


def test_mape_all_zero_observations_raise():
    with pytest.raises(ValueError, match="all values of y_true are zero"):
        M.mape([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])


def test_fhv_hand_computed():
    obs = np.arange(1.0, 11.0)
    sim = np.array([1, 2, 3, 4, 5, 6, 7, 8, 11, 12], dtype=float)
    # the two highest flows: (11 + 12) against (9 + 10)
    assert M.fhv(obs, sim, h=0.2) == pytest.approx(100 * 4 / 19)
    # order in time does not matter, only the flow duration curve
    assert M.fhv(obs, sim[::-1], h=0.2) == pytest.approx(100 * 4 / 19)
    # default h = 0.02 keeps at least the single largest flow: 12 against 10
    assert M.fhv(obs, sim) == pytest.approx(20.0)
    assert M.fhv(obs, obs) == 0.0


def test_flv_hand_computed():
    log_obs = np.array([0.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    log_sim = np.array([0.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    # three lowest flows; areas above the minimum: 0+1+2 = 3 and 0+2+4 = 6
    assert M.flv(np.exp(log_obs), np.exp(log_sim), l=0.3) == pytest.approx(-100.0)
    assert M.flv(np.exp(log_obs), np.exp(log_obs)) == 0.0


def test_flv_floors_zero_flows():
    obs = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    sim = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    floor = np.log(M.LOG_FLOOR)
    # round(0.3 * 7) = 2 lowest flows
    area_obs = 0.0 - floor
    area_sim = 0.0 - np.log(0.5)
    expected = -100 * (area_sim - area_obs) / area_obs
    assert M.flv(obs, sim) == pytest.approx(expected)
    assert np.isfinite(M.flv(obs, np.where(sim > 1, sim, -2.0)))


@pytest.mark.parametrize("metric", [M.flv, M.fms])
def test_flv_and_fms_of_positive_flows_do_not_depend_on_their_unit(metric):
    # Differences of logarithms: flows in km3/s or of a tiny catchment, all below the
    # floor, score as the same flows in l/s.
    obs = np.arange(1.0, 11.0)
    sim = np.array([1.5, 2, 2.5, 4, 5, 6, 7, 8, 9, 12])
    for scale in (4e-7, 1e-7, 1e3):
        assert metric(obs * scale, sim * scale) == pytest.approx(metric(obs, sim))


def test_zero_flows_beside_flows_below_the_floor_keep_their_order():
    # Flows of a tiny catchment below LOG_FLOOR beside zeros: the zeros take the
    # smallest positive observed flow, so the observed logarithms keep their order.
    obs = np.array([0.0, 1e-8, 2e-8, 3e-8, 4e-8, 1, 2, 3, 4, 5])
    sim = obs + 1e-9
    # The floor is the smallest positive observed flow, 1e-8; sim's 1e-9 is below it.
    low_obs = np.log([1e-8, 1e-8, 2e-8])
    low_sim = np.log([1e-8, 1.1e-8, 2.1e-8])
    area_obs, area_sim = (np.sum(low - low[0]) for low in (low_obs, low_sim))
    assert M.flv(obs, sim) == pytest.approx(-100 * (area_sim - area_obs) / area_obs)


@pytest.mark.parametrize(("metric", "zeros"), [(M.flv, 20), (M.fms, 60)])
def test_the_observed_logarithms_do_not_depend_on_the_simulation(metric, zeros):
    # Two simulations that differ only below every observed flow and LOG_FLOOR score
    # alike: the observed zeros (in the segment the metric reads) are floored from the
    # observations alone.
    obs = np.r_[np.zeros(zeros), np.linspace(0.1, 5, 100 - zeros)]
    sim = obs + 0.01
    sim[0] = 1e-7
    other = sim.copy()
    other[0] = 1e-12
    assert metric(obs, other) == metric(obs, sim)


def test_flv_flat_low_flows_and_short_series():
    with pytest.raises(M.UndefinedMetricError, match="FLV"):
        M.flv([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], np.arange(10.0))
    with pytest.raises(M.UndefinedMetricError, match="at least 2 flows"):
        M.flv([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_fms_hand_computed():
    log_obs = np.arange(10.0, 0.0, -1.0)  # 10, 9, ..., 1
    obs = np.exp(log_obs)
    # ranks 2 and 7 of the duration curve: ln 9 - ln 4 ... in log space 9 - 4 = 5
    # sim = obs ** 1.2 has slope 1.2 * 5 = 6 -> 100 * (6 - 5) / 5
    assert M.fms(obs, obs**1.2) == pytest.approx(20.0)
    assert M.fms(obs, obs) == 0.0
    assert M.fms(obs, 3.0 * obs) == pytest.approx(0.0, abs=1e-12)


def test_fhv_flv_fms_reject_bad_fractions():
    with pytest.raises(ValueError, match="h must lie"):
        M.fhv(OBS, OBS, h=0.0)
    with pytest.raises(ValueError, match="l must lie"):
        M.flv(OBS, OBS, l=1.5)
    with pytest.raises(ValueError, match="lower must be smaller"):
        M.fms(OBS, OBS, lower=0.7, upper=0.2)


PEAK_OBS = np.array([0, 0, 0, 1, 8, 1, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0], dtype=float)


def test_peak_timing_hand_computed():
    sim = np.zeros_like(PEAK_OBS)
    sim[6] = 7.0  # first observed peak at 4: two steps late
    sim[12] = 5.0  # second observed peak at 12: on time
    assert M.peak_timing(PEAK_OBS, sim) == pytest.approx(1.0)
    assert M.peak_timing(PEAK_OBS, PEAK_OBS) == 0.0


def test_peak_timing_searches_only_inside_window():
    sim = np.zeros_like(PEAK_OBS)
    sim[12] = 20.0  # second observed peak: on time
    sim[8] = 9.0  # four steps after the first peak: outside window=3
    sim[5] = 2.0  # the best candidate inside the window, one step late
    assert M.peak_timing(PEAK_OBS, sim, window=3) == pytest.approx(0.5)
    # with a wider window the large value at step 8 is picked instead (lag 4)
    assert M.peak_timing(PEAK_OBS, sim, window=4) == pytest.approx(2.0)


def test_peak_timing_units_follow_index():
    sim = np.roll(PEAK_OBS, 2)
    daily = pd.date_range("2000-01-01", periods=PEAK_OBS.size, freq="D")
    hourly = pd.date_range("2000-01-01", periods=PEAK_OBS.size, freq="h")
    assert M.peak_timing(PEAK_OBS, sim) == pytest.approx(2.0)
    assert M.peak_timing(PEAK_OBS, sim, index=daily) == pytest.approx(2.0)
    assert M.peak_timing(PEAK_OBS, sim, index=hourly) == pytest.approx(2 / 24)
    assert M.peak_timing(PEAK_OBS, sim, index=np.arange(16) * 0.5) == pytest.approx(1.0)


def test_peak_timing_errors():
    with pytest.raises(M.UndefinedMetricError, match="no peaks"):
        M.peak_timing(OBS, OBS)
    with pytest.raises(ValueError, match="window"):
        M.peak_timing(PEAK_OBS, PEAK_OBS, window=-1)
    with pytest.raises(ValueError, match="index"):
        M.peak_timing(PEAK_OBS, PEAK_OBS, index=np.arange(3))


def test_peak_timing_prominence_filters_small_peaks():
    obs = np.array([0, 3, 0, 0, 0, 10, 0, 0, 0], dtype=float)
    sim = np.array([0, 0, 3, 0, 0, 10, 0, 0, 0], dtype=float)
    assert M.peak_timing(obs, sim, prominence=5.0) == 0.0
    assert M.peak_timing(obs, sim, prominence=1.0) == pytest.approx(0.5)


# ---------------------------------------------------------------------------
# Agreement with other implementations
# ---------------------------------------------------------------------------


def test_nse_equals_r2_score_1d():
    rng = np.random.default_rng(0)
    obs = _flows(rng, 300)
    sim = obs * rng.lognormal(0.0, 0.3, size=obs.shape)
    assert M.nse(obs, sim) == pytest.approx(r2_score(obs, sim), rel=1e-12)


def test_nse_equals_r2_score_multioutput():
    rng = np.random.default_rng(1)
    obs = _flows(rng, 300, 3)
    sim = obs + rng.normal(0.0, 5.0, size=obs.shape)
    raw = M.nse(obs, sim, multioutput="raw_values")
    np.testing.assert_allclose(raw, r2_score(obs, sim, multioutput="raw_values"), rtol=1e-12)
    assert M.nse(obs, sim) == pytest.approx(r2_score(obs, sim), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_hydroeval_on_random_series(seed):
    rng = np.random.default_rng(seed)
    obs = _flows(rng, 400)
    sim = 0.8 * obs * rng.lognormal(0.0, 0.4, size=obs.shape) + 3.0
    _assert_matches_hydroeval(obs, sim)


def test_matches_hydroeval_on_lahn_series():
    # The embedded copy of the Lahn table: present wherever the package is.
    obs = load_lahn(as_frame=True).frame["q_kalkofen"].iloc[:2000]
    # a smoothed and one-day-late copy, as a plausible imperfect simulation
    sim = obs.rolling(5, center=True, min_periods=1).mean().shift(1).bfill()
    _assert_matches_hydroeval(obs.to_numpy(), sim.to_numpy())
    table = M.evaluate(obs, sim)
    assert list(table.columns) == ["q_kalkofen"]
    assert table["q_kalkofen"].notna().all()
    assert 0.0 < table.loc["peak_timing", "q_kalkofen"] <= 3.0


def _assert_matches_hydroeval(obs, sim):
    tol = {"rel": 0, "abs": 1e-10}
    assert M.nse(obs, sim) == pytest.approx(_hydroeval(he.nse, sim, obs)[0], **tol)
    assert M.log_nse(obs, sim) == pytest.approx(
        _hydroeval(he.nse, sim, obs, transform="log")[0], **tol
    )
    ref = _hydroeval(he.kge, sim, obs)  # kge, r, alpha, beta
    ours = M.kge(obs, sim, return_components=True)
    got = [ours["kge"], ours["r"], ours["alpha"], ours["beta"]]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    ref = _hydroeval(he.kgeprime, sim, obs)  # kge', r, gamma, beta
    ours = M.kge_prime(obs, sim, return_components=True)
    got = [ours["kge"], ours["r"], ours["gamma"], ours["beta"]]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_multioutput_matches_hydroeval_per_column():
    rng = np.random.default_rng(3)
    obs = _flows(rng, 200, 3)
    sim = obs * rng.lognormal(0.0, 0.2, size=obs.shape)
    raw = M.kge(obs, sim, multioutput="raw_values")
    ref = [_hydroeval(he.kge, sim[:, j], obs[:, j])[0] for j in range(3)]
    np.testing.assert_allclose(raw, ref, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------
# Multi-output handling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_METRICS))
def test_raw_values_match_column_by_column(name):
    func = ALL_METRICS[name]
    rng = np.random.default_rng(4)
    obs = np.column_stack([np.roll(PEAK_OBS, s) + 1.0 + rng.uniform(0, 0.1, 16) for s in (0, 3)])
    sim = np.column_stack([np.roll(obs[:, 0], 1), obs[:, 1] * 1.3])
    raw = func(obs, sim, multioutput="raw_values")
    assert isinstance(raw, np.ndarray) and raw.shape == (2,)
    np.testing.assert_allclose(raw, [func(obs[:, j], sim[:, j]) for j in range(2)])
    assert func(obs, sim) == pytest.approx(raw.mean())
    assert func(obs, sim, multioutput=[3, 1]) == pytest.approx(0.75 * raw[0] + 0.25 * raw[1])


def test_one_dimensional_input_gives_float_and_column_vector_gives_array():
    assert isinstance(M.nse(OBS, SHIFTED), float)
    assert isinstance(M.nse(OBS, SHIFTED, multioutput="raw_values"), float)
    column = M.nse(OBS[:, None], SHIFTED[:, None], multioutput="raw_values")
    assert column.shape == (1,)


@pytest.mark.parametrize("metric", [M.nse, M.kge, M.rmse])
def test_a_bad_multioutput_is_refused_for_a_single_series_too(metric):
    with pytest.raises(ValueError, match="multioutput must be"):
        metric(OBS, SHIFTED, multioutput="bogus")
    with pytest.raises(ValueError, match="multioutput weights must have shape"):
        metric(OBS, SHIFTED, multioutput=[1.0, 2.0])


def test_kge_components_are_arrays_for_raw_values():
    obs = np.column_stack([OBS, OBS])
    sim = np.column_stack([SHIFTED, DOUBLED])
    parts = M.kge(obs, sim, return_components=True, multioutput="raw_values")
    np.testing.assert_allclose(parts["beta"], [4 / 3, 2.0])
    np.testing.assert_allclose(parts["kge"], [2 / 3, 1 - math.sqrt(2)])


def test_invalid_multioutput():
    obs = np.column_stack([OBS, OBS])
    with pytest.raises(ValueError, match="multioutput"):
        M.nse(obs, obs, multioutput="variance_weighted")
    with pytest.raises(ValueError, match="weights"):
        M.nse(obs, obs, multioutput=[1, 2, 3])


def test_undefined_column_is_named():
    obs = np.column_stack([OBS, np.ones(5)])
    with pytest.raises(M.UndefinedMetricError, match="output column 1"):
        M.nse(obs, obs)


def test_pandas_inputs_are_accepted():
    obs = pd.Series(OBS)
    assert M.nse(obs, pd.Series(SHIFTED)) == pytest.approx(0.5)
    frame = pd.DataFrame({"a": OBS, "b": OBS})
    np.testing.assert_allclose(M.rmse(frame, frame + 1, multioutput="raw_values"), [1.0, 1.0])


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"y_true with shape \(5,\) and y_pred with shape \(4,\)"):
        M.nse(OBS, OBS[:4])
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(5, 3\)"):
        M.rmse(np.ones((5, 2)), np.ones((5, 3)))


def test_column_vector_and_flat_vector_are_compatible():
    assert M.nse(OBS, SHIFTED[:, None]) == pytest.approx(0.5)
    assert M.nse(OBS[:, None], SHIFTED) == pytest.approx(0.5)


def test_needs_two_rows_and_at_most_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 rows"):
        M.rmse([1.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        M.rmse(np.ones((3, 2, 2)), np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="numbers"):
        M.rmse(["a", "b"], [1.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("argument", ["y_true", "y_pred"])
def test_non_finite_values_are_rejected(bad, argument):
    y = OBS.copy()
    y[3] = bad
    args = (y, OBS) if argument == "y_true" else (OBS, y)
    with pytest.raises(ValueError, match=f"{argument} contains NaN or infinite.*row index: 3"):
        M.kge(*args)


@pytest.mark.parametrize("func", [M.nse, M.kge, M.kge_prime, M.log_nse, M.pearson_r])
def test_constant_observations_raise(func):
    with pytest.raises(ValueError, match="y_true is constant.*variance"):
        func([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])


def test_nearly_constant_float_series_counts_as_constant():
    # the mean of ten copies of 0.1 is not exactly 0.1
    with pytest.raises(M.UndefinedMetricError, match="constant"):
        M.nse([0.1] * 10, [0.2] * 10)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

FLOWS = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_subnormal=False)


@st.composite
def flow_pairs(draw, min_rows=3, max_rows=40):
    n = draw(st.integers(min_rows, max_rows))
    obs = draw(hnp.arrays(float, n, elements=FLOWS))
    sim = draw(hnp.arrays(float, n, elements=FLOWS))
    assume(_well_spread(obs) and _well_spread(sim))
    return obs, sim


def _well_spread(x):
    """Exclude nearly constant series, whose metrics are dominated by rounding."""
    return bool(np.all(np.ptp(x, axis=0) > 1e-3 * np.max(x, axis=0)))


def _outcome(func, obs, sim):
    try:
        return func(obs, sim)
    except M.UndefinedMetricError:
        return "undefined"


@settings(max_examples=60, deadline=None)
@given(flow_pairs())
def test_efficiencies_are_at_most_one(pair):
    obs, sim = pair
    assert M.nse(obs, sim) <= 1.0
    assert M.kge(obs, sim) <= 1.0
    assert M.kge_prime(obs, sim) <= 1.0
    assert M.log_nse(obs, sim) <= 1.0
    assert -1.0 <= M.pearson_r(obs, sim) <= 1.0


@settings(max_examples=60, deadline=None)
@given(flow_pairs())
def test_perfect_prediction(pair):
    obs, _ = pair
    assert M.nse(obs, obs) == 1.0
    assert M.kge(obs, obs) == pytest.approx(1.0, abs=1e-12)
    assert M.rmse(obs, obs) == 0.0
    assert M.fhv(obs, obs) == 0.0


@settings(max_examples=40, deadline=None)
@given(flow_pairs(min_rows=7), st.data())
def test_order_free_metrics_are_permutation_invariant(pair, data):
    obs, sim = pair
    order = np.array(data.draw(st.permutations(range(obs.size))))
    for name, func in ORDER_FREE.items():
        before = _outcome(func, obs, sim)
        after = _outcome(func, obs[order], sim[order])
        if before == "undefined" or after == "undefined":
            assert before == after, name
        else:
            assert after == pytest.approx(before, rel=1e-7, abs=1e-9), name


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda k: hnp.arrays(float, st.tuples(st.integers(7, 30), st.just(k)), elements=FLOWS)
    ),
    st.floats(0.5, 2.0),
)
def test_raw_values_equal_per_column_values(obs, factor):
    assume(_well_spread(obs))
    sim = factor * obs[::-1]
    for name, func in ORDER_FREE.items():
        raw = _outcome(lambda a, b, f=func: f(a, b, multioutput="raw_values"), obs, sim)
        columns = [_outcome(func, obs[:, j], sim[:, j]) for j in range(obs.shape[1])]
        if isinstance(raw, str):
            assert "undefined" in columns, name
        else:
            np.testing.assert_allclose(raw, columns, rtol=1e-8, atol=1e-10, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30))
def test_mismatched_lengths_raise(n_true, n_pred):
    assume(n_true != n_pred)
    for func in ALL_METRICS.values():
        with pytest.raises(ValueError, match="same shape"):
            func(np.arange(1.0, n_true + 1), np.arange(1.0, n_pred + 1))


@settings(max_examples=40, deadline=None)
@given(
    flow_pairs(min_rows=2),
    st.data(),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.sampled_from(["y_true", "y_pred"]),
)
def test_non_finite_values_raise_with_row(pair, data, bad, argument):
    obs, sim = pair
    row = data.draw(st.integers(0, obs.size - 1))
    target = obs if argument == "y_true" else sim
    target[row] = bad
    for func in ALL_METRICS.values():
        with pytest.raises(ValueError, match=f"{argument} contains .*row index: {row}$"):
            func(obs, sim)


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------


def _two_gauges():
    rng = np.random.default_rng(5)
    base = np.tile(PEAK_OBS, 4) + 1.0
    obs = pd.DataFrame({"upstream": base, "downstream": 2.0 * np.roll(base, 1)})
    obs += rng.uniform(0.0, 0.2, size=obs.shape)
    sim = 1.1 * obs.shift(1).bfill()
    return obs, sim


def test_evaluate_table_layout_and_values():
    obs, sim = _two_gauges()
    table = M.evaluate(obs, sim)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == list(M.EVALUATE_METRICS)
    assert list(table.columns) == ["upstream", "downstream"]
    assert table.notna().all().all()
    for row, func in ALL_METRICS.items():
        expected = func(obs, sim, multioutput="raw_values")
        np.testing.assert_allclose(table.loc[row].to_numpy(), expected, err_msg=row)
    kge_parts = M.kge(obs, sim, return_components=True, multioutput="raw_values")
    np.testing.assert_allclose(table.loc["kge_alpha"].to_numpy(), kge_parts["alpha"])
    prime = M.kge_prime(obs, sim, return_components=True, multioutput="raw_values")
    np.testing.assert_allclose(table.loc["kge_prime_gamma"].to_numpy(), prime["gamma"])
    np.testing.assert_allclose(table.loc["kge_prime_beta"].to_numpy(), prime["beta"])


def test_evaluate_default_column_names_and_subset():
    obs, sim = _two_gauges()
    table = M.evaluate(obs.to_numpy(), sim.to_numpy(), metrics=["rmse", "kge_beta", "nse"])
    assert list(table.columns) == ["output_0", "output_1"]
    assert list(table.index) == ["rmse", "kge_beta", "nse"]
    single = M.evaluate(OBS, SHIFTED, metrics=["nse"])
    assert single.loc["nse", "output_0"] == pytest.approx(0.5)


def test_evaluate_converts_to_json():
    obs, sim = _two_gauges()
    as_dict = M.evaluate(obs, sim).to_dict()
    assert set(as_dict) == {"upstream", "downstream"}
    assert set(as_dict["upstream"]) == set(M.EVALUATE_METRICS)
    restored = json.loads(json.dumps(as_dict))
    assert restored["upstream"]["nse"] == pytest.approx(M.nse(obs["upstream"], sim["upstream"]))


def test_evaluate_peak_timing_uses_index():
    obs, sim = _two_gauges()
    hourly = pd.date_range("2020-01-01", periods=len(obs), freq="h")
    steps = M.evaluate(obs, sim, metrics=["peak_timing"])
    days = M.evaluate(obs, sim, metrics=["peak_timing"], index=hourly)
    np.testing.assert_allclose(days.to_numpy(), steps.to_numpy() / 24)


def test_evaluate_marks_undefined_cells_with_nan_and_warns():
    obs = np.column_stack([OBS, [0.0, 0.0, 0.0, 0.0, 0.0]])
    sim = np.column_stack([SHIFTED, SHIFTED])
    with pytest.warns(UndefinedMetricWarning) as record:
        table = M.evaluate(obs, sim, metrics=["rmse", "nse", "peak_timing"])
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 3
    assert messages[0].startswith("nse is undefined for output 'output_1'")
    assert all(m.startswith("peak_timing is undefined") for m in messages[1:])
    assert table.loc["rmse"].notna().all()
    assert table.loc["nse", "output_0"] == pytest.approx(0.5)
    assert np.isnan(table.loc["nse", "output_1"])
    assert table.loc["peak_timing"].isna().all()  # monotonic series have no peaks
    assert "null" in table.to_json()


def test_evaluate_leaves_the_duration_curve_cells_of_a_few_days_empty():
    # Two days: too few for a low-flow segment of two flows and for two separate
    # exceedance probabilities; every other metric still has a value.
    obs, sim = [1.0, 3.0], [1.5, 2.5]
    with pytest.warns(UndefinedMetricWarning, match="is undefined") as record:
        table = M.evaluate(obs, sim)
    assert {str(w.message).split()[0] for w in record} >= {"flv", "fms"}
    assert np.isnan(table.loc["flv", "output_0"]) and np.isnan(table.loc["fms", "output_0"])
    assert table.loc["nse", "output_0"] == pytest.approx(M.nse(obs, sim))
    with pytest.raises(M.UndefinedMetricError, match="FMS"):
        M.fms(obs, sim)


def test_evaluate_rejects_invalid_input():
    with pytest.raises(ValueError, match="unknown metric"):
        M.evaluate(OBS, OBS, metrics=["nse", "accuracy"])
    with pytest.raises(ValueError, match="same shape"):
        M.evaluate(OBS, OBS[:3])
    with pytest.raises(ValueError, match="row index: 0"):
        M.evaluate([np.nan, 1.0], [1.0, 2.0])


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------


def _regression_data(k=None):
    rng = np.random.default_rng(6)
    X = rng.uniform(0.0, 1.0, size=(60, 3))
    coef = np.array([3.0, 1.0, 2.0]) if k is None else rng.uniform(1.0, 3.0, size=(3, k))
    y = 5.0 + X @ coef + rng.normal(0.0, 0.05, size=(60,) if k is None else (60, k))
    return X, y


@pytest.mark.parametrize("name", sorted(M.SCORERS))
def test_scorers_work_in_cross_val_score(name):
    X, y = _regression_data()
    scores = cross_val_score(
        LinearRegression(),
        X,
        y,
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=M.get_scorer(name),
    )
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()
    if name.startswith("neg_"):
        assert (scores <= 0).all() and (scores > -0.2).all()
    else:
        assert (scores > 0.9).all() and (scores <= 1).all()


def test_scorer_matches_metric_on_multioutput():
    X, y = _regression_data(k=2)
    model = LinearRegression().fit(X, y)
    assert M.SCORERS["kge"](model, X, y) == pytest.approx(M.kge(y, model.predict(X)))
    assert M.SCORERS["neg_rmse"](model, X, y) == pytest.approx(-M.rmse(y, model.predict(X)))
    scores = cross_val_score(LinearRegression(), X, y, cv=3, scoring=M.SCORERS["nse"])
    assert np.isfinite(scores).all()


def test_get_scorer_falls_back_to_sklearn():
    X, y = _regression_data()
    model = LinearRegression().fit(X, y)
    assert M.get_scorer("r2")(model, X, y) == pytest.approx(M.nse_scorer(model, X, y))
    assert M.get_scorer("neg_mean_absolute_error")(model, X, y) <= 0
    with pytest.raises(ValueError):
        M.get_scorer("no_such_metric")


def test_get_scorer_returns_a_copy():
    assert M.get_scorer("kge") is not M.SCORERS["kge"]


def test_no_warnings_on_ordinary_use():
    rng = np.random.default_rng(7)
    obs = _flows(rng, 100, 2)
    sim = obs * rng.lognormal(0.0, 0.2, size=obs.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.evaluate(obs, sim)


def test_near_constant_observations_are_as_undefined_as_constant_ones():
    # Rounding leaves 0.1 + 0.2 and 0.3 a spread of 5.6e-17: no real variation.
    obs = np.full(5, 0.1 + 0.2)
    obs[-1] = 0.3
    assert np.ptp(obs) > 0
    for metric in (M.nse, M.kge, M.pearson_r):
        with pytest.raises(M.UndefinedMetricError, match="constant"):
            metric(obs, np.array([0.31, 0.32, 0.30, 0.33, 0.31]))
    # A simulation constant up to rounding has no association with the observations.
    sim = np.full(5, 0.1 + 0.2)
    sim[-1] = 0.3
    assert M.pearson_r([1.0, 2.0, 3.0, 4.0, 5.0], sim) == 0.0


def test_peak_timing_never_matches_a_peak_across_a_gap_in_the_record():
    obs = np.array([0, 0, 0, 1, 9, 1, 0, 0, 0, 0.0])
    sim = np.array([0, 0, 0, 1, 2, 1, 8, 0, 0, 0.0])
    # Two stretches of five days, two months apart (the days between not observed).
    days = pd.DatetimeIndex([*pd.date_range("2000-01-01", periods=5),
                             *pd.date_range("2000-03-01", periods=5)])
    # Without the gap the simulated peak is 2 days late; across it, the 8 on 1 March
    # is 56 days away and outside the 3-day window: the peak is matched on its day.
    assert M.peak_timing(obs, sim, index=pd.date_range("2000-01-01", periods=10)) == 2.0
    assert M.peak_timing(obs, sim, index=days) == 0.0
    with pytest.raises(M.UndefinedMetricError, match="must increase from row to row, and row 1"):
        M.peak_timing(obs, sim, index=days[::-1])
    # Steps that are regular though unequal are no gaps: quarters of 90 to 92 days, and
    # days of 23 to 25 hours across a change of daylight saving time.
    quarters = pd.date_range("2000-01-01", periods=10, freq="QS")
    assert M.peak_timing(obs, sim, index=quarters) == (quarters[6] - quarters[4]).days
    local = pd.date_range("2021-10-27", periods=10, freq="D", tz="Europe/Berlin")
    late = np.array([0, 0, 0, 1, 2, 1, 0, 8, 0, 0.0])  # three days late
    assert M.peak_timing(obs, late, index=local) == pytest.approx(3 + 1 / 24)
    for bad in (-1.0, "a", np.nan, True):
        with pytest.raises(ValueError, match="prominence must be a finite number >= 0"):
            M.peak_timing(obs, sim, prominence=bad)


def test_evaluate_of_stacked_series_leaves_only_peak_timing_undefined():
    # Two basins' test days one after the other: the dates go back at the seam.
    obs = np.array([0, 0, 1, 9, 1, 0, 0, 1, 8, 1, 0, 0.0])
    sim = obs + 0.5
    days = pd.date_range("2000-01-01", periods=6).append(pd.date_range("2000-01-01", periods=6))
    with pytest.warns(UndefinedMetricWarning, match="peak timing is undefined"):
        table = M.evaluate(obs, sim, index=days)
    assert np.isnan(table.loc["peak_timing"].item())
    assert table.loc["nse"].item() == pytest.approx(M.nse(obs, sim))


def test_evaluate_reads_one_metric_name_as_one_metric():
    table = M.evaluate([1.0, 3.0, 2.0, 5.0, 4.0], [1.5, 2.5, 2.0, 4.5, 4.0], metrics="nse")
    assert list(table.index) == ["nse"] and table.loc["nse"].item() == pytest.approx(0.925)


WEIGHTED = [M.nse, M.log_nse, M.kge, M.kge_prime, M.pearson_r, M.rmse, M.nmae, M.mape]


@pytest.mark.parametrize("metric", WEIGHTED)
@pytest.mark.parametrize("outputs", [1, 3])
def test_a_weight_of_k_counts_a_row_k_times_and_0_leaves_it_out(metric, outputs):
    rng = np.random.default_rng(outputs)
    obs = rng.gamma(2.0, 1.0, size=(40, outputs))
    sim = obs * rng.uniform(0.7, 1.3, size=obs.shape) + 0.1
    weights = rng.integers(0, 4, size=40)
    weights[:2] = (0, 3)
    repeated = metric(np.repeat(obs, weights, axis=0), np.repeat(sim, weights, axis=0),
                      multioutput="raw_values")
    weighted = metric(obs, sim, multioutput="raw_values", sample_weight=weights)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12)
    # Equal weights are no weights.
    np.testing.assert_allclose(metric(obs, sim, multioutput="raw_values",
                                      sample_weight=np.full(40, 0.5)),
                               metric(obs, sim, multioutput="raw_values"), rtol=1e-12)


def test_kge_components_are_weighted_alike():
    obs = np.array([1.0, 2.0, 4.0, 3.0, 5.0, 2.5])
    sim = np.array([1.5, 2.0, 3.0, 3.5, 6.0, 2.0])
    weights = np.array([1, 2, 0, 3, 1, 2])
    repeated = M.kge(np.repeat(obs, weights), np.repeat(sim, weights), return_components=True)
    weighted = M.kge(obs, sim, return_components=True, sample_weight=weights)
    assert weighted == pytest.approx(repeated, rel=1e-12)


def test_weighted_nse_is_scikit_learns_weighted_r2_and_its_scorer_passes_the_weights():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    obs, sim = rng.normal(size=50), rng.normal(size=50)
    weights = rng.uniform(0, 2, size=50)
    assert M.nse(obs, obs + 0.3 * sim, sample_weight=weights) == pytest.approx(
        r2_score(obs, obs + 0.3 * sim, sample_weight=weights), rel=1e-12)
    X = rng.normal(size=(50, 2))
    y = X @ [1.0, 2.0] + sim
    est = LinearRegression().fit(X, y)
    for name in ("nse", "kge", "kge_prime", "neg_rmse", "neg_nmae"):
        metric = {"neg_rmse": M.rmse, "neg_nmae": M.nmae}.get(name, getattr(M, name, None))
        sign = -1 if name.startswith("neg_") else 1
        expected = sign * metric(y, est.predict(X), sample_weight=weights)
        assert M.get_scorer(name)(est, X, y, sample_weight=weights) == pytest.approx(expected)


@pytest.mark.parametrize(("weights", "match"), [
    (np.ones(4), r"shape \(5,\), one weight per row; got \(4,\)"),
    (np.ones((5, 1)), r"shape \(5,\)"),
    ([1, 1, -1, 1, 1], r"finite and >= 0; row 2 holds -1.0"),
    ([1, np.nan, 1, 1, 1], "finite and >= 0; row 1"),
    (np.zeros(5), "0 on every row"),
    ([0, 0, 0, 1, 0], "at least 2 rows .* with a positive sample_weight are required; got 1"),
    (["a"] * 5, "sample_weight must contain numbers only"),
])
def test_bad_weights_are_refused_with_what_and_where(weights, match):
    with pytest.raises(ValueError, match=match):
        M.nse([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.5, 3.0, 4.0, 5.5], sample_weight=weights)


def test_observations_constant_on_the_weighted_rows_are_undefined():
    # The varying row has weight 0: what is scored does not vary.
    with pytest.raises(M.UndefinedMetricError, match="constant"):
        M.nse([2.0, 2.0, 2.0, 9.0], [1.0, 2.0, 3.0, 4.0], sample_weight=[1, 1, 1, 0])


def test_one_rule_tells_a_constant_series_in_the_metrics_and_in_score():
    # One value off by 1e-11 among a hundred: constant for score (its standard
    # deviation is 1e-12 of the mean), so for NSE and KGE too.
    from sktlag.metrics import _constant_columns

    obs = np.ones(100)
    obs[-1] = 1 + 1e-11
    assert _constant_columns(np.array([obs.std()]), np.array([obs.mean()])).all()
    sim = obs.copy()
    sim[0] = 1.5
    for metric in (M.nse, M.kge):
        with pytest.raises(M.UndefinedMetricError, match="constant"):
            metric(obs, sim)


def test_a_row_of_weight_0_is_no_row_whatever_it_holds():
    obs = np.array([-5.0, 1.0, 2.0, 4.0, 3.0, 5.0])  # a -5 that log-NSE cannot take
    sim = np.array([0.0, 1.2, 2.1, 3.5, 3.3, 4.6])
    weights = np.array([0, 1, 1, 1, 1, 1])
    for metric in WEIGHTED:
        assert metric(obs, sim, sample_weight=weights) == pytest.approx(
            metric(obs[1:], sim[1:]), rel=1e-12)
