"""sktlag.forecasting.forecast: history through the pipeline, observed history into the band."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGEnsemble, TLAGRegressor
from sktlag.forecasting import band_observations, forecast

from .conftest import FAST, make_series
from .fitted import dated_series, study

TINY = {**FAST, "hidden_size": 4, "max_epochs": 4, "max_layers": 1}
N_FIT = 300


@pytest.fixture(scope="module")
def dated_ensemble():
    """A scaler + two-member ensemble on a dated series, fitted on its first 300 days."""
    X, y = dated_series(400)
    model = make_pipeline(StandardScaler(), TLAGEnsemble(TLAGRegressor(**TINY), n_members=2,
                                                         random_state=0))
    model.set_output(transform="pandas")
    return model.fit(X.iloc[:N_FIT], y.iloc[:N_FIT]), X, y


def test_the_history_goes_through_the_pipeline_like_x():
    fitted = study()
    X, history = fitted.X_test.iloc[20:], fitted.X_test.iloc[:20]
    scaling, regressor = fitted.model[:-1], fitted.model[-1]
    expected = regressor.predict(scaling.transform(X), history=scaling.transform(history))
    table = forecast(fitted.model, X, history=history, observed=fitted.y_test.iloc[20:])
    assert list(table.columns) == ["observed", "predicted"]
    assert table.index.equals(pd.DatetimeIndex(X.index, name="date"))
    np.testing.assert_allclose(table["predicted"], expected, rtol=1e-12)
    np.testing.assert_array_equal(table["observed"], fitted.y_test.iloc[20:])
    # What Pipeline.predict gives: the history read unscaled.
    unscaled = fitted.model.predict(X, history=history)
    assert not np.allclose(unscaled[:regressor.lookback], expected[:regressor.lookback])


def test_the_observed_history_starts_the_adaptive_band(dated_ensemble):
    model, X, y = dated_ensemble
    days, before = slice(N_FIT + 30, 400), slice(N_FIT, N_FIT + 30)
    table = forecast(model, X.iloc[days], history=X.iloc[before], observed=y.iloc[days],
                     history_observed=y.iloc[before])
    # The ensemble's band over history and days as one series, observed throughout (the
    # history continues the fit, so no day reads padding).
    both = model[:-1].transform(X.iloc[N_FIT:])
    lower, upper = model[-1].predict_interval(both, 0.9, observed=y.iloc[N_FIT:])
    np.testing.assert_allclose(table["lower"], lower[30:], rtol=1e-12)
    np.testing.assert_allclose(table["upper"], upper[30:], rtol=1e-12)
    np.testing.assert_allclose(table["predicted"], model.predict(X.iloc[N_FIT:])[30:],
                               rtol=1e-6)
    # The band's centre is a column of its own: corrected through the history into X.
    assert list(table.columns) == ["observed", "predicted", "corrected", "lower", "upper"]
    np.testing.assert_allclose(
        table["corrected"], model[-1].predict_corrected(both, y.iloc[N_FIT:])[30:],
        rtol=1e-12)
    # Without the history's discharge the first day is not corrected by its day before.
    unseen = forecast(model, X.iloc[days], history=X.iloc[before], observed=y.iloc[days])
    assert unseen["lower"].iloc[0] != table["lower"].iloc[0]
    assert unseen["corrected"].iloc[0] == pytest.approx(unseen["predicted"].iloc[0])
    assert table["corrected"].iloc[0] != pytest.approx(table["predicted"].iloc[0])
    np.testing.assert_allclose(unseen["predicted"], table["predicted"], rtol=1e-6)


def test_the_fixed_band_and_no_observation_give_the_band_calibrated_at_fit(dated_ensemble):
    model, X, y = dated_ensemble
    days, before = slice(N_FIT + 30, 400), slice(N_FIT, N_FIT + 30)
    lower, upper = model[-1].predict_interval(model[:-1].transform(X.iloc[days]), 0.8,
                                              history=model[:-1].transform(X.iloc[before]))
    for band, observed in (("fixed", y.iloc[days]), ("adaptive", None)):
        table = forecast(model, X.iloc[days], history=X.iloc[before], observed=observed,
                         history_observed=y.iloc[before] if observed is not None else None,
                         coverage=0.8, band=band)
        np.testing.assert_allclose(table["lower"], lower, rtol=1e-12)
        np.testing.assert_allclose(table["upper"], upper, rtol=1e-12)


def test_only_a_corrected_adaptive_band_gives_the_corrected_column(dated_ensemble):
    model, X, y = dated_ensemble
    days = X.iloc[N_FIT:400]
    bands = ["predicted", "lower", "upper"]
    assert list(forecast(model, days).columns) == bands
    assert list(forecast(model, days, observed=y.iloc[N_FIT:400], band="fixed").columns) \
        == ["observed", *bands]
    # The column follows what the ensemble was fitted with, as the band does.
    changed = copy.deepcopy(model)
    changed[-1].set_params(error_correction=None)
    table = forecast(changed, days, observed=y.iloc[N_FIT:400])
    assert list(table.columns) == ["observed", "predicted", "corrected", *bands[1:]]
    pd.testing.assert_frame_equal(table, forecast(model, days, observed=y.iloc[N_FIT:400]))
    plain = make_pipeline(StandardScaler(), TLAGEnsemble(
        TLAGRegressor(**TINY), n_members=2, random_state=0, error_correction=None))
    plain.fit(X.iloc[:N_FIT], y.iloc[:N_FIT])
    assert list(forecast(plain, days, observed=y.iloc[N_FIT:400]).columns) \
        == ["observed", *bands]


def test_the_band_does_not_learn_from_days_predicted_from_padding(dated_ensemble):
    model, X, y = dated_ensemble
    days, before = slice(360, 400), slice(340, 360)  # a history that does not continue the fit
    seen = band_observations(model, X.iloc[days], history=X.iloc[before],
                             observed=y.iloc[days], history_observed=y.iloc[before])
    padded = model[-1].estimators_[0].lookback - 1
    assert seen.shape == (60, 1)
    assert np.isnan(seen[:padded]).all()
    np.testing.assert_array_equal(seen[padded:, 0], y.iloc[340 + padded:400])
    # Continuing the fit, nothing is padding; a single regressor has no band.
    continuing = band_observations(model, X.iloc[N_FIT:400], observed=y.iloc[N_FIT:400])
    assert np.isfinite(continuing).all()
    assert band_observations(study().model, study().X_test, observed=study().y_test) is None
    assert band_observations(model, X.iloc[days]) is None


def test_forecast_refuses_what_it_cannot_use(dated_ensemble):
    model, X, y = dated_ensemble
    days = X.iloc[360:400]
    with pytest.raises(ValueError, match="band must be one of"):
        forecast(model, days, band="wide")
    with pytest.raises(ValueError, match="give their inputs as history"):
        forecast(model, days, history_observed=y.iloc[350:360])
    for observed in (None, y.iloc[360:400]):  # with either band
        with pytest.raises(ValueError, match="history ends on"):
            forecast(model, days, history=X.iloc[340:350], observed=observed)
    with pytest.raises(ValueError, match="observed holds 39 rows"):
        forecast(model, days, observed=y.iloc[361:400])
    with pytest.raises(ValueError, match="history_observed holds 5 rows"):
        forecast(model, days, history=X.iloc[350:360], history_observed=y.iloc[355:360])
    with pytest.raises(ValueError, match="give the history the columns of X, in order"):
        forecast(model, days, history=X.iloc[350:360, ::-1], observed=y.iloc[360:400])
    with pytest.raises(TypeError, match="expected a TLAGRegressor"):
        forecast(StandardScaler().fit(X), days)
    with pytest.raises(ValueError, match="coverage must lie strictly between 0 and 1"):
        forecast(model, days, coverage=90)
    # Checked for any model and band, where nothing adapts to them.
    for fitted, band in ((model, "fixed"), (study().model, "adaptive")):
        with pytest.raises(ValueError, match="observed holds 39 rows"):
            forecast(fitted, days, observed=y.iloc[361:400], band=band)
        with pytest.raises(ValueError, match="observed contains inf at row 5"):
            forecast(fitted, days, observed=y.iloc[360:400].replace(y.iloc[365], np.inf),
                     band=band)


def test_the_callers_observations_are_left_as_they_were(dated_ensemble):
    model, X, y = dated_ensemble
    observed = y.iloc[340:400].copy()  # not continuing the fit: its first days are padding
    forecast(model, X.iloc[340:400], observed=observed)
    np.testing.assert_array_equal(observed, y.iloc[340:400])


def test_a_history_read_wholly_from_padding_warns_that_its_discharge_is_unused(dated_ensemble):
    model, X, y = dated_ensemble
    padded = model[-1].estimators_[0].lookback - 1
    days, before = slice(360, 400), slice(360 - padded, 360)
    with pytest.warns(UserWarning, match=f"give more than {padded} history days"):
        table = forecast(model, X.iloc[days], history=X.iloc[before], observed=y.iloc[days],
                         history_observed=y.iloc[before])
    unseen = forecast(model, X.iloc[days], history=X.iloc[before], observed=y.iloc[days])
    np.testing.assert_allclose(table["lower"], unseen["lower"], rtol=1e-12)
    longer = slice(360 - padded - 1, 360)  # one day more: its last day is judged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forecast(model, X.iloc[days], history=X.iloc[longer], observed=y.iloc[days],
                 history_observed=y.iloc[longer])


def test_several_outputs_with_and_without_observations():
    X, y = make_series(n_rows=300, n_outputs=2)
    ensemble = TLAGEnsemble(TLAGRegressor(**TINY), n_members=2, random_state=0)
    ensemble.fit(X[:240], y[:240])
    fixed = forecast(ensemble, X[240:], names=["up", "down"])
    assert list(fixed.columns) == ["predicted_up", "lower_up", "upper_up",
                                   "predicted_down", "lower_down", "upper_down"]
    lower, _ = ensemble.predict_interval(X[240:])
    np.testing.assert_allclose(fixed[["lower_up", "lower_down"]], lower, rtol=1e-12)
    observed = y[240:].copy()
    observed[30:] = np.nan  # days not observed yet
    adaptive = forecast(ensemble, X[240:], observed=observed, names=["up", "down"])
    lower, _ = ensemble.predict_interval(X[240:], observed=np.r_[
        np.full((ensemble.estimators_[0].lookback - 1, 2), np.nan),
        observed[ensemble.estimators_[0].lookback - 1:]])
    np.testing.assert_allclose(adaptive[["lower_up", "lower_down"]], lower, rtol=1e-12)
    with pytest.raises(ValueError, match="names holds 1 name"):
        forecast(ensemble, X[240:], names=["up"])
