import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sktlag.windows import (
    WindowDataset,
    chronological_split,
    group_starts,
    minimum_rows,
    padded_series,
    sliding_windows,
    window_ends,
)


@settings(max_examples=80, deadline=None)
@given(
    n_rows=st.integers(1, 40), n_features=st.integers(1, 4), data=st.data()
)
def test_every_window_is_the_slice_it_claims(n_rows, n_features, data):
    lookback = data.draw(st.integers(1, n_rows))
    X = np.arange(n_rows * n_features, dtype=np.float64).reshape(n_rows, n_features)
    view = sliding_windows(X, lookback)
    assert view.shape == (n_rows - lookback + 1, lookback, n_features)
    assert np.shares_memory(view, X)
    ends = window_ends(n_rows, lookback)
    ds = WindowDataset(torch.from_numpy(X), torch.from_numpy(X[:, :1]), ends, lookback)
    batch_X, batch_y = ds.__getitems__(list(range(len(ds))))
    for i, end in enumerate(ends):
        np.testing.assert_array_equal(view[i], X[end - lookback + 1 : end + 1])
        np.testing.assert_array_equal(batch_X[i].numpy(), X[end - lookback + 1 : end + 1])
        assert batch_y[i, 0] == X[end, 0]
        single_X, single_y = ds[i]
        assert torch.equal(single_X, batch_X[i]) and torch.equal(single_y, batch_y[i])


def test_sliding_windows_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        sliding_windows(np.zeros(5), 2)
    with pytest.raises(ValueError, match="lookback"):
        sliding_windows(np.zeros((3, 1)), 4)


def test_windows_never_cross_groups():
    groups = np.array(["a"] * 5 + ["b"] * 4)
    ends = window_ends(9, 3, groups)
    np.testing.assert_array_equal(ends, [2, 3, 4, 7, 8])
    starts = group_starts(groups, 9)
    assert all(starts[e - 2] == starts[e] for e in ends)


def test_groups_must_be_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        group_starts(np.array([1, 1, 2, 1]), 4)
    with pytest.raises(ValueError, match="shape"):
        group_starts(np.array([1, 2]), 3)


@pytest.mark.parametrize("groups", [np.array([1.0, 1.0, np.nan, np.nan, 2.0]),
                                    np.array(["a", "a", None, None, "b"], dtype=object)])
def test_a_missing_group_label_is_named_by_its_row(groups):
    with pytest.raises(ValueError, match="groups has no label at row 2 .2 rows in total"):
        group_starts(groups, 5)


@pytest.mark.parametrize("lookback", [1, 4])
def test_chronological_split_is_ordered_and_disjoint(lookback):
    ends = window_ends(100, lookback)
    train, valid = chronological_split(ends, 0.2, lookback)
    assert len(valid) == int(np.ceil(0.2 * len(ends)))
    assert train.max() < valid.min()
    # no row is shared by a training and a validation window
    assert train.max() < valid.min() - lookback + 1


def _splits(n_rows: int, lookback: int, fraction: float) -> bool:
    train, valid = chronological_split(window_ends(n_rows, lookback), fraction, lookback)
    return len(train) >= 2 and len(valid) >= 2


@settings(max_examples=60, deadline=None)
@given(lookback=st.integers(1, 8), fraction=st.floats(0.01, 0.99))
def test_minimum_rows_is_the_fewest_rows_the_split_divides(lookback, fraction):
    n = minimum_rows(lookback, fraction)
    assert _splits(n, lookback, fraction) and not _splits(n - 1, lookback, fraction)


def _windows_split(windows: int, lookback: int, fraction: float) -> bool:
    # chronological_split's counts, without building billions of window ends.
    n_valid = math.ceil(fraction * windows)
    return n_valid >= 2 and windows - n_valid - (lookback - 1) >= 2


@pytest.mark.parametrize("fraction", [1e-9, 1e-6, 1 - 1e-6, 1 - 1e-8, 1 - 1e-9])
@pytest.mark.parametrize("lookback", [1, 5, 365])
def test_minimum_rows_of_an_extreme_fraction(fraction, lookback):
    # Millions to billions of windows: counted up from one, minutes; here, at once.
    windows = minimum_rows(lookback, fraction) - (lookback - 1)
    assert _windows_split(windows, lookback, fraction)
    # The fewest: the split's rounding of f * w lets fewer windows fit than exact
    # arithmetic would, and those count.
    assert not _windows_split(windows - 1, lookback, fraction)


def test_chronological_split_per_group():
    groups = np.repeat([0, 1], 50)
    ends = window_ends(100, 3, groups)
    train, valid = chronological_split(ends, 0.2, 3, groups)
    for g in (0, 1):
        t, v = train[groups[train] == g], valid[groups[valid] == g]
        assert len(v) > 0 and t.max() < v.min() - 2


def test_padded_series_with_fill_history_and_groups():
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    fill = np.array([-1.0, -2.0])
    series, ends = padded_series(X, 3, fill)
    assert series.shape == (8, 2)
    np.testing.assert_array_equal(series[:2], [[-1, -2], [-1, -2]])
    np.testing.assert_array_equal(series[ends], X)
    series, ends = padded_series(X, 3, fill, history=np.array([[9.0, 9.0]]))
    np.testing.assert_array_equal(series[:2], [[-1, -2], [9, 9]])
    series, ends = padded_series(X, 3, fill, groups=np.array([0, 0, 0, 1, 1, 1]))
    assert series.shape == (10, 2)
    np.testing.assert_array_equal(series[ends], X)
    np.testing.assert_array_equal(series[ends[3] - 2 : ends[3]], [[-1, -2], [-1, -2]])
