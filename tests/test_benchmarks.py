"""The benchmark scripts run in quick mode and write readable results."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sktlag.recipe import auto_batch_size

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ("accuracy_lahn", "speed", "eigensolver", "memory", "warmup", "recipe", "growth_pays",
            "holdout_check", "startup")


def run_script(script: str, *arguments, timeout: int = 300, cwd=None):
    """Run ``benchmarks/<script>`` with ``arguments``; its completed process, checked."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *map(str, arguments)],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_quick_benchmarks_write_markdown_and_json(tmp_path):
    run_script("run_all.py", "--quick", "--out", tmp_path, timeout=600)
    for name in EXPECTED:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["name"] == name and payload["settings"]["quick"] is True
        assert payload["machine"]["versions"]["torch"]
        markdown = (tmp_path / f"{name}.md").read_text()
        assert markdown.startswith("# ") and "| " in markdown and "Command: `python" in markdown
    # The held-out check fits up to the first decision and no further.
    rows = json.loads((tmp_path / "holdout_check.json").read_text())["results"]["rows"]
    assert rows and all(r["epochs trained"] == r["epoch"] for r in rows)
    # Start-up: one row per statement, the floor first, times and memory measured.
    startup = json.loads((tmp_path / "startup.json").read_text())["results"]["table"]
    assert [row["statement"] for row in startup] == [
        "`import torch, sklearn`", "`from sktlag import TLAGRegressor`",
        "`from sktlag import TLAGRegressor, then sktlag.plots`", "`import sktlag`"]
    assert startup[0]["over torch + sklearn s"] == 0
    assert all(row["median s"] > 0 and row["peak RSS MiB"] > 0 for row in startup)
    # Exact, difference and expansion products compared: the same decision, close
    # eigenvalues.
    (row,) = json.loads((tmp_path / "eigensolver.json").read_text())["results"]["products"]
    assert row["position exact"] == row["position difference"] == row["position expansion"]
    assert row["max eigenvalue rel. diff, step x1"] < 1e-3
    assert row["max relative-derivative rel. diff expansion"] < 1e-4
    # Each tolerance continues the same Lanczos iteration: a looser one stops no later.
    tolerance = json.loads((tmp_path / "eigensolver.json").read_text())["results"]["tolerance"]
    assert sorted({r["tolerance"] for r in tolerance}) == [1e-3, 3e-3, 1e-2, 3e-2]
    for case in {(r["hidden"], r["seed"]) for r in tolerance}:
        rows = sorted((r for r in tolerance if (r["hidden"], r["seed"]) == case),
                      key=lambda r: r["tolerance"])
        hvps = [r["HVPs (lockstep)"] for r in rows]
        assert hvps == sorted(hvps, reverse=True) and hvps[0] <= rows[0]["reference HVPs"]
        assert rows[0]["max relative-derivative rel. error"] < 1e-3


def test_quick_growth_cost_times_decisions_with_every_kind_of_products(tmp_path):
    run_script("growth_cost.py", "--quick", "--out", tmp_path, "--params", '{"max_layers": 3}')
    payload = json.loads((tmp_path / "growth_cost.json").read_text())
    kinds = ["expansion", "exact", "difference"]
    assert payload["settings"]["hessian_products"] == kinds
    assert payload["settings"]["params"] == {"max_layers": 3}
    rows = payload["results"]["unit_costs"]
    timed = {(r["depth"], r["products"]) for r in rows if r.get("decision s", 0) > 0}
    depths = {r["depth"] for r in rows}
    assert depths == {1, 2, 3}  # --params overrides the defaults' max_layers of 4
    assert timed == {(d, k) for d in sorted(depths)[:-1] for k in kinds}
    grown = payload["results"]["grown"]
    assert [r["depth"] for r in grown] == [2, 3]
    for row in grown:
        assert row["built epoch s"] > 0 and row["grown epoch s"] > 0
        assert row["grown epoch s, subnormals kept"] > 0
        assert row["same predictions"] is True  # quick windows are too short for subnormals


def _vs_research(tmp_path, *options) -> dict:
    """Results of ``vs_research.py --quick`` run in ``tmp_path`` (skips without the
    research code and its demo table beside the checkout)."""
    shared = ROOT.parent / "shared"
    research, demo = shared / "research" / "TLAG-LSTM.py", shared / "data" / "DemoData.xlsx"
    if not (research.is_file() and demo.is_file()):
        pytest.skip("the research code and its demo table are not beside the checkout")
    run_script("vs_research.py", research, demo, "--quick", "--out", tmp_path, *options,
               cwd=tmp_path)
    return json.loads((tmp_path / "vs_research.json").read_text())["results"]


def test_side_by_side_with_the_research_code_times_both_loops(tmp_path):
    results = _vs_research(tmp_path)
    loops = [(row["loop"], row["threads"], row["default"]) for row in results["epochs"]]
    threads = results["threads"][0]["threads"]
    assert ("research code", 1, False) in loops and ("sktlag", 1, False) in loops
    assert {loop for loop, _, default in loops if default} == {"research code", "sktlag"}
    assert all(row["s/epoch"] > 0 and row["epochs"] == 3 for row in results["epochs"])
    assert threads == 1 and results["decision"][0]["prediction rows/s"] > 0
    assert {row["other core"] for row in results["busy"]} == {"busy"}
    assert [row["size"] for row in results["profile"]] == ["package defaults", "research preset"]
    assert all(0 < row["LSTM forward share"] < 1 for row in results["profile"])
    assert {row["precision"].split()[0] for row in results["floor"]} == {"float32", "bfloat16"}
    accuracy = results["accuracy"]
    runs = {(row["preset"], row["seed"]) for row in accuracy}
    assert runs == {("short_record", 0), ("hydrology", 0)}
    assert len(accuracy) == 4 and all(-10 < row["test NSE"] <= 1 for row in accuracy)
    # The research loop saves models into its working directory: never into the caller's.
    assert not (tmp_path / "intermediate_models").exists()


def test_time_to_accuracy_of_an_ensemble_scores_the_members_mean(tmp_path):
    results = _vs_research(tmp_path, "--members", "2", "--series", "demo", "--presets",
                           "short_record", "--skip", "epochs", "threads", "busy", "profile",
                           "floor", "decision")
    assert set(results) == {"accuracy"}
    (row,) = results["accuracy"]
    assert row["series"].startswith("DemoData") and row["members"] == 2
    assert len(row["layers"].split()) == len(row["member test NSE"].split()) == 2
    members = [float(v) for v in row["member test NSE"].split()]
    # The squared error is convex: the mean prediction scores at least the members' mean
    # NSE (up to the 3 decimals they are printed with).
    assert row["test NSE"] >= sum(members) / 2 - 1e-3


@pytest.fixture(scope="module")
def growth_pays():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import growth_pays as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _recorded_run(holdout=True):
    """A recording run: two decisions that inserted, three architectures."""
    decisions = [
        {"n_layers_before": 1, "architecture_score": 0.70, "rule": "inserted",
         "raw": [0.2], "relative": [0.5], "holdout": [3.0], "seconds": 1.0},
        {"n_layers_before": 2, "architecture_score": 0.75, "rule": "inserted",
         "raw": [0.1, 0.3], "relative": [0.4, 0.6], "holdout": [0.5, 1.5], "seconds": 1.0},
    ]
    if not holdout:
        for d in decisions:
            del d["holdout"]
    archs = [{"n_layers": k, "epochs": 10, "seconds": 10.0, "best_valid": v, "best_valid_ma": v,
              "test_nse": t} for k, v, t in [(1, 0.70, 0.80), (2, 0.75, 0.85), (3, 0.77, 0.83)]]
    return {"decisions": decisions, "architectures": archs, "fit_seconds": 32.0}


def test_replay_compares_the_threshold_with_the_criterion_it_names(growth_pays):
    run = _recorded_run()
    assert growth_pays.replay(run, 0.1, 0.0, "moving_average", "relative")["depths_tried"] == 3
    # The held-out statistic of the second decision (1.5) is below 2: growth stops at 2.
    out = growth_pays.replay(run, 2.0, 0.0, "moving_average", "holdout")
    assert out["stop"] == "threshold" and out["depths_tried"] == 2 and out["n_layers"] == 2
    assert growth_pays.replay(run, 5.0, 0.0, "epoch", "holdout")["n_layers"] == 1
    older = _recorded_run(holdout=False)
    assert growth_pays.replayable(older, "relative")
    assert not growth_pays.replayable(older, "holdout")
    with pytest.raises(ValueError, match="no 'holdout' values"):
        growth_pays.replay(older, 2.0, 0.0, "moving_average", "holdout")
    # Each criterion is replayed on its own recording variant, where it chose the positions.
    runs = [{**run, "basin": "a", "variant": "growth-holdout", "seed": 0},
            {**older, "basin": "b", "variant": "growth", "seed": 0},
            {**older, "basin": "c", "variant": "growth-holdout", "seed": 0}]
    rows = growth_pays.replay_table(runs, [0.0])
    held_out = [r for r in rows if r["criterion"] == "holdout"]
    assert held_out and all(r["runs"] + r["runs not replayable"] == 1 for r in held_out)
    assert all(r["runs"] + r["runs not replayable"] == 1
               for r in rows if r["criterion"] == "relative")


def test_the_validation_rule_judges_only_architectures_that_reached_a_decision(growth_pays):
    # The third architecture (0.77) does not beat the second (0.75) by 0.03, but the
    # budget ended it before any decision: growth ended by the budget, not the rule.
    run = _recorded_run()
    out = growth_pays.replay(run, 0.1, 0.03, "moving_average", "relative")
    assert out["stop"] == "recorded run ended" and out["depths_tried"] == 3
    assert out["n_layers"] == 3  # it still competes in the selection
    # The second one reached a decision: there the rule applies.
    out = growth_pays.replay(run, 0.1, 0.06, "moving_average", "relative")
    assert out["stop"] == "validation" and out["depths_tried"] == 2
    # The package judges the architecture that the budget ended at its cap (10 epochs
    # here): with the recording's cap the third one is judged, below it it is not.
    judged = growth_pays.replay(run, 0.1, 0.03, "moving_average", "relative", cap=10)
    assert judged["stop"] == "validation" and judged["depths_tried"] == 3
    assert judged["n_layers"] == 3 and judged["test_nse"] == 0.83  # the selection is the same
    assert growth_pays.replay(run, 0.1, 0.03, "moving_average", "relative",
                              cap=11)["stop"] == "recorded run ended"
    assert growth_pays.replay(run, 0.1, 0.01, "moving_average", "relative",
                              cap=10)["stop"] == "recorded run ended"  # it beat 0.75 + 0.01


def test_a_replay_stopping_at_the_first_decision_trains_on_as_the_fixed_run(growth_pays):
    # Growth that ends at the first decision lets that architecture train on: the fixed
    # run of its depth and seed is that training. Without one, the replay is not exact.
    run = {**_recorded_run(), "basin": "a", "seed": 0, "variant": "growth-holdout"}
    fixed = {"basin": "a", "seed": 0, "variant": "fixed-1", "test_nse": 0.82,
             "epochs": 25, "fit_seconds": 20.0, "valid_nse": 0.72}
    other_seed = {**fixed, "seed": 1, "test_nse": 0.5}
    found = growth_pays.trained_on([run, other_seed, fixed], run)
    assert found is fixed
    out = growth_pays.replay(run, 5.0, 0.0, "moving_average", "holdout", found)
    assert out["exact"] and out["stop"] == "threshold" and out["n_layers"] == 1
    assert out["test_nse"] == 0.82 and out["epochs"] == 25
    assert out["seconds"] == 21.0 and out["decision_seconds"] == 1.0  # its one decision
    alone = growth_pays.replay(run, 5.0, 0.0, "moving_average", "holdout")
    assert not alone["exact"] and alone["test_nse"] == 0.80
    # A stop at a later decision is exact without it; so is a run that never stopped.
    assert growth_pays.replay(run, 2.0, 0.0, "moving_average", "holdout")["exact"]
    assert growth_pays.replay(run, 0.0, 0.0, "moving_average", "holdout")["exact"]
    # The replay table counts the first only where the fixed run was recorded.
    def at_threshold_3(results):
        rows = growth_pays.replay_table(results, [0.0])
        return next(r for r in rows if r["criterion"] == "holdout" and r["threshold"] == 3.0
                    and r["selection"] == "moving_average")
    assert at_threshold_3([run])["runs not replayable"] == 1
    with_fixed = at_threshold_3([run, fixed])
    assert with_fixed["runs"] == 1 and with_fixed["median basin NSE"] == 0.82


def test_a_replay_that_rejects_a_layer_grown_at_a_cap_is_not_exact(growth_pays):
    # The package trains a parent the cap cut short on when its grown successor does
    # not pay; a recording that grew on from there did not, so that replay is not exact.
    run = _recorded_run()
    run["architectures"][0]["epochs"] = 40
    at_cap = {**run, "max_epochs_per_layer": 40}
    out = growth_pays.replay(at_cap, 0.1, 0.06, "moving_average", "relative")
    assert out["stop"] == "validation" and out["depths_tried"] == 2 and not out["exact"]
    # Exact where the parent ended before its cap, the successor at its own, the run
    # names no cap, or the recording stopped there as well (and trained the parent on).
    assert growth_pays.replay(run, 0.1, 0.06, "moving_average", "relative")["exact"]
    for changed in ({"max_epochs_per_layer": 41}, {"max_epochs_per_layer": 10}):
        assert growth_pays.replay({**at_cap, **changed}, 0.1, 0.06, "moving_average",
                                  "relative")["exact"]
    stopped = copy.deepcopy(at_cap)
    stopped["decisions"][1]["rule"] = "validation"
    assert growth_pays.replay(stopped, 0.1, 0.06, "moving_average", "relative")["exact"]


def test_a_parent_that_trained_on_is_one_architecture_of_the_record(growth_pays):
    history = [
        {"n_layers": 1, "first_epoch": 1, "last_epoch": 4, "best_valid_nse": 0.6,
         "best_valid_nse_ma": 0.55},
        {"n_layers": 2, "first_epoch": 5, "last_epoch": 6, "best_valid_nse": 0.7,
         "best_valid_nse_ma": 0.5},
        {"n_layers": 1, "first_epoch": 7, "last_epoch": 9, "best_valid_nse": 0.65,
         "best_valid_nse_ma": 0.6},
    ]
    archs = growth_pays.record_architectures(history, {1: 7.0, 2: 2.0}, {1: 0.8, 2: 0.7})
    assert [a["n_layers"] for a in archs] == [1, 2]
    assert archs[0]["epochs"] == 7 and archs[0]["stretches"] == [[1, 4], [7, 9]]
    assert (archs[0]["best_valid"], archs[0]["best_valid_ma"]) == (0.65, 0.6)
    assert archs[0]["seconds"] == 7.0 and archs[0]["test_nse"] == 0.8
    # Its late gain is over its own epochs, the ones after the successor's included.
    ma = [0.1, 0.2, 0.3, 0.4, 0.9, 0.9, 0.45, 0.5, 0.55]
    gains = growth_pays.late_gains({"valid_ma": ma, "architectures": archs}, 2)
    assert gains[0] == pytest.approx(0.55 - 0.45) and math.isnan(gains[1])


def test_gain_table_has_a_row_per_recording_variant(growth_pays):
    runs = ([{**_recorded_run(), "basin": b, "variant": "growth-holdout"} for b in "ab"]
            + [{**_recorded_run(holdout=False), "basin": b, "variant": "growth"} for b in "ab"])
    rows = {row["variant"]: row for row in growth_pays.decision_table(runs)}
    assert rows["growth-holdout"]["decisions"] == rows["growth"]["decisions"] == 4
    # The larger statistic (3.0) came before the larger gain (0.05): rank correlation 1.
    assert rows["growth-holdout"]["Spearman(holdout, gain)"] == pytest.approx(1.0)
    assert math.isnan(rows["growth"]["Spearman(holdout, gain)"])  # not recorded there


def test_records_are_read_together_and_a_run_recorded_twice_is_refused(growth_pays, tmp_path):
    run = {**_recorded_run(), "basin": "a", "seed": 0, "variant": "growth"}
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(json.dumps(run) + "\n\n")
    second.write_text(json.dumps({**run, "seed": 1}) + "\n")
    assert [r["seed"] for r in growth_pays.load_records([first, second])] == [0, 1]
    second.write_text(json.dumps(run) + "\n")
    with pytest.raises(ValueError, match="seed 0 was already read from .*first.jsonl"):
        growth_pays.load_records([first, second])


def test_variant_names_expand_the_grid_and_refuse_unknown_names(growth_pays):
    def error(message):
        raise SystemExit(message)

    names = growth_pays.variant_names(["growth-difference", "fixed", "fixed-2"], 3, error)
    assert names == ["growth-difference", "fixed-1", "fixed-2", "fixed-3"]
    assert growth_pays.variant_names(None, 3, error) == list(growth_pays.variants(3))
    # Each kind of products has its own recording, whatever the device's default is.
    for kind in ("difference", "exact"):
        assert growth_pays.variants(3)[f"growth-{kind}"]["hessian_products"] == kind
    with pytest.raises(SystemExit, match="unknown variant.*fixed-4 with max_layers 3"):
        growth_pays.variant_names(["fixed-4"], 3, error)


def test_the_basin_table_replays_the_variant_it_is_given(growth_pays):
    # The same basin and seed recorded with both kinds of products and a fixed grid:
    # each table replays its own variant, with its own decision seconds.
    exact = {**_recorded_run(), "basin": "a", "seed": 0, "variant": "growth"}
    difference = {**_recorded_run(), "basin": "a", "seed": 0, "variant": "growth-difference"}
    difference["decisions"] = [{**d, "seconds": 0.25} for d in difference["decisions"]]
    fixed = [{"basin": "a", "seed": 0, "variant": f"fixed-{k}", "n_layers": k,
              "valid_nse": 0.7, "test_nse": 0.8, "fit_seconds": 20.0, "epochs": 10}
             for k in (1, 2, 3)]
    runs = [exact, difference, *fixed]
    rules = (0.1, 0.0, "moving_average", "relative")
    by_exact = growth_pays.basin_table(runs, 3, rules)[0]
    by_difference = growth_pays.basin_table(runs, 3, rules, variant="growth-difference")[0]
    assert by_exact["decision share"] == pytest.approx(2.0 / 32.0)
    assert by_difference["decision share"] == pytest.approx(0.5 / 32.0)
    assert by_exact["growth / grid time"] == pytest.approx(32.0 / 60.0)
    assert growth_pays.basin_table(runs[:1] + fixed, 3, rules, variant="growth-difference") == []


def test_late_gains_say_whether_an_architecture_was_still_improving(growth_pays):
    run = _recorded_run()
    # 10 epochs per architecture; None before each architecture's first full window.
    run["valid_ma"] = ([None, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
                       + [None, 0.9, 0.95, 0.94, 0.93, 0.92, 0.91, 0.9, 0.89, 0.88]
                       + [None] * 10)
    gains = growth_pays.late_gains(run, 3)
    assert gains[0] == pytest.approx(0.9 - 0.6)  # still rising at its end
    assert gains[1] == pytest.approx(0.88 - 0.95)  # past its best
    assert math.isnan(gains[2])  # no score recorded
    assert all(math.isnan(g) for g in growth_pays.late_gains(_recorded_run(), 3))
    rows = growth_pays.architecture_table([{**run, "basin": "a", "seed": 0,
                                            "variant": "growth"}], 3)
    assert [r["gain in its last 3 epochs"] for r in rows][:2] == pytest.approx(gains[:2])


def test_the_defaults_table_has_a_row_per_basin_and_budget(growth_pays):
    def run(seed, budget, nse, rule):
        return {**_recorded_run(), "basin": "a", "variant": "defaults", "seed": seed,
                "max_epochs": budget, "test_nse": nse, "n_layers": 2, "stop_rule": rule,
                "epochs": 30, "growth_seconds": 2.0 * seed}
    runs = [run(1, 120, 0.9, "validation"), run(0, 120, 0.8, "threshold"),
            run(0, 80, 0.7, "max_epochs"), {**run(0, 80, 0.0, "x"), "variant": "growth"}]
    rows = growth_pays.defaults_table(runs)
    assert [(r["budget"], r["seeds"], r["ended by"]) for r in rows] == [
        (80, "0", "max_epochs"), (120, "0 1", "threshold validation")]
    assert rows[1]["test NSE"] == pytest.approx(0.85)
    assert rows[1]["epochs by architecture"] == "10 10 10 / 10 10 10"
    assert rows[1]["decision share"] == pytest.approx((0.0 + 2.0 / 32.0) / 2)


def test_the_defaults_table_sets_the_defaults_against_the_best_fixed_depth(growth_pays):
    defaults = [{**_recorded_run(), "basin": "a", "variant": "defaults", "seed": s,
                 "max_epochs": 80, "test_nse": nse, "n_layers": 2, "stop_rule": "threshold",
                 "epochs": 30, "fit_seconds": fit, "growth_seconds": 3.0}
                # Seed 0 has no fixed depths: only seeds 1 and 2 are compared.
                for s, nse, fit in ((0, 0.75, 24.0), (1, 0.80, 60.0), (2, 0.70, 15.0))]

    def fixed(seed, depth, valid, test, budget=80):
        return {"basin": "a", "variant": f"fixed-{depth}", "seed": seed, "n_layers": depth,
                "max_epochs": budget, "valid_nse": valid, "test_nse": test,
                "fit_seconds": 10.0 * depth,
                "architectures": [{"n_layers": depth, "epochs": 10, "seconds": 4.0 * depth}]}

    grid = [fixed(1, 1, 0.9, 0.60), fixed(1, 2, 0.5, 0.90),   # validation picks depth 1
            fixed(2, 1, 0.2, 0.50), fixed(2, 2, 0.3, 0.70),
            fixed(2, 3, 0.1, 0.99, budget=120),                # another budget: not compared
            {**fixed(1, 3, 0.9, 0.99), "basin": "b"}]          # another basin: not compared
    row = growth_pays.defaults_table(defaults + grid)[0]
    assert row["best fixed depth"] == "2 2"
    assert row["best fixed NSE"] == pytest.approx(0.80)
    assert row["defaults - best fixed"] == pytest.approx(0.75 - 0.80)
    assert row["validation pick NSE"] == pytest.approx((0.60 + 0.70) / 2)
    # Each seed against its own grid of the same budget (10 + 20 s in both seeds).
    assert row["defaults / grid time"] == pytest.approx((60.0 / 30.0 + 15.0 / 30.0) / 2)
    assert row["decision share"] == pytest.approx(3.0 / 24.0)  # the median of 3 seeds
    # The grown depth 2 took 1 s per epoch, the fixed one 0.8 s; no fixed depth 3 ran
    # under this budget, so the grown depth 3 is not compared.
    assert row["grown / fixed epoch s"] == pytest.approx(1.25)
    assert "best fixed NSE" not in growth_pays.defaults_table(defaults)[0]
    # A grid of depths up to 1: seed 1's depth 2 and seed 2's depth 2 leave it.
    shallow = growth_pays.defaults_table(defaults + grid, max_layers=1)[0]
    assert shallow["best fixed depth"] == "1 1"
    assert shallow["defaults / grid time"] == pytest.approx((60.0 / 10.0 + 15.0 / 10.0) / 2)
    # The line under the table: a tie counts as at or above; a basin without fixed
    # depths counts only in how growth ended.
    tie = {"ended by": "max_epochs", "defaults - validation pick": 0.0,
           "defaults - best fixed": 0.0, "best fixed NSE": 0.5, "decision share": 0.5,
           "defaults / grid time": 0.25}
    alone = {"ended by": "validation max_layers", "decision share": 0.1}
    line = growth_pays._defaults_across([row, tie, alone])
    # Own rule in most seeds: all three of the first basin, one of two of the third.
    assert line == ("Growth ended by its own rule in 4 of 6 runs, most seeds on 1 of 3 "
                    "basins. At or above the validation "
                    "pick on 2 of 2 basins, median difference 0.050. At or above the best "
                    "fixed depth on 1 of 2 basins, median difference -0.025. Decisions took "
                    "a median 0.125 of a growing fit's time (largest 0.500). A growing fit "
                    "took a median 0.750 of the time of fitting every depth of the grid "
                    "(largest 1.250; at most 0.5 on 1 of 2 basins). An epoch of a grown "
                    "architecture took a median 1.250 times one of the fixed network of its "
                    "depth (1.250 to 1.250 over 1 basins).")


def test_the_changes_table_pairs_each_change_with_the_defaults_of_its_seeds(growth_pays):
    def run(variant, seed, nse, rule, seconds=10.0, basin="a", budget=80):
        return {**_recorded_run(), "basin": basin, "variant": variant, "seed": seed,
                "max_epochs": budget, "test_nse": nse, "n_layers": 2, "stop_rule": rule,
                "fit_seconds": seconds, "growth_seconds": 1.0 + (variant == "defaults")}
    runs = [run("defaults", 0, 0.80, "max_epochs"), run("defaults", 1, 0.70, "max_epochs"),
            run("defaults", 2, 0.10, "validation"),            # no changed run: left out
            run("defaults-cap30", 0, 0.90, "validation", 20.0),
            run("defaults-cap30", 1, 0.60, "max_epochs", 5.0),
            run("defaults-cap30", 3, 0.99, "validation"),      # no defaults run: left out
            run("defaults-cap30", 0, 0.99, "validation", budget=120),   # another budget
            run("defaults", 0, 0.50, "threshold", basin="b"),
            run("defaults-cap30", 0, 0.40, "threshold", 8.0, basin="b"),
            run("growth", 0, 0.99, "max_epochs")]
    rows = growth_pays.changes_table(runs)
    assert [(r["change"], r["basin"], r["seeds"]) for r in rows] == [
        ("cap30", "a", "0 1"), ("cap30", "b", "0")]
    a = rows[0]
    assert (a["defaults NSE"], a["changed NSE"]) == pytest.approx((0.75, 0.75))
    assert a["defaults ended by"] == "max_epochs max_epochs"
    assert a["changed ended by"] == "validation max_epochs"
    assert a[growth_pays.TIME_RATIO] == pytest.approx((2.0 + 0.5) / 2)
    assert a["defaults decision share"] == pytest.approx(0.2)
    assert a["changed decision share"] == pytest.approx((1.0 / 20.0 + 1.0 / 5.0) / 2)
    # Basin a: 1 of 2 runs by the rule is not most; basin b: 1 of 1 is.
    assert growth_pays._changes_across(rows) == (
        "cap30: own rule in 2 of 3 runs, most seeds on 1 of 2 basins; median basin NSE "
        "0.575 (defaults: 1 of 3 runs, most seeds on 1 of 2 basins; median basin NSE "
        "0.625); change of NSE median -0.050, worst -0.100; fit time 1.025 times the "
        "defaults' (median basin); decisions took a median 0.125 of a fit's time "
        "(defaults: 0.200).")


def test_the_line_under_a_basin_table_counts_how_growth_ended(growth_pays):
    basins = [{"growth NSE": 0.9, "validation pick NSE": 0.9, "best fixed NSE": 0.9,
               "ended by": ended} for ended in
              ("threshold validation", "budget max_layers", "max_layers max_layers")]
    line = growth_pays._across(basins)
    assert "stopped by itself in 2 of 6 runs, in every run on 1 basins" in line
    assert "3 of 6 runs ended at max_layers" in line


def test_the_batch_size_study_compares_auto_with_every_batch_size(tmp_path):
    done = run_script("recipe.py", "--quick", "--base", "one-layer", "--basins",
                      "lahn_kalkofen", "--configs", "batch-16", "batch-32", "--last-years",
                      "3", "--out", tmp_path)
    results = json.loads((tmp_path / "recipe.json").read_text())["results"]
    runs = results["runs"]
    assert {(r["basin"], r["batch_size"]) for r in runs} == {
        ("lahn_kalkofen_last3y", 16), ("lahn_kalkofen_last3y", 32)}
    (row,) = results["batch_sizes"]
    assert row["training windows"] == runs[0]["train_windows"] > 0
    assert row["auto picks"] == auto_batch_size(row["training windows"])
    picked = row[f"NSE at {row['auto picks']}"]
    assert row["best - auto"] == pytest.approx(max(row["NSE at 16"], row["NSE at 32"]) - picked)
    assert "batch_size='auto' against the best batch size" in done.stdout


def test_batch_sizes_two_by_two_match_every_relabelling_counted():
    import itertools
    import statistics

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import recipe
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    values = {"a": ([0.9, 0.8], [0.5, 0.6]), "b": ([0.3, 0.35], [0.1, 0.4]),
              "c": ([-9.0, -8.0], [-7.0, -6.5])}  # c: a record no network learns
    runs = [{"basin": basin, "config": f"batch-{size}", "seed": seed, "test_nse": nse,
             "train_windows": 800, "years": 5.0}
            for basin, pair in values.items()
            for size, nses in zip((16, 32), pair, strict=True)
            for seed, nse in enumerate(nses)]
    (row,) = recipe.batch_pairs(runs)

    def median_difference(groups):
        return statistics.median(statistics.median(g[:2]) - statistics.median(g[2:])
                                 for g in groups)

    measured = median_difference([p[0] + p[1] for p in values.values()])
    # Every way to give two of each basin's four runs to batch 16, counted.
    relabelled = [median_difference([[v[i] for i in (*pick, *sorted(set(range(4)) - set(pick)))]
                                     for v, pick in zip([p[0] + p[1] for p in values.values()],
                                                        picks, strict=True)])
                  for picks in itertools.product(itertools.combinations(range(4), 2),
                                                 repeat=3)]
    assert (row["smaller"], row["larger"], row["basins"]) == (16, 32, 3)
    assert row["smaller at or above"] == 2
    assert row["median difference (smaller - larger)"] == pytest.approx(measured)
    assert row["p (chance, two-sided)"] == pytest.approx(
        sum(abs(r) >= abs(measured) - 1e-12 for r in relabelled) / len(relabelled), abs=0.03)


def test_a_group_name_runs_each_of_its_basins(tmp_path):
    run_script("recipe.py", "--quick", "--base", "one-layer", "--basins", "lahn",
               "--configs", "batch-16", "--out", tmp_path)
    runs = json.loads((tmp_path / "recipe.json").read_text())["results"]["runs"]
    assert sorted(r["basin"] for r in runs) == [
        "lahn_dillenburg", "lahn_kalkofen", "lahn_leun", "lahn_marburg"]


def test_interval_study_scores_every_band_and_replays_its_records(tmp_path):
    run_script("ensemble.py", "--intervals", "--quick", "--basins", "lahn_kalkofen_last3y",
               "--rates", "0.05", "--save-predictions", "--out", tmp_path, timeout=600)
    runs = json.loads((tmp_path / "intervals.json").read_text())["results"]["runs"]
    assert sorted(r["calibration"] for r in runs) == ["blocks", "validation"]
    for run in runs:
        # The ensemble's adaptive band is centred on the corrected forecast; both bands
        # with and without the classes of the forecast floods.
        assert set(run["methods"]) == {"fixed", "corrected-0.05", "fixed by high-flow class",
                                       "corrected-0.05 by high-flow class"}
        fixed = run["methods"]["fixed"]
        assert list(fixed["levels"]) == ["0.5", "0.8", "0.9", "0.95"]
        assert fixed["coverage"] == fixed["levels"]["0.9"]["coverage"]
        # Every member's growth is recorded: how it ended and its epochs by architecture.
        assert len(run["growth"]) == len(run["depths"])
        for member, depth in zip(run["growth"], run["depths"], strict=True):
            assert member["stop_rule"] in ("threshold", "validation", "max_layers",
                                           "max_epochs", "not_computable")
            assert sum(member["architecture_epochs"]) == member["epochs"]
            assert len(member["architecture_epochs"]) >= depth
    replay = run_script("ensemble.py", "--intervals", "--records",
                        tmp_path / "intervals_jobs.jsonl", "--out", tmp_path / "replay").stdout
    # The default scale is named in every band's label.
    assert "| validation fixed, flow scale | 1 |" in replay
    assert "| blocks corrected-0.05, flow scale | 1 |" in replay
    assert "Ensemble NSE with calibration='blocks' minus with 'validation' (same seed)" in replay
    # Scored again from the saved predictions: the ensemble's own scale gives the
    # ensemble's own bands (up to the float32 noise of predicting the whole series at
    # once), and the other scale is scored too, and the adaptive band centred on the
    # mean beside the corrected one.
    rescored = run_script("ensemble.py", "--intervals", "--rescore", tmp_path, "--rates", "0.05",
                          "--out", tmp_path / "rescored").stdout
    again = [json.loads(line) for line in
             (tmp_path / "rescored" / "intervals_jobs.jsonl").read_text().splitlines()]
    (fitted,) = [r for r in runs if r["calibration"] == "validation"]
    assert sorted(r["scale"] for r in again) == ["flow", "spread"]
    (same,) = [r for r in again if r["scale"] == fitted["scale"]]
    assert same["nse"] == pytest.approx(fitted["nse"], abs=1e-6)
    for method, scores in fitted["methods"].items():
        for level, band in scores["levels"].items():
            assert same["methods"][method]["levels"][level]["coverage"] == pytest.approx(
                band["coverage"], abs=0.01)
            assert same["methods"][method]["levels"][level]["mean_width"] == pytest.approx(
                band["mean_width"], rel=1e-3)
    # The corrected forecast's skill: the ensemble's own correction on the fresh fit,
    # the saved predictions' on the rescore.
    for name in ("mean", "corrected", "persistence"):
        assert same["forecast_nse"][name] == pytest.approx(fitted["forecast_nse"][name],
                                                           abs=1e-5)
    assert same["forecast_nse"]["corrected"] != same["forecast_nse"]["mean"]
    assert "The corrected forecast at or above persistence on " in rescored
    # Forecasts days ahead: at one day the frozen band is the band itself.
    leads = same["leads"]
    assert list(leads) == ["1", "2", "3", "5", "10"]
    assert leads["1"]["coverage"] == leads["1"]["frozen_coverage"]
    assert leads["10"]["n"] < leads["1"]["n"]  # no forecast from before the test days
    assert "| days ahead | basins | adaptive: within 87-93 % |" in rescored
    assert "| validation adaptive-0.05, flow scale | 1 |" in rescored
    assert "| validation corrected-0.05, flow scale | 1 |" in rescored
    # The ensemble's default bands by high-flow class, and the same without the classes.
    assert "| validation corrected-0.05 by high-flow class, flow scale | 1 |" in rescored
    assert "| validation fixed by high-flow class, flow scale | 1 |" in rescored
    assert ("Width of the corrected adaptive band by high-flow class over the corrected "
            "adaptive band's (flow scale, same ensembles): median ") in rescored
    assert ("CRPS of the corrected adaptive band over the one centred on the mean (same "
            "ensembles): median ") in rescored
    assert "| validation adaptive-0.05 | 1 |" in rescored  # the spread scale
    assert "CRPS with the flow scale over the spread scale's (same ensembles)" in rescored
    assert "| median distance from 90 % | median high-flow coverage | high flows within 10 " \
        "points |" in rescored


def test_forecast_skill_scores_each_forecast_on_the_days_persistence_can_be_made():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import ensemble as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    y = np.array([1.0, 3.0, np.nan, 4.0, 2.0, 5.0])
    mean = np.array([1.5, 2.0, 2.0, 3.0, 3.0, 4.0])
    corrected = np.array([1.5, 2.5, 2.0, 3.5, 2.5, 4.5])
    skill = module.forecast_skill(y, mean, corrected)["forecast_nse"]
    # Day 0 has no day before it, days 2 and 3 no observed flow of their own or the
    # day before: days 1, 4 and 5 are scored, persistence forecasting 1, 4 and 2.
    days, before = np.array([3.0, 2.0, 5.0]), np.array([1.0, 4.0, 2.0])

    def nse(sim):
        return 1 - np.sum((days - sim) ** 2) / np.sum((days - days.mean()) ** 2)

    assert skill["persistence"] == pytest.approx(nse(before))
    assert skill["mean"] == pytest.approx(nse(np.array([2.0, 3.0, 4.0])))
    assert skill["corrected"] == pytest.approx(nse(np.array([2.5, 2.5, 4.5])))


def test_interval_tables_count_basins_against_the_goals():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import ensemble as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def run(basin, cover, high, scale="flow"):
        level = {"coverage": cover, "mean_width": 1.0, "relative_width": 1.0,
                 "high_flow_coverage": high, "n_high_flow": 0 if high != high else 5}
        return {"basin": basin, "seed": 0, "calibration": "validation", "scale": scale,
                "years": 5.0, "nse": 0.5,
                "methods": {"fixed": {"levels": {"0.9": level}, "crps": 1.0}}}

    # 0.8 is exactly 10 points below nominal (it counts); 0.79 is not; NaN (no high
    # flows in the test days) is left out of both counts.
    runs = [run("a", 0.93, 0.8), run("b", 0.86, 0.79), run("c", 0.90, math.nan),
            run("a", 0.95, 0.5, "spread"), run("b", 0.9, 0.9, "spread")]
    overall, _ = module.interval_tables(runs)
    flow = next(line for line in overall.splitlines() if "| validation fixed, flow scale |" in line)
    cells = [c.strip() for c in flow.strip("|").split("|")]
    assert cells[2] == "2 of 3"  # within 87-93 %: 0.93 and 0.90, not 0.86
    assert cells[5] == "3.0%"  # median distance from 90 %: of 3, 4 and 0 points
    assert cells[7] == "1 of 2"  # high flows within 10 points
    # Per basin, the high-flow days those coverages count.
    per_basin = module.compact_table(runs, 0.05).splitlines()
    assert per_basin[0].endswith("| seeds | high-flow test days |")
    assert per_basin[2].startswith("| a |") and per_basin[2].endswith("| 1 | 5 |")
    assert per_basin[4].startswith("| c |") and per_basin[4].endswith("| 1 | 0 |")
    # How the members' growth ended: a basin counts where most of its members (over all
    # its runs) ended by the threshold or the validation rule; runs without records of
    # their members' growth are left out.
    def members(*rules):
        return [{"stop_rule": r, "epochs": 10, "architecture_epochs": [10]} for r in rules]

    grown = [{"basin": "a", "growth": members("validation", "max_epochs")},
             {"basin": "a", "growth": members("threshold")},
             {"basin": "b", "growth": members("max_epochs", "validation")},
             {"basin": "c", "growth": members("max_layers")}, {"basin": "d"},
             {"basin": "c", "calibration": "blocks", "growth": members("validation") * 3}]
    table = module.growth_table(grown)
    assert "| a | 3 | max_epochs 1, threshold 1, validation 1 | 2 |" in table
    assert "| b | 2 | max_epochs 1, validation 1 | 1 |" in table and "| d |" not in table
    assert "in most members on 1 of 3 basins" in table
    assert module.growth_table(runs) == ""


def test_a_markdown_table_has_a_column_for_a_key_the_first_row_lacks(growth_pays):
    table = growth_pays.C.markdown_table([{"basin": "a"}, {"basin": "b", "best": 0.5}])
    assert table.splitlines()[0] == "| basin | best |"
    assert table.splitlines()[2:] == ["| a |  |", "| b | 0.500 |"]


def test_growth_pays_resumes_with_only_the_missing_jobs(tmp_path):
    arguments = ("growth_pays.py", "--quick", "--basins", "lahn_kalkofen", "--seeds", "1",
                 "--variants", "fixed-1", "fixed-2", "--out", tmp_path)
    run_script(*arguments)
    log = tmp_path / "growth_jobs.jsonl"
    first, _ = (json.loads(line) for line in log.read_text().splitlines())
    kept = {**first, "fit_seconds": 12345.0}  # a mark no new fit would carry
    log.write_text(json.dumps(kept) + "\n")
    run_script(*arguments, "--resume")
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert runs[0] == kept and len(runs) == 2
    assert {r["variant"] for r in runs} == {"fixed-1", "fixed-2"}
    # Without --resume the log starts afresh.
    run_script(*arguments)
    assert all(json.loads(line)["fit_seconds"] != 12345.0
               for line in log.read_text().splitlines())


def test_the_factor_study_summarizes_each_record_length_on_its_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import recipe
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def run(basin, years, config, nse):
        return {"basin": basin, "years": years, "config": config, "seed": 0,
                "test_nse": nse, "test_kge": nse, "best_epoch": 1, "epochs": 2,
                "fit_seconds": 1.0}

    runs = [run("a", 3.001, "reference", 0.8), run("a", 3.001, "lookback-90", 0.7),
            run("b", 2.9, "reference", 0.6), run("b", 2.9, "lookback-90", 0.3),
            run("c", 5.002, "reference", 0.5), run("c", 5.002, "lookback-90", 0.9)]
    configs = ["reference", "lookback-90"]
    rows = recipe.summarize(runs, configs)
    table = recipe.across_lengths(rows, configs, runs)
    change = {(r["years"], r["configuration"]): r["median change of test NSE vs reference"]
              for r in table}
    assert change[3, "lookback-90"] == pytest.approx((-0.1 - 0.3) / 2)
    assert change[5, "lookback-90"] == pytest.approx(0.4)
    assert [r["basins"] for r in table] == [2, 2, 1, 1]
    same_length = [r for r in runs if r["basin"] != "c"]
    assert recipe.across_lengths(recipe.summarize(same_length, configs), configs,
                                 same_length) == []
    # Records made before the length was recorded: no table by length, no error.
    unknown = [{k: v for k, v in r.items() if k != "years"} for r in runs]
    assert recipe.across_lengths(recipe.summarize(unknown, configs), configs, unknown) == []
    # Replayed together with newer records, they are left out of the table by length.
    mixed = runs + [{**r, "basin": "d"} for r in unknown[:2]]
    assert recipe.across_lengths(recipe.summarize(mixed, configs), configs, mixed) == table


def test_the_batch_study_compares_batch_sizes_on_the_same_seeds():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import recipe
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def run(config, seed, nse):
        return {"basin": "a", "years": 10.0, "train_windows": 2014, "config": config,
                "seed": seed, "test_nse": nse}

    # Seed 1 ran for batch 16 only: its 0.5 pulled batch 16's median below batch 256's.
    runs = [run("batch-16", 0, 0.92), run("batch-16", 1, 0.5), run("batch-256", 0, 0.9)]
    rows, _ = recipe.batch_table(runs)
    assert rows[0]["seeds"] == 1 and rows[0]["NSE at 16"] == 0.92
    assert rows[0]["best batch"] == 16
    # A diverged fit (no finite NSE) is left out, as if it had not run.
    rows, _ = recipe.batch_table([*runs, run("batch-256", 1, float("nan"))])
    assert rows[0]["seeds"] == 1 and rows[0]["NSE at 256"] == 0.9
    assert recipe.batch_pairs([*runs, run("batch-256", 1, float("nan"))])[0]["basins"] == 1


def test_a_replay_of_named_basins_tables_their_runs_only(tmp_path):
    runs = [{"basin": basin, "config": config, "seed": 0, "test_nse": nse,
             "train_windows": 800, "years": 5.0, "test_kge": nse, "best_epoch": 10,
             "epochs": 20, "fit_seconds": 1.0}
            for basin, nse in (("lahn_kalkofen_last5y", 0.9), ("spotpy_hymod", 0.5))
            for config in ("batch-16", "batch-32")]
    log = tmp_path / "recipe_jobs.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in runs))
    run_script("recipe.py", "--records", log, "--configs", "batch-16", "batch-32",
               "--basins", "spotpy", "--out", tmp_path / "out")
    results = json.loads((tmp_path / "out" / "recipe.json").read_text())["results"]
    assert {r["basin"] for r in results["runs"]} == {"spotpy_hymod"}


def test_the_chance_of_a_shortfall_matches_every_relabelling_counted():
    import itertools
    import statistics

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import recipe
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    values = [0.0, 0.1, 0.2, 0.8, 0.9, 1.25]
    runs = list(zip([16, 16, 32, 32, 64, 64], values, strict=True))
    # Every way to give two of the values to each batch size, counted (16 is the pick).
    exact = []
    for first in itertools.combinations(range(6), 2):
        rest = [i for i in range(6) if i not in first]
        for second in itertools.combinations(rest, 2):
            groups = (first, second, [i for i in rest if i not in second])
            medians = [statistics.median(values[i] for i in group) for group in groups]
            exact.append(max(medians) - medians[0])
    measured = 1.075 - 0.05
    out = recipe._shortfall_by_chance(runs, 16, measured)
    assert out["p (chance)"] == pytest.approx(
        sum(e >= measured for e in exact) / len(exact), abs=0.02)
    assert out["best - auto by chance"] == pytest.approx(statistics.median(exact), abs=0.03)
    assert statistics.median(exact) > 0.1
    assert math.isnan(recipe._shortfall_by_chance(runs, 128, 0.1)["p (chance)"])  # not run
    # A shortfall no relabelling reaches: the measured labelling is one of them, p > 0.
    assert recipe._shortfall_by_chance(runs, 16, 5.0)["p (chance)"] == pytest.approx(
        1 / (recipe.PERMUTATIONS + 1))
