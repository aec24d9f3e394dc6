"""Memory: peak resident memory of ``fit`` on a long synthetic series.

A child process imports everything and runs one tiny warm-up fit, notes its resident set
size (VmRSS), builds a synthetic float32 series of ``rows x 20`` inputs (and a float64
target), fits one epoch with lookback 365, and reports its peak resident set size (VmHWM,
Linux). The increase over the baseline after the imports is compared with the size of
the input array: the windows (``rows x 365 x 20`` values) are never materialised, so it
should stay within twice the input plus the model and a fixed training workspace. The
same fit on a series 100 times shorter shows that workspace does not grow with the
series.

Usage::

    python benchmarks/memory.py            # 1,000,000 rows, 200 training batches
    python benchmarks/memory.py --quick    # 10,000 rows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _common as C
from skorch.callbacks import Callback

FULL = {"rows": 1_000_000, "features": 20, "lookback": 365, "hidden_size": 4,
        "batch_size": 256, "dtype": "float32", "max_batches": 200}
QUICK = {**FULL, "rows": 10_000, "lookback": 365, "max_batches": 20}
#: The fixed workspace is measured on a series this many times shorter.
SMALL_FRACTION = 100


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class StopAfterBatches(Callback):
    """Interrupt training after ``n`` training batches.

    Memory does not grow with the number of batches (the series is held once, each batch
    gathers its own windows), only time does: a full epoch over a million 365-day
    windows takes hours on two cores, so the measurement stops after ``n`` batches.
    """

    def __init__(self, n: int):
        self.n = n

    def initialize(self):
        self.seen_ = 0
        return self

    def on_batch_end(self, net, training, **kwargs):
        self.seen_ += bool(training)
        if self.seen_ >= self.n:
            raise KeyboardInterrupt


class ProbeAtTrainBegin(Callback):
    """Note the resident set size when training begins.

    By then ``fit`` has checked the input, built the window index and the standardized
    target and made the network; no batch has run yet.
    """

    kib: int | None = None

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        ProbeAtTrainBegin.kib = _status_kib("VmRSS")


def child(s: dict[str, Any]) -> dict[str, Any]:
    """Run in the child process: fit once and report memory in MiB."""
    import numpy as np
    import torch

    from sktlag import TLAGRegressor

    torch.set_num_threads(s["threads"])
    # The first fit of a process imports more of torch (hundreds of MiB of modules);
    # that is not the cost of the data, so it happens before the baseline.
    rng = np.random.default_rng(1)
    TLAGRegressor(hidden_size=2, lookback=3, max_epochs=1, max_layers=1, batch_size=16).fit(
        rng.standard_normal((80, 2)).astype(np.float32), rng.standard_normal(80)
    )
    baseline = _status_kib("VmRSS")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((s["rows"], s["features"]), dtype=np.float32)
    if s["dtype"] != "float32":
        X = X.astype(s["dtype"])
    y = X[:, :3].sum(axis=1, dtype=np.float64)
    with_data = _status_kib("VmRSS")
    est = TLAGRegressor(
        hidden_size=s["hidden_size"], lookback=s["lookback"], batch_size=s["batch_size"],
        max_epochs=s.get("epochs", 1), max_layers=1, topo_derivative_threshold=float("inf"),
        derivative_samples=64, n_threads=s["threads"], random_state=0,
        callbacks=[("probe", ProbeAtTrainBegin())]
        + ([("stop", StopAfterBatches(s["max_batches"]))] if s["max_batches"] else []),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the planned interrupt
        est.fit(X, y)
    seconds = time.perf_counter() - start
    est.predict(X[: 20 * s["lookback"]])  # the prediction path too, on a slice
    peak = _status_kib("VmHWM")
    model_bytes = sum(p.numel() * p.element_size() for p in est.module_.parameters())
    mib = 1024.0
    return {
        "baseline_mib": baseline / mib,
        "after_data_mib": with_data / mib,
        "train_begin_mib": ProbeAtTrainBegin.kib / mib,
        "peak_mib": peak / mib,
        "input_mib": (X.nbytes + y.nbytes) / 2**20,
        "X_mib": X.nbytes / 2**20,
        "model_mib": model_bytes / 2**20,
        "batch_mib": s["batch_size"] * s["lookback"] * s["features"] * 4 / 2**20,
        "windows_if_materialised_mib": s["rows"] * s["lookback"] * s["features"] * 4 / 2**20,
        "fit_seconds": seconds,
    }


def _run_child(s: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(s)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"memory child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(s: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    increase = m["peak_mib"] - m["baseline_mib"]
    return {
        "rows x features": f"{s['rows']:,} x {s['features']} ({s['dtype']})",
        "lookback": s["lookback"],
        "X MiB": m["X_mib"],
        "X + y MiB": m["input_mib"],
        "baseline RSS MiB (after imports)": m["baseline_mib"],
        "peak RSS MiB": m["peak_mib"],
        "peak - baseline MiB": increase,
        "(peak - baseline) / X": increase / m["X_mib"],
        "set-up MiB": m["train_begin_mib"] - m["after_data_mib"],
        "workspace MiB": m["peak_mib"] - m["train_begin_mib"],
        "one batch MiB": m["batch_mib"],
        "windows if materialised MiB": m["windows_if_materialised_mib"],
        "fit s": m["fit_seconds"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--rows", type=int, default=None, help="rows of the synthetic series")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    s = dict(QUICK if args.quick else FULL)
    if args.rows is not None:
        s["rows"] = args.rows
    s["threads"] = args.threads
    # The same fit on a series SMALL_FRACTION as long: what it adds while training is the
    # workspace that does not grow with the series (the allocator's arenas, the autograd
    # buffers of one batch of lookback-long windows).
    # It trains as many batches as the long one (over several epochs).
    small = {**s, "rows": max(s["rows"] // SMALL_FRACTION, 4 * s["lookback"]),
             "epochs": s["max_batches"]}
    machine = C.machine_info(args.threads)
    start = time.perf_counter()
    m_small, m = _run_child(small), _run_child(s)
    seconds = time.perf_counter() - start
    rows = [_row(small, m_small), _row(s, m)]
    increase = m["peak_mib"] - m["baseline_mib"]
    workspace = m["peak_mib"] - m["train_begin_mib"]
    growing = increase - workspace  # the input and fit's set-up
    verdict = "within" if growing <= 2 * m["X_mib"] + m["model_mib"] else "above"
    sections = [
        ("Peak memory of fit", C.markdown_table(rows, digits=1)),
        ("Summary",
         f"Peak RSS rose {increase:.0f} MiB over the post-import baseline while fitting on a "
         f"{m['X_mib']:.0f} MiB input. Of that, {growing:.0f} MiB grow with the series (the "
         f"input and what fit sets up before the first batch): {growing / m['X_mib']:.2f} x "
         f"the input, {verdict} the target of 2 x input + model "
         f"({2 * m['X_mib'] + m['model_mib']:.0f} MiB). The training workspace on top, "
         f"{workspace:.0f} MiB, does not: the same fit on {small['rows']:,} rows "
         f"({m_small['X_mib']:.1f} MiB of input) added "
         f"{m_small['peak_mib'] - m_small['train_begin_mib']:.0f} MiB while training. "
         f"Materialised windows would need {m['windows_if_materialised_mib']:,.0f} MiB. "
         f"Hidden {s['hidden_size']}, batch {s['batch_size']}, training stopped after "
         f"{s['max_batches']} batches (memory does not grow with more batches, only time)."),
        ("Breakdown",
         f"Over the post-import baseline: the input X and y ({m['input_mib']:.0f} MiB of arrays) "
         f"+{m['after_data_mib'] - m['baseline_mib']:.0f} MiB of RSS once created; what `fit` "
         "sets up before the first batch (input checks, window index, standardized target, "
         f"network) +{m['train_begin_mib'] - m['after_data_mib']:.0f} MiB; training and "
         f"prediction workspace up to the peak +{m['peak_mib'] - m['train_begin_mib']:.0f} MiB."),
    ]
    C.write_results(
        args.out, "memory", "Memory: peak RSS of fit", sections,
        {"measurement": m, "small_series": m_small, "workspace_mib": workspace,
         "growing_mib": growing, "table": rows},
        {**s, "small_rows": small["rows"], "quick": args.quick}, machine, seconds,
    )


if __name__ == "__main__":
    main()
