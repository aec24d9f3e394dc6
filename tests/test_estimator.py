"""TLAGRegressor: growth behaviour, scikit-learn composition, persistence, bad input."""

import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import PRESETS, TLAGRegressor
from sktlag._record import architectures
from sktlag.growth import BlockHessianOperator
from sktlag.metrics import nse
from sktlag.report import fit_periods

from .conftest import FAST, make_series


def _depth_task(n=600, seed=0):
    # The target composes lagged inputs nonlinearly: a 4-unit single LSTM layer
    # underfits it, so depth helps.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.tanh(2 * np.roll(X[:, 0], 2) * np.roll(X[:, 1], 1)) + 0.5 * np.roll(X[:, 0], 3) ** 2
    return X, y


# ---------------------------------------------------------------- growth behaviour
def test_threshold_inf_never_grows(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=np.inf, random_state=0)
    est.fit(X, y)
    assert est.n_layers_ == 1
    assert not est.derivative_history_["inserted"].any()
    assert set(est.history_[:, "n_layers"]) == {1}
    assert "threshold" in est.derivative_history_["reason"].iloc[-1]


def test_max_layers_is_respected(series, fast_params):
    X, y = series
    params = {**fast_params, "max_epochs": 30, "max_layers": 2}
    est = TLAGRegressor(**params, topo_derivative_threshold=-np.inf, random_state=0).fit(X, y)
    assert max(est.history_[:, "n_layers"]) == 2
    assert est.derivative_history_["inserted"].sum() == 1
    assert est.derivative_history_["reason"].iloc[-1] == "max_layers reached"
    assert est.n_layers_ <= 2


def test_verbose_growth_line_follows_its_epoch_row(series, fast_params, capsys):
    # A decision is taken at the end of an epoch, before the epoch table prints that
    # epoch's row: its line belongs under the row, not above it.
    X, y = series
    params = {**fast_params, "max_layers": 2, "verbose": 1}
    est = TLAGRegressor(**params, topo_derivative_threshold=-np.inf, random_state=0)
    est.fit(X, y)
    epoch = int(est.derivative_history_["epoch"].iloc[0])
    lines = capsys.readouterr().out.splitlines()
    decision = next(i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}:"))
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == [str(epoch)])
    assert row < decision
    assert sum(line.startswith("epoch ") and ":" in line for line in lines) == len(
        est.derivative_history_)


def test_grows_from_one_layer_on_a_task_that_needs_depth():
    X, y = _depth_task()
    params = {**FAST, "hidden_size": 4, "max_epochs": 40, "max_epochs_per_layer": 10,
              "patience": 3, "max_layers": 3}
    est = TLAGRegressor(**params, topo_derivative_threshold=0.0, random_state=0).fit(X, y)
    arch = est.growth_history_
    assert arch[0]["n_layers"] == 1 and len(arch) >= 2
    inserted = est.derivative_history_[est.derivative_history_["inserted"]]
    assert len(inserted) >= 1 and (inserted["backtracking_steps"] >= 1).all()
    # Growth is function-preserving and starts from the best weights: the deeper
    # architectures do not validate worse than the one-layer network did.
    assert max(a["best_valid_nse"] for a in arch[1:]) >= arch[0]["best_valid_nse"]
    # The fitted model is the best validation state of the whole run, by the
    # selection score (the moving average, by default).
    best = max(arch, key=lambda a: a["best_valid_nse_ma"])
    assert est.n_layers_ == best["n_layers"]


def test_history_records_growth(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=-np.inf, random_state=0)
    est.fit(X, y)
    rows = est.history_
    assert all("valid_nse" in r and "n_layers" in r and "valid_nse_ma" in r for r in rows)
    decisions = est.derivative_history_
    inserted = decisions[decisions["inserted"].astype(bool)]
    added = [(r["epoch"], r["layer_added"]) for r in rows if "layer_added" in r]
    # The epoch table and the decision table tell the same growth: which epoch, where.
    assert added == list(zip(inserted["epoch"], inserted["position"], strict=True))
    assert len(added) >= 1
    depth = [r["n_layers"] for r in rows]
    for epoch, _ in added:
        # The row holds the depth the epoch trained; the next epoch trains one more.
        assert depth[epoch] == depth[epoch - 1] + 1
        assert decisions.set_index("epoch").loc[epoch, "n_layers_before"] == depth[epoch - 1]
    assert depth == sorted(depth) and depth[-1] == 1 + len(added)
    assert (inserted["backtracking_steps"] >= 1).all()
    assert (inserted["n_hvp"] > 0).all()
    assert est.fit_time_ > 0


def test_the_eigensolver_tolerance_reaches_every_decision(series, fast_params):
    # The same fit up to its first decision: a looser tolerance stops the same Lanczos
    # iteration sooner, a zero tolerance runs every position to the budget.
    X, y = series
    params = {**fast_params, "topo_derivative_threshold": -np.inf, "random_state": 0}
    used = {}
    for tol in (0.0, 0.3):
        est = TLAGRegressor(**params, eigensolver_tol=tol).fit(X, y)
        used[tol] = int(est.derivative_history_["n_hvp"].iloc[0])
    assert used[0.0] == fast_params["num_power_iterations"]
    assert used[0.3] < used[0.0]


@pytest.mark.parametrize("kind, expected", [
    ("difference", "difference"), ("exact", "exact"), ("auto", "expansion"),
])
def test_hessian_products_reach_every_decision(series, fast_params, monkeypatch, kind,
                                               expected):
    # Count the difference products the fit runs (each decision's lockstep passes) and
    # the expansions it builds (one per position and decision).
    import sktlag.growth as growth

    calls = {"difference": 0, "expansion": 0}
    difference, expansion = BlockHessianOperator._difference, growth.hamiltonian_expansion

    def count(name, function):
        def counted(*args):
            calls[name] += 1
            return function(*args)
        return counted

    monkeypatch.setattr(BlockHessianOperator, "_difference", count("difference", difference))
    monkeypatch.setattr(growth, "hamiltonian_expansion", count("expansion", expansion))
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=-np.inf,
                        hessian_products=kind, random_state=0).fit(X, y)
    decisions = est.derivative_history_
    computed = decisions[decisions["n_hvp"] > 0]
    assert len(computed) >= 1 and (computed["hessian_products"] == expected).all()
    positions = int(computed["n_layers_before"].sum())
    assert calls == {"difference": computed["n_hvp"].sum() if expected == "difference" else 0,
                     "expansion": positions if expected == "expansion" else 0}
    assert est.get_params()["hessian_products"] == kind


def test_best_state_of_the_run_is_returned(series, fast_params):
    X, y = series
    est = TLAGRegressor(**{**fast_params, "max_epochs": 16},
                        topo_derivative_threshold=-np.inf, random_state=2)
    est.fit(X, y)
    # The selection (moving average, the default): the architecture of the best moving
    # average, at its best single epoch; here not the last epoch, so returning the final
    # network would fail.
    best = max(architectures(est.history_), key=lambda a: a["best_valid_nse_ma"])
    assert est.best_epoch_ == best["best_epoch"] < len(est.history_)
    assert est.n_layers_ == best["n_layers"]
    # That epoch's network: it scores on the validation windows what was recorded then.
    valid = fit_periods(est, y)["validation"]
    assert nse(y[valid], est.predict(X)[valid]) == pytest.approx(best["best_valid_nse"],
                                                                 abs=1e-5)


# ---------------------------------------------------------------- sklearn composition
def test_pipeline_and_dataframe_feature_names(fast_params):
    X, y = make_series(n_features=3)
    frame = pd.DataFrame(X, columns=["p_a", "p_b", "t_a"])
    pipe = Pipeline([("scale", StandardScaler()), ("tlag", TLAGRegressor(**fast_params,
                                                                          random_state=0))])
    pipe.fit(frame, y)
    pred = pipe.predict(frame)
    assert pred.shape == (len(y),) and np.isfinite(pred).all()
    est = TLAGRegressor(**fast_params, random_state=0).fit(frame, y)
    assert list(est.feature_names_in_) == ["p_a", "p_b", "t_a"]
    with pytest.raises(ValueError, match="feature names"):
        est.predict(frame.rename(columns={"p_a": "other"}))
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])


def test_useful_fit_and_score_is_nse(fast_params):
    X, y = make_series(n_rows=400)
    est = TLAGRegressor(**{**fast_params, "max_epochs": 25}, random_state=0).fit(X, y)
    pred = est.predict(X)
    nse = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert np.isclose(est.score(X, y), nse)
    assert nse > 0.5


def test_multi_output(fast_params):
    X, y = make_series(n_outputs=2)
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y)
    assert est.predict(X).shape == (len(y), 2)
    assert est.n_outputs_ == 2


def test_targets_are_returned_in_user_units(fast_params):
    X, y = make_series()
    est = TLAGRegressor(**{**fast_params, "max_epochs": 15}, random_state=0)
    pred = est.fit(X, 1000.0 * y + 5000.0).predict(X)
    assert abs(pred.mean() - (1000 * y.mean() + 5000)) < 0.2 * 1000 * y.std()


def test_cross_val_score_with_time_series_split(fast_params):
    X, y = make_series(n_rows=300)
    scores = cross_val_score(
        TLAGRegressor(**fast_params, random_state=0), X, y, cv=TimeSeriesSplit(n_splits=2)
    )
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_grid_search_over_threshold_in_parallel(fast_params):
    X, y = make_series(n_rows=300)

    def search(n_jobs):
        return GridSearchCV(
            TLAGRegressor(**fast_params, random_state=0),
            {"topo_derivative_threshold": [-np.inf, np.inf]},
            cv=TimeSeriesSplit(n_splits=2),
            n_jobs=n_jobs,
        ).fit(X, y)

    parallel, serial = search(2), search(1)
    scores = parallel.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    # Fits in worker processes give what they give in this one (one torch thread).
    np.testing.assert_array_equal(scores, serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_


def test_clone_is_unfitted_with_initial_depth(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=-np.inf, random_state=0)
    est.fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "net_") and copy.initial_num_layers == 1
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_presets_are_valid_hyperparameters():
    for params in PRESETS.values():
        TLAGRegressor(**params)._validate_params()
    assert PRESETS["research"]["hidden_size"] == 128


# ---------------------------------------------------------------- reproducibility, persistence
def test_same_random_state_same_predictions(series, fast_params):
    X, y = series
    a = TLAGRegressor(**fast_params, topo_derivative_threshold=-np.inf, random_state=3)
    b = clone(a)
    np.testing.assert_array_equal(a.fit(X, y).predict(X), b.fit(X, y).predict(X))


@pytest.mark.parametrize("batch_size", [32, "auto"])
def test_joblib_round_trip_in_a_fresh_process(tmp_path, series, fast_params, batch_size):
    # "auto" is the default: a fitted default model must load (and an ensemble's
    # members come back from their worker processes the same way).
    X, y = series
    est = TLAGRegressor(**{**fast_params, "batch_size": batch_size},
                        topo_derivative_threshold=-np.inf, random_state=0)
    est.fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", est.predict(X))
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np
        est = joblib.load({str(path)!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert est.n_layers_ == {est.n_layers_}
        assert est.batch_size_ == {est.batch_size_}
        np.testing.assert_array_equal(est.predict(X), expected)
        print("identical")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "identical" in out.stdout


def test_fitted_pickle_does_not_carry_the_training_series(tmp_path, fast_params):
    X, y = make_series(n_rows=3000)
    est = TLAGRegressor(**{**fast_params, "max_epochs": 2}, random_state=0).fit(X, y)
    path = tmp_path / "m.joblib"
    joblib.dump(est, path)
    assert path.stat().st_size < X.nbytes / 2


def test_warm_start_continues_from_the_fitted_network(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=np.inf, random_state=0)
    est.fit(X, y)
    first_epochs = len(est.history_)
    est.set_params(warm_start=True, topo_derivative_threshold=-np.inf)
    est.fit(X, y)
    assert len(est.history_) > first_epochs
    assert est.derivative_history_["inserted"].any()


@pytest.mark.parametrize("select_by", ["epoch", "moving_average"])
def test_a_warm_start_that_does_not_improve_keeps_the_epoch_of_the_held_weights(
        series, fast_params, select_by):
    X, y = series
    est = TLAGRegressor(**{**fast_params, "max_epochs": 6, "lr": 0.2},
                        topo_derivative_threshold=np.inf, lr_schedule=None,
                        select_by=select_by, random_state=0).fit(X, y)
    held_epoch, held_score = est.best_epoch_, est.best_score_
    assert held_epoch < len(est.history_)  # the held weights are not the last epoch's
    # A learning rate too small to move the weights: the starting state stays the best.
    est.set_params(warm_start=True, lr=1e-30, max_epochs=2).fit(X, y)
    assert len(est.history_) == 8 and est.best_epoch_ == held_epoch
    assert est.best_score_ == pytest.approx(held_score, abs=1e-6)
    assert est.history_[est.best_epoch_ - 1]["valid_score"] == pytest.approx(est.best_score_,
                                                                             abs=1e-6)


def test_a_warm_start_follows_the_shape_of_the_new_target(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=np.inf,
                        random_state=0).fit(X, y)
    assert est.predict(X).shape == (len(X),)
    est.set_params(warm_start=True, max_epochs=1).fit(X, y[:, None])
    assert est.predict(X).shape == (len(X), 1)


def test_a_warm_start_refuses_another_device(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=np.inf,
                        random_state=0).fit(X, y)
    est.net_.device = "cuda"  # as fitted on a GPU; the estimator now asks for the CPU
    with pytest.raises(ValueError, match="warm_start cannot change device"):
        est.set_params(warm_start=True, max_epochs=1).fit(X, y)


# ---------------------------------------------------------------- groups
def test_groups_keep_windows_inside_each_series(fast_params):
    X1, y1 = make_series(seed=1)
    X2, y2 = make_series(seed=2)
    X, y = np.vstack([X1, X2]), np.concatenate([y1, y2])
    groups = np.repeat(["basin_a", "basin_b"], len(y1))
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y, groups=groups)
    together = est.predict(X, groups=groups)
    # With groups, the second basin's predictions do not depend on the first basin.
    np.testing.assert_allclose(together[len(y1):], est.predict(X2), rtol=1e-6, atol=1e-6)
    assert not np.allclose(together[len(y1):][:4], est.predict(X)[len(y1):][:4])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_input_says_where(series, fast_params, value, word):
    X, y = series
    X = X.copy()
    X[17, 2] = value
    with pytest.raises(ValueError, match=rf"{word} at row 17, column 2"):
        TLAGRegressor(**fast_params).fit(X, y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=rf"{word} at row 17, column 'c'"):
        TLAGRegressor(**fast_params).fit(frame, y)


def test_nan_target_raises_by_default_and_masks_on_request(series, fast_params):
    X, y = series
    y = y.copy()
    y[[30, 31, 90]] = np.nan
    with pytest.raises(ValueError, match="y contains NaN at row 30"):
        TLAGRegressor(**fast_params).fit(X, y)
    est = TLAGRegressor(**fast_params, missing_target="mask", random_state=0).fit(X, y)
    assert est.n_masked_targets_ == 3
    assert np.isfinite(est.predict(X)).all()


def test_score_leaves_out_the_days_without_an_observation_when_masking(series, fast_params):
    # A cross-validation of gappy discharge scored the folds with gaps as NaN: score
    # refused the NaN targets that fit masks.
    X, y = series
    y2 = np.column_stack([y, 2 * y])
    y2[[30, 31, 90], 0] = np.nan
    y2[[100, 180], 1] = np.nan
    est = TLAGRegressor(**fast_params, missing_target="mask", random_state=0).fit(X, y2)
    pred = est.predict(X)
    expected = np.mean([r2_score(y2[~np.isnan(y2[:, k]), k], pred[~np.isnan(y2[:, k]), k])
                        for k in range(2)])
    assert est.score(X, y2) == pytest.approx(expected, rel=1e-12)
    folds = cross_val_score(clone(est), X, y2[:, 0], cv=TimeSeriesSplit(2))
    assert np.isfinite(folds).all()
    with pytest.raises(ValueError, match="sample_weight"):
        est.score(X, y2, sample_weight=np.ones(len(y2) - 1))
    # Without masking a NaN target is an error, as in fit.
    with pytest.raises(ValueError, match="NaN"):
        clone(est).set_params(missing_target="raise").fit(X, y).score(X, y2)
    # One observed day is no series to score: NaN, as scikit-learn's R² of one sample
    # (it scored 0, or 1 where the prediction hit it).
    one = np.full(len(y), np.nan)
    one[50] = y[50]
    assert np.isnan(est.score(X, np.column_stack([one, one])))


def test_score_refuses_a_target_of_another_shape(series, fast_params):
    # Two outputs of 240 days in one long column of 480 values held as many numbers
    # as the predictions and were scored against them.
    X, y = series
    y2 = np.column_stack([y, 2 * y])
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y2)
    with pytest.raises(ValueError, match=f"y holds {2 * len(y)} rows of 1 output; the "
                                         f"model predicts {len(y)} rows of 2 outputs"):
        est.score(X, y2.T.reshape(-1))
    with pytest.raises(ValueError, match=f"y holds {len(y) - 1} rows of 2 outputs"):
        est.score(X, y2[1:])
    # A missing-value code is no discharge to score against, as it is none to fit.
    coded = y2.copy()
    coded[7, 1] = -999.0
    with pytest.raises(ValueError, match="y holds -999 in rows 7"):
        est.score(X, coded)


def test_an_output_never_observed_in_training_is_named(series, fast_params):
    # Masking keeps a window while any output is observed: an output observed only in
    # the validation part would be predicted as NaN.
    X, y = series
    y2 = np.column_stack([y, y])
    y2[: int(0.85 * len(y)), 1] = np.nan
    with pytest.raises(ValueError, match="y column 1 has 0 observed values in the"):
        TLAGRegressor(**fast_params, missing_target="mask").fit(X, y2)


def test_non_numeric_columns_are_named(series, fast_params):
    X, y = series
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["station"] = "x"
    with pytest.raises(TypeError, match="non-numeric columns \\['station'\\]"):
        TLAGRegressor(**fast_params).fit(frame, y)


def test_wrong_shapes(series, fast_params):
    X, y = series
    with pytest.raises(ValueError, match="2D"):
        TLAGRegressor(**fast_params).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="dim 3"):
        TLAGRegressor(**fast_params).fit(X[:, :, None], y)
    with pytest.raises(ValueError, match="same number of rows"):
        TLAGRegressor(**fast_params).fit(X, y[:-1])
    with pytest.raises(ValueError, match="dim 3"):
        TLAGRegressor(**fast_params).fit(X, y[:, None, None])


def test_too_short_series(series, fast_params):
    X, y = series
    with pytest.raises(ValueError, match="X has 9 rows .*at least 12 rows are needed"):
        TLAGRegressor(**fast_params).fit(X[:9], y[:9])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"eigensolver": "qr"}, "eigensolver"),
        ({"hessian_products": "forward"}, "hessian_products"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"lr": -1.0}, "lr"),
        ({"missing_target": "fill"}, "missing_target"),
        ({"initial_num_layers": 5, "max_layers": 2}, "exceeds max_layers"),
        ({"init_scale": 1e-5, "min_init_scale": 1e-3}, "exceeds init_scale"),
    ],
)
def test_invalid_hyperparameters(series, params, match):
    X, y = series
    with pytest.raises(ValueError, match=match):
        TLAGRegressor(**params).fit(X, y)


def test_predict_before_fit(series):
    with pytest.raises(NotFittedError):
        TLAGRegressor().predict(series[0])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_or_unknown_device_is_a_clear_error(series):
    X, y = series
    with pytest.raises(ValueError, match="no CUDA device"):
        TLAGRegressor(device="cuda").fit(X, y)
    with pytest.raises(ValueError, match="not a torch device"):
        TLAGRegressor(device="gpu0").fit(X, y)


def test_extra_callbacks_see_every_epoch(series, fast_params):
    from skorch.callbacks import Callback
    class CountEpochs(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    counter = CountEpochs()
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=np.inf,
                        callbacks=[("count", counter)], random_state=0).fit(X, y)
    assert counter.epochs_ == len(est.history_) >= 1
    assert clone(est).get_params()["callbacks"][0][0] == "count"


@pytest.mark.parametrize("criterion", ["relative", "holdout"])
def test_skorch_checkpoint_can_pickle_the_net_during_a_fit(series, fast_params, tmp_path,
                                                           criterion):
    # skorch's Checkpoint(f_pickle=...) pickles the whole net each epoch; the samples the
    # growth decisions draw were closures, which pickle refuses.
    import pickle

    from skorch.callbacks import Checkpoint

    X, y = series
    checkpoint = Checkpoint(monitor=None, f_params=None, f_optimizer=None,
                            f_criterion=None, f_history=None, f_pickle="net.pkl",
                            dirname=str(tmp_path))
    est = TLAGRegressor(**fast_params, derivative_criterion=criterion,
                        callbacks=[("pickle", checkpoint)], random_state=0).fit(X, y)
    with open(tmp_path / "net.pkl", "rb") as handle:
        net = pickle.load(handle)
    assert len(net.history) == len(est.history_)


@pytest.mark.parametrize("name", ["lr_schedule", "clip_gradient", "checkpoint", "growth"])
def test_a_user_callback_may_not_take_an_own_callbacks_name(series, fast_params, name):
    from skorch.callbacks import Callback

    X, y = series
    est = TLAGRegressor(**fast_params, callbacks=[(name, Callback())])
    with pytest.raises(ValueError, match=f"callback name '{name}' is taken"):
        est.fit(X, y)


def test_a_failed_refit_leaves_the_fitted_model_as_it_was(series, fast_params):
    # The refit fails after its input checks have set the new columns and target shape;
    # the model must still be the first fit's, whole, not a mix of the two.
    X, y = series
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y)
    before = est.predict(X)
    short = np.hstack([X, X])[:8]  # 6 columns, too few rows for the split
    with pytest.raises(ValueError, match="rows"):
        est.fit(short, y[:8].reshape(-1, 1))
    assert est.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(est.predict(X), before)


def test_repeated_column_names_are_named(series, fast_params):
    X, y = series
    frame = pd.DataFrame(X, columns=["p", "p", "t"])
    with pytest.raises(ValueError, match=r"X has the column name\(s\) \['p'\] more than once"):
        TLAGRegressor(**fast_params).fit(frame, y)
    target = pd.DataFrame({"q": y, "r": y}).rename(columns={"r": "q"})
    with pytest.raises(ValueError, match=r"y has the column name\(s\) \['q'\]"):
        TLAGRegressor(**fast_params).fit(X, target)


def test_a_prediction_does_not_wait_for_a_fit_in_another_thread(series, fast_params):
    # Fits in threads of one process take turns on torch's generators; a prediction
    # draws nothing, and waiting for a fit would stall a server, or deadlock a fit
    # whose callback waits for one.
    import threading

    from skorch.callbacks import Callback

    X, y = series
    fitted = TLAGRegressor(**{**fast_params, "n_threads": 1}, random_state=0).fit(X, y)
    started, release, predicted = threading.Event(), threading.Event(), threading.Event()

    class Hold(Callback):
        def on_epoch_end(self, net, **kwargs):
            started.set()
            release.wait(60)

    other = TLAGRegressor(**{**fast_params, "n_threads": 1, "max_epochs": 1},
                          random_state=0, callbacks=[Hold()])
    fitting = threading.Thread(target=other.fit, args=(X, y))
    fitting.start()
    try:
        assert started.wait(60)
        predicting = threading.Thread(target=lambda: (fitted.predict(X), predicted.set()))
        predicting.start()
        predicting.join(30)
        assert predicted.is_set()
    finally:
        release.set()
        fitting.join()


def test_a_row_without_a_date_is_refused(series, fast_params):
    # NaT compares False with every date: a repeated date beside it went unseen.
    X, y = series
    dates = pd.date_range("2001-01-01", periods=len(X), freq="D").to_series()
    dates.iloc[50], dates.iloc[51] = pd.NaT, dates.iloc[49]
    with pytest.raises(ValueError, match=r"X has no date in row 50 \(NaT\)"):
        TLAGRegressor(**fast_params).fit(pd.DataFrame(X, index=pd.DatetimeIndex(dates)), y)


def test_a_target_dated_otherwise_than_x_is_refused(series, fast_params):
    # Rows are paired by position: a target a year late, or newest first, trained each
    # day on another day's flow without a word.
    X, y = series
    dates = pd.date_range("2001-01-01", periods=len(X), freq="D")
    frame, target = pd.DataFrame(X, index=dates), pd.Series(y, index=dates)
    late = target.set_axis(dates + pd.Timedelta(days=365))
    with pytest.raises(ValueError, match=r"y is dated otherwise than X: its row 0 is "
                                         r"2002-01-01, that of X 2001-01-01"):
        TLAGRegressor(**fast_params).fit(frame, late)
    with pytest.raises(ValueError, match=r"y is dated otherwise than X: its row 0 is "
                                         r"2001-08-28.*of the same day and in the same "
                                         r"order"):
        TLAGRegressor(**fast_params).fit(frame, target.iloc[::-1])
    # The same days stamped otherwise (a daily mean at 08:00, another time zone or
    # unit) pair as they are.
    for same in (target.set_axis(dates + pd.Timedelta(hours=8)),
                 target.set_axis(dates.as_unit("s"))):
        TLAGRegressor(**{**fast_params, "max_epochs": 1}).fit(frame, same)
    zoned = frame.tz_localize("UTC")
    TLAGRegressor(**{**fast_params, "max_epochs": 1}).fit(
        zoned, target.tz_localize("UTC").tz_convert("Europe/Berlin"))
    est = TLAGRegressor(**fast_params, random_state=0).fit(frame, target)
    with pytest.raises(ValueError, match="y is dated otherwise than X"):
        est.score(frame, late)
    # Undated targets are paired by position, as ever.
    assert np.isfinite(est.score(frame, y))


def test_a_failed_first_fit_leaves_the_estimator_unfitted(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params)
    with pytest.raises(ValueError, match="rows"):
        est.fit(X[:8], y[:8])
    assert not hasattr(est, "n_features_in_")
    with pytest.raises(NotFittedError):
        est.predict(X)


def test_dates_out_of_order_are_refused_where_they_go_back(series, fast_params):
    # Gauge exports often list the newest day first: read as they are, every window would
    # run backwards in time. The message names the first row that goes back.
    X, y = series
    dates = pd.date_range("2001-01-01", periods=len(X), freq="D")
    backwards = pd.DataFrame(X[::-1], index=dates[::-1])
    with pytest.raises(ValueError, match=r"row 1 \(2001-08-27\) comes after row 0 "
                                         r"\(2001-08-28\).*sort_index"):
        TLAGRegressor(**fast_params).fit(backwards, y[::-1])
    repeated = pd.DataFrame(X, index=dates.where(np.arange(len(X)) != 5, dates[4]))
    with pytest.raises(ValueError, match=r"row 5 \(2001-01-05\) repeats"):
        TLAGRegressor(**fast_params).fit(repeated, y)
    est = TLAGRegressor(**fast_params, random_state=0).fit(pd.DataFrame(X, index=dates), y)
    with pytest.raises(ValueError, match="row 1"):
        est.predict(backwards)
    # Several series, each in time order: every group may start anew.
    groups = np.repeat([0, 1], len(X) // 2)
    restart = pd.DataFrame(X, index=np.concatenate([dates[: len(X) // 2]] * 2))
    est.fit(restart, y, groups=groups)
    est.predict(restart, groups=groups)
    swapped = restart.iloc[np.r_[0, 2, 1, 3:len(X)]]
    with pytest.raises(ValueError, match="sort the rows of series 0 by date"):
        est.predict(swapped, groups=groups)
    # Basin names from a DataFrame column: an array of Python strings.
    names = pd.Series(np.where(groups == 0, "lahn", "dill"))
    with pytest.raises(ValueError, match="sort the rows of series 'lahn' by date"):
        est.fit(swapped, y, groups=names)


@pytest.mark.parametrize("missing_target", ["raise", "mask"])
def test_a_missing_value_code_in_y_is_refused(series, fast_params, missing_target):
    # A GRDC or CAMELS file read with pandas keeps -999 for a missing day: as a flow it
    # would be learned. The code is named, with the rows and the remedy.
    X, y = series
    y = y.copy()
    y[[10, 50]] = -999.0
    est = TLAGRegressor(**fast_params, missing_target=missing_target)
    with pytest.raises(ValueError, match=r"y holds -999 in rows 10, 50 .*missing-value "
                                         r"code.*NaN"):
        est.fit(X, y)


def test_a_warm_start_that_fails_in_training_leaves_the_fitted_net_as_it_was(series,
                                                                              fast_params):
    # A warm start trains the fitted net in place: a failure after some epochs must not
    # leave those epochs (or the validation windows) in the model.
    from skorch.callbacks import Callback

    class FailAtEpoch(Callback):
        def __init__(self, epoch=None):
            self.epoch = epoch

        def on_epoch_end(self, net, **kwargs):
            if self.epoch is not None and len(net.history) >= self.epoch:
                raise RuntimeError("the disk is full")

    X, y = series
    failing = FailAtEpoch()
    est = TLAGRegressor(**fast_params, callbacks=[("fail", failing)], random_state=0)
    est.fit(X, y)
    rows, before = len(est.history_), est.predict(X)
    est.set_params(warm_start=True)
    failing.epoch = rows + 2
    with pytest.raises(RuntimeError, match="disk is full"):
        est.fit(X, y)
    assert len(est.history_) == rows and est.net_.train_split is None
    assert est.module_ is est.net_.module_
    np.testing.assert_array_equal(est.predict(X), before)


def test_a_warm_start_works_with_a_callback_that_cannot_be_copied(series, fast_params,
                                                                  tmp_path):
    # The copy a warm start keeps in case it fails cannot be made of a callback holding
    # an open file; the fit goes on without it.
    from skorch.callbacks import Callback

    class FileLog(Callback):
        def __init__(self, path=None):
            self.path = path

        def initialize(self):
            self.handle_ = open(self.path, "a")  # noqa: SIM115 (held across epochs)
            return self

        def on_epoch_end(self, net, **kwargs):
            self.handle_.write(f"{len(net.history)}\n")

    class KeepOutput(Callback):
        # A tensor with a gradient history cannot be deep-copied (torch refuses).
        def on_epoch_end(self, net, **kwargs):
            self.output_ = net.module_.head.weight * 2

    X, y = series
    for name, callback in [("log", FileLog(tmp_path / "log.txt")), ("keep", KeepOutput())]:
        est = TLAGRegressor(**fast_params, callbacks=[(name, callback)],
                            random_state=0).fit(X, y)
        rows = len(est.history_)
        est.set_params(warm_start=True).fit(X, y)
        assert len(est.history_) > rows


def test_predictions_do_not_depend_on_the_chunks_they_are_computed_in(fast_params,
                                                                        monkeypatch):
    import sktlag._training

    X, y = make_series(n_rows=700)
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y)
    whole = est.predict(X)
    # Chunks of 7 windows (at least the batch size, which is larger: shrink it too).
    # The LSTM kernels round by the size of the chunk: equal to float32's precision.
    monkeypatch.setitem(sktlag._training._PREDICT_CHUNK, "cpu", 7)
    est.batch_size_ = 7
    np.testing.assert_allclose(est.predict(X), whole, rtol=1e-5)
