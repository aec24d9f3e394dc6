"""TLAGEnsemble: members, mean and spread, calibrated intervals, scikit-learn contracts."""

import copy
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sktlag import TLAGEnsemble, TLAGRegressor
from sktlag.conformal import (
    ADAPT_RATE,
    adaptive_levels,
    corrected_centre,
    error_coefficient,
    high_flow_classes,
    interval_bounds,
    interval_scale,
    lead_bounds,
    score_quantiles,
)

from .conftest import FAST, make_series
from .test_sklearn_checks import EXPECTED_FAILURES

TINY = {**FAST, "hidden_size": 4, "max_epochs": 4, "max_layers": 1}


@pytest.fixture(scope="module")
def fitted():
    X, y = make_series(n_rows=400)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0)
    return ens.fit(X[:300], y[:300]), X, y


def test_members_fitted_in_threads_are_those_fitted_one_after_another():
    # A joblib Parallel nested in a search's worker runs in threads: each fit reseeded
    # the others' torch generators mid-training and restored a thread count another one
    # had saved, so the members depended on timing and torch's state was left changed.
    import torch
    from joblib import parallel_backend

    X, y = make_series(n_rows=300)
    one_by_one = TLAGEnsemble(TLAGRegressor(**TINY), n_members=4, n_jobs=1,
                              random_state=0).fit(X, y).predict(X)
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    with parallel_backend("threading", n_jobs=4):
        threaded = TLAGEnsemble(TLAGRegressor(**TINY), n_members=4, n_jobs=4,
                                random_state=0).fit(X, y).predict(X)
    np.testing.assert_array_equal(threaded, one_by_one)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)


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
    # The CRPS of the draws' empirical distribution, E|X - y| - E|X - X'| / 2, per day.
    draws = ens.predictive_samples(X[300:])[:, 0]
    to_obs = np.abs(draws - y[300:, None]).mean(axis=1)
    between = np.abs(draws[:, :, None] - draws[:, None, :]).mean(axis=(1, 2))
    assert scores["crps"] == pytest.approx(np.mean(to_obs - between / 2), rel=1e-9)


def test_bad_coverage_and_estimator():
    X, y = make_series(n_rows=200)
    with pytest.raises(TypeError, match="must be a TLAGRegressor"):
        TLAGEnsemble(LinearRegression(), n_members=2).fit(X, y)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, random_state=0).fit(X, y)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="coverage must lie in"):
            ens.predict_interval(X, coverage=bad)
    # One member: no spread. With the flow scale the width follows the predicted flow;
    # with the spread scale the intervals are plain split-conformal residual intervals.
    from sktlag.conformal import FLOW_FLOOR

    lower, upper = ens.predict_interval(X, coverage=0.9)
    flow = FLOW_FLOOR + np.maximum(ens.predict(X), 0) / ens.flow_level_[0]
    np.testing.assert_allclose((upper - lower) / flow, (upper - lower)[0] / flow[0])
    ens.set_params(scale="spread").fit(X, y)
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


def test_a_lowest_value_per_output(tmp_path):
    from sktlag import load_model, save_model

    # A limit for every output or none: a table of discharge and one other target lost
    # the zero floor of its discharge.
    X, y = make_series(n_rows=240, n_outputs=2)
    y = y - np.array([0.0, y[:, 1].mean()])  # the second output goes below zero
    free = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0).fit(X, y)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                       min_value=[0.0, -np.inf]).fit(X, y)
    np.testing.assert_array_equal(ens.min_value_, [0.0, -np.inf])
    for observed in (None, y):
        (lower, upper), (ours, _) = (e.predict_interval(X, observed=observed)
                                     for e in (free, ens))
        np.testing.assert_array_equal(ours[:, 0], np.maximum(lower[:, 0], 0.0))
        np.testing.assert_array_equal(ours[:, 1], lower[:, 1])
        assert (ours[:, 1] < 0).any()
    assert ens.score_intervals(X, y)["min_value"] == [0.0, -np.inf]
    assert free.score_intervals(X, y)["min_value"] is None
    # -inf means no limit alone as in a list, and a 0-d array is one number.
    np.testing.assert_array_equal(
        clone(ens).set_params(min_value=-np.inf)._lowest_values(2), [-np.inf, -np.inf])
    np.testing.assert_array_equal(
        clone(ens).set_params(min_value=np.array(0.0))._lowest_values(2), [0.0, 0.0])
    loaded = load_model(save_model(ens, tmp_path / "floors.pth"))
    assert loaded.min_value == [0.0, -np.inf]
    np.testing.assert_array_equal(loaded.predict_interval(X)[0], ens.predict_interval(X)[0])


@pytest.mark.parametrize(("min_value", "words"), [
    ([0.0, 0.0, 0.0], r"min_value has shape \(3,\) for 2 outputs"),
    ([0.0, np.nan], r"min_value must hold numbers or -inf \(no limit\), got \[0.0, nan\]"),
    ([[0.0, 0.0]], r"min_value has shape \(1, 2\) for 2 outputs"),
    (np.inf, r"min_value must hold numbers or -inf \(no limit\), got inf"),
])
def test_lowest_values_that_do_not_fit_the_outputs_are_refused(monkeypatch, min_value, words):
    import sktlag.ensemble

    def trained(*args):
        raise AssertionError("a member trained")

    monkeypatch.setattr(sktlag.ensemble, "_fit_member", trained)
    X, y = make_series(n_rows=200, n_outputs=2)
    with pytest.raises(ValueError, match=words):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, min_value=min_value).fit(X, y)


def test_observations_of_the_wrong_shape_or_infinite_are_refused(fitted):
    ens, X, y = fitted
    for bad, words in ((y[300:350], "50 rows"), (np.c_[y[300:], y[300:]], "2 outputs"),
                       (np.r_[y[300:-1], np.inf], "inf at row 99")):
        with pytest.raises(ValueError, match=words):
            ens.score_intervals(X[300:], bad)
        with pytest.raises(ValueError, match=words):
            ens.predict_interval(X[300:], observed=bad)
    X2, y2 = make_series(n_rows=240, n_outputs=2)
    two = TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, random_state=0).fit(X2, y2)
    # One column for a model of two outputs was scored against the first output's band.
    with pytest.raises(ValueError, match="1 output"):
        two.score_intervals(X2, y2[:, 1])


def test_a_bool_min_value_is_refused_before_any_member_trains(monkeypatch):
    import sktlag.ensemble

    def trained(*args):
        raise AssertionError("a member trained")

    monkeypatch.setattr(sktlag.ensemble, "_fit_member", trained)
    X, y = make_series(n_rows=200)
    with pytest.raises(ValueError, match="min_value must be a number or None"):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, min_value=True).fit(X, y)


def test_the_architecture_text_counts_the_observed_calibration_windows():
    from sktlag.report import architecture_text

    X, y = make_series(n_rows=300, n_outputs=2)
    y = y.copy()
    y[250:260, 1] = np.nan  # ten validation days without the second discharge
    est = TLAGRegressor(**TINY, missing_target="mask")
    ens = TLAGEnsemble(est, n_members=1, random_state=0).fit(X, y)
    n = len(ens.calibration_scores_)
    assert np.isnan(ens.calibration_scores_[:, 1]).sum() == 10
    assert f"on {n} / {n - 10} windows (by output)" in architecture_text(ens)


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
    import os

    from skorch.callbacks import Callback

    class ProcessId(Callback):
        # Defined here, so that it travels to the worker processes by value.
        def on_train_begin(self, net, **kwargs):
            self.pid_ = os.getpid()

    def ensemble(**kwargs):
        member = TLAGRegressor(**TINY, callbacks=[("pid", ProcessId())])
        return TLAGEnsemble(member, n_members=2, random_state=3, **kwargs)

    X, y = make_series(n_rows=200)
    serial, parallel = ensemble().fit(X, y), ensemble(n_jobs=2).fit(X, y)
    pids = {dict(m.net_.callbacks_)["pid"].pid_ for m in parallel.estimators_}
    assert os.getpid() not in pids
    assert {dict(m.net_.callbacks_)["pid"].pid_ for m in serial.estimators_} == {os.getpid()}
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))


def test_a_band_from_too_few_calibration_scores_warns_once_per_call(fitted, tmp_path):
    from sktlag import forecast, write_artifacts

    ensemble, X, y = fitted
    few = copy.deepcopy(ensemble)
    # The first 10 calibration windows, as if there were no more.
    for name in ("calibration_scores_", "corrected_scores_", "calibration_errors_",
                 "calibration_mean_", "calibration_spread_"):
        setattr(few, name, getattr(few, name)[:10])
    few.calibration_starts_ = few.calibration_starts_[few.calibration_starts_ < 10]
    # Each warning names the line of the call below, not a line inside sktlag.
    for call in (
            lambda: few.predict_interval(X, 0.9),
            lambda: few.predict_interval(X, 0.9, observed=y),
            lambda: few.score_intervals(X, y, 0.9, adaptive=True),
            lambda: forecast(few, X),
            lambda: forecast(few, X, observed=y),
            lambda: write_artifacts(few, tmp_path / "run", X_test=X, y_test=y)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        said = [w for w in caught if "calibration scores" in str(w.message)]
        assert [str(w.message) for w in said] == [
            "a 0.9 band needs 19 calibration scores, and this ensemble has fewer (output "
            "0: 10): the band spans all of them and covers less than nominal; calibrate on "
            "more windows (a longer record, or calibration='blocks') or ask for a lower "
            "coverage"]
        assert said[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        few.predict_interval(X, 0.8)  # 9 scores suffice at 0.8


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_a_members_warning_reaches_the_caller_once(n_jobs):
    # Every member fits the same record, so each would say the same; from worker
    # processes nothing reached the caller, whose filters then could not apply.
    from sktlag.recipe import ShortRecordWarning

    X, y = make_series(n_rows=200)
    member = TLAGRegressor(**{**TINY, "batch_size": 128})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TLAGEnsemble(member, n_members=3, random_state=0, n_jobs=n_jobs).fit(X, y)
    messages = [str(w.message) for w in caught if w.category is ShortRecordWarning]
    assert messages and len(messages) == len(set(messages))
    assert any("batches of 128" in m for m in messages)


def test_a_members_warnings_are_raised_before_its_failure():
    from skorch.callbacks import Callback

    from sktlag.recipe import ShortRecordWarning

    class Fails(Callback):
        def on_train_begin(self, net, **kwargs):
            raise RuntimeError("training failed")

    X, y = make_series(n_rows=200)
    member = TLAGRegressor(**{**TINY, "batch_size": 128}, callbacks=[("fails", Fails())])
    with pytest.warns(ShortRecordWarning, match="batches of 128"), \
            pytest.raises(RuntimeError, match="training failed"):
        TLAGEnsemble(member, n_members=2, random_state=0).fit(X, y)


@parametrize_with_checks(
    # check_regressors_train asks for R^2 > 0.5 after these 8 epochs: growth runs its
    # course (at the default threshold some members stop at one layer and fall short).
    [TLAGEnsemble(TLAGRegressor(**{**FAST, "lookback": 3, "output_dropout": 0.0,
                                    "initial_forget_bias": 0.0,
                                    "topo_derivative_threshold": 0.0}),
                  n_members=2, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_compatible_ensemble(estimator, check):
    check(estimator)


def test_regressor_inside_mapie_time_series_intervals():
    mapie_regression = pytest.importorskip("mapie.regression")
    X, y = make_series(n_rows=400)
    est = TLAGRegressor(**TINY, random_state=0).fit(X[:250], y[:250])
    mapie = mapie_regression.TimeSeriesRegressor(est, method="enbpi", cv="prefit")
    mapie.fit(X[250:330], y[250:330])
    pred, intervals = mapie.predict(X[330:], confidence_level=0.9)
    lower, upper = intervals[:, 0, 0], intervals[:, 1, 0]
    np.testing.assert_allclose(pred, est.predict(X[330:]))
    assert np.all(lower < pred) and np.all(pred < upper)
    # Calibrated on the absolute residuals of the calibration block: the half width lies
    # within their range.
    residuals = np.abs(y[250:330] - est.predict(X[250:330]))
    half = (upper - lower) / 2
    assert np.all((half >= residuals.min()) & (half <= residuals.max()))


def test_an_ensemble_round_trips_through_a_model_file(fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, _ = fitted
    pipe = Pipeline([("scale", StandardScaler()), ("ens", ens)])
    pipe.steps[0] = ("scale", StandardScaler().fit(X[:300]))
    for model in (ens, pipe):
        path = save_model(model, tmp_path / "ens.pth")
        loaded = load_model(path)
        final = loaded.steps[-1][1] if isinstance(loaded, Pipeline) else loaded
        assert isinstance(final, TLAGEnsemble)
        np.testing.assert_array_equal(final.seeds_, ens.seeds_)
        np.testing.assert_array_equal(final.calibration_scores_, ens.calibration_scores_)
        np.testing.assert_array_equal(final.high_flow_threshold_, ens.high_flow_threshold_)
        assert final.calibration == "validation"
        assert final.n_layers_ == ens.n_layers_
        np.testing.assert_array_equal(loaded.predict(X[300:]), model.predict(X[300:]))
        for a, b in zip(final.predict_interval(X[300:]), ens.predict_interval(X[300:]),
                        strict=True):
            np.testing.assert_array_equal(a, b)
        assert final.get_params()["n_members"] == 3


def test_a_seed_given_as_a_numpy_integer_round_trips(fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, _ = fitted
    # Seeds often come from numpy (a loop over np.arange); the file holds plain data.
    ens = copy.deepcopy(ens).set_params(random_state=np.int64(7))
    loaded = load_model(save_model(ens, tmp_path / "numpy_seed.pth"))
    assert loaded.random_state == 7 and type(loaded.random_state) is int
    np.testing.assert_array_equal(loaded.predict(X[300:]), ens.predict(X[300:]))


def test_the_template_seed_round_trips(fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, _ = fitted
    ens = copy.deepcopy(ens)
    ens.estimator.set_params(random_state=3)
    loaded = load_model(save_model(ens, tmp_path / "template_seed.pth"))
    assert loaded.get_params()["estimator__random_state"] == 3


def _two_feature_member():
    from sktlag.persistence import model_payload

    X, y = make_series(n_rows=200)
    return model_payload(TLAGRegressor(**TINY).fit(X[:, :2], y))


@pytest.mark.parametrize(("edit", "words"), [
    (lambda e: e.update(seeds=e["seeds"][:-1]), "seeds has 2 values for 3 members"),
    (lambda e: e.update(n_members=4), "n_members is 4"),
    (lambda e: e.update(calibration_scores=e["calibration_scores"].repeat(1, 2)),
     r"calibration scores have shape \(\d+, 2\)"),
    (lambda e: e.update(spread_offset=[*e["spread_offset"], 0.0]), "spread_offset has 2"),
    (lambda e: e.update(error_coefficient=[0.5, 0.5]), "error_coefficient has 2"),
    (lambda e: e.update(corrected_scores=e["corrected_scores"][:-1]),
     r"corrected scores have shape \(\d+, 1\), the calibration scores"),
    (lambda e: e["members"].__setitem__(1, _two_feature_member()), "different numbers"),
    (lambda e: e.pop("calibration_starts"), r"of what the longer leads' bands are made of"),
    (lambda e: e.pop("calibration_mean"), r"of what the longer leads' bands are made of"),
    (lambda e: e.update(calibration_starts=[0, 2.5]), "a list of whole numbers"),
    (lambda e: e.update(calibration_starts=[0, 0]), "calibration_starts must rise from 0"),
    (lambda e: e.update(calibration_mean=e["calibration_mean"][:-1]),
     r"calibration_mean has shape \(\d+, 1\), the calibration scores"),
])
def test_ensemble_entries_that_disagree_are_a_clear_error(fitted, tmp_path, edit, words):
    from sktlag import load_model
    from sktlag.persistence import ModelFileError, model_payload

    payload = model_payload(fitted[0])
    edit(payload["ensemble"])
    path = tmp_path / "edited.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=f"edited.pth.*inconsistent.*{words}"):
        load_model(path)


@pytest.fixture(scope="module")
def dated_pipeline():
    """A scaler and a two-member ensemble fitted on the first 280 of 360 dated days."""
    import pandas as pd

    X, y = make_series(n_rows=360)
    dates = pd.date_range("2000-01-01", periods=360, freq="D")
    X = pd.DataFrame(X, index=dates, columns=["p1", "p2", "p3"])
    y = pd.Series(y, index=dates, name="q")
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("ens", ens)]).set_output(transform="pandas")
    pipe.fit(X[:280], y[:280])
    return pipe, ens, X, y


def test_observations_dated_otherwise_than_x_are_refused(dated_pipeline):
    import pandas as pd

    from sktlag import forecast

    pipe, ens, X, y = dated_pipeline
    scaled = pipe[:-1].transform(X[280:])
    late = y[280:].shift(1, freq="D")
    match = r"is dated otherwise than X: its row 0 is 2000-10-08, that of X 2000-10-07"
    with pytest.raises(ValueError, match="y " + match):
        ens.score_intervals(scaled, late)
    with pytest.raises(ValueError, match="observed " + match):
        ens.predict_interval(scaled, observed=late)
    with pytest.raises(ValueError, match="observed " + match):
        ens.predict_corrected(scaled, late)
    with pytest.raises(ValueError, match="observed " + match):
        forecast(pipe, X[280:], observed=late)
    assert isinstance(forecast(pipe, X[280:], observed=y[280:]), pd.DataFrame)


def test_artifacts_of_an_ensemble_carry_its_intervals(dated_pipeline, tmp_path):
    import json

    import pandas as pd

    from sktlag import write_artifacts
    from sktlag.io import read_table

    pipe, ens, X, y = dated_pipeline
    # The table and the figure show the band that adapts to the observed test days; the
    # band of a simulation on request. metrics.json scores both either way.
    X_test = pipe[:-1].transform(X[280:])
    for band, observed in (("adaptive", y[280:]), ("fixed", None)):
        paths = write_artifacts(pipe, tmp_path / band, X_test=X[280:], y_test=y[280:],
                                X_train=X[:280], y_train=y[:280], band=band)
        lower, upper = ens.predict_interval(X_test, 0.9, observed=observed)
        table = read_table(paths["predictions_xlsx"], target="observed")
        np.testing.assert_allclose(table.X["lower"], lower)
        np.testing.assert_allclose(table.X["upper"], upper)
        metrics = json.loads(paths["metrics_json"].read_text())
        test = metrics["periods"]["test"]["intervals"]
        inside = (y[280:] >= lower) & (y[280:] <= upper)
        assert test["nominal_coverage"] == 0.9 and test["calibration"] == "validation"
        assert test["shown"] == band and set(test["bands"]) == {"fixed", "adaptive"}
        assert test["bands"][band]["q"]["coverage"] == pytest.approx(inside.mean())
        assert test["bands"][band]["q"]["mean_width"] == pytest.approx(np.mean(upper - lower))
    with pytest.raises(ValueError, match="band must be 'adaptive' or 'fixed'"):
        write_artifacts(pipe, tmp_path / "other", band="blocks")
    assert not (tmp_path / "other").exists()
    assert metrics["n_members"] == 2 and metrics["n_layers"] == ens.n_layers_
    summary = json.loads(paths["architecture_json"].read_text())
    assert summary["final_n_layers"] == ens.n_layers_ and len(summary["members"]) == 2
    assert "member 2" in paths["architecture_txt"].read_text()
    decisions = pd.read_excel(paths["derivatives_xlsx"])
    assert set(decisions["member"]) <= {1, 2}
    n_decisions = sum(len(m.derivative_history_) for m in ens.estimators_)
    assert len(decisions) == n_decisions


def test_artifacts_of_an_ensemble_run_its_members_once_over_the_test_days(
        dated_pipeline, tmp_path, monkeypatch):
    from sktlag import write_artifacts

    pipe, ens, X, y = dated_pipeline
    calls = []
    predict = TLAGRegressor.predict

    def counted(self, X, **kwargs):
        calls.append(len(X))
        return predict(self, X, **kwargs)

    monkeypatch.setattr(TLAGRegressor, "predict", counted)
    # The mean, the band shown and both bands' scores come from the same predictions.
    write_artifacts(pipe, tmp_path / "run", X_test=X[280:], y_test=y[280:])
    assert calls == [len(X) - 280] * ens.n_members


def test_artifacts_of_a_test_period_after_a_gap_leave_its_padded_days_out_of_the_band(
        dated_pipeline, tmp_path):
    import json

    from sktlag import write_artifacts
    from sktlag.io import read_table

    pipe, ens, X, y = dated_pipeline
    # Ten days after the fit ends: the first lookback - 1 test days are predicted from
    # padding, and their errors would judge the padding, not the model.
    X_test, y_test = X[290:], y[290:]
    padded = TINY["lookback"] - 1
    paths = write_artifacts(pipe, tmp_path / "gap", X_test=X_test, y_test=y_test)
    masked = y_test.copy()
    masked.iloc[:padded] = np.nan
    scaled = pipe[:-1].transform(X_test)
    lower, upper = ens.predict_interval(scaled, 0.9, observed=masked)
    table = read_table(paths["predictions_xlsx"], target="observed")
    np.testing.assert_allclose(table.X["lower"], lower)
    np.testing.assert_allclose(table.X["upper"], upper)
    bands = json.loads(paths["metrics_json"].read_text())["periods"]["test"]["intervals"]
    for band in ("fixed", "adaptive"):
        assert bands["bands"][band]["q"]["n"] == len(y_test) - padded
    assert bands["bands"]["adaptive"]["q"]["coverage"] == pytest.approx(
        ens.score_intervals(scaled, masked, adaptive=True)["outputs"][0]["coverage"])


def test_calibration_scores_are_residuals_in_units_of_the_offset_spread(fitted):
    _, X, y = fitted
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0,
                       scale="spread").fit(X[:300], y[:300])
    n_valid = len(ens.calibration_scores_)
    members = np.stack([m.predict(X[:300]) for m in ens.estimators_])[:, 300 - n_valid:]
    mean, std = members.mean(axis=0), members.std(axis=0)
    # u = std + mean(std): the typical spread keeps the scale away from zero.
    expected = (y[300 - n_valid:300] - mean) / (std + std.mean())
    np.testing.assert_allclose(ens.calibration_scores_[:, 0], expected, rtol=1e-10)


def test_interval_scores_land_under_their_output_names(fitted):
    from sktlag.report import metrics_summary

    ens, _, _ = fitted
    obs = np.arange(20.0).reshape(10, 2)
    scores = {"nominal_coverage": 0.9, "calibration": "validation", "scale": "flow",
              "min_value": 0.0, "adapt_rate": None,
              "outputs": [{"coverage": 0.1, "mean_width": 1.0, "crps": 0.5, "n": 10},
                          {"coverage": 0.2, "mean_width": 2.0, "crps": 0.6, "n": 10}]}
    summary = metrics_summary(ens, {"test": (obs, obs + 1.0, None)}, names=["up", "down"],
                              intervals={"test": {"fixed": scores}})
    intervals = summary["periods"]["test"]["intervals"]
    fixed = intervals["bands"]["fixed"]
    assert fixed["up"]["coverage"] == 0.1 and fixed["down"]["coverage"] == 0.2
    assert intervals["nominal_coverage"] == 0.9 and intervals["adapt_rate"] is None
    assert intervals["scale"] == "flow" and intervals["min_value"] == 0.0


def test_the_evolution_figure_shows_every_members_depth(fitted):
    from sktlag.plots import plot_evolution

    ens, _, _ = fitted
    ax_nse, ax_depth = plot_evolution(ens).axes
    assert len(ax_depth.get_lines()) == len(ens.estimators_)
    for line, member in zip(ax_depth.get_lines(), ens.estimators_, strict=True):
        # Each step line ends at its member's final architecture depth (drawn offset by
        # a few hundredths so that equal depths stay visible).
        assert abs(line.get_ydata()[-1] - member.history_[-1]["n_layers"]) < 0.2
    assert ", ".join(map(str, ens.n_layers_)) in ax_nse.figure.get_suptitle()


def test_every_level_and_the_high_flows_are_scored_against_a_direct_count(fitted):
    ens, X, y = fitted
    threshold = np.quantile(y[:300], 0.9)
    np.testing.assert_allclose(ens.high_flow_threshold_, [threshold])
    scores = ens.score_intervals(X[300:], y[300:], coverage=0.9)
    assert scores["method"] == "fixed" and scores["calibration"] == "validation"
    out = scores["outputs"][0]
    assert list(out["levels"]) == ["0.5", "0.8", "0.9", "0.95"]
    high = y[300:] > threshold
    assert out["n_high_flow"] == high.sum() > 0
    for key, level in out["levels"].items():
        lower, upper = ens.predict_interval(X[300:], coverage=float(key))
        inside = (y[300:] >= lower) & (y[300:] <= upper)
        assert level["coverage"] == pytest.approx(inside.mean())
        assert level["high_flow_coverage"] == pytest.approx(inside[high].mean())
        assert level["relative_width"] == pytest.approx(np.mean(upper - lower) / np.std(y[300:]))
    assert {k: out[k] for k in ("coverage", "mean_width")} == {
        k: out["levels"]["0.9"][k] for k in ("coverage", "mean_width")}


def test_the_adaptive_band_of_a_day_reads_only_earlier_observations(fitted):
    ens, X, y = fitted
    observed = y[300:].copy()
    lower, upper = ens.predict_interval(X[300:], 0.9, observed=observed, adapt_rate=0.05)
    # Changing the observation of day 60 changes no band up to day 60, and the later ones.
    changed = observed.copy()
    changed[60] += 100.0
    lower2, upper2 = ens.predict_interval(X[300:], 0.9, observed=changed, adapt_rate=0.05)
    np.testing.assert_array_equal(lower[:61], lower2[:61])
    np.testing.assert_array_equal(upper[:61], upper2[:61])
    assert not np.array_equal(upper[61:], upper2[61:])
    scores = ens.score_intervals(X[300:], y[300:], adaptive=True, adapt_rate=0.05)
    inside = (y[300:] >= lower) & (y[300:] <= upper)
    assert scores["method"] == "adaptive"
    assert scores["outputs"][0]["coverage"] == pytest.approx(inside.mean())
    with pytest.raises(ValueError, match="observed holds 99 rows"):
        ens.predict_interval(X[300:], 0.9, observed=observed[:-1])


def test_adaptive_band_holds_where_the_noise_grows_in_the_test_years():
    # Noise that grows over the test years: the band calibrated on the fit period is
    # too narrow there; the adaptive one learns from each day's observation.
    X, y = make_series(n_rows=1400, seed=4)
    rng = np.random.default_rng(4)
    noise = rng.normal(size=1400) * np.where(np.arange(1400) < 400, 0.05, 2.0) * y.std()
    y = y + noise
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0).fit(X[:400], y[:400])
    rate = 0.02
    fixed = ens.score_intervals(X[400:], y[400:], history=X[:400])["outputs"][0]
    adaptive = ens.score_intervals(X[400:], y[400:], history=X[:400], adaptive=True,
                                   adapt_rate=rate)["outputs"][0]
    # The stated tolerance of the adaptive band over T observed days.
    tolerance = (0.9 + rate) / (rate * 1000)
    assert abs(adaptive["coverage"] - 0.9) <= tolerance
    assert fixed["coverage"] < 0.9 - tolerance


def test_block_calibration_scores_every_member_out_of_sample():
    from sktlag.windows import fit_split

    X, y = make_series(n_rows=400)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0,
                       calibration="blocks").fit(X[:300], y[:300])
    plain_train, plain_valid = fit_split(y[:300, None], TINY["lookback"],
                                         TLAGRegressor().validation_fraction)
    blocks = np.array_split(plain_train, 3)
    for member, block in zip(ens.estimators_, blocks, strict=True):
        # Each member masks its own block only, and validates on the plain windows.
        assert member.n_masked_targets_ == len(block)
        masked = y[:300, None].copy()
        masked[block] = np.nan
        train, valid = fit_split(masked, member.lookback, member.validation_fraction)
        np.testing.assert_array_equal(valid, plain_valid)
        assert len(train) == len(plain_train) - len(block)
    # A score for every training and validation window, in time order.
    assert len(ens.calibration_scores_) == len(plain_train) + len(plain_valid)
    members = np.stack([m.predict(X[:300]) for m in ens.estimators_])
    first = blocks[0]
    scale = interval_scale(members[:, first].std(axis=0), ens.spread_offset_,
                           members[:, first].mean(axis=0), ens.flow_level_)
    np.testing.assert_allclose(ens.calibration_scores_[: len(first), 0],
                               (y[first] - members[0, first]) / scale, rtol=1e-10)
    lower, upper = ens.predict_interval(X[300:], 0.9)
    assert np.all(upper > lower)
    with pytest.raises(ValueError, match="needs one series"):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, calibration="blocks").fit(
            X[:300], y[:300], groups=np.repeat([0, 1], 150))
    with pytest.raises(ValueError, match="needs n_members >= 2"):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=1, calibration="blocks").fit(
            X[:300], y[:300])
    # The members' settings are checked before the blocks are cut with them.
    for bad in ({"lookback": 0}, {"validation_fraction": 1.5},
                {"missing_target": "bogus"}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=f"'{name}' parameter of TLAGRegressor"):
            TLAGEnsemble(TLAGRegressor(**{**TINY, **bad}), n_members=2,
                         calibration="blocks").fit(X[:300], y[:300])
    # The artifacts' periods are the plain split every member validates on.
    from sktlag.report import fit_periods

    periods = fit_periods(ens, y[:300])
    np.testing.assert_array_equal(periods["validation"], plain_valid)
    np.testing.assert_array_equal(periods["train"], plain_train)


def test_a_block_calibrated_ensemble_round_trips_through_a_model_file(tmp_path):
    from sktlag import load_model, save_model
    from sktlag.report import fit_periods

    X, y = make_series(n_rows=300)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, calibration="blocks",
                       random_state=0).fit(X, y)
    loaded = load_model(save_model(ens, tmp_path / "blocks.pth"))
    assert loaded.calibration == "blocks"
    # The template keeps its own split, not the members' adjusted one.
    assert loaded.estimator.validation_fraction == TLAGRegressor().validation_fraction
    assert loaded.estimator.missing_target == "raise"
    for period in ("train", "validation"):
        np.testing.assert_array_equal(fit_periods(loaded, y)[period], fit_periods(ens, y)[period])
    np.testing.assert_array_equal(loaded.high_flow_threshold_, ens.high_flow_threshold_)
    for a, b in zip(loaded.predict_interval(X, observed=y), ens.predict_interval(X, observed=y),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_observations_with_a_missing_value_code_or_beyond_float32_are_refused(fitted):
    # Scored against -999 (a gauge's missing day) the band would miss it, and an adaptive
    # band would widen for it.
    ens, X, y = fitted
    coded = y[300:].copy()
    coded[12] = -999.0
    with pytest.raises(ValueError, match="y holds -999 in rows 12"):
        ens.score_intervals(X[300:], coded)
    with pytest.raises(ValueError, match="observed holds -999 in rows 12"):
        ens.predict_interval(X[300:], observed=coded)
    coded[12] = 1e300
    with pytest.raises(ValueError, match=r"y holds 1e\+300 at row 12"):
        ens.score_intervals(X[300:], coded)


def test_block_calibration_keeps_the_templates_rule_on_missing_targets():
    X, y = make_series(n_rows=300)
    y = y.copy()
    y[40] = np.nan
    with pytest.raises(ValueError, match="y contains NaN at row 40"):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, calibration="blocks").fit(X, y)
    ens = TLAGEnsemble(TLAGRegressor(**TINY, missing_target="mask"), n_members=2,
                       calibration="blocks", random_state=0).fit(X, y)
    # The unobserved day has no window; every other training window has a score, and
    # each member masked its block on top of the missing day.
    from sktlag.windows import fit_split

    train, valid = fit_split(y[:, None], TINY["lookback"], TLAGRegressor().validation_fraction)
    assert 40 not in train and len(ens.calibration_scores_) == len(train) + len(valid)
    assert not np.isnan(ens.calibration_scores_).any()
    blocks = np.array_split(train, 2)
    assert [m.n_masked_targets_ for m in ens.estimators_] == [len(b) + 1 for b in blocks]


def test_adaptive_band_runs_per_output_and_per_series():
    X, y = make_series(n_rows=320, n_outputs=2)
    groups = np.repeat([0, 1], 160)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0).fit(
        X, y, groups=groups)
    mean = ens.predict(X, groups=groups)
    lower, upper = ens.predict_interval(X, 0.8, groups=groups, observed=y, adapt_rate=0.1)
    assert lower.shape == (320, 2)
    # Each series starts afresh: the second one's band equals that of the series alone.
    alone = ens.predict_interval(X[160:], 0.8, groups=groups[160:], observed=y[160:],
                                 adapt_rate=0.1)
    np.testing.assert_allclose(lower[160:], alone[0])
    np.testing.assert_allclose(upper[160:], alone[1])
    # And each output adapts to its own observations.
    changed = y.copy()
    changed[:150, 1] += 50.0
    lower2, _ = ens.predict_interval(X, 0.8, groups=groups, observed=changed, adapt_rate=0.1)
    np.testing.assert_array_equal(lower2[:, 0], lower[:, 0])
    assert not np.array_equal(lower2[:160, 1], lower[:160, 1])
    assert np.all(np.isfinite(mean))


def test_an_ensemble_saved_before_block_calibration_still_loads(fitted):
    import math
    import pickle

    _, X, y = fitted
    # Ensembles of then scored in units of the spread.
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                       scale="spread").fit(X[:300], y[:300])
    state = dict(ens.__getstate__())
    del state["calibration"], state["high_flow_threshold_"], state["scale"], state["flow_level_"]
    del state["calibration_"], state["scale_"], state["error_correction_"]
    old = TLAGEnsemble.__new__(TLAGEnsemble)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.get_params()["calibration"] == "validation"
    # Its scores are in units of the spread, whatever the default is now.
    assert old.get_params()["scale"] == "spread" and np.isnan(old.flow_level_).all()
    out = old.score_intervals(X[300:], y[300:])["outputs"][0]
    assert math.isnan(out["high_flow_coverage"]) and out["n_high_flow"] == 0
    assert out["coverage"] == ens.score_intervals(X[300:], y[300:])["outputs"][0]["coverage"]


def test_a_model_file_written_before_the_flow_scale_scores_in_units_of_the_spread(
        fitted, tmp_path):
    import torch

    from sktlag import load_model, save_model

    _, X, y = fitted
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                       scale="spread").fit(X[:300], y[:300])
    path = save_model(ens, tmp_path / "old.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    del payload["ensemble"]["scale"], payload["ensemble"]["flow_level"]
    torch.save(payload, path)
    old = load_model(path)
    assert old.scale == "spread" and np.isnan(old.flow_level_).all()
    for a, b in zip(old.predict_interval(X[300:]), ens.predict_interval(X[300:]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ensemble_files_are_refused_by_readers_that_would_misread_their_bands(fitted):
    from sktlag.persistence import FORMAT_VERSION, model_payload

    # A reader of format version 2 (sktlag 0.2.0) took every ensemble's scores for
    # spread-scaled scores of the validation windows without a lowest value, and
    # would give other bands than the file's without a word: it must refuse the file.
    ens, X, y = fitted
    assert model_payload(ens)["format_version"] == FORMAT_VERSION > 2
    # A regressor's entries have not changed since version 1: its files stay readable
    # there.
    assert model_payload(ens.estimators_[0])["format_version"] == 2


def test_flow_scaled_scores_and_bands_grow_with_the_predicted_flow(fitted, tmp_path):
    from sktlag import load_model, save_model
    from sktlag.conformal import FLOW_FLOOR

    # The default scale.
    ens, X, y = fitted
    assert ens.scale == "flow"
    n_valid = len(ens.calibration_scores_)
    members = np.stack([m.predict(X[:300]) for m in ens.estimators_])[:, 300 - n_valid:]
    mean, std = members.mean(axis=0), members.std(axis=0)
    level = np.maximum(mean, 0).mean()
    np.testing.assert_allclose(ens.flow_level_, [level], rtol=1e-12)
    u = std + std.mean() * (FLOW_FLOOR + np.maximum(mean, 0) / level)
    np.testing.assert_allclose(ens.calibration_scores_[:, 0], (y[300 - n_valid:300] - mean) / u,
                               rtol=1e-10)
    # The band is u times a width in scores: its width follows the scale day by day.
    test = np.stack([m.predict(X[300:]) for m in ens.estimators_])
    u_test = test.std(axis=0) + std.mean() * (FLOW_FLOOR + np.maximum(test.mean(axis=0), 0) / level)
    lower, upper = ens.predict_interval(X[300:], 0.9)
    np.testing.assert_allclose((upper - lower) / u_test, ((upper - lower) / u_test)[0], rtol=1e-9)
    assert ens.score_intervals(X[300:], y[300:])["scale"] == "flow"
    loaded = load_model(save_model(ens, tmp_path / "flow.pth"))
    assert loaded.scale == "flow"
    np.testing.assert_array_equal(loaded.flow_level_, ens.flow_level_)
    for a, b in zip(loaded.predict_interval(X[300:]), (lower, upper), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_refit_on_an_array_forgets_the_column_names_of_a_frame():
    pd = pytest.importorskip("pandas")
    X, y = make_series(n_rows=300)
    frame = pd.DataFrame(X, columns=[f"P{k}" for k in range(X.shape[1])])
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0).fit(frame, y)
    np.testing.assert_array_equal(ens.feature_names_in_, frame.columns)
    ens.fit(X, y)  # as every scikit-learn estimator: a refit resets what fit learned
    assert not hasattr(ens, "feature_names_in_")
    assert not hasattr(ens.estimators_[0], "feature_names_in_")


def test_a_failed_refit_leaves_the_fitted_ensemble_as_it_was():
    X, y = make_series(n_rows=300)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0).fit(X, y)
    seeds, before = ens.seeds_.copy(), ens.predict(X)
    ens.set_params(n_members=3)
    with pytest.raises(ValueError, match="rows"):
        ens.fit(X[:8], y[:8])
    # The seeds belong to the members: three seeds beside two members would name a fit
    # that never happened.
    np.testing.assert_array_equal(ens.seeds_, seeds)
    assert len(ens.estimators_) == 2
    np.testing.assert_array_equal(ens.predict(X), before)


def test_the_ensemble_checks_the_columns_once_in_its_own_name():
    pd = pytest.importorskip("pandas")
    X, y = make_series(n_rows=300)
    frame = pd.DataFrame(X, columns=[f"P{k}" for k in range(X.shape[1])])
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0).fit(frame, y)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        ens.predict(X)
    names = [str(w.message) for w in said if "feature names" in str(w.message)]
    assert len(names) == 1 and "TLAGEnsemble" in names[0], names
    with pytest.raises(ValueError, match="TLAGEnsemble is expecting 3 features"), \
            pytest.warns(UserWarning, match="TLAGEnsemble was fitted with feature names"):
        ens.predict_interval(np.ones((20, 4)))
    # The history is checked as well, once.
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        ens.predict(frame.iloc[50:], history=X[:50])
    names = [str(w.message) for w in said if "feature names" in str(w.message)]
    assert len(names) == 1 and "TLAGEnsemble" in names[0], names


def test_bands_raised_to_a_lowest_value_of_zero_keep_their_coverage(fitted, tmp_path):
    import pickle

    from sktlag import load_model, save_model

    free, X, y = fitted  # no limit by default; the target is never negative
    assert free.min_value is None and y.min() >= 0
    np.testing.assert_array_equal(free.min_value_, [-np.inf])
    # The same members, with the bands of discharge.
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0,
                       min_value=0).fit(X[:300], y[:300])
    np.testing.assert_array_equal(ens.min_value_, [0.0])
    for observed in (None, y[300:]):
        lower, upper = free.predict_interval(X[300:], observed=observed)
        assert (lower < 0).any()
        raised = ens.predict_interval(X[300:], observed=observed)
        np.testing.assert_array_equal(raised[0], np.maximum(lower, 0.0))
        np.testing.assert_array_equal(raised[1], np.maximum(upper, 0.0))
    assert ens.predictive_samples(X[300:]).min() == 0.0
    for adaptive in (False, True):
        ours, theirs = (e.score_intervals(X[300:], y[300:], adaptive=adaptive)["outputs"][0]
                        for e in (ens, free))
        assert ours["coverage"] == theirs["coverage"]
        assert ours["mean_width"] < theirs["mean_width"] and ours["crps"] < theirs["crps"]
    # The scores name the limit the bands were raised to, the fit's.
    assert ens.score_intervals(X[300:], y[300:])["min_value"] == 0.0
    assert free.score_intervals(X[300:], y[300:])["min_value"] is None
    changed = copy.deepcopy(ens).set_params(min_value=None)
    assert changed.score_intervals(X[300:], y[300:])["min_value"] == 0.0
    # The limit travels in model files and pickles; pickles from before it have none.
    loaded = load_model(save_model(ens, tmp_path / "floor.pth"))
    assert loaded.min_value == 0
    np.testing.assert_array_equal(loaded.min_value_, ens.min_value_)
    np.testing.assert_array_equal(loaded.predict_interval(X[300:])[0],
                                  ens.predict_interval(X[300:])[0])
    state = dict(ens.__getstate__())
    del state["min_value"], state["min_value_"]
    old = TLAGEnsemble.__new__(TLAGEnsemble)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.min_value is None
    np.testing.assert_array_equal(old.predict_interval(X[300:])[0],
                                  free.predict_interval(X[300:])[0])


def test_a_model_file_written_before_the_lowest_value_gives_bands_without_it(
        fitted, tmp_path):
    import torch

    from sktlag import load_model, save_model

    _, X, y = fitted
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                       min_value=0.0).fit(X[:300], y[:300])
    path = save_model(ens, tmp_path / "old.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    del payload["ensemble"]["min_value"], payload["ensemble"]["lowest_values"]
    torch.save(payload, path)
    old = load_model(path)
    assert old.min_value is None
    np.testing.assert_array_equal(old.min_value_, [-np.inf])
    assert (old.predict_interval(X[300:])[0] < 0).any()


@pytest.mark.parametrize("bad", [np.nan, np.inf, "auto", True])
def test_a_lowest_value_that_is_not_a_finite_number_is_refused(bad):
    X, y = make_series(n_rows=300)
    with pytest.raises(ValueError, match="min_value"):
        TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, min_value=bad).fit(X, y)


def _band_by_definition(ens, X, observed, coverage=0.9):
    """The adaptive band from the members' predictions and the fitted entries, by the
    pure functions of ``sktlag.conformal``."""
    members = np.stack([m.predict(X) for m in ens.estimators_])[:, :, None]
    mean, std = members.mean(axis=0), members.std(axis=0)
    centre = corrected_centre(mean, observed[:, None], ens.error_coefficient_)
    scale = interval_scale(std, ens.spread_offset_, centre, ens.flow_level_)
    # Each day's forecast of one day ahead; the first day follows no observed day: no
    # such forecast, and the band of the uncorrected forecast.
    scores = (observed[:, None] - centre) / scale
    scores[0] = np.nan
    low, high, _ = adaptive_levels(ens.corrected_scores_, scores, coverage, ADAPT_RATE)
    low[0], high[0] = score_quantiles(ens.calibration_scores_, coverage)
    return (centre + scale * low)[:, 0], (centre + scale * high)[:, 0]


def _on_the_validation_windows(ens, X, y):
    """The members' mean, spread and errors on the validation windows of a fit on the
    first 300 rows, and those windows' rows."""
    valid = np.arange(300 - len(ens.calibration_scores_), 300)
    members = np.stack([m.predict(X[:300]) for m in ens.estimators_])[:, valid, None]
    mean = members.mean(axis=0)
    return mean, members.std(axis=0), y[valid, None] - mean, valid


def test_corrected_scores_follow_their_definition(fitted):
    ens, X, y = fitted
    # The validation windows' own errors only: the days before them are in sample.
    mean, std, errors, valid = _on_the_validation_windows(ens, X, y)
    phi = error_coefficient(errors)
    np.testing.assert_allclose(ens.error_coefficient_, phi, rtol=1e-12)
    assert 0 < phi[0] <= 1
    centre = corrected_centre(mean, y[valid, None], phi)
    scale = interval_scale(std, ens.spread_offset_, centre, ens.flow_level_)
    np.testing.assert_allclose(ens.corrected_scores_, (y[valid, None] - centre) / scale,
                               rtol=1e-10)


def test_the_adaptive_band_is_centred_on_the_corrected_forecast(fitted):
    ens, X, y = fitted
    lower, upper = ens.predict_interval(X[300:], observed=y[300:])
    expected = _band_by_definition(ens, X[300:], y[300:])
    np.testing.assert_allclose(lower, expected[0], rtol=1e-10)
    np.testing.assert_allclose(upper, expected[1], rtol=1e-10)
    # The scores of the adaptive method are those of this band.
    out = ens.score_intervals(X[300:], y[300:], adaptive=True)
    assert out["outputs"][0]["coverage"] == pytest.approx(
        np.mean((y[300:] >= lower) & (y[300:] <= upper)))
    assert out["error_coefficient"] == ens.error_coefficient_.tolist()
    assert ens.score_intervals(X[300:], y[300:])["error_coefficient"] is None


def test_the_corrected_forecast_is_the_mean_moved_by_the_last_observed_error(fitted):
    ens, X, y = fitted
    observed = y[300:].copy()
    observed[[10, 11, 12, 40]] = np.nan  # days whose discharge is not known
    corrected = ens.predict_corrected(X[300:], observed)
    mean = ens.predict(X[300:])
    phi = ens.error_coefficient_[0]
    assert 0 < phi < 1
    expected = mean.copy()
    for t in range(1, len(mean)):  # the definition, day by day
        s = max(d for d in range(t) if np.isfinite(observed[d])) if np.isfinite(
            observed[:t]).any() else None
        if s is not None:
            expected[t] = mean[t] + phi ** (t - s) * (observed[s] - mean[s])
    np.testing.assert_allclose(corrected, expected, rtol=1e-10)
    assert corrected[0] == mean[0]  # nothing observed before it
    # Each series on its own: the first day of the second one keeps the mean.
    groups = np.repeat([0, 1], [50, 50])
    split = ens.predict_corrected(X[300:], observed, groups=groups)
    assert split[50] == pytest.approx(ens.predict(X[300:], groups=groups)[50])
    np.testing.assert_allclose(split[:50], corrected[:50], rtol=1e-10)
    with pytest.raises(ValueError, match="observed holds 99 rows"):
        ens.predict_corrected(X[300:], observed[1:])


def test_without_error_correction_the_adaptive_band_is_centred_on_the_mean(fitted):
    _, X, y = fitted
    plain = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0,
                         error_correction=None).fit(X[:300], y[:300])
    np.testing.assert_array_equal(plain.error_coefficient_, [0.0])
    np.testing.assert_array_equal(plain.corrected_scores_, plain.calibration_scores_)
    mean = plain.predict(X[300:])
    # The band's definition with phi = 0: every day's centre is the mean.
    low, _ = _band_by_definition(plain, X[300:], y[300:])
    np.testing.assert_allclose(plain.predict_interval(X[300:], observed=y[300:])[0],
                               low, rtol=1e-10)
    np.testing.assert_allclose(plain.predict_corrected(X[300:], y[300:]), mean, rtol=1e-12)


def test_settings_changed_after_fit_change_nothing_until_the_next_fit(fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, y = fitted
    assert (ens.calibration_, ens.scale_, ens.error_correction_) == ("validation", "flow",
                                                                     "ar1")

    def outputs(model):
        return (*model.predict_interval(X[300:]), *model.predict_interval(X[300:],
                                                                          observed=y[300:]),
                model.predict_corrected(X[300:], y[300:]))

    before = outputs(ens)
    changed = copy.deepcopy(ens).set_params(scale="spread", error_correction=None,
                                            calibration="blocks")
    for a, b in zip(outputs(changed), before, strict=True):
        np.testing.assert_array_equal(a, b)
    scored = changed.score_intervals(X[300:], y[300:])
    assert (scored["scale"], scored["calibration"]) == ("flow", "validation")
    # A file keeps what the fit calibrated with, and loads with it as the parameters.
    loaded = load_model(save_model(changed, tmp_path / "changed.pth"))
    assert (loaded.calibration, loaded.scale, loaded.error_correction) == (
        "validation", "flow", "ar1")
    for a, b in zip(outputs(loaded), before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # The next fit follows the parameters.
    changed.set_params(calibration="validation").fit(X[:300], y[:300])
    assert (changed.scale_, changed.error_correction_) == ("spread", None)
    np.testing.assert_array_equal(changed.error_coefficient_, [0.0])


def test_the_corrected_band_is_narrower_where_errors_persist():
    # The target carries a slow drift the inputs cannot explain (errors that last for
    # weeks, as a drifting baseflow's): yesterday's error tells most of today's.
    X, y = make_series(n_rows=700)
    rng = np.random.default_rng(3)
    drift = np.zeros(700)
    for t in range(1, 700):
        drift[t] = 0.97 * drift[t - 1] + 0.1 * rng.standard_normal()
    y = y + drift
    bands = {}
    for correction in ("ar1", None):
        ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                           error_correction=correction).fit(X[:500], y[:500])
        bands[correction] = ens.score_intervals(X[500:], y[500:], adaptive=True)
        if correction:
            assert ens.error_coefficient_[0] > 0.5
    corrected, plain = (bands[c]["outputs"][0] for c in ("ar1", None))
    assert corrected["mean_width"] < 0.8 * plain["mean_width"]
    assert abs(corrected["coverage"] - 0.9) < 0.06
    assert corrected["crps"] < plain["crps"]


def test_ensembles_saved_before_the_error_correction_centre_the_band_on_the_mean(
        fitted, tmp_path):
    import pickle

    from sktlag import load_model, save_model

    ens, X, y = fitted
    mean, std = ens.predict(X[300:], return_std=True)
    scale = interval_scale(std[:, None], ens.spread_offset_, mean[:, None], ens.flow_level_)
    plain, _ = interval_bounds(mean[:, None], scale, ens.calibration_scores_, 0.9,
                               y[300:, None])
    # (Before the error correction, the longer leads had no scores of their own either.)
    lead_keys = ("calibration_errors", "calibration_mean", "calibration_spread",
                 "calibration_starts")
    state = dict(ens.__getstate__())
    del state["error_correction"], state["error_coefficient_"], state["corrected_scores_"]
    # (read from the parameters then)
    del state["calibration_"], state["scale_"], state["error_correction_"]
    for key in lead_keys:
        del state[f"{key}_"]
    pickled = TLAGEnsemble.__new__(TLAGEnsemble)
    pickled.__setstate__(pickle.loads(pickle.dumps(state)))
    path = save_model(ens, tmp_path / "old.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("error_correction", "error_coefficient", "corrected_scores", *lead_keys):
        del payload["ensemble"][key]
    torch.save(payload, path)
    for old in (pickled, load_model(path)):
        assert old.error_correction is None
        np.testing.assert_allclose(old.predict_interval(X[300:], observed=y[300:])[0],
                                   plain[:, 0], rtol=1e-10)
    # A file written now keeps its correction.
    again = load_model(save_model(ens, tmp_path / "new.pth"))
    assert again.error_correction == "ar1"
    np.testing.assert_array_equal(again.corrected_scores_, ens.corrected_scores_)
    np.testing.assert_array_equal(again.predict_interval(X[300:], observed=y[300:])[0],
                                  ens.predict_interval(X[300:], observed=y[300:])[0])


def test_an_unobserved_calibration_day_carries_the_error_as_prediction_does():
    # A validation day without discharge: calibration must correct the day after it by
    # phi ** 2 times the error before it, as predict_interval does, or the first pool
    # holds scores that prediction never gives.
    X, y = make_series(n_rows=320)
    y = y.copy()
    y[280] = np.nan
    ens = TLAGEnsemble(TLAGRegressor(**TINY, missing_target="mask"), n_members=2,
                       random_state=0).fit(X, y)
    assert ens.error_coefficient_[0] > 0
    first = 320 - len(ens.calibration_scores_) - 1  # one day of the stretch is missing
    days = np.arange(first, 320)
    members = np.stack([m.predict(X) for m in ens.estimators_])[:, days, None]
    mean, std = members.mean(axis=0), members.std(axis=0)
    centre = corrected_centre(mean, y[days, None], ens.error_coefficient_)
    scale = interval_scale(std, ens.spread_offset_, centre, ens.flow_level_)
    expected = ((y[days, None] - centre) / scale)[days != 280]
    np.testing.assert_allclose(ens.corrected_scores_, expected, rtol=1e-10)


def test_without_error_correction_block_scores_are_the_calibration_scores():
    X, y = make_series(n_rows=300)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0,
                       calibration="blocks", error_correction=None).fit(X, y)
    np.testing.assert_array_equal(ens.corrected_scores_, ens.calibration_scores_)


def test_the_architecture_text_names_the_fitted_correction(fitted):
    from sktlag.report import architecture_text

    ens = copy.deepcopy(fitted[0])
    phi = ens.error_coefficient_[0]
    # The band uses the fitted coefficient, whatever the parameter says after the fit.
    ens.set_params(error_correction=None)
    assert (f"adaptive band: centred on the mean plus the last observed error times "
            f"{phi:.3f}") in architecture_text(ens)


def test_the_scores_of_longer_leads_follow_their_definition(fitted):
    ens, X, y = fitted
    mean, std, errors, _ = _on_the_validation_windows(ens, X, y)
    np.testing.assert_allclose(ens.calibration_errors_, errors, rtol=1e-10)
    np.testing.assert_array_equal(ens.calibration_starts_, [0])
    phi = ens.error_coefficient_
    for lead in (2, 7):
        shift = np.full_like(errors, np.nan)
        shift[lead:] = phi ** lead * errors[:-lead]
        scale = interval_scale(std, ens.spread_offset_, mean + shift, ens.flow_level_)
        np.testing.assert_allclose(ens._lead_scores(lead), (errors - shift) / scale,
                                   rtol=1e-10)
    np.testing.assert_array_equal(ens._lead_scores(0), ens.calibration_scores_)
    np.testing.assert_array_equal(ens._lead_scores(1), ens.corrected_scores_)


def test_a_forecast_past_the_last_observation_widens_with_its_lead(fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, y = fitted
    observed = y[300:].copy()
    observed[60:] = np.nan  # the forecast: 40 days after the last observed one
    lower, upper = ens.predict_interval(X[300:], observed=observed)
    mean, std = ens.predict(X[300:], return_std=True)
    leads = ens._leads(mean[:, None], std[:, None])
    centre = ens.predict_corrected(X[300:], observed)
    for day in (61, 70, 99):
        _, _, low, high = lead_bounds(leads, observed[:, None], day - 59, 0.9)
        scale = interval_scale(std[:, None], ens.spread_offset_, centre[:, None],
                               ens.flow_level_)[day, 0]
        np.testing.assert_allclose([lower[day], upper[day]],
                                   [centre[day] + scale * low[day, 0],
                                    centre[day] + scale * high[day, 0]], rtol=1e-10)
    scales = interval_scale(std[:, None], ens.spread_offset_, centre[:, None],
                            ens.flow_level_)[:, 0]
    widths = (upper - lower) / scales  # in units of each day's scale
    assert widths[99] > 1.2 * widths[60]
    # A model file keeps what the longer leads need; one written before gives every
    # day after the last observation the band of the day after it.
    path = save_model(ens, tmp_path / "ens.pth")
    again = load_model(path)
    for a, b in zip(again.predict_interval(X[300:], observed=observed), (lower, upper),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("calibration_errors", "calibration_mean", "calibration_spread",
                "calibration_starts"):
        del payload["ensemble"][key]
    torch.save(payload, path)
    old = load_model(path)
    assert old.calibration_errors_ is None
    old_lower, old_upper = old.predict_interval(X[300:], observed=observed)
    old_width = (old_upper - old_lower)[60:]
    np.testing.assert_allclose(old_width / interval_scale(
        std[60:, None], ens.spread_offset_, centre[60:, None], ens.flow_level_)[:, 0],
        old_width[0] / interval_scale(std[60:61, None], ens.spread_offset_,
                                      centre[60:61, None], ens.flow_level_)[0, 0],
        rtol=1e-10)
    # (The first day differs too: no observed day precedes it.)
    assert old_lower[0] != lower[0]


def test_forecast_floods_get_a_band_of_their_own(fitted, tmp_path):
    from sktlag import load_model, save_model

    fitted_ens, X, y = fitted
    classed = copy.deepcopy(fitted_ens)
    ens = TLAGEnsemble(TLAGRegressor(**TINY), n_members=3, random_state=0,
                       band_classes=None).fit(X[:300], y[:300])
    assert classed.band_classes_ == "high_flow" and ens.band_classes_ is None
    np.testing.assert_array_equal(classed.calibration_scores_, ens.calibration_scores_)
    # The tiny members forecast no flood above the 90th percentile: a lower threshold
    # gives both classes enough windows.
    for model in (classed, ens):
        model.high_flow_threshold_ = np.quantile(ens.calibration_mean_, 0.6, axis=0)
    mean, std = (a[:, None] for a in classed.predict(X[300:], return_std=True))
    classes = tuple(high_flow_classes(m, classed.high_flow_threshold_)
                    for m in (mean, classed.calibration_mean_))
    assert classes[0].any() and not classes[0].all()
    expected = interval_bounds(mean, classed._scale(mean, std), classed.calibration_scores_,
                               0.9, classes=classes)
    for got, want, pooled in zip(classed.predict_interval(X[300:]), expected,
                                 ens.predict_interval(X[300:]), strict=True):
        np.testing.assert_allclose(got, want[:, 0], rtol=1e-12)
        assert not np.allclose(got, pooled)
    observed = y[300:, None]
    centre = corrected_centre(mean, observed, classed.error_coefficient_)
    expected = interval_bounds(centre, classed._scale(centre, std), classed.corrected_scores_,
                               0.9, observed, leads=classed._leads(mean, std), classes=classes)
    adaptive = classed.predict_interval(X[300:], observed=y[300:])
    for got, want in zip(adaptive, expected, strict=True):
        np.testing.assert_allclose(got, want[:, 0], rtol=1e-12)
    assert classed.score_intervals(X[300:], y[300:])["band_classes"] == "high_flow"
    # A file keeps the classes.
    loaded = load_model(save_model(classed, tmp_path / "classed.pth"))
    assert (loaded.band_classes, loaded.band_classes_) == ("high_flow", "high_flow")
    for got, want in zip(loaded.predict_interval(X[300:], observed=y[300:]), adaptive,
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("key, value", [("band_classes", "none"), ("scale", "log"),
                                        ("calibration", "block"),
                                        ("error_correction", "ar2")])
def test_a_model_file_with_an_unknown_band_setting_is_refused(fitted, tmp_path, key, value):
    import torch

    from sktlag import load_model, save_model
    from sktlag.persistence import ModelFileError

    path = save_model(fitted[0], tmp_path / "edited.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["ensemble"][key] = value
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=rf"inconsistent: .*'{key}' parameter"):
        load_model(path)


def test_a_model_file_holds_the_members_fitted_whatever_n_members_says_since(
        fitted, tmp_path):
    from sktlag import load_model, save_model

    ens, X, _ = fitted
    changed = copy.deepcopy(ens).set_params(n_members=5)
    loaded = load_model(save_model(changed, tmp_path / "changed.pth"))
    assert loaded.n_members == len(loaded.estimators_) == 3
    np.testing.assert_array_equal(loaded.predict(X[300:]), ens.predict(X[300:]))


def test_a_class_with_too_few_windows_for_a_coverage_is_said_to_span_them_all(fitted):
    # 60 calibration windows are enough for a 95 % band; the 25 forecast floods and the
    # 35 other windows, each a band of its own, are not, and the band said nothing.
    import warnings

    ens, X, y = fitted
    classed = copy.deepcopy(ens)
    classed.band_classes_ = "high_flow"
    classed.high_flow_threshold_ = np.sort(classed.calibration_mean_[:, 0])[-26:-25]
    assert (classed.calibration_mean_[:, 0] > classed.high_flow_threshold_[0]).sum() == 25
    with pytest.warns(UserWarning, match=r"a 0.95 band needs 39 calibration scores, and "
                                         r"this ensemble has fewer \(output 0: 25\)"):
        levels = classed.score_intervals(X[300:], y[300:], coverage=0.95)["outputs"][0][
            "levels"]
    assert levels["0.95"]["spans_all_scores"] and not levels["0.9"]["spans_all_scores"]
    with pytest.warns(UserWarning, match="a 0.95 band needs 39"):
        classed.predict_interval(X[300:], coverage=0.95)
    one = copy.deepcopy(classed)
    one.band_classes_ = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        levels = one.score_intervals(X[300:], y[300:])["outputs"][0]["levels"]
        one.predict_interval(X[300:], coverage=0.95)
    assert not levels["0.95"]["spans_all_scores"]


def test_files_and_pickles_from_before_the_classes_keep_one_band(fitted, tmp_path):
    import pickle

    import torch

    from sktlag import load_model, save_model

    classed, X, _ = fitted
    classed = copy.deepcopy(classed)
    # A threshold the tiny members' mean crosses: the classes change the band.
    classed.high_flow_threshold_ = np.quantile(classed.calibration_mean_, 0.6, axis=0)
    one = copy.deepcopy(classed).set_params(band_classes=None)
    one.band_classes_ = None
    assert not np.allclose(classed.predict_interval(X[300:])[0],
                           one.predict_interval(X[300:])[0])
    path = save_model(classed, tmp_path / "old.pth")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    del payload["ensemble"]["band_classes"]
    torch.save(payload, path)
    state = classed.__getstate__()
    del state["band_classes"], state["band_classes_"]
    unpickled = pickle.loads(pickle.dumps(classed))
    unpickled.__setstate__(state)
    for old in (load_model(path), unpickled):
        assert (old.band_classes, old.band_classes_) == (None, None)
        for a, b in zip(old.predict_interval(X[300:]), one.predict_interval(X[300:]),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
