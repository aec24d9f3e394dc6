"""The conformal arithmetic on scores: quantile ranks, the adaptive band, band scores."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from sktlag.conformal import (
    ADAPT_RATE,
    DELAYED_STEP,
    FLOW_FLOOR,
    MAX_LEAD,
    MIN_CLASS_WINDOWS,
    LeadCalibration,
    adaptive_levels,
    conformal_quantile,
    corrected_centre,
    error_coefficient,
    high_flow_classes,
    interval_bounds,
    interval_coverage,
    interval_scale,
    lead_bounds,
    lead_shift,
    lead_times,
    min_calibration_scores,
    predictive_draws,
    score_bands,
    score_quantiles,
)


def test_conformal_quantile_ranks():
    scores = np.arange(1.0, 20.0)  # 19 scores: (n + 1) * 0.95 = 19 -> the largest
    assert conformal_quantile(scores, 0.95) == 19.0
    assert conformal_quantile(scores, 0.05) == 1.0
    assert conformal_quantile(scores, 0.5) == 10.0
    # Ten scores: the upper rank rounds up ((n + 1) * 0.9 = 9.9 -> the 10th), the lower
    # one down ((n + 1) * 0.1 = 1.1 -> the 1st), so the interval never shrinks below the
    # nominal coverage.
    assert conformal_quantile(scores[:10], 0.9) == 10.0
    assert conformal_quantile(scores[:10], 0.1) == 1.0
    # Beyond the range of the scores, the extreme one.
    assert conformal_quantile(scores[:5], 0.99) == 5.0
    assert conformal_quantile(scores[:5], 0.01) == 1.0


@pytest.mark.parametrize("coverage", ["0.5", "0.8", "0.9", "0.95", "0.99"])
def test_score_quantile_ranks_are_exact_where_n_plus_one_times_the_level_is_whole(coverage):
    # (1 - 0.9) / 2 is 0.04999... in floating point: floor((n + 1) * level) fell one
    # rank short whenever the exact product is a whole number (n = 19, 39, ... at 0.9).
    exact = Fraction(coverage)
    for n in range(1, 400):
        scores = np.arange(1.0, n + 1.0)[:, None]  # the k-th smallest score is k
        low, high = score_quantiles(scores, float(exact))
        low_rank = math.floor((n + 1) * (1 - exact) / 2)
        high_rank = math.ceil((n + 1) * (1 + exact) / 2)
        assert (low[0], high[0]) == (min(max(low_rank, 1), n), min(high_rank, n)), n


def test_score_quantiles_leave_out_unobserved_scores_and_name_an_empty_output():
    scores = np.column_stack([np.arange(1.0, 20.0), np.r_[np.arange(1.0, 10.0), [np.nan] * 10]])
    low, high = score_quantiles(scores, 0.9)
    np.testing.assert_array_equal(low, [1.0, 1.0])
    np.testing.assert_array_equal(high, [19.0, 9.0])
    with pytest.raises(ValueError, match="output 1 has no observed"):
        score_quantiles(np.column_stack([scores[:, 0], np.full(19, np.nan)]), 0.9)
    for bad in (0, 1, True, "0.9"):
        with pytest.raises(ValueError, match="coverage must lie in"):
            score_quantiles(scores, bad)


def _adaptive_by_definition(calibration, new_scores, coverage, rate):
    """The adaptive band written out from its definition, one day at a time."""
    pool = [s for s in calibration if not math.isnan(s)]
    a, target, out = 1 - coverage, 1 - coverage, []
    for score in new_scores:
        level = min(max(a, 0.0), 1.0)
        lo = conformal_quantile(np.array(pool), min(level / 2, 0.5))
        hi = conformal_quantile(np.array(pool), max(1 - level / 2, 0.5))
        out.append((lo, hi, a))
        if not math.isnan(score):
            # At a >= 1 the interval is empty by definition: always a miss.
            miss = a >= 1 or score < lo or score > hi
            a = a + rate * (target - (1.0 if miss else 0.0))
            pool = pool[1:] + [score]  # the oldest score leaves, the new one joins
    return np.array(out)


def test_adaptive_band_follows_its_definition():
    rng = np.random.default_rng(3)
    calibration = rng.normal(size=(40, 2))
    calibration[5, 1] = np.nan
    new = rng.normal(scale=2.0, size=(120, 2))  # the errors grow: the band must widen
    new[[10, 11, 50], 0] = np.nan                 # days without observation
    low, high, miscoverage = adaptive_levels(calibration, new, 0.8, 0.05)
    for k in range(2):
        expected = _adaptive_by_definition(calibration[:, k], new[:, k], 0.8, 0.05)
        np.testing.assert_allclose(low[:, k], expected[:, 0])
        np.testing.assert_allclose(high[:, k], expected[:, 1])
        np.testing.assert_allclose(miscoverage[:, k], expected[:, 2])
    # The first day knows no new observation: the split-conformal band.
    np.testing.assert_allclose([low[0], high[0]], score_quantiles(calibration, 0.8))
    # An unobserved day moves nothing.
    assert miscoverage[11, 0] == miscoverage[12, 0]
    # The first misses drove the miscoverage down; the new, larger scores that replaced
    # the calibration scores widened the band.
    assert miscoverage[:, 0].min() < 0.2 and high[-1, 0] - low[-1, 0] > high[0, 0] - low[0, 0]


def test_adaptive_band_holds_its_coverage_where_the_errors_grow():
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(300, 1))
    new = rng.normal(scale=np.linspace(1.0, 4.0, 1500))[:, None]
    fixed_low, fixed_high = score_quantiles(calibration, 0.9)
    fixed = np.mean((new >= fixed_low) & (new <= fixed_high))
    rate = 0.02
    low, high, _ = adaptive_levels(calibration, new, 0.9, rate)
    adaptive = np.mean((new >= low) & (new <= high))
    # The long-run bound of adaptive conformal inference: (max(a, 1 - a) + rate) / (rate T).
    bound = (0.9 + rate) / (rate * len(new))
    assert abs(adaptive - 0.9) <= bound
    assert fixed < 0.9 - 0.1  # the band of the calibration period falls far short


def test_tied_scores_cannot_drive_the_adaptive_miscoverage_past_its_bound():
    # Every score equal (a record of identical errors): the band at a >= 1, drawn as the
    # median, still "covers" the tied score. By definition that interval is empty, so
    # the update counts a miss and a_t stays below 1 + rate * (1 - coverage), where the
    # guarantee of adaptive conformal inference needs it.
    rate, coverage = 0.05, 0.5
    _, _, miscoverage = adaptive_levels(np.zeros((20, 1)), np.zeros((200, 1)), coverage, rate)
    assert miscoverage.max() <= 1 + rate * (1 - coverage) + 1e-12
    low, high, expected = _adaptive_by_definition(np.zeros(20), np.zeros(200), coverage,
                                                  rate).T
    np.testing.assert_allclose(miscoverage[:, 0], expected)


def test_adaptive_band_rejects_a_bad_rate():
    # An infinite rate would turn the level into -inf + inf = NaN after a miss.
    for bad in (0, -0.1, True, np.inf, np.nan):
        with pytest.raises(ValueError, match="rate must be a positive number"):
            adaptive_levels(np.zeros((3, 1)), np.zeros((2, 1)), 0.9, bad)


def test_interval_coverage_counts_days_inside_and_high_flows():
    y = np.array([1.0, 2.0, np.nan, 4.0, 10.0, 12.0])
    lower = np.array([0.0, 2.5, 0.0, 4.0, 5.0, 13.0])
    upper = np.array([2.0, 3.0, 0.0, 5.0, 11.0, 14.0])
    scores = interval_coverage(y, lower, upper, high_flow=9.0)
    # Inside (bounds included): days 0, 3 and 4 of the five observed.
    assert scores["coverage"] == pytest.approx(3 / 5) and scores["n"] == 5
    assert scores["mean_width"] == pytest.approx(np.mean([2.0, 0.5, 1.0, 6.0, 1.0]))
    assert scores["relative_width"] == pytest.approx(scores["mean_width"] / np.std(y[~np.isnan(y)]))
    assert scores["high_flow_coverage"] == pytest.approx(1 / 2) and scores["n_high_flow"] == 2
    none = interval_coverage(y, lower, upper, high_flow=100.0)
    assert math.isnan(none["high_flow_coverage"]) and none["n_high_flow"] == 0
    assert "high_flow_coverage" not in interval_coverage(y, lower, upper)


def test_interval_scale_follows_its_definition():
    std = np.array([[0.0, 1.0], [0.5, 0.0], [2.0, 3.0]])
    mean = np.array([[0.0, 4.0], [-3.0, 2.0], [10.0, 8.0]])
    offset, level = np.array([2.0, 0.5]), np.array([5.0, 4.0])
    np.testing.assert_array_equal(interval_scale(std, offset), std + offset)
    flow = interval_scale(std, offset, mean, level)
    # A dry day (zero or negative predicted flow) keeps FLOW_FLOOR of the typical spread.
    assert flow[0, 0] == FLOW_FLOOR * 2.0
    assert flow[1, 0] == 0.5 + FLOW_FLOOR * 2.0
    # At the typical flow the added part is (1 + FLOW_FLOOR) times the typical spread,
    # and it grows in proportion to the flow.
    assert flow[0, 1] == pytest.approx(1.0 + 0.5 * (FLOW_FLOOR + 1.0))
    assert flow[2, 0] == pytest.approx(2.0 + 2.0 * (FLOW_FLOOR + 2.0))
    assert flow[1, 1] == pytest.approx(0.5 * (FLOW_FLOOR + 0.5))


def test_flow_scale_covers_high_flows_where_errors_grow_with_the_flow():
    # A perfect mean with errors in proportion to the flow (as discharge errors are):
    # the spread scale's band is equally wide on every day, too narrow on floods; the
    # flow scale's widens with the flow and covers the high flows too.
    rng = np.random.default_rng(0)
    flow = rng.gamma(0.7, 10.0, size=(4000, 1))
    y = flow * (1 + 0.3 * rng.standard_normal(flow.shape))
    # Members that agree: the scale is the typical spread (and the flow's part of it).
    std, offset = np.zeros_like(flow), np.array([0.5])
    level = flow[:2000].mean(axis=0)
    high = np.quantile(y[:2000], 0.9)
    coverage = {}
    for name, u in (("spread", interval_scale(std, offset)),
                    ("flow", interval_scale(std, offset, flow, level))):
        scores = (y - flow) / u
        low, up = score_quantiles(scores[:2000], 0.9)
        band = interval_coverage(y[2000:, 0], (flow + u * low)[2000:, 0],
                                 (flow + u * up)[2000:, 0], high)
        coverage[name] = band["coverage"], band["high_flow_coverage"]
    assert abs(coverage["flow"][0] - 0.9) < 0.02 and abs(coverage["spread"][0] - 0.9) < 0.02
    # Days picked for a high observation are also the days of large positive errors: even
    # the right scale covers fewer of them than nominal (here 86 %).
    assert coverage["flow"][1] >= 0.8 > 0.6 > coverage["spread"][1]


@pytest.mark.parametrize("coverage", ["0.5", "0.8", "0.85", "0.9", "0.95"])
def test_the_fewest_calibration_scores_are_where_the_ranks_fall_inside(coverage):
    # A band of n scores spans all of them, and covers less than nominal, where its
    # exact lower rank floor((n + 1) * (1 - c) / 2) is below 1.
    exact = Fraction(coverage)
    for n in range(1, 60):
        clipped = math.floor((n + 1) * (1 - exact) / 2) < 1
        assert (n < min_calibration_scores(float(exact))) == clipped, n


def test_the_fewest_calibration_scores_of_the_usual_coverages():
    assert [min_calibration_scores(c) for c in (0.5, 0.8, 0.9, 0.95, 0.99)] == [3, 9, 19, 39, 199]


def test_a_lowest_value_raises_bounds_and_draws_and_leaves_the_adaptation_alone():
    rng = np.random.default_rng(3)
    mean = np.column_stack([np.linspace(0.0, 4.0, 60), np.linspace(-3.0, 3.0, 60)])
    scale = np.ones_like(mean)
    calibration = rng.standard_normal((40, 2))
    observed = np.abs(mean + rng.standard_normal(mean.shape))
    observed[5, 0] = np.nan
    floor = np.array([0.0, -np.inf])  # the second output has no limit
    for given in (None, observed):
        lower, upper = interval_bounds(mean, scale, calibration, 0.9, given)
        raised = interval_bounds(mean, scale, calibration, 0.9, given, min_value=floor)
        assert (lower[:, 0] < 0).any()
        # Both bounds of the first output raised to 0, the second output untouched.
        np.testing.assert_array_equal(raised[0][:, 0], np.maximum(lower[:, 0], 0.0))
        np.testing.assert_array_equal(raised[1][:, 0], np.maximum(upper[:, 0], 0.0))
        np.testing.assert_array_equal(raised[0][:, 1], lower[:, 1])
        np.testing.assert_array_equal(raised[1][:, 1], upper[:, 1])
    draws = predictive_draws(mean, scale, calibration)
    raised_draws = predictive_draws(mean, scale, calibration, floor)
    np.testing.assert_array_equal(raised_draws[:, 0], np.maximum(draws[:, 0], 0.0))
    np.testing.assert_array_equal(raised_draws[:, 1], draws[:, 1])
    # A missing score stays missing.
    calibration[0, 0] = np.nan
    assert np.isnan(predictive_draws(mean, scale, calibration, floor)[:, 0, 0]).all()
    # Observations at or above the limit: the same coverage, a narrower band, a CRPS no
    # larger (a distribution censored at the limit).
    plain = score_bands(observed, mean, scale, calibration, [0.9], np.zeros(2), adaptive=True)
    floored = score_bands(observed, mean, scale, calibration, [0.9], np.zeros(2),
                          adaptive=True, min_value=floor)
    level, level_floored = plain[0]["levels"]["0.9"], floored[0]["levels"]["0.9"]
    assert level_floored["coverage"] == level["coverage"]
    assert level_floored["mean_width"] < level["mean_width"]
    assert floored[0]["crps"] < plain[0]["crps"]
    assert floored[1] == plain[1]


def test_levels_a_calibration_cannot_carry_are_marked_per_output():
    # 30 scores for output 0, 40 for output 1: a 0.95 band needs 39, a 0.9 band 19.
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((40, 2))
    calibration[30:, 0] = np.nan
    observed = rng.standard_normal((50, 2))
    zeros, ones = np.zeros((50, 2)), np.ones((50, 2))
    for adaptive in (False, True):
        scored = score_bands(observed, zeros, ones, calibration, [0.5, 0.9, 0.95],
                             np.full(2, np.inf), adaptive=adaptive)
        assert [level["spans_all_scores"] for level in scored[0]["levels"].values()] \
            == [False, False, True]
        assert not any(level["spans_all_scores"] for level in scored[1]["levels"].values())
        # Plain Python truth values: the scores go into JSON files as they are.
        assert json.dumps(scored[0]["levels"]["0.95"]["spans_all_scores"]) == "true"


@pytest.mark.parametrize("n_columns", [1, 4])
def test_calibration_of_another_number_of_outputs_is_refused(n_columns):
    # One column for three outputs was broadcast to all of them by the fixed band and
    # left the adaptive band's other outputs uninitialised; four raised an IndexError.
    rng = np.random.default_rng(0)
    mean, scale = np.zeros((4, 3)), np.ones((4, 3))
    calibration = rng.normal(size=(30, n_columns))
    words = rf"calibration has shape \(30, {n_columns}\).*3 outputs"
    for observed in (None, np.zeros((4, 3))):
        with pytest.raises(ValueError, match=words):
            interval_bounds(mean, scale, calibration, 0.8, observed)
    with pytest.raises(ValueError, match=words):
        adaptive_levels(calibration, np.zeros((4, 3)), 0.8, 0.01)
    with pytest.raises(ValueError, match=words):
        predictive_draws(mean, scale, calibration)


def test_conformal_quantile_refuses_what_it_cannot_rank():
    # NaN is left out as everywhere in the module (it made the upper quantile NaN and
    # left the lower one a number); nothing to rank and levels outside [0, 1] are named.
    assert conformal_quantile(np.array([1.0, 2.0, np.nan]), 0.9) == 2.0
    with pytest.raises(ValueError, match="no finite scores"):
        conformal_quantile(np.array([np.nan]), 0.5)
    for level in (1.5, -0.1, np.nan):
        with pytest.raises(ValueError, match="level must be in"):
            conformal_quantile(np.arange(5.0), level)


def test_coverages_that_would_share_a_key_are_refused():
    # Both are written "1" in metrics.json: one of them was lost.
    y = np.zeros((5, 1))
    with pytest.raises(ValueError, match="0.9999999 and 0.99999999 would both be keyed '1'"):
        score_bands(y, y, np.ones((5, 1)), np.ones((20, 1)), [0.9999999, 0.99999999],
                    np.array([1.0]))


def _centre_by_definition(mean, observed, phi, starts):
    """``mean_t + phi ** k * e_{t-k}`` by a plain walk over the days."""
    out = mean.copy()
    for k in range(mean.shape[1]):
        last = None
        for t in range(len(mean)):
            if t in starts:
                last = None
            if last is not None:
                out[t, k] += phi[k] ** (t - last) * (observed[last, k] - mean[last, k])
            if np.isfinite(observed[t, k]):
                last = t
    return out


def test_corrected_centre_follows_its_definition():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(40, 2))
    observed = mean + rng.normal(size=(40, 2))
    observed[[3, 4, 5, 17, 18, 30], 0] = np.nan  # gaps: the error decays by phi ** k
    observed[[0, 20], 1] = np.nan
    phi, starts = np.array([0.8, 0.5]), (0, 20)
    expected = _centre_by_definition(mean, observed, phi, starts)
    np.testing.assert_allclose(corrected_centre(mean, observed, phi, starts), expected)
    # The first day of each series has nothing before it; nor has day 21 of output 1
    # (its series' first day is unobserved).
    centre = corrected_centre(mean, observed, phi, starts)
    assert centre[0, 0] == mean[0, 0] and centre[20, 0] == mean[20, 0]
    assert centre[21, 1] == mean[21, 1]
    # phi = 0 keeps the prediction exactly.
    np.testing.assert_array_equal(corrected_centre(mean, observed, np.zeros(2)), mean)
    # No day: nothing to correct.
    assert corrected_centre(mean[:0], observed[:0], phi).shape == (0, 2)


def test_error_coefficient_is_the_least_squares_lag_one_coefficient():
    rng = np.random.default_rng(1)
    errors = np.empty((3000, 1))
    errors[0] = 0.0
    for t in range(1, len(errors)):
        errors[t] = 0.7 * errors[t - 1] + rng.normal()
    errors[[50, 51, 400]] = np.nan  # pairs with an unknown error are left out
    pairs = [(errors[t, 0], errors[t - 1, 0]) for t in range(1, len(errors))
             if np.isfinite(errors[t, 0]) and np.isfinite(errors[t - 1, 0])]
    direct = sum(a * b for a, b in pairs) / sum(b * b for _, b in pairs)
    assert error_coefficient(errors)[0] == pytest.approx(direct, rel=1e-12)
    assert error_coefficient(errors)[0] == pytest.approx(0.7, abs=0.05)


def test_error_coefficient_is_clipped_and_never_pairs_two_series():
    alternating = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    assert error_coefficient(alternating)[0] == 0.0
    growing = np.array([[1.0], [2.0], [4.0]])
    assert error_coefficient(growing)[0] == 1.0
    assert error_coefficient(np.array([[np.nan], [1.0], [np.nan]]))[0] == 0.0
    assert error_coefficient(np.zeros((5, 1)))[0] == 0.0
    # No pair spans the seam between two series.
    seam = np.array([[1.0], [-1.0], [5.0], [5.0]])
    assert error_coefficient(seam, starts=(0, 2))[0] == pytest.approx((-1 + 25) / (1 + 25))
    assert error_coefficient(seam)[0] == pytest.approx((-1 - 5 + 25) / (1 + 1 + 25))


def _delayed_by_definition(calibration, new_scores, coverage, rate, lead):
    """Forecasts issued ``lead`` days ahead, written out day by day: on each day the
    band of the day ``lead`` days on is issued from what is known, and a day's
    observation judges the band issued for it, then joins the pool."""
    pool = [s for s in calibration if not math.isnan(s)]
    a, target, issued = 1 - coverage, 1 - coverage, {}
    for t in range(-lead, len(new_scores)):
        if t >= 0 and not math.isnan(new_scores[t]):
            lo, hi, at_issue = issued[t]
            miss = at_issue >= 1 or new_scores[t] < lo or new_scores[t] > hi
            a = a + rate * (target - (1.0 if miss else 0.0))
            pool = pool[1:] + [new_scores[t]]
        if t + lead < len(new_scores):
            level = min(max(a, 0.0), 1.0)
            issued[t + lead] = (conformal_quantile(np.array(pool), min(level / 2, 0.5)),
                                conformal_quantile(np.array(pool), max(1 - level / 2, 0.5)),
                                a)
    return np.array([issued[t] for t in range(len(new_scores))])


@pytest.mark.parametrize("lead", [1, 2, 5])
def test_a_band_issued_days_ahead_follows_its_definition(lead):
    rng = np.random.default_rng(lead)
    calibration = rng.normal(size=(40, 1))
    new = rng.normal(scale=1.5, size=(90, 1))
    new[[7, 30, 31], 0] = np.nan
    low, high, miscoverage = adaptive_levels(calibration, new, 0.8, 0.05, lead=lead)
    expected = _delayed_by_definition(calibration[:, 0], new[:, 0], 0.8, 0.05, lead)
    np.testing.assert_allclose(np.c_[low[:, 0], high[:, 0], miscoverage[:, 0]], expected)
    # The first `lead` days know no new score: the split-conformal band.
    np.testing.assert_allclose(np.c_[low[:lead], high[:lead]].reshape(lead, 2),
                               np.tile(np.ravel(score_quantiles(calibration, 0.8)), (lead, 1)))
    with pytest.raises(ValueError, match="lead must be an int >= 1"):
        adaptive_levels(calibration, new, 0.8, 0.05, lead=0)


def test_lead_shift_and_lead_times_follow_their_definitions():
    rng = np.random.default_rng(1)
    errors = rng.normal(size=(12, 2))
    errors[[2, 3], 0] = np.nan
    phi, starts = np.array([0.8, 0.0]), (0, 7)
    shift = lead_shift(errors, phi, 3, starts)
    for t in range(12):
        first = 7 if t >= 7 else 0
        for k in range(2):
            expected = (phi[k] ** 3 * errors[t - 3, k] if t - 3 >= first else math.nan)
            np.testing.assert_equal(shift[t, k], expected)
    observed = np.full((10, 1), np.nan)
    observed[[1, 2, 6], 0] = 1.0
    np.testing.assert_array_equal(lead_times(observed)[:, 0], [0, 0, 1, 1, 2, 3, 4, 1, 2, 3])
    np.testing.assert_array_equal(lead_times(observed, (0, 5))[:, 0],
                                  [0, 0, 1, 1, 2, 0, 0, 1, 2, 3])


def _ar1_forecast(n_days, phi, seed):
    """A forecast whose errors last for days, as a model's discharge errors do: an AR(1)
    error of coefficient ``phi`` on a seasonal mean."""
    rng = np.random.default_rng(seed)
    mean = 5 + np.sin(np.arange(n_days) / 20.0)
    errors = np.zeros(n_days)
    for t in range(1, n_days):
        errors[t] = phi * errors[t - 1] + rng.normal(scale=0.3)
    return mean[:, None], (mean + errors)[:, None]


def _leads_of(mean, calibration_days, phi):
    """The calibration of every lead from the errors of the calibration days, in units
    of a scale of 1."""
    errors = calibration_days[1] - calibration_days[0]

    def scores(lead):
        return errors if lead == 0 else errors - lead_shift(errors, phi, lead)

    return LeadCalibration(mean, phi, lambda centre: np.ones_like(centre), scores)


def test_forecasts_days_ahead_hold_their_coverage_where_the_frozen_band_does_not():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(3000, 0.9, seed=0)
    leads = _leads_of(mean[1000:], (mean[:1000], observed[:1000]), phi)
    test, seen = mean[1000:], observed[1000:]
    for lead in (3, 10):
        centre, scale, low, high = lead_bounds(leads, seen, lead, 0.9)
        inside = (seen >= centre + scale * low) & (seen <= centre + scale * high)
        # Held: the share of misses of the forecasts of this lead stays near nominal.
        assert abs(inside[lead:].mean() - 0.9) < 0.03
        # The band of the day after the last observation, kept for `lead` days (what
        # every day after the last observation got before): far short.
        one_day = leads.scores(1)
        one_low, one_high, _ = adaptive_levels(one_day, seen - corrected_centre(
            test, seen, phi), 0.9, 0.05)
        frozen = (seen[lead:] >= centre[lead:] + one_low[1:len(test) - lead + 1])
        frozen &= seen[lead:] <= centre[lead:] + one_high[1:len(test) - lead + 1]
        assert frozen.mean() < 0.9 - 0.1


def test_days_after_the_last_observation_get_the_band_of_their_lead():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(700, 0.9, seed=1)
    leads = _leads_of(mean[400:], (mean[:400], observed[:400]), phi)
    test = observed[400:].copy()
    test[:20] = np.nan          # nothing observed before day 20: no correction
    test[250:] = np.nan         # the forecast: days 250 to 299 after the last observation
    centre = corrected_centre(mean[400:], test, phi)
    scale = np.ones_like(centre)
    lower, upper = interval_bounds(centre, scale, leads.scores(1), 0.9, test, leads=leads)
    plain = score_quantiles(leads.scores(0), 0.9)
    np.testing.assert_allclose(lower[:21, 0], centre[:21, 0] + plain[0][0])
    for day in (21, 100, 250, 251, 260, 299):
        lead = day - 249 if day >= 250 else 1
        _, _, low, high = lead_bounds(leads, test, lead, 0.9)
        np.testing.assert_allclose([lower[day, 0], upper[day, 0]],
                                   [centre[day, 0] + low[day, 0], centre[day, 0] + high[day, 0]])
    # The one-day band adapts to the one-day forecasts alone: day 20's score (it
    # follows no observed day) does not join its pool.
    errors = test - mean[400:]
    one_day = mean[400:] + np.r_[[[np.nan]], phi * errors[:-1]]  # NaN on day 20
    low, _, _ = adaptive_levels(leads.scores(1), test - one_day, 0.9, 0.05)
    np.testing.assert_allclose(lower[21:250, 0], centre[21:250, 0] + low[21:250, 0])
    # Further ahead, wider: the error of the last observed day says less and less.
    width = (upper - lower)[250:, 0]
    assert width[-1] > 1.5 * width[0]
    # Without the leads' calibration, every day keeps the last observed day's band.
    frozen_lower, frozen_upper = interval_bounds(centre, scale, leads.scores(1), 0.9, test)
    np.testing.assert_allclose(np.diff((frozen_upper - frozen_lower)[250:, 0]), 0, atol=1e-12)


def test_a_band_issued_days_ahead_reads_only_what_was_known_when_it_was_issued():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(600, 0.9, seed=2)
    leads = _leads_of(mean[300:], (mean[:300], observed[:300]), phi)
    test = observed[300:]
    band = lead_bounds(leads, test, 5, 0.9)
    later = test.copy()
    later[196:] += 3.0  # the days after day 195, from which day 200 is forecast
    moved = lead_bounds(leads, later, 5, 0.9)
    for before, after in zip(band, moved, strict=True):
        np.testing.assert_allclose(after[:201], before[:201])


def test_a_lead_the_calibration_windows_do_not_reach_starts_from_the_uncorrected_scores():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(200, 0.9, seed=3)
    leads = _leads_of(mean[30:], (mean[:30], observed[:30]), phi)  # 30 calibration windows
    assert np.isfinite(leads.scores(25)).sum() < min_calibration_scores(0.9)
    plain = LeadCalibration(leads.mean, phi, leads.scale,
                            lambda lead: leads.scores(0) if lead == 25 else leads.scores(lead))
    for a, b in zip(lead_bounds(leads, observed[30:], 25, 0.9),
                    lead_bounds(plain, observed[30:], 25, 0.9), strict=True):
        np.testing.assert_array_equal(a, b)
    # A lead they reach keeps its own.
    assert not np.array_equal(lead_bounds(leads, observed[30:], 3, 0.9)[2],
                              lead_bounds(LeadCalibration(leads.mean, phi, leads.scale,
                                                          lambda lead: leads.scores(0)),
                                          observed[30:], 3, 0.9)[2])


def test_a_band_far_ahead_neither_swings_nor_collapses():
    # A miss is known only `lead` days after its band was issued: at the full step the
    # miscoverage overshoots, between the widest band and an empty one.
    phi = np.array([0.5])
    mean, observed = _ar1_forecast(3000, 0.5, seed=4)
    leads = _leads_of(mean[500:], (mean[:500], observed[:500]), phi)
    seen = observed[500:]
    lead = 40
    centre, scale, low, high = lead_bounds(leads, seen, lead, 0.9)
    width = (high - low)[lead:, 0]
    # Steady: no empty band, hardly a day at the widest, a width that varies little.
    assert (width > 0).all() and np.mean(width >= 0.99 * width.max()) < 0.01
    assert width.std() / width.mean() < 0.25
    inside = (seen >= centre + scale * low) & (seen <= centre + scale * high)
    assert abs(inside[lead:].mean() - 0.9) < 0.03
    full = adaptive_levels(leads.scores(lead), (seen - centre) / scale, 0.9, ADAPT_RATE,
                           lead)[2]
    clipped = lambda a: np.mean((a <= 0) | (a >= 1))  # noqa: E731
    assert clipped(full[lead:]) > 0.2  # the full step: a fifth of the days at the limits
    step = adaptive_levels(leads.scores(lead), (seen - centre) / scale, 0.9,
                           DELAYED_STEP / lead, lead)[2]
    assert clipped(step[lead:]) < 0.02


def test_a_forecast_beyond_the_longest_lead_gets_its_band():
    phi = np.array([0.5])
    mean, observed = _ar1_forecast(900, 0.5, seed=5)
    leads = _leads_of(mean[300:], (mean[:300], observed[:300]), phi)
    test = observed[300:].copy()
    test[400:] = np.nan  # 200 days after the last observed one
    centre = corrected_centre(mean[300:], test, phi)
    lower, _ = interval_bounds(centre, np.ones_like(centre), leads.scores(1), 0.9, test,
                               leads=leads)
    _, _, low, _ = lead_bounds(leads, test, MAX_LEAD, 0.9)
    for day in (399 + MAX_LEAD, 399 + MAX_LEAD + 1, 599):
        assert lower[day, 0] == pytest.approx(centre[day, 0] + low[day, 0])


def _floods_with_larger_errors(n_days, seed):
    """A forecast whose errors are three times as large on the days it puts above its
    90th percentile (forecast floods) as on the others, in units of a scale of 1."""
    rng = np.random.default_rng(seed)
    mean = rng.gamma(0.7, 10.0, size=(n_days, 1))
    flood = mean > np.quantile(mean, 0.9)
    return mean, mean + rng.standard_normal(mean.shape) * np.where(flood, 3.0, 1.0)


def test_each_class_gets_the_band_of_its_own_scores():
    rng = np.random.default_rng(4)
    calibration = rng.normal(size=(60, 2))
    windows = np.zeros((60, 2), dtype=int)
    windows[:30, 0] = 1
    windows[:5, 1] = 1  # too few for a 0.9 band: that class starts from all the scores
    mean, scale = rng.normal(size=(80, 2)), np.full((80, 2), 2.0)
    days = rng.integers(0, 2, size=(80, 2))
    observed = mean + scale * rng.normal(scale=1.5, size=(80, 2))
    observed[[3, 40], 0] = np.nan
    fixed = interval_bounds(mean, scale, calibration, 0.9, classes=(days, windows))
    adapted = interval_bounds(mean, scale, calibration, 0.9, observed, classes=(days, windows))
    scores = (observed - mean) / scale
    for k in range(2):
        for label in (0, 1):
            own, pool = days[:, k] == label, calibration[windows[:, k] == label, k]
            if len(pool) < MIN_CLASS_WINDOWS:
                pool = calibration[:, k]
            low, high = score_quantiles(pool[:, None], 0.9)
            np.testing.assert_allclose(fixed[0][own, k], mean[own, k] + 2.0 * low[0])
            np.testing.assert_allclose(fixed[1][own, k], mean[own, k] + 2.0 * high[0])
            # The adaptive band of a class adapts to the scores of its own days alone,
            # as if the other days did not exist.
            low, high, _ = adaptive_levels(pool[:, None], scores[own, k:k + 1], 0.9, 0.05)
            np.testing.assert_allclose(adapted[0][own, k], mean[own, k] + 2.0 * low[:, 0])
            np.testing.assert_allclose(adapted[1][own, k], mean[own, k] + 2.0 * high[:, 0])


def test_one_class_is_the_band_without_classes():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(700, 0.9, seed=5)
    leads = _leads_of(mean[400:], (mean[:400], observed[:400]), phi)
    test = observed[400:].copy()
    test[250:] = np.nan  # days ahead: the bands of their leads
    centre = corrected_centre(mean[400:], test, phi)
    scale = np.ones_like(centre)
    one = (np.zeros(centre.shape, dtype=int), np.zeros((400, 1), dtype=int))
    for observed_, leads_ in ((None, None), (test, None), (test, leads)):
        np.testing.assert_array_equal(
            interval_bounds(centre, scale, leads.scores(1), 0.9, observed_, leads=leads_),
            interval_bounds(centre, scale, leads.scores(1), 0.9, observed_, leads=leads_,
                            classes=one))


def test_the_days_ahead_of_a_class_adapt_to_its_own_forecasts():
    phi = np.array([0.9])
    mean, observed = _ar1_forecast(700, 0.9, seed=6)
    leads = _leads_of(mean[400:], (mean[:400], observed[:400]), phi)
    test = observed[400:].copy()
    test[250:] = np.nan  # day 249 is the last observed: day 249 + k is k days ahead
    days, windows = (mean[400:] > 5.5).astype(int), (mean[:400] > 5.5).astype(int)
    centre = corrected_centre(mean[400:], test, phi)
    lower, upper = interval_bounds(centre, np.ones_like(centre), leads.scores(1), 0.9, test,
                                   leads=leads, classes=(days, windows))
    for label in (0, 1):
        within = (days == label, windows == label)
        own = days[:, 0] == label
        for lead in (1, 5, 30):
            _, _, low, high = lead_bounds(leads, test, lead, 0.9, within=within)
            ahead = [day for day in ([*range(1, 250)] if lead == 1 else [249 + lead])
                     if own[day]]
            np.testing.assert_allclose(lower[ahead, 0], centre[ahead, 0] + low[ahead, 0])
            np.testing.assert_allclose(upper[ahead, 0], centre[ahead, 0] + high[ahead, 0])
        # The next day's band of a class: its own windows' scores, its own days'.
        _, _, low, _ = lead_bounds(leads, test, 1, 0.9, within=within)
        scores = test - corrected_centre(mean[400:], test, phi)
        scores[0] = np.nan  # no day before it: no forecast of lead 1
        expected, _, _ = adaptive_levels(leads.scores(1)[windows[:, 0] == label],
                                         scores[own], 0.9, 0.05)
        np.testing.assert_allclose(low[own, 0], expected[:, 0])


def test_a_band_of_its_own_covers_the_forecast_floods_where_one_band_does_not():
    mean, y = _floods_with_larger_errors(8000, seed=0)
    scale = np.ones_like(mean)
    fit, test = slice(0, 4000), slice(4000, None)
    threshold = np.quantile(mean[fit], 0.9, axis=0)
    classes = (high_flow_classes(mean[test], threshold),
               high_flow_classes(mean[fit], threshold))
    scores = y[fit] - mean[fit]
    floods = classes[0][:, 0] == 1
    for observed in (None, y[test]):
        pooled = interval_bounds(mean[test], scale[test], scores, 0.9, observed)
        own = interval_bounds(mean[test], scale[test], scores, 0.9, observed,
                              classes=classes)
        inside = {name: (y[test] >= low) & (y[test] <= high)
                  for name, (low, high) in (("pooled", pooled), ("own", own))}
        # Both hold the share of all days; only the classes hold it on the floods (about
        # 400 test days: the fixed band's quantiles from 400 windows vary by a few points).
        assert abs(inside["own"].mean() - 0.9) < 0.02
        assert abs(inside["pooled"].mean() - 0.9) < 0.02
        assert abs(inside["own"][floods].mean() - 0.9) < (0.05 if observed is None else 0.02)
        assert inside["pooled"][floods].mean() < 0.6


def test_classes_of_another_shape_are_refused():
    mean = np.zeros((10, 1))
    with pytest.raises(ValueError, match=r"classes of the days have shape \(9, 1\)"):
        interval_bounds(mean, np.ones_like(mean), np.zeros((30, 1)), 0.9,
                        classes=(np.zeros((9, 1), dtype=int), np.zeros((30, 1), dtype=int)))
    with pytest.raises(ValueError, match="classes of the calibration windows"):
        interval_bounds(mean, np.ones_like(mean), np.zeros((30, 1)), 0.9,
                        classes=(np.zeros((10, 1), dtype=int), np.zeros(30, dtype=int)))


def test_labels_that_are_not_integers_are_refused():
    # A NaN label equals no label: its day would get no band at all.
    mean = np.zeros((5, 1))
    days = np.array([[0.0], [1.0], [np.nan], [1.0], [0.0]])
    with pytest.raises(ValueError, match="classes of the days are of type float64: "
                                         "integer labels are needed"):
        interval_bounds(mean, np.ones_like(mean), np.zeros((30, 1)), 0.9,
                        classes=(days, np.zeros((30, 1), dtype=int)))
    # Booleans are labels too.
    interval_bounds(mean, np.ones_like(mean), np.zeros((30, 1)), 0.9,
                    classes=(np.zeros((5, 1), dtype=bool), np.zeros((30, 1), dtype=bool)))


def test_a_small_class_keeps_its_bands_of_several_coverages_nested():
    # 25 forecast floods among 300 windows, with errors five times as large: enough
    # windows for the 80 % and 90 % bands, not for the 95 % one. Had the 95 % band
    # alone started from all the scores, it would be narrower than the 90 % band.
    rng = np.random.default_rng(7)
    calibration = rng.normal(size=(300, 1))
    windows = np.zeros((300, 1), dtype=int)
    windows[::12] = 1
    calibration[windows == 1] *= 5.0
    assert min_calibration_scores(0.9) <= 25 < min_calibration_scores(0.95)
    mean, scale = np.zeros((4, 1)), np.ones((4, 1))
    days = np.array([[0], [1], [0], [1]])
    widths = []
    for coverage in (0.5, 0.8, 0.9, 0.95):
        low, high = interval_bounds(mean, scale, calibration, coverage,
                                    classes=(days, windows))
        widths.append((high - low)[:, 0])
    widths = np.array(widths)
    assert (np.diff(widths, axis=0) >= 0).all(), widths
    # The floods' band comes from their own scores at every coverage.
    low, high = score_quantiles(calibration[windows[:, 0] == 1], 0.8)
    assert widths[1, 1] == pytest.approx(high[0] - low[0])
    assert MIN_CLASS_WINDOWS == min_calibration_scores(0.9)


def test_high_flow_classes_mark_forecast_floods():
    mean = np.array([[1.0, 5.0], [3.0, 2.0], [np.nan, 9.0]])
    np.testing.assert_array_equal(high_flow_classes(mean, np.array([2.0, 5.0])),
                                  [[0, 0], [1, 0], [0, 1]])
