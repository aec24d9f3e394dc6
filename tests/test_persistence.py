"""Model files: exact round trips, plain data only, clear errors for bad files."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sktlag import TLAGRegressor, load_model, save_model
from sktlag.persistence import FORMAT_VERSION, ModelFileError, model_payload

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
    assert payload["format_version"] == FORMAT_VERSION
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


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_file_is_a_clear_error(saved, tmp_path, keep):
    data = saved.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "broken.pth"
    path.write_bytes(data[:size])
    with pytest.raises(ModelFileError, match="broken.pth.*truncated, damaged"):
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


def test_inconsistent_weights_are_a_clear_error(saved, tmp_path):
    payload = model_payload(study().model)
    payload["spec"]["num_layers"] += 1
    payload["spec"]["residual"].append(True)
    path = tmp_path / "inconsistent.pth"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_model(path)


def test_what_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        save_model(TLAGRegressor(), tmp_path / "m.pth")
    other = Pipeline([("scale", MinMaxScaler()), ("tlag", TLAGRegressor())])
    with pytest.raises(TypeError, match="StandardScaler steps only"):
        save_model(other, tmp_path / "m.pth")
    with pytest.raises(TypeError, match="TLAGRegressor"):
        save_model(StandardScaler(), tmp_path / "m.pth")
    assert not (tmp_path / "m.pth").exists()
