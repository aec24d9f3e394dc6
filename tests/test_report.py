"""The artifacts: every file written, parsable, with the expected content; all or nothing."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from sktlag import TLAGRegressor, load_model, write_artifacts
from sktlag import report as report_module
from sktlag.io import read_table
from sktlag.report import ARTIFACT_FILES, check_output_dir, derivative_table, fit_periods

from .conftest import FAST, make_series
from .fitted import study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    s = study()
    out = tmp_path_factory.mktemp("report") / "run"
    paths = write_artifacts(s.model, out, X_test=s.X_test, y_test=s.y_test,
                            X_train=s.X_fit, y_train=s.y_fit, metadata={"data": "toy"})
    return out, paths


def test_every_artifact_is_written(artifacts):
    out, paths = artifacts
    assert set(paths) == set(ARTIFACT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACT_FILES.values())
    assert all(path.parent == out and path.stat().st_size > 0 for path in paths.values())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers


@pytest.mark.parametrize("key, size", [
    ("evolution_png", (1350, 1500)), ("loss_png", (675, 1350)), ("prediction_png", (600, 1650)),
])
def test_figures_are_png_images_at_150_dpi(artifacts, key, size):
    path = artifacts[1][key]
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.shape[:2] == size
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_architecture_json(artifacts):
    est = study().model[-1]
    data = json.loads(artifacts[1]["architecture_json"].read_text())
    assert data["final_n_layers"] == est.n_layers_ == data["final_architecture"]["num_layers"]
    assert data["interrupted"] is False
    assert data["epochs_trained"] == len(est.history_)
    assert data["hyperparameters"]["topo_derivative_threshold"] == "-inf"
    assert data["metadata"] == {"data": "toy"}
    assert [a["n_layers"] for a in data["architectures"]] == [1, 2, 3]
    assert sum(a["epochs"] for a in data["architectures"]) == data["epochs_trained"]
    # The selection (moving average, the default): the architecture of the best moving
    # average, at its best single epoch.
    best = max(data["architectures"], key=lambda a: a["best_valid_nse_ma"])
    assert data["best_epoch"] == est.best_epoch_ == best["best_epoch"]
    decisions = data["growth_decisions"]
    assert [d["inserted"] for d in decisions] == [True, True]
    rows = est.derivative_history_.to_dict("records")
    assert len(decisions) == len(rows)
    # Each decision as the estimator recorded it, not only its field names.
    for d, row in zip(decisions, rows, strict=True):
        assert d["derivatives"] == pytest.approx(
            [row[f"derivative_{k}"] for k in range(1, row["n_layers_before"] + 1)], rel=1e-12)
        for field in ("epoch", "n_layers_before", "position", "backtracking_steps", "n_hvp"):
            assert d[field] == row[field], field
        for field in ("scale", "sign", "loss_before", "loss_after", "seconds"):
            assert d[field] == pytest.approx(row[field], rel=1e-12), field
        assert 1 <= d["position"] <= d["n_layers_before"]


def test_architecture_text(artifacts):
    text = artifacts[1]["architecture_txt"].read_text()
    est = study().model[-1]
    assert f"GrowingLSTM: {est.n_layers_} LSTM layers" in text
    assert "residual h + LSTM(h)" in text and "inserted after layer" in text
    assert "inputs: 3 features (p_a, p_b, t_a)" in text and "lookback = 5" in text


def test_derivative_history_workbook(artifacts):
    table = pd.read_excel(artifacts[1]["derivatives_xlsx"])
    est = study().model[-1]
    assert len(table) == len(est.derivative_history_) == 2
    assert list(table.columns[:4]) == ["epoch", "n_layers_before", "derivative_1", "derivative_2"]
    # One value per candidate position: the first decision had one position only.
    assert table["derivative_2"].isna().tolist() == [True, False]
    recorded = est.derivative_history_
    for column in ("derivative_1", "derivative_2", "scale", "sign", "loss_before",
                   "loss_after"):
        np.testing.assert_allclose(table[column], recorded[column].astype(float),
                                   rtol=1e-12, err_msg=column)
    for column in ("epoch", "n_layers_before", "position", "backtracking_steps", "n_hvp",
                   "inserted", "reason"):
        assert table[column].tolist() == recorded[column].tolist(), column


def test_predictions_workbook_reads_back(artifacts):
    s = study()
    table = read_table(artifacts[1]["predictions_xlsx"], target="observed",
                       features=["predicted"])
    assert table.layout == "tidy"
    assert table.X.index.equals(s.X_test.index)
    np.testing.assert_allclose(table.y, s.y_test, rtol=1e-12)
    np.testing.assert_allclose(table.X["predicted"], s.model.predict(s.X_test), rtol=1e-12)


def test_metrics_json(artifacts):
    s = study()
    data = json.loads(artifacts[1]["metrics_json"].read_text())
    assert data["interrupted"] is False and data["n_layers"] == s.model[-1].n_layers_
    assert data["fit_seconds"] > 0
    assert set(data["periods"]) == {"train", "validation", "test"}
    test = data["periods"]["test"]
    assert test["n_rows"] == len(s.X_test)
    assert test["start"] == str(s.X_test.index[0].date())
    assert test["end"] == str(s.X_test.index[-1].date())
    metrics = test["metrics"]["q"]
    assert {"nse", "kge", "kge_prime", "log_nse", "rmse", "pearson_r"} <= set(metrics)
    assert metrics["nse"] == pytest.approx(s.model.score(s.X_test, s.y_test), abs=1e-12)
    periods = fit_periods(s.model, s.y_fit)
    assert data["periods"]["validation"]["n_rows"] == len(periods["validation"])
    assert data["periods"]["train"]["end"] < data["periods"]["validation"]["start"]


def test_periods_of_a_fit_on_several_series(tmp_path):
    from sktlag import TLAGRegressor
    from sktlag.metrics import nse

    from .conftest import FAST, make_series

    X, y = make_series(n_rows=300)
    groups = np.repeat([0, 1], 150)
    model = TLAGRegressor(**{**FAST, "max_epochs": 2}, random_state=0).fit(X, y, groups=groups)
    paths = write_artifacts(model, tmp_path / "run", X_train=X, y_train=y, groups=groups)
    data = json.loads(paths["metrics_json"].read_text())
    # Each series split on its own, and its windows never reach into the other series.
    valid = fit_periods(model, y, groups)["validation"]
    assert data["periods"]["validation"]["n_rows"] == len(valid)
    expected = nse(y[valid], model.predict(X, groups=groups)[valid])
    assert data["periods"]["validation"]["metrics"]["output_0"]["nse"] == pytest.approx(expected)


def test_interrupted_fit_is_marked(artifacts, tmp_path):
    model = load_model(artifacts[1]["model"])
    model[-1].interrupted_ = True
    paths = write_artifacts(model, tmp_path / "run")
    assert json.loads(paths["metrics_json"].read_text())["interrupted"] is True
    summary = json.loads(paths["architecture_json"].read_text())
    assert summary["interrupted"] is True and summary["stop_reason"] == "interrupted"
    assert "INTERRUPTED" in paths["architecture_txt"].read_text()
    # Without a test period there is nothing to predict and nothing to plot.
    assert "prediction_png" not in paths and "predictions_xlsx" not in paths


def test_refuses_a_non_empty_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_artifacts(study().model, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="not a directory"):
        write_artifacts(study().model, tmp_path / "file")


@pytest.mark.parametrize(("cwd", "target"), [("", "."), ("", "sub/.."), ("sub", "..")])
def test_refuses_the_working_directory_and_what_holds_it(tmp_path, monkeypatch, cwd, target):
    # The artifacts replace their directory as a whole: the working directory cannot be.
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / cwd)
    with pytest.raises(ValueError, match="working directory"):
        check_output_dir(target, overwrite=True)
    assert check_output_dir(tmp_path / "new").name == "new"


def test_each_output_is_scored_on_its_own_observed_days():
    from sktlag.metrics import evaluate
    from sktlag.report import metrics_summary

    rng = np.random.default_rng(0)
    obs = rng.gamma(2.0, size=(40, 2))
    sim = obs + rng.normal(scale=0.3, size=obs.shape)
    obs[5:15, 1] = np.nan  # gauge b missing for ten days, gauge a observed throughout
    dates = pd.date_range("2000-01-01", periods=40)
    period = metrics_summary(study().model, {"test": (obs, sim, dates)},
                             names=["a", "b"])["periods"]["test"]
    seen = np.isfinite(obs[:, 1])
    assert period["n_scored"] == 40 and period["n_scored_by_output"] == {"a": 40, "b": 30}
    for j, name, rows in ((0, "a", slice(None)), (1, "b", seen)):
        truth = evaluate(obs[rows, j], sim[rows, j], index=dates[rows])["output_0"]
        assert period["metrics"][name] == pytest.approx(truth.to_dict(), nan_ok=True)


def test_overwrite_replaces_the_directory_as_a_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a part of an earlier run
    paths = write_artifacts(study().model, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("other", ["thesis.docx", "data/", "metrics.json/"])
def test_overwrite_never_deletes_what_is_not_an_artifact(tmp_path, other):
    # Replacing a directory replaces everything in it: one of earlier artifacts only.
    out = tmp_path / "run"
    out.mkdir()
    (out / "lstm_loss.png").write_text("old")
    if other.endswith("/"):
        (out / other).mkdir()
    else:
        (out / other).write_text("keep")
    with pytest.raises(FileExistsError, match=f"holds 1 entries that are not artifacts "
                                              f"\\({other}\\)"):
        write_artifacts(study().model, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(["lstm_loss.png", other.strip("/")])


def test_overwriting_a_link_to_a_directory_leaves_neither_link_nor_its_target_changed(
        tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (tmp_path / "work").mkdir()
    link = tmp_path / "work" / "run"
    link.symlink_to(target, target_is_directory=True)
    write_artifacts(study().model, link, overwrite=True)
    assert link.is_dir() and not link.is_symlink()
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["run"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_a_replaced_directory_that_cannot_be_removed_is_warned_about(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    monkeypatch.setattr(report_module.shutil, "rmtree", lambda path, ignore_errors: None)
    with pytest.warns(UserWarning, match="could not be removed completely"):
        write_artifacts(study().model, out, overwrite=True)


def test_an_error_leaves_no_partial_output(tmp_path, monkeypatch):
    def fail(model):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report_module, "plot_loss", fail)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_artifacts(study().model, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_artifacts(study().model, old, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    # Nor the folders above it that it created (Ctrl-C included); one it did not
    # create stays.
    monkeypatch.setattr(report_module, "plot_loss", lambda model: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_artifacts(study().model, tmp_path / "old" / "new" / "deeper" / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert [p.name for p in old.iterdir()] == ["metrics.json"]


def test_a_mount_point_is_refused_before_the_work(tmp_path, monkeypatch):
    # Renaming it away failed only once the fit was done, and the fit was lost.
    out = tmp_path / "volume"
    out.mkdir()
    monkeypatch.setattr(report_module.os.path, "ismount", lambda path: Path(path) == out)
    with pytest.raises(ValueError, match="'.*volume' is a mount point.*choose a directory "
                                         "inside it"):
        check_output_dir(out)
    check_output_dir(out / "run")


def test_a_failed_write_names_the_artifact_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The error used to be the bare "[Errno 28] No space left on device".
    monkeypatch.setattr(report_module, "write_table", full)
    s = study()
    with pytest.raises(OSError, match="cannot write predictions.xlsx for '.*out': No space") \
            as info:
        write_artifacts(s.model, tmp_path / "out", X_test=s.X_test, y_test=s.y_test)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    # An error of building an artifact, not of writing one, is left as it was.
    def unbuilt(model):
        raise OSError("cannot open resource")

    monkeypatch.setattr(report_module, "plot_evolution", unbuilt)
    with pytest.raises(OSError, match="^cannot open resource$"):
        write_artifacts(s.model, tmp_path / "out")


def test_dates_with_a_time_zone_are_written_as_their_wall_time(tmp_path):
    # Excel holds no time zone: pandas refused to write them, after the whole work.
    s = study()
    X_test = s.X_test.tz_localize("Europe/Berlin")
    paths = write_artifacts(s.model, tmp_path / "out", X_test=X_test, y_test=s.y_test)
    table = pd.read_excel(paths["predictions_xlsx"], index_col="date")
    assert (table.index == s.X_test.index).all()


def test_an_undefined_validation_nse_is_written_as_such():
    # A validation discharge that does not vary has no NSE: the text said "-inf" and
    # "at epoch None".
    from sktlag.report import architecture_text

    X, y = make_series(n_rows=300)
    y = y.copy()
    y[230:] = 1.0
    est = TLAGRegressor(**{**FAST, "max_epochs": 3}, topo_derivative_threshold=np.inf,
                        random_state=0).fit(X, y)
    text = architecture_text(est).split("Hyperparameters")[0]
    assert "validation NSE n/a" in text
    assert "-inf" not in text and "None" not in text


def test_derivative_table_of_a_model_without_decisions(artifacts):
    model = load_model(artifacts[1]["model"])
    est = model[-1]
    est.derivative_history_ = est.derivative_history_.iloc[:0]
    table = derivative_table(model)
    assert table.empty and list(table.columns[:2]) == ["epoch", "n_layers_before"]


@pytest.mark.parametrize("names", [["q"], ["up", "down"]])
def test_prediction_columns_read_back_what_the_prediction_table_wrote(names):
    rng = np.random.default_rng(0)
    pred, lower, upper = (rng.normal(size=(5, len(names))) for _ in range(3))
    table = report_module.prediction_table(None, pred, None, names=names, lower=lower,
                                           upper=upper)
    for key, values in (("predicted", pred), ("lower", lower), ("upper", upper)):
        np.testing.assert_array_equal(report_module.prediction_columns(table, key, names),
                                      values)
