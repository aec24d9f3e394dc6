"""Side by side with the research code: epochs, threads, arithmetic floor, time to accuracy.

Takes the path of the research code (``TLAG-LSTM.py``) and of its demo table
(``DemoData.xlsx``), imports the code and times, one after another on the same data:

1. **Epochs at the research settings** (hidden 128, 3 layers, lookback 30, batch 128,
   dropout 0.2, lr 1e-4): the research code's own ``train_with_adaptation`` loop (its
   ``main()``'s data preparation and split, depth held at 3) and ``TLAGRegressor`` with
   ``PRESETS["research"]`` (depth held at 3), each at its default thread count and at 1
   thread. An epoch is what each loop does per epoch: the research loop trains, then
   predicts the whole training set and the validation set; sktlag trains and predicts
   the validation set. Seconds per epoch are medians without the first epoch.
2. **Threads**: sktlag's seconds per epoch at the package defaults and at the research
   preset for every thread count from 1 to torch's own, next to its default; then 1
   thread and torch's count again while another process keeps one core busy; where an
   epoch's time goes (cProfile own time of the LSTM kernels, dropout and the rest) and
   torch's dropout against a mask drawn with ``torch.rand``.
3. **The machine's floor**: the training arithmetic of one sktlag epoch at the research
   settings (the LSTM's matrix products, forward and backward) divided by the rate of a
   large float32 matrix product measured here, and by the bfloat16 rate where the CPU
   computes bfloat16 natively.
4. **A growth decision** at hidden 128 (depth 3, ``derivative_samples`` windows) in
   epochs, and **prediction throughput** of the fitted network (rows per second, whole
   series).
5. **Time to accuracy**: ``PRESETS[p]`` for each ``--presets`` ``p`` (default
   ``short_record`` and ``hydrology``) on the research split (first 80 % of the rows
   fit, last 20 % test) of the demo and of the embedded Lahn outlet cut to the demo's
   length, one fit per seed: wall time and test NSE, to set against the research
   code's own default run (its figure is in the docs). ``--members K`` fits, per seed,
   an ensemble of ``K`` such models (``TLAGEnsemble``, members one after another) and
   times the whole ensemble.

Usage::

    python benchmarks/vs_research.py path/to/TLAG-LSTM.py path/to/DemoData.xlsx
    python benchmarks/vs_research.py path/to/TLAG-LSTM.py path/to/DemoData.xlsx --quick
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import _common as C
import numpy as np

#: The research code's ``main()`` settings that an epoch's cost depends on.
RESEARCH = {"hidden_size": 128, "layers": 3, "lookback": 30, "batch_size": 128,
            "dropout": 0.2, "lr": 1e-4}
FULL = {"epochs": 6, "rows": None, "gemm_size": 2048, "predict_repeats": 3}
QUICK = {"epochs": 3, "rows": 600, "gemm_size": 256, "predict_repeats": 1}


def import_research(path: Path) -> ModuleType:
    """The research code as a module (its ``main()`` does not run on import)."""
    spec = importlib.util.spec_from_file_location("tlag_research", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(call, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``call()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return C.median(times)


# ------------------------------------------------------------------- 1. epochs
def research_epochs(R: ModuleType, data: dict[str, Any], s: dict[str, Any],
                    threads: int) -> list[float]:
    """Seconds of each epoch of the research code's own training loop.

    Data preparation as in its ``main()``: min-max scaling of inputs and flow,
    ``create_sequences``, the first 80 % of the sequences split 80/20 into training and
    validation. Its loop calls ``evaluate`` on the training and then the validation
    loader once per epoch; an epoch ends when the validation evaluation returns.
    """
    import torch
    from sklearn.preprocessing import MinMaxScaler
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    flow_scaler = MinMaxScaler()
    flow = flow_scaler.fit_transform(data["y"].reshape(-1, 1))
    inputs = MinMaxScaler().fit_transform(data["X"].astype(np.float64))
    X, y = R.create_sequences(inputs, flow, s["lookback"])
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    n_fit = int(len(X) * 0.8)
    n_train = int(n_fit * 0.8)
    train = DataLoader(TensorDataset(X[:n_train], y[:n_train]),
                       batch_size=s["batch_size"], shuffle=True)
    valid = DataLoader(TensorDataset(X[n_train:n_fit], y[n_train:n_fit]),
                       batch_size=s["batch_size"])
    model = R.AdaptiveLSTMModel(X.shape[2], s["hidden_size"], s["layers"], s["dropout"])
    ends: list[float] = []
    evaluate = R.evaluate

    def timed_evaluate(model, loader, *args, **kwargs):
        result = evaluate(model, loader, *args, **kwargs)
        if loader is valid:
            ends.append(time.perf_counter())
        return result

    R.evaluate = timed_evaluate
    here = os.getcwd()
    try:
        # The loop saves every improved model under ./intermediate_models and prints
        # every epoch: a scratch folder and a captured stdout keep both out of the way.
        with tempfile.TemporaryDirectory() as scratch, \
                contextlib.redirect_stdout(io.StringIO()):
            os.chdir(scratch)
            ends.append(time.perf_counter())
            R.train_with_adaptation(
                model, train, valid, flow_scaler, "cpu", max_layers=s["layers"],
                patience=s["epochs"] + 1, learning_rate=s["lr"], moving_avg_window=5,
                topo_derivative_threshold=0.01, max_epochs_per_layer=s["epochs"],
            )
    finally:
        os.chdir(here)
        R.evaluate = evaluate
    return list(np.diff(ends))


def research_preset(s: dict[str, Any]) -> dict[str, Any]:
    """``PRESETS["research"]`` at the settings ``s``, depth held where it starts."""
    from sktlag import PRESETS

    preset = PRESETS["research"]
    shipped = {"hidden_size": preset["hidden_size"], "layers": preset["initial_num_layers"],
               "lookback": preset["lookback"], "batch_size": preset["batch_size"],
               "dropout": preset["dropout"], "lr": preset["lr"]}
    if shipped != RESEARCH:
        raise RuntimeError(f"PRESETS['research'] no longer has the research code's "
                           f"settings: {shipped} != {RESEARCH}")
    return {**preset, "hidden_size": s["hidden_size"], "initial_num_layers": s["layers"],
            "max_layers": s["layers"], "lookback": s["lookback"], "max_epochs": s["epochs"]}


def fixed_depth_sizes(s: dict[str, Any], epochs: int, quick: bool) -> dict[str, dict]:
    """The package defaults at one layer and the research preset at its depth."""
    defaults = {"max_epochs": epochs, "max_layers": 1}
    if quick:
        defaults.update(hidden_size=8, lookback=20)
    return {"package defaults": defaults,
            "research preset": {**research_preset(s), "max_epochs": epochs}}


def sktlag_fit(data: dict[str, Any], params: dict[str, Any], threads: Any):
    """Fit on the fit rows; the estimator and its seconds per epoch."""
    from sktlag import TLAGRegressor

    n = data["n_train"]
    kwargs = {} if threads == "default" else {"n_threads": threads}
    est = TLAGRegressor(**params, **kwargs, random_state=0)
    est.fit(data["X"][:n], data["y"][:n])
    return est, [float(row["dur"]) for row in est.history_]


def epoch_rows(R, data, s) -> tuple[list[dict[str, Any]], Any]:
    """Section 1: both loops at their default threads and at 1 thread."""
    import torch

    torch_default = torch.get_num_threads()
    rows, fitted = [], None
    for threads in (torch_default, 1) if torch_default != 1 else (1,):
        seconds = research_epochs(R, data, s, threads)
        torch.set_num_threads(torch_default)
        rows.append({"loop": "research code", "threads": threads,
                     "default": threads == torch_default,
                     "s/epoch": C.median(seconds[1:]), "epochs": len(seconds)})
        print(rows[-1], flush=True)
    params = research_preset(s)
    for threads in ("default", 1):
        est, seconds = sktlag_fit(data, params, threads)
        fitted = fitted or est
        rows.append({"loop": "sktlag", "threads": est.n_threads_,
                     "default": threads == "default",
                     "s/epoch": C.median(seconds[1:]), "epochs": len(seconds)})
        print(rows[-1], flush=True)
    research = next(r["s/epoch"] for r in rows if r["loop"] == "research code" and r["default"])
    for row in rows:
        row["ratio to research (default threads)"] = row["s/epoch"] / research
    return rows, fitted


# ------------------------------------------------------------------- 2. threads
def thread_rows(data, s, quick: bool) -> list[dict[str, Any]]:
    """Section 2: sktlag's epoch at every thread count, defaults and research preset."""
    import torch

    sizes = fixed_depth_sizes(s, s["epochs"], quick)
    rows = []
    for size, params in sizes.items():
        for threads in range(1, torch.get_num_threads() + 1):
            _, seconds = sktlag_fit(data, params, threads)
            rows.append({"size": size, "threads": threads,
                         "s/epoch": C.median(seconds[1:])})
            print(rows[-1], flush=True)
        best = min(r["s/epoch"] for r in rows if r["size"] == size)
        for row in rows:
            if row["size"] == size:
                row["over best"] = row["s/epoch"] / best
        est, seconds = sktlag_fit(data, params, "default")
        rows.append({"size": size, "threads": f"default ({est.n_threads_})",
                     "s/epoch": C.median(seconds[1:]),
                     "over best": C.median(seconds[1:]) / best})
        print(rows[-1], flush=True)
    return rows


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def busy_rows(data, s, quick: bool) -> list[dict[str, Any]]:
    """Section 2b: 1 thread against torch's count while one other process spins a core."""
    import multiprocessing

    import torch

    sizes = fixed_depth_sizes(s, s["epochs"], quick)
    rows = []
    spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(36000,))
    spinner.start()
    try:
        for size, params in sizes.items():
            for threads in sorted({1, torch.get_num_threads()}):
                _, seconds = sktlag_fit(data, params, threads)
                rows.append({"size": size, "threads": threads, "other core": "busy",
                             "s/epoch": C.median(seconds[1:])})
                print(rows[-1], flush=True)
    finally:
        spinner.terminate()
        spinner.join()
    return rows


# ------------------------------------------------------------------- 2c. profile
#: Own-time entries of the LSTM kernels (forward; backward runs in the autograd engine).
_KERNELS = {"LSTM forward": ("torch.lstm",), "backward (autograd)": ("run_backward",),
            "dropout": ("torch.dropout",)}


def profile_rows(data, s, quick: bool) -> list[dict[str, Any]]:
    """Section 2c: where sktlag's training time goes (cProfile own time), both sizes."""
    import cProfile
    import pstats

    sizes = fixed_depth_sizes(s, 3, quick)
    rows = []
    for size, params in sizes.items():
        profiler = cProfile.Profile()
        profiler.enable()
        est, _ = sktlag_fit(data, params, "default")
        profiler.disable()
        own = {}
        for (_, _, function), (_, _, seconds, _, _) in pstats.Stats(profiler).stats.items():
            for part, names in _KERNELS.items():
                if any(name in function for name in names):
                    own[part] = own.get(part, 0.0) + seconds
        row = {"size": size, "threads": est.n_threads_, "fit s": est.fit_time_}
        row.update({f"{part} share": own.get(part, 0.0) / est.fit_time_ for part in _KERNELS})
        row["rest share"] = 1 - sum(own.values()) / est.fit_time_
        rows.append(row)
        print(row, flush=True)
    return rows


def dropout_rows(s) -> list[dict[str, Any]]:
    """Section 2c: torch's dropout against a mask drawn with ``torch.rand``, one tensor."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(s["batch_size"], s["lookback"], s["hidden_size"], requires_grad=True)
    ways = {"F.dropout (Bernoulli draw)": lambda: F.dropout(x, 0.2, True),
            "x * (rand >= p) / (1 - p)": lambda: x * ((torch.rand_like(x) >= 0.2) / 0.8)}
    return [{"dropout": name, "ms per call": 1e3 * median_seconds(way, 21)}
            for name, way in ways.items()]


# ------------------------------------------------------------------- 3. floor
def gemm_rate(dtype, size: int, repeats: int = 5) -> float:
    """FLOP/s of a ``size x size`` matrix product in ``dtype`` (median of repeats)."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # first call sets up the kernel
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats)


def epoch_flops(n_train: int, n_valid: int, s: dict[str, Any], n_features: int) -> float:
    """Matrix-product FLOPs of one sktlag epoch at the research settings.

    Per window, time step and layer the LSTM multiplies ``[x, h]`` by its stacked gate
    weights: ``2 * 4H * (I + H)`` FLOPs. Training costs three times the forward pass
    (forward, gradients of activations, gradients of weights); validation is a forward
    pass. Element-wise gate arithmetic and the head are left out (a few per cent).
    """
    H, T = s["hidden_size"], s["lookback"]
    forward = 0.0
    for layer in range(s["layers"]):
        inputs = n_features if layer == 0 else H
        forward += 2 * 4 * H * (inputs + H) * T
    return (3 * n_train + n_valid) * forward


def floor_rows(data, s, epoch_seconds: float) -> list[dict[str, Any]]:
    """Section 3: the measured epoch against the arithmetic floor of this machine."""
    import torch

    from sktlag.windows import fit_split

    train_ends, valid_ends = fit_split(data["y"][: data["n_train"], None], s["lookback"], 0.2)
    flops = epoch_flops(len(train_ends), len(valid_ends), s, data["X"].shape[1])
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    rows = []
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        # Emulated bfloat16 runs at a few GFLOP/s: a smaller product shows its rate too.
        native = dtype == torch.float32 or native_bf16
        rate = gemm_rate(dtype, s["gemm_size"] if native else min(s["gemm_size"], 512))
        rows.append({
            "precision": name if native else f"{name} (not native on this CPU)",
            "GEMM GFLOP/s": rate / 1e9, "epoch GFLOP": flops / 1e9,
            "floor s/epoch": flops / rate, "sktlag s/epoch": epoch_seconds,
            "sktlag / floor": epoch_seconds * rate / flops,
        })
        print(rows[-1], flush=True)
    return rows


# -------------------------------------------------------- 4. decision, prediction
def decision_and_prediction(est, data, s, epoch_seconds: float) -> list[dict[str, Any]]:
    """Section 4: one growth decision at depth 3 and the prediction throughput."""
    import torch
    from growth_cost import decision_seconds

    n = data["n_train"]
    params = research_preset(s)
    decision, passes = decision_seconds(params["initial_num_layers"], params,
                                        data["X"][:n], data["y"][:n])
    predict = median_seconds(lambda: est.predict(data["X"]), s["predict_repeats"])
    return [{
        "threads": torch.get_num_threads(),
        "decision s": decision, "backward passes": passes,
        "decision / epoch": decision / epoch_seconds,
        "prediction rows/s": len(data["X"]) / predict,
    }]


# --------------------------------------------------------- 5. time to accuracy
def accuracy_rows(datasets, presets: list[str], seeds: list[int], quick: bool,
                  members: int = 1) -> list[dict[str, Any]]:
    """Section 5: fit time and test NSE of presets on the research split of each series.

    With ``members > 1`` each seed fits a ``TLAGEnsemble`` of that many members (one
    after another, each at the preset's threads) and the row is the ensemble mean's.
    """
    from sktlag import PRESETS, TLAGEnsemble, TLAGRegressor
    from sktlag.metrics import nse

    rows = []
    for data in datasets:
        n = data["n_train"]
        for preset in presets:
            params = dict(PRESETS[preset])
            if quick:
                params.update(hidden_size=8, lookback=20, max_epochs=3,
                              max_epochs_per_layer=3)
            for seed in seeds:
                start = time.perf_counter()
                if members > 1:
                    est = TLAGEnsemble(TLAGRegressor(**params), n_members=members,
                                       random_state=seed)
                else:
                    est = TLAGRegressor(**params, random_state=seed)
                est.fit(data["X"][:n], data["y"][:n])
                seconds = time.perf_counter() - start
                pred = est.predict(data["X"])
                fitted = getattr(est, "estimators_", [est])
                rows.append({"series": data["name"], "preset": preset, "members": members,
                             "seed": seed, "threads": fitted[0].n_threads_,
                             "layers": " ".join(str(m.n_layers_) for m in fitted),
                             "best epoch": " ".join(str(m.best_epoch_) for m in fitted),
                             "fit s": seconds, "test NSE": nse(data["y"][n:], pred[n:])})
                if members > 1:
                    rows[-1]["member test NSE"] = " ".join(
                        f"{nse(data['y'][n:], m.predict(data['X'])[n:]):.3f}" for m in fitted)
                print(rows[-1], flush=True)
    return rows


def accuracy_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median test NSE and fit time per series and preset."""
    out = []
    def key(row):
        return row["series"], row["preset"], row.get("members", 1)

    for series, preset, members in dict.fromkeys(map(key, rows)):
        group = [r for r in rows if key(r) == (series, preset, members)]
        out.append({"series": series, "preset": preset, "members": members,
                    "seeds": len(group),
                    "test NSE (median)": C.median([r["test NSE"] for r in group]),
                    "test NSE (range)": C.spread([r["test NSE"] for r in group]),
                    "fit s (median)": C.median([r["fit s"] for r in group])})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=3)
    parser.add_argument("research", type=Path, help="the research code, TLAG-LSTM.py")
    parser.add_argument("data", type=Path, help="its demo table, DemoData.xlsx")
    parser.add_argument("--presets", nargs="+", default=["short_record", "hydrology"],
                        help="presets timed to accuracy (default: short_record hydrology)")
    parser.add_argument("--members", type=int, default=1,
                        help="time to accuracy of ensembles of this many members per seed "
                             "(default 1: single models)")
    parser.add_argument("--series", nargs="+", default=["demo", "lahn"],
                        choices=["demo", "lahn"],
                        help="series timed to accuracy (default: both)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["epochs", "threads", "busy", "profile", "floor",
                                 "decision", "accuracy"],
                        help="sections to leave out")
    for action in parser._actions:
        if action.dest == "threads":
            action.help = "not used: every section states the thread counts it measures"
    args = parser.parse_args(argv)
    for path in (args.research, args.data):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    s = {**RESEARCH, **(QUICK if args.quick else FULL)}
    if args.quick:
        s.update(hidden_size=8, lookback=10)
    R = import_research(args.research)
    data = C.demo_dataset(args.data, rows=s["rows"])
    C.warm_up()
    start = time.perf_counter()
    sections, results = [], {}
    if "epochs" not in args.skip:
        epochs, est = epoch_rows(R, data, s)
        results["epochs"] = epochs
        sections.append(("Seconds per epoch at the research settings",
                         C.markdown_table(epochs)))
    elif not {"floor", "decision"} <= set(args.skip):
        parser.error("the floor and decision sections need the epochs section")
    if "threads" not in args.skip:
        results["threads"] = thread_rows(data, s, args.quick)
        sections.append(("Threads", C.markdown_table(results["threads"])))
    if "busy" not in args.skip:
        results["busy"] = busy_rows(data, s, args.quick)
        sections.append(("Threads while another process keeps one core busy",
                         C.markdown_table(results["busy"])))
    if "profile" not in args.skip:
        results["profile"] = profile_rows(data, s, args.quick)
        results["dropout"] = dropout_rows(s)
        sections += [("Where an epoch's time goes (cProfile own time)",
                      C.markdown_table(results["profile"])),
                     ("Dropout masks at the research settings",
                      C.markdown_table(results["dropout"]))]
    if not {"floor", "decision"} <= set(args.skip):
        sktlag_default = next(r["s/epoch"] for r in results["epochs"]
                              if r["loop"] == "sktlag" and r["default"])
    if "floor" not in args.skip:
        results["floor"] = floor_rows(data, s, sktlag_default)
        sections.append(("The machine's floor", C.markdown_table(results["floor"])))
    if "decision" not in args.skip:
        results["decision"] = decision_and_prediction(est, data, s, sktlag_default)
        sections.append(("A growth decision and prediction at the research settings",
                         C.markdown_table(results["decision"])))
    if "accuracy" not in args.skip:
        # The demo, and the Lahn outlet cut to the demo's length: two short records.
        short_lahn = C.lahn_dataset(rows=len(data["X"]))
        short_lahn["name"] = f"Lahn Kalkofen, last {len(data['X'])} days"
        series = [d for name, d in (("demo", data), ("lahn", short_lahn))
                  if name in args.series]
        acc = accuracy_rows(series, args.presets, C.seeds_from(args), args.quick,
                            members=args.members)
        results["accuracy"] = acc
        sections += [("Time to accuracy", C.markdown_table(acc)),
                     ("Time to accuracy: summary", C.markdown_table(accuracy_summary(acc)))]
    C.write_results(
        args.out, "vs_research", "Side by side with the research code", sections, results,
        {"quick": args.quick, "research_settings": s, "presets": args.presets,
         "seeds": C.seeds_from(args), "skip": args.skip, "members": args.members,
         "series": args.series},
        C.machine_info(None), time.perf_counter() - start,
    )


if __name__ == "__main__":
    main()
