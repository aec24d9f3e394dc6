"""The NeuralHydrology comparison's own logic; runs without NeuralHydrology installed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import vs_neuralhydrology as V  # noqa: E402

from sktlag._record import FIT_END_RULES, STOP_RULES  # noqa: E402
from sktlag.windows import chronological_split, window_ends  # noqa: E402


@pytest.mark.parametrize("dates", [V.LAHN_SPLIT, V.QUICK_SPLIT])
@pytest.mark.parametrize("lookback", [1, 7, 60, 365])
def test_internal_validation_is_exactly_the_validation_period(lookback, dates):
    # The comparison is only fair if sktlag validates (and so picks its best state) on
    # the very days NeuralHydrology validates on.
    split = V._split(*dates.values())
    basin = V.lahn_basins(["leun"], split)[0]
    rows = V.fit_rows(basin, lookback)
    fraction = V.validation_fraction(rows, basin["target"], lookback, split["valid_start"])
    train, valid = chronological_split(window_ends(len(rows), lookback), fraction, lookback)
    assert rows.index[valid[0]] == split["valid_start"]
    assert rows.index[valid[-1]] == split["valid_end"] == rows.index[-1]
    # Training targets start on the training start where the series has the history
    # for it (quick split), else as soon as a full window fits (the series' first day).
    first_full = basin["frame"].index[lookback - 1]
    assert rows.index[train[0]] == max(split["train_start"], first_full)
    assert rows.index[train[-1]] < split["valid_start"]


def test_lahn_basins_never_use_discharge_as_input():
    split = V._split(*V.LAHN_SPLIT.values())
    for basin in V.lahn_basins(list(V.LAHN_BASINS), split):
        assert not any(name.startswith("q_") for name in basin["inputs"])
        assert list(basin["frame"].columns) == basin["inputs"] + [basin["target"]]


def test_nh_config_is_the_reference_setup(tmp_path):
    split = V._split(*V.LAHN_SPLIT.values())
    basin = V.lahn_basins(["kalkofen"], split)[0]
    settings = {"device": "cuda", "nh_hidden": 64, "nh_epochs": 100, "nh_seq_length": 365,
                "nh_verbose": False}
    config = V.nh_config(basin, 0, {"data_dir": tmp_path, "basin_file": tmp_path / "b.txt"},
                         tmp_path, settings)
    assert config["device"] == "cuda:0"
    assert config["train_end_date"] == "11/10/2009"
    assert config["validation_end_date"] == "07/10/2014"
    assert config["test_start_date"] == "08/10/2014"
    assert config["learning_rate"] == {0: 1e-3, 20: 5e-4}
    assert config["target_variables"] == ["q_kalkofen"]


def test_quick_run_without_neuralhydrology_writes_results(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_neuralhydrology.py"), "--quick",
         "--skip-nh", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    payload = json.loads((tmp_path / "vs_neuralhydrology.json").read_text())
    (run,) = payload["results"]["runs"]
    assert run["model"] == "sktlag" and run["n_test_days"] == 366
    # What the recipe chose and how growth ended are recorded with the scores.
    assert run["batch_size"] == 128 and run["lookback"] == 7
    # The estimator's parameters the run was given are kept with it.
    assert run["params"]["lookback"] == 7
    assert run["stop_rule"] in STOP_RULES + FIT_END_RULES
    assert sum(run["architecture_epochs"]) == run["epochs"]
    assert -1 < run["test_nse"] <= 1
    assert "| sktlag |" in (tmp_path / "vs_neuralhydrology.md").read_text()


@pytest.mark.parametrize("name", ["lahn_leun_last3y", "lahn_marburg_last5y"])
def test_set_basins_take_the_split_of_the_other_studies(name):
    import _basins

    (basin,) = V.set_basins([name], None)
    (truth,) = _basins.load_basins([name])
    masks = _basins.split_masks(truth)
    split = basin["split"]
    assert split["train_start"] == truth.dates[masks.train][0]
    assert split["train_end"] == truth.dates[masks.train][-1]
    assert split["valid_start"] == truth.dates[masks.valid][0]
    assert split["valid_end"] == truth.dates[masks.valid][-1]
    assert split["test_start"] == truth.dates[masks.test][0]
    assert split["test_end"] == truth.dates[-1]
    assert list(basin["frame"].columns) == truth.input_names + [basin["target"]]
    assert basin["frame"][basin["target"]].equals(truth.y.rename(basin["target"]))
    assert basin["years"] == truth.years
    # sktlag then validates on exactly NH's validation days.
    lookback = 90
    rows = V.fit_rows(basin, lookback)
    fraction = V.validation_fraction(rows, basin["target"], lookback, split["valid_start"])
    _, valid = chronological_split(window_ends(len(rows), lookback), fraction, lookback)
    assert rows.index[valid[0]] == split["valid_start"]
    assert rows.index[valid[-1]] == split["valid_end"]


def _job(kind, basin, seed):
    return {"kind": kind, "basin": {"short": basin}, "seed": seed,
            "settings": {"threads": 1, "device": "cpu"}}


def _done(kind, basin, seed):
    return {"kind": kind, "basin": basin, "seed": seed, "seconds": 1.0,
            "rows": [{"model": kind, "basin": basin, "seed": seed}]}


def test_resume_runs_only_the_jobs_missing_from_the_log(tmp_path, monkeypatch):
    log = tmp_path / V.JOBS_LOG
    log.write_text("".join(json.dumps(_done(*key)) + "\n" for key in
                           [("nh", "a", 0), ("sktlag", "a", 0), ("sktlag", "zzz", 7)]))
    ran = []

    def fake_run_logged(function, jobs, processes, path, line, *initializer):
        ran.extend((j["kind"], j["basin"]["short"], j["seed"]) for j in jobs)
        return [_done(j["kind"], j["basin"]["short"], j["seed"]) for j in jobs]

    monkeypatch.setattr(V.C, "run_logged", fake_run_logged)
    jobs = [_job(kind, "a", seed) for seed in (0, 1) for kind in ("nh", "sktlag")]
    rows = V.run_jobs(jobs, 2, log, resume=True)
    assert ran == [("nh", "a", 1), ("sktlag", "a", 1)]
    # The log's job of another basin is not reported as part of this run.
    assert sorted((r["model"], r["seed"]) for r in rows) == [
        ("nh", 0), ("nh", 1), ("sktlag", 0), ("sktlag", 1)]
    # Without --resume the log starts afresh and every job runs.
    ran.clear()
    V.run_jobs(jobs, 2, log, resume=False)
    assert len(ran) == 4 and not log.exists()


def test_resume_refuses_a_log_of_other_sktlag_params(tmp_path):
    # The log's fits of width 64 were reused for a run of the defaults, and recorded as
    # the defaults' figures.
    log = tmp_path / V.JOBS_LOG
    done = _done("sktlag", "a", 0)
    done["rows"][0]["params"] = {"hidden_size": 64}
    log.write_text(json.dumps(done) + "\n")
    job = _job("sktlag", "a", 0)
    job["settings"]["sktlag_params"] = {}
    with pytest.raises(ValueError, match=r"holds sktlag fits of \{'hidden_size': 64\}, "
                                         r"this run's are \{\}"):
        V.run_jobs([job], 1, log, resume=True)
    # A failed job of the same run records no parameters: the log is this run's.
    failed = _done("sktlag", "a", 0)
    failed["rows"][0]["error"] = "RuntimeError: diverged"
    log.write_text(json.dumps(failed) + "\n")
    job["settings"]["sktlag_params"] = {"hidden_size": 64}
    assert V.run_jobs([job], 1, log, resume=True)[0]["error"] == "RuntimeError: diverged"


def _run(model, basin, seed, nse, **extra):
    return {"model": model, "basin": basin, "seed": seed, "test_nse": nse, "test_kge": nse,
            "fit_seconds": 1.0, **extra}


def test_overview_counts_what_the_recipe_chose_and_how_growth_ended():
    runs = []
    for seed, (rule, batch) in enumerate([("validation", 16), ("max_epochs", 16),
                                          ("threshold", 32)]):
        runs += [_run("nh-best", "a", seed, 0.5),
                 _run("sktlag", "a", seed, 0.6, batch_size=batch, stop_rule=rule),
                 _run("nh-best", "b", seed, 0.5),
                 _run("sktlag", "b", seed, 0.5, batch_size=256,
                      stop_rule="validation" if seed == 0 else "max_epochs"),
                 _run("nh-best", "c", seed, 0.5),
                 _run("sktlag", "c", seed, 0.4, fit_seconds=1.0 + seed)]
    # Basin d: one of two seeds by an own rule is not most seeds.
    runs += [_run("nh-best", "d", seed, 0.5) for seed in (0, 1)]
    runs += [_run("sktlag", "d", 0, 0.5, batch_size=16, stop_rule="threshold"),
             _run("sktlag", "d", 1, 0.5, batch_size=16, stop_rule="max_layers")]
    rows = V.overview(runs, ["a", "b", "c", "d"])
    assert rows[0]["sktlag batch"] == "16 2, 32 1"
    assert rows[0]["growth ended by"] == "max_epochs 1, threshold 1, validation 1"
    assert rows[2]["growth ended by"] == ""  # recorded before endings were kept
    assert [round(r["sktlag - NH"], 3) for r in rows] == [0.1, 0.0, -0.1, 0.0]
    # Basin a: 2 of 3 seeds by an own rule; b: 1 of 3; c has no endings; d: 1 of 2.
    # Basin c's median fit (2 s over seeds 0-2) took longer than NH's (1 s); a tie counts.
    assert V.overview_summary(rows, runs) == (
        "sktlag at or above NH on 3 of 4 basins; median difference +0.000. sktlag's median "
        "fit took no longer than NH's on 3 of 4 basins. sktlag's growth "
        "ended by its own rule (threshold, validation) in most seeds on 1 of 3 basins.\n")
    # Without NH (--skip-nh) the endings are still counted.
    alone = [r for r in runs if r["model"] == "sktlag"]
    assert V.overview_summary(V.overview(alone, ["a", "b"]), alone) == (
        "sktlag's growth ended by its own rule (threshold, validation) in most seeds on 1 "
        "of 2 basins.\n")
    assert V.overview_summary(V.overview([], ["a"]), []) == ""
    # A basin where every sktlag run failed counts against it, not out of the count.
    failed = [*runs, _run("nh-best", "e", 0, 0.5), {**_run("sktlag", "e", 0, float("nan")),
                                                    "error": "RuntimeError: diverged"}]
    assert V.overview_summary(V.overview(failed, ["a", "b", "c", "d", "e"]), failed).startswith(
        "sktlag at or above NH on 3 of 5 basins (every sktlag run failed on 1); median "
        "difference +0.000.")


def test_the_last_epoch_line_compares_with_nh_as_its_run_ends():
    runs = []
    for seed in (0, 1, 2):
        runs += [_run("nh-best", "a", seed, 0.9), _run("nh-last", "a", seed, 0.7),
                 _run("sktlag", "a", seed, 0.8),
                 _run("nh-best", "b", seed, 0.5), _run("nh-last", "b", seed, 0.4 + seed / 10),
                 _run("sktlag", "b", seed, 0.45),
                 _run("sktlag", "c", seed, 0.5)]  # no NH run: not compared
    # a: +0.1 (below NH's best epoch); b: 0.45 against the median 0.5 of its last epochs.
    assert V.last_epoch_summary(runs, ["a", "b", "c"]) == (
        "Against NH's last epoch: sktlag at or above it on 1 of 2 basins; median "
        "difference +0.025.\n")
    assert V.last_epoch_summary([r for r in runs if r["model"] != "nh-last"], ["a"]) == ""


def test_records_replay_reads_a_jobs_log(tmp_path):
    log = tmp_path / V.JOBS_LOG
    log.write_text("".join(json.dumps(_done(*key)) + "\n"
                           for key in [("nh", "a", 0), ("sktlag", "a", 0)]))
    assert [(r["model"], r["basin"]) for r in V.recorded_runs(log)] == [("nh", "a"),
                                                                        ("sktlag", "a")]


def test_a_replay_takes_the_first_good_run_of_a_seed(tmp_path):
    # The first file's run of a seed is taken; a failed one hid a later rerun.
    first, second, third = (tmp_path / f"{n}.jsonl" for n in ("first", "second", "third"))
    failed = _done("sktlag", "a", 0)
    failed["rows"][0].update(error="RuntimeError: diverged")
    rerun, later = _done("sktlag", "a", 0), _done("sktlag", "a", 0)
    rerun["rows"][0]["test_nse"], later["rows"][0]["test_nse"] = 0.7, 0.1
    for path, done in ((first, failed), (second, rerun), (third, later)):
        path.write_text(json.dumps(done) + "\n")
    (run,) = V._recorded([first, second, third])
    assert "error" not in run and run["test_nse"] == 0.7


def test_a_variant_is_compared_with_its_baseline_per_basin_and_by_record_length():
    def fits(nses, years, seconds):
        return [_run("sktlag", basin, seed, nse, years=years, fit_seconds=seconds)
                for basin, values in nses.items() for seed, nse in enumerate(values)]

    baseline = (fits({"a": [0.5, 0.6, 0.7]}, 3.0, 10.0) + fits({"b": [0.8]}, 10.0, 20.0)
                + fits({"c": [0.2]}, 2.0, 5.0) + [_run("nh-best", "a", 0, 0.9)])
    variant = (fits({"a": [0.7, 0.4, 0.65]}, 3.0, 30.0) + fits({"b": [0.75]}, 10.0, 30.0)
               + fits({"c": [0.3]}, 2.0, 5.0) + fits({"d": [0.9]}, 30.0, 9.0))
    rows = V.variant_rows(variant, baseline, ["a", "b", "c", "d"])
    # d has no baseline; medians over seeds: a 0.65 against 0.6.
    assert [r["basin"] for r in rows] == ["a", "b", "c"]
    assert [r["length"] for r in rows] == ["2.5 to 5.5 years", "5.5 to 15 years",
                                           "0 to 2.5 years"]
    assert [round(r["variant - baseline"], 3) for r in rows] == [0.05, -0.05, 0.1]
    assert [r["fit time ratio"] for r in rows] == [3.0, 1.5, 1.0]
    summary = V.variant_summary(rows)
    assert [s["records"] for s in summary] == ["0 to 2.5 years", "2.5 to 5.5 years",
                                               "5.5 to 15 years", "all"]
    total = summary[-1]
    assert total["variant at or above baseline"] == "2 of 3"
    assert round(total["median change"], 3) == 0.05
    assert (round(total["worst"], 3), round(total["best"], 3)) == (-0.05, 0.1)
    assert total["median fit time ratio"] == 1.5
    assert V._length_class(40.0) == "over 15 years"
    # Records of the dated Lahn split and older files have no length.
    assert V._length_class(float("nan")) == "unknown length"


def test_a_variant_on_fewer_seeds_meets_the_same_seeds_of_its_baseline(capsys):
    baseline = [_run("sktlag", "a", seed, nse, years=30.0, fit_seconds=10.0)
                for seed, nse in enumerate([0.9, 0.5, 0.6])]
    variant = [_run("sktlag", "a", 1, 0.55, years=30.0, fit_seconds=20.0)]
    # Against the median of three seeds (0.6) the variant loses; against its own seed
    # (0.5) it gains.
    (plain,) = V.variant_rows(variant, baseline, ["a"])
    (matched,) = V.variant_rows(variant, baseline, ["a"], matched=True)
    assert round(plain["variant - baseline"], 3) == -0.05
    assert round(matched["variant - baseline"], 3) == 0.05
    assert matched["fit time ratio"] == 2.0
    # NeuralHydrology's seeds in the same replay are no seeds of the variant.
    nh = [_run("nh-best", "a", seed, 0.8) for seed in range(3)]
    (with_nh,) = V.variant_rows(variant + nh, baseline, ["a"], matched=True)
    assert round(with_nh["variant - baseline"], 3) == 0.05
    with pytest.raises(SystemExit):
        V.parse_args(["--matched-seeds"])
    assert "--matched-seeds" in capsys.readouterr().err


def test_sktlag_params_must_be_a_json_object(capsys):
    assert V.parse_args(["--sktlag-params", '{"hidden_size": 64}']).sktlag_params == {
        "hidden_size": 64}
    for text in ("[64]", "{hidden_size: 64}"):
        with pytest.raises(SystemExit):
            V.parse_args(["--sktlag-params", text])
        assert "--sktlag-params" in capsys.readouterr().err


def test_a_replay_with_basins_prints_those_basins_only(tmp_path, capsys):
    log = tmp_path / V.JOBS_LOG
    rows = [_run(model, basin, 0, 0.5, years=10.0, valid_nse=0.5, epochs=9, epoch_used=9,
                 depth=1)
            for basin in ("kalkofen", "lahn_kalkofen", "spotpy_fulda", "spotpy_hymod",
                          "yuliang")
            for model in ("nh-best", "sktlag")]
    log.write_text("".join(json.dumps({"kind": r["model"], "basin": r["basin"], "seed": 0,
                                       "seconds": 1.0, "rows": [r]}) + "\n" for r in rows))
    # A Lahn gauge by its short name (its dated split, recorded under that name, not the
    # benchmark set's lahn_kalkofen), a group by its name.
    V.main(["--records", str(log), "--basins", "kalkofen", "spotpy"])
    out = capsys.readouterr().out
    assert [b for b in ("kalkofen", "lahn_kalkofen", "spotpy_fulda", "spotpy_hymod", "yuliang")
            if f"## Basin {b}\n" in out] == ["kalkofen", "spotpy_fulda", "spotpy_hymod"]


def test_the_per_basin_table_adds_the_best_fixed_depth_of_a_grid_record(tmp_path):
    import numpy as np

    grid_record = ROOT / "benchmarks" / "records" / "growth_jobs_10y_grid4_cpu.jsonl"
    grid = [json.loads(line) for line in grid_record.read_text().splitlines()]
    runs = [_run(model, basin, seed, nse, years=years, batch_size=32, stop_rule="validation")
            for basin, years in (("spotpy_fulda", 10.0), ("lahn_kalkofen", 31.2),
                                 ("kalkofen", float("nan")))
            for seed in (0, 1, 2)
            for model, nse in (("sktlag", 0.8), ("nh-best", 0.7), ("nh-last", 0.6))]
    fulda, lahn, dated = V.depth_rows(runs, ["kalkofen", "lahn_kalkofen", "spotpy_fulda"],
                                      [grid_record])
    # By years; a record of unknown length last.
    assert [r["basin"] for r in (fulda, lahn, dated)] == [
        "spotpy_fulda", "lahn_kalkofen", "kalkofen"]
    assert (fulda["sktlag test NSE"], fulda["NH best epoch"], fulda["NH last epoch"]) == (
        0.8, 0.7, 0.6)
    # Against a direct count: each seed's best fixed depth on the test days, the depth
    # the validation score picks and the grid's own defaults, medians over the seeds.
    best, picked, depths, defaults = [], [], [], []
    for seed in (0, 1, 2):
        fixed = [r for r in grid if r["basin"] == "spotpy_fulda" and r["seed"] == seed
                 and r["variant"].startswith("fixed-")]
        top = max(fixed, key=lambda r: r["test_nse"])
        best.append(top["test_nse"])
        depths.append(str(top["n_layers"]))
        picked.append(max(fixed, key=lambda r: r["valid_nse"])["test_nse"])
        defaults += [r["test_nse"] for r in grid if r["basin"] == "spotpy_fulda"
                     and r["seed"] == seed and r["variant"] == "defaults"]
    assert fulda["grid: best fixed depth NSE"] == pytest.approx(np.median(best))
    assert fulda["grid: validation pick NSE"] == pytest.approx(np.median(picked))
    assert fulda["grid: defaults NSE"] == pytest.approx(np.median(defaults))
    assert fulda["grid: best depth by seed"] == " ".join(depths)
    assert fulda["sktlag batch"] == "32 3"
    # A basin the grid did not run has no fixed depth.
    assert np.isnan(lahn["grid: best fixed depth NSE"]) and lahn["grid: best depth by seed"] == ""
    # The same basin at two epoch budgets has no one best depth.
    other = tmp_path / "budget120.jsonl"
    other.write_text("".join(json.dumps({**r, "seed": r["seed"] + 3, "max_epochs": 120})
                             + "\n" for r in grid))
    with pytest.raises(ValueError, match="several epoch budgets"):
        V.depth_rows(runs, ["spotpy_fulda"], [grid_record, other])
