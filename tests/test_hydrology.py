"""Gauge-data practice: masked missing targets and warm-up from real history."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGRegressor

from .conftest import FAST, make_series

PARAMS = {**FAST, "max_epochs": 20, "topo_derivative_threshold": np.inf}


def _rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_masked_fit_matches_a_fit_without_those_days_within_training_noise():
    X, y = make_series(n_rows=500, seed=4)
    rng = np.random.default_rng(0)
    missing = np.sort(rng.choice(len(y), size=len(y) // 10, replace=False))
    observed = np.setdiff1d(np.arange(len(y)), missing)
    y_gappy = y.copy()
    y_gappy[missing] = np.nan

    masked = TLAGRegressor(**PARAMS, missing_target="mask", random_state=0).fit(X, y_gappy)
    assert masked.n_masked_targets_ == len(missing)
    # The same days removed from the record altogether.
    removed = TLAGRegressor(**PARAMS, random_state=0).fit(X[observed], y[observed])
    # Training noise: the same full-record fit with two seeds.
    noise = _rms(
        TLAGRegressor(**PARAMS, random_state=1).fit(X, y).predict(X)[observed],
        TLAGRegressor(**PARAMS, random_state=2).fit(X, y).predict(X)[observed],
    )
    difference = _rms(masked.predict(X)[observed], removed.predict(X[observed]))
    assert difference <= 3 * noise, (difference, noise)


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
    assert np.isfinite(est.predict(X)).all()


def test_nan_inputs_stay_an_error_even_with_mask():
    X, y = make_series()
    X = X.copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN at row 3"):
        TLAGRegressor(**PARAMS, missing_target="mask").fit(X, y)


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


def test_warm_up_survives_a_pandas_pipeline():
    X, y = _frame()
    pipe = make_pipeline(StandardScaler(), TLAGRegressor(**PARAMS, random_state=0))
    pipe.set_output(transform="pandas")
    pipe.fit(X.iloc[:300], y.iloc[:300])
    np.testing.assert_allclose(pipe.predict(X.iloc[300:]), pipe.predict(X)[300:], rtol=1e-5,
                               atol=1e-6)
