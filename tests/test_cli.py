"""The ``sktlag`` command: a full run on a small table, predict, and the error paths."""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sktlag import TLAGEnsemble, cli
from sktlag.conformal import ADAPT_RATE
from sktlag.datasets import load_lahn
from sktlag.io import read_table
from sktlag.metrics import nse
from sktlag.persistence import load_model
from sktlag.recipe import auto_batch_size, updates_per_epoch
from sktlag.report import ARTIFACT_FILES
from sktlag.windows import minimum_rows

# Tiny settings on top of the "fast" preset.
FAST_OPTIONS = ["--preset", "fast", "--max-epochs", "6", "--lookback", "5",
                "--hidden-size", "6"]
N_ROWS = 400


def research_table(path: Path, rows: slice) -> Path:
    """Rows of the Lahn data in the research layout: year, month, day, discharge, stations."""
    frame = load_lahn(as_frame=True).frame.iloc[rows]
    table = pd.DataFrame({"Year": frame.index.year, "month": frame.index.month,
                          "day": frame.index.day})
    table["q_kalkofen"] = frame["q_kalkofen"].to_numpy()
    for name in [c for c in frame.columns if c.startswith(("p_", "t_"))]:
        table[name] = frame[name].to_numpy()
    table.to_csv(path, index=False)
    return path


def terminal_stream() -> io.TextIOWrapper:
    """A text stream that, like a terminal's and unlike a ``StringIO``, cannot be copied."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


def run_main(argv) -> tuple[int, str, str]:
    out, err = terminal_stream(), terminal_stream()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    table = research_table(base / "lahn.csv", slice(0, N_ROWS))
    out = base / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # from an earlier run
    code, stdout, stderr = run_main(["run", table, "--out", out, "--force", *FAST_OPTIONS])
    return {"base": base, "table": table, "out": out, "code": code, "stdout": stdout,
            "stderr": stderr}


def test_the_epoch_table_has_no_colour_codes_off_a_terminal(run):
    # skorch colours the losses whatever the stream: escape codes in a log or a pipe.
    assert "train_loss" in run["stdout"] and "\x1b[" not in run["stdout"]


def test_run_writes_every_artifact(run):
    assert run["code"] == 0, run["stderr"]
    assert sorted(p.name for p in run["out"].iterdir()) == sorted(ARTIFACT_FILES.values())
    # The command's progress bar is no hyperparameter of the model it wrote.
    summary = json.loads((run["out"] / "lstm_architecture_evolution.json").read_text())
    assert summary["hyperparameters"]["callbacks"] is None
    assert "callbacks = None" in (run["out"] / "adaptive_lstm_architecture.txt").read_text()
    assert load_model(run["out"] / MODEL)[-1].callbacks is None
    metrics = json.loads((run["out"] / "metrics.json").read_text())
    n_fit = int(0.8 * N_ROWS)
    assert metrics["periods"]["test"]["n_rows"] == N_ROWS - n_fit
    assert metrics["metadata"]["split"]["fit_rows"] == n_fit
    assert metrics["metadata"]["target_names"] == ["q_kalkofen"]
    assert metrics["interrupted"] is False
    assert np.isfinite(metrics["periods"]["test"]["metrics"]["q_kalkofen"]["nse"])


def test_run_prints_table_growth_and_metrics(run):
    out = run["stdout"]
    assert "research layout" in out and "target q_kalkofen" in out
    assert "valid_nse" in out and "train_loss" in out  # the epoch table
    assert "growth decisions:" in out and "epoch 4:" in out
    assert "test metrics" in out
    for metric in ("nse", "kge", "kge_prime", "log_nse", "rmse"):
        assert metric in out
    assert "adaptive_lstm_model.pth" in out


def test_predict_reproduces_the_test_predictions(run, tmp_path):
    test_table = research_table(tmp_path / "test.csv", slice(int(0.8 * N_ROWS), N_ROWS))
    target = tmp_path / "pred.csv"
    code, stdout, stderr = run_main(
        ["predict", run["out"] / "adaptive_lstm_model.pth", test_table, "--out", target])
    assert code == 0, stderr
    assert "predictions" in stdout and "nse" in stdout
    ours = pd.read_csv(target, index_col="date", parse_dates=True)
    theirs = pd.read_excel(run["out"] / "predictions.xlsx", index_col="date")
    assert list(ours.columns) == ["observed", "predicted"]
    # The test rows follow the training rows, so the model file's warm-up rows apply.
    np.testing.assert_allclose(ours["predicted"], theirs["predicted"], rtol=1e-12)
    np.testing.assert_allclose(ours["observed"], theirs["observed"], rtol=1e-12)
    code, _, stderr = run_main(
        ["predict", run["out"] / "adaptive_lstm_model.pth", test_table, "--out", target])
    assert code == 2 and "exists" in stderr


def test_run_on_the_embedded_data_quietly(tmp_path, monkeypatch):
    X, y = load_lahn(return_X_y=True, as_frame=True)
    calls = []

    def small_lahn(**kwargs):
        calls.append(kwargs)
        return X.iloc[:N_ROWS], y.iloc[:N_ROWS]

    monkeypatch.setattr(cli, "load_lahn", small_lahn)
    code, stdout, stderr = run_main(["run", "--out", tmp_path / "demo", "--quiet",
                                     "--seed", "3", *FAST_OPTIONS])
    assert code == 0, stderr
    assert calls and calls[0]["target"] == "q_kalkofen"
    assert "valid_nse" not in stdout and "epoch 4:" not in stdout
    assert "test metrics" in stdout
    summary = json.loads((tmp_path / "demo" / "lstm_architecture_evolution.json").read_text())
    assert summary["hyperparameters"]["random_state"] == 3
    assert summary["hyperparameters"]["lookback"] == 5
    assert "Lahn" in summary["metadata"]["data"]


def _expect_error(argv, *fragments):
    code, stdout, stderr = run_main(argv)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sktlag: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_missing_table(tmp_path):
    _expect_error(["run", tmp_path / "nope.xlsx", "--out", tmp_path / "o"], "nope.xlsx")
    assert not (tmp_path / "o").exists()


def test_table_without_numeric_columns(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text("date,q,station\n2000-01-01,high,wet\n2000-01-02,low,dry\n")
    _expect_error(["run", path, "--out", tmp_path / "o"], "text.csv", "numeric")


def test_table_shorter_than_the_lookback(tmp_path):
    table = research_table(tmp_path / "short.csv", slice(0, 20))
    _expect_error(["run", table, "--out", tmp_path / "o", "--lookback", "30"],
                  "20 rows", "lookback of 30")
    assert not (tmp_path / "o").exists()


def test_damaged_workbook(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    _expect_error(["run", path, "--out", tmp_path / "o"], "broken.xlsx")


def test_xls_without_xlrd(tmp_path, monkeypatch):
    for module in ("xlrd", "python_calamine"):
        monkeypatch.setitem(sys.modules, module, None)
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    _expect_error(["run", path, "--out", tmp_path / "o"], "old.xls", "pip install sktlag[xls]")
    assert not (tmp_path / "o").exists()


def test_non_empty_output_needs_force(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("")
    _expect_error(["run", "--out", out], "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_never_replaces_the_folder_that_holds_the_table(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    table = research_table(folder / "basin.csv", slice(0, N_ROWS))
    (folder / "notes.txt").write_text("field notes")
    for out in (folder, tmp_path / "link"):
        if out.name == "link":
            out.symlink_to(folder)
        _expect_error(["run", table, "--out", out, "--force", *FAST_OPTIONS],
                      "holds the input", "basin.csv", "choose another directory")
    assert sorted(p.name for p in folder.iterdir()) == ["basin.csv", "notes.txt"]


def test_jobs_without_members_is_refused_not_ignored(tmp_path):
    _expect_error(["run", "--out", tmp_path / "o", "--jobs", "2"],
                  "--jobs needs --members 2 or more")
    assert not (tmp_path / "o").exists()


def test_the_working_directory_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _expect_error(["run", "--out", "."], "'.' is the working directory",
                  "choose a directory below it")
    assert list(tmp_path.iterdir()) == []


def test_an_output_directory_that_cannot_be_made_is_refused_before_training(tmp_path):
    (tmp_path / "plain").write_text("a file")
    _expect_error(["run", "--out", tmp_path / "plain" / "sub", *FAST_OPTIONS],
                  "plain'", "is a file, not a folder")
    # A file is no directory that --force could replace.
    code, _, stderr = run_main(["run", "--out", tmp_path / "plain", *FAST_OPTIONS, "--force"])
    assert code == 2 and "exists and is not a directory" in stderr
    assert "(--force)" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_predict_checks_its_output_before_predicting(run, tmp_path, monkeypatch):
    model = run["out"] / "adaptive_lstm_model.pth"

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(cli, "load_model", never)
    (tmp_path / "folder").mkdir()
    for out, words in [(tmp_path / "missing" / "p.csv", ("missing' does not exist",)),
                       (tmp_path / "folder", ("is a folder", ".csv or .xlsx")),
                       (tmp_path / "p.txt", ("p.txt", "cannot write this file type"))]:
        _expect_error(["predict", model, run["table"], "--out", out, "--force"], *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_table_too_short_for_the_split_says_how_long_it_must_be(tmp_path):
    # The length named is checked against the command itself: one row fewer is
    # refused with the same number, that many rows fit.
    short = research_table(tmp_path / "short.csv", slice(0, 12))
    message = _expect_error(["run", short, "--out", tmp_path / "o", *FAST_OPTIONS],
                            "short.csv", "has 12 rows, too short",
                            f"fit part needs {minimum_rows(5, 0.2)} rows")
    needed = int(re.search(r"needs at least (\d+)", message).group(1))
    assert needed > 12
    short = research_table(tmp_path / "short.csv", slice(0, needed - 1))
    _expect_error(["run", short, "--out", tmp_path / "o", *FAST_OPTIONS],
                  f"has {needed - 1} rows, too short", f"at least {needed};")
    enough = research_table(tmp_path / "enough.csv", slice(0, needed))
    code, _, stderr = run_main(["run", enough, "--out", tmp_path / "o", *FAST_OPTIONS,
                                "--max-epochs", "1"])
    assert code == 0, stderr


def test_the_length_a_table_needs_is_found_without_a_walk_over_row_counts(monkeypatch):
    # A lookback of 10**8 took seconds (10**10: minutes) before its "too short" error:
    # the search walked row counts one by one.
    calls = []
    fit_rows = cli._fit_rows
    monkeypatch.setattr(cli, "_fit_rows", lambda n: calls.append(n) or fit_rows(n))
    for lookback in (1, 5, 180, 10**8, 10**10):
        calls.clear()
        needed = cli._rows_needed(lookback)
        fit = minimum_rows(lookback, cli.VALIDATION_FRACTION)
        assert fit_rows(needed) >= fit and needed - fit_rows(needed) >= 1
        assert not (fit_rows(needed - 1) >= fit and needed - 1 - fit_rows(needed - 1) >= 1)
        assert len(calls) < 20


def test_the_date_column_of_a_tidy_table_can_be_named(tmp_path):
    frame = load_lahn(as_frame=True).frame.iloc[:N_ROWS]
    table = tmp_path / "two_dates.csv"
    frame.rename_axis("Date").assign(time=range(len(frame))).to_csv(table)
    _expect_error(["run", table, "--out", tmp_path / "o", *FAST_OPTIONS],
                  "several possible date columns", "--date-column")
    code, stdout, stderr = run_main(["run", table, "--out", tmp_path / "o", *FAST_OPTIONS,
                                     "--max-epochs", "1", "--date-column", "Date",
                                     "--target", "q_kalkofen", "--features", "p_leun"])
    assert code == 0, stderr
    # The inputs are named: a column read as an input by mistake shows at once.
    assert "target q_kalkofen; 1 feature: p_leun\n" in stdout
    code, _, stderr = run_main(["predict", tmp_path / "o" / "adaptive_lstm_model.pth", table,
                                "--out", tmp_path / "p.csv", "--date-column", "Date"])
    assert code == 0, stderr
    _expect_error(["run", "--out", tmp_path / "o2", "--date-column", "Date"],
                  "--date-column is about a TABLE")


def test_a_sheet_of_a_csv_table_is_refused_not_ignored(run, tmp_path):
    _expect_error(["run", run["table"], "--out", tmp_path / "o", "--sheet", "rain",
                   *FAST_OPTIONS], "a CSV file has no sheets, but sheet 'rain' was asked")
    _expect_error(["run", "--out", tmp_path / "o", "--sheet", "0", *FAST_OPTIONS],
                  "--sheet is about a TABLE, and none was given")
    _expect_error(["predict", run["out"] / "adaptive_lstm_model.pth", run["table"],
                   "--out", tmp_path / "p.csv", "--sheet", "1"], "sheet '1' was asked")
    assert not list(tmp_path.iterdir())


def test_damaged_model_file(run, tmp_path):
    model = tmp_path / "model.pth"
    model.write_bytes((run["out"] / "adaptive_lstm_model.pth").read_bytes()[:500])
    _expect_error(["predict", model, run["table"], "--out", tmp_path / "p.xlsx"],
                  "model.pth", "truncated")
    _expect_error(["predict", tmp_path / "none.pth", run["table"]], "none.pth")


def test_predict_refuses_a_band_for_one_model_and_an_output_onto_its_input(run, tmp_path):
    table = feature_table(tmp_path / "next.csv", slice(N_FIT, N_ROWS))
    # The band option was ignored for a model without intervals.
    _expect_error(["predict", run["out"] / MODEL, table, "--out", tmp_path / "o.csv",
                   "--band", "fixed"], "--band", "ensemble")
    # --force replaced the table being read with the predictions.
    before = table.read_bytes()
    _expect_error(["predict", run["out"] / MODEL, table, "--out", table, "--force"],
                  "next.csv", "the table it reads")
    assert table.read_bytes() == before


def test_predict_needs_the_feature_columns(run, tmp_path):
    table = read_table(run["table"])
    reduced = tmp_path / "reduced.csv"
    frame = table.X.drop(columns=["p_leun"]).assign(q_kalkofen=table.y)
    frame.to_csv(reduced)
    _expect_error(["predict", run["out"] / "adaptive_lstm_model.pth", reduced,
                   "--out", tmp_path / "p.xlsx"], "p_leun")


def test_usage_errors_exit_with_2(capsys):
    assert cli.main(["run"]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["--version"]) == 0


def test_python_dash_m_reports_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sktlag", "run", str(tmp_path / "missing.csv"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("sktlag: error: ")
    assert "missing.csv" in result.stderr and "Traceback" not in result.stderr


def test_a_reader_that_leaves_the_output_does_not_stop_the_run(tmp_path):
    # `sktlag run ... | head -1`: once the reader has gone, every write to the pipe
    # fails; the fit and its artifacts must not go with it.
    class LeavingReader(io.StringIO):
        def write(self, text):
            if "\n" in self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    table = research_table(tmp_path / "basin.csv", slice(0, N_ROWS))
    stderr = io.StringIO()
    with contextlib.redirect_stdout(LeavingReader()), contextlib.redirect_stderr(stderr):
        code = cli.main(["run", str(table), "--out", str(tmp_path / "o"), *FAST_OPTIONS])
    assert code == 0, stderr.getvalue()
    assert (tmp_path / "o" / ARTIFACT_FILES["model"]).exists()
    assert "Broken pipe" not in stderr.getvalue()


def test_a_reader_gone_before_the_first_line_leaves_no_error_at_exit(run, tmp_path):
    # What is still buffered when the command ends is written at exit, past any
    # handler of the command's own, where a closed pipe printed "Exception ignored".
    table = feature_table(tmp_path / "next.csv", slice(N_FIT, N_ROWS))
    out = tmp_path / "o.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sktlag", "predict", str(run["out"] / MODEL), str(table),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONUNBUFFERED": ""},
    )
    proc.stdout.close()  # the reader leaves before the command prints
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Exception ignored" not in stderr and "BrokenPipe" not in stderr
    assert out.exists()


def test_ctrl_c_during_training_still_writes_the_artifacts(run, tmp_path, monkeypatch):
    def interrupt_after_two_epochs(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does inside the training loop

    monkeypatch.setattr(cli.EpochProgressBar, "on_epoch_end", interrupt_after_two_epochs)
    out = tmp_path / "out"
    code, stdout, stderr = run_main(["run", run["table"], "--out", out, *FAST_OPTIONS])
    # Non-zero, so that a script never takes the interrupted fit for a finished one.
    assert code == 130, stderr
    assert "training interrupted" in stderr
    assert "training was interrupted" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "lstm_architecture_evolution.json").read_text())
    assert metrics["epochs_trained"] == 2
    # Every artifact says so, or a reader of one file takes the fit for a finished one.
    assert metrics["interrupted"] is True and summary["interrupted"] is True
    assert summary["stop_reason"] == "interrupted"
    assert "(INTERRUPTED)" in (out / "adaptive_lstm_architecture.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACT_FILES.values())


def test_ctrl_c_before_the_first_epoch_ends_says_the_network_is_untrained(
        run, tmp_path, monkeypatch):
    def interrupt_the_first_epoch(self, net, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.EpochProgressBar, "on_epoch_begin", interrupt_the_first_epoch,
                        raising=False)
    out = tmp_path / "out"
    code, _, stderr = run_main(["run", run["table"], "--out", out, *FAST_OPTIONS])
    assert code == 130, stderr
    # "the best state so far" said of a network that never trained.
    assert "hold the untrained network (no epoch completed)" in stderr
    assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 0


def test_ctrl_c_while_writing_leaves_no_directory(run, tmp_path, monkeypatch):
    from sktlag import report

    def interrupt(model):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_loss", interrupt)
    code, _, stderr = run_main(["run", run["table"], "--out", tmp_path / "out", "--quiet",
                                *FAST_OPTIONS])
    assert code == 130 and "interrupted" in stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_target_option(tmp_path):
    table = research_table(tmp_path / "gappy.csv", slice(0, N_ROWS))
    frame = pd.read_csv(table)
    n_fit = int(0.8 * N_ROWS)
    fit_gaps, test_gaps = [20, 21, 150], [n_fit + 30, n_fit + 31]
    frame.loc[fit_gaps + test_gaps, "q_kalkofen"] = np.nan
    frame.to_csv(table, index=False)
    code, _, stderr = run_main(["run", table, "--out", tmp_path / "a", *FAST_OPTIONS])
    assert code == 2 and "q_kalkofen" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()

    out = tmp_path / "b"
    code, stdout, stderr = run_main(["run", table, "--out", out, "--missing-target", "mask",
                                     *FAST_OPTIONS])
    assert code == 0, stderr
    # The fit counts the gaps it was given (the test rows are not part of the fit).
    assert f"{len(fit_gaps)} missing target values masked" in stdout
    model, _ = load_model(out / "adaptive_lstm_model.pth", return_metadata=True)
    assert model[-1].n_masked_targets_ == len(fit_gaps)

    # Every test day is predicted, the unobserved ones too.
    predictions = pd.read_excel(out / "predictions.xlsx", index_col="date")
    observed = frame["q_kalkofen"].to_numpy()[n_fit:]
    assert len(predictions) == N_ROWS - n_fit
    assert np.isfinite(predictions["predicted"]).all()
    np.testing.assert_array_equal(np.isnan(predictions["observed"]), np.isnan(observed))

    # The scores count and use only the observed days: recomputed here from the
    # predictions, an NSE over the gaps would be NaN and one over other rows would differ.
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["periods"]["test"]
    assert test["n_rows"] == N_ROWS - n_fit
    assert test["n_rows"] - test["n_scored"] == len(test_gaps)
    seen = predictions.dropna()
    obs, sim = seen["observed"].to_numpy(), seen["predicted"].to_numpy()
    scores = test["metrics"]["q_kalkofen"]
    nse = 1 - np.sum((obs - sim) ** 2) / np.sum((obs - obs.mean()) ** 2)
    assert scores["nse"] == pytest.approx(nse, rel=1e-9)
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean((obs - sim) ** 2)), rel=1e-9)
    for name in ("kge", "kge_prime", "log_nse", "fhv"):
        assert np.isfinite(scores[name]), name

    # Training and validation windows that end on a gap are left out, not scored as NaN.
    for period in ("train", "validation"):
        entry = metrics["periods"][period]
        assert entry["n_scored"] == entry["n_rows"] > 0, period
        assert np.isfinite(entry["metrics"]["q_kalkofen"]["nse"]), period
    lookback = int(FAST_OPTIONS[FAST_OPTIONS.index("--lookback") + 1])
    windows_on_observed_days = n_fit - (lookback - 1) - len(fit_gaps)
    split = metrics["metadata"]["split"]
    assert (split["training_windows"] + split["validation_windows"] + lookback - 1
            == windows_on_observed_days)
    n_test = N_ROWS - n_fit
    assert f", {n_test} days, {n_test - len(test_gaps)} observed):" in stdout


def test_a_test_period_without_observations_says_so(tmp_path):
    table = research_table(tmp_path / "unobserved.csv", slice(0, N_ROWS))
    frame = pd.read_csv(table)
    frame.loc[int(0.8 * N_ROWS):, "q_kalkofen"] = np.nan
    frame.to_csv(table, index=False)
    code, stdout, stderr = run_main(["run", table, "--out", tmp_path / "out",
                                     "--missing-target", "mask", *FAST_OPTIONS])
    assert code == 0, stderr
    block = stdout.split("test metrics", 1)[1].splitlines()
    assert block[0].endswith(", 80 days, 0 observed):")
    assert block[1] == "  none: no test day is observed"


# A run that trains for minutes unless stopped: the research preset's patience of 150
# epochs per architecture on a tiny network.
LONG_OPTIONS = ["--preset", "research", "--max-layers", "3", "--max-epochs", "100000",
                "--lookback", "5", "--hidden-size", "4"]


def _default_sigint():
    # A shell without job control starts background commands with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the command Ctrl-C back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_training_still_writes_the_artifacts(run, tmp_path, signum, status):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "out"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "sktlag", "run", str(run["table"]), "--out", str(out),
             *LONG_OPTIONS],
            stdout=stdout, stderr=stderr, cwd=root, env=env, preexec_fn=_default_sigint,
        )
        try:
            # The epoch table's header appears once the first epoch has completed.
            deadline = time.monotonic() + 300
            while "train_loss" not in stdout_path.read_text():
                assert process.poll() is None, stderr_path.read_text()[-2000:]
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.2)
            process.send_signal(signum)
            code = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    err = stderr_path.read_text()
    assert code == status, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "lstm_architecture_evolution.json").read_text())
    assert metrics["interrupted"] is True and summary["interrupted"] is True
    assert summary["stop_reason"] == "interrupted"
    assert metrics["epochs_trained"] >= 1
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACT_FILES.values())


def test_sigterm_is_handled_during_the_command_only(tmp_path, monkeypatch):
    def previous(signum, frame):
        pass

    during = []

    def load_data(args):
        during.append(signal.getsignal(signal.SIGTERM))
        raise ValueError("no data")

    monkeypatch.setattr(cli, "_load_data", load_data)
    original = signal.signal(signal.SIGTERM, previous)
    try:
        _expect_error(["run", "--out", tmp_path / "o"], "no data")
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)
    assert during and during[0] not in (previous, signal.SIG_DFL, signal.SIG_IGN)


# ---------------------------------------------------------------------- target detection
def named_lahn_table(path: Path, columns: dict, rows: slice) -> Path:
    """Lahn rows as a tidy CSV: a Date column and the given {new name: Lahn column}."""
    gauges = ["q_kalkofen", "q_marburg", "q_leun", "q_dillenburg"]
    frame = load_lahn(as_frame=True, target=gauges).frame.iloc[rows]
    table = pd.DataFrame({new: frame[old].to_numpy() for new, old in columns.items()},
                         index=pd.Index(frame.index.strftime("%Y-%m-%d"), name="Date"))
    table.to_csv(path)
    return path


def test_run_takes_the_column_named_discharge_as_target(tmp_path):
    # Evaporation (here: temperature), precipitation, discharge: Qo is the target,
    # although E0 is the first value column.
    table = named_lahn_table(tmp_path / "basin.csv",
                             {"E0": "t_kalkofen", "P": "p_kalkofen", "Qo": "q_kalkofen"},
                             slice(0, 120))
    out = tmp_path / "o"
    code, stdout, stderr = run_main(["run", table, "--out", out, "--quiet", *FAST_OPTIONS,
                                     "--max-epochs", "2"])
    assert code == 0, stderr
    assert "target: Qo (the one column whose name means discharge; --target chooses " \
        "another)" in stdout
    metadata = json.loads((out / "metrics.json").read_text())["metadata"]
    assert metadata["target_names"] == ["Qo"]
    assert metadata["feature_names"] == ["E0", "P"]


@pytest.mark.parametrize(
    "columns, fragments",
    [
        ({"q_kalkofen": "q_kalkofen", "p_leun": "p_leun", "q_leun": "q_leun"},
         ["several column names mean discharge: 'q_kalkofen', 'q_leun';"]),
        ({"E0": "t_kalkofen", "P": "p_kalkofen", "level": "q_kalkofen"},
         ["no column name means discharge", "['E0', 'P', 'level']"]),
    ],
    ids=["several", "none"],
)
def test_run_without_a_clear_target_asks_for_target(tmp_path, columns, fragments):
    table = named_lahn_table(tmp_path / "basin.csv", columns, slice(0, 60))
    _expect_error(["run", table, "--out", tmp_path / "o"], "basin.csv", "--target",
                  *fragments)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- forecasting
MODEL = "adaptive_lstm_model.pth"


def table_rows(rows: slice) -> pd.DataFrame:
    """The feature columns of ``rows`` of the Lahn data, as the model reads them."""
    frame = load_lahn(as_frame=True).frame.iloc[rows]
    return frame[[c for c in frame.columns if c.startswith(("p_", "t_"))]]


def feature_table(path: Path, rows: slice, *, target: str | None = None) -> Path:
    """Lahn rows in the tidy layout: dates and the model's inputs (p_*, t_*), no discharge.

    ``target`` adds q_kalkofen under that name.
    """
    frame = load_lahn(as_frame=True).frame.iloc[rows]
    table = frame[[c for c in frame.columns if c.startswith(("p_", "t_"))]].copy()
    if target is not None:
        table.insert(0, target, frame["q_kalkofen"])
    table.index = table.index.strftime("%Y-%m-%d").rename("date")
    table.to_csv(path)
    return path


def reference_predictions(run) -> pd.Series:
    """The test-period predictions of the run (rows 320 .. 399, real warm-up)."""
    return pd.read_excel(run["out"] / "predictions.xlsx", index_col="date")["predicted"]


def predict_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col="date", parse_dates=True)


N_FIT = int(0.8 * N_ROWS)


def test_predict_a_table_without_observations(run, tmp_path):
    table = feature_table(tmp_path / "future.csv", slice(N_FIT, N_ROWS))
    out = tmp_path / "forecast.csv"
    code, stdout, stderr = run_main(["predict", run["out"] / MODEL, table, "--out", out])
    assert code == 0, stderr
    # The table continues the training period: the stored warm-up days apply, no warning.
    assert stderr == ""
    assert "observed: none" in stdout and "80 predictions" in stdout
    forecast = predict_csv(out)
    assert list(forecast.columns) == ["predicted"]
    reference = reference_predictions(run)
    assert list(forecast.index) == list(reference.index)
    np.testing.assert_allclose(forecast["predicted"], reference, rtol=1e-12)


def test_predict_names_a_miscount_of_observed_columns(tmp_path):
    from sktlag import TLAGRegressor, save_model

    frame = load_lahn(as_frame=True).frame.iloc[:N_ROWS]
    inputs = frame[[c for c in frame.columns if c.startswith(("p_", "t_"))]]
    # Two outputs, saved from Python without the names of the targets.
    model = TLAGRegressor(max_epochs=1, lookback=5, hidden_size=4, max_layers=1,
                          random_state=0).fit(inputs, np.column_stack(
                              [frame["q_kalkofen"], frame["q_kalkofen"].shift(1).bfill()]))
    path = save_model(model, tmp_path / "two.pth")
    table = feature_table(tmp_path / "next.csv", slice(N_FIT, N_ROWS), target="Q")
    _expect_error(["predict", path, table, "--out", tmp_path / "o.csv"],
                  "1 column (Q) read as observed discharge", "predicts 2 outputs",
                  "--target names")
    assert not (tmp_path / "o.csv").exists()


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory):
    """A model of two discharges (Kalkofen's, and Kalkofen's of the day before), saved
    with their names, and a table of the days after its fit with both observed."""
    from sktlag import TLAGRegressor, save_model

    folder = tmp_path_factory.mktemp("two_outputs")
    frame = load_lahn(as_frame=True).frame.iloc[:N_ROWS].copy()
    frame["q_lagged"] = frame["q_kalkofen"].shift(1).bfill()
    inputs = frame[[c for c in frame.columns if c.startswith(("p_", "t_"))]]
    names = ["q_kalkofen", "q_lagged"]
    model = TLAGRegressor(max_epochs=1, lookback=5, hidden_size=4, max_layers=1,
                          random_state=0).fit(inputs.iloc[:N_FIT], frame[names].iloc[:N_FIT])
    path = save_model(model, folder / "two.pth", metadata={"target_names": names})
    table = frame[[*names, *inputs.columns]].iloc[N_FIT:].copy()
    table.index = table.index.strftime("%Y-%m-%d").rename("date")
    return path, table, model.predict(inputs.iloc[N_FIT:])


def test_predict_matches_named_targets_to_the_models_outputs(two_outputs, tmp_path):
    path, table, expected = two_outputs
    both = tmp_path / "both.csv"
    table.to_csv(both)
    # Named in another order than the model's, the columns are matched by name.
    out = tmp_path / "swapped.csv"
    code, _, stderr = run_main(["predict", path, both, "--out", out,
                                "--target", "q_lagged", "q_kalkofen"])
    assert code == 0, stderr
    written = predict_csv(out)
    np.testing.assert_allclose(written["predicted_q_kalkofen"], expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(written["predicted_q_lagged"], expected[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(written["observed_q_lagged"], table["q_lagged"])
    # A model's name given as the observed column of another output is refused.
    _expect_error(["predict", path, both, "--out", tmp_path / "o.csv", "--target",
                   "q_lagged", "p_leun"], "q_lagged", "output 2")
    # A named column the table lacks is an error, as before.
    _expect_error(["predict", path, both, "--out", tmp_path / "o.csv", "--target",
                   "q_kalkofen", "q_lagd"], "no target column(s) ['q_lagd']")


def test_predict_a_table_with_some_of_the_models_targets(two_outputs, tmp_path):
    path, table, expected = two_outputs
    partial = tmp_path / "kalkofen_only.csv"
    table.drop(columns="q_lagged").to_csv(partial)
    out = tmp_path / "o.csv"
    code, stdout, stderr = run_main(["predict", path, partial, "--out", out])
    assert code == 0, stderr
    assert "q_lagged" in stdout and "not in the table" in stdout
    written = predict_csv(out)
    np.testing.assert_allclose(written["predicted_q_lagged"], expected[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(written["observed_q_kalkofen"], table["q_kalkofen"])
    assert written["observed_q_lagged"].isna().all()


def test_predict_reads_the_columns_of_a_pipeline_fitted_on_a_frame(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor, save_model

    frame = load_lahn(as_frame=True).frame.iloc[:N_ROWS]
    inputs = frame[[c for c in frame.columns if c.startswith(("p_", "t_"))]]
    # No set_output: the scaler hands the regressor an array without names.
    pipe = make_pipeline(StandardScaler(), TLAGRegressor(
        max_epochs=1, lookback=5, hidden_size=4, max_layers=1, random_state=0))
    pipe.fit(inputs.iloc[:N_FIT], frame["q_kalkofen"].iloc[:N_FIT])
    assert not hasattr(pipe[-1], "feature_names_in_")
    path = save_model(pipe, tmp_path / "pipe.pth")
    table = feature_table(tmp_path / "next.csv", slice(N_FIT, N_ROWS))
    out = tmp_path / "o.csv"
    code, _, stderr = run_main(["predict", path, table, "--out", out,
                                "--history", feature_table(tmp_path / "before.csv",
                                                           slice(0, N_FIT))])
    assert code == 0, stderr
    expected = pipe.predict(inputs)[N_FIT:]
    np.testing.assert_allclose(predict_csv(out)["predicted"], expected, rtol=1e-6)


def test_predict_finds_a_sheet_named_by_digits(run, tmp_path):
    csv = feature_table(tmp_path / "future.csv", slice(N_FIT, N_ROWS))
    book = tmp_path / "years.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"note": ["not this one"]}).to_excel(writer, sheet_name="2019")
        pd.read_csv(csv).to_excel(writer, sheet_name="2020", index=False)
    out = tmp_path / "forecast.csv"
    code, _, stderr = run_main(["predict", run["out"] / MODEL, book, "--sheet", "2020",
                                "--out", out])
    assert code == 0, stderr
    np.testing.assert_allclose(predict_csv(out)["predicted"], reference_predictions(run),
                               rtol=1e-12)


def test_predict_with_a_history_table_or_warmup_days(run, tmp_path):
    reference = reference_predictions(run).iloc[20:]  # rows 340 .. 399
    start = N_FIT + 20
    future = feature_table(tmp_path / "future.csv", slice(start, N_ROWS))
    history = feature_table(tmp_path / "history.csv", slice(start - 10, start))
    both = feature_table(tmp_path / "both.csv", slice(N_FIT, N_ROWS))
    runs = {
        "history": ["--history", history],
        "warmup": ["--warmup-days", "20"],
    }
    for name, options in runs.items():
        out = tmp_path / f"forecast_{name}.csv"
        table = future if name == "history" else both
        code, stdout, stderr = run_main(["predict", run["out"] / MODEL, table, "--out", out,
                                         *options])
        assert code == 0, stderr
        assert stderr == "", name
        assert "warm-up: " in stdout and "60 predictions" in stdout
        forecast = predict_csv(out)
        assert list(forecast.index) == list(reference.index), name
        np.testing.assert_allclose(forecast["predicted"], reference, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("n_history", [0, 2])
def test_predict_with_too_little_history_warns_about_padding(run, tmp_path, n_history):
    start = N_FIT + 20
    table = feature_table(tmp_path / "future.csv", slice(start, N_ROWS))
    options = []
    if n_history:
        history = feature_table(tmp_path / "history.csv", slice(start - n_history, start))
        options = ["--history", history]
    out = tmp_path / "forecast.csv"
    code, _, stderr = run_main(["predict", run["out"] / MODEL, table, "--out", out, *options])
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sktlag: warning: "), stderr
    padded = 4 - n_history
    for fragment in (f"{n_history} history day(s) before", "lookback of 5 days needs 4",
                     f"the first {padded} prediction(s) read padding", "--history"):
        assert fragment in lines[0]
    forecast = predict_csv(out)["predicted"].to_numpy()
    reference = reference_predictions(run).iloc[20:].to_numpy()
    np.testing.assert_allclose(forecast[padded:], reference[padded:], rtol=1e-5)
    assert not np.allclose(forecast[:padded], reference[:padded], rtol=1e-5)


def test_predict_writes_observed_values_when_the_table_has_them(run, tmp_path):
    table = feature_table(tmp_path / "observed.csv", slice(N_FIT, N_ROWS), target="Qobs")
    out = tmp_path / "p.csv"
    code, stdout, stderr = run_main(["predict", run["out"] / MODEL, table, "--out", out,
                                     "--warmup-days", "20", "--target", "Qobs"])
    assert code == 0, stderr
    assert "nse" in stdout
    written = predict_csv(out)
    assert list(written.columns) == ["observed", "predicted"]
    frame = load_lahn(as_frame=True).frame
    np.testing.assert_array_equal(written["observed"],
                                  frame["q_kalkofen"].iloc[N_FIT + 20:N_ROWS])
    # A template whose discharge column is left empty for the days to forecast.
    template = tmp_path / "template.csv"
    pd.read_csv(table).assign(Qobs=np.nan).to_csv(template, index=False)
    code, stdout, stderr = run_main(["predict", run["out"] / MODEL, template, "--out",
                                     tmp_path / "t.csv", "--target", "Qobs"])
    assert code == 0, stderr
    written = predict_csv(tmp_path / "t.csv")
    assert list(written.columns) == ["observed", "predicted"]
    assert written["observed"].isna().all() and "nse" not in stdout


def test_predict_scores_leave_out_the_days_predicted_from_padding(run, tmp_path):
    # Without history the first lookback - 1 = 4 days read padding: the printed NSE
    # counted their errors, which judge the padding, not the model.
    table = feature_table(tmp_path / "observed.csv", slice(N_FIT + 20, N_ROWS), target="Qobs")
    out = tmp_path / "p.csv"
    code, stdout, stderr = run_main(["predict", run["out"] / MODEL, table, "--out", out,
                                     "--target", "Qobs"])
    assert code == 0 and "the first 4 prediction(s) read padding" in stderr, stderr
    written = predict_csv(out)
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output"))
    printed = float(lines[header + 1].split()[lines[header].split().index("nse")])
    expected = nse(written["observed"].iloc[4:], written["predicted"].iloc[4:])
    assert printed == pytest.approx(expected, abs=6e-4)
    assert nse(written["observed"], written["predicted"]) != pytest.approx(expected, abs=6e-4)


def _forecast_error(run, tmp_path, table, options, *fragments):
    out = tmp_path / "forecast.csv"
    line = _expect_error(["predict", run["out"] / MODEL, table, "--out", out, *options],
                         *fragments)
    assert not out.exists()
    return line


def test_predict_errors_for_unusable_forecast_tables(run, tmp_path):
    start = N_FIT + 20
    future = feature_table(tmp_path / "future.csv", slice(start, N_ROWS))
    dates = load_lahn(as_frame=True).frame.index
    day = lambda row: f"{dates[row]:%Y-%m-%d}"  # noqa: E731

    reduced = tmp_path / "reduced.csv"
    pd.read_csv(future).drop(columns=["p_leun", "t_marburg"]).to_csv(reduced, index=False)
    _forecast_error(run, tmp_path, reduced, [], "reduced.csv", "'p_leun'", "'t_marburg'")

    gap = tmp_path / "gap.csv"
    pd.read_csv(future).drop(index=[5, 6]).to_csv(gap, index=False)
    _forecast_error(run, tmp_path, gap, [], "gap.csv", "2 day(s) missing",
                    f"{day(start + 5)}, {day(start + 6)}")

    repeated = tmp_path / "repeated.csv"
    frame = pd.read_csv(future)
    pd.concat([frame.iloc[:4], frame.iloc[3:]]).to_csv(repeated, index=False)
    _forecast_error(run, tmp_path, repeated, [], "repeated.csv", "repeated dates",
                    day(start + 3))

    early = feature_table(tmp_path / "early.csv", slice(start - 10, start - 1))
    _forecast_error(run, tmp_path, future, ["--history", early], "early.csv",
                    f"ends on {day(start - 2)}", f"must end on {day(start - 1)}",
                    f"starts ({day(start)})")

    _forecast_error(run, tmp_path, future, ["--history", tmp_path / "nope.csv"], "nope.csv")
    # A target named on the command line must be a column (the model's own may be absent).
    _forecast_error(run, tmp_path, future, ["--target", "q_kalkofn"], "future.csv",
                    "'q_kalkofn'")
    # As many targets as the model has outputs.
    observed = feature_table(tmp_path / "observed.csv", slice(start, N_ROWS), target="q")
    pd.read_csv(observed).assign(q_copy=lambda t: t["q"]).to_csv(observed, index=False)
    _forecast_error(run, tmp_path, observed, ["--target", "q", "q_copy"],
                    "--target names 2 columns (q, q_copy)", "predicts 1 output")
    _forecast_error(run, tmp_path, future, ["--warmup-days", "60"],
                    "--warmup-days 60 leaves no rows to predict", "60 rows")


def test_predict_warmup_options_are_checked(run, tmp_path):
    future = feature_table(tmp_path / "future.csv", slice(N_FIT, N_ROWS))
    base = ["predict", run["out"] / MODEL, future, "--out", tmp_path / "f.csv"]
    for options, fragment in [(["--warmup-days", "0"], "at least 1"),
                              (["--warmup-days", "5", "--history", future], "not allowed")]:
        code, _, stderr = run_main([*base, *options])
        assert code == 2 and fragment in stderr
    assert not (tmp_path / "f.csv").exists()


# ---------------------------------------------------------------- ensembles
OTHER_SCALE = "spread" if TLAGEnsemble().scale == "flow" else "flow"
OTHER_CLASSES = None if TLAGEnsemble().band_classes else "high_flow"

@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_ensemble")
    table = research_table(base / "lahn.csv", slice(0, N_ROWS))
    out = base / "out"
    # Not the ensemble's default scale: the option reaches the ensemble.
    code, stdout, stderr = run_main(["run", table, "--out", out, *FAST_OPTIONS,
                                     "--members", "2", "--jobs", "1", "--interval-scale",
                                     OTHER_SCALE, "--band-classes", OTHER_CLASSES or "none"])
    return {"base": base, "table": table, "out": out, "code": code, "stdout": stdout,
            "stderr": stderr}


def test_run_with_members_writes_intervals(ensemble_run):
    assert ensemble_run["code"] == 0, ensemble_run["stderr"]
    out = ensemble_run["out"]
    model = load_model(out / MODEL)
    ensemble = model[-1]
    assert len(ensemble.estimators_) == 2
    stdout = ensemble_run["stdout"]
    assert "member 2:" in stdout
    assert ensemble.scale == OTHER_SCALE
    assert ensemble.band_classes == OTHER_CLASSES
    classes_said = "; the days forecast above the high-flow threshold have bands of their own"
    assert (classes_said in stdout) == (OTHER_CLASSES is not None)
    text = (out / "adaptive_lstm_architecture.txt").read_text()
    assert ("bands of their own for the days forecast above" in text) == (
        OTHER_CLASSES is not None)
    intervals = json.loads((out / "metrics.json").read_text())["periods"]["test"]["intervals"]
    assert intervals["band_classes"] == OTHER_CLASSES
    # Discharge: the band never reaches below zero.
    assert ensemble.min_value == 0.0
    assert (f"fixed band (calibrated on the validation windows, scale {OTHER_SCALE}, never "
            f"below 0{classes_said if OTHER_CLASSES else ''}):") in stdout
    # The table shows the band of a forecaster, who observes each day before the next.
    phi = ensemble.error_coefficient_[0]
    assert 0 < phi <= 1
    assert (f"adaptive band (each day adapts to the observations before it, rate "
            f"{ADAPT_RATE:g}; centred on the forecast corrected by the last observed error, "
            f"times {phi:.2f} a day) [predictions.xlsx]:") in stdout
    assert re.search(r"q_kalkofen +90% coverage [\d.]+% \(high flows ([\d.]+%|n/a)\), width "
                     r"[\d.]+ test std, CRPS [\d.e+-]+; coverage at 50/80/90/95 %: ", stdout)
    table = pd.read_excel(out / "predictions.xlsx", index_col="date")
    assert list(table.columns) == ["observed", "predicted", "corrected", "lower", "upper"]
    # Signed calibration scores may shift the whole interval off the mean (a bias seen on
    # the validation days): only its order is certain.
    assert (table["lower"] <= table["upper"]).all() and (table["lower"] >= 0).all()
    inside = (table["observed"] >= table["lower"]) & (table["observed"] <= table["upper"])
    metrics = json.loads((out / "metrics.json").read_text())
    intervals = metrics["periods"]["test"]["intervals"]
    assert intervals["calibration"] == "validation" and intervals["adapt_rate"] == ADAPT_RATE
    assert intervals["scale"] == OTHER_SCALE and intervals["min_value"] == 0
    assert intervals["shown"] == "adaptive"
    assert intervals["error_coefficient"] == {"q_kalkofen": pytest.approx(phi)}
    assert (f"adaptive band: centred on the mean plus the last observed error times "
            f"{phi:.3f} per day since it") in (out / "adaptive_lstm_architecture.txt").read_text()
    scores = intervals["bands"]["adaptive"]["q_kalkofen"]
    assert scores["coverage"] == pytest.approx(inside.mean())
    assert scores["mean_width"] == pytest.approx((table["upper"] - table["lower"]).mean())
    assert list(scores["levels"]) == ["0.5", "0.8", "0.9", "0.95"]
    # The fixed band of the test days, as calibrated at fit time.
    X_test = model[:-1].transform(table_rows(slice(N_FIT, N_ROWS)))
    lower, upper = ensemble.predict_interval(X_test, 0.9)
    fixed = intervals["bands"]["fixed"]["q_kalkofen"]
    assert fixed["coverage"] == pytest.approx(
        np.mean((table["observed"] >= lower) & (table["observed"] <= upper)))
    assert metrics["n_members"] == 2 and len(metrics["n_layers"]) == 2


def test_only_a_discharge_target_gets_bands_that_never_reach_below_zero():
    from sktlag.cli import _lowest_value

    assert _lowest_value(pd.Series([1.0], name="Q [m3/s]")) == 0.0
    assert _lowest_value(pd.DataFrame({"q_up": [1.0], "q_down": [2.0]})) == 0.0
    assert _lowest_value(pd.Series([1.0], name="stage_cm")) is None
    # Per output where only some targets are discharge (all or nothing before).
    assert _lowest_value(pd.DataFrame({"q_up": [1.0], "temperature": [2.0]})) == [0.0, -np.inf]
    # A discharge below 0 (a net flow, an anomaly) is a value the band must reach: a
    # floor at 0 cut the bands of such a record to [0, 0] on its negative days.
    assert _lowest_value(pd.Series([1.0, -0.5, np.nan], name="Q")) is None
    assert _lowest_value(pd.DataFrame({"q_up": [1.0, 2.0], "q_net": [1.0, -2.0]})) == [
        0.0, -np.inf]


def test_predict_with_an_ensemble_writes_its_intervals(ensemble_run, tmp_path):
    # The test period with its observed discharge: the band adapts as in the run.
    table = feature_table(tmp_path / "test.csv", slice(N_FIT, N_ROWS), target="q_kalkofen")
    out = tmp_path / "forecast.csv"
    code, _, stderr = run_main(["predict", ensemble_run["out"] / MODEL, table, "--out", out])
    assert code == 0, stderr
    forecast = predict_csv(out)
    reference = pd.read_excel(ensemble_run["out"] / "predictions.xlsx", index_col="date")
    assert list(forecast.columns) == ["observed", "predicted", "corrected", "lower", "upper"]
    for column in forecast.columns:
        np.testing.assert_allclose(forecast[column], reference[column], rtol=1e-12)
    # Days without observations: the band fixed at fit time.
    future = feature_table(tmp_path / "future.csv", slice(N_FIT, N_ROWS))
    code, stdout, stderr = run_main(["predict", ensemble_run["out"] / MODEL, future, "--out",
                                     tmp_path / "future_forecast.csv"])
    assert code == 0, stderr
    assert "fixed, calibrated on" in stdout and "(no observed discharge to adapt to)" in stdout
    ensemble = load_model(ensemble_run["out"] / MODEL)
    lower, _ = ensemble[-1].predict_interval(
        ensemble[:-1].transform(table_rows(slice(N_FIT, N_ROWS))), 0.9)
    np.testing.assert_allclose(predict_csv(tmp_path / "future_forecast.csv")["lower"], lower,
                               rtol=1e-12)


def _predict_with_each_band(model, table, history, folder) -> dict[str, tuple[Path, str]]:
    """``sktlag predict`` with ``--band adaptive`` and ``fixed``: per band the file
    written and what the command said (stdout, then stderr)."""
    runs = {}
    for band in ("adaptive", "fixed"):
        out = folder / f"{band}.csv"
        code, stdout, stderr = run_main(["predict", model, table, "--history", history,
                                         "--out", out, "--band", band])
        assert code == 0, stderr
        runs[band] = (out, stdout + stderr)
    return runs


def test_predict_adapts_an_ensembles_band_to_observed_history(ensemble_run, tmp_path):
    start = N_FIT
    future = feature_table(tmp_path / "future.csv", slice(start, N_ROWS))
    history = feature_table(tmp_path / "history.csv", slice(start - 60, start),
                            target="q_kalkofen")
    runs = _predict_with_each_band(ensemble_run["out"] / MODEL, future, history, tmp_path)
    outs = {band: out for band, (out, _) in runs.items()}
    for band, (_, said) in runs.items():
        assert f"band: 90%, {band}" in said
    said = run_main(["predict", ensemble_run["out"] / MODEL, future, "--history", history,
                     "--out", tmp_path / "again.csv"])[1]
    assert "adapts to the observed discharge of the days before it (56 observed days" in said
    assert (f"band: the last {N_ROWS - start} days follow the last observed day: each has "
            f"the band of a forecast as many days ahead (1 to {N_ROWS - start}; beyond 60 "
            "days, that of 60)") in said
    model = load_model(ensemble_run["out"] / MODEL)
    both = model[:-1].transform(table_rows(slice(start - 60, N_ROWS)))
    observed = np.r_[load_lahn(as_frame=True).frame["q_kalkofen"].to_numpy()[start - 60:start],
                     np.full(N_ROWS - start, np.nan)]
    observed[:4] = np.nan  # the first lookback - 1 history days read padding
    lower, upper = model[-1].predict_interval(both, 0.9, observed=observed)
    adaptive, fixed = predict_csv(outs["adaptive"]), predict_csv(outs["fixed"])
    np.testing.assert_allclose(adaptive["lower"], lower[60:], rtol=1e-10)
    np.testing.assert_allclose(adaptive["upper"], upper[60:], rtol=1e-10)
    # The same predictions; the band moved with what the history days showed.
    np.testing.assert_allclose(adaptive["predicted"], fixed["predicted"], rtol=1e-12)
    assert not np.allclose(adaptive["upper"] - adaptive["lower"], fixed["upper"] - fixed["lower"])


def test_a_short_history_after_the_fit_predicts_alike_with_either_band(ensemble_run, tmp_path):
    # The adaptive band predicted history and table as one frame (the fit's last days
    # before them), the fixed band padded before the history, and both warned of padding.
    future = feature_table(tmp_path / "future.csv", slice(N_FIT + 3, N_ROWS))
    history = feature_table(tmp_path / "history.csv", slice(N_FIT, N_FIT + 3),
                            target="q_kalkofen")
    runs = _predict_with_each_band(ensemble_run["out"] / MODEL, future, history, tmp_path)
    assert not any("read padding" in said for _, said in runs.values())
    outs = {band: out for band, (out, _) in runs.items()}
    whole = feature_table(tmp_path / "whole.csv", slice(N_FIT, N_ROWS))
    code, _, stderr = run_main(["predict", ensemble_run["out"] / MODEL, whole, "--out",
                                tmp_path / "whole_out.csv"])
    assert code == 0, stderr
    reference = predict_csv(tmp_path / "whole_out.csv")["predicted"].to_numpy()[3:]
    for band in outs:
        np.testing.assert_allclose(predict_csv(outs[band])["predicted"], reference, rtol=1e-6)


def test_predict_warns_when_the_history_discharge_is_read_from_padding(ensemble_run, tmp_path):
    # Four history days (lookback 5) that do not continue the fit: each is predicted
    # from padding, so the band cannot learn from their discharge.
    start = N_FIT + 20
    future = feature_table(tmp_path / "future.csv", slice(start, N_ROWS))
    history = feature_table(tmp_path / "history.csv", slice(start - 4, start),
                            target="q_kalkofen")
    code, _, stderr = run_main(["predict", ensemble_run["out"] / MODEL, future, "--history",
                                history, "--out", tmp_path / "out.csv"])
    assert code == 0, stderr
    assert ("sktlag: warning: the band does not learn from the discharge of the 4 history "
            "day(s)") in stderr and "give more than 4 history days" in stderr


def test_predict_adapts_to_the_table_when_the_history_has_no_discharge(ensemble_run, tmp_path):
    start = N_FIT
    table = feature_table(tmp_path / "days.csv", slice(start, N_ROWS), target="q_kalkofen")
    history = feature_table(tmp_path / "history.csv", slice(start - 20, start))
    out = tmp_path / "days_out.csv"
    code, stdout, stderr = run_main(["predict", ensemble_run["out"] / MODEL, table,
                                     "--history", history, "--out", out])
    assert code == 0, stderr
    assert f"({N_ROWS - start} observed days in the history and the table" in stdout
    model = load_model(ensemble_run["out"] / MODEL)
    both = model[:-1].transform(table_rows(slice(start - 20, N_ROWS)))
    observed = np.r_[np.full(20, np.nan),
                     load_lahn(as_frame=True).frame["q_kalkofen"].to_numpy()[start:N_ROWS]]
    lower, upper = model[-1].predict_interval(both, 0.9, observed=observed)
    written = pd.read_csv(out, index_col="date")
    np.testing.assert_allclose(written["lower"], lower[20:], rtol=1e-10)
    np.testing.assert_allclose(written["upper"], upper[20:], rtol=1e-10)


def test_predict_adapts_the_band_to_the_tables_own_observations(ensemble_run, tmp_path):
    table = feature_table(tmp_path / "days.csv", slice(N_FIT, N_ROWS), target="q_kalkofen")
    out = tmp_path / "days_out.csv"
    code, stdout, stderr = run_main(["predict", ensemble_run["out"] / MODEL, table,
                                     "--out", out])
    assert code == 0, stderr
    assert f"({N_ROWS - N_FIT} observed days in the history and the table" in stdout
    model = load_model(ensemble_run["out"] / MODEL)
    observed = load_lahn(as_frame=True).frame["q_kalkofen"].to_numpy()[N_FIT:N_ROWS]
    lower, upper = model[-1].predict_interval(model[:-1].transform(
        table_rows(slice(N_FIT, N_ROWS))), 0.9, observed=observed)
    written = pd.read_csv(out, index_col="date")
    np.testing.assert_allclose(written["lower"], lower, rtol=1e-10)
    np.testing.assert_allclose(written["upper"], upper, rtol=1e-10)
    # The command says how the band covered the observations: a direct count.
    inside = np.mean((observed >= lower) & (observed <= upper))
    assert f"90% band: coverage {inside:.1%} (high flows " in stdout
    # And how the band's centre, the corrected forecast, scored.
    corrected = model[-1].predict_corrected(model[:-1].transform(
        table_rows(slice(N_FIT, N_ROWS))), observed)
    np.testing.assert_allclose(written["corrected"], corrected, rtol=1e-10)
    said = stdout.split("corrected by the last observed error (the band's centre):\n")[1]
    header, row = said.splitlines()[:2]
    assert header.split()[1] == "nse"
    assert float(row.split()[1]) == pytest.approx(nse(observed, corrected), abs=6e-5)


@pytest.mark.parametrize("warmup_days", [None, 2])
def test_observations_of_days_read_from_padding_do_not_adapt_the_band(ensemble_run, tmp_path,
                                                                     warmup_days):
    # A table that does not continue the fit: its first lookback - 1 = 4 days are
    # predicted from padding (two warm-up days cover half of that), and their
    # observations would judge the padding, not the model.
    start = N_FIT + 30
    table = feature_table(tmp_path / "days.csv", slice(start, N_ROWS), target="q_kalkofen")
    out = tmp_path / "days_out.csv"
    extra = [] if warmup_days is None else ["--warmup-days", str(warmup_days)]
    code, stdout, stderr = run_main(["predict", ensemble_run["out"] / MODEL, table,
                                     "--out", out, *extra])
    assert code == 0, stderr
    assert f"({N_ROWS - start - 4} observed days in the history and the table" in stdout
    model = load_model(ensemble_run["out"] / MODEL)
    observed = load_lahn(as_frame=True).frame["q_kalkofen"].to_numpy()[start:N_ROWS].copy()
    observed[:4] = np.nan
    lower, upper = model[-1].predict_interval(model[:-1].transform(
        table_rows(slice(start, N_ROWS))), 0.9, observed=observed)
    written = pd.read_csv(out, index_col="date")
    skip = warmup_days or 0
    np.testing.assert_allclose(written["lower"], lower[skip:], rtol=1e-10)
    np.testing.assert_allclose(written["upper"], upper[skip:], rtol=1e-10)


def test_criterion_and_threshold_options_set_the_growth_rule():
    args = cli.build_parser().parse_args(
        ["run", "--out", "o", "--criterion", "holdout", "--threshold", "2", "--preset",
         "research"])
    params = cli._hyperparameters(args)
    assert params["derivative_criterion"] == "holdout"
    assert params["topo_derivative_threshold"] == 2.0
    # Without the options the preset's rule stays.
    plain = cli._hyperparameters(
        cli.build_parser().parse_args(["run", "--out", "o", "--preset", "research"]))
    assert plain["derivative_criterion"] == "raw"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--out", "o", "--criterion", "absolute"])


def test_run_prints_and_records_the_batch_size_it_used(run, tmp_path):
    # The fast preset names its batch size; --batch-size auto lets the record choose.
    assert re.search(r"batch size 128 \(for \d+ training windows: \d+ updates per epoch\)",
                     run["stdout"])
    out = tmp_path / "auto"
    code, stdout, stderr = run_main(["run", run["table"], "--out", out, *FAST_OPTIONS,
                                     "--max-epochs", "1", "--batch-size", "auto"])
    assert code == 0, stderr
    found = re.search(r"batch size (\d+) \(chosen by batch_size='auto' for (\d+) training "
                      r"windows: (\d+) updates per epoch\)", stdout)
    assert found, stdout
    size, windows, updates = map(int, found.groups())
    assert size == auto_batch_size(windows) and updates == updates_per_epoch(windows, size)
    summary = json.loads((out / ARTIFACT_FILES["architecture_json"]).read_text())
    assert summary["batch_size"] == size and summary["hyperparameters"]["batch_size"] == "auto"
    text = (out / ARTIFACT_FILES["architecture_txt"]).read_text()
    assert f"batch size: {size} windows (chosen by batch_size='auto')" in text
    code, _, stderr = run_main(["run", run["table"], "--out", tmp_path / "bad",
                                *FAST_OPTIONS, "--batch-size", "big"])
    assert code != 0 and "--batch-size" in stderr


def test_run_with_block_calibration_names_the_windows_a_member_trained_on(tmp_path):
    # Two processes: the members, fitted with batch_size="auto", come back pickled.
    table = research_table(tmp_path / "lahn.csv", slice(0, N_ROWS))
    out = tmp_path / "blocks"
    code, stdout, stderr = run_main(["run", table, "--out", out, *FAST_OPTIONS,
                                     "--max-epochs", "1", "--members", "2", "--jobs", "2",
                                     "--calibration", "blocks", "--batch-size", "auto"])
    assert code == 0, stderr
    split = json.loads((out / "metrics.json").read_text())["metadata"]["split"]
    # The first member leaves out the first of two blocks of the training windows.
    n_train = split["training_windows"]
    member = n_train - len(np.array_split(np.arange(n_train), 2)[0])
    size = auto_batch_size(member)
    assert (f"batch size {size} (chosen by batch_size='auto' for {member} training windows: "
            f"{updates_per_epoch(member, size)} updates per epoch)") in stdout
    # Each member's own count in the artifacts (the second leaves out the second block).
    blocks = np.array_split(np.arange(n_train), 2)
    assert split["member_training_windows"] == [n_train - len(b) for b in blocks]


def test_members_that_trained_on_different_windows_each_name_their_batch(tmp_path):
    # 2,817 training windows in two blocks of 1,409 and 1,408: the members train on
    # 1,408 and 1,409 windows, on either side of a step of batch_size="auto".
    table = research_table(tmp_path / "lahn.csv", slice(0, 4414))
    out = tmp_path / "blocks"
    code, stdout, stderr = run_main(["run", table, "--out", out, *FAST_OPTIONS,
                                     "--max-epochs", "1", "--members", "2", "--jobs", "1",
                                     "--calibration", "blocks", "--batch-size", "auto",
                                     "--quiet"])
    assert code == 0, stderr
    windows = json.loads((out / "metrics.json").read_text())["metadata"]["split"][
        "member_training_windows"]
    sizes = [auto_batch_size(n) for n in windows]
    assert sizes[0] != sizes[1], windows
    for i, (n, size) in enumerate(zip(windows, sizes, strict=True), start=1):
        assert re.search(
            rf"  member {i}: \d+ LSTM layers? \(best epoch \d+ of \d+\)\n    batch size "
            rf"{size} \(chosen by batch_size='auto' for {n} training windows: "
            rf"{updates_per_epoch(n, size)} updates per epoch\)", stdout), stdout


@pytest.mark.filterwarnings("default::sktlag.recipe.ShortRecordWarning")
def test_warnings_are_one_line_each_and_said_once(tmp_path):
    # Two members in two processes fit the same short record: its warning once, in the
    # command's own format, without Python's source line.
    table = research_table(tmp_path / "lahn.csv", slice(0, N_ROWS))
    code, _, stderr = run_main(["run", table, "--out", tmp_path / "o", *FAST_OPTIONS,
                                "--max-epochs", "1", "--members", "2", "--jobs", "2",
                                "--batch-size", "128"])
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("sktlag: warning: ") for line in lines), stderr
    assert sum("training windows in batches of 128" in line for line in lines) == 1


def test_block_calibration_needs_several_members(tmp_path):
    code, _, stderr = run_main(["run", "--out", tmp_path / "out", *FAST_OPTIONS,
                                "--calibration", "blocks"])
    assert code == 2 and "--calibration blocks needs --members 2 or more" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value"), [("--interval-scale", "flow"),
                                               ("--error-correction", "none"),
                                               ("--band-classes", "high_flow")])
def test_interval_options_need_several_members(tmp_path, option, value):
    code, _, stderr = run_main(["run", "--out", tmp_path / "out", *FAST_OPTIONS,
                                option, value])
    assert code == 2 and f"{option} needs --members 2 or more" in stderr
    assert not (tmp_path / "out").exists()


def test_an_adaptive_band_without_error_correction_is_centred_on_the_mean(tmp_path):
    table = research_table(tmp_path / "lahn.csv", slice(0, N_ROWS))
    code, stdout, stderr = run_main(["run", table, "--out", tmp_path / "out", *FAST_OPTIONS,
                                     "--members", "2", "--jobs", "1",
                                     "--error-correction", "none"])
    assert code == 0, stderr
    ensemble = load_model(tmp_path / "out" / MODEL)[-1]
    assert ensemble.error_correction is None
    np.testing.assert_array_equal(ensemble.corrected_scores_, ensemble.calibration_scores_)
    assert (f"adaptive band (each day adapts to the observations before it, rate "
            f"{ADAPT_RATE:g}) [predictions.xlsx]:") in stdout
    text = (tmp_path / "out" / "adaptive_lstm_architecture.txt").read_text()
    assert "adaptive band: centred on the mean\n" in text


def test_help_texts_print_percent_signs_once(capsys):
    for command in ("run", "predict"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "%%" not in text and "% " in text


def test_interval_lines_name_the_floor_of_each_output_that_has_one():
    scores = {"coverage": 0.9, "high_flow_coverage": 0.8, "relative_width": 1.0,
              "crps": 0.1, "levels": {"0.9": {"coverage": 0.9}}}
    intervals = {"nominal_coverage": 0.9, "calibration": "validation", "scale": "flow",
                 # -inf as metrics.json writes it
                 "min_value": [0.0, "-inf"], "adapt_rate": None, "shown": "fixed",
                 "bands": {"fixed": {"q_a": scores, "level": scores}}}
    assert cli._interval_lines(intervals)[0] == (
        "fixed band (calibrated on the validation windows, scale flow, q_a never below 0) "
        "[predictions.xlsx]:")


def test_interval_lines_mark_a_level_whose_band_spans_all_calibration_scores():
    def level(coverage, spans):
        return {"coverage": coverage, "spans_all_scores": spans}

    scores = {"coverage": 0.9, "high_flow_coverage": 0.8, "relative_width": 1.0,
              "crps": 0.1, "levels": {"0.5": level(0.5, False), "0.9": level(0.9, False),
                                      "0.95": level(0.91, True)}}
    intervals = {"nominal_coverage": 0.9, "calibration": "validation", "scale": "flow",
                 "min_value": None, "adapt_rate": None, "shown": "fixed",
                 "bands": {"fixed": {"q": scores}}}
    lines = cli._interval_lines(intervals)
    assert lines[1].endswith("coverage at 50/90/95 %: 50.0 / 90.0 / 91.0* %")
    assert lines[2] == ("  * too few calibration scores for this level: its band spans all "
                        "of them and covers less than nominal")
    # Files of sktlag 0.2.0 hold no such mark.
    for value in scores["levels"].values():
        del value["spans_all_scores"]
    assert len(cli._interval_lines(intervals)) == 2
