"""Many basins, one model: windows never cross from one basin to the next.

``fit`` and ``predict`` take ``groups`` (one label per row, each basin a contiguous block
of time-ordered rows). The tests record the window datasets ``fit`` builds and check
every window against the basin labels, then check that predictions of one basin do not
depend on any other, and that leave-one-basin-out cross-validation hands the groups on.
"""

import math

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut, cross_val_score

import sktlag.estimator
from sktlag import TLAGRegressor
from sktlag.windows import WindowDataset

from .conftest import FAST

LOOKBACK = FAST["lookback"]
TINY = {**FAST, "hidden_size": 4, "max_epochs": 2, "topo_derivative_threshold": np.inf}


def _basin(n_rows, seed, rain_scale, flow_scale, recession):
    """Rainfall-runoff toy series of one basin; ``recession`` sets how fast flow decays."""
    rng = np.random.default_rng(seed)
    X = rain_scale * rng.gamma(0.6, 2.0, size=(n_rows, 2))
    kernel = np.exp(-np.arange(12) / recession)
    y = flow_scale * np.convolve(X[:, 0] + 0.5 * X[:, 1], kernel)[:n_rows]
    return X, y + 0.01 * flow_scale * rng.standard_normal(n_rows)


def _basins(sizes=(150, 110)):
    """Basins with unlike dynamics and scales, stacked; returns X, y, groups, row blocks."""
    settings = [(1.0, 100.0, 6.0), (20.0, 0.05, 0.7), (3.0, 5.0, 2.0)]
    parts = [_basin(n, seed, *settings[seed]) for seed, n in enumerate(sizes)]
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    labels = ["lahn", "dill", "ohm"][: len(sizes)]
    groups = np.repeat(labels, sizes)
    bounds = np.cumsum((0, *sizes))
    blocks = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return X, y, groups, blocks


@pytest.fixture
def fit_windows(monkeypatch):
    """Window ends of every dataset with targets built by ``fit`` (training, validation)."""
    recorded = []

    class Recording(WindowDataset):
        def __init__(self, X, y, ends, lookback):
            super().__init__(X, y, ends, lookback)
            if y is not None:  # predict builds target-less datasets
                recorded.append(self.ends.copy())

    monkeypatch.setattr(sktlag.estimator, "WindowDataset", Recording)
    return recorded


def _crossing(ends, groups, lookback=LOOKBACK):
    """Window ends whose window holds rows of more than one basin."""
    return [int(e) for e in ends if len(set(groups[e - lookback + 1 : e + 1])) > 1]


@pytest.fixture(scope="module")
def two_basins():
    X, y, groups, blocks = _basins()
    est = TLAGRegressor(**TINY, random_state=0).fit(X, y, groups=groups)
    return est, X, y, groups, blocks


# ---------------------------------------------------------------- fit
def test_training_and_validation_windows_stay_inside_their_basin(fit_windows):
    X, y, groups, blocks = _basins()
    TLAGRegressor(**TINY, random_state=0).fit(X, y, groups=groups)
    train, valid = fit_windows
    assert _crossing(train, groups) == [] and _crossing(valid, groups) == []
    for block in blocks:
        first, last = block[0], block[-1]
        n_windows = len(block) - LOOKBACK + 1
        n_valid = math.ceil(0.2 * n_windows)
        # validation: the last windows of every basin
        np.testing.assert_array_equal(valid[np.isin(valid, block)], block[-n_valid:])
        # training: every earlier full window, except the lookback - 1 that would share
        # rows with the first validation window
        expected = np.arange(first + LOOKBACK - 1, last - n_valid - LOOKBACK + 2)
        np.testing.assert_array_equal(train[np.isin(train, block)], expected)
        assert expected.max() < block[-n_valid] - LOOKBACK + 1


def test_without_groups_windows_do_cross_which_the_check_detects(fit_windows):
    # The recorder is able to see a crossing: without groups the stacked basins are one
    # series, and the windows around the boundary mix both.
    X, y, groups, _ = _basins()
    TLAGRegressor(**TINY, random_state=0).fit(X, y)
    train, _ = fit_windows
    assert len(_crossing(train, groups)) == LOOKBACK - 1


# ---------------------------------------------------------------- predict
def test_predict_with_groups_equals_predicting_each_basin_alone(two_basins):
    est, X, _, groups, blocks = two_basins
    together = est.predict(X, groups=groups)
    assert together.shape == (len(X),)
    for block in blocks:
        np.testing.assert_allclose(together[block], est.predict(X[block]), rtol=1e-6, atol=0)
    # Without groups, the first rows of the second basin read the end of the first.
    second = blocks[1][: LOOKBACK - 1]
    assert not np.allclose(est.predict(X)[second], together[second], rtol=1e-6, atol=0)


def test_score_with_groups_scores_each_basins_own_windows(two_basins):
    est, X, y, groups, _ = two_basins
    by_basin = sklearn.metrics.r2_score(y, est.predict(X, groups=groups))
    assert est.score(X, y, groups=groups) == pytest.approx(by_basin)
    assert est.score(X, y) != pytest.approx(by_basin)  # windows across the seam
    # A search that routes groups scores its test folds with them, unasked.
    assert est.get_metadata_routing().score.requests["groups"] is True


def test_sentinel_inputs_in_one_basin_do_not_reach_the_next(two_basins):
    est, X, _, groups, blocks = two_basins
    poisoned = X.copy()
    poisoned[blocks[0]] = 1e6
    before = est.predict(X, groups=groups)
    after = est.predict(poisoned, groups=groups)
    np.testing.assert_array_equal(after[blocks[1]], before[blocks[1]])
    assert not np.allclose(after[blocks[0]], before[blocks[0]])
    assert not np.allclose(est.predict(poisoned)[blocks[1][:2]], before[blocks[1][:2]])


# ---------------------------------------------------------------- bad groups
def test_groups_must_be_contiguous_blocks(two_basins):
    est, X, y, _, _ = two_basins
    scattered = np.array(["lahn"] * 100 + ["dill"] * 60 + ["lahn"] * 100)
    with pytest.raises(ValueError, match="group 'lahn' appears in more than one block"):
        TLAGRegressor(**TINY).fit(X, y, groups=scattered)
    with pytest.raises(ValueError, match="contiguous"):
        est.predict(X, groups=scattered)
    with pytest.raises(ValueError, match="groups must have shape"):
        est.predict(X, groups=scattered[:-1])


def test_a_group_too_short_to_split_is_named():
    # Enough rows in all, but the second basin alone cannot give a training and a
    # validation part: it would have been left out of training without a word.
    X, y, groups, _ = _basins(sizes=(150, 10))
    with pytest.raises(ValueError, match=r"group 'dill' \(10 rows\) is too short: .*at "
                                         r"least 12 rows are needed"):
        TLAGRegressor(**TINY).fit(X, y, groups=groups)
    X, y, groups, _ = _basins(sizes=(11, 150, 5))
    with pytest.raises(ValueError, match=r"groups 'lahn' \(11 rows\), 'ohm' \(5 rows\) are"):
        TLAGRegressor(**TINY).fit(X, y, groups=groups)


# ---------------------------------------------------------------- leave one basin out
def _check_folds(recorded, X, groups, n_fits):
    folds = list(LeaveOneGroupOut().split(X, groups=groups))
    train_rows = [train for train, _ in folds] + [np.arange(len(X))]
    assert len(recorded) == 2 * n_fits
    for k in range(n_fits):
        fold_groups = groups[train_rows[k]]
        assert len(set(fold_groups)) == len(set(groups)) - (k < len(folds))
        for ends in recorded[2 * k : 2 * k + 2]:
            assert _crossing(ends, fold_groups) == []


def test_leave_one_basin_out_passes_groups_to_fit(fit_windows):
    X, y, groups, _ = _basins(sizes=(70, 60, 80))
    est = TLAGRegressor(**TINY, random_state=0)

    # Without metadata routing: `groups` feeds the splitter, `params` feeds fit.
    scores = cross_val_score(
        est, X, y, groups=groups, cv=LeaveOneGroupOut(), params={"groups": groups}
    )
    assert scores.shape == (3,) and np.isfinite(scores).all()
    _check_folds(fit_windows, X, groups, n_fits=3)

    # With metadata routing, a search routes groups to the splitter and to fit alike,
    # the refit on all basins included.
    fit_windows.clear()
    with sklearn.config_context(enable_metadata_routing=True):
        routed = TLAGRegressor(**TINY, random_state=0).set_fit_request(groups=True)
        search = GridSearchCV(routed, {"lr": [TINY["lr"]]}, cv=LeaveOneGroupOut())
        search.fit(X, y, groups=groups)
    _check_folds(fit_windows, X, groups, n_fits=4)
    folds = [search.cv_results_[f"split{k}_test_score"][0] for k in range(3)]
    np.testing.assert_array_equal(folds, scores)


def test_leave_one_basin_out_without_fit_groups_mixes_basins(fit_windows):
    # The pitfall: groups given to cross_val_score only reach the splitter, so the
    # training basins are fitted as one series and windows cross between them.
    X, y, groups, _ = _basins(sizes=(70, 60, 80))
    cross_val_score(TLAGRegressor(**TINY, random_state=0), X, y, groups=groups,
                    cv=LeaveOneGroupOut())
    folds = list(LeaveOneGroupOut().split(X, groups=groups))
    crossing = [
        _crossing(fit_windows[2 * k], groups[train]) for k, (train, _) in enumerate(folds)
    ]
    assert all(len(c) > 0 for c in crossing)


@pytest.mark.parametrize("kind", ["dates", "mixed"])
def test_labels_are_only_compared_for_equality(two_basins, kind):
    # Gauge ids of mixed types, or the dates of two campaigns: labels all the same.
    _, X, y, groups, _ = two_basins
    labels = {"dates": np.repeat(np.array(["2001-01-01", "2002-01-01"], dtype="datetime64[ns]"),
                                 [150, 110]),
              "mixed": np.repeat(np.array(["01013500", 2], dtype=object), [150, 110])}[kind]
    est = TLAGRegressor(**TINY, random_state=0).fit(X, y, groups=labels)
    reference = TLAGRegressor(**TINY, random_state=0).fit(X, y, groups=groups)
    np.testing.assert_array_equal(est.predict(X, groups=labels),
                                  reference.predict(X, groups=groups))
