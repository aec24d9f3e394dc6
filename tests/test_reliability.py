"""Interrupted fits, warm starts, and property tests on windows and metrics.

Interrupts are simulated by raising ``KeyboardInterrupt`` where a real Ctrl-C could land:
between training batches (from a callback), inside the Hessian-vector products of a
growth decision, and inside the backtracking search after the new layer was inserted.
"""

import copy
import io
import warnings

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import r2_score
from skorch.callbacks import Callback

from sktlag import TLAGRegressor, _training
from sktlag import growth as G
from sktlag import metrics as M
from sktlag.losses import masked_mse
from sktlag.model import GrowingLSTM
from sktlag.recipe import ShortRecordWarning
from sktlag.windows import chronological_split, group_starts, padded_series, window_ends

from .conftest import make_series

# Tiny settings: a fit takes well under a second on one thread.
TINY = dict(
    hidden_size=4,
    lookback=4,
    max_epochs=8,
    max_epochs_per_layer=2,
    patience=1,
    moving_avg_window=1,
    batch_size=32,
    derivative_samples=16,
    num_power_iterations=6,
    max_layers=4,
    lr=1e-2,
    # Growth runs its course here (the tests exercise growing networks); the validation
    # rule that ends growth early has tests of its own.
    min_improvement=-float("inf"),
    n_threads=1,
)


@pytest.fixture(scope="module")
def data():
    return make_series(n_rows=120)


class InterruptAt(Callback):
    """Raise KeyboardInterrupt before batch ``batch`` of epoch ``epoch`` (once).

    A training batch, or with ``training=False`` a validation batch.
    """

    def __init__(self, epoch, batch, training=True):
        self.epoch = epoch
        self.batch = batch
        self.training = training
        self.fired = False
        self.initial_state = None

    def on_train_begin(self, net, **kwargs):
        if self.initial_state is None:
            self.initial_state = copy.deepcopy(net.module_.state_dict())

    def on_epoch_begin(self, net, **kwargs):
        self._seen = 0

    def on_batch_begin(self, net, training, **kwargs):
        if training != self.training or self.fired or len(net.history) != self.epoch:
            return
        self._seen += 1
        if self._seen == self.batch:
            self.fired = True
            raise KeyboardInterrupt


def add_callback(monkeypatch, callback, after=None, name="test_callback"):
    """Make every fit of TLAGRegressor use ``callback`` too (last, or after ``after``)."""
    original = _training._callbacks

    def patched(*args, **kwargs):
        callbacks = original(*args, **kwargs)
        names = [n for n, _ in callbacks]
        at = len(callbacks) if after is None else names.index(after) + 1
        return [*callbacks[:at], (name, callback), *callbacks[at:]]

    monkeypatch.setattr(_training, "_callbacks", patched)


class Snapshots(Callback):
    """Copy the module's state at the end of every epoch, as the checkpoint saw it."""

    def __init__(self):
        self.states = {}

    def on_epoch_end(self, net, **kwargs):
        self.states[net.history[-1]["epoch"]] = copy.deepcopy(net.module_.state_dict())


@pytest.fixture
def snapshots(monkeypatch):
    recorder = Snapshots()
    add_callback(monkeypatch, recorder, after="checkpoint", name="test_snapshots")
    return recorder


def interrupt_hvp_call(monkeypatch, call):
    """Raise KeyboardInterrupt in the ``call``-th Hessian-vector backward pass of the fit.

    Both operators count: one position's products and all positions' in lockstep.
    """
    count = {"n": 0}

    def patch(operator):
        original = operator.__call__

        def patched(self, v):
            count["n"] += 1
            if count["n"] == call:
                raise KeyboardInterrupt
            return original(self, v)

        monkeypatch.setattr(operator, "__call__", patched)

    patch(G.HessianOperator)
    patch(G.BlockHessianOperator)


def interrupt_backtracking(monkeypatch, decision):
    """Raise KeyboardInterrupt in the backtracking search of growth decision ``decision``.

    The new layer is in the module by then and holds non-zero weights (one trial scale
    has been set).
    """
    original = G.backtracking_scale
    count = {"n": 0}
    seen = {}

    def patched(loss_at, base_loss, **kwargs):
        count["n"] += 1
        if count["n"] != decision:
            return original(loss_at, base_loss, **kwargs)
        loss_at(kwargs["init_scale"])
        seen["inside"] = True
        raise KeyboardInterrupt

    monkeypatch.setattr(G, "backtracking_scale", patched)
    return seen


def fit_interrupted(X, y, match="the best validated state so far", **params):
    est = TLAGRegressor(**{**TINY, **params}, random_state=0)
    with pytest.warns(UserWarning, match=f"fit interrupted .*; the model is {match}"):
        est.fit(X, y)
    return est


def assert_consistent(est, X, snapshots):
    """The fitted state after an interrupt is a complete, usable, recorded state."""
    assert est.interrupted_ is True
    # Nothing of the epoch cut short stays in the callbacks, which a pickle carries.
    validation = dict(est.net_.callbacks_)["valid_nse"]
    assert not getattr(validation, "_pred", []) and not getattr(validation, "_true", [])
    module = est.module_
    assert module is est.net_.module_
    assert module.get_spec()["num_layers"] == len(module.layers) == est.n_layers_
    assert all(torch.isfinite(p).all() for p in module.parameters())
    pred = est.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all()
    history = est.history_
    # Only completed epochs remain, numbered without gaps.
    assert all("n_layers" in row and "valid_score" in row for row in history)
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    # Every insertion recorded happened, and every one that happened is recorded.
    decisions = est.derivative_history_
    inserted = int(decisions["inserted"].sum()) if len(decisions) else 0
    added = [row for row in history if "layer_added" in row]
    assert inserted == len(added)
    # One entry per architecture that completed an epoch: a layer inserted at the end
    # of the last completed epoch has none yet.
    untrained = 1 if len(history) and "layer_added" in history[-1] else 0
    assert len(est.growth_history_) == (inserted + 1 - untrained if len(history) else 0)
    # The model is the best validated state: that epoch's weights, bit for bit.
    if len(history):
        best = max(history, key=lambda row: row["valid_score"])
        assert est.best_epoch_ == best["epoch"]
        assert est.n_layers_ == best["n_layers"]
        for name, value in module.state_dict().items():
            assert torch.equal(value, snapshots.states[best["epoch"]][name]), name
    return pred


def continue_fit(est, X, y, **params):
    last_epoch = est.history_[-1]["epoch"] if len(est.history_) else 0
    n_decisions = len(est.derivative_history_)
    before = est.predict(X)
    est.set_params(warm_start=True, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # Tiny test series are short records; that warning is not the subject.
        warnings.simplefilter("ignore", ShortRecordWarning)
        est.fit(X, y)
    assert est.interrupted_ is False
    new_rows = [row for row in est.history_ if row["epoch"] > last_epoch]
    assert new_rows and new_rows[0]["epoch"] == last_epoch + 1
    assert len(est.derivative_history_) > n_decisions
    assert not np.array_equal(est.predict(X), before)
    return est


# ---------------------------------------------------------------- interrupts
@pytest.mark.parametrize("training, batch", [(True, 2), (False, 1)])
def test_interrupt_mid_epoch_keeps_the_best_completed_state(
    monkeypatch, data, snapshots, training, batch
):
    X, y = data
    add_callback(monkeypatch, InterruptAt(epoch=3, batch=batch, training=training))
    est = fit_interrupted(X, y, topo_derivative_threshold=-np.inf)
    assert_consistent(est, X, snapshots)
    assert len(est.history_) == 2  # epoch 3 was cut short and is not recorded
    depth = est.n_layers_
    continue_fit(est, X, y)
    assert max(est.history_[:, "n_layers"]) > depth  # growth goes on


def test_interrupt_after_a_validation_batch_keeps_none_of_it(monkeypatch, data, snapshots):
    class InterruptAfterValidationBatch(Callback):
        def on_batch_end(self, net, training, **kwargs):
            if not training and len(net.history) == 3:
                raise KeyboardInterrupt

    X, y = data
    add_callback(monkeypatch, InterruptAfterValidationBatch())
    est = fit_interrupted(X, y)
    assert_consistent(est, X, snapshots)  # the batch's predictions are not kept
    assert len(est.history_) == 2


def test_interrupt_in_the_first_epoch_keeps_the_initial_network(monkeypatch, data, snapshots):
    X, y = data
    interrupt = InterruptAt(epoch=1, batch=2)
    add_callback(monkeypatch, interrupt)
    est = fit_interrupted(X, y, match="the network training started from")
    assert_consistent(est, X, snapshots)
    assert len(est.history_) == 0 and est.n_layers_ == 1
    assert len(est.derivative_history_) == 0 and est.growth_history_ == []
    # Nothing was validated: the weights are those training started from, not the
    # ones after the batch that was trained.
    for name, value in est.module_.state_dict().items():
        assert torch.equal(value, interrupt.initial_state[name]), name
    continue_fit(est, X, y)


def test_interrupt_during_a_growth_decision(monkeypatch, data, snapshots):
    X, y = data
    # The first decision (epoch 2) takes 6 products per position; interrupt inside the
    # second decision, after one insertion.
    interrupt_hvp_call(monkeypatch, 6 + 3)
    est = fit_interrupted(X, y, topo_derivative_threshold=-np.inf)
    pred = assert_consistent(est, X, snapshots)
    decisions = est.derivative_history_
    assert len(decisions) == 1 and decisions["inserted"].all()
    # The epoch whose decision was cut short completed and is recorded, with no outcome.
    last = est.history_[-1]
    assert last["plateau"] and "layer_added" not in last and "growth_stopped" not in last
    monkeypatch.undo()
    continue_fit(est, X, y)
    assert not np.array_equal(est.predict(X), pred)


def test_interrupt_during_backtracking_removes_the_new_layer(monkeypatch, data, snapshots):
    X, y = data
    seen = interrupt_backtracking(monkeypatch, decision=2)
    est = fit_interrupted(X, y, topo_derivative_threshold=-np.inf)
    assert seen["inside"]
    assert_consistent(est, X, snapshots)
    decisions = est.derivative_history_
    assert len(decisions) == 1 and decisions["inserted"].all()
    assert max(est.history_[:, "n_layers"]) == 2
    monkeypatch.undo()
    continue_fit(est, X, y)
    assert max(est.history_[:, "n_layers"]) >= 3


def test_backtracking_interrupt_leaves_the_module_as_it_was(monkeypatch):
    torch.manual_seed(0)
    module = GrowingLSTM(n_features=2, hidden_size=3, num_layers=2)
    X, y = torch.randn(8, 5, 2), torch.randn(8, 1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    spec = module.get_spec()
    interrupt_backtracking(monkeypatch, decision=1)
    with pytest.raises(KeyboardInterrupt):
        G.grow(module, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=4)
    assert module.get_spec() == spec
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_growth_stop_and_max_epochs_are_not_interrupts(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # Tiny test series are short records; that warning is not the subject.
        warnings.simplefilter("ignore", ShortRecordWarning)
        # Growth ends at max_layers; training ends at that architecture's plateau,
        # before the budget of 30 epochs runs out.
        stopped = TLAGRegressor(**{**TINY, "max_epochs": 30}, topo_derivative_threshold=0.0,
                                random_state=0).fit(X, y)
        full = TLAGRegressor(**{**TINY, "max_epochs": 2}, random_state=0).fit(X, y)
    assert stopped.interrupted_ is False and stopped.growth_stop_rule_ == "max_layers"
    assert len(stopped.history_) < 30 and stopped.history_[-1]["plateau"]
    assert full.interrupted_ is False and len(full.history_) == 2


def test_skorch_early_stopping_is_a_stop_not_an_interrupt(data):
    from skorch.callbacks import EarlyStopping

    from sktlag.report import architecture_summary

    # skorch's EarlyStopping ends the loop by raising KeyboardInterrupt, as Ctrl-C does;
    # it was reported as an interrupt ("Fit again with warm_start=True to continue").
    X, y = data
    stop = EarlyStopping(monitor="valid_loss", patience=1, threshold=10.0,
                         sink=lambda *args, **kwargs: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ShortRecordWarning)
        est = TLAGRegressor(**{**TINY, "max_epochs": 30}, callbacks=[("stop", stop)],
                            random_state=0).fit(X, y)
    assert est.interrupted_ is False and est.growth_stop_rule_ == "early_stopping"
    assert len(est.history_) == 2 and est.history_[-1]["n_layers"] >= 1
    assert architecture_summary(est)["stop_reason"] == "stopped by EarlyStopping"


def test_interrupt_message_when_verbose(monkeypatch, data, capsys):
    X, y = data
    add_callback(monkeypatch, InterruptAt(epoch=2, batch=1))
    fit_interrupted(X, y, verbose=1)
    assert "fit interrupted after 1 completed epoch(s)" in capsys.readouterr().out


def test_an_interrupted_fit_pickles_like_a_complete_one(monkeypatch, data):
    X, y = data
    add_callback(monkeypatch, InterruptAt(epoch=2, batch=2))
    est = fit_interrupted(X, y)
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert loaded.interrupted_ is True and loaded.n_layers_ == est.n_layers_
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


# ---------------------------------------------------------------- warm start
def test_warm_start_continues_depth_scaling_and_history(data):
    X, y = data
    params = {**TINY, "topo_derivative_threshold": -np.inf, "max_layers": 2}
    est = TLAGRegressor(**params, random_state=0).fit(X, y)
    depth, mean, scale = est.n_layers_, est.target_mean_.copy(), est.target_scale_.copy()
    old_decisions = est.derivative_history_.copy()
    n_epochs = len(est.history_)
    est.set_params(warm_start=True, max_epochs=3, max_layers=4)
    est.fit(X, 2 * y + 7)  # other targets: the first fit's scaling stays
    np.testing.assert_array_equal(est.target_mean_, mean)
    np.testing.assert_array_equal(est.target_scale_, scale)
    rows = list(est.history_)[n_epochs:]
    assert [r["epoch"] for r in rows] == list(range(n_epochs + 1, n_epochs + 4))
    assert rows[0]["n_layers"] == depth  # from the fitted depth, not initial_num_layers
    assert len(est.derivative_history_) >= len(old_decisions)
    np.testing.assert_array_equal(
        est.derivative_history_.iloc[: len(old_decisions)]["epoch"], old_decisions["epoch"]
    )


def test_warm_start_never_ends_worse_than_it_began(data):
    X, y = data
    est = TLAGRegressor(**TINY, random_state=0).fit(X, y)
    before = est.predict(X)
    last_epoch = est.history_[-1]["epoch"]
    # A learning rate this large wrecks every new epoch: the fitted state stays best.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(warm_start=True, lr=1e4, max_epochs=3).fit(X, y)
    assert len(est.history_) > last_epoch
    assert est.best_epoch_ == last_epoch
    np.testing.assert_array_equal(est.predict(X), before)


def test_warm_start_checks_features_outputs_and_architecture(data):
    X, y = data
    est = TLAGRegressor(**{**TINY, "max_epochs": 2}, random_state=0).fit(X, y)
    est.set_params(warm_start=True)
    with pytest.raises(ValueError, match="features"):
        est.fit(X[:, :2], y)
    with pytest.raises(ValueError, match="outputs"):
        est.fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="warm_start cannot change hidden_size"):
        est.set_params(hidden_size=5).fit(X, y)


# ---------------------------------------------------------------- properties: windows
@st.composite
def grouped_series(draw):
    lookback = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
    n_features = draw(st.integers(1, 3))
    n = sum(sizes)
    X = np.arange(n * n_features, dtype=np.float64).reshape(n, n_features) + 1.0
    fill = -np.arange(1, n_features + 1, dtype=np.float64)
    groups = np.repeat(np.arange(len(sizes)) * 10, sizes)
    history = None
    if draw(st.booleans()):
        rows = draw(st.integers(0, 8))
        history = -1000.0 - np.arange(rows * n_features, dtype=np.float64).reshape(
            rows, n_features
        )
    return X, lookback, fill, groups, history, draw(st.booleans())


@settings(max_examples=80, deadline=None)
@given(grouped_series())
def test_padded_windows_are_the_rows_before_or_padding(case):
    X, lookback, fill, groups, history, use_groups = case
    groups = groups if use_groups else None
    series, ends = padded_series(X, lookback, fill, groups, history)
    starts = group_starts(groups, len(X))
    for i in range(len(X)):
        window = series[ends[i] - lookback + 1 : ends[i] + 1]
        # Expected: the rows of its own group up to row i, padded in front.
        own = X[max(starts[i], i - lookback + 1) : i + 1]
        n_pad = lookback - len(own)
        np.testing.assert_array_equal(window[n_pad:], own)
        padding = np.broadcast_to(fill, (n_pad, X.shape[1])).copy()
        if history is not None and starts[i] == 0 and n_pad and lookback > 1:
            real = history[-(lookback - 1):][-n_pad:] if len(history) else history[:0]
            if len(real):
                padding[n_pad - len(real):] = real
        np.testing.assert_array_equal(window[:n_pad], padding)


@settings(max_examples=80, deadline=None)
@given(grouped_series(), st.floats(0.05, 0.9))
def test_split_windows_stay_in_their_group_and_never_overlap(case, fraction):
    X, lookback, _, groups, _, _ = case
    ends = window_ends(len(X), lookback, groups)
    starts = group_starts(groups, len(X))
    assert np.all(ends - lookback + 1 >= starts[ends])  # no window crosses a boundary
    expected = sum(max(s - lookback + 1, 0) for s in np.unique(groups, return_counts=True)[1])
    assert len(ends) == expected
    train, valid = chronological_split(ends, fraction, lookback, groups)
    assert len(np.intersect1d(train, valid)) == 0
    for g in np.unique(groups):
        t, v = train[groups[train] == g], valid[groups[valid] == g]
        if len(t) and len(v):
            assert t.max() < v.min() - lookback + 1  # no shared row
        n_windows = int(np.sum(groups[ends] == g))
        assert len(v) == int(np.ceil(fraction * n_windows))


# ---------------------------------------------------------------- properties: metrics
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)


@st.composite
def spread_pairs(draw):
    n = draw(st.integers(3, 40))
    obs = draw(hnp.arrays(float, n, elements=finite))
    sim = draw(hnp.arrays(float, n, elements=finite))
    scale = max(np.abs(obs).max(), 1.0)
    if np.std(obs) <= 1e-6 * scale:  # the NSE of a constant series is undefined
        obs = obs + np.linspace(0.0, scale, n)
    return obs, sim


@settings(max_examples=60, deadline=None)
@given(spread_pairs())
def test_nse_identities(pair):
    obs, sim = pair
    value = M.nse(obs, sim)
    assert value == pytest.approx(r2_score(obs, sim), rel=1e-9, abs=1e-9)
    assert value == pytest.approx(1 - M.rmse(obs, sim) ** 2 / np.var(obs), rel=1e-9, abs=1e-9)
    assert M.nse(obs, np.full_like(obs, obs.mean())) == pytest.approx(0.0, abs=1e-9)
    # The same affine change of units for both series leaves the NSE unchanged.
    assert M.nse(3.0 * obs - 5.0, 3.0 * sim - 5.0) == pytest.approx(value, rel=1e-8, abs=1e-8)


@settings(max_examples=60, deadline=None)
@given(spread_pairs())
def test_kge_is_the_distance_of_its_components(pair):
    obs, sim = pair
    obs = obs - obs.min() + 1.0  # positive means, as for discharge
    sim = sim - sim.min() + 1.0
    if np.std(sim) <= 1e-6 * sim.max():
        sim = sim + np.linspace(0.0, 1.0, len(sim))
    parts = M.kge(obs, sim, return_components=True)
    value, r, alpha, beta = (parts[k] for k in ("kge", "r", "alpha", "beta"))
    assert r == pytest.approx(np.corrcoef(obs, sim)[0, 1], abs=1e-9)
    assert alpha == pytest.approx(np.std(sim) / np.std(obs), rel=1e-9)
    assert beta == pytest.approx(sim.mean() / obs.mean(), rel=1e-9)
    distance = np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)
    assert value == pytest.approx(1 - distance, rel=1e-9, abs=1e-9)
    assert M.pearson_r(obs, sim) == pytest.approx(M.pearson_r(sim, obs), abs=1e-12)

