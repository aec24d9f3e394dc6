"""Speed: epoch time against a bare PyTorch loop, growth share, prediction throughput, profile.

1. Seconds per epoch of ``TLAGRegressor`` at a fixed depth (``topo_derivative_threshold =
   inf``) from ``history_[:, "dur"]``, against a bare loop over the same ``GrowingLSTM``,
   the same windows (one gather per batch from a precomputed index), Adam, MSE, the same
   batch size, shuffled, with the same validation pass. The first epoch is left out.
2. A growing fit: the share of its fit time spent in growth decisions.
3. Prediction throughput of the fitted estimator (rows per second, whole series).
4. A cProfile of the growing fit: the functions with the most own time.

Usage::

    python benchmarks/speed.py
    python benchmarks/speed.py --quick
"""

from __future__ import annotations

import cProfile
import pstats
import time
from typing import Any

import _common as C
import numpy as np
import torch

from sktlag import GrowingLSTM, TLAGRegressor
from sktlag.windows import chronological_split, window_ends

FULL = {"hidden_size": 32, "depth": 2, "epochs": 6, "lookback": 30, "batch_size": 256,
        "lr": 3e-3, "rows": None, "grow_max_layers": 3, "grow_epochs": 12,
        "grow_epochs_per_layer": 4, "predict_repeats": 3}
QUICK = {"hidden_size": 8, "depth": 2, "epochs": 3, "lookback": 30, "batch_size": 128,
         "lr": 1e-2, "rows": 900, "grow_max_layers": 2, "grow_epochs": 4,
         "grow_epochs_per_layer": 2, "predict_repeats": 1}

# Own-time entries that are the LSTM arithmetic itself (forward and backward kernels).
_ARITHMETIC = ("run_backward", "torch.lstm", "_VariableFunctionsClass.lstm")


def bare_loop(X: np.ndarray, y: np.ndarray, s: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train the same network with a plain PyTorch loop; seconds per epoch.

    Mirrors the estimator: standardized target, chronological split with a gap,
    shuffled batches, validation predictions and their NSE every epoch.
    """
    torch.manual_seed(seed)
    lookback = s["lookback"]
    ends = window_ends(len(X), lookback)
    train_ends, valid_ends = chronological_split(ends, 0.2, lookback)
    mean, scale = y[train_ends].mean(), y[train_ends].std()
    X_t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    y_t = torch.from_numpy(((y - mean) / scale).astype(np.float32)).reshape(-1, 1)
    offsets = torch.arange(-lookback + 1, 1)
    train_rows = torch.from_numpy(train_ends)
    valid_rows = torch.from_numpy(valid_ends)
    module = GrowingLSTM(X.shape[1], s["hidden_size"], num_layers=s["depth"])
    optimizer = torch.optim.Adam(module.parameters(), lr=s["lr"])
    loss_fn = torch.nn.MSELoss()
    train_seconds, epoch_seconds = [], []
    for _ in range(s["epochs"]):
        start = time.perf_counter()
        module.train()
        order = train_rows[torch.randperm(len(train_rows))]
        for first in range(0, len(order), s["batch_size"]):
            rows = order[first : first + s["batch_size"]]
            xb, yb = X_t[rows[:, None] + offsets], y_t[rows]
            optimizer.zero_grad()
            loss = loss_fn(module(xb), yb)
            loss.backward()
            optimizer.step()
        train_seconds.append(time.perf_counter() - start)
        module.eval()
        preds = []
        with torch.no_grad():
            for first in range(0, len(valid_rows), s["batch_size"]):
                rows = valid_rows[first : first + s["batch_size"]]
                preds.append(module(X_t[rows[:, None] + offsets]))
        pred = torch.cat(preds).double().numpy().ravel()
        truth = y_t[valid_rows].double().numpy().ravel()
        _ = 1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
        epoch_seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": epoch_seconds, "train_seconds": train_seconds}


def estimator_fixed(X: np.ndarray, y: np.ndarray, s: dict[str, Any], seed: int, threads: int):
    """The estimator at fixed depth, trained exactly ``epochs`` epochs."""
    est = TLAGRegressor(
        hidden_size=s["hidden_size"], initial_num_layers=s["depth"], max_layers=s["depth"],
        topo_derivative_threshold=np.inf, lookback=s["lookback"], lr=s["lr"],
        batch_size=s["batch_size"], max_epochs=s["epochs"], max_epochs_per_layer=s["epochs"],
        patience=s["epochs"], n_threads=threads, random_state=seed,
    )
    est.fit(X, y)
    return est


def profile_growing_fit(X, y, s: dict[str, Any], seed: int, threads: int):
    """A growing fit under cProfile: the estimator and the top own-time functions."""
    est = TLAGRegressor(
        hidden_size=s["hidden_size"], max_layers=s["grow_max_layers"], lookback=s["lookback"],
        lr=s["lr"], batch_size=s["batch_size"], max_epochs=s["grow_epochs"],
        max_epochs_per_layer=s["grow_epochs_per_layer"], patience=2, moving_avg_window=2,
        topo_derivative_threshold=-np.inf, n_threads=threads, random_state=seed,
    )
    profiler = cProfile.Profile()
    profiler.enable()
    est.fit(X, y)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = est.fit_time_
    rows = []
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (filename, line, function), (_, calls, own, cumulative, _) in entries[:15]:
        where = filename.split("site-packages/")[-1].split("sktlag/")[-1]
        name = function if filename == "~" else f"{where}:{line} {function}"
        rows.append({
            "function": name.replace("|", "/"),
            "calls": calls,
            "own s": own,
            "cumulative s": cumulative,
            "own share of fit": own / total,
            "LSTM arithmetic": any(k in name for k in _ARITHMETIC),
        })
    return est, rows


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=3)
    args = parser.parse_args(argv)
    C.set_threads(args.threads)
    s = dict(QUICK if args.quick else FULL)
    seeds = C.seeds_from(args)
    warm_up_seconds = C.warm_up()
    machine = C.machine_info(args.threads)
    data = C.lahn_dataset(s["rows"])
    X, y = data["X"][: data["n_train"]], data["y"][: data["n_train"]]
    start = time.perf_counter()

    epoch_rows, raw = [], []
    for seed in seeds:
        est = estimator_fixed(X, y, s, seed, args.threads)
        est_epochs = [float(d) for d in est.history_[:, "dur"]]
        bare = bare_loop(X, y, s, seed)
        raw.append({"seed": seed, "estimator_epoch_seconds": est_epochs, **bare})
        e, b = C.median(est_epochs[1:]), C.median(bare["epoch_seconds"][1:])
        epoch_rows.append({
            "seed": seed,
            "TLAGRegressor s/epoch": e,
            "bare torch s/epoch": b,
            "bare torch train-only s/epoch": C.median(bare["train_seconds"][1:]),
            "overhead": e / b,
        })
    overhead = C.median([r["overhead"] for r in epoch_rows])

    # Prediction throughput on the whole series with the last fixed-depth estimator.
    full_X = data["X"]
    times = []
    for _ in range(s["predict_repeats"]):
        t0 = time.perf_counter()
        est.predict(full_X)
        times.append(time.perf_counter() - t0)
    throughput = len(full_X) / C.median(times)

    grown, profile_rows = profile_growing_fit(X, y, s, seeds[0], args.threads)
    growth = grown.derivative_history_
    growth_seconds = float(growth["seconds"].sum())
    growth_rows = [{
        "fit s (under cProfile)": grown.fit_time_,
        "epochs": len(grown.history_),
        "final depth": grown.n_layers_,
        "growth decisions": len(growth),
        "growth s": growth_seconds,
        "growth share of fit": growth_seconds / grown.fit_time_,
        "HVPs": int(growth["n_hvp"].sum()),
        "sum of epoch dur s": float(sum(grown.history_[:, "dur"])),
    }]
    arithmetic = sum(r["own s"] for r in profile_rows if r["LSTM arithmetic"])
    seconds = time.perf_counter() - start
    sections = [
        ("Data", f"{data['name']}: the {len(X)} training rows (of {len(full_X)}), "
                 f"{X.shape[1]} inputs, lookback {s['lookback']}, hidden {s['hidden_size']}, "
                 f"batch {s['batch_size']}. Seeds {seeds}. First epoch of every run left out. "
                 f"A tiny warm-up fit before any timing (the process's first optimizer "
                 f"imports `torch._dynamo`) took {warm_up_seconds:.1f} s."),
        ("Seconds per epoch at fixed depth "
         f"{s['depth']}: TLAGRegressor vs bare PyTorch", C.markdown_table(epoch_rows)),
        ("Prediction throughput",
         f"{throughput:,.0f} rows/s (`predict` on {len(full_X)} rows, depth {s['depth']}, "
         f"median of {len(times)} calls)."),
        ("A growing fit: share of growth decisions", C.markdown_table(growth_rows)),
        ("Profile of the growing fit (cProfile, top own time)",
         C.markdown_table(profile_rows)
         + f"\nLSTM arithmetic (forward kernels and autograd backward): {arithmetic:.2f} s "
           f"of {grown.fit_time_:.2f} s.\n"),
        ("Summary",
         f"Estimator epoch time / bare loop: {overhead:.2f} (median over seeds). Growth "
         f"decisions: {100 * growth_seconds / grown.fit_time_:.1f} % of the growing fit. "
         f"Prediction: {throughput:,.0f} rows/s."),
    ]
    C.write_results(
        args.out, "speed", "Speed: epoch time, growth share, prediction, profile", sections,
        {"epochs": epoch_rows, "raw": raw, "overhead_median": overhead,
         "predict_rows_per_second": throughput, "predict_seconds": times,
         "growth": growth_rows, "profile": profile_rows, "warm_up_seconds": warm_up_seconds},
        {**s, "seeds": seeds, "threads": args.threads, "quick": args.quick}, machine, seconds,
    )


if __name__ == "__main__":
    main()
