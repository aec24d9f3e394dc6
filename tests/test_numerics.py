"""Numerical trouble: degenerate targets and inputs, NaN/inf in training and in growth.

What is asserted every time: the fit completes, the kept weights are finite, predictions
are finite, and what went wrong is warned about and recorded.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from sktlag import TLAGRegressor
from sktlag import growth as G
from sktlag._training import flushing_subnormals
from sktlag.callbacks import nse_per_output, validation_score
from sktlag.losses import MaskedMSELoss, masked_mse
from sktlag.model import GrowingLSTM
from sktlag.recipe import ShortRecordWarning

from .conftest import make_series
from .test_reliability import TINY, InterruptAt, add_callback


@pytest.fixture(scope="module")
def data():
    return make_series(n_rows=120)


def finite_weights(est):
    return all(torch.isfinite(p).all() for p in est.module_.parameters())


def fit_quietly(X, y, **params):
    """Fit and return the estimator and the messages of the warnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Tiny test series are short records; that warning is not the subject here.
        warnings.simplefilter("ignore", ShortRecordWarning)
        est = TLAGRegressor(**{**TINY, **params}, random_state=0).fit(X, y)
    return est, [f"{w.category.__name__}: {w.message}" for w in caught]


# ---------------------------------------------------------------- degenerate data
@pytest.mark.parametrize("value", [0.0, 5.0, -1e6])
def test_constant_target_is_predicted_as_that_constant(data, value):
    X, _ = data
    est, caught = fit_quietly(X, np.full(len(X), value))
    # Nothing can be learned from it (a river dry through the whole training part):
    # said once, with the value.
    (message,) = caught
    assert f"y is constant ({value:g}) over the training windows" in message
    assert est.target_scale_[0] == 1.0  # no division by a zero spread
    # The NSE is undefined; checkpoints and plateaus follow the validation MSE.
    assert set(est.history_[:, "valid_nse"]) == {-np.inf}
    assert np.isfinite(est.history_[:, "valid_score"]).all()
    assert est.best_epoch_ is not None
    pred = est.predict(X)
    assert finite_weights(est)
    np.testing.assert_allclose(pred, value, atol=0.05)


def test_a_constant_target_is_told_apart_from_rounding_of_a_mean(data):
    # np.std of 300 copies of 0.1 is 1e-17, not 0: still a constant target.
    X, _ = data
    _, caught = fit_quietly(X, np.full(len(X), 0.1))
    assert any("y is constant (0.1)" in message for message in caught)
    _, caught = fit_quietly(X, 0.1 + 1e-6 * np.sin(np.arange(len(X))))
    assert caught == []


def test_constant_validation_period_still_selects_the_best_epoch(data):
    X, y = data
    y = y.copy()
    y[90:] = 2.0  # a flat end of the series: the validation windows are constant
    est, caught = fit_quietly(X, y)
    assert caught == []
    scores = est.history_[:, "valid_score"]
    assert np.isfinite(scores).all()
    best = max(est.history_, key=lambda row: row["valid_score"])
    assert est.n_layers_ == best["n_layers"]
    assert np.isfinite(est.predict(X)).all()


def test_zero_variance_feature_alone_and_scaled(data):
    X, y = data
    X = X.copy()
    X[:, 1] = 3.0
    est, caught = fit_quietly(X, y)
    assert caught == [] and finite_weights(est)
    assert np.isfinite(est.predict(X)).all()
    pipe = make_pipeline(StandardScaler(), TLAGRegressor(**TINY, random_state=0)).fit(X, y)
    assert np.isfinite(pipe.predict(X)).all()


def test_huge_inputs_warn_and_stay_finite(data):
    X, y = data
    est, caught = fit_quietly(X * 1e6, y)
    assert any("UserWarning: X has values up to" in m and "StandardScaler" in m for m in caught)
    assert finite_weights(est) and np.isfinite(est.predict(X * 1e6)).all()


def test_large_input_warning_names_the_column(data):
    X, y = data
    # A copy: pandas before 3 wraps the array, and the fixture is shared by the module.
    frame = pd.DataFrame(X, columns=["p", "q_up", "t"], copy=True)
    frame["q_up"] *= 1e4
    with pytest.warns(UserWarning, match=r"column 'q_up'"):
        TLAGRegressor(**{**TINY, "max_epochs": 1}, random_state=0).fit(frame, y)


@pytest.mark.parametrize("factor, offset", [(1e6, 1e6), (1e-6, 0.0)])
def test_huge_and_tiny_targets_in_user_units(data, factor, offset):
    X, y = data
    reference = TLAGRegressor(**TINY, random_state=0).fit(X, y).predict(X)
    est, caught = fit_quietly(X, factor * y + offset)
    assert caught == []
    # Standardization makes the fit unit-free: the same network, rescaled predictions.
    np.testing.assert_allclose(est.predict(X), factor * reference + offset, rtol=1e-5)


# ---------------------------------------------------------------- NaN / inf during training
class PoisonAt(Callback):
    """Fill the first layer's weights with ``value`` before batch 2 of ``epoch``."""

    def __init__(self, epoch, value=float("nan")):
        self.epoch = epoch
        self.value = value

    def on_epoch_begin(self, net, **kwargs):
        self._batch = 0

    def on_batch_begin(self, net, training, **kwargs):
        if training and len(net.history) == self.epoch:
            self._batch += 1
            if self._batch == 2:
                with torch.no_grad():
                    net.module_.layers[0].lstm.weight_ih_l0.fill_(self.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_mid_training_are_never_kept(monkeypatch, data, value):
    X, y = data
    add_callback(monkeypatch, PoisonAt(epoch=3, value=value))
    est, caught = fit_quietly(X, y, topo_derivative_threshold=-np.inf)
    assert any("RuntimeWarning: epoch 3: non-finite" in m for m in caught)
    rows = {row["epoch"]: row for row in est.history_}
    assert rows[3].get("non_finite") and rows[3]["plateau"]
    # The guard restored finite weights and growth went on from them.
    assert "layer_added" in rows[3] and len(est.history_) > 3
    assert all(np.isfinite(row["train_loss"]) for row in est.history_ if row["epoch"] != 3)
    assert finite_weights(est) and np.isfinite(est.predict(X)).all()


def test_a_loss_that_turns_inf_ends_the_architecture(monkeypatch, data):
    X, y = data
    original = MaskedMSELoss.forward
    calls = {"n": 0}

    def exploding(self, y_pred, y_true):
        calls["n"] += 1
        loss = original(self, y_pred, y_true)
        return loss * np.inf if 5 <= calls["n"] <= 6 else loss

    monkeypatch.setattr(MaskedMSELoss, "forward", exploding)
    est, caught = fit_quietly(X, y, topo_derivative_threshold=np.inf)
    assert any("non-finite training loss" in m for m in caught)
    assert any(row.get("non_finite") for row in est.history_)
    assert "growth_stopped" in est.history_[-1]
    assert finite_weights(est) and np.isfinite(est.predict(X)).all()
    assert np.isfinite(est.best_score_)


def test_a_loss_that_is_nan_from_the_start_keeps_the_initial_network(monkeypatch, data):
    X, y = data
    monkeypatch.setattr(
        MaskedMSELoss, "forward", lambda self, y_pred, y_true: (y_pred * np.nan).mean()
    )
    interrupt = InterruptAt(epoch=99, batch=1)  # only records the initial weights
    add_callback(monkeypatch, interrupt)
    est, caught = fit_quietly(X, y, topo_derivative_threshold=0.0)
    assert any("non-finite training loss (nan); back to the architecture's starting" in m
               for m in caught)
    # Every architecture diverged at once, was ended and given its growth decision
    # (computed with the growth loss, which is fine); nothing ever validated.
    assert all(row["non_finite"] and row["plateau"] for row in est.history_)
    assert est.history_[-1]["growth_stopped"] == "max_layers reached"
    # So the network training started from is what is kept.
    assert est.n_layers_ == 1
    for name, value in est.module_.state_dict().items():
        assert torch.equal(value, interrupt.initial_state[name]), name
    assert np.isfinite(est.predict(X)).all()


# ---------------------------------------------------------------- growth decisions
def nan_products(monkeypatch):
    """Make every Hessian-vector product NaN, for one position or all in lockstep."""
    monkeypatch.setattr(
        G.HessianOperator, "__call__", lambda self, v: torch.full_like(self.gradient, np.nan)
    )
    monkeypatch.setattr(
        G.BlockHessianOperator, "__call__",
        lambda self, vs: {i: torch.full_like(v, np.nan) for i, v in vs.items()},
    )


def test_nan_hessian_vector_product_skips_the_decision(monkeypatch, data):
    X, y = data
    nan_products(monkeypatch)
    est, caught = fit_quietly(X, y, topo_derivative_threshold=-np.inf)
    assert any("RuntimeWarning: growth decision skipped" in m for m in caught)
    decisions = est.derivative_history_
    assert len(decisions) == 1 and not decisions["inserted"].any()
    reason = decisions["reason"].iloc[0]
    assert reason.startswith("not computable") and "Hessian-vector product" in reason
    assert np.isnan(decisions["derivative_1"].iloc[0])
    stopped = [row["epoch"] for row in est.history_ if row.get("growth_stopped") == reason]
    assert stopped == [decisions["epoch"].iloc[0]] and est.growth_stop_rule_ == "not_computable"
    assert est.interrupted_ is False and est.n_layers_ == 1
    assert finite_weights(est) and np.isfinite(est.predict(X)).all()


def _tiny_problem(num_layers=2, seed=0):
    torch.manual_seed(seed)
    module = GrowingLSTM(n_features=2, hidden_size=3, num_layers=num_layers)
    return module, torch.randn(8, 5, 2), torch.randn(8, 1)


def _assert_unchanged(module, state, spec):
    assert module.get_spec() == spec
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_eigensolvers_stop_on_a_non_finite_product(method):
    n = 6

    def hvp(v):
        out = 2.0 * v
        out[0] = np.nan
        return out

    with pytest.raises(FloatingPointError, match="product 1 returned non-finite"):
        G.top_eigenpair(hvp, n, method=method, max_hvp=10)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_overflow_inside_the_iteration_is_an_error_not_a_nan_eigenpair(method):
    # Every product is finite, but their squared norms overflow in float64.
    diagonal = torch.tensor([1e200, -1e200, 1e200, 1.0, 2.0], dtype=torch.float64)
    with pytest.raises(FloatingPointError):
        G.top_eigenpair(lambda v: diagonal * v, 5, method=method, max_hvp=5)


@pytest.mark.parametrize("patch", ["nan_hvp", "eigh_fails", "nan_weights"])
def test_grow_returns_a_not_computable_decision(monkeypatch, patch):
    module, X, y = _tiny_problem()
    if patch == "nan_hvp":
        nan_products(monkeypatch)
    elif patch == "eigh_fails":
        def failing(*args, **kwargs):
            raise np.linalg.LinAlgError("eigenvalue iteration did not converge")

        monkeypatch.setattr(G, "eigh_tridiagonal", failing)
    else:
        with torch.no_grad():
            module.head.weight.fill_(np.nan)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    spec = module.get_spec()
    with pytest.warns(RuntimeWarning, match="growth decision skipped"):
        decision = G.grow(module, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=4)
    assert not decision.inserted and decision.position is None
    assert decision.reason.startswith("not computable")
    assert len(decision.derivatives) == 2
    _assert_unchanged(module, state, spec)


@pytest.mark.parametrize("lockstep", [True, False])
def test_one_failing_position_still_reports_the_others(monkeypatch, lockstep):
    module, X, y = _tiny_problem(num_layers=3)
    if lockstep:
        # The second block's products overflow; the other blocks share the passes.
        original = G.BlockHessianOperator.__call__

        def second_fails(self, vectors):
            out = original(self, vectors)
            if 1 in out:
                out[1] = torch.full_like(out[1], np.inf)
            return out

        monkeypatch.setattr(G.BlockHessianOperator, "__call__", second_fails)
        message = "non-finite"
    else:
        original = G.top_eigenpair
        calls = {"n": 0}

        def second_fails(hvp, n, **kwargs):
            calls["n"] += 1
            if calls["n"] % 3 == 2:
                raise FloatingPointError("simulated overflow")
            return original(hvp, n, **kwargs)

        monkeypatch.setattr(G, "top_eigenpair", second_fails)
        message = "simulated overflow"
    found, loss = G.topological_derivatives(
        module, X, y, masked_mse, max_hvp=4, lockstep=lockstep
    )
    assert [d.position for d in found] == [1, 2, 3]
    assert np.isnan(found[1].derivative) and message in found[1].error
    assert np.isnan(found[1].relative)
    assert np.isfinite(found[0].derivative) and np.isfinite(found[2].derivative)
    assert found[0].error == found[2].error == ""
    with pytest.warns(RuntimeWarning, match="position 2: FloatingPointError"):
        decision = G.grow(module, X, y, masked_mse, threshold=-np.inf, max_layers=5,
                          max_hvp=4, lockstep=lockstep)
    assert "position 2" in decision.reason and not decision.inserted


def test_backtracking_never_accepts_a_non_finite_loss():
    scale, steps, loss = G.backtracking_scale(
        lambda s: np.nan, 1.0, init_scale=0.1, min_scale=0.01, tolerance=0.0
    )
    assert (scale, loss) == (0.0, 1.0) and steps == 4


# ---------------------------------------------------------------- scores
def test_validation_score_falls_back_to_mse_only_for_constant_targets():
    rng = np.random.default_rng(0)
    y_true = np.column_stack([rng.standard_normal(20), np.full(20, 0.3)])
    y_pred = y_true + 0.1 * rng.standard_normal((20, 2))
    nse = nse_per_output(y_true, y_pred)
    assert np.isfinite(nse[0]) and np.isnan(nse[1])
    mse_const = np.mean((y_true[:, 1] - y_pred[:, 1]) ** 2)
    assert validation_score(y_true, y_pred) == pytest.approx((nse[0] + 1 - mse_const) / 2)
    assert validation_score(y_true[:, :1], y_pred[:, :1]) == pytest.approx(nse[0])
    y_pred[3, 0] = np.nan
    assert validation_score(y_true, y_pred) == -np.inf
    assert validation_score(np.full((4, 1), np.nan), np.zeros((4, 1))) == -np.inf


def _can_flush_subnormals() -> bool:
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    return supported


needs_flush = pytest.mark.skipif(not _can_flush_subnormals(),
                                 reason="this CPU cannot flush subnormal numbers")


class FlushProbe(Callback):
    """Records at every epoch's end whether subnormal numbers are flushed to zero."""

    def initialize(self):
        self.flushed_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.flushed_.append(flushing_subnormals())


@needs_flush
def test_training_flushes_subnormals_and_restores_the_flag(data):
    X, y = data
    probe = FlushProbe()
    est = TLAGRegressor(**TINY, topo_derivative_threshold=-np.inf, random_state=0,
                        callbacks=[("probe", probe)]).fit(X, y)
    assert max(est.history_[:, "n_layers"]) > 1  # grown networks trained under it too
    assert len(probe.flushed_) == len(est.history_) and all(probe.flushed_)
    assert not flushing_subnormals()


@needs_flush
def test_a_flush_the_caller_set_stays_set(data):
    X, y = data
    torch.set_flush_denormal(True)
    try:
        TLAGRegressor(**TINY, random_state=0).fit(X, y)
        assert flushing_subnormals()
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("value", [0.0, 1e-4, 3.7])
def test_score_on_a_constant_test_period_does_not_depend_on_rounding(data, value):
    # R² is undefined where the observations do not vary; scikit-learn then returns 0
    # (1 for a perfect prediction). Rounding of the mean of a constant left a spread of
    # 1e-16 and a score of -1e28 for some constants and 0 for others.
    X, y = data
    est, _ = fit_quietly(X, y)
    assert est.score(X, np.full(len(X), value)) == 0.0
