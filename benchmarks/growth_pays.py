"""Does growth pay? Growing TLAG-LSTM against every fixed depth, on every basin we have.

For each basin and seed this fits (protocol of the design guide, section 6):

- ``defaults``: the package defaults as they are (growth with its own stop rules: how
  growth ends, fit time and accuracy exactly as a user gets them);
- ``growth``: the package defaults (growth from one layer);
- ``growth-keep`` (or ``growth-fresh``): the same with the other way of continuing after
  an insertion (Adam's state kept for the existing layers, or Adam re-created);
- ``growth-difference`` and ``growth-exact``: the same with the other kinds of the
  eigensolver's Hessian-vector products (``hessian_products``: differences of gradients
  on the fast fused kernels, or double backward through the virtual layers; ``growth``
  itself records the default, exact products of the Hamiltonian's second-order
  expansion);
- ``growth-holdout``: the defaults with ``derivative_criterion="holdout"`` (positions
  chosen, and every decision's held-out statistic recorded, by that criterion);
- ``fixed-k`` for k = 1 .. ``max_layers``: depth k, growth off, trained to early
  stopping under the same patience (its epoch cap per architecture is the whole budget);
- ``random`` and ``append_zero``: the same growth rules, but the layer goes to a random
  position along a random direction, or a zero layer goes on top (ablations);
- ``research-rule``: the research code's rule: the raw derivative against its threshold
  (0.01) and no validation rule, so growth runs while any derivative exceeds it.

Inputs are standardized by a ``StandardScaler`` in a ``Pipeline``; fit on the first 80 %
of the days (the estimator validates on the last 20 % of those); predict the whole
series; score NSE on the last 20 % of the days.

Every growing fit also records, for every architecture it tried, the test NSE of that
architecture's best validation state. With that, ``--replay`` evaluates other values of
the stop rules (derivative threshold, validation margin) and of the model selection
exactly, without refitting: a rule that stops earlier follows the same path up to the
stop. Jobs run in ``--jobs`` processes; each finished job is appended to
``growth_jobs.jsonl`` at once, so an interrupted run keeps what it finished.

Usage::

    python benchmarks/growth_pays.py --data path/to/DemoData.xlsx \\
        --vistula path/to/modelskill.whl --seeds 3 --jobs 12 --device cuda
    python benchmarks/growth_pays.py --replay OUT/growth_jobs.jsonl [MORE.jsonl ...]
    python benchmarks/growth_pays.py --quick
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import _basins
import _common as C
import numpy as np
from skorch.callbacks import Callback

#: The research code's derivative threshold (on its own, raw, derivative).
RESEARCH_THRESHOLD = 0.01

QUICK: dict[str, Any] = {
    "hidden_size": 8, "lookback": 20, "max_epochs": 12, "max_epochs_per_layer": 4,
    "patience": 2, "moving_avg_window": 2, "derivative_samples": 32,
    "num_power_iterations": 10, "max_layers": 3,
}


#: Growing fits record with the loosest rules (every decision inserts, margin 0), so
#: that the defaults and any stricter rules can be replayed from them (see ``replay``).
#: The position is the default criterion's choice: another criterion replays exactly
#: up to the first decision with more than one position, where it might choose another.
RECORDING = {"topo_derivative_threshold": -math.inf, "min_improvement": 0.0}
#: The defaults with one setting changed (variants ``defaults-NAME``): what lets growth's
#: own rules end it where the epoch budget does today, and what the decisions cost.
DEFAULTS_CHANGES = {"cap30": {"max_epochs_per_layer": 30}, "patience5": {"patience": 5},
                    "difference": {"hessian_products": "difference"},
                    "exact": {"hessian_products": "exact"},
                    "tol0.03": {"eigensolver_tol": 3e-2},
                    "samples64": {"derivative_samples": 64}}


#: The kinds of Hessian-vector products with a recording of their own
#: (``growth-<kind>``), to set against ``growth``, whose default kind (the expansion)
#: needs none.
PRODUCT_KINDS = ("difference", "exact")


def variants(max_layers: int) -> dict[str, dict[str, Any]]:
    """Parameter changes of every compared model, relative to the defaults."""
    from sktlag import TLAGRegressor

    other = "keep" if TLAGRegressor().growth_optimizer == "fresh" else "fresh"
    out: dict[str, dict[str, Any]] = {
        "defaults": {},
        **{f"defaults-{name}": dict(change) for name, change in DEFAULTS_CHANGES.items()},
        "growth": dict(RECORDING),
        f"growth-{other}": {**RECORDING, "growth_optimizer": other},
    }
    for k in range(1, max_layers + 1):
        out[f"fixed-{k}"] = {"initial_num_layers": k, "max_layers": k,
                             "topo_derivative_threshold": math.inf, "fixed": True}
    for kind in PRODUCT_KINDS:
        out[f"growth-{kind}"] = {**RECORDING, "hessian_products": kind}
    # The held-out criterion's own recording: its positions, its values at every decision.
    out["growth-holdout"] = {**RECORDING, "derivative_criterion": "holdout"}
    out["random"] = {**RECORDING, "growth_strategy": "random"}
    out["append_zero"] = {**RECORDING, "growth_strategy": "append_zero"}
    out["research-rule"] = {"topo_derivative_threshold": RESEARCH_THRESHOLD,
                            "derivative_criterion": "raw", "min_improvement": -math.inf}
    return out


class ArchitectureSnapshots(Callback):
    """Keep the best validation state of every architecture of a growing fit."""

    def initialize(self):
        self.best_ = {}
        return self

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        depth, score = row.get("n_layers"), row.get("valid_score")
        # At an insertion epoch the module already holds the new layer: skip it.
        if depth is None or depth != net.module_.num_layers or score is None:
            return
        if not math.isfinite(score):
            return
        if depth not in self.best_ or score > self.best_[depth]["score"]:
            self.best_[depth] = {
                "score": float(score), "epoch": int(row["epoch"]),
                "spec": net.module_.get_spec(),
                "state": copy.deepcopy(net.module_.state_dict()),
            }


def _architecture_test_scores(model, snapshots, X, obs, n_fit) -> dict[int, float]:
    """Test NSE of every architecture's best state (swapped into the fitted net)."""
    from sktlag.metrics import nse
    from sktlag.model import GrowingLSTM

    est = model[-1]
    fitted = est.net_.module_
    device = next(fitted.parameters()).device
    keep = ~np.isnan(obs)
    out = {}
    try:
        for depth, snap in snapshots.items():
            module = GrowingLSTM.from_spec(snap["spec"]).to(device)
            module.load_state_dict(snap["state"])
            est.net_.module_ = module
            pred = np.asarray(model.predict(X)).ravel()[n_fit:]
            out[depth] = float(nse(obs[keep], pred[keep]))
    finally:
        est.net_.module_ = fitted
    return out


def variant_names(names: list[str] | None, max_layers: int, error) -> list[str]:
    """The variants to run: all without ``names``; ``"fixed"`` stands for every fixed
    depth up to ``max_layers``; an unknown name is passed to ``error`` with the known."""
    known = list(variants(max_layers))
    if not names:
        return known
    fixed = [v for v in known if v.startswith("fixed-")]
    out = list(dict.fromkeys(n for name in names for n in (fixed if name == "fixed" else [name])))
    unknown = [n for n in out if n not in known]
    if unknown:
        error(f"unknown variant(s) {', '.join(unknown)} with max_layers {max_layers}; "
              f"known: fixed, {', '.join(known)}")
    return out


def _positions(row: dict[str, Any], prefix: str) -> list[float]:
    """The per-position values ``<prefix>1, <prefix>2, ...`` of a decision row."""
    columns = sorted((c for c in row if c.startswith(prefix) and c[len(prefix):].isdigit()),
                     key=lambda c: int(c[len(prefix):]))
    return [float(row[c]) for c in columns
            if row[c] is not None and not (isinstance(row[c], float) and math.isnan(row[c]))]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one model variant on one basin with one seed."""
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktlag import TLAGRegressor
    from sktlag.metrics import kge, nse

    torch.set_num_threads(job["threads"])
    basin = _basins.load_basins([job["basin"]], demo_path=job["demo_path"],
                                vistula_path=job["vistula_path"])[0]
    X, y = basin.X, basin.y
    if job["quick"]:
        X, y = X.iloc[-1500:], y.iloc[-1500:]
    n_fit = int(len(X) * C.TRAIN_FRACTION)
    change = dict(variants(job["max_layers"])[job["variant"]])
    fixed = change.pop("fixed", False)
    params = dict(QUICK) if job["quick"] else {}
    if job.get("max_epochs"):
        params["max_epochs"] = job["max_epochs"]
    params.update(change)
    if fixed:
        params["max_epochs_per_layer"] = params.get("max_epochs", TLAGRegressor().max_epochs)
    snapshots = ArchitectureSnapshots()
    est = TLAGRegressor(**params, device=job["device"], n_threads=job["threads"],
                        random_state=job["seed"], missing_target="mask",
                        callbacks=[("snapshots", snapshots)])
    model = make_pipeline(StandardScaler(), est)
    start = time.perf_counter()
    model.fit(X.iloc[:n_fit], y.iloc[:n_fit])
    fit_seconds = time.perf_counter() - start
    obs = y.to_numpy(dtype=float)[n_fit:]
    keep = ~np.isnan(obs)
    pred = np.asarray(model.predict(X)).ravel()[n_fit:]
    est = model[-1]
    arch_test = _architecture_test_scores(model, snapshots.best_, X, obs, n_fit)
    decisions = []
    history = est.derivative_history_
    for row in history.to_dict("records") if len(history) else []:
        raw = _positions(row, "derivative_")
        loss = row.get("loss_before", math.nan)
        decisions.append({
            "n_layers_before": int(row["n_layers_before"]),
            "epoch": int(row["epoch"]),
            "architecture_score": row.get("architecture_score"),
            "raw": raw,
            "relative": [d / (2 * loss) if loss and loss > 0 else math.nan for d in raw],
            "holdout": _positions(row, "holdout_statistic_"),
            "rule": row.get("rule"),
            "position": row.get("position"),
            "seconds": float(row.get("seconds", 0.0) or 0.0),
        })
    seconds = {}
    for row in est.history_:
        seconds[row["n_layers"]] = seconds.get(row["n_layers"], 0.0) + float(row["dur"])
    return {
        **{k: job[k] for k in ("basin", "variant", "seed", "device")},
        "test_nse": float(nse(obs[keep], pred[keep])),
        "test_kge": float(kge(obs[keep], pred[keep])),
        "valid_nse": est.best_score_,
        "n_layers": int(est.n_layers_),
        "stop_rule": est.growth_stop_rule_,
        "max_epochs": est.max_epochs,
        "max_epochs_per_layer": est.max_epochs_per_layer,
        "epochs": len(est.history_),
        # Every epoch's moving-average validation score: where two runs share their
        # first architecture, this shows they trained alike.
        "valid_ma": [float(v) for v in est.history_[:, "valid_nse_ma"]],
        "fit_seconds": fit_seconds,
        "growth_seconds": sum(d["seconds"] for d in decisions),
        "decisions": decisions,
        "architectures": record_architectures(est.growth_history_, seconds, arch_test),
    }


def record_architectures(growth_history, seconds: dict[int, float],
                         test_nse: dict[int, float]) -> list[dict[str, Any]]:
    """A record's architectures from ``growth_history_``, one per depth: a parent that
    trained on after its grown successor did not pay appears twice in the history, but
    is one architecture (its epochs in ``stretches``, first and last of each)."""
    archs = {}
    for a in growth_history:
        arch = archs.setdefault(a["n_layers"], {
            "n_layers": a["n_layers"], "epochs": 0, "stretches": [],
            "seconds": seconds.get(a["n_layers"], 0.0), "best_valid": -math.inf,
            "best_valid_ma": -math.inf, "test_nse": test_nse.get(a["n_layers"])})
        arch["epochs"] += a["last_epoch"] - a["first_epoch"] + 1
        arch["stretches"].append([a["first_epoch"], a["last_epoch"]])
        arch["best_valid"] = max(arch["best_valid"], a["best_valid_nse"])
        arch["best_valid_ma"] = max(arch["best_valid_ma"], a["best_valid_nse_ma"])
    return list(archs.values())


# ------------------------------------------------------------------------ analysis
def load_records(paths: list[Path], cap: int | None = None) -> list[dict[str, Any]]:
    """The runs of several ``growth_jobs.jsonl`` records, taken together.

    Records may come from different machines (each run names its device); a run of the
    same basin, variant and seed in two of them is an error, since a replay pairs each
    growing run with the fixed-depth runs of its basin and seed. Runs recorded before
    runs named their ``max_epochs_per_layer`` get ``cap`` (when given).
    """
    results, seen = [], {}
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            run = json.loads(line)
            key = (run["basin"], run["variant"], run["seed"])
            if key in seen:
                raise ValueError(f"{path}: basin {key[0]!r}, variant {key[1]!r}, seed "
                                 f"{key[2]} was already read from {seen[key]}")
            seen[key] = path
            if cap is not None:
                run.setdefault("max_epochs_per_layer", cap)
            results.append(run)
    return results


def _by(results, **match):
    return [r for r in results if all(r[k] == v for k, v in match.items())]


#: The record's list of each ``derivative_criterion`` (decisions recorded before the
#: held-out statistic existed have no ``"holdout"`` list).
CRITERION_KEYS = {"relative": "relative", "raw": "raw", "holdout": "holdout"}
#: The recording variant each criterion is replayed and correlated on: the one that chose
#: its positions by that criterion (the held-out statistic is computed only there).
CRITERION_VARIANT = {"relative": "growth", "raw": "growth", "holdout": "growth-holdout"}


def replayable(run: dict[str, Any], criterion: str) -> bool:
    """Whether every decision of ``run`` recorded the values ``criterion`` compares."""
    return all(CRITERION_KEYS[criterion] in d for d in run["decisions"])


def replay(run: dict[str, Any], threshold: float, margin: float, select: str,
           criterion: str = "relative", trained_on: dict[str, Any] | None = None,
           cap: int | None = None) -> dict[str, Any]:
    """What a growing run would have returned under other stop rules and selection.

    ``threshold`` applies to the largest value of a decision under ``criterion``
    (relative derivative, raw derivative or held-out statistic), ``margin`` to the
    moving-average validation score of each grown architecture against the best before
    it, ``select`` ("moving_average" or "epoch") picks the returned architecture. Exact
    for rules that stop no later than the recorded run, with one exception: growth that
    ends at an architecture's epoch cap lets it train on to its own plateau, which the
    recording did not do. At the first decision, that training is the fixed-depth run
    of the same depth and seed (``trained_on``: identical up to the decision, and
    after it exactly as the package trains on); without it, the replay says
    ``"exact": False``. A stop at a later architecture's cap is replayed as if training
    ended there (at the defaults the budget ends before a second architecture has its
    cap). Nor is a validation stop exact where the recording grew on: when the
    architecture it rejects ended before its cap and its parent at the cap (the run's
    ``max_epochs_per_layer``), the package trains that parent on, which the recording
    did not do.
    """
    if not replayable(run, criterion):
        raise ValueError(f"the run recorded no {criterion!r} values to replay")
    archs = {a["n_layers"]: a for a in run["architectures"]}
    visited = [run["architectures"][0]["n_layers"]]
    best_ma = archs[visited[0]]["best_valid_ma"]
    stop = "recorded run ended"
    parent_trains_on = False
    for decision in run["decisions"]:
        depth = decision["n_layers_before"]
        if depth != visited[-1]:
            break
        if decision["rule"] not in ("inserted",):
            stop = decision["rule"]
            break
        compared = [v for v in decision[CRITERION_KEYS[criterion]]
                    if v is not None and math.isfinite(v)]
        if not compared or max(compared) <= threshold:
            stop = "threshold"
            break
        nxt = depth + 1
        if nxt not in archs:
            break
        visited.append(nxt)
        score = archs[nxt]["best_valid_ma"]
        if not any(d["n_layers_before"] == nxt for d in run["decisions"]):
            # The budget ended it before a decision; at its cap it is judged all the same.
            if cap is not None and archs[nxt]["epochs"] >= cap and not score > best_ma + margin:
                stop = "validation"
            break
        if not score > best_ma + margin:
            stop = "validation"
            run_cap = run.get("max_epochs_per_layer")
            recorded_here = any(d["n_layers_before"] == nxt and d["rule"] == "validation"
                                for d in run["decisions"])
            parent_trains_on = (run_cap is not None and not recorded_here
                                and archs[depth]["epochs"] >= run_cap
                                and archs[nxt]["epochs"] < run_cap)
            break
        best_ma = max(best_ma, score)
    first_decision_stop = len(visited) == 1 and stop != "recorded run ended"
    if first_decision_stop and trained_on is not None:
        decided = [x["seconds"] for x in run["decisions"][:1] if stop != "validation"]
        return {"n_layers": visited[0], "test_nse": trained_on["test_nse"], "stop": stop,
                "depths_tried": 1, "epochs": trained_on["epochs"],
                "seconds": trained_on["fit_seconds"] + sum(decided),
                "decision_seconds": sum(decided), "exact": True}
    key = "best_valid_ma" if select == "moving_average" else "best_valid"
    chosen = max(visited, key=lambda d: archs[d][key])
    epochs = sum(archs[d]["epochs"] for d in visited)
    # Wall time: the recorded fit less the epochs of the architectures not visited
    # and the decisions taken after the last visited architecture ended.
    skipped = sum(a["seconds"] for d, a in archs.items() if d not in visited)
    skipped += sum(x["seconds"] for x in run["decisions"] if x["n_layers_before"] > visited[-1])
    if stop == "validation":  # a validation stop computes no derivative
        skipped += sum(x["seconds"] for x in run["decisions"]
                       if x["n_layers_before"] == visited[-1])
    return {"n_layers": chosen, "test_nse": archs[chosen]["test_nse"], "stop": stop,
            "depths_tried": len(visited), "epochs": epochs,
            "seconds": run["fit_seconds"] - skipped,
            "decision_seconds": sum(
                x["seconds"] for x in run["decisions"]
                if x["n_layers_before"] < visited[-1]
                or (x["n_layers_before"] == visited[-1] and stop != "validation")),
            "exact": not (first_decision_stop or parent_trains_on)}


def trained_on(results, run: dict[str, Any]) -> dict[str, Any] | None:
    """The fixed-depth run of ``run``'s starting depth, basin and seed (or None): how
    its first architecture trains on when growth ends at the first decision."""
    depth = run["architectures"][0]["n_layers"]
    same = _by(results, basin=run["basin"], seed=run["seed"], variant=f"fixed-{depth}")
    return same[0] if same else None


def defaults_rules() -> tuple[float, float, str, str]:
    """The package defaults' threshold, validation margin, selection and criterion."""
    from sktlag import TLAGRegressor

    est = TLAGRegressor()
    return (est.topo_derivative_threshold, est.min_improvement, est.select_by,
            est.derivative_criterion)


#: The held-out statistic's threshold the per-basin table replays: about two standard
#: errors above zero (user guide, "The held-out check").
HOLDOUT_THRESHOLD = 2.0


def basin_table(results, max_layers: int,
                rules: tuple[float, float, str, str] | None = None,
                cap: int | None = None, variant: str | None = None) -> list[dict[str, Any]]:
    """Per basin: growth replayed under ``rules`` (threshold, margin, selection,
    criterion; default: the package defaults) on ``variant`` (default: the criterion's
    recording variant),
    against the validation pick and the best of the fixed depths recorded for the same
    seeds. Where fewer than ``max_layers`` fixed depths were recorded, the pick is among
    those (the ``fixed depths`` column) and the grid's time is not given. With ``cap``,
    also how growth ends when the architecture the budget ends at its cap is judged
    (see ``replay``)."""
    rules = rules or defaults_rules()
    variant = variant or CRITERION_VARIANT[rules[3]]
    rows = []
    for basin in sorted({r["basin"] for r in results}):
        seeds = sorted({r["seed"] for r in _by(results, basin=basin)})
        growth, pick, oracle, ratio, share, replayed, one = [], [], [], [], [], [], []
        judged = []
        depths = set()
        for seed in seeds:
            fixed = [r for k in range(1, max_layers + 1)
                     for r in _by(results, basin=basin, seed=seed, variant=f"fixed-{k}")]
            runs = _by(results, basin=basin, seed=seed, variant=variant)
            if not runs or not fixed or not replayable(runs[0], rules[3]):
                continue
            out = replay(runs[0], *rules, trained_on=trained_on(results, runs[0]))
            if not out["exact"]:
                continue
            replayed.append(out)
            if cap is not None:
                judged.append(replay(runs[0], *rules, trained_on=trained_on(results, runs[0]),
                                     cap=cap)["stop"])
            depths.add(tuple(r["n_layers"] for r in fixed))
            growth.append(out["test_nse"])
            pick.append(max(fixed, key=lambda r: r["valid_nse"])["test_nse"])
            one.extend(r["test_nse"] for r in fixed if r["variant"] == "fixed-1")
            oracle.append(max(r["test_nse"] for r in fixed))
            grid = sum(r["fit_seconds"] for r in fixed)
            ratio.append(out["seconds"] / grid if len(fixed) == max_layers else math.nan)
            share.append(out["decision_seconds"] / out["seconds"])
        if not growth:
            continue
        # The largest relative derivative of each decision the recording runs computed.
        largest = [_largest(d["relative"])
                   for r in _by(results, basin=basin, variant=variant) for d in r["decisions"]]
        relative = [v for v in largest if not math.isnan(v)]
        rows.append({
            "basin": basin, "seeds": len(growth),
            "growth NSE": C.median(growth), "growth min to max": C.spread(growth),
            "validation pick NSE": C.median(pick), "best fixed NSE": C.median(oracle),
            "one layer NSE": C.median(one) if one else math.nan,
            "growth - pick": C.median(growth) - C.median(pick),
            "growth - best fixed": C.median(growth) - C.median(oracle),
            "fixed depths": " / ".join(" ".join(map(str, d)) for d in sorted(depths)),
            "growth / grid time": C.median(ratio), "decision share": C.median(share),
            "relative derivatives": C.spread(relative),
            "depths": " ".join(str(r["n_layers"]) for r in replayed),
            "ended by": " ".join(r["stop"].replace("recorded run ended", "budget")
                                 for r in replayed),
            **({"ended by, budget's last judged": " ".join(
                stop.replace("recorded run ended", "budget") for stop in judged)}
               if cap is not None else {}),
        })
    return rows


def _fixed_depths(results, basin: str, seed: int, budget: int | None,
                  max_layers: int | None = None) -> list[dict[str, Any]]:
    """The fixed-depth runs of one basin and seed under one epoch budget, of depths up to
    ``max_layers`` (None: every depth recorded)."""
    return [r for r in _by(results, basin=basin, seed=seed)
            if r["variant"].startswith("fixed-") and r.get("max_epochs") == budget
            and (max_layers is None or r["n_layers"] <= max_layers)]


def _basins_and_budgets(runs) -> list[tuple[str, int | None]]:
    """The (basin, epoch budget) groups of ``runs``, sorted."""
    return sorted({(r["basin"], r.get("max_epochs")) for r in runs},
                  key=lambda k: (k[0], k[1] or 0))


def _architecture_epochs(runs) -> str:
    """Each run's epochs per architecture: ``"40 30 10 / 40 40"``."""
    return " / ".join(" ".join(str(a["epochs"]) for a in r["architectures"]) for r in runs)


def _decision_share(run: dict[str, Any]) -> float:
    """The growth decisions' share of a fit's time."""
    return run["growth_seconds"] / run["fit_seconds"]


def _grown_epoch_ratios(run: dict[str, Any], fixed: list[dict[str, Any]]) -> list[float]:
    """For each grown architecture of ``run`` (depth 2 or more), its seconds per epoch
    over those of the fixed network of its depth in ``fixed`` (same seed and budget)."""
    per_epoch = {f["n_layers"]: a["seconds"] / a["epochs"]
                 for f in fixed for a in f.get("architectures", [])[:1] if a["epochs"]}
    return [a["seconds"] / a["epochs"] / per_epoch[a["n_layers"]]
            for a in run["architectures"][1:]
            if a["epochs"] >= 2 and per_epoch.get(a["n_layers"])]


def _own_endings(ended: str) -> list[bool]:
    """For each growth ending of an ``ended by`` text, whether growth's own rule ended it."""
    return [rule in C.OWN_RULES for rule in ended.split()]


def _own_rule_counts(ends: list[list[bool]]) -> str:
    """Own-rule endings of several basins' runs (one list per basin): in how many runs,
    and on how many basins in most seeds."""
    return (f"{sum(map(sum, ends))} of {sum(map(len, ends))} runs, most seeds on "
            f"{sum(sum(e) > len(e) / 2 for e in ends)} of {len(ends)} basins")


def defaults_table(results, max_layers: int | None = None) -> list[dict[str, Any]]:
    """Per basin and budget, the ``defaults`` runs as fitted: test NSE, depth, how growth
    ended, epochs and fit time (no replay: the package's own rules ended them). Where
    fixed depths ran for the same seeds and budget, also the best of them on the test
    set (an upper bound no user gets), the one validation picks, the depth that was best
    in each seed, and the growing fit's time over the grid's; the grid is the fixed
    depths up to ``max_layers`` (None: every depth recorded)."""
    rows = []
    runs = _by(results, variant="defaults")
    for basin, budget in _basins_and_budgets(runs):
        part = sorted((r for r in runs if r["basin"] == basin
                       and r.get("max_epochs") == budget), key=lambda r: r["seed"])
        per_seed = [(r, _fixed_depths(results, basin, r["seed"], budget, max_layers))
                    for r in part]
        grids = [g for _, g in per_seed if g]
        best = [max(g, key=lambda r: r["test_nse"]) for g in grids]
        best_nse = C.median([r["test_nse"] for r in best])
        picked = C.median([max(g, key=lambda r: r["valid_nse"])["test_nse"] for g in grids])
        defaults_nse = C.median([r["test_nse"] for r in part])
        rows.append({
            "basin": basin, "budget": budget if budget is not None else math.nan,
            "seeds": " ".join(str(r["seed"]) for r in part),
            "test NSE": defaults_nse,
            "test NSE min to max": C.spread([r["test_nse"] for r in part]),
            **({"best fixed NSE": best_nse,
                "defaults - best fixed": defaults_nse - best_nse,
                "validation pick NSE": picked,
                "defaults - validation pick": defaults_nse - picked,
                "best fixed depth": " ".join(str(r["n_layers"]) for r in best),
                # Each seed's growing fit over the summed fits of its fixed depths.
                "defaults / grid time": C.median(
                    [r["fit_seconds"] / sum(f["fit_seconds"] for f in g)
                     for r, g in per_seed if g]),
                "grown / fixed epoch s": C.median(
                    [x for r, g in per_seed for x in _grown_epoch_ratios(r, g)])}
               if grids else {}),
            "depths": " ".join(str(r["n_layers"]) for r in part),
            "ended by": " ".join(r["stop_rule"] for r in part),
            "epochs": " ".join(str(r["epochs"]) for r in part),
            "epochs by architecture": _architecture_epochs(part),
            "fit s (median)": C.median([r["fit_seconds"] for r in part]),
            "decision share": C.median([_decision_share(r) for r in part]),
        })
    return rows


#: The changes table's column of fit time with the change over the defaults'.
TIME_RATIO = "fit s, changed / defaults (median)"


def changes_table(results) -> list[dict[str, Any]]:
    """Per changed setting (``defaults-NAME`` variants) and basin, against the defaults
    of the same seeds and budget: test NSE, how growth ended, epochs and fit time."""
    rows = []
    changes = sorted({r["variant"] for r in results if r["variant"].startswith("defaults-")})
    for name in changes:
        for basin, budget in _basins_and_budgets(_by(results, variant=name)):
            base = {r["seed"]: r for r in _by(results, basin=basin, variant="defaults")
                    if r.get("max_epochs") == budget}
            pairs = [(base[r["seed"]], r) for r in sorted(
                _by(results, basin=basin, variant=name), key=lambda r: r["seed"])
                if r.get("max_epochs") == budget and r["seed"] in base]
            if not pairs:
                continue
            before, after = (C.median([p[i]["test_nse"] for p in pairs]) for i in (0, 1))
            rows.append({
                "change": name.removeprefix("defaults-"), "basin": basin,
                "budget": budget if budget is not None else math.nan,
                "seeds": " ".join(str(b["seed"]) for b, _ in pairs),
                "defaults NSE": before, "changed NSE": after, "change of NSE": after - before,
                "defaults ended by": " ".join(b["stop_rule"] for b, _ in pairs),
                "changed ended by": " ".join(c["stop_rule"] for _, c in pairs),
                "changed depths": " ".join(str(c["n_layers"]) for _, c in pairs),
                "changed epochs by architecture": _architecture_epochs(c for _, c in pairs),
                TIME_RATIO: C.median(
                    [c["fit_seconds"] / b["fit_seconds"] for b, c in pairs]),
                **{f"{key} decision share": C.median([_decision_share(p[i]) for p in pairs])
                   for i, key in enumerate(("defaults", "changed"))},
            })
    return rows


def _changes_across(rows: list[dict[str, Any]]) -> str:
    """The lines under the changes table, one per change: own-rule endings (runs, and
    basins where most seeds ended so) with the change and with the defaults, and the
    test NSE of the median basin with each."""
    lines = []
    for name in dict.fromkeys(r["change"] for r in rows):
        part = [r for r in rows if r["change"] == name]
        text = {}
        for key in ("defaults", "changed"):
            ends = [_own_endings(r[f"{key} ended by"]) for r in part]
            text[key] = (f"{_own_rule_counts(ends)}; median basin NSE "
                         f"{C.fmt(C.median([r[f'{key} NSE'] for r in part]))}")
        changes = [r["change of NSE"] for r in part]
        lines.append(
            f"{name}: own rule in {text['changed']} (defaults: {text['defaults']}); change "
            f"of NSE median {C.median(changes):+.3f}, worst {min(changes):+.3f}; fit time "
            f"{C.fmt(C.median([r[TIME_RATIO] for r in part]))} times the defaults' (median "
            f"basin); decisions took a median "
            f"{C.fmt(C.median([r['changed decision share'] for r in part]))} of a fit's "
            f"time (defaults: "
            f"{C.fmt(C.median([r['defaults decision share'] for r in part]))}).")
    return "\n".join(lines)


def variant_table(results, names: list[str]) -> list[dict[str, Any]]:
    """Per variant: median over basins of the per-basin median test NSE."""
    rows = []
    for name in names:
        per_basin = [C.median([r["test_nse"] for r in _by(results, basin=b, variant=name)])
                     for b in sorted({r["basin"] for r in results})
                     if _by(results, basin=b, variant=name)]
        runs = _by(results, variant=name)
        if not runs:
            continue
        rows.append({
            "variant": name, "basins": len(per_basin), "runs": len(runs),
            "median test NSE (median basin)": C.median(per_basin),
            "final depth (median)": C.median([r["n_layers"] for r in runs]),
            "fit s (median)": C.median([r["fit_seconds"] for r in runs]),
            "epochs (median)": C.median([r["epochs"] for r in runs]),
            "stopped by itself": sum(r["stop_rule"] in C.OWN_RULES for r in runs),
        })
    return rows


def _largest(values) -> float:
    finite = [v for v in values or [] if v is not None and math.isfinite(v)]
    return max(finite) if finite else math.nan


def decision_table(results) -> list[dict[str, Any]]:
    """How well each criterion predicted the validation gain that followed.

    One row per recording variant (``CRITERION_VARIANT``): over its insertions, the rank
    correlation of each criterion's largest value with the gain of the moving-average
    validation score that followed (n/a for a criterion the variant did not record).
    """
    from scipy.stats import spearmanr

    rows = []
    for variant in dict.fromkeys(CRITERION_VARIANT.values()):
        pairs = []
        for run in _by(results, variant=variant):
            archs = {a["n_layers"]: a for a in run["architectures"]}
            for d in run["decisions"]:
                nxt = d["n_layers_before"] + 1
                if d["rule"] == "inserted" and nxt in archs and d["relative"]:
                    gain = archs[nxt]["best_valid_ma"] - d["architecture_score"]
                    pairs.append({"gain": gain, **{c: _largest(d.get(k))
                                                   for c, k in CRITERION_KEYS.items()}})
        if len(pairs) < 3:
            continue
        gain = np.array([p["gain"] for p in pairs])
        rel = np.array([p["relative"] for p in pairs])
        row = {"variant": variant, "decisions": len(pairs)}
        for criterion in CRITERION_KEYS:
            values = np.array([p[criterion] for p in pairs])
            known = np.isfinite(values)
            row[f"Spearman({criterion}, gain)"] = (
                float(spearmanr(values[known], gain[known]).statistic) if known.sum() >= 3
                else math.nan)
        row.update({
            "relative derivative median": float(np.median(rel)),
            "relative derivative min to max": f"{rel.min():.3g} to {rel.max():.3g}",
            "gain > 0": int((gain > 0).sum()),
            "median gain": float(np.median(gain)),
        })
        rows.append(row)
    return rows


#: Thresholds the replay tries for each criterion.
REPLAY_THRESHOLDS = {"relative": [0.0, 1e-3, 1e-2, 1e-1, 0.3, 1.0],
                     "holdout": [0.0, 1.0, 2.0, 3.0]}


def replay_table(results, margins) -> list[dict[str, Any]]:
    """Growth under other criteria, thresholds, margins and selections, replayed exactly.

    A criterion is replayed on the runs of its recording variant that recorded its
    values (``CRITERION_VARIANT``); a run that would stop at its first decision counts
    only where the recording has the fixed-depth run it then equals (see ``replay``).
    """
    rows = []
    basins = sorted({r["basin"] for r in results})
    for criterion, thresholds in REPLAY_THRESHOLDS.items():
        # Each basin's replayable runs, with the fixed-depth run each one trains on as.
        recorded = {b: [(run, trained_on(results, run))
                        for run in _by(results, basin=b, variant=CRITERION_VARIANT[criterion])
                        if replayable(run, criterion)]
                    for b in basins}
        for select in ("moving_average", "epoch"):
            for threshold in thresholds:
                for margin in margins:
                    per_basin, stopped, n, inexact = [], 0, 0, 0
                    for b in basins:
                        scores = []
                        for run, fixed in recorded[b]:
                            out = replay(run, threshold, margin, select, criterion, fixed)
                            if not out["exact"]:
                                inexact += 1
                                continue
                            scores.append(out["test_nse"])
                            stopped += out["stop"] in C.OWN_RULES
                            n += 1
                        if scores:
                            per_basin.append(C.median(scores))
                    if not n + inexact:
                        continue
                    rows.append({
                        "criterion": criterion, "selection": select,
                        "threshold": threshold, "margin": margin,
                        "median basin NSE": C.median(per_basin),
                        "runs stopped by itself": stopped, "runs": n,
                        "basins": len(per_basin),
                        # Stopped at the first decision, with no fixed-depth run to
                        # tell how that architecture would have trained on.
                        "runs not replayable": inexact,
                    })
    return rows


def late_gains(run: dict[str, Any], last: int) -> list[float]:
    """Per architecture of ``run``: how much its moving-average validation score rose in
    its ``last`` epochs (its last value less the best before them; NaN where the run
    recorded no per-epoch scores or the architecture trained no more than ``last``
    epochs; the epochs of a parent that trained on after its grown successor count
    together). Above zero, the architecture was still improving when it ended."""
    ma = [math.nan if v is None else v for v in run.get("valid_ma") or []]
    out, start = [], 0
    for a in run["architectures"]:
        # The epochs it trained (records before parents could train on again name none:
        # there each architecture's epochs follow the last one's).
        stretches = a.get("stretches") or [[start + 1, start + a["epochs"]]]
        scores = [v for first, end in stretches for v in ma[first - 1:end]]
        start += a["epochs"]
        before = [v for v in scores[:-last] if math.isfinite(v)]
        if len(scores) != a["epochs"] or not before or not math.isfinite(scores[-1]):
            out.append(math.nan)
        else:
            out.append(scores[-1] - max(before))
    return out


def architecture_table(results, last: int) -> list[dict[str, Any]]:
    """Every architecture of the recording runs and of the ``defaults`` runs: epochs,
    validation and test NSE, and its gain over its last ``last`` epochs
    (:func:`late_gains`)."""
    return [
        {"basin": run["basin"], "variant": run["variant"], "seed": run["seed"],
         "layers": a["n_layers"], "epochs": a["epochs"],
         "best validation (moving average)": a["best_valid_ma"],
         f"gain in its last {last} epochs": gain, "test NSE": a["test_nse"]}
        for variant in dict.fromkeys([*CRITERION_VARIANT.values(), "defaults"])
        for run in _by(results, variant=variant)
        for a, gain in zip(run["architectures"], late_gains(run, last), strict=True)
    ]


def _across(basins: list[dict[str, Any]]) -> str:
    """The line under a per-basin table: medians over its basins."""
    medians = {key: C.fmt(C.median([b[key] for b in basins]))
               for key in ("growth NSE", "validation pick NSE", "best fixed NSE")}
    by_itself = [_own_endings(b["ended by"]) for b in basins]
    stopped, runs = sum(map(sum, by_itself)), sum(map(len, by_itself))
    everywhere = sum(all(b) for b in by_itself if b)
    deepest = sum(b["ended by"].split().count("max_layers") for b in basins)
    return (f"Median over basins of the per-basin medians: growth {medians['growth NSE']}, "
            f"validation pick {medians['validation pick NSE']}, best fixed "
            f"{medians['best fixed NSE']} ({len(basins)} basins); growth stopped by itself "
            f"in {stopped} of {runs} runs, in every run on {everywhere} basins; "
            f"{deepest} of {runs} runs ended at max_layers.")


def _defaults_across(rows: list[dict[str, Any]]) -> str:
    """The line under the defaults table: on how many basins the defaults scored at or
    above the validation pick and the best fixed depth, and by how much on the median
    basin; and in how many runs growth ended by its own rule."""
    compared = [r for r in rows if "best fixed NSE" in r]
    ended = [_own_endings(r["ended by"]) for r in rows]
    line = f"Growth ended by its own rule in {_own_rule_counts(ended)}."
    for key, name in (("defaults - validation pick", "the validation pick"),
                      ("defaults - best fixed", "the best fixed depth")):
        changes = [r[key] for r in compared]
        if changes:
            line += (f" At or above {name} on {sum(c >= 0 for c in changes)} of "
                     f"{len(changes)} basins, median difference {C.fmt(C.median(changes))}.")
    shares = [r["decision share"] for r in rows if "decision share" in r]
    if shares:
        line += (f" Decisions took a median {C.fmt(C.median(shares))} of a growing fit's "
                 f"time (largest {C.fmt(max(shares))}).")
    ratios = [r["defaults / grid time"] for r in compared]
    if ratios:
        line += (f" A growing fit took a median {C.fmt(C.median(ratios))} of the time of "
                 f"fitting every depth of the grid (largest {C.fmt(max(ratios))}; at most "
                 f"0.5 on {sum(r <= 0.5 for r in ratios)} of {len(ratios)} basins).")
    epochs = [r.get("grown / fixed epoch s", math.nan) for r in compared]
    epochs = [e for e in epochs if math.isfinite(e)]
    if epochs:
        line += (f" An epoch of a grown architecture took a median "
                 f"{C.fmt(C.median(epochs))} times one of the fixed network of its depth "
                 f"({C.fmt(min(epochs))} to {C.fmt(max(epochs))} over {len(epochs)} basins).")
    return line


def report(results, args, machine, seconds) -> None:
    names = list(variants(args.max_layers))
    overall = variant_table(results, names)
    basins = basin_table(results, args.max_layers, cap=args.cap)
    _, margin, select, _ = defaults_rules()
    held_out_rules = (HOLDOUT_THRESHOLD, margin, select, "holdout")
    held_out = basin_table(results, args.max_layers, held_out_rules)
    # The same growth with each kind of products, where recorded: its decision share and
    # time against the grid, basin by basin.
    by_products = {kind: basin_table(results, args.max_layers, cap=args.cap,
                                     variant=f"growth-{kind}") for kind in PRODUCT_KINDS}
    as_fitted = defaults_table(results, args.max_layers)
    changed = changes_table(results)
    decisions = decision_table(results)
    replays = replay_table(results, [0.0, 0.005, 0.01])
    from sktlag import TLAGRegressor

    patience = QUICK["patience"] if args.quick else TLAGRegressor().patience
    architectures = architecture_table(results, patience)
    C.write_results(
        args.out, "growth_pays", "Does growth pay? Growth against every fixed depth",
        [("Per basin (growth at the defaults, replayed)",
          C.markdown_table(basins) + "\n" + _across(basins) + "\n"),
         (f"Per basin (the held-out check at threshold {HOLDOUT_THRESHOLD:g}, margin "
          f"{margin:g}, replayed)",
          C.markdown_table(held_out) + "\n" + _across(held_out) + "\n"),
         *[(f"Per basin (growth with hessian_products='{kind}', replayed)",
            C.markdown_table(rows) + "\n" + _across(rows) + "\n")
           for kind, rows in by_products.items() if rows],
         *([("Per basin and budget (the defaults as fitted)",
             C.markdown_table(as_fitted) + "\n" + _defaults_across(as_fitted) + "\n")]
           if as_fitted else []),
         *([("The defaults with one setting changed",
             C.markdown_table(changed) + "\n" + _changes_across(changed) + "\n")]
           if changed else []),
         ("Per variant", C.markdown_table(overall)),
         ("Derivatives against the validation gain that followed",
          C.markdown_table(decisions)),
         ("Replayed stop rules and selection", C.markdown_table(replays)),
         ("Architectures of the recording runs", C.markdown_table(architectures))],
        {"per_basin": basins, "per_basin_holdout": held_out,
         **{f"per_basin_{kind}": rows for kind, rows in by_products.items()},
         "per_basin_defaults": as_fitted,
         "defaults_changed": changed,
         "per_variant": overall,
         "decisions": decisions, "replay": replays,
         "architectures": architectures, "runs": results},
        {"seeds": sorted({r["seed"] for r in results}), "max_layers": args.max_layers,
         "max_epochs": sorted({r["max_epochs"] for r in results if "max_epochs" in r}),
         "quick": args.quick, "device": args.device, "jobs": args.jobs,
         "research_threshold": RESEARCH_THRESHOLD},
        machine, seconds,
    )


def main() -> None:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="the Yuliang demo table")
    parser.add_argument("--vistula", type=Path, default=None,
                        help="modelskill 1.3.2 wheel or vistula.msk (Vistula gauges)")
    parser.add_argument("--basins", nargs="*", default=None, help="basin or group names")
    parser.add_argument("--variants", nargs="*", default=None,
                        help='model variants (default: all); "fixed" names every fixed depth')
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--device", default="cpu", help='torch device, e.g. "cuda"')
    parser.add_argument("--max-layers", type=int, default=None,
                        help="deepest fixed depth (default: the estimator's max_layers)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="the epoch budget of every variant (default: the "
                        "estimator's, or the quick settings')")
    parser.add_argument("--replay", type=Path, nargs="+", default=None,
                        help="only analyse existing growth_jobs.jsonl records, taken together")
    parser.add_argument("--resume", action="store_true",
                        help="skip jobs already in growth_jobs.jsonl in --out")
    parser.add_argument("--cap", type=int, default=None,
                        help="the recording's max_epochs_per_layer (of runs that do not "
                        "name their own): the per-basin table then also says how growth "
                        "ends when the architecture the budget ends at its cap is judged "
                        "by the validation rule, and a replay knows where the package "
                        "trains a capped parent on (default: the estimator's, or the "
                        "quick settings')")
    args = parser.parse_args()
    from sktlag import TLAGRegressor

    if args.max_layers is None:
        args.max_layers = QUICK["max_layers"] if args.quick else TLAGRegressor().max_layers
    if args.cap is None:
        args.cap = (QUICK["max_epochs_per_layer"] if args.quick
                    else TLAGRegressor().max_epochs_per_layer)
    machine = C.machine_info(args.threads)
    if args.replay is not None:
        results = load_records(args.replay, args.cap)
        report(results, args, machine, 0.0)
        return
    seeds = C.seeds_from(args)
    names = variant_names(args.variants, args.max_layers, parser.error)
    basins = [b.name for b in _basins.load_basins(args.basins, demo_path=args.data,
                                                  vistula_path=args.vistula)]
    if args.quick and not args.basins:
        basins = basins[:1]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "growth_jobs.jsonl"
    done = C.resumed(log, args.resume)
    finished = {(r["basin"], r["variant"], r["seed"]) for r in done}
    # Seed-major order: every basin and variant gets seed 0 before any gets seed 1.
    jobs = [
        {"basin": b, "variant": v, "seed": s, "device": args.device, "quick": args.quick,
         "max_layers": args.max_layers, "threads": args.threads,
         "max_epochs": args.max_epochs,
         "demo_path": str(args.data) if args.data else None,
         "vistula_path": str(args.vistula) if args.vistula else None}
        for s in seeds for b in basins for v in names if (b, v, s) not in finished
    ]
    start = time.perf_counter()
    results = done + C.run_logged(
        run_job, jobs, args.jobs, log,
        lambda r: (f"{r['basin']:<20} {r['variant']:<14} seed {r['seed']} "
                   f"NSE {r['test_nse']:.3f} depth {r['n_layers']} ({r['stop_rule']}) "
                   f"{r['fit_seconds']:.0f} s"),
    )
    report(results, args, machine, time.perf_counter() - start)


if __name__ == "__main__":
    main()
