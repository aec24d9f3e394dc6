"""What adapts to the record: the automatic batch size and the warnings about records
too short for the recipe."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from sktlag import TLAGRegressor, load_model, save_model
from sktlag.datasets import load_lahn
from sktlag.recipe import (
    AUTO_BATCH_SIZES,
    MIN_UPDATES_PER_EPOCH,
    MIN_VALIDATION_WINDOWS,
    TARGET_UPDATES_PER_EPOCH,
    ShortRecordWarning,
    auto_batch_size,
    record_problems,
    resolve_batch_size,
    updates_per_epoch,
)
from sktlag.windows import fit_split

from .conftest import FAST, make_series

ROOT = Path(__file__).resolve().parents[1]
DAYS_PER_YEAR = 365.25


def training_windows(n_rows: int, lookback: int = 180, validation_fraction: float = 0.2):
    """Training windows of a fit on ``n_rows`` rows with every target observed."""
    train, _ = fit_split(np.zeros((n_rows, 1)), lookback, validation_fraction)
    return len(train)


def guide_table() -> list[tuple[float, int, int]]:
    """(years given to fit, training windows, batch size) from the user guide's table."""
    text = (ROOT / "docs" / "user_guide.md").read_text(encoding="utf-8")
    section = text.split("<!-- auto-batch-table -->")[1]
    rows = re.findall(r"^\| ([\d.]+) \| ([\d,]+) \| (\d+) \|", section, flags=re.M)
    return [(float(y), int(n.replace(",", "")), int(b)) for y, n, b in rows]


# ------------------------------------------------------------------ the rule
def test_the_rule_takes_the_largest_batch_that_gives_enough_updates():
    for n in range(1, 20_000, 37):
        size = auto_batch_size(n)
        assert size in AUTO_BATCH_SIZES
        if size > min(AUTO_BATCH_SIZES):
            assert updates_per_epoch(n, size) >= TARGET_UPDATES_PER_EPOCH
        larger = [b for b in AUTO_BATCH_SIZES if b > size]
        if larger:
            assert updates_per_epoch(n, larger[0]) < TARGET_UPDATES_PER_EPOCH
    assert auto_batch_size(1) == min(AUTO_BATCH_SIZES)
    assert auto_batch_size(10**6) == max(AUTO_BATCH_SIZES)


def test_the_user_guide_table_is_what_the_rule_gives():
    table = guide_table()
    assert len(table) >= 5
    for years, n_train, size in table:
        assert training_windows(round(years * DAYS_PER_YEAR)) == n_train, years
        assert auto_batch_size(n_train) == size, years


def test_a_short_and_a_long_record_get_their_documented_batch_sizes():
    # What the user guide and the docstrings state: 16 for a few years, 32 for ten,
    # 128 for thirty; the reference LSTM's 256 only past forty.
    for years, size in [(3, 16), (5, 16), (10, 32), (30, 128), (45, 256)]:
        assert auto_batch_size(training_windows(round(years * DAYS_PER_YEAR))) == size, years
    # The benchmark's fits (the first 80 % of a record) measured there: 16 at 5 years,
    # 32 at 10 and 128 at 31 (the Lahn's 6,963 training windows).
    assert [auto_batch_size(n) for n in (845, 2014, 6963)] == [16, 32, 128]


def test_explicit_batch_sizes_are_kept_and_nonsense_is_refused():
    assert resolve_batch_size(64, 10) == 64
    assert resolve_batch_size("auto", 7000) == 128
    with pytest.raises(ValueError, match="batch_size must be"):
        resolve_batch_size("big", 100)
    with pytest.raises(ValueError, match="batch_size"):
        TLAGRegressor(batch_size="big").fit(*make_series())


def test_a_fit_on_a_three_year_record_makes_many_updates_per_epoch():
    X, y = load_lahn(return_X_y=True)
    rows = round(3 * DAYS_PER_YEAR)
    X, y = X[-rows:], y[-rows:]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    est = TLAGRegressor(hidden_size=4, max_epochs=1, max_layers=1, random_state=0,
                        n_threads=1).fit(X, y)
    steps = [b for b in est.history_[-1]["batches"] if "train_loss" in b]
    # 256 windows a batch would have given 3 updates.
    assert updates_per_epoch(training_windows(rows), 256) == 3
    assert est.batch_size_ == 16 and len(steps) > 3 * MIN_UPDATES_PER_EPOCH
    assert len(steps) == updates_per_epoch(training_windows(rows), 16)


def test_the_batch_size_used_is_kept_through_a_model_file_and_a_warm_start(tmp_path):
    X, y = make_series(n_rows=300)
    params = {**FAST, "batch_size": "auto", "max_epochs": 2}
    est = TLAGRegressor(**params, random_state=0).fit(X, y)
    assert est.batch_size == "auto" and est.batch_size_ == 16
    save_model(est, tmp_path / "m.pth")
    loaded = load_model(tmp_path / "m.pth")
    assert loaded.batch_size_ == 16
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    loaded.set_params(warm_start=True, max_epochs=1)
    loaded.fit(X, y)
    assert loaded.batch_size_ == 16


# ------------------------------------------------------------------ the warnings
def problems(**overrides):
    args = dict(n_train_windows=5000, n_valid_windows=2000, lookback=180, batch_size=256,
                may_grow=True)
    return record_problems(**{**args, **overrides})


def test_a_long_record_raises_no_problem():
    assert problems() == []


def test_too_few_updates_warn_at_the_number_and_not_above():
    n = MIN_UPDATES_PER_EPOCH * 256
    assert problems(n_train_windows=n) == []
    (message,) = problems(n_train_windows=n - 256)
    assert f"{n - 256} training windows in batches of 256 give " \
           f"{MIN_UPDATES_PER_EPOCH - 1} updates per epoch" in message
    assert "batch_size='auto'" in message


def test_too_few_updates_suggest_auto_only_where_it_would_give_enough():
    # 112 windows: "auto" itself takes its smallest batch, 16, for 7 updates per epoch.
    (message,) = problems(n_train_windows=112, batch_size=16, lookback=5)
    assert "batch_size='auto'" not in message and "at most batch_size=12" in message
    (message,) = problems(n_train_windows=112, batch_size=64, lookback=5)
    assert "batch_size='auto'" not in message
    # 900 windows at 256: "auto" would take 16 (57 updates per epoch).
    (message,) = problems(n_train_windows=900, lookback=5)
    assert "use batch_size='auto' or at most batch_size=99" in message


def test_a_record_of_fewer_windows_than_updates_asked_for_is_told_so():
    (message,) = problems(n_train_windows=7, batch_size=1, lookback=2)
    assert "7 training windows give at most 7 updates per epoch" in message
    assert "batch_size=" not in message.split("; use")[-1]


@pytest.mark.parametrize("n", [10, 11, 112, 144, 145, 900, 2559])
def test_the_batch_the_message_names_is_the_largest_that_gives_enough_updates(n):
    (message,) = problems(n_train_windows=n, batch_size=n, lookback=2)
    largest = int(re.search(r"at most batch_size=(\d+)", message).group(1))
    assert updates_per_epoch(n, largest) >= MIN_UPDATES_PER_EPOCH
    assert updates_per_epoch(n, largest + 1) < MIN_UPDATES_PER_EPOCH


def test_a_lookback_longer_than_the_record_carries_warns_at_the_number():
    history = 2 * (180 - 1)
    assert problems(n_train_windows=history, batch_size=16) == []
    (message,) = problems(n_train_windows=history - 1, batch_size=16,
                          lookback_that_fits=lambda: 120)
    assert f"only {history - 1} training windows for lookback=180" in message
    assert "at most lookback=120" in message


def test_a_validation_part_shorter_than_a_year_warns_only_where_the_network_may_grow():
    assert problems(n_valid_windows=MIN_VALIDATION_WINDOWS) == []
    (message,) = problems(n_valid_windows=MIN_VALIDATION_WINDOWS - 1)
    assert f"{MIN_VALIDATION_WINDOWS - 1} windows, fewer than {MIN_VALIDATION_WINDOWS}" \
        in message
    assert problems(n_valid_windows=10, may_grow=False) == []


def test_the_lookback_and_validation_messages_name_the_shortest_series():
    (message,) = problems(shortest_training=("b", 300), batch_size=16)
    assert message.startswith("series 'b': only 300 training windows for lookback=180")
    (message,) = problems(shortest_validation=(7, 200))
    assert message.startswith("series 7: the validation part has 200 windows")
    # The updates per epoch are those of all series together.
    assert problems(shortest_training=("b", 5000), n_train_windows=200 * 256) == []


def test_fit_warns_with_the_numbers_of_its_own_split():
    X, y = make_series(n_rows=400)
    train, valid = fit_split(y.reshape(-1, 1), 100, 0.2)
    with pytest.warns(ShortRecordWarning) as caught:
        est = TLAGRegressor(**{**FAST, "lookback": 100, "batch_size": 128, "max_epochs": 1},
                            random_state=0).fit(X, y)
    messages = [str(w.message) for w in caught if w.category is ShortRecordWarning]
    assert len(messages) == 3
    assert f"{len(train)} training windows in batches of 128" in messages[0]
    assert f"only {len(train)} training windows for lookback=100" in messages[1]
    # The lookback named fits: its own training windows outnumber its history.
    named = int(re.search(r"at most lookback=(\d+)", messages[1]).group(1))
    assert named < 100
    assert len(fit_split(y.reshape(-1, 1), named, 0.2)[0]) >= 2 * (named - 1)
    assert len(fit_split(y.reshape(-1, 1), named + 1, 0.2)[0]) < 2 * named
    assert f"the validation part has {len(valid)} windows" in messages[2]
    assert est.batch_size_ == 128


def test_with_groups_the_lookback_and_validation_are_checked_series_by_series():
    # Six short series warn as one does: each spends rows on history and has its own
    # validation part. Pooled, their windows had hidden every warning.
    parts = [make_series(n_rows=450, seed=k) for k in range(5)] + [make_series(n_rows=400)]
    X = np.vstack([x for x, _ in parts])
    y = np.concatenate([t for _, t in parts])
    groups = np.repeat(list("abcdef"), [len(t) for _, t in parts])
    train, valid = fit_split(parts[-1][1].reshape(-1, 1), 100, 0.2)
    with pytest.warns(ShortRecordWarning) as caught:
        TLAGRegressor(**{**FAST, "lookback": 100, "batch_size": 16, "max_epochs": 1},
                      random_state=0).fit(X, y, groups=groups)
    messages = [str(w.message) for w in caught if w.category is ShortRecordWarning]
    assert len(messages) == 2
    assert f"series 'f': only {len(train)} training windows for lookback=100" in messages[0]
    named = int(re.search(r"at most lookback=(\d+)", messages[0]).group(1))
    for _, target in parts:  # the lookback named fits every series
        assert len(fit_split(target.reshape(-1, 1), named, 0.2)[0]) >= 2 * (named - 1)
    assert f"series 'f': the validation part has {len(valid)} windows" in messages[1]


def test_a_warm_start_at_the_largest_depth_is_not_warned_about_judging_growth():
    X, y = make_series(n_rows=700)
    est = TLAGRegressor(**{**FAST, "max_layers": 2}, topo_derivative_threshold=-np.inf,
                        random_state=0).fit(X, y)
    assert est.n_layers_ == 2
    est.set_params(warm_start=True, max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X[:400], y[:400])  # a validation part far shorter than a year
    assert not [w for w in caught if "validation part" in str(w.message)]
    est.set_params(max_layers=3)  # room to grow again: the warning is back
    with pytest.warns(ShortRecordWarning, match="the validation part has"):
        est.fit(X[:400], y[:400])


def test_a_fixed_depth_on_a_long_enough_record_fits_without_warnings():
    X, y = make_series(n_rows=700)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortRecordWarning)
        TLAGRegressor(**{**FAST, "batch_size": "auto", "max_epochs": 1, "max_layers": 1,
                         "initial_num_layers": 1}, random_state=0).fit(X, y)


def test_the_lookback_named_is_found_by_bisection(monkeypatch):
    # Each candidate costs a split over every row of every series: a lookback of 365
    # on many basins took minutes tried one by one.
    import sktlag.estimator

    X, y = make_series(n_rows=1000)
    calls = []
    real = sktlag.estimator.fit_split

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(sktlag.estimator, "fit_split", counting)
    with pytest.warns(ShortRecordWarning) as caught:
        TLAGRegressor(**{**FAST, "lookback": 365, "max_epochs": 1}, random_state=0).fit(X, y)
    message = next(str(w.message) for w in caught if "for lookback=365" in str(w.message))
    named = int(re.search(r"at most lookback=(\d+)", message).group(1))
    assert len(calls) <= 12  # the fit's own split and about log2(365) more
    assert len(real(y.reshape(-1, 1), named, 0.2)[0]) >= 2 * (named - 1)
    assert len(real(y.reshape(-1, 1), named + 1, 0.2)[0]) < 2 * named


def test_a_series_without_observed_targets_is_told_no_lookback_helps():
    Xa, ya = make_series(n_rows=450)
    Xb, yb = make_series(n_rows=120, seed=1)
    X, y = np.vstack([Xa, Xb]), np.concatenate([ya, np.full(120, np.nan)])
    groups = np.repeat(["a", "b"], [450, 120])
    with pytest.warns(ShortRecordWarning) as caught:
        TLAGRegressor(**{**FAST, "lookback": 5, "max_epochs": 1}, missing_target="mask",
                      random_state=0).fit(X, y, groups=groups)
    (message,) = [str(w.message) for w in caught if "training windows for" in str(w.message)]
    assert message.startswith("series 'b': only 0 training windows for lookback=5")
    assert message.endswith("no lookback leaves it 2 training windows: use a longer record")


def test_true_is_no_batch_size():
    X, y = make_series(n_rows=400)
    with pytest.raises(ValueError, match="batch_size must be a positive int or 'auto', got True"):
        TLAGRegressor(**{**FAST, "batch_size": True, "max_epochs": 1}).fit(X, y)
