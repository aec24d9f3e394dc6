"""Model files: exact round trips, plain data only, clear errors for bad files."""

import copy
import os
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from skorch.callbacks import Callback

from sktlag import TLAGRegressor, load_model, save_model
from sktlag._training import GrowingNet
from sktlag.persistence import FORMAT_VERSION, ModelFileError, model_payload
from sktlag.recipe import ShortRecordWarning

from .conftest import FAST, make_series
from .fitted import study


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pth"
    save_model(study().model, path, metadata={"target_names": ["q"]})
    return path


def test_pipeline_round_trip_predicts_identically(saved):
    s = study()
    loaded, metadata = load_model(saved, return_metadata=True)
    assert isinstance(loaded, Pipeline) and isinstance(loaded[-1], TLAGRegressor)
    assert metadata == {"target_names": ["q"]}
    # The test period continues the training index: both use the real warm-up rows.
    np.testing.assert_array_equal(loaded.predict(s.X_test), s.model.predict(s.X_test))
    np.testing.assert_array_equal(loaded.predict(s.X_fit), s.model.predict(s.X_fit))
    assert loaded.score(s.X_test, s.y_test) == s.model.score(s.X_test, s.y_test)


def test_fitted_attributes_are_restored(saved):
    original, loaded = study().model[-1], load_model(saved)[-1]
    assert loaded.get_params() == original.get_params()
    assert loaded.n_layers_ == original.n_layers_ == loaded.module_.num_layers
    assert loaded.module_.get_spec() == original.module_.get_spec()
    assert list(loaded.feature_names_in_) == list(original.feature_names_in_)
    assert loaded.n_outputs_ == original.n_outputs_
    assert loaded.n_threads_ == original.n_threads_ == original.n_threads
    assert loaded.growth_history_ == original.growth_history_
    assert len(loaded.history_) == len(original.history_)
    assert loaded.history_[:, "valid_nse"] == original.history_[:, "valid_nse"]
    pd.testing.assert_frame_equal(
        loaded.derivative_history_, original.derivative_history_, check_dtype=False
    )
    assert loaded.interrupted_ is False
    assert loaded.net_.module_ is loaded.module_


def test_bare_regressor_on_arrays_round_trips(tmp_path):
    X, y = make_series(n_rows=160, n_outputs=2)
    est = TLAGRegressor(**{**FAST, "max_epochs": 3}, random_state=0).fit(X, y)
    save_model(est, tmp_path / "m.pth")
    loaded = load_model(tmp_path / "m.pth")
    assert isinstance(loaded, TLAGRegressor) and not hasattr(loaded, "feature_names_in_")
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.predict(X).shape == (160, 2)


def _assert_plain(value, where="payload"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), where
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (bool, int, float, str, torch.Tensor), (
            f"{where} is a {type(value).__name__}"
        )


def test_file_holds_plain_data_and_tensors_only(saved):
    payload = torch.load(saved, weights_only=True)
    _assert_plain(payload)
    assert payload["format_version"] == 2  # a regressor's layout has not changed since 2
    for key in ("spec", "state_dict", "target_mean", "target_scale", "padding_values",
                "lookback", "feature_names_in", "n_outputs", "y_ndim", "sktlag_version",
                "params", "pipeline"):
        assert key in payload
    assert payload["pipeline"]["scalers"][0]["mean"] == list(study().model[0].mean_)


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.pth"
    torch.save({"format": "sktlag-model", "format_version": 1, "params": Payload()}, path)
    with pytest.raises(ModelFileError, match="evil.pth.*pickled objects"):
        load_model(path)
    assert not marker.exists()

    class Shell:  # a function of a module torch blocks outright
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": "sktlag-model", "format_version": 1, "params": Shell()}, path)
    with pytest.raises(ModelFileError, match="evil.pth.*pickled objects"):
        load_model(path)


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_file_is_a_clear_error(saved, tmp_path, keep):
    data = saved.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "broken.pth"
    path.write_bytes(data[:size])
    with pytest.raises(ModelFileError, match="broken.pth.*truncated, damaged"):
        load_model(path)


def test_a_damaged_pickle_is_not_called_unsafe(tmp_path):
    # A pickle stream (torch's legacy format) with an opcode no pickle has.
    path = tmp_path / "flipped.pth"
    path.write_bytes(b"\x80\x02\x8e\x00\x00\x00")
    with pytest.raises(ModelFileError, match="flipped.pth.*truncated, damaged") as info:
        load_model(path)
    assert "pickled objects" not in str(info.value)


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_pickle_or_joblib_file_is_named_as_such(saved, tmp_path, protocol):
    # What joblib.dump writes (a pickle of protocol 4 or 5); torch never writes one.
    model = load_model(saved)
    path = tmp_path / "dumped.pth"
    with open(path, "wb") as handle:
        pickle.dump(model, handle, protocol=protocol)
    with pytest.raises(ModelFileError, match="dumped.pth.*a pickle .written by pickle or "
                                             "joblib.*joblib.load") as info:
        load_model(path)
    assert "damaged" not in str(info.value)
    joblib.dump(model, path)
    with pytest.raises(ModelFileError, match="written by pickle or joblib"):
        load_model(path)


@pytest.mark.parametrize("version", [None, 0, -5, True, "1"])
def test_a_model_file_without_a_valid_format_version_is_named_as_such(tmp_path, version):
    path = tmp_path / "edited.pth"
    payload = {"format": "sktlag-model", "params": {}}
    if version is not None:
        payload["format_version"] = version
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"edited.pth.*no valid format version"):
        load_model(path)


@pytest.mark.parametrize("content", [b"garbage" * 50, b"date,q\n2000-01-01,1.5\n"])
def test_a_file_torch_did_not_write_is_named_as_such(tmp_path, content):
    path = tmp_path / "table.pth"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="table.pth.*not a file written by PyTorch"):
        load_model(path)


def test_other_files_are_rejected(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="not an sktlag model file"):
        load_model(path)
    torch.save({"format": "sktlag-model", "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(ModelFileError, match="upgrade sktlag"):
        load_model(path)
    torch.save({"format": "sktlag-model", "format_version": 1, "params": {}}, path)
    with pytest.raises(ModelFileError, match="lacks the entries"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        load_model(tmp_path / "no_such.pth")
    with pytest.raises(ModelFileError, match="not a file"):
        load_model(tmp_path)


def test_an_unusable_device_is_named_and_the_file_not_blamed(saved):
    # A good file: the message is about the argument, as fit's check of ``device`` says.
    with pytest.raises(ValueError, match="device='gpu' is not a torch device") as info:
        load_model(saved, device="gpu")
    assert not isinstance(info.value, ModelFileError)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch finds no CUDA device"):
            load_model(saved, device="cuda")


def test_inconsistent_weights_are_a_clear_error(saved, tmp_path):
    payload = model_payload(study().model)
    payload["spec"]["num_layers"] += 1
    payload["spec"]["residual"].append(True)
    path = tmp_path / "inconsistent.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_model(path)


def test_an_entry_of_the_wrong_kind_is_a_clear_error(saved, tmp_path):
    payload = model_payload(study().model)
    payload["params"] = list(payload["params"])  # names only, where a mapping belongs
    path = tmp_path / "wrong_kind.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="wrong_kind.pth.*inconsistent"):
        load_model(path)
    payload = model_payload(study().model)
    payload["metadata"] = "a note"  # a text where a mapping belongs
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="wrong_kind.pth.*metadata is a str"):
        load_model(path, return_metadata=True)


@pytest.mark.parametrize("metadata", [["basin A"], "a note", 0])
def test_metadata_that_is_not_a_mapping_is_refused_before_anything_is_written(
        tmp_path, metadata):
    # load_model reads metadata as a mapping: such a file could not be read back.
    path = tmp_path / "model.pth"
    with pytest.raises(TypeError, match=f"metadata must be a dict, got "
                                        f"{type(metadata).__name__}"):
        save_model(study().model, path, metadata=metadata)
    assert not path.exists()


@pytest.mark.parametrize(("entry", "value", "words"), [
    ("params", {"lookback": 0}, "lookback"),
    ("params", {"initial_num_layers": 99}, "exceeds max_layers"),
    ("target_scale", [0.0], "scale must be finite"),
    ("target_mean", [float("nan")], "scale must be finite"),
])
def test_values_fit_never_stores_are_a_clear_error(tmp_path, entry, value, words):
    payload = model_payload(study().model)
    payload[entry] = {**payload[entry], **value} if isinstance(value, dict) else value
    path = tmp_path / "edited.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=f"edited.pth.*inconsistent.*{words}"):
        load_model(path)


def _lengthen(values):
    return [*values, values[-1]]


@pytest.mark.parametrize(("edit", "words"), [
    # One value too many or too few for the network's one output and three inputs:
    # such a file loaded and predicted twice the rows, or failed in a broadcast.
    (lambda p: p.update(target_mean=_lengthen(p["target_mean"])), "target_mean has 2"),
    (lambda p: p.update(target_scale=_lengthen(p["target_scale"])), "target_scale has 2"),
    (lambda p: p.update(padding_values=p["padding_values"][:-1]), "padding_values has 2"),
    (lambda p: p.update(feature_names_in=["a"]), "feature_names_in has 1"),
    (lambda p: p["warmup"].update(rows=p["warmup"]["rows"][:, :-1]), "warm-up rows have 2"),
    (lambda p: p.update(y_ndim=5), "y_ndim"),
    (lambda p: p["pipeline"]["scalers"][0].update(mean=p["pipeline"]["scalers"][0]["mean"][:-1]),
     "scaler 'scaler'.*mean has 2"),
    (lambda p: p.update(batch_size=float("inf")), "OverflowError"),
])
def test_entries_that_disagree_with_the_network_are_a_clear_error(tmp_path, edit, words):
    payload = model_payload(study().model)
    edit(payload)
    path = tmp_path / "edited.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=f"edited.pth.*inconsistent.*{words}"):
        load_model(path)


def test_dates_and_durations_in_metadata_are_kept_as_iso_text(saved, tmp_path):
    # NumPy lists datetime64[ns] values as nanosecond counts, which read as numbers.
    dates = pd.date_range("2001-01-01", periods=2, freq="D")
    metadata = {
        "test_dates": dates, "gaps": np.array([1, 2], dtype="timedelta64[D]"),
        "missing": pd.Series([dates[0], pd.NaT]), "step": pd.Timedelta(days=1),
    }
    path = save_model(study().model, tmp_path / "dated.pth", metadata=metadata)
    assert load_model(path, return_metadata=True)[1] == {
        "test_dates": ["2001-01-01T00:00:00", "2001-01-02T00:00:00"],
        "gaps": ["P1DT0H0M0S", "P2DT0H0M0S"],
        "missing": ["2001-01-01T00:00:00", None], "step": "P1DT0H0M0S",
    }


def test_what_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        save_model(TLAGRegressor(), tmp_path / "m.pth")
    other = Pipeline([("scale", MinMaxScaler()), ("tlag", TLAGRegressor())])
    with pytest.raises(TypeError, match="StandardScaler steps only"):
        save_model(other, tmp_path / "m.pth")
    with pytest.raises(TypeError, match="TLAGRegressor"):
        save_model(StandardScaler(), tmp_path / "m.pth")
    assert not (tmp_path / "m.pth").exists()


# ---------------------------------------------------------------- fine-tuning
TINY = {**FAST, "hidden_size": 4, "max_epochs": 3}


def second_basin():
    """A series with other input and discharge statistics than ``make_series``."""
    X, y = make_series(n_rows=200, seed=1)
    return 2.0 * X + 1.0, 3.0 * y + 5.0


@pytest.fixture(scope="module")
def first_fit():
    X, y = make_series(n_rows=200)
    grown = {**TINY, "max_epochs": 5, "max_epochs_per_layer": 2}
    return TLAGRegressor(**grown, topo_derivative_threshold=-np.inf, random_state=0).fit(X, y)


def _pth_round_trip(model, folder):
    save_model(model, folder / "model.pth")
    return load_model(folder / "model.pth")


def _joblib_round_trip(model, folder):
    joblib.dump(model, folder / "model.joblib")
    return joblib.load(folder / "model.joblib")


def _fine_tune(model, X, y):
    model.set_params(warm_start=True, max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # Tiny test series are short records; that warning is not the subject.
        warnings.simplefilter("ignore", ShortRecordWarning)
        return model.fit(X, y)


def _assert_fine_tuned_like(loaded, original, X, y):
    """``loaded`` continues exactly where ``original`` (in memory) stands."""
    in_memory = copy.deepcopy(original)
    np.testing.assert_array_equal(loaded.predict(X), in_memory.predict(X))
    n_epochs, depth = len(original.history_), original.n_layers_
    assert isinstance(loaded.net_, GrowingNet)
    assert list(dict(loaded.net_.callbacks_)) == list(dict(in_memory.net_.callbacks_))
    _fine_tune(in_memory, X, y)
    _fine_tune(loaded, X, y)
    rows = list(loaded.history_)[n_epochs:]
    assert [row["epoch"] for row in rows] == [n_epochs + 1, n_epochs + 2]
    assert rows[0]["n_layers"] == depth and loaded.n_layers_ >= depth
    assert loaded.history_[:, "train_loss"] == in_memory.history_[:, "train_loss"]
    np.testing.assert_array_equal(loaded.predict(X), in_memory.predict(X))
    assert loaded.interrupted_ is False
    assert loaded.growth_stop_rule_ == in_memory.growth_stop_rule_
    assert len(loaded.derivative_history_) == len(in_memory.derivative_history_)


def test_model_file_can_be_fine_tuned_on_another_basin(first_fit, tmp_path):
    X, y = second_basin()
    loaded = _pth_round_trip(first_fit, tmp_path)
    assert first_fit.n_layers_ > 1  # the saved model grew
    _assert_fine_tuned_like(loaded, first_fit, X, y)


@pytest.mark.parametrize("source", ["fitted", "model_file"])
def test_joblib_file_can_be_fine_tuned_on_another_basin(first_fit, tmp_path, source):
    X, y = second_basin()
    model = first_fit if source == "fitted" else _pth_round_trip(first_fit, tmp_path)
    loaded = _joblib_round_trip(model, tmp_path)
    _assert_fine_tuned_like(loaded, first_fit, X, y)


def test_pipeline_model_file_can_be_fine_tuned(saved):
    X, y = second_basin()
    s = study()
    X = pd.DataFrame(X, columns=s.X_fit.columns)
    loaded = load_model(saved)
    loaded[-1].set_params(warm_start=True, max_epochs=1)
    n_epochs = len(s.model[-1].history_)
    loaded.fit(X, y)
    assert len(loaded[-1].history_) == n_epochs + 1
    assert loaded[-1].n_layers_ >= s.model[-1].n_layers_


@pytest.mark.parametrize("index", [
    pd.period_range("2000-01-01", periods=300, freq="D"),
    pd.Index(np.arange(300) * 0.5),
    pd.timedelta_range(0, periods=300, freq="D"),
    # Days with a time zone, the training period ending on the day the clocks go
    # forward (23 hours) and on the day they go back (25): the next day is a calendar
    # day, not the last step again.
    pd.date_range("2000-09-07", periods=300, freq="D", tz="Europe/Berlin"),
    pd.date_range("2000-04-13", periods=300, freq="D", tz="Europe/Berlin"),
    # Hours with a time zone across the hour the clocks skip: absolute steps.
    pd.date_range("2001-03-16 19:00", periods=300, freq="h", tz="Europe/Berlin"),
    # Steps of the calendar, not of time (the last step again missed the next row),
    # also where the index does not carry its frequency (read from a file).
    pd.date_range("1990-02-01", periods=300, freq="MS"),
    pd.DatetimeIndex(list(pd.date_range("1990-01-31", periods=300, freq="ME"))),
    pd.date_range("1797-01-01", periods=300, freq="YS"),
    pd.DatetimeIndex(list(pd.bdate_range("2001-01-01", periods=300))),
])
def test_the_warm_up_of_any_index_with_steps_round_trips(tmp_path, index):
    X, y = make_series(n_rows=300)
    X = pd.DataFrame(X, index=index, columns=["a", "b", "c"])
    est = TLAGRegressor(**TINY, random_state=0).fit(X.iloc[:200], y[:200])
    assert est.warmup_index_ == index[200]
    loaded = _pth_round_trip(est, tmp_path)
    assert loaded.warmup_index_ == index[200]
    np.testing.assert_array_equal(loaded.predict(X.iloc[200:]), est.predict(X.iloc[200:]))


def test_a_decision_column_never_computed_round_trips_as_numbers(tmp_path):
    X, y = make_series(n_rows=200)
    est = TLAGRegressor(**{**TINY, "max_epochs": 4, "max_epochs_per_layer": 2},
                        topo_derivative_threshold=-np.inf, random_state=0).fit(X, y)
    table = est.derivative_history_
    column = next(c for c in table.columns if c.startswith("relative_derivative_"))
    table[column] = np.nan  # a position whose derivative could not be computed
    loaded = _pth_round_trip(est, tmp_path)
    pd.testing.assert_frame_equal(loaded.derivative_history_, table)
    loaded.set_params(warm_start=True, max_epochs=2).fit(X, y)  # reads the table back


def test_growth_continues_after_loading(tmp_path):
    X, y = make_series(n_rows=200)
    fixed = TLAGRegressor(**{**TINY, "max_layers": 1}, random_state=0).fit(X, y)
    loaded = _pth_round_trip(fixed, tmp_path)
    assert loaded.n_layers_ == 1
    loaded.set_params(
        warm_start=True, max_layers=2, topo_derivative_threshold=-np.inf,
        min_improvement=-np.inf, max_epochs=4, max_epochs_per_layer=2,
    )
    loaded.fit(*second_basin())
    assert loaded.n_layers_ == 2
    assert loaded.derivative_history_["inserted"].any()
    assert max(loaded.history_[:, "n_layers"]) == 2


RECIPE = ["output_dropout", "initial_forget_bias", "lr_schedule", "clip_gradient_norm"]
STOP_RULES = ["derivative_criterion", "min_improvement", "select_by", "growth_optimizer"]
SOLVER = ["eigensolver_tol", "hessian_products"]
#: The values that reproduce how versions without these settings trained.
LEGACY = {
    "initial_forget_bias": 0.0, "lr_schedule": None, "clip_gradient_norm": None,
    "derivative_criterion": "raw", "min_improvement": -np.inf, "select_by": "epoch",
    "growth_optimizer": "fresh", "callbacks": None,
    # 0.2.0 and before: exact products by double backward, solved to 1e-3.
    "eigensolver_tol": 1e-3, "hessian_products": "exact",
}


def _older_file(model, path, absent):
    """A file as written by a version that did not have the settings ``absent``."""
    payload = model_payload(model)
    for name in absent:
        del payload["params"][name]
    if "output_dropout" in absent:
        del payload["spec"]["output_dropout"]
    for name in ("best_epoch", "best_score", "growth_stop_rule", "n_threads"):
        del payload[name]
    payload["metadata"] = {}
    torch.save(payload, path)
    return path


def test_model_file_without_the_recipe_keeps_its_training(tmp_path):
    X, y = make_series(n_rows=200)
    est = TLAGRegressor(**TINY, output_dropout=0.0, random_state=0).fit(X, y)
    path = _older_file(est, tmp_path / "old.pth",
                       [*RECIPE, *STOP_RULES, *SOLVER, "callbacks"])
    loaded = load_model(path)
    # Not today's default 0.4, which contradicts the stored network.
    assert loaded.output_dropout == loaded.module_.output_dropout_rate == 0.0
    params = loaded.get_params(deep=False)
    assert {name: params[name] for name in LEGACY} == LEGACY
    assert loaded.best_epoch_ is None and loaded.growth_stop_rule_ is None
    assert loaded.n_threads_ is None
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    _fine_tune(loaded, *second_basin())
    assert len(loaded.history_) == len(est.history_) + 2


def test_model_file_with_the_recipe_but_rates_in_its_schedule(tmp_path):
    # Between the recipe and the stop rules, lr_schedule held rates, not factors of lr.
    X, y = make_series(n_rows=200)
    est = TLAGRegressor(**TINY, lr_schedule={2: 0.5}, output_dropout=0.1, random_state=0)
    est.fit(X, y)
    payload_path = _older_file(est, tmp_path / "old.pth", STOP_RULES)
    payload = torch.load(payload_path, weights_only=True)
    payload["params"]["lr_schedule"] = {"2": 0.5 * TINY["lr"]}
    torch.save(payload, payload_path)
    loaded = load_model(payload_path)
    assert loaded.lr_schedule == {2: 0.5} and loaded.output_dropout == 0.1
    params = loaded.get_params(deep=False)
    assert {name: params[name] for name in STOP_RULES} == {
        name: LEGACY[name] for name in STOP_RULES
    }


def test_schedules_and_callbacks_in_a_model_file(tmp_path):
    X, y = make_series(n_rows=200)
    est = TLAGRegressor(
        **TINY, lr_schedule={2: 0.5}, callbacks=[("user", Callback())], random_state=0
    ).fit(X, y)
    loaded = _pth_round_trip(est, tmp_path)
    assert loaded.lr_schedule == {2: 0.5}
    # Callbacks are code: a file never holds them, the loaded model has none.
    assert loaded.callbacks is None
    assert "user" not in dict(loaded.net_.callbacks_)
    loaded.set_params(lr_schedule=[(2, 0.5)])
    loaded = _pth_round_trip(loaded, tmp_path)
    assert loaded.lr_schedule == ((2, 0.5),)
    _fine_tune(loaded, *second_basin())
