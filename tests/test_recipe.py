"""The training recipe: forget-gate bias, output dropout, learning-rate schedule, gradient
clipping, the validation stop rule, architecture selection, the optimizer after an
insertion, and the presets."""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from skorch.history import History

from sktlag import PRESETS, TLAGRegressor
from sktlag.callbacks import STOP_RULES, ArchitectureCheckpoint, PlateauDetector
from sktlag.model import GrowingLSTM

from .conftest import FAST as _FAST
from .conftest import make_series

# These tests are about the rules themselves: the package's own validation rule applies.
FAST = {k: v for k, v in _FAST.items() if k != "min_improvement"}


@pytest.fixture(scope="module")
def data():
    return make_series(n_rows=240)


class RecordEpochs(Callback):
    """At the end of every epoch: the first parameter group's learning rate, the norm of
    the parameters' change since training began, and the optimizer (when a layer was
    added in that epoch)."""

    def on_train_begin(self, net, **kwargs):
        self.lrs = []
        self.group_lrs = []
        self.start = [p.detach().clone() for p in net.module_.parameters()]
        self.after_insertion = None

    def on_epoch_end(self, net, **kwargs):
        self.lrs.append(net.optimizer_.param_groups[0]["lr"])
        self.group_lrs.append([g["lr"] for g in net.optimizer_.param_groups])
        params = list(net.module_.parameters())
        if len(params) == len(self.start):
            pairs = zip(params, self.start, strict=True)
            squares = (((p.detach() - s) ** 2).sum() for p, s in pairs)
            self.change = float(torch.sqrt(sum(squares)))
        position = net.history[-1].get("layer_added")
        if position is not None and self.after_insertion is None:
            optimizer = net.optimizer_
            self.after_insertion = {
                "position": position,
                "n_groups": len(optimizer.param_groups),
                "group_params": [list(g["params"]) for g in optimizer.param_groups],
                "new_layer": list(net.module_.layers[position].parameters()),
                "all_params": list(net.module_.parameters()),
                "state": {p: dict(s) for p, s in optimizer.state.items()},
            }


# ---------------------------------------------------------------- forget-gate bias
def _forget_bias(lstm):
    h = lstm.hidden_size
    return (lstm.bias_ih_l0 + lstm.bias_hh_l0)[h : 2 * h]


def test_initial_forget_bias_sets_every_layers_forget_gate_only():
    torch.manual_seed(0)
    plain = GrowingLSTM(n_features=3, hidden_size=4, num_layers=2)
    torch.manual_seed(0)
    biased = GrowingLSTM(n_features=3, hidden_size=4, num_layers=2, initial_forget_bias=3.0)
    h = 4
    for p_layer, b_layer in zip(plain.layers, biased.layers, strict=True):
        p, b = p_layer.lstm, b_layer.lstm
        np.testing.assert_allclose(_forget_bias(b).detach().numpy(), 3.0)
        total = (b.bias_ih_l0 + b.bias_hh_l0).detach().numpy()
        assert not np.allclose(total, 3.0)
        for name in ("bias_ih_l0", "bias_hh_l0"):
            for gate in (0, 2, 3):  # input, cell, output
                rows = slice(gate * h, (gate + 1) * h)
                np.testing.assert_array_equal(
                    getattr(b, name)[rows].detach().numpy(), getattr(p, name)[rows].detach().numpy()
                )
        for name in ("weight_ih_l0", "weight_hh_l0"):
            assert torch.equal(getattr(b, name), getattr(p, name))
    assert torch.equal(biased.head.weight, plain.head.weight)


def test_zero_forget_bias_leaves_pytorchs_initialization():
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 4, batch_first=True)
    torch.manual_seed(0)
    module = GrowingLSTM(n_features=3, hidden_size=4, initial_forget_bias=0.0)
    for name, value in reference.named_parameters():
        assert torch.equal(getattr(module.layers[0].lstm, name), value), name
    assert not np.allclose(_forget_bias(module.layers[0].lstm).detach().numpy(), 0.0)


def test_estimator_builds_the_network_with_its_forget_bias_and_output_dropout(data):
    X, y = data
    # lr tiny: one epoch cannot move the biases visibly.
    est = TLAGRegressor(**{**FAST, "max_epochs": 1, "lr": 1e-9}, initial_forget_bias=2.5,
                        output_dropout=0.3, topo_derivative_threshold=np.inf,
                        random_state=0).fit(X, y)
    np.testing.assert_allclose(
        _forget_bias(est.module_.layers[0].lstm).detach().numpy(), 2.5, atol=1e-5
    )
    assert est.module_.output_dropout.p == 0.3
    assert est.module_.get_spec()["output_dropout"] == 0.3


# ---------------------------------------------------------------- output dropout
def _dropout_module(rate):
    torch.manual_seed(0)
    return GrowingLSTM(n_features=3, hidden_size=8, output_dropout=rate).double()


def test_output_dropout_is_random_in_training_only():
    x = torch.randn(16, 5, 3, dtype=torch.float64)
    noisy, clean = _dropout_module(0.5), _dropout_module(0.0)
    noisy.train()
    clean.train()
    assert not torch.equal(noisy(x), noisy(x))
    assert torch.equal(clean(x), clean(x))
    noisy.eval()
    assert torch.equal(noisy(x), noisy(x))
    # In evaluation, dropout is the identity: the same weights predict the same.
    np.testing.assert_array_equal(noisy(x).detach().numpy(), clean.eval()(x).detach().numpy())


def test_spec_keeps_output_dropout_and_old_specs_load_without_it():
    module = _dropout_module(0.3)
    spec = module.get_spec()
    assert spec["output_dropout"] == 0.3
    rebuilt = GrowingLSTM.from_spec(spec)
    assert rebuilt.output_dropout_rate == 0.3 and rebuilt.output_dropout.p == 0.3
    old = {k: v for k, v in spec.items() if k != "output_dropout"}
    loaded = GrowingLSTM.from_spec(old)
    assert loaded.output_dropout_rate == 0.0 and loaded.output_dropout.p == 0.0
    assert "dropout before the head: 0.3" in module.describe()


# ---------------------------------------------------------------- learning-rate schedule
@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({2: 0.1}, [0.01, 0.001, 0.001, 0.001]),
        (((2, 0.1),), [0.01, 0.001, 0.001, 0.001]),
        ([[2, 0.1]], [0.01, 0.001, 0.001, 0.001]),
        # Each factor multiplies lr itself (not the rate before it), from its epoch on;
        # the order the pairs are given in does not matter.
        ({2: 0.5, 4: 0.1}, [0.01, 0.005, 0.005, 0.001]),
        ([(4, 0.1), (2, 0.5)], [0.01, 0.005, 0.005, 0.001]),
        ({1: 2.0}, [0.02, 0.02, 0.02, 0.02]),
    ],
)
def test_lr_schedule_multiplies_lr_from_its_epoch_on(data, schedule, expected):
    X, y = data
    recorder = RecordEpochs()
    params = {**FAST, "max_epochs": 4, "max_epochs_per_layer": 4, "patience": 10, "lr": 0.01}
    TLAGRegressor(**params, lr_schedule=schedule, topo_derivative_threshold=np.inf,
                  callbacks=[("record", recorder)], random_state=0).fit(X, y)
    np.testing.assert_allclose(recorder.lrs, expected)


def test_no_lr_schedule_keeps_lr(data):
    X, y = data
    recorder = RecordEpochs()
    params = {**FAST, "max_epochs": 3, "max_epochs_per_layer": 3, "patience": 10, "lr": 0.01}
    TLAGRegressor(**params, lr_schedule=None, topo_derivative_threshold=np.inf,
                  callbacks=[("record", recorder)], random_state=0).fit(X, y)
    np.testing.assert_allclose(recorder.lrs, [0.01] * 3)


def test_lr_schedule_applies_to_the_new_layers_parameter_group(data):
    X, y = data
    recorder = RecordEpochs()
    params = {**FAST, "max_epochs": 4, "max_epochs_per_layer": 2, "patience": 10,
              "max_layers": 2, "lr": 0.01}
    est = TLAGRegressor(**params, lr_schedule={4: 0.5}, growth_optimizer="keep",
                        topo_derivative_threshold=-np.inf, min_improvement=-np.inf,
                        callbacks=[("record", recorder)], random_state=0).fit(X, y)
    assert est.history_[1]["layer_added"] == 1
    # After the insertion the optimizer has a second group (the new layer); the schedule
    # sets both.
    assert recorder.group_lrs == [[0.01], [0.01, 0.01], [0.01, 0.01], [0.005, 0.005]]


@pytest.mark.parametrize(
    "schedule, match",
    [
        ({0: 0.5}, "epochs must be integers >= 1"),
        ({2: -1}, "factor of epoch 2 must be positive"),
        ({2: 0}, "must be positive"),
        ({2: math.nan}, "must be positive"),
        ({"a": 1}, "epochs must be integers"),
        ({1.5: 0.5}, "epochs must be integers"),
        ({True: 0.5}, "epochs must be integers"),
        ({2: True}, "factor of epoch 2 must be positive"),
        ([(1,)], "sequence of \\(epoch, factor\\) pairs"),
        ([(1, 0.5, 2)], "sequence of \\(epoch, factor\\) pairs"),
        ((3,), "sequence of \\(epoch, factor\\) pairs"),
    ],
)
def test_invalid_lr_schedule_is_refused_at_fit(data, schedule, match):
    X, y = data
    est = TLAGRegressor(**FAST, lr_schedule=schedule)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "net_")


# ---------------------------------------------------------------- gradient clipping
def test_tiny_gradient_norm_clip_barely_moves_the_weights(data):
    X, y = data
    changes = {}
    for clip in (None, 1e-12):
        recorder = RecordEpochs()
        TLAGRegressor(**{**FAST, "max_epochs": 1}, clip_gradient_norm=clip,
                      topo_derivative_threshold=np.inf, callbacks=[("record", recorder)],
                      random_state=0).fit(X, y)
        changes[clip] = recorder.change
    # Adam divides by the gradient's own size, so only a clip far below its epsilon
    # (1e-8) shows: the steps shrink by about clip / eps.
    assert changes[None] > 0.1
    assert changes[1e-12] < 1e-3 * changes[None]


# ---------------------------------------------------------------- validation stop rule
def test_validation_rule_ends_growth_without_computing_derivatives(data):
    X, y = data
    params = {**FAST, "max_epochs": 20, "max_layers": 3}
    est = TLAGRegressor(**params, min_improvement=1.0, topo_derivative_threshold=0.0,
                        random_state=0).fit(X, y)
    dh = est.derivative_history_
    assert list(dh["rule"]) == ["inserted", "validation"]
    assert est.growth_stop_rule_ == "validation" and "validation" in STOP_RULES
    last = dh.iloc[-1]
    assert not last["inserted"] and last["n_hvp"] == 0
    assert last["reason"].startswith("validation")
    derivative_columns = [c for c in dh.columns if "derivative_" in c]
    assert derivative_columns and last[derivative_columns].isna().all()
    assert np.isfinite(dh["architecture_score"]).all()
    # The decision compares the grown architecture, as far as it had trained, with the
    # best before it (after the decision, it trains on to its own plateau).
    ma = dict(zip(est.history_[:, "epoch"], est.history_[:, "valid_nse_ma"], strict=True))
    inserted_at, decided_at = dh["epoch"]
    grown = [ma[e] for e in range(inserted_at + 1, decided_at + 1)]
    assert np.isnan(grown[0]) and not np.isnan(grown[1:]).any()  # from its first full window
    assert last["architecture_score"] == pytest.approx(max(grown[1:]))
    scores = [a["best_valid_nse_ma"] for a in est.growth_history_]
    assert len(scores) == 2
    assert last["architecture_score"] <= scores[0] + 1.0
    # The fitted architecture is the one with the best moving average.
    assert est.n_layers_ == est.growth_history_[int(np.argmax(scores))]["n_layers"]


def test_a_validation_stop_records_the_fits_criterion(data):
    # The stop row said "relative" (the field's default) in a fit deciding by holdout.
    X, y = data
    params = {**FAST, "max_epochs": 20, "max_layers": 3}
    est = TLAGRegressor(**params, min_improvement=1.0, topo_derivative_threshold=-np.inf,
                        derivative_criterion="holdout", random_state=0).fit(X, y)
    dh = est.derivative_history_
    assert list(dh["rule"]) == ["inserted", "validation"]
    assert list(dh["criterion"]) == ["holdout", "holdout"]


@pytest.mark.parametrize(("min_improvement", "rule"), [(1.0, "validation"),
                                                       (-np.inf, "max_epochs")])
def test_the_validation_rule_judges_the_architecture_that_ends_with_the_budget(
        data, min_improvement, rule):
    # Both architectures train to their cap, the second's cap being the last epoch of
    # the budget: no layer can follow, but whether depth helped is still judged.
    X, y = data
    cap = FAST["max_epochs_per_layer"]
    params = {**FAST, "max_epochs": 2 * cap, "patience": 50, "max_layers": 3}
    est = TLAGRegressor(**params, min_improvement=min_improvement,
                        topo_derivative_threshold=0.0, random_state=0).fit(X, y)
    dh = est.derivative_history_
    assert len(est.history_) == 2 * cap and est.growth_stop_rule_ == rule
    assert list(dh["rule"]) == ["inserted", "validation"][: 2 if rule == "validation" else 1]
    if rule == "validation":
        last = dh.iloc[-1]
        assert last["epoch"] == 2 * cap and last["n_layers_before"] == 2
        assert last["n_hvp"] == 0 and not last["inserted"]
        assert last["architecture_score"] == pytest.approx(
            est.growth_history_[1]["best_valid_nse_ma"])
    # Judging changes nothing that was fitted: the same run without the rule predicts
    # the same.
    plain = TLAGRegressor(**params, min_improvement=-np.inf, topo_derivative_threshold=0.0,
                          random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), plain.predict(X))


def test_the_validation_rule_judges_an_architecture_the_budget_ends_before_its_plateau(data):
    # The budget ends two epochs into the second architecture, on an epoch that is no
    # plateau: the rule judged it only when the last epoch happened to be one.
    X, y = data
    cap = FAST["max_epochs_per_layer"]
    params = {**FAST, "max_epochs": cap + 2, "patience": 50, "max_layers": 3}
    est = TLAGRegressor(**params, min_improvement=1.0, topo_derivative_threshold=0.0,
                        random_state=0).fit(X, y)
    assert len(est.history_) == cap + 2 and not est.history_[-1]["plateau"]
    assert est.growth_stop_rule_ == "validation"
    assert list(est.derivative_history_["rule"]) == ["inserted", "validation"]


def test_the_validation_rule_judges_an_architecture_the_budget_ends_at_its_cap(data):
    # A cap of one epoch ends each architecture before it has a full window of three:
    # mid-run it is judged at its cap, and so it is where the budget ends with it.
    X, y = data
    params = {**FAST, "max_epochs_per_layer": 1, "moving_avg_window": 3, "max_layers": 3}
    rules = []
    for budget in (2, 3):
        est = TLAGRegressor(**{**params, "max_epochs": budget}, min_improvement=1.0,
                            topo_derivative_threshold=-np.inf, random_state=0).fit(X, y)
        rules.append(est.growth_stop_rule_)
    assert rules == ["validation", "validation"]


def test_growth_on_a_task_no_depth_can_help_ends_by_its_own_rule_well_before_the_budget():
    # The target is noise, independent of the inputs: nothing for a deeper network to
    # learn. Under the package's own stop rules (patience, moving average, threshold,
    # validation margin, epoch cap and budget) growth must end by a rule of its own, at
    # one layer, long before the epoch budget would end it.
    rng = np.random.default_rng(0)
    X = rng.gamma(0.6, 2.0, size=(1000, 3))
    y = rng.standard_normal(1000)
    est = TLAGRegressor(hidden_size=8, lookback=10, n_threads=1, random_state=0)
    with pytest.warns(UserWarning, match="validation part has"):  # a short toy record
        est.fit(X, y)
    assert est.growth_stop_rule_ in ("threshold", "validation")
    assert est.n_layers_ == 1
    assert len(est.history_) <= 3 * est.max_epochs // 8


def test_without_validation_rule_growth_reaches_max_layers(data):
    X, y = data
    params = {**FAST, "max_epochs": 20, "max_layers": 3}
    est = TLAGRegressor(**params, min_improvement=-np.inf, topo_derivative_threshold=0.0,
                        random_state=0).fit(X, y)
    assert list(est.derivative_history_["rule"]) == ["inserted", "inserted", "max_layers"]
    assert est.growth_stop_rule_ == "max_layers"


def test_fitted_attributes_name_the_best_epoch_and_the_stop_rule(data):
    X, y = data
    est = TLAGRegressor(**{**FAST, "max_epochs": 20}, topo_derivative_threshold=0.0,
                        min_improvement=-np.inf, random_state=0).fit(X, y)
    row = next(r for r in est.history_ if r["epoch"] == est.best_epoch_)
    assert row["n_layers"] == est.n_layers_
    assert est.best_score_ == pytest.approx(row["valid_score"])
    assert row.get("valid_nse_best")
    assert est.growth_stop_rule_ in (*STOP_RULES, "max_epochs", "interrupted")
    short = TLAGRegressor(**{**FAST, "max_epochs": 2}, random_state=0).fit(X, y)
    assert short.growth_stop_rule_ == "max_epochs"


# ---------------------------------------------------------------- training after growth ends
@pytest.mark.parametrize(("max_layers", "threshold", "rule"),
                         [(1, 0.01, "max_layers"), (2, 1e9, "threshold")])
def test_growth_ending_at_the_epoch_cap_lets_the_network_train_on_as_if_uncapped(
        data, max_layers, threshold, rule):
    # The cap only keeps epochs for growth: once a decision at the cap declines, the
    # network trains on from where it was, epoch for epoch as an uncapped run.
    X, y = data
    # At this rate the sixth epoch validates below the fifth: the decision at the cap
    # computes on the fifth epoch's weights, and training goes on from the sixth's.
    params = {**FAST, "max_epochs": 10, "max_epochs_per_layer": 6, "lr": 0.03,
              "patience": 20, "max_layers": max_layers,
              "topo_derivative_threshold": threshold}
    capped = TLAGRegressor(**params, random_state=0).fit(X, y)
    uncapped = TLAGRegressor(**{**params, "max_epochs_per_layer": 10},
                             random_state=0).fit(X, y)
    scores = uncapped.history_[:, "valid_score"]
    assert np.argmax(scores[:6]) == 4
    assert list(capped.derivative_history_["epoch"]) == [6]
    assert capped.growth_stop_rule_ == rule
    assert len(capped.history_) == len(uncapped.history_) == 10
    assert capped.history_[:, "valid_score"] == uncapped.history_[:, "valid_score"]
    assert capped.best_epoch_ == uncapped.best_epoch_
    np.testing.assert_array_equal(capped.predict(X), uncapped.predict(X))


def test_after_growth_ends_at_the_cap_training_ends_at_the_architectures_own_plateau(data):
    X, y = data
    params = {**FAST, "max_epochs": 60, "patience": 3, "moving_avg_window": 2}
    est = TLAGRegressor(**params, min_improvement=1.0, topo_derivative_threshold=0.0,
                        random_state=0).fit(X, y)
    dh = est.derivative_history_
    assert list(dh["rule"]) == ["inserted", "validation"]
    cap = FAST["max_epochs_per_layer"]
    assert list(dh["epoch"]) == [cap, 2 * cap]
    last = len(est.history_)
    assert 2 * cap < last < params["max_epochs"]
    ma = est.history_[:, "valid_nse_ma"]
    # The moving average of the last `patience` epochs never beat the one before them.
    assert max(ma[-params["patience"]:]) <= np.nanmax(ma[cap:-params["patience"]])
    assert est.history_[-1]["plateau"] and est.growth_stop_rule_ == "validation"


class StatesAtEpochBegin(Callback):
    """At the start of every epoch: the network's weights and the optimizer's state of
    each parameter, by parameter name."""

    def on_train_begin(self, net, **kwargs):
        self.states = []

    def on_epoch_begin(self, net, **kwargs):
        optimizer_state = net.optimizer_.state
        weights = {k: v.clone() for k, v in net.module_.state_dict().items()}
        moments = {name: copy.deepcopy(optimizer_state[p])
                   for name, p in net.module_.named_parameters() if p in optimizer_state}
        self.states.append((weights, moments))


def test_a_layer_that_did_not_pay_gives_the_epochs_of_the_cap_back_to_its_parent(data, capsys):
    # The parent is still improving when its cap of 8 epochs forces a decision; the
    # layer inserted then ends at its own plateau without paying. The parent comes
    # back as it was at its cap and trains on to its own plateau, epoch for epoch as in
    # a run whose decision at the cap declined to grow.
    X, y = data
    cap = 8
    params = {**FAST, "max_epochs": 40, "max_epochs_per_layer": cap, "patience": 1,
              "moving_avg_window": 2, "lr": 0.03, "lr_schedule": None,
              "min_improvement": 1.0}
    grown_states, declined_states = StatesAtEpochBegin(), StatesAtEpochBegin()
    grown = TLAGRegressor(**params, topo_derivative_threshold=0.0, random_state=0,
                          callbacks=[grown_states], verbose=1).fit(X, y)
    printed = capsys.readouterr().out
    declined = TLAGRegressor(**params, topo_derivative_threshold=1e9, random_state=0,
                             callbacks=[declined_states]).fit(X, y)
    # The decision at the cap came while the parent was still improving: it trained on.
    assert declined.history_[cap - 1]["plateau"] and len(declined.history_) > cap + 1
    depths = list(grown.history_[:, "n_layers"])
    child = depths.count(2)
    assert 0 < child < cap
    assert depths[: cap + child] == [1] * cap + [2] * child
    assert depths[cap + child :] == [1] * (len(declined.history_) - cap)
    assert list(grown.derivative_history_["rule"]) == ["inserted", "validation"]
    assert (f"epoch {cap + child}: back to 1 layer(s) as at epoch {cap}, where the cap "
            "stopped them; they train on") in printed
    # Back to the weights and Adam moments of the cap ...
    weights, moments = grown_states.states[cap + child]
    at_cap_weights, at_cap_moments = declined_states.states[cap]
    assert weights.keys() == at_cap_weights.keys() and moments.keys() == at_cap_moments.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], at_cap_weights[key], rtol=0, atol=0)
    for name in moments:
        torch.testing.assert_close(moments[name], at_cap_moments[name], rtol=0, atol=0)
    # ... and on from there as the uncapped parent, to the same plateau, and the same
    # weights kept: its best epochs from before the cap count as the uncapped's do.
    for key in ("valid_score", "valid_nse_ma", "plateau"):
        assert grown.history_[cap + child :, key] == declined.history_[cap:, key]
    assert grown.best_epoch_ == declined.best_epoch_ + (child if declined.best_epoch_ > cap
                                                        else 0)
    np.testing.assert_array_equal(grown.predict(X), declined.predict(X))
    # A fit whose budget ends while the grown network is on trial keeps no copy of the
    # parent (a pickle would carry it).
    cut = TLAGRegressor(**{**params, "max_epochs": cap + 2}, topo_derivative_threshold=0.0,
                        random_state=0).fit(X, y)
    assert list(cut.history_[:, "n_layers"]) == [1] * cap + [2, 2]
    assert dict(cut.net_.callbacks_)["growth"]._capped_parent is None


def _new_epoch(net, epoch, **record):
    """Fill every weight with the epoch number (a restored state then tells its epoch)
    and write the epoch's history row."""
    with torch.no_grad():
        for p in net.module_.parameters():
            p.fill_(float(epoch))
    net.history.new_epoch()
    net.history.record("epoch", epoch)
    for key, value in record.items():
        net.history.record(key, value)


def _checkpointed_net():
    """A stand-in for a skorch net (a history and a one-layer module) and an
    ArchitectureCheckpoint whose training has begun on it."""
    torch.manual_seed(0)
    net = SimpleNamespace(history=History(), initialize_optimizer=lambda: None,
                          module_=GrowingLSTM(n_features=2, hidden_size=3))
    checkpoint = ArchitectureCheckpoint().initialize()
    checkpoint.on_train_begin(net)
    return net, checkpoint


def test_an_architecture_closed_twice_keeps_its_latest_best_epoch():
    # An architecture closed at a decision, trained on, then closed again at the end
    # holds the run's best as if it had been closed once: its best single epoch may
    # come after the first close at the same moving average.
    def run(close_midway):
        net, checkpoint = _checkpointed_net()
        scores, mas = [0.5, 0.7, 0.45, 0.75], [0.5, 0.6, 0.575, 0.6]
        for epoch, (score, ma) in enumerate(zip(scores, mas, strict=True), start=1):
            _new_epoch(net, epoch, valid_score=score, valid_nse_ma=ma)
            checkpoint.on_epoch_end(net)
            if close_midway and epoch == 2:
                checkpoint.close_architecture(net)
        checkpoint.on_train_end(net)
        return checkpoint, float(next(net.module_.parameters()).detach().flatten()[0])

    once, kept_once = run(close_midway=False)
    twice, kept_twice = run(close_midway=True)
    assert kept_once == kept_twice == 4.0
    assert once.best_epoch_ == twice.best_epoch_ == 4


def test_a_parent_that_trains_on_keeps_its_best_epoch_from_before_its_cap():
    # The parent's single best epoch (2) came before its cap (epoch 3); the grown layer
    # (epochs 4-5) did not pay and the parent trained on (6-8) to a better moving
    # average. Uncapped, its weights are those of epoch 2; resumed as a new architecture
    # from epoch 6, they were those of epoch 8.
    def run(capped):
        net, checkpoint = _checkpointed_net()

        def train(epochs):
            for epoch, score, ma in epochs:
                _new_epoch(net, epoch, valid_score=score, valid_nse_ma=ma)
                checkpoint.on_epoch_end(net)

        train([(1, 0.50, math.nan), (2, 0.90, 0.70), (3, 0.60, 0.75)])
        if capped:  # what GrowthCallback does at the cap, then when the child fails
            parent = checkpoint.snapshot()
            state = copy.deepcopy(net.module_.state_dict())
            checkpoint.close_architecture(net)
            net.module_.insert_layer(1)
            checkpoint.reset_architecture(net)
            train([(4, 0.55, math.nan), (5, 0.56, 0.555)])
            checkpoint.close_architecture(net)
            del net.module_.layers[1]
            net.module_.load_state_dict(state)
            checkpoint.resume(parent, net)
        train([(6, 0.80, 0.70), (7, 0.82, 0.81), (8, 0.83, 0.825)])
        checkpoint.on_train_end(net)
        return checkpoint.best_epoch_, float(next(net.module_.parameters()).flatten()[0])

    assert run(capped=False) == run(capped=True) == (2, 2.0)


def test_a_layer_inserted_but_not_yet_recorded_is_left_behind_at_the_end():
    # An interrupt between an insertion and the next epoch ends training on a module
    # one layer deeper than the weights kept for its architecture: those weights, with
    # their own architecture, are what the fit ends on.
    net, checkpoint = _checkpointed_net()
    for epoch, score in enumerate([0.5, 0.7], start=1):
        _new_epoch(net, epoch, valid_score=score, valid_nse_ma=score)
        checkpoint.on_epoch_end(net)
    kept = copy.deepcopy(net.module_.state_dict())
    net.module_.insert_layer(1)
    checkpoint.on_train_end(net)
    assert checkpoint.restored_ == "best" and net.module_.num_layers == 1
    for name, value in net.module_.state_dict().items():
        torch.testing.assert_close(value, kept[name])


def _drive_plateau(architectures, window):
    """Scores of consecutive architectures through PlateauDetector and
    ArchitectureCheckpoint; every epoch's weights are filled with the epoch number."""
    torch.manual_seed(0)
    net = SimpleNamespace(history=History(), initialize_optimizer=lambda: None,
                          module_=GrowingLSTM(n_features=2, hidden_size=3))
    plateau = PlateauDetector(patience=10, moving_avg_window=window,
                              max_epochs_per_layer=100).initialize()
    checkpoint = ArchitectureCheckpoint().initialize()
    checkpoint.on_train_begin(net)
    epoch, closed = 0, []
    for depth, scores in enumerate(architectures, start=1):
        if depth > 1:
            closed.append(checkpoint.close_architecture(net))
            net.module_.insert_layer(depth - 1)
            checkpoint.reset_architecture(net)
            plateau.reset_architecture()
        for score in scores:
            epoch += 1
            _new_epoch(net, epoch, valid_score=score)
            checkpoint.on_epoch_end(net)
            plateau.on_epoch_end(net)
    checkpoint.on_train_end(net)
    return closed, checkpoint, net


def test_a_grown_architecture_is_averaged_from_its_first_full_window():
    # A grown network starts from its parent's best weights: its first epoch can score
    # high (0.9) before training moves it. Judged on full windows it is worse (0.683).
    parent, grown = [0.5, 0.6, 0.7, 0.7, 0.7], [0.9, 0.6, 0.55, 0.6, 0.6]
    closed, checkpoint, net = _drive_plateau([parent, grown, [0.5]], window=3)
    ma = list(net.history[:, "valid_nse_ma"])
    assert np.isnan(ma[:2]).all() and np.isnan(ma[5:7]).all()
    assert ma[2:5] == pytest.approx([0.6, 2.0 / 3.0, 0.7])
    assert ma[7:10] == pytest.approx([2.05 / 3, 1.75 / 3, 1.75 / 3])
    assert closed == pytest.approx([0.7, 2.05 / 3])
    # The parent stays the fitted architecture: its weights of epoch 3, its first 0.7.
    assert checkpoint.best_epoch_ == 3 and net.module_.num_layers == 1
    # An architecture that ended before a full window is judged on all its epochs.
    closed, checkpoint, net = _drive_plateau([parent, [0.9, 0.6], [0.5]], window=3)
    assert closed == pytest.approx([0.7, 0.75])
    assert checkpoint.best_epoch_ == 6 and net.module_.num_layers == 2


def test_patience_counts_from_the_first_full_window():
    # Falling scores right after a layer went in do not count against its patience:
    # with a partial window there is no average to improve.
    plateau = PlateauDetector(patience=1, moving_avg_window=3, max_epochs_per_layer=100)
    plateau.initialize()
    history = History()
    ended = []
    for score in [0.9, 0.1, 0.2, 1.0, 0.0]:  # averages from epoch 3: 0.4, 0.433, 0.4
        history.new_epoch()
        history.record("valid_score", score)
        plateau.on_epoch_end(SimpleNamespace(history=history))
        ended.append(history[-1]["plateau"])
    assert ended == [False, False, False, False, True]


# ---------------------------------------------------------------- growth on a task that needs depth
def _depth_task(n=400, lookback=6, seed=0):
    # |sum of the last `lookback` inputs|: one 4-unit LSTM layer integrates the sum but
    # its tanh(cell) output and a linear head shape |.| poorly; a second layer can.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    s = np.convolve(X[:, 0], np.ones(lookback))[:n] / np.sqrt(lookback)
    return X, np.abs(s)


def test_growth_at_the_default_threshold_keeps_a_layer_where_depth_helps():
    X, y = _depth_task()
    params = {**FAST, "hidden_size": 4, "lookback": 6, "max_epochs_per_layer": 12,
              "patience": 5, "max_layers": 2}
    grown = TLAGRegressor(**{**params, "max_epochs": 24}, random_state=0).fit(X, y)
    dh = grown.derivative_history_
    assert dh["rule"].iloc[0] == "inserted"
    assert dh["relative_derivative_1"].iloc[0] > TLAGRegressor().topo_derivative_threshold
    assert grown.n_layers_ == 2
    two, one = grown.growth_history_[1], grown.growth_history_[0]
    assert two["best_valid_nse_ma"] > one["best_valid_nse_ma"]
    # Not only more epochs: one layer trained as long validates worse.
    flat = TLAGRegressor(**{**params, "max_layers": 1, "max_epochs": 24,
                            "max_epochs_per_layer": 24, "patience": 24},
                         random_state=0).fit(X, y)
    assert len(flat.history_) == len(grown.history_) == 24
    assert two["best_valid_nse_ma"] > flat.growth_history_[0]["best_valid_nse_ma"] + 0.02


# ---------------------------------------------------------------- a task that needs no depth
def _no_depth_task(n=800, seed=0):
    # The target is the current input plus noise: one layer represents it exactly (its
    # cell passes x_t through), so what is left after fitting it is noise.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    return X, X[:, 0] + 0.5 * rng.standard_normal(n)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_finite_held_out_threshold_stops_growth_where_depth_is_not_needed(seed):
    X, y = _no_depth_task(seed=seed)
    params = {**FAST, "hidden_size": 4, "lookback": 6, "max_epochs_per_layer": 40,
              "patience": 5, "max_layers": 2, "max_epochs": 60, "derivative_samples": 128}
    held_out = TLAGRegressor(**params, derivative_criterion="holdout",
                             topo_derivative_threshold=2.0, random_state=seed).fit(X, y)
    decision = held_out.derivative_history_.iloc[0]
    assert held_out.growth_stop_rule_ == "threshold" and held_out.n_layers_ == 1
    assert decision["rule"] == "threshold" and decision["holdout_statistic_1"] < 2.0
    # On its training sample the direction promises a gain all the same: the relative
    # derivative is far above its default threshold, and that criterion grows.
    relative = TLAGRegressor(**params, random_state=seed).fit(X, y)
    first = relative.derivative_history_.iloc[0]
    assert first["rule"] == "inserted" and first["relative_derivative_1"] > 0.1
    assert "holdout_statistic_1" not in relative.derivative_history_  # computed only to decide


# ---------------------------------------------------------------- architecture selection
def _drive_checkpoint(selection):
    """Three architectures: a single-epoch spike (0.95) in a weak first one, a steady
    better average (0.8) in the second, and a spike (0.9) above that average in a third
    whose own average is lower again. Every epoch's weights are filled with the epoch number, so
    the restored state tells which epoch was kept."""
    torch.manual_seed(0)
    module = GrowingLSTM(n_features=2, hidden_size=3)
    net = SimpleNamespace(history=History(), module_=module, initialize_optimizer=lambda: None)
    checkpoint = ArchitectureCheckpoint(selection=selection).initialize()
    checkpoint.on_train_begin(net)
    window = 2
    epoch = 0
    runs = [[0.5, 0.95, 0.5, 0.5], [0.75, 0.8, 0.8, 0.8], [0.5, 0.9, 0.5, 0.5]]
    for architecture, scores in enumerate(runs):
        if architecture:
            checkpoint.close_architecture(net)
            net.module_.insert_layer(architecture)
            checkpoint.reset_architecture(net)
        for i, score in enumerate(scores):
            epoch += 1
            ma = float(np.mean(scores[max(0, i + 1 - window) : i + 1]))
            _new_epoch(net, epoch, valid_score=score, valid_nse_ma=ma)
            checkpoint.on_epoch_end(net)
    checkpoint.on_train_end(net)
    return checkpoint, net


def test_moving_average_selection_prefers_the_steady_architecture():
    checkpoint, net = _drive_checkpoint("moving_average")
    assert net.module_.num_layers == 2
    assert checkpoint.best_epoch_ == 6 and checkpoint.best_score_ == 0.8
    # The weights are those of that architecture's best single epoch.
    assert all(torch.all(p == 6.0) for p in net.module_.parameters())
    flagged = [row["epoch"] for row in net.history if row.get("valid_nse_best")]
    assert flagged == [6]


def test_epoch_selection_prefers_the_highest_spike():
    checkpoint, net = _drive_checkpoint("epoch")
    assert net.module_.num_layers == 1
    assert checkpoint.best_epoch_ == 2 and checkpoint.best_score_ == 0.95
    assert all(torch.all(p == 2.0) for p in net.module_.parameters())
    assert [row["epoch"] for row in net.history if row.get("valid_nse_best")] == [2]


def test_select_by_reaches_the_checkpoint(data):
    X, y = data
    for select_by in ("moving_average", "epoch"):
        est = TLAGRegressor(**{**FAST, "max_epochs": 2}, select_by=select_by,
                            random_state=0).fit(X, y)
        assert dict(est.net_.callbacks_)["checkpoint"].selection == select_by


# ---------------------------------------------------------------- optimizer after an insertion
def _fit_until_first_insertion(data, growth_optimizer):
    X, y = data
    recorder = RecordEpochs()
    params = {**FAST, "max_epochs": 4, "max_epochs_per_layer": 2, "patience": 10,
              "max_layers": 2}
    TLAGRegressor(**params, growth_optimizer=growth_optimizer, topo_derivative_threshold=-np.inf,
                  min_improvement=-np.inf, callbacks=[("record", recorder)],
                  random_state=0).fit(X, y)
    assert recorder.after_insertion is not None
    return recorder.after_insertion


def _same(a, b):
    return {id(p) for p in a} == {id(p) for p in b} and len(a) == len(b)


def test_keep_optimizer_adds_the_new_layer_and_keeps_adams_state(data):
    seen = _fit_until_first_insertion(data, "keep")
    assert seen["n_groups"] == 2
    assert _same(seen["group_params"][1], seen["new_layer"])
    new = {id(p) for p in seen["new_layer"]}
    old = [p for p in seen["all_params"] if id(p) not in new]
    assert _same(seen["group_params"][0], old)
    for p in old:
        assert "exp_avg" in seen["state"][p] and torch.count_nonzero(seen["state"][p]["exp_avg"])
    assert not any(id(p) in new for p in seen["state"])


def test_fresh_optimizer_starts_empty_with_every_parameter(data):
    seen = _fit_until_first_insertion(data, "fresh")
    assert seen["n_groups"] == 1
    assert len(seen["state"]) == 0
    assert _same(seen["group_params"][0], seen["all_params"])


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_parameter_set(name):
    est = TLAGRegressor(**PRESETS[name])
    est._validate_params()
    est._check_hyperparameters()


def test_preset_names_and_the_research_rule():
    assert {"hydrology", "research", "fast"} <= set(PRESETS)
    research = PRESETS["research"]
    assert research["derivative_criterion"] == "raw"
    assert research["topo_derivative_threshold"] == 0.01
    assert research["min_improvement"] == -math.inf
    assert research["select_by"] == "epoch"
    hydrology = PRESETS["hydrology"]
    assert hydrology["max_layers"] == 1
    est = TLAGRegressor(**hydrology)
    assert est.initial_forget_bias == 3.0 and est.clip_gradient_norm == 1.0
    # The short-record preset is the same recipe with smaller batches: nothing else may
    # drift apart.
    short = PRESETS["short_record"]
    changed = {k for k in {*hydrology, *short} if hydrology.get(k) != short.get(k)}
    assert changed == {"batch_size"} and short["batch_size"] == 32


def test_no_growth_decision_in_the_last_epoch_of_the_budget():
    # The first architecture's plateau (its epoch cap) falls on the budget's last epoch:
    # a layer inserted there could never be trained, so no decision is computed.
    X, y = make_series(n_rows=300)
    est = TLAGRegressor(**{**FAST, "max_epochs": 3, "max_epochs_per_layer": 3},
                        topo_derivative_threshold=0.0, random_state=0).fit(X, y)
    assert len(est.derivative_history_) == 0
    assert est.growth_stop_rule_ == "max_epochs" and est.n_layers_ == 1
    longer = TLAGRegressor(**{**FAST, "max_epochs": 4, "max_epochs_per_layer": 3},
                           topo_derivative_threshold=0.0, random_state=0).fit(X, y)
    assert len(longer.derivative_history_) == 1


def test_a_decision_is_described_by_the_values_its_criterion_compared():
    from sktlag._record import describe_decision

    decision = {"epoch": 7, "n_layers_before": 2, "derivatives": [0.5, 0.25],
                "relative_derivatives": [1.5, 0.75], "holdout_statistics": [2.5, -1.0],
                "criterion": "holdout", "inserted": False, "reason": "below"}
    assert "held-out statistics [2.5, -1]" in describe_decision(decision)
    assert "relative derivatives [1.5, 0.75]" in describe_decision(
        {**decision, "criterion": "relative"})
    assert "derivatives [0.5, 0.25]" in describe_decision({**decision, "criterion": "raw"})
    # A file written before a criterion's values were kept: the raw values are shown.
    older = {**decision, "holdout_statistics": []}
    assert ", derivatives [0.5, 0.25]" in describe_decision(older)
