"""Tests for the shipped datasets."""

import gzip
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from sktlag.datasets import load_lahn

N_DAYS = 11384
DEFAULT_FEATURES = [
    "p_dillenburg",
    "p_marburg",
    "p_leun",
    "p_kalkofen",
    "t_dillenburg",
    "t_marburg",
    "t_leun",
    "t_kalkofen",
]


def test_default_bunch_holds_arrays():
    bunch = load_lahn()
    assert set(bunch) >= {
        "data",
        "target",
        "frame",
        "feature_names",
        "target_names",
        "DESCR",
        "dates",
    }
    assert isinstance(bunch.data, np.ndarray)
    assert isinstance(bunch.target, np.ndarray)
    assert bunch.data.shape == (N_DAYS, 8)
    assert bunch.target.shape == (N_DAYS,)
    assert bunch.data.dtype == np.float64
    assert bunch.frame is None
    assert bunch.feature_names == DEFAULT_FEATURES
    assert bunch.target_names == ["q_kalkofen"]
    assert not np.isnan(bunch.data).any()
    assert not np.isnan(bunch.target).any()


def test_dates_are_daily_without_gaps():
    dates = load_lahn().dates
    assert isinstance(dates, pd.DatetimeIndex)
    assert dates.name == "date"
    assert len(dates) == N_DAYS
    assert dates[0] == pd.Timestamp("1989-11-01")
    assert dates[-1] == pd.Timestamp("2020-12-31")
    assert dates.freq == "D"
    assert dates.is_unique
    assert (np.diff(dates.to_numpy()) == np.timedelta64(1, "D")).all()


def test_return_X_y_arrays_match_bunch():
    X, y = load_lahn(return_X_y=True)
    bunch = load_lahn()
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_as_frame():
    bunch = load_lahn(as_frame=True)
    assert isinstance(bunch.data, pd.DataFrame)
    assert isinstance(bunch.target, pd.Series)
    assert bunch.target.name == "q_kalkofen"
    assert list(bunch.data.columns) == DEFAULT_FEATURES
    assert bunch.data.index.name == "date"
    assert bunch.data.index.freq == "D"
    assert bunch.data.index.equals(bunch.dates)
    assert bunch.target.index.equals(bunch.dates)
    assert list(bunch.frame.columns) == [*DEFAULT_FEATURES, "q_kalkofen"]
    assert bunch.frame.shape == (N_DAYS, 9)
    np.testing.assert_array_equal(bunch.data.to_numpy(), load_lahn().data)


def test_as_frame_return_X_y():
    X, y = load_lahn(as_frame=True, return_X_y=True)
    assert isinstance(X, pd.DataFrame)
    assert isinstance(y, pd.Series)
    assert X.shape == (N_DAYS, 8)


def test_values_match_first_row_of_source():
    bunch = load_lahn(as_frame=True, target=["q_kalkofen", "q_marburg", "q_leun", "q_dillenburg"])
    first = bunch.frame.iloc[0]
    assert first["q_kalkofen"] == 30.9
    assert first["p_dillenburg"] == 19.1
    assert first["t_kalkofen"] == 10.8
    assert first["q_dillenburg"] == 5.42


def test_multi_target():
    targets = ["q_leun", "q_marburg"]
    bunch = load_lahn(target=targets)
    assert bunch.target.shape == (N_DAYS, 2)
    assert bunch.target_names == targets

    frame_bunch = load_lahn(target=targets, as_frame=True)
    assert isinstance(frame_bunch.target, pd.DataFrame)
    assert list(frame_bunch.target.columns) == targets
    np.testing.assert_array_equal(frame_bunch.target.to_numpy(), bunch.target)


def test_list_with_one_target_is_two_dimensional():
    _, y = load_lahn(target=["q_leun"], return_X_y=True)
    assert y.shape == (N_DAYS, 1)


def test_custom_features_keep_order():
    features = ["t_leun", "q_marburg", "p_leun"]
    bunch = load_lahn(features=features, as_frame=True)
    assert bunch.feature_names == features
    assert list(bunch.data.columns) == features


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"target": "q_nowhere"}, "q_nowhere"),
        ({"target": ["q_leun", "bogus"]}, "bogus"),
        ({"target": "p_leun"}, "q_dillenburg"),
        ({"features": ["p_leun", "rain"]}, "rain"),
    ],
)
def test_unknown_names_list_valid_ones(kwargs, expected):
    with pytest.raises(ValueError, match="valid names") as info:
        load_lahn(**kwargs)
    assert expected in str(info.value)


def test_unknown_feature_message_lists_columns():
    with pytest.raises(ValueError) as info:
        load_lahn(features=["rain"])
    for name in ["q_kalkofen", "p_marburg", "t_leun", "q_dillenburg"]:
        assert name in str(info.value)


def test_target_used_as_feature_is_rejected():
    with pytest.raises(ValueError, match="both as target and as feature"):
        load_lahn(target="q_leun", features=["p_leun", "q_leun"])


@pytest.mark.parametrize(
    "kwargs",
    [{"target": []}, {"features": []}, {"target": ["q_leun", "q_leun"]}, {"features": [1, 2]}],
)
def test_invalid_name_lists(kwargs):
    with pytest.raises(ValueError):
        load_lahn(**kwargs)


def test_descr_names_source_and_license():
    descr = load_lahn().DESCR
    assert "HydPy" in descr
    assert "6.4.0" in descr
    assert "HydPy-H-Lahn" in descr
    assert "LGPL-3.0" in descr
    assert "m3/s" in descr and "mm/day" in descr and "degC" in descr
    assert "Leun" in descr and "Kalkofen" in descr


def test_docstring_names_source():
    assert "HydPy-H-Lahn" in load_lahn.__doc__
    assert "LGPL-3.0" in load_lahn.__doc__


def test_shipped_file_is_a_deterministic_gzip():
    source = resources.files("sktlag.datasets").joinpath("data", "lahn.csv.gz")
    raw = source.read_bytes()
    # gzip -n stores no modification time (bytes 4-8) and no file name (flag bit 3).
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\x00\x00\x00\x00"
    assert not raw[3] & 0x08
    text = gzip.decompress(raw).decode("utf-8")
    lines = text.splitlines()
    assert lines[0].startswith("date,q_kalkofen,")
    assert len(lines) == N_DAYS + 1
