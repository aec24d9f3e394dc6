"""TLAGEnsemble: members, mean and spread, calibrated intervals, scikit-learn contracts."""

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sktlag import TLAGEnsemble, TLAGRegressor
from sktlag.ensemble import _conformal_quantile

from .conftest import FAST, make_series
from .test_sklearn_checks import EXPECTED_FAILURES

TINY = {**FAST, "hidden_size": 4, "max_epochs": 4, "max_layers": 1}


@pytest.fixture(scope="module")
def fitted():
    X, y = make_series(n_rows=400)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0)
    return ens.fit(X[:300], y[:300]), X, y


def test_members_differ_by_seed_and_the_mean_is_their_average(fitted):
    ens, X, _ = fitted
    assert len(ens.estimators_) == 3 and len(set(ens.seeds_.tolist())) == 3
    assert [m.random_state for m in ens.estimators_] == [int(s) for s in ens.seeds_]
    members = np.stack([m.predict(X[300:]) for m in ens.estimators_])
    mean, std = ens.predict(X[300:], return_std=True)
    np.testing.assert_allclose(mean, members.mean(axis=0))
    np.testing.assert_allclose(std, members.std(axis=0))
    assert std.shape == mean.shape == (100,) and (std > 0).any()
    np.testing.assert_array_equal(ens.predict(X[300:]), mean)
    assert ens.n_layers_ == [m.n_layers_ for m in ens.estimators_]


def test_a_seed_makes_the_ensemble_reproducible(fitted):
    ens, X, y = fitted
    again = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0).fit(X[:300], y[:300])
    np.testing.assert_array_equal(again.predict(X[300:]), ens.predict(X[300:]))


def test_conformal_quantile_ranks():
    scores = np.arange(1.0, 20.0)  # 19 scores: (n + 1) * 0.95 = 19 -> the largest
    assert _conformal_quantile(scores, 0.95) == 19.0
    assert _conformal_quantile(scores, 0.05) == 1.0
    assert _conformal_quantile(scores, 0.5) == 10.0
    # Beyond the range of the scores, the extreme one.
    assert _conformal_quantile(scores[:5], 0.99) == 5.0
    assert _conformal_quantile(scores[:5], 0.01) == 1.0


def test_intervals_are_calibrated_on_the_validation_windows(fitted):
    ens, X, y = fitted
    # The calibration set: the validation windows of the members' own split.
    first = ens.estimators_[0]
    n_valid = len(ens.calibration_scores_)
    assert n_valid == int(np.ceil(first.validation_fraction * (300 - first.lookback + 1)))
    lower, upper = ens.predict_interval(X[:300], coverage=0.8)
    valid = slice(300 - n_valid, 300)
    inside = (y[valid] >= lower[valid]) & (y[valid] <= upper[valid])
    # Conformal ranks: at least the nominal share of the calibration windows is covered.
    assert inside.mean() >= 0.8
    assert np.all(upper >= lower)
    narrow, wide = ens.predict_interval(X[300:], 0.5), ens.predict_interval(X[300:], 0.95)
    assert np.all(wide[0] <= narrow[0]) and np.all(wide[1] >= narrow[1])


def test_interval_scores_match_their_definitions(fitted):
    ens, X, y = fitted
    lower, upper = ens.predict_interval(X[300:], coverage=0.9)
    scores = ens.score_intervals(X[300:], y[300:], coverage=0.9)["outputs"][0]
    assert scores["n"] == 100
    assert scores["coverage"] == pytest.approx(np.mean((y[300:] >= lower) & (y[300:] <= upper)))
    assert scores["mean_width"] == pytest.approx(np.mean(upper - lower))
    # The CRPS of a distribution is at most the mean absolute error of its draws, and
    # positive for a spread-out forecast.
    draws = ens.predictive_samples(X[300:])[:, 0]
    mae_of_draws = np.mean(np.abs(draws - y[300:, None]))
    assert 0 < scores["crps"] <= mae_of_draws


def test_bad_coverage_and_estimator():
    X, y = make_series(n_rows=200)
    with pytest.raises(TypeError, match="must be a TLAGRegressor"):
        TLAGEnsemble(LinearRegression(), n_members=2).fit(X, y)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, random_state=0).fit(X, y)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="coverage must lie in"):
            ens.predict_interval(X, coverage=bad)
    # One member: no spread, the intervals are plain split-conformal residual intervals.
    lower, upper = ens.predict_interval(X, coverage=0.9)
    np.testing.assert_allclose(upper - lower, (upper - lower)[0])


def test_multi_output_and_missing_targets():
    X, y = make_series(n_rows=300, n_outputs=2)
    y = y.copy()
    y[250:260, 1] = np.nan
    est = TLAGRegressor(**TINY, missing_target="mask")
    ens = TLAGEnsemble(est, n_members=2, random_state=1).fit(X, y)
    lower, upper = ens.predict_interval(X, coverage=0.9)
    assert lower.shape == upper.shape == (300, 2)
    assert np.isnan(ens.calibration_scores_[:, 1]).sum() == 10
    scores = ens.score_intervals(X, y)["outputs"]
    assert scores[1]["n"] == 290 and np.isfinite(scores[1]["crps"])


def test_pipeline_search_and_pickle(tmp_path):
    X, y = make_series(n_rows=260)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("ens", TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0))])
    search = GridSearchCV(pipe, {"ens__n_members": [1, 2]}, cv=TimeSeriesSplit(2))
    search.fit(X, y)
    best = search.best_estimator_
    mean, std = best.predict(X, return_std=True)
    joblib.dump(best, tmp_path / "ens.joblib")
    loaded = joblib.load(tmp_path / "ens.joblib")
    np.testing.assert_array_equal(loaded.predict(X), mean)


def test_members_fit_in_parallel_processes():
    X, y = make_series(n_rows=200)
    serial = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=3).fit(X, y)
    parallel = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, n_jobs=2,
                            random_state=3).fit(X, y)
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))


@parametrize_with_checks(
    [TLAGEnsemble(TLAGRegressor(**{**FAST, "lookback": 3, "output_dropout": 0.0,
                                    "initial_forget_bias": 0.0}),
                  n_members=2, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_compatible_ensemble(estimator, check):
    check(estimator)
