"""An ensemble of members against a single model, at the package defaults.

Usage::

    python benchmarks/ensemble.py --data ../shared/data/DemoData.xlsx   # Lahn and Yuliang
    python benchmarks/ensemble.py --quick                               # seconds (CI)
    python benchmarks/ensemble.py --records benchmarks/records/ensemble.json

For each basin (the embedded Lahn data, and the research demo table when ``--data`` is
given) the first 80 % of the rows fit (the estimator validates on the last 20 % of
those, which also calibrates the intervals) and the last 20 % test. One
``TLAGEnsemble`` of ``--members`` default ``TLAGRegressor`` members is fitted with
``n_jobs=--jobs`` worker processes of one torch thread each. Every member *is* a single
model (the same defaults, its own seed), so the single-model figures are the members'
own: their mean (what one fit with a random seed gives on average), median and range
of test NSE and KGE, and their median fit time (measured
inside each member's ``fit``, in a worker that had a core to itself when ``--jobs`` is
at most the number of cores). The ensemble's figures: test NSE and KGE of the mean,
coverage and mean width of the 90 % intervals on the test days, CRPS of the calibrated
predictive distribution (``scoringrules``), and the wall time of the whole ensemble fit.

``--intervals`` is the interval study instead: on the basins of ``_basins.py``
(``--basins``, names or groups), for every ensemble seed, one ensemble per calibration
(``--calibrations``: ``validation``, the split-conformal default, and ``blocks``); each
is fitted on the first 80 % of the days (inputs standardized on those days) and scored
on the last 20 % with the fixed band and with the adaptive band at each rate of
``--rates`` (each test day's band adapts to the observations of the days before it;
``corrected-<rate>`` in the records: centred on the forecast corrected by the last
observed error, the ensemble's default; ``adaptive-<rate>``: centred on the mean, as
every record before the correction), each also ``by high-flow class`` (the days the
mean forecasts above the high-flow threshold with a band of their own, the ensemble's
default).
Per method: coverage at 50/80/90/95 %, mean width over the test days' standard
deviation, coverage of the high flows (days above the fit period's 90th percentile)
and CRPS; and the test NSE of the forecast corrected by the last observed error (the
adaptive band's centre) against the members' mean and persistence. Ensembles (basin x
seed x calibration) run in ``--jobs`` processes, members
one after another on one torch thread, and are appended to ``intervals_jobs.jsonl`` in
``--out`` as they finish (``--resume`` skips those; ``--records`` replays).

    python benchmarks/ensemble.py --intervals --basins lahn_short spotpy --seeds 3 --jobs 2

``--rescore DIR ...`` scores the saved ensembles of earlier ``--save-predictions`` runs
again, with the scores in units of each scale of ``--scales`` (``spread``, ``flow``:
``TLAGEnsemble(scale=...)``), from the members' predictions alone: the same bands
without refitting (validation calibration; the scores of a saved scale must come out
as saved, or it stops), the adaptive band both centred on the mean and corrected, and
the fixed and the corrected band by high-flow class.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import _basins
import numpy as np  # noqa: E402
from _common import (  # noqa: F401 (REPO_ROOT puts the checkout on the path)
    OWN_RULES,
    REPO_ROOT,
    TRAIN_FRACTION,
    base_parser,
    counts,
    demo_dataset,
    fmt,
    lahn_dataset,
    machine_info,
    markdown_table,
    median,
    read_jsonl,
    resumed,
    run_logged,
    seeds_from,
    spread,
    warm_up,
    write_results,
)

from sktlag.conformal import ADAPT_RATE  # noqa: E402 (the import above put it on the path)

QUICK = {"hidden_size": 4, "lookback": 10, "max_epochs": 3, "max_epochs_per_layer": 2,
         "max_layers": 2, "batch_size": 64, "derivative_samples": 16,
         "num_power_iterations": 6}
COVERAGE = 0.9


def run_basin(data: dict, members: int, jobs: int, quick: bool, seed: int) -> dict:
    from sktlag import TLAGEnsemble, TLAGRegressor
    from sktlag.metrics import kge, nse

    X, y, n = data["X"], data["y"], data["n_train"]
    member = TLAGRegressor(**(QUICK if quick else {}), n_threads=1)
    ensemble = TLAGEnsemble(member, n_members=members, n_jobs=jobs, random_state=seed)
    start = time.perf_counter()
    ensemble.fit(X[:n], y[:n])
    wall = time.perf_counter() - start
    X_test, y_test = X[n:], y[n:]
    # The test period directly follows the fit period: its first windows read the last
    # fit rows as history, as in the command.
    history = X[:n]
    single = []
    for m in ensemble.estimators_:
        pred = m.predict(X_test, history=history)
        single.append({"seed": int(m.random_state), "n_layers": int(m.n_layers_),
                       "nse": float(nse(y_test, pred)), "kge": float(kge(y_test, pred)),
                       "fit_s": float(m.fit_time_)})
    mean = ensemble.predict(X_test, history=history)
    scores = ensemble.score_intervals(X_test, y_test, coverage=COVERAGE, history=history)
    out = scores["outputs"][0]
    return {
        "basin": data["name"],
        "note": data["note"],
        "n_fit_rows": int(n),
        "n_test_rows": int(len(y_test)),
        "members": single,
        "ensemble": {"nse": float(nse(y_test, mean)), "kge": float(kge(y_test, mean)),
                     "coverage": out["coverage"], "mean_width": out["mean_width"],
                     "crps": out["crps"], "wall_s": wall},
        "target_std": float(np.std(y_test)),
        "jobs": jobs,
    }


def _jobs(run: dict) -> int:
    """Worker processes of a run; records written before they were stored used 2."""
    return run.get("jobs", 2)


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        nses = [m["nse"] for m in r["members"]]
        kges = [m["kge"] for m in r["members"]]
        one = median([m["fit_s"] for m in r["members"]])
        e = r["ensemble"]
        rows.append({
            "basin": r["basin"],
            "jobs": _jobs(r),
            "test days": r["n_test_rows"],
            "test std": fmt(r["target_std"]),
            "single NSE: mean, median (range)":
                f"{fmt(np.mean(nses))}, {fmt(median(nses))} ({fmt(min(nses))} to "
                f"{fmt(max(nses))})",
            "ensemble NSE": fmt(e["nse"]),
            "gain over mean, median":
                f"{e['nse'] - np.mean(nses):+.3f}, {e['nse'] - median(nses):+.3f}",
            "single KGE: mean, median": f"{fmt(np.mean(kges))}, {fmt(median(kges))}",
            "ensemble KGE": fmt(e["kge"]),
            "90 % coverage": f"{e['coverage']:.1%}",
            "mean width": fmt(e["mean_width"]),
            "CRPS": fmt(e["crps"]),
            "depths": ",".join(str(m["n_layers"]) for m in r["members"]),
            "one fit [s]: median (range)":
                f"{one:.0f} ({min(m['fit_s'] for m in r['members']):.0f} to "
                f"{max(m['fit_s'] for m in r['members']):.0f})",
            # Time ratios are printed by compare_jobs, against members that had a core
            # each: with more processes than cores the members' own times stretch.
            "ensemble [s]": f"{e['wall_s']:.0f}",
        })
    return markdown_table(rows)


def compare_jobs(runs: list[dict]) -> str:
    """Wall time of the same ensemble fitted with different numbers of processes.

    The reference of every ratio is the median member fit of the run with the fewest
    processes (there each member had a core to itself, if it had no more processes than
    cores); with more processes than cores the members' own fit times are stretched.
    """
    lines = []
    for basin in dict.fromkeys(r["basin"] for r in runs):
        same = sorted((r for r in runs if r["basin"] == basin), key=lambda r: _jobs(r))
        if len(same) < 2:
            continue
        one = median([m["fit_s"] for m in same[0]["members"]])
        walls = ", ".join(
            f"{r['ensemble']['wall_s']:.0f} s with {_jobs(r)} processes (ratio "
            f"{r['ensemble']['wall_s'] / one:.2f})" for r in same
        )
        lines.append(f"{basin}: one fit {one:.0f} s; ensemble {walls}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- interval study
#: Steps of the adaptive band scored by the interval study.
RATES = (0.005, 0.01, 0.02, 0.05)


def interval_job(job: dict) -> dict:
    """Fit one ensemble on one basin and score every band on its test days."""
    import torch
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGEnsemble, TLAGRegressor
    from sktlag.metrics import nse

    torch.set_num_threads(1)
    basin = _basins.load_basins([job["basin"]], demo_path=job["demo_path"])[0]
    X, y = basin.X.to_numpy(np.float64), basin.y.to_numpy(np.float64)
    if job["rows"]:
        X, y = X[-job["rows"]:], y[-job["rows"]:]
    n = int(len(X) * TRAIN_FRACTION)
    X = StandardScaler().fit(X[:n]).transform(X).astype(np.float32)
    member = TLAGRegressor(**(QUICK if job["quick"] else {}), n_threads=1,
                           missing_target="mask")
    ensemble = TLAGEnsemble(member, n_members=job["members"], random_state=job["seed"],
                            calibration=job["calibration"])
    start = time.perf_counter()
    ensemble.fit(X[:n], y[:n])
    fit_seconds = time.perf_counter() - start
    test, history = X[n:], X[:n]
    observed = ~np.isnan(y[n:])
    mean = ensemble.predict(test, history=history)
    corrected = ensemble.predict_corrected(test, y[n:], history=history)
    methods = {}
    # The bands with and without the classes of the forecast floods (the fit does not
    # depend on them), named as --rescore names the same bands.
    for classes in (None, "high_flow"):
        ensemble.band_classes_ = classes
        tail = f" {CLASSES}" if classes else ""
        methods[f"fixed{tail}"] = ensemble.score_intervals(test, y[n:], history=history)
        for rate in job["rates"]:
            methods[_adaptive_method(rate, ensemble.error_correction) + tail] = (
                ensemble.score_intervals(test, y[n:], history=history, adaptive=True,
                                         adapt_rate=rate))
    if job.get("save_predictions"):
        # Everything a new band needs, to be scored without refitting.
        members = np.stack([m.predict(X) for m in ensemble.estimators_])
        name = f"{job['basin']}_{job['seed']}_{job['calibration']}.npz"
        np.savez_compressed(
            Path(job["save_predictions"]) / name, members=members, y=y, n_fit=n,
            scores=ensemble.calibration_scores_[:, 0], spread_offset=ensemble.spread_offset_,
            threshold=ensemble.high_flow_threshold_, scale=ensemble.scale,
            corrected_scores=ensemble.corrected_scores_[:, 0],
            error_coefficient=ensemble.error_coefficient_)
    return {
        **{k: job[k] for k in ("basin", "seed", "calibration", "members")},
        "scale": ensemble.scale,
        "years": len(X) / _basins.DAYS_PER_YEAR,
        "nse": float(nse(y[n:][observed], mean[observed])),
        **forecast_skill(y[n:], mean, corrected),
        "error_coefficient": float(ensemble.error_coefficient_[0]),
        "fit_seconds": fit_seconds,
        "depths": [int(d) for d in ensemble.n_layers_],
        # How each member's growth ended: every member is a growing fit at the defaults.
        "growth": [{"stop_rule": m.growth_stop_rule_, "epochs": len(m.history_),
                    "architecture_epochs": [a["last_epoch"] - a["first_epoch"] + 1
                                            for a in m.growth_history_]}
                   for m in ensemble.estimators_],
        "calibration_scores": len(ensemble.calibration_scores_),
        "methods": {name: scores["outputs"][0] for name, scores in methods.items()},
    }


def forecast_skill(y: np.ndarray, mean: np.ndarray, corrected: np.ndarray) -> dict:
    """``{"forecast_nse": {...}}``: the test NSE of the members' mean, of the forecast
    corrected by the last observed error, and of persistence (tomorrow's flow is
    today's: the naive forecast a corrected one has to beat), all three on the days
    whose flow and the day before's are observed."""
    from sktlag.metrics import nse

    before = np.r_[np.nan, y[:-1]]
    days = np.isfinite(y) & np.isfinite(before)
    return {"forecast_nse": {name: float(nse(y[days], values[days])) for name, values in
                             (("mean", mean), ("corrected", corrected),
                              ("persistence", before))}}


def _adaptive_method(rate: float, correction: str | None) -> str:
    """The name of an adaptive band in the records: ``adaptive-<rate>`` centred on the
    mean (every record before the error correction), ``corrected-<rate>`` on the
    corrected forecast."""
    return f"{'corrected' if correction else 'adaptive'}-{rate:g}"


def rescored_job(path: Path, scale: str, rates) -> dict:
    """The bands of one saved ensemble with its scores in units of ``scale``: the same
    arithmetic as ``TLAGEnsemble`` (``sktlag.conformal``) on the saved predictions, the
    adaptive band both centred on the mean and on the corrected forecast."""
    from sktlag.conformal import (
        REPORTED_COVERAGES,
        LeadCalibration,
        corrected_centre,
        error_coefficient,
        high_flow_classes,
        interval_scale,
        lead_scores,
        scale_levels,
        score_bands,
    )
    from sktlag.metrics import nse

    saved = np.load(path)
    basin, seed, calibration = path.stem.rsplit("_", 2)
    members, y = saved["members"], saved["y"][:, None]
    n, n_scores = int(saved["n_fit"]), len(saved["scores"])
    # The validation windows are the last windows of the fit period.
    valid, test = slice(n - n_scores, n), slice(n, len(y))
    mean, std = members.mean(axis=0)[:, None], members.std(axis=0)[:, None]
    offset, level = scale_levels(mean[valid], std[valid])
    u = interval_scale(std, offset, mean, level if scale == "flow" else None)
    calibration_scores = (y[valid] - mean[valid]) / u[valid]
    # Files written before the flow scale hold scores in units of the spread.
    if (str(saved["scale"]) if "scale" in saved.files else "spread") == scale:
        np.testing.assert_allclose(calibration_scores[:, 0], saved["scores"], atol=1e-5,
                                   err_msg=f"{path.name}: the {scale} scores differ from "
                                   "the saved ones")
    # The corrected forecast: the validation windows corrected by their own errors, the
    # test days by those of the test days before them.
    phi = error_coefficient(y[valid] - mean[valid])
    centre = np.concatenate([corrected_centre(mean[part], y[part], phi)
                             for part in (valid, test)])
    u_corrected = interval_scale(std[n - n_scores:], offset, centre,
                                 level if scale == "flow" else None)
    corrected_scores = (y[valid] - centre[:n_scores]) / u_corrected[:n_scores]
    if "corrected_scores" in saved.files and str(saved["scale"]) == scale:
        np.testing.assert_allclose(corrected_scores[:, 0], saved["corrected_scores"],
                                   atol=1e-5, err_msg=f"{path.name}: the corrected scores "
                                   "differ from the saved ones")
    flow = level if scale == "flow" else None

    def leads_of(coefficient, first_pool) -> LeadCalibration:
        """The test days' calibration of every lead, as TLAGEnsemble keeps it."""
        def pool(lead):
            if lead <= 1:
                return (calibration_scores, first_pool)[lead]
            return lead_scores(y[valid] - mean[valid], mean[valid], coefficient, lead,
                               lambda c: interval_scale(std[valid], offset, c, flow))
        return LeadCalibration(mean[test], coefficient,
                               lambda c: interval_scale(std[test], offset, c, flow),
                               functools.cache(pool))

    corrected_leads = leads_of(phi, corrected_scores)
    # The days and windows the mean forecasts above the high-flow threshold, and the rest.
    classes = tuple(high_flow_classes(mean[part], saved["threshold"]) for part in (test, valid))
    fixed = (False, ADAPT_RATE, mean[test], u[test], calibration_scores, None)
    bands = {"fixed": (*fixed, None), f"fixed {CLASSES}": (*fixed, classes)}
    for r in rates:
        bands[_adaptive_method(r, None)] = (True, r, mean[test], u[test], calibration_scores,
                                            leads_of(np.zeros(1), calibration_scores), None)
        corrected = (True, r, centre[n_scores:], u_corrected[n_scores:], corrected_scores,
                     corrected_leads)
        bands[_adaptive_method(r, "ar1")] = (*corrected, None)
        bands[f"{_adaptive_method(r, 'ar1')} {CLASSES}"] = (*corrected, classes)
    methods = {}
    for name, (adaptive, rate, centre_, scale_, scores, leads, classes_) in bands.items():
        out = score_bands(y[test], centre_, scale_, scores, REPORTED_COVERAGES,
                          saved["threshold"], adaptive, rate, leads=leads,
                          classes=classes_)[0]
        methods[name] = {**out["levels"][f"{COVERAGE:g}"], **out}
    observed = np.isfinite(y[test, 0])
    return {"basin": basin, "seed": int(seed), "calibration": calibration,
            "members": len(members), "scale": scale,
            "years": len(y) / _basins.DAYS_PER_YEAR,
            "nse": float(nse(y[test, 0][observed], mean[test, 0][observed])),
            **forecast_skill(y[test, 0], mean[test, 0], centre[n_scores:, 0]),
            "rescored_from": path.name, "error_coefficient": float(phi[0]),
            "methods": methods, "leads": lead_study(corrected_leads, y[test])}


#: The name's tail of a band with a class of its own for the forecast floods
#: (``--rescore``).
CLASSES = "by high-flow class"


#: Days ahead the interval study scores forecasts at (``--rescore``).
LEADS = (1, 2, 3, 5, 10)


def lead_study(leads, y: np.ndarray) -> dict[str, dict]:
    """Per lead ``k`` of :data:`LEADS`: how the default adaptive band holds for the
    forecasts issued ``k`` days ahead from every observed test day (the band a day gets
    ``k`` days after the last observed one), and how the band of the day after the last
    observation, kept for ``k`` days, held ("frozen": every day after the last
    observation got it before the longer leads were calibrated). Coverage and width as
    :func:`sktlag.conformal.interval_coverage` counts them, on the days with a forecast
    of that lead."""
    from sktlag.conformal import interval_coverage, lead_bounds

    bands = {k: lead_bounds(leads, y, k, COVERAGE, ADAPT_RATE) for k in {1, *LEADS}}
    _, _, one_low, one_high = bands[1]
    out = {}
    for k in LEADS:
        centre, scale, low, high = bands[k]
        days = np.isfinite(centre[:, 0])
        # The lead-one band issued on the day after the forecast's origin.
        kept = np.full_like(one_low, np.nan), np.full_like(one_high, np.nan)
        kept[0][k:], kept[1][k:] = one_low[1:len(y) - k + 1], one_high[1:len(y) - k + 1]
        observed = np.where(days, y[:, 0], np.nan)
        scores = {name: interval_coverage(observed, (centre + scale * lo)[:, 0],
                                          (centre + scale * hi)[:, 0])
                  for name, (lo, hi) in (("adaptive", (low, high)), ("frozen", kept))}
        out[str(k)] = {**scores["adaptive"],
                       **{f"frozen_{key}": value for key, value in scores["frozen"].items()}}
    return out


def _percent(share: float) -> str:
    return fmt(share) if share != share else f"{share:.1%}"  # NaN: "n/a"


def _method_label(run: dict, method: str) -> str:
    # Runs recorded before the flow scale are in units of the spread.
    scale = run.get("scale", "spread")
    return f"{run['calibration']} {method}" + ("" if scale == "spread" else f", {scale} scale")


def interval_tables(runs: list[dict], coverage: str = "0.9") -> tuple[str, str]:
    """Per basin: each band's coverage and width at ``coverage`` (medians over seeds);
    across basins: how many basins each band holds within 87-93 %, and its width
    over the split-conformal band's where that one covers."""
    by_basin: dict[str, dict[str, list[dict]]] = {}
    nses: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        nses.setdefault((run["basin"], run["calibration"]), []).append(run["nse"])
        for method, scores in run["methods"].items():
            by_basin.setdefault(run["basin"], {}).setdefault(
                _method_label(run, method), []).append(scores)
    rows, per_method = [], {}
    for basin, methods in by_basin.items():
        split = methods.get("validation fixed")
        split_width = median([s["levels"][coverage]["mean_width"] for s in split]) if split \
            else float("nan")
        split_cover = median([s["levels"][coverage]["coverage"] for s in split]) if split \
            else float("nan")
        for label, scores in methods.items():
            level = [s["levels"][coverage] for s in scores]
            cover = median([x["coverage"] for x in level])
            width = median([x["mean_width"] for x in level])
            calibration = label.split()[0]
            rows.append({
                "basin": basin, "band": label, "seeds": len(scores),
                "ensemble NSE": median(nses[(basin, calibration)]),
                **{f"{float(c):.0%}": _percent(median([s["levels"][c]["coverage"]
                                                       for s in scores]))
                   for c in scores[0]["levels"]},
                "90 % range": spread([x["coverage"] for x in level]),
                "width / test std": median([x["relative_width"] for x in level]),
                "width / split": width / split_width,
                "high flows": median([x["high_flow_coverage"] for x in level]),
                "CRPS": median([s["crps"] for s in scores]),
            })
            entry = per_method.setdefault(label, {"held": 0, "basins": 0, "covers": [],
                                                  "ratios": [], "high": []})
            entry["basins"] += 1
            entry["held"] += int(0.87 <= cover <= 0.93)
            entry["covers"].append(cover)
            entry["high"].append(median([x["high_flow_coverage"] for x in level]))
            if split_cover >= 0.87:
                entry["ratios"].append(width / split_width)
    overall = [{
        "band": label,
        "basins": e["basins"],
        "90 % band within 87-93 %": f"{e['held']} of {e['basins']}",
        "median coverage": _percent(median(e["covers"])),
        "coverage range": spread(e["covers"]),
        # How far from nominal a basin's band typically lands, over or under.
        "median distance from 90 %":
            f"{median([abs(c - float(coverage)) for c in e['covers']]):.1%}",
        "median high-flow coverage": _percent(median(e["high"])),
        # The goal: within 10 points of nominal, on basins whose test days reach the
        # high flows.
        "high flows within 10 points": "{} of {}".format(
            sum(round(h - float(coverage), 9) >= -0.1 for h in e["high"] if h == h),
            sum(h == h for h in e["high"])),
        "width / split where split covers (median)": median(e["ratios"]),
    } for label, e in per_method.items()]
    # What the held-out blocks cost the ensemble's accuracy, basin by basin, between
    # ensembles of the same seed (the same members' seeds).
    nse_of = {(r["basin"], r["seed"], r["calibration"]): r["nse"] for r in runs}
    cost = {}
    for b in by_basin:
        pairs = [nse_of[(b, s, "blocks")] - nse_of[(b, s, "validation")]
                 for (basin, s, c) in nse_of
                 if basin == b and c == "blocks" and (b, s, "validation") in nse_of]
        if pairs:
            cost[b] = pairs
    note = _median_line("Ensemble NSE with calibration='blocks' minus with 'validation' "
                        "(same seed)", cost, "+.3f")
    # The predictive distribution of each scale, on the same ensembles.
    crps: dict[tuple[str, int, str], float] = {
        (r["basin"], r["seed"], r.get("scale", "spread")): r["methods"]["fixed"]["crps"]
        for r in runs if r["calibration"] == "validation"}
    ratios = {}
    for (basin, seed, scale), value in crps.items():
        if scale == "flow" and (basin, seed, "spread") in crps:
            ratios.setdefault(basin, []).append(value / crps[(basin, seed, "spread")])
    note += _median_line("CRPS with the flow scale over the spread scale's (same ensembles)",
                         ratios)
    # The adaptive band's predictive distribution, corrected against centred on the mean,
    # on the same ensembles (the distribution does not depend on the rate).
    method, plain = (_adaptive_method(ADAPT_RATE, c) for c in ("ar1", None))
    corrected: dict[str, list[float]] = {}
    for r in runs:
        if method in r["methods"] and plain in r["methods"]:
            corrected.setdefault(r["basin"], []).append(
                r["methods"][method]["crps"] / r["methods"][plain]["crps"])
    note += _median_line("CRPS of the corrected adaptive band over the one centred on the "
                         "mean (same ensembles)", corrected)
    note += _classes_lines(runs, method, coverage)
    return markdown_table(overall) + note, markdown_table(rows)


def _classes_lines(runs: list[dict], method: str, coverage: str) -> str:
    """What a band of its own for the forecast floods changes in the band ``method`` of
    the flow scale, on the same ensembles: its width, and its coverage of the high flows
    basin by basin (medians over seeds)."""
    widths: dict[str, list[float]] = {}
    high: dict[str, tuple[list[float], list[float]]] = {}
    for r in runs:
        by_class = r["methods"].get(f"{method} {CLASSES}")
        if by_class is None or r.get("scale", "spread") != "flow":
            continue
        one, own = (m["levels"][coverage] for m in (r["methods"][method], by_class))
        widths.setdefault(r["basin"], []).append(own["mean_width"] / one["mean_width"])
        pair = high.setdefault(r["basin"], ([], []))
        pair[0].append(one["high_flow_coverage"])
        pair[1].append(own["high_flow_coverage"])
    note = _median_line(f"Width of the corrected adaptive band {CLASSES} over the "
                        "corrected adaptive band's (flow scale, same ensembles)", widths)
    changes = [median(own) - median(one) for one, own in high.values()
               if median(one) == median(one)]  # NaN: no high flow among the test days
    if changes:
        higher = sum(round(c, 9) > 0 for c in changes)
        lower = sum(round(c, 9) < 0 for c in changes)
        note += (f"\nIts coverage of the high flows against the corrected adaptive band's: "
                 f"higher on {higher}, lower on {lower}, the same on "
                 f"{len(changes) - higher - lower} of {len(changes)} basins (median change "
                 f"{median(changes):+.3f}, from {min(changes):+.3f} to {max(changes):+.3f})\n")
    return note


def _median_line(label: str, by_basin: dict[str, list[float]], form: str = ".3f") -> str:
    """A summary line under the table: the median over basins of each basin's median
    (and their range), or nothing where no basin has a value."""
    if not by_basin:
        return ""
    per_basin = [median(values) for values in by_basin.values()]
    return (f"\n{label}: median {median(per_basin):{form}} ({spread(per_basin)}) over "
            f"{len(per_basin)} basins\n")


def compact_table(runs: list[dict], rate: float, coverage: str = "0.9") -> str:
    """Per basin, at ``coverage``: the fixed band of each calibration and the adaptive
    band of ``rate`` of the validation calibration, with the spread scale, and the same
    two of the validation calibration with the flow scale where runs have it, and the
    corrected adaptive band of the same rate, also by high-flow class: coverage (of all
    days / of the high flows) and width over the test days' standard deviation, and the
    number of high-flow test days; medians over seeds."""
    rows = []
    years = {r["basin"]: r["years"] for r in runs}
    adaptive, corrected = (_adaptive_method(rate, c) for c in (None, "ar1"))
    columns = [("validation", "fixed", "spread", "fixed, validation"),
               ("blocks", "fixed", "spread", "fixed, blocks"),
               ("validation", adaptive, "spread", adaptive),
               ("validation", "fixed", "flow", "fixed, flow scale"),
               ("validation", adaptive, "flow", f"{adaptive}, flow scale"),
               ("validation", corrected, "flow", f"{corrected}, flow scale"),
               ("validation", f"{corrected} {CLASSES}", "flow",
                f"{corrected} {CLASSES}, flow scale")]
    # Only the columns some run has.
    present = {(r["calibration"], m, r.get("scale", "spread")) for r in runs
               for m in r["methods"]}
    for basin in years:
        row = {"basin": basin, "years": f"{years[basin]:.1f}"}
        for calibration, method, scale, label in columns:
            if (calibration, method, scale) not in present:
                continue
            same = [r for r in runs if r["basin"] == basin and r["calibration"] == calibration
                    and r.get("scale", "spread") == scale and method in r["methods"]]
            if not same:
                row[label] = "n/a"
                continue
            level = [r["methods"][method]["levels"][coverage] for r in same]
            row[label] = (f"{_percent(median([x['coverage'] for x in level]))} / "
                          f"{_percent(median([x['high_flow_coverage'] for x in level]))}, "
                          f"{median([x['relative_width'] for x in level]):.2f}")
            if method == "fixed" and scale == "spread":
                row[f"NSE, {calibration}"] = median([r["nse"] for r in same])
        row["seeds"] = len({r["seed"] for r in runs if r["basin"] == basin})
        # How many days the high-flow coverage counts: on a few, one day moves it by
        # tens of points.
        counts = [level["n_high_flow"] for r in runs
                  if r["basin"] == basin and "fixed" in r["methods"]
                  for level in [r["methods"]["fixed"]["levels"][coverage]]
                  if "n_high_flow" in level]
        row["high-flow test days"] = f"{median(counts):g}" if counts else "n/a"
        rows.append(row)
    return markdown_table(rows)


def forecast_table(runs: list[dict]) -> str:
    """Per basin (medians over seeds), the test NSE of the members' mean, of the forecast
    corrected by the last observed error and of persistence, on the same days, and
    lines that count the basins where the corrected forecast is at or above each; empty
    where no run recorded them (runs before the corrected forecast was scored)."""
    by_basin: dict[str, list[dict]] = {}
    for run in runs:
        if "forecast_nse" in run and run.get("scale", "flow") == "flow" \
                and run["calibration"] == "validation":
            by_basin.setdefault(run["basin"], []).append(run)
    if not by_basin:
        return ""
    rows = []
    for basin, same in by_basin.items():
        skill = {name: median([r["forecast_nse"][name] for r in same])
                 for name in ("mean", "corrected", "persistence")}
        rows.append({"basin": basin, "years": f"{same[0]['years']:.1f}", "seeds": len(same),
                     "error coefficient": median([r["error_coefficient"] for r in same]),
                     **{f"NSE, {name}": value for name, value in skill.items()},
                     "corrected - mean": skill["corrected"] - skill["mean"],
                     "corrected - persistence": skill["corrected"] - skill["persistence"]})
    lines = "".join(
        f"\nThe corrected forecast at or above {other} on "
        f"{sum(row['corrected - ' + other] >= 0 for row in rows)} of {len(rows)} basins; "
        f"median difference {median([row['corrected - ' + other] for row in rows]):+.3f}\n"
        for other in ("mean", "persistence"))
    return markdown_table(rows) + lines


def lead_tables(runs: list[dict]) -> tuple[str, str]:
    """Across basins and per basin (medians over seeds; flow scale, validation
    calibration): the default adaptive band of the forecasts issued 1 to 10 days
    ahead, against the band of the day after the last observation kept that long.
    Empty where no run scored leads (fresh fits: ``--rescore`` scores them)."""
    by_basin: dict[str, list[dict]] = {}
    for run in runs:
        if "leads" in run and run.get("scale") == "flow" and run["calibration"] == "validation":
            by_basin.setdefault(run["basin"], []).append(run)
    if not by_basin:
        return "", ""
    leads = list(next(iter(by_basin.values()))[0]["leads"])

    def med(same, lead, key):
        return median([r["leads"][lead][key] for r in same])

    overall, rows = [], []
    for lead in leads:
        row = {"days ahead": lead, "basins": len(by_basin)}
        for band, prefix in (("adaptive", ""), ("frozen", "frozen_")):
            covers = [med(same, lead, f"{prefix}coverage") for same in by_basin.values()]
            row[f"{band}: within 87-93 %"] = f"{sum(0.87 <= c <= 0.93 for c in covers)} of " \
                                            f"{len(covers)}"
            row[f"{band}: median coverage"] = _percent(median(covers))
            row[f"{band}: range"] = spread(covers)
            row[f"{band}: width / test std"] = median(
                [med(same, lead, f"{prefix}relative_width") for same in by_basin.values()])
        overall.append(row)
    for basin, same in by_basin.items():
        rows.append({"basin": basin, "years": f"{same[0]['years']:.1f}", "seeds": len(same),
                     **{f"{lead} d": f"{_percent(med(same, lead, 'coverage'))} / "
                                     f"{_percent(med(same, lead, 'frozen_coverage'))}"
                        for lead in leads}})
    return markdown_table(overall), markdown_table(rows)


def growth_table(runs: list[dict]) -> str:
    """Per basin, how the members' growth ended in the validation-calibrated ensembles
    (every member a growing fit at the defaults on the whole fit period; runs recorded
    before members' growth was kept are left out), and a line with the count over
    basins."""
    rows, own_basins = [], 0
    plain = [r for r in runs if r.get("calibration", "validation") == "validation"]
    for basin in dict.fromkeys(r["basin"] for r in plain):
        members = [m for r in plain if r["basin"] == basin for m in r.get("growth", [])]
        if not members:
            continue
        rules = [m["stop_rule"] for m in members]
        own = sum(rule in OWN_RULES for rule in rules)
        own_basins += own > len(members) / 2
        rows.append({
            "basin": basin, "members": len(members),
            "ended by": counts(rules),
            "by its own rule": own,
            "epochs (median)": median([m["epochs"] for m in members]),
            "architectures' epochs": " / ".join(
                " ".join(map(str, m["architecture_epochs"])) for m in members),
        })
    if not rows:
        return ""
    return (markdown_table(rows) + f"\nGrowth ended by its own rule ({', '.join(OWN_RULES)}) "
            f"in most members on {own_basins} of {len(rows)} basins.\n")


def run_intervals(args) -> None:
    log = args.out / "intervals_jobs.jsonl"
    if args.rescore:
        # A block's score needs the member that left it out: only the validation
        # calibration is scored again.
        paths = sorted(p for folder in args.rescore for p in folder.glob("*_validation.npz"))
        if not paths:
            raise SystemExit("no saved predictions of validation-calibrated ensembles "
                             f"(*_validation.npz) in {', '.join(map(str, args.rescore))}")
        args.out.mkdir(parents=True, exist_ok=True)
        done = sorted((rescored_job(p, scale, args.rates) for p in paths for scale in args.scales),
                      key=lambda r: (round(r["years"], 1), r["basin"], r["seed"], r["scale"]))
        log.write_text("".join(json.dumps(run) + "\n" for run in done))
    elif args.records:
        done = [run for path in args.records for run in read_jsonl(path)]
    else:
        done = resumed(log, args.resume)
    finished = {(r["basin"], r["seed"], r["calibration"]) for r in done}
    names = [b.name for b in _basins.load_basins(args.basins or ["lahn_short"],
                                                 demo_path=args.data)]
    if args.quick:
        names = names[:1]
    seeds = [] if args.records or args.rescore else seeds_from(args)
    members = 2 if args.quick else args.members
    # Seed-major: every basin and calibration gets a seed before any gets the next.
    jobs = [{"basin": b, "seed": s, "calibration": c, "members": members,
             "rates": list(args.rates), "quick": args.quick,
             "save_predictions": str(args.out) if args.save_predictions else None,
             "rows": 600 if args.quick else None,
             "demo_path": str(args.data) if args.data else None}
            for s in seeds for b in names for c in args.calibrations
            if (b, s, c) not in finished]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = list(done) + run_logged(
        interval_job, jobs, args.jobs, log,
        lambda r: (f"{r['basin']:<26} seed {r['seed']} {r['calibration']:<10} NSE "
                   f"{r['nse']:.3f} 90 %: fixed {r['methods']['fixed']['coverage']:.1%}, "
                   f"{r['fit_seconds']:.0f} s"))
    overall, per_basin = interval_tables(runs)
    adaptive = _adaptive_method(ADAPT_RATE, None)
    write_results(
        args.out, "intervals", "Prediction intervals on new years",
        [("Across basins (90 % bands)", overall),
         (f"Per basin: 90 % coverage of all days / of high flows, width over the test "
          f"std (fixed bands; {adaptive}: the adaptive band at the default rate)",
          compact_table(runs, ADAPT_RATE)),
         ("Per basin, every band", per_basin),
         *([("The forecast corrected by the last observed error: test NSE against the "
             "members' mean and persistence (flow scale, validation calibration)", skill)]
           if (skill := forecast_table(runs)) else []),
         *([("Forecasts days ahead: the 90 % band of a forecast issued 1 to 10 days "
             "after the last observed day, against the band of the day after it kept "
             "that long (frozen); flow scale, validation calibration", by_lead[0]),
            ("Per basin: 90 % coverage of the forecasts of each lead, adaptive / frozen",
             by_lead[1])] if (by_lead := lead_tables(runs))[0] else []),
         *([("How the members' growth ended", growth)] if (growth := growth_table(runs))
           else [])],
        {"runs": runs},
        {"members": members, "rates": list(args.rates), "calibrations": args.calibrations,
         "seeds": seeds, "member_params": QUICK if args.quick else "TLAGRegressor() defaults",
         "member_threads": 1, "jobs": args.jobs},
        machine_info(threads=1), time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--data", type=Path, default=None,
                        help="the research demo table (DemoData.xlsx) for the Yuliang basin")
    parser.add_argument("--members", type=int, default=5, help="ensemble members (5)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes fitting members (2: one per core here)")
    parser.add_argument("--basins", nargs="+", default=None,
                        help="basins to run: lahn and yuliang (yuliang needs --data); with "
                        "--intervals, names or groups of _basins.py (default lahn_short)")
    parser.add_argument("--intervals", action="store_true",
                        help="the interval study on the basin set (see the module notes)")
    parser.add_argument("--calibrations", nargs="+", default=["validation", "blocks"],
                        choices=["validation", "blocks"], help="with --intervals")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES),
                        help="steps of the adaptive band, with --intervals")
    parser.add_argument("--resume", action="store_true",
                        help="with --intervals: skip ensembles already in intervals_jobs.jsonl")
    parser.add_argument("--save-predictions", action="store_true",
                        help="with --intervals: also write every member's predictions and "
                        "the calibration scores of each ensemble (<basin>_<seed>_<calibration>"
                        ".npz in --out), to score other bands without refitting")
    parser.add_argument("--rescore", type=Path, nargs="+", default=None, metavar="DIR",
                        help="with --intervals: score the ensembles saved by "
                        "--save-predictions in DIR again, in units of each of --scales")
    parser.add_argument("--scales", nargs="+", default=["spread", "flow"],
                        choices=["spread", "flow"], help="with --rescore")
    parser.add_argument("--records", type=Path, nargs="+", default=None,
                        help="print the tables of earlier runs' JSON instead of running (a "
                        "later file replaces an earlier run of the same basin and processes)")
    args = parser.parse_args(argv)
    if args.intervals:
        run_intervals(args)
        return
    args.basins = args.basins or ["lahn", "yuliang"]
    unknown = sorted(set(args.basins) - {"lahn", "yuliang"})
    if unknown:
        parser.error(f"without --intervals the basins are lahn and yuliang, not {unknown}")
    if args.records is not None:
        # A later record replaces an earlier run of the same basin and process count
        # (a rerun on a quiet machine).
        latest = {}
        for path in args.records:
            for run in json.loads(path.read_text())["results"]["basins"]:
                latest[(run["basin"], _jobs(run))] = run
        runs = sorted(latest.values(), key=lambda r: _jobs(r))
        print(table(runs))
        print()
        print(compare_jobs(runs))
        return
    members = 2 if args.quick else args.members
    start = time.perf_counter()
    warm_up()
    datasets = []
    if "lahn" in args.basins:
        datasets.append(lahn_dataset(rows=400 if args.quick else None))
    if "yuliang" in args.basins and args.data is not None:
        datasets.append(demo_dataset(args.data, rows=400 if args.quick else None))
    results = []
    for data in datasets:
        result = run_basin(data, members, args.jobs, args.quick, seed=0)
        results.append(result)
        print(table([result]), flush=True)
    text = table(results)
    print()
    print(text)
    settings = {"members": members, "jobs": args.jobs, "coverage": COVERAGE,
                "member_params": QUICK if args.quick else "TLAGRegressor() defaults",
                "member_threads": 1, "ensemble_random_state": 0}
    write_results(
        args.out, "ensemble", "Ensemble against single models",
        [("Test period (last 20 % of the rows)", text)],
        {"basins": results}, settings, machine_info(threads=1),
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    sys.exit(main())
