"""Gauge-data practice: masked missing targets and warm-up from real history."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGEnsemble, TLAGRegressor
from sktlag._record import NON_FINITE

from .conftest import FAST, make_series

PARAMS = {**FAST, "max_epochs": 20, "topo_derivative_threshold": np.inf}
# Trained to a plateau, so that two seeds differ by little.
CONVERGED = {**FAST, "max_epochs": 40, "max_epochs_per_layer": 40, "patience": 8,
             "moving_avg_window": 3, "topo_derivative_threshold": np.inf}


def _rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _gappy(n_rows=500, seed=4):
    X, y = make_series(n_rows=n_rows, seed=seed)
    rng = np.random.default_rng(0)
    missing = np.sort(rng.choice(len(y), size=len(y) // 10, replace=False))
    y_gappy = y.copy()
    y_gappy[missing] = np.nan
    return X, y, y_gappy, np.setdiff1d(np.arange(len(y)), missing)


def test_masked_fit_equals_a_fit_where_those_days_never_existed():
    # With lookback 1 a window is a single day, so removing the days with a missing
    # target leaves exactly the training samples that masking keeps: same seed, same
    # fit, to the last bit.
    X, y, y_gappy, observed = _gappy()
    params = {**CONVERGED, "lookback": 1}
    masked = TLAGRegressor(**params, missing_target="mask", random_state=0).fit(X, y_gappy)
    assert masked.n_masked_targets_ == len(y) - len(observed)
    removed = TLAGRegressor(**params, random_state=0).fit(X[observed], y[observed])
    np.testing.assert_array_equal(masked.predict(X[observed]), removed.predict(X[observed]))


def test_masking_ten_percent_costs_no_more_than_training_noise():
    # With longer windows, deleting days would splice the inputs of neighbouring days,
    # so the fair reference is the fit on the complete record. Measured (this test's
    # data): RMS difference to the complete-record fit 0.069 against 0.087 between two
    # seeds of the complete-record fit; target standard deviation 2.1.
    X, y, y_gappy, observed = _gappy()
    masked = TLAGRegressor(**CONVERGED, missing_target="mask", random_state=0).fit(X, y_gappy)
    full = [TLAGRegressor(**CONVERGED, random_state=s).fit(X, y).predict(X) for s in (0, 1)]
    noise = _rms(full[0][observed], full[1][observed])
    difference = _rms(masked.predict(X)[observed], full[0][observed])
    assert difference <= 1.5 * noise, (difference, noise)


def test_masked_targets_stay_out_of_loss_and_validation():
    X, y = make_series(n_rows=300)
    y = y.copy()
    y[-40:] = np.nan  # the whole validation tail is missing but for a few days
    y[-5:] = 1.0
    est = TLAGRegressor(**PARAMS, missing_target="mask", random_state=0).fit(X, y)
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    assert np.isfinite(est.history_[:, "valid_nse"]).all()


def test_multi_output_with_partial_gaps():
    X, y = make_series(n_outputs=2)
    y = y.copy()
    y[::7, 0] = np.nan
    est = TLAGRegressor(**PARAMS, missing_target="mask", random_state=0).fit(X, y)
    assert est.n_masked_targets_ == len(y[::7])
    # The gaps reach the loss here (the other output is observed on those days), and
    # no epoch's loss was NaN: the guard that restores a finite state never fired.
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    assert not any(row.get(NON_FINITE, False) for row in est.history_)
    assert np.isfinite(est.predict(X)).all()


def test_nan_inputs_stay_an_error_even_with_mask():
    X, y = make_series()
    X = X.copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN at row 3"):
        TLAGRegressor(**PARAMS, missing_target="mask").fit(X, y)


def test_values_too_large_for_float32_are_named_where_they_are():
    # Cast to float32 they are infinite: the loss turned NaN and the fit "succeeded" on
    # its first weights; a target of 1e200 made every prediction infinite.
    X, y = make_series()
    large = X.copy()
    large[12, 2] = 1e39
    with pytest.raises(ValueError, match=r"X holds 1e\+39 at row 12, column 2 \(1 value"):
        TLAGRegressor(**PARAMS).fit(large, y)
    large = y.copy()
    large[[10, 20]] = [np.nan, -1e200]
    with pytest.raises(ValueError, match=r"y holds -1e\+200 at row 20, column 0 "):
        TLAGRegressor(**PARAMS, missing_target="mask").fit(X, large)
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X, y)
    large = X.copy()
    large[:, 1] = 1e300
    with pytest.raises(ValueError, match=r"X holds 1e\+300 at row 0, column 1 \(240 value"):
        est.predict(large)


def _frame(n_rows=400):
    X, y = make_series(n_rows=n_rows)
    index = pd.date_range("2001-01-01", periods=n_rows, freq="D", name="date")
    return pd.DataFrame(X, index=index, columns=["p1", "p2", "t1"]), pd.Series(y, index=index)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_test_fold_after_training_fold_uses_real_history():
    X, y = _frame()
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[:300], y.iloc[:300])
    warm = est.predict(X.iloc[300:])
    padded = est.predict(X.iloc[300:].to_numpy())
    reference = est.predict(X)[300:]  # every window there has its real history
    np.testing.assert_allclose(warm, reference, rtol=1e-5, atol=1e-6)
    lookback = PARAMS["lookback"]
    assert not np.allclose(padded[: lookback - 1], reference[: lookback - 1])
    np.testing.assert_allclose(padded[lookback - 1 :], reference[lookback - 1 :], rtol=1e-5,
                               atol=1e-6)
    # A frame that does not continue the training index is padded.
    np.testing.assert_allclose(est.predict(X.iloc[310:]), est.predict(X.iloc[310:].to_numpy()))
    # Explicit history gives the same as the continued index.
    explicit = est.predict(X.iloc[300:].to_numpy(), history=X.iloc[:300].to_numpy())
    np.testing.assert_allclose(explicit, warm)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_history_shorter_than_the_lookback_is_used_in_full():
    X, y = _frame()
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[:300], y.iloc[:300])
    rows = X.to_numpy()
    for n_history in range(1, PARAMS["lookback"] - 1):
        history = rows[300 - n_history : 300]
        # The history's rows, then padding before them: as if they led the series.
        reference = est.predict(rows[300 - n_history :])[n_history:]
        np.testing.assert_allclose(est.predict(rows[300:], history=history), reference,
                                   rtol=1e-5, atol=1e-6)


def test_a_short_history_that_continues_the_fit_keeps_the_fits_last_days():
    # A forecast loop hands the days since the fit as history: fewer than the lookback
    # needs, they were put after padding, not after the fit's own last days.
    X, y = _frame()
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[:300], y.iloc[:300])
    reference = est.predict(X.iloc[300:])
    for n_history in (1, PARAMS["lookback"] - 2):
        later = est.predict(X.iloc[300 + n_history:], history=X.iloc[300:300 + n_history])
        np.testing.assert_allclose(later, reference[n_history:], rtol=1e-5, atol=1e-6)
        assert est._padded_rows(X.iloc[300:300 + n_history]) == 0


def test_bad_history_is_named_as_the_history():
    # Its errors spoke of X, with the history's row numbers: X was fine.
    X, y = _frame()
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[:300], y.iloc[:300])
    history = X.iloc[280:300].copy()
    history.iloc[3, 1] = np.nan
    with pytest.raises(ValueError, match="history contains NaN at row 3, column 'p2'"):
        est.predict(X.iloc[300:], history=history)
    with pytest.raises(ValueError, match="^history: X has 2 features"):
        est.predict(X.iloc[300:], history=X.iloc[280:300, :2].to_numpy())
    # Its days in time order, as those of X: only its last day was compared with X's
    # first, so swapped or repeated days were read as the days before X.
    swapped = X.iloc[np.r_[280:283, 284, 283, 285:300]]
    with pytest.raises(ValueError, match=r"history is not in time order: row 4 "
                                         r"\(2001-10-11\) comes after row 3"):
        est.predict(X.iloc[300:], history=swapped)
    ensemble = TLAGEnsemble(TLAGRegressor(**PARAMS), n_members=1, random_state=0)
    ensemble.fit(X.iloc[:300], y.iloc[:300])
    renamed = X.iloc[280:300].rename(columns={"p1": "rain"})
    with pytest.raises(ValueError, match="^history: The feature names should match"):
        ensemble.predict(X.iloc[300:], history=renamed)


def test_a_dated_history_must_end_where_the_frame_begins():
    # The command checks it; predict used any history as the days before X.
    X, y = _frame()
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[:300], y.iloc[:300])
    for history, words in ((X.iloc[250:270], "ends on 2001-09-27, so X should start on "
                                             "2001-09-28"),
                           (X.iloc[300:320], "ends on 2001-11-16, so X should start on "
                                             "2001-11-17")):
        with pytest.raises(ValueError, match=f"history {words}, but it starts on "
                                             "2001-10-28"):
            est.predict(X.iloc[300:], history=history)
    # Newest first, its last row is its first day: said as such.
    with pytest.raises(ValueError, match="history is not in time order: row 1"):
        est.predict(X.iloc[300:], history=X.iloc[280:300].iloc[::-1])
    # A history of one day, or without dates, cannot say; the right one is taken.
    est.predict(X.iloc[300:], history=X.iloc[299:300])
    est.predict(X.iloc[300:], history=X.iloc[250:270].to_numpy())


def test_a_gap_at_the_end_of_the_fit_does_not_change_its_step():
    # The step was the last one: a missing day before the end of the fit made the frame
    # that starts the day after the last training day not a continuation.
    X, y = _frame()
    fit_rows = [*range(298), 299]  # 2001-10-26, the day before the last, is missing
    est = TLAGRegressor(**PARAMS, random_state=0).fit(X.iloc[fit_rows], y.iloc[fit_rows])
    assert est._padded_rows(X.iloc[300:]) == 0
    # A history with that gap still meets the day after it, with a time zone too, and
    # where the gap ties with the usual step (days 296, 297, 299).
    est.predict(X.iloc[300:], history=X.iloc[fit_rows[-20:]])
    est.predict(X.iloc[300:], history=X.iloc[[296, 297, 299]])
    zoned = X.tz_localize("Europe/Berlin")
    est.predict(zoned.iloc[300:], history=zoned.iloc[fit_rows[-20:]])


def test_warm_up_survives_a_pandas_pipeline():
    X, y = _frame()
    pipe = make_pipeline(StandardScaler(), TLAGRegressor(**PARAMS, random_state=0))
    pipe.set_output(transform="pandas")
    pipe.fit(X.iloc[:300], y.iloc[:300])
    np.testing.assert_allclose(pipe.predict(X.iloc[300:]), pipe.predict(X)[300:], rtol=1e-5,
                               atol=1e-6)
