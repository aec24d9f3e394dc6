"""Eigen-solver: Hessian-vector products Lanczos and power iteration need, and decision time.

1. On small layers (float64), the dense Hessian of the Hamiltonian of a virtual layer is
   built column by column from exact Hessian-vector products (HVPs); its top eigenvalue
   (``numpy.linalg.eigvalsh``) is the reference. For each solver, the smallest HVP
   budget (on a grid) whose estimate is within 1e-3 relative of the reference is
   reported, and so is the error at the estimator's default budget (40).
2. Wall time of one growth decision (all positions, the default budget of 40 HVPs per
   position, then insertion with backtracking) on a 2-layer network at hidden 64 and 128.
3. Exact HVPs (double backward) against central differences of gradients and against
   exact products of the Hamiltonian's second-order expansion (``"expansion"``), on
   float32 networks trained for a few epochs on the Lahn series: top eigenvalue,
   relative derivative and direction of every position, the position and signed
   direction a decision would insert, the time of the derivatives with each; and the
   largest eigenvalue difference over a few steps of the central difference around the
   default.
4. The eigen-solver's stopping tolerance, on the networks of part 3: for each tolerance
   the products a decision ran and their time, and how far its relative derivatives,
   chosen position and signed direction are from a reference solved to 1e-8.

Usage::

    python benchmarks/eigensolver.py
    python benchmarks/eigensolver.py --parts products
    python benchmarks/eigensolver.py --parts tolerance
    python benchmarks/eigensolver.py --quick
"""

from __future__ import annotations

import math
import time
from typing import Any

import _common as C
import numpy as np
import torch

from sktlag import GrowingLSTM, TLAGRegressor
from sktlag.growth import (
    block_hessian_vector_product,
    choose_sign,
    difference_step,
    grow,
    hamiltonian,
    hessian_vector_product,
    layer_outputs_and_adjoints,
    lstm_parameter_count,
    top_eigenpair,
    top_eigenpairs,
    topological_derivatives,
)
from sktlag.losses import masked_mse

FULL = {"accuracy_hidden": [4, 8, 12], "accuracy_samples": 32, "decision_hidden": [64, 128],
        "decision_samples": 256, "lookback": 30, "max_budget": 512, "decision_repeats": 2,
        "products_hidden": [16, 32], "products_depth": 3, "products_samples": 128,
        "products_lookback": 90, "products_epochs": 4, "products_rows": None}
QUICK = {"accuracy_hidden": [2], "accuracy_samples": 8, "decision_hidden": [8],
         "decision_samples": 16, "lookback": 10, "max_budget": 64, "decision_repeats": 1,
         "products_hidden": [6], "products_depth": 2, "products_samples": 16,
         "products_lookback": 10, "products_epochs": 1, "products_rows": 2000}
TOLERANCE = 1e-3
DEFAULT_BUDGET = 40
PARTS = ("budgets", "decision", "products", "tolerance")
#: Stopping tolerances of the eigen-solver compared in part 4, and its reference solve.
TOLERANCES = (1e-3, 3e-3, 1e-2, 3e-2)
REFERENCE_SOLVE = {"tol": 1e-8, "max_hvp": 200}
#: Multiples of the default step of the central difference (section 3).
STEP_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)


def budgets(limit: int) -> list[int]:
    """Budgets tried: every value up to 40, then about 1.25x steps up to ``limit``."""
    out = list(range(2, min(40, limit) + 1))
    b = 40
    while b < limit:
        b = min(limit, int(b * 1.25))
        out.append(b)
    return out


def sample(data: dict[str, Any], n: int, lookback: int, seed: int):
    """``n`` random training windows of the dataset, and their targets (standardized)."""
    rng = np.random.default_rng(seed)
    X, y, n_train = data["X"], data["y"], data["n_train"]
    ends = np.sort(rng.choice(np.arange(lookback - 1, n_train), n, replace=False))
    Xs = np.stack([X[e - lookback + 1 : e + 1] for e in ends])
    ys = (y[ends] - y[:n_train].mean()) / y[:n_train].std()
    return torch.from_numpy(Xs), torch.from_numpy(ys.reshape(-1, 1))


def accuracy_case(data, hidden: int, position: int, s: dict[str, Any], seed: int) -> dict:
    """HVPs each solver needs to reach the dense top eigenvalue within ``TOLERANCE``."""
    torch.manual_seed(seed)
    module = GrowingLSTM(data["X"].shape[1], hidden, num_layers=2).double()
    X, y = sample(data, s["accuracy_samples"], s["lookback"], seed)
    hidden_seqs, adjoints, _ = layer_outputs_and_adjoints(module, X.double(), y, masked_mse)
    h, a = hidden_seqs[position - 1], adjoints[position - 1]
    n = lstm_parameter_count(hidden)
    op = hessian_vector_product(lambda t: hamiltonian(t, h, a), torch.zeros(n, dtype=h.dtype))
    start = time.perf_counter()
    dense = torch.stack([op(e) for e in torch.eye(n, dtype=h.dtype)]).numpy()
    hvp_seconds = (time.perf_counter() - start) / n
    dense = 0.5 * (dense + dense.T)
    eigenvalues = np.linalg.eigvalsh(dense)
    reference = float(eigenvalues[-1])
    row = {
        "hidden": hidden, "position": position, "parameters": n, "seed": seed,
        "dense top eigenvalue": reference,
        "|lowest| / top": abs(float(eigenvalues[0])) / reference if reference else float("nan"),
        "ms per HVP": 1000 * hvp_seconds,
    }
    for method in ("lanczos", "power"):
        needed = None
        for budget in budgets(min(s["max_budget"], 10 * n)):
            res = top_eigenpair(op, n, method=method, max_hvp=budget, seed=seed, tol=0.0)
            if abs(res.value - reference) <= TOLERANCE * abs(reference):
                needed = res.n_hvp
                break
        default = top_eigenpair(op, n, method=method, max_hvp=DEFAULT_BUDGET, seed=seed)
        row[f"{method} HVPs to 1e-3"] = needed if needed is not None else f"> {budget}"
        row[f"{method} rel. error at 40"] = abs(default.value - reference) / abs(reference)
        row[f"{method} HVPs used at 40"] = default.n_hvp
    return row


def decision_case(data, hidden: int, s: dict[str, Any], seed: int, method: str) -> dict:
    """Wall time of one full growth decision (float32, two candidate positions)."""
    torch.manual_seed(seed)
    module = GrowingLSTM(data["X"].shape[1], hidden, num_layers=2)
    X, y = sample(data, s["decision_samples"], s["lookback"], seed)
    X, y = X.float(), y.float()
    times, decision = [], None
    for repeat in range(s["decision_repeats"]):
        trial = GrowingLSTM.from_spec(module.get_spec())
        trial.load_state_dict(module.state_dict())
        start = time.perf_counter()
        decision = grow(trial, X, y, masked_mse, threshold=-np.inf, max_layers=3,
                        method=method, max_hvp=DEFAULT_BUDGET, seed=seed + repeat)
        times.append(time.perf_counter() - start)
    return {
        "hidden": hidden, "solver": method, "parameters per position": lstm_parameter_count(hidden),
        "windows": s["decision_samples"], "lookback": s["lookback"],
        "HVPs": decision.n_hvp, "decision s (median)": C.median(times),
        "s per HVP": C.median(times) / max(decision.n_hvp, 1),
    }


def trained_case(data, hidden: int, s: dict[str, Any], seed: int):
    """A float32 network of ``products_depth`` layers trained for a few epochs, and a
    sample of training windows with their targets."""
    lookback, depth = s["products_lookback"], s["products_depth"]
    n = data["n_train"]
    est = TLAGRegressor(hidden_size=hidden, lookback=lookback, initial_num_layers=depth,
                        max_layers=depth, topo_derivative_threshold=math.inf,
                        max_epochs=s["products_epochs"], batch_size=64,
                        n_threads=torch.get_num_threads(), random_state=seed)
    est.fit(data["X"][:n], data["y"][:n])
    X, y = sample(data, s["products_samples"], lookback, seed)
    return est.module_, X.float(), y.float()


def _inserted(found) -> tuple[Any, np.ndarray]:
    """The position a decision would choose, and its signed direction."""
    chosen = max(found, key=lambda p: p.relative)
    return chosen, choose_sign(chosen.gradient, chosen.direction) * chosen.direction


def tolerance_case(data, hidden: int, s: dict[str, Any], seed: int) -> list[dict]:
    """One decision's derivatives at each of ``TOLERANCES`` against the reference solve.

    Every solve starts from the same vectors, so a looser tolerance stops the same
    Lanczos iteration sooner.
    """
    module, X, y = trained_case(data, hidden, s, seed)
    reference, _ = topological_derivatives(module, X, y, masked_mse, seed=seed,
                                           **REFERENCE_SOLVE)
    ref_chosen, ref_direction = _inserted(reference)
    rows = []
    for tol in TOLERANCES:
        start = time.perf_counter()
        found, _ = topological_derivatives(module, X, y, masked_mse, seed=seed, tol=tol,
                                           max_hvp=DEFAULT_BUDGET)
        seconds = time.perf_counter() - start
        chosen, direction = _inserted(found)
        rows.append({
            "hidden": hidden, "seed": seed, "tolerance": tol,
            "HVPs (lockstep)": max(p.n_hvp for p in found),
            "derivatives s": seconds,
            "max relative-derivative rel. error": max(
                abs(f.relative - r.relative) / abs(r.relative)
                for f, r in zip(found, reference, strict=True)),
            "position": chosen.position, "reference position": ref_chosen.position,
            "1 - cos to the reference's inserted direction": (
                1 - float(direction @ ref_direction)
                if chosen.position == ref_chosen.position else math.nan),
            "reference HVPs": max(p.n_hvp for p in reference),
        })
    return rows


#: The kinds of products compared with exact ones (double backward) in part 3.
OTHER_PRODUCTS = ("difference", "expansion")


def products_case(data, hidden: int, s: dict[str, Any], seed: int) -> tuple[list, dict]:
    """Exact products against every other kind on a float32 network trained a few epochs.

    Returns one row per position and one for the whole decision.
    """
    lookback, depth = s["products_lookback"], s["products_depth"]
    module, X, y = trained_case(data, hidden, s, seed)
    found, seconds = {}, {}
    for kind in ("exact", *OTHER_PRODUCTS):
        start = time.perf_counter()
        found[kind], loss = topological_derivatives(module, X, y, masked_mse, seed=seed,
                                                    hessian_products=kind)
        seconds[kind] = time.perf_counter() - start
    exact = found["exact"]
    rows = []
    for i, e in enumerate(exact):
        row = {"hidden": hidden, "seed": seed, "position": e.position,
               "top eigenvalue exact": e.derivative, "relative derivative exact": e.relative,
               "HVPs exact": e.n_hvp}
        for kind in OTHER_PRODUCTS:
            d = found[kind][i]
            row |= {f"eigenvalue rel. diff {kind}": (d.derivative - e.derivative)
                    / abs(e.derivative),
                    f"relative derivative {kind}": d.relative,
                    f"1 - |cos| of directions {kind}": 1 - abs(float(e.direction @ d.direction)),
                    f"HVPs {kind}": d.n_hvp}
        rows.append(row)
    inserted = {kind: _inserted(found[kind]) for kind in found}
    chosen = {kind: p for kind, (p, _) in inserted.items()}
    signed = {kind: d for kind, (_, d) in inserted.items()}
    # The largest eigenvalue difference at other steps of the central difference.
    hidden_seqs, adjoints, _ = layer_outputs_and_adjoints(module, X, y, masked_mse)
    functions = [lambda t, h=h, a=a: hamiltonian(t, h, a)
                 for h, a in zip(hidden_seqs, adjoints, strict=True)]
    zeros = [torch.zeros(lstm_parameter_count(hidden)) for _ in functions]
    sweep = {}
    for factor in STEP_FACTORS:
        op = block_hessian_vector_product(functions, zeros, products="difference",
                                          step=factor * difference_step(torch.float32))
        eigs = top_eigenpairs(op, op.sizes, seeds=[seed + p.position for p in exact],
                              max_hvp=DEFAULT_BUDGET, tol=1e-3)
        sweep[f"max eigenvalue rel. diff, step x{factor:g}"] = max(
            abs(g.value - e.derivative) / abs(e.derivative)
            for g, e in zip(eigs, exact, strict=True))
    decision = {"hidden": hidden, "depth": depth, "seed": seed, "windows": len(X),
                "lookback": lookback, "sample loss": loss,
                "position exact": chosen["exact"].position,
                "derivatives s exact": seconds["exact"]}
    for kind in OTHER_PRODUCTS:
        decision |= {
            f"position {kind}": chosen[kind].position,
            f"1 - cos of inserted directions {kind}":
                1 - float(signed["exact"] @ signed[kind]),
            f"max relative-derivative rel. diff {kind}": max(
                abs(r[f"relative derivative {kind}"] - r["relative derivative exact"])
                / abs(r["relative derivative exact"]) for r in rows),
            f"derivatives s {kind}": seconds[kind],
        }
    return rows, {**decision, **sweep}


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=2)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="sections to run (default: all)")
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    s = dict(QUICK if args.quick else FULL)
    seeds = C.seeds_from(args)
    machine = C.machine_info(args.threads)
    data = C.lahn_dataset(2000 if args.quick else None)
    products_data = C.lahn_dataset(s["products_rows"])
    data["X"] = data["X"].astype(np.float64)
    start = time.perf_counter()
    accuracy_rows = [
        accuracy_case(data, hidden, position, s, seed)
        for hidden in s["accuracy_hidden"] for position in (1, 2) for seed in seeds
    ] if "budgets" in args.parts else []
    decision_rows = [
        decision_case(data, hidden, s, seeds[0], method)
        for hidden in s["decision_hidden"] for method in ("lanczos", "power")
    ] if "decision" in args.parts else []
    position_rows, product_rows = [], []
    for hidden in s["products_hidden"] if "products" in args.parts else []:
        for seed in seeds:
            rows, decision = products_case(products_data, hidden, s, seed)
            position_rows += rows
            product_rows.append(decision)
            print(decision, flush=True)
    tolerance_rows = [
        row for hidden in s["products_hidden"] for seed in seeds
        for row in tolerance_case(products_data, hidden, s, seed)
    ] if "tolerance" in args.parts else []
    seconds = time.perf_counter() - start

    def median_needed(method: str) -> str:
        # A case that never got within the tolerance needed more than the largest
        # budget: it ranks above every case that did and stays in the median, which is
        # a number only while fewer than half of the cases failed.
        values = [r[f"{method} HVPs to 1e-3"] for r in accuracy_rows]
        numeric = sorted(v for v in values if isinstance(v, int))
        failed = len(values) - len(numeric)
        ranked = numeric + [math.inf] * failed
        low, high = ranked[(len(ranked) - 1) // 2], ranked[len(ranked) // 2]
        limit = s["max_budget"]
        text = f"median {(low + high) / 2:.0f}" if math.isfinite(high) else f"median > {limit}"
        text += f" over {len(values)} cases"
        if numeric:
            top = f"more than {limit}" if failed else str(numeric[-1])
            text += f" ({numeric[0]} to {top})"
        return text + (f", {failed} of them not within {limit}" if failed else "")

    sections = []
    if accuracy_rows:
        sections += [
            ("Setup", f"Untrained 2-layer `GrowingLSTM` (float64) on {s['accuracy_samples']} "
                      f"random Lahn training windows of {s['lookback']} days; candidate "
                      f"positions 1 and 2; seeds {seeds}. Budgets tried: "
                      f"{budgets(s['max_budget'])[:3]} ... {s['max_budget']}; tolerance 1e-3 "
                      "relative to the dense top eigenvalue."),
            ("HVPs to reach the top eigenvalue", C.markdown_table(accuracy_rows, digits=4)),
            ("Summary", f"HVPs to 1e-3: Lanczos {median_needed('lanczos')}; power iteration "
                        f"{median_needed('power')}."),
        ]
    if decision_rows:
        sections.append(("Wall time of one growth decision", C.markdown_table(decision_rows)))
    if product_rows:
        sections += [
            ("Exact vs difference and expansion products: setup",
             f"`TLAGRegressor` with growth off, {s['products_depth']} layers, trained "
             f"{s['products_epochs']} epochs (float32) on the Lahn training rows; derivatives "
             f"of every position on {s['products_samples']} random training windows of "
             f"{s['products_lookback']} days, Lanczos with the default budget "
             f"({DEFAULT_BUDGET}) and tolerance (1e-3); the central difference's default "
             f"step is {difference_step(torch.float32):.2e} in float32; seeds {seeds}."),
            ("Exact vs difference and expansion products: the decision",
             C.markdown_table(product_rows)),
            ("Exact vs difference and expansion products: every position",
             C.markdown_table(position_rows, digits=5)),
        ]
    if tolerance_rows:
        sections += [
            ("Stopping tolerance: setup",
             f"The networks and windows of the exact-vs-difference part ({s['products_depth']} "
             f"layers, {s['products_epochs']} epochs, {s['products_samples']} windows of "
             f"{s['products_lookback']} days), exact products; each tolerance with the "
             f"default budget ({DEFAULT_BUDGET}), the reference with tolerance "
             f"{REFERENCE_SOLVE['tol']:g} and budget {REFERENCE_SOLVE['max_hvp']}; seeds "
             f"{seeds}."),
            ("Stopping tolerance", C.markdown_table(tolerance_rows, digits=4)),
        ]
    C.write_results(
        args.out, "eigensolver", "Eigen-solver: Lanczos vs power iteration; HVP kinds",
        sections,
        {"accuracy": accuracy_rows, "decision": decision_rows, "products": product_rows,
         "products_by_position": position_rows, "tolerance": tolerance_rows},
        {**s, "seeds": seeds, "threads": args.threads, "quick": args.quick,
         "tolerance": TOLERANCE, "parts": args.parts}, machine, seconds,
    )

if __name__ == "__main__":
    main()
