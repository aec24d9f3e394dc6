"""What growth costs on a CPU: epochs and decisions at the package defaults, by depth.

Measures, on the embedded Lahn series (training rows, the package defaults):

- the wall time of one training epoch (validation included) of a network of depth
  1 .. ``max_layers`` (the second of two epochs, so one-time costs stay out);
- the wall time of one growth decision (derivatives of every position, the eigen-solver)
  at depth 1 .. ``max_layers - 1``, on a sample of ``derivative_samples`` windows, for
  each way of computing the Hessian-vector products (``--hessian-products``: the
  default, exact products of the Hamiltonian's second-order expansion; exact by double
  backward through the virtual layers; or central differences of gradients).

- the wall time of an epoch of a *grown* network of depth 2 .. ``max_layers`` (a layer
  inserted every ``GROWN_EPOCHS`` epochs) against a built one of the same depth, as
  ``fit`` trains it (subnormal floats flushed to zero) and with subnormals kept, as
  before ``fit`` flushed them; and whether the two grown fits predict the same. The
  flag is per thread, and torch's intra-op threads copy it from the thread that starts
  them, at whatever point of the run that is: ``--threads 1`` gives figures that do
  not depend on it.

With ``--records`` (a ``growth_jobs.jsonl`` of ``growth_pays.py``) it combines these unit
costs with the epochs and decisions each fit of the records used (growth replayed at
the defaults, every fixed depth as run) into an estimate of growth's CPU wall time
against the whole depth grid's, per basin and seed. Accelerator runs make decisions
look dearer than they are on a CPU and epochs cheaper, so the ratio measured there
does not carry over; this estimate does, as far as the unit costs do. With
``--device cuda`` the unit costs are those of that device.

Usage::

    python benchmarks/growth_cost.py --threads 1 --records benchmarks/records/growth_jobs.jsonl
    python benchmarks/growth_cost.py --hessian-products expansion exact difference --device cuda
    python benchmarks/growth_cost.py --threads 1 --params '{"hidden_size": 64}'
    python benchmarks/growth_cost.py --quick
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any
from unittest import mock

import _common as C
import numpy as np


def epoch_seconds(depth: int, params: dict[str, Any], X, y, epochs: int = 2) -> float:
    """Median seconds of the training epochs after the first of a fixed-depth network
    trained ``epochs`` epochs (by default: the second epoch)."""
    from sktlag import TLAGRegressor

    fixed = {**params, "initial_num_layers": depth, "max_layers": depth,
             "topo_derivative_threshold": np.inf, "max_epochs": epochs, "random_state": 0}
    return _epoch_medians(TLAGRegressor(**fixed).fit(X, y))[depth]


#: Epochs each architecture of the grown network trains before the next insertion.
GROWN_EPOCHS = 3


def _epoch_medians(est) -> dict[int, float]:
    """Median seconds of an epoch at each depth of a fit, each architecture's first
    epoch left out (one-time costs: a new optimizer, a new layer's buffers)."""
    by_depth: dict[int, list[float]] = {}
    for i, row in enumerate(est.history_):
        if i and est.history_[i - 1]["n_layers"] == row["n_layers"]:
            by_depth.setdefault(row["n_layers"], []).append(float(row["dur"]))
    return {d: float(np.median(v)) for d, v in by_depth.items()}


def grown_against_built(params: dict[str, Any], X, y) -> list[dict[str, Any]]:
    """Epoch seconds of grown and built networks of each depth >= 2, the grown ones with
    and without subnormal floats flushed to zero during training."""
    from sktlag import TLAGRegressor, _training

    max_layers = TLAGRegressor(**params).max_layers
    common = {**params, "max_epochs_per_layer": GROWN_EPOCHS,
              "moving_avg_window": 1, "patience": GROWN_EPOCHS}
    grown, predictions = {}, {}
    for flushed in (True, False):
        # Subnormals kept: the training block without the flag, as fit trained before.
        with (contextlib.nullcontext() if flushed else
              mock.patch.object(_training, "subnormals_flushed", contextlib.nullcontext)):
            est = TLAGRegressor(**common, max_epochs=GROWN_EPOCHS * max_layers,
                                topo_derivative_threshold=-np.inf, min_improvement=-np.inf,
                                random_state=0).fit(X, y)
        grown[flushed], predictions[flushed] = _epoch_medians(est), est.predict(X)
    rows = []
    for depth in range(2, max_layers + 1):
        built = epoch_seconds(depth, common, X, y, epochs=GROWN_EPOCHS)
        rows.append({
            "depth": depth, "built epoch s": built,
            "grown epoch s": grown[True].get(depth, np.nan),
            "grown epoch s, subnormals kept": grown[False].get(depth, np.nan),
            "grown / built": grown[True].get(depth, np.nan) / built,
            "grown / built, subnormals kept": grown[False].get(depth, np.nan) / built,
            "same predictions": bool(np.array_equal(predictions[True], predictions[False])),
        })
        print(rows[-1], flush=True)
    return rows


def decision_seconds(depth: int, params: dict[str, Any], X, y,
                     hessian_products: str = "auto") -> tuple[float, int]:
    """Seconds and backward passes of one decision at ``depth`` (lockstep solver), on
    the device of ``params`` (default the CPU)."""
    import torch

    from sktlag import TLAGRegressor
    from sktlag.growth import topological_derivatives
    from sktlag.losses import masked_mse
    from sktlag.model import GrowingLSTM

    est = TLAGRegressor(**params)
    lookback, samples = est.lookback, est.derivative_samples
    torch.manual_seed(0)
    module = GrowingLSTM(X.shape[1], est.hidden_size, num_layers=depth,
                         initial_forget_bias=est.initial_forget_bias).to(est.device)
    rng = np.random.default_rng(0)
    ends = rng.choice(np.arange(lookback - 1, len(X)), samples, replace=False)
    Xs = torch.from_numpy(np.stack([X[e - lookback + 1: e + 1] for e in ends])).float()
    ys = torch.from_numpy(((y[ends] - y.mean()) / y.std())[:, None]).float()
    Xs, ys = Xs.to(est.device), ys.to(est.device)
    # Every product ends on the CPU (the eigen-solver's vectors), so the clock stops
    # after the device's work.
    start = time.perf_counter()
    found, _ = topological_derivatives(module, Xs, ys, masked_mse,
                                       max_hvp=est.num_power_iterations,
                                       tol=est.eigensolver_tol,
                                       hessian_products=hessian_products)
    return time.perf_counter() - start, max(d.n_hvp for d in found)


def estimate(records: Path, epochs: dict[int, float], decisions: dict[int, float],
             max_layers: int) -> list[dict[str, Any]]:
    """Growth (replayed at the defaults) against the depth grid, from unit costs."""
    import growth_pays as G

    runs = [json.loads(x) for x in records.read_text().splitlines() if x.strip()]
    rules = G.defaults_rules()
    rows = []
    for run in G._by(runs, variant="growth"):
        fixed = [r for k in range(1, max_layers + 1)
                 for r in G._by(runs, basin=run["basin"], seed=run["seed"],
                                variant=f"fixed-{k}")]
        if len(fixed) < max_layers:
            continue
        out = G.replay(run, *rules, trained_on=G.trained_on(runs, run))
        archs = {a["n_layers"]: a for a in run["architectures"]}
        first = run["architectures"][0]["n_layers"]
        visited = list(range(first, first + out["depths_tried"]))
        # Epochs per depth; the first depth's include any training on after growth
        # ended at the first decision (the replay's count).
        per_depth = {d: archs[d]["epochs"] for d in visited[1:]}
        per_depth[first] = out["epochs"] - sum(per_depth.values())
        train = sum(n * epochs[d] for d, n in per_depth.items())
        # Decisions that computed derivatives: not at max_layers, and not where the
        # replayed validation rule ended growth before any derivative was needed.
        decided = [d for d in run["decisions"] if d["n_layers_before"] in visited
                   and d["rule"] in ("inserted", "threshold")
                   and not (out["stop"] == "validation"
                            and d["n_layers_before"] == visited[-1])]
        decide = sum(decisions[d["n_layers_before"]] for d in decided)
        grid = sum(r["epochs"] * epochs[r["n_layers"]] for r in fixed)
        rows.append({
            "basin": run["basin"], "seed": run["seed"],
            "growth epochs": out["epochs"],
            "decisions": len(decided),
            "growth s (estimate)": train + decide, "grid s (estimate)": grid,
            "growth / grid": (train + decide) / grid,
            "decision share": decide / (train + decide),
        })
    return rows


def main() -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--records", type=Path, default=None,
                        help="growth_jobs.jsonl of growth_pays.py, for the estimate")
    parser.add_argument("--preset", default=None,
                        help="measure a named preset (sktlag.PRESETS) instead of the defaults")
    parser.add_argument("--hessian-products", nargs="+", default=None,
                        choices=("expansion", "exact", "difference"),
                        help="how decisions compute Hessian-vector products, each measured "
                             "(default: expansion and exact; all three with --quick)")
    parser.add_argument("--device", default="cpu", help='torch device, e.g. "cuda"')
    parser.add_argument("--params", type=C.json_object, default={},
                        help='JSON object of TLAGRegressor parameters that override the '
                             'preset or defaults, e.g. \'{"hidden_size": 64}\'')
    args = parser.parse_args()
    kinds = args.hessian_products or (
        ["expansion", "exact", "difference"] if args.quick else ["expansion", "exact"])
    C.set_threads(args.threads)
    from sktlag import TLAGRegressor

    data = C.lahn_dataset(rows=1500 if args.quick else None)
    X, y = data["X"][: data["n_train"]], data["y"][: data["n_train"]]
    from sktlag import PRESETS

    params: dict[str, Any] = {**(PRESETS[args.preset] if args.preset else {}), **args.params,
                              "n_threads": args.threads, "device": args.device}
    if args.quick:
        params.update(hidden_size=8, lookback=20, derivative_samples=16,
                      num_power_iterations=6, batch_size=128)
    max_layers = TLAGRegressor(**params).max_layers
    C.warm_up()
    if args.device != "cpu":
        # An accelerator's one-time costs (kernel selection, memory pools) stay out of
        # the first timed decision of each kind.
        for kind in kinds:
            decision_seconds(1, params, X, y, kind)
    start = time.perf_counter()
    epochs, rows = {}, []
    decisions: dict[str, dict[int, float]] = {kind: {} for kind in kinds}
    for depth in range(1, max_layers + 1):
        epochs[depth] = epoch_seconds(depth, params, X, y)
        for kind in kinds if depth < max_layers else [None]:
            row = {"depth": depth, "epoch s": epochs[depth], "products": kind or ""}
            if kind is not None:
                seconds, passes = decision_seconds(depth, params, X, y, kind)
                decisions[kind][depth] = seconds
                row.update({"decision s": seconds, "backward passes": passes,
                            "decision / epoch": seconds / epochs[depth]})
            rows.append(row)
            print(row, flush=True)
    where = "this CPU" if args.device == "cpu" else args.device
    sections = [(f"Unit costs on {where}", C.markdown_table(rows))]
    grown = grown_against_built(params, X, y) if args.device == "cpu" else []
    if grown:
        sections.append(("Grown against built networks, epoch seconds",
                         C.markdown_table(grown)))
    estimates = []
    if args.records is not None:
        for kind in kinds:
            estimates += [{"products": kind, **r}
                          for r in estimate(args.records, epochs, decisions[kind], max_layers)]
        summary = [{"products": kind, "runs": len(part),
                    "growth / grid (median)": C.median([r["growth / grid"] for r in part]),
                    "growth / grid (max)": max((r["growth / grid"] for r in part),
                                               default=float("nan")),
                    "decision share (median)": C.median([r["decision share"] for r in part])}
                   for kind in kinds
                   for part in [[r for r in estimates if r["products"] == kind]]]
        sections += [(f"Estimated cost of the recorded fits on {where}",
                      C.markdown_table(estimates)),
                     ("Summary", C.markdown_table(summary))]
    C.write_results(
        args.out, "growth_cost", f"What growth costs on {where}", sections,
        {"unit_costs": rows, "grown": grown, "estimates": estimates},
        {"threads": args.threads, "quick": args.quick, "preset": args.preset,
         "params": args.params,
         "device": args.device, "hessian_products": kinds,
         "defaults": {k: v for k, v in TLAGRegressor(**params).get_params().items()
                      if k in ("hidden_size", "lookback", "batch_size", "derivative_samples",
                               "num_power_iterations", "max_layers")},
         "records": args.records.name if args.records else None},
        C.machine_info(args.threads), time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
