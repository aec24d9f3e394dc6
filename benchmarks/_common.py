"""Shared helpers of the benchmark scripts: arguments, machine info, data, result files.

Every script writes ``<name>.md`` and ``<name>.json`` into its ``--out`` folder. The JSON
holds the machine description, the versions, the seeds and settings, and every raw
measurement; the Markdown holds the same tables for people.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"

# The scripts run from a checkout (``python benchmarks/accuracy.py``): make the package
# in this checkout importable even when it is not installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

#: The stop rules by which growth ends by itself (deeper stopped helping), not by the
#: epoch budget or the cap on depth.
OWN_RULES = ("threshold", "validation")

#: Split of the research code: the first 80 % of the rows train (the estimator keeps
#: the last 20 % of those for validation), the last 20 % test.
TRAIN_FRACTION = 0.8


def base_parser(description: str, default_seeds: int = 3) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark script has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny settings that finish in seconds (for CI, so the script never rots)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None,
        help=f"number of random seeds (0, 1, ...); default {default_seeds}, 1 with --quick",
    )
    parser.add_argument(
        "--first-seed", type=int, default=0,
        help="the first seed (default 0): --first-seed 1 --seeds 2 runs seeds 1 and 2",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="folder for <name>.md and <name>.json (default: benchmarks/results)",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: steadier timings on a shared machine)",
    )
    parser.set_defaults(default_seeds=default_seeds)
    return parser


def json_object(text: str) -> dict[str, Any]:
    """argparse type of an option that takes estimator parameters as a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text}")
    return value


def seeds_from(args: argparse.Namespace) -> list[int]:
    """The seeds to run: ``--seeds`` of them (else 1 in quick mode, else the default),
    from ``--first-seed`` on."""
    n = args.seeds if args.seeds is not None else (1 if args.quick else args.default_seeds)
    if n < 1:
        raise SystemExit("--seeds must be at least 1")
    first = getattr(args, "first_seed", 0)
    if first < 0:
        raise SystemExit("--first-seed must be at least 0")
    return list(range(first, first + n))


def _git(*arguments: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _total_memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Platform, CPU, memory, library versions and the git commit of the checkout."""
    import pandas
    import scipy
    import sklearn
    import skorch
    import torch

    import sktlag

    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _total_memory_gb(),
        "load_average_at_start": load,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "versions": {
            "sktlag": sktlag.__version__,
            "torch": torch.__version__,
            "skorch": skorch.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "pandas": pandas.__version__,
        },
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def command_line() -> str:
    """The command that produced the results, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = script.name
    arguments = []
    skip_next = False
    for i, arg in enumerate(sys.argv[1:], start=1):
        if skip_next:
            skip_next = False
            continue
        # Paths given on the command line are machine-specific: show only their role.
        if arg in ("--data", "--out") and i + 1 < len(sys.argv):
            arguments += [arg, "path/to/DemoData.xlsx" if arg == "--data" else "OUT"]
            skip_next = True
        elif arg.startswith(("--data=", "--out=")):
            arguments.append(arg.split("=", 1)[0] + ("=path/to/DemoData.xlsx"
                                                     if arg.startswith("--data") else "=OUT"))
        elif not arg.startswith("-") and Path(arg).is_file():
            arguments.append(f"path/to/{Path(arg).name}")
        else:
            arguments.append(arg)
    return shlex.join(["python", script_text, *arguments])


def set_threads(n: int) -> None:
    """Fix torch's intra-op threads for the whole process."""
    import torch

    torch.set_num_threads(n)


def warm_up() -> float:
    """One tiny fit, so that one-time costs do not land in the first timed fit.

    The first optimizer built in a process imports ``torch._dynamo`` (seconds); every
    later fit is spared that. Returns the seconds the warm-up took.
    """
    import warnings

    from sktlag import TLAGRegressor
    from sktlag.recipe import ShortRecordWarning

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 2)).astype(np.float32)
    y = X[:, 0].cumsum()
    start = time.perf_counter()
    with warnings.catch_warnings():
        # A record this short is the point here: its warnings would only clutter the log.
        warnings.simplefilter("ignore", ShortRecordWarning)
        TLAGRegressor(
            hidden_size=2, lookback=3, max_epochs=1, max_layers=1, batch_size=16,
            random_state=0,
        ).fit(X, y).predict(X)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- data
def lahn_dataset(rows: int | None = None) -> dict[str, Any]:
    """The embedded Lahn series: 8 standardized inputs, target ``q_kalkofen`` in m3/s.

    ``rows`` keeps only the last that many days (quick mode). The scaler is fitted on
    the training rows (first 80 %) only.
    """
    from sklearn.preprocessing import StandardScaler

    from sktlag.datasets import load_lahn

    X, y = load_lahn(return_X_y=True, as_frame=True)
    if rows is not None:
        X, y = X.iloc[-rows:], y.iloc[-rows:]
    X, y = X.to_numpy(dtype=np.float64), y.to_numpy(dtype=np.float64)
    n_train = int(len(X) * TRAIN_FRACTION)
    X = StandardScaler().fit(X[:n_train]).transform(X)
    return {
        "name": "Lahn (embedded)",
        "X": X.astype(np.float32),
        "y": y,
        "n_train": n_train,
        "note": "8 inputs (precipitation, temperature), standardized on training rows; "
        "target q_kalkofen [m3/s]",
    }


def demo_dataset(path: Path, rows: int | None = None) -> dict[str, Any]:
    """The research demo table (research layout): 11 stations, target ``Data``.

    The table is already min-max scaled; it is used as it is.
    """
    from sktlag.io import read_table

    table = read_table(path, layout="research")
    X, y = table.X, table.y
    if rows is not None:
        X, y = X.iloc[-rows:], y.iloc[-rows:]
    X, y = X.to_numpy(dtype=np.float32), y.to_numpy(dtype=np.float64)
    return {
        "name": "DemoData (Yuliang)",
        "X": X,
        "y": y,
        "n_train": int(len(X) * TRAIN_FRACTION),
        "note": f"{X.shape[1]} stations, min-max scaled as shipped; target {table.target_names[0]}",
    }


# ---------------------------------------------------------------------------- jobs
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, one per non-empty line."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def resumed(log: Path, resume: bool) -> list[dict[str, Any]]:
    """The finished jobs a run starts from: with ``resume`` those in ``log``; without,
    none, and an old ``log`` is removed so that it holds only this run's jobs."""
    log = Path(log)
    if resume and log.exists():
        return read_jsonl(log)
    log.unlink(missing_ok=True)
    return []


def run_logged(function, jobs: Sequence[dict[str, Any]], processes: int, log: Path,
               line, initializer=None, initargs: tuple = ()) -> list[dict[str, Any]]:
    """Run ``function(job)`` for every job in ``processes`` worker processes.

    Each result is appended to the JSON-lines file ``log`` as soon as it arrives (a run
    cut short keeps what it finished) and ``line(result)`` is printed; a job that
    raises is reported and the others go on. ``initializer(*initargs)`` runs once in
    every worker before its first job. Returns the results in arrival order.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results = []
    # Fresh interpreters, not forks: a forked CUDA context does not work in the child.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(processes, 1), mp_context=spawn,
                             initializer=initializer, initargs=initargs) as pool:
        futures = {pool.submit(function, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a failed job is reported, the others go on
                print(f"job {futures[future]} failed: {exc!r}", flush=True)
                continue
            results.append(result)
            with Path(log).open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(line(result), flush=True)
    return results


# ---------------------------------------------------------------------------- stats
def median(values: Sequence[float]) -> float:
    """Median ignoring NaN; NaN when nothing is left."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(finite)) if finite else float("nan")


def counts(values: Sequence[Any]) -> str:
    """Each distinct value and how often it occurs, sorted: ``"max_epochs 1, validation 2"``."""
    return ", ".join(f"{v} {list(values).count(v)}" for v in sorted(set(values), key=str))


def spread(values: Sequence[float], digits: int = 3) -> str:
    """``min-max`` of the values as text (one value: just that value)."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return "n/a"
    low, high = min(finite), max(finite)
    if len(finite) == 1:
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f} to {high:.{digits}f}"


# ---------------------------------------------------------------------------- output
def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (dicts), columns in order: by
    default every key of any row, in the order first seen (a row without a key gets an
    empty cell)."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return value.name
    return value


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(
    out: Path,
    name: str,
    title: str,
    sections: Sequence[tuple[str, str]],
    data: dict[str, Any],
    settings: dict[str, Any],
    machine: dict[str, Any],
    seconds: float,
) -> tuple[Path, Path]:
    """Write ``<out>/<name>.md`` and ``<out>/<name>.json`` (each atomically).

    Parameters
    ----------
    sections : sequence of (heading, markdown body)
    data : raw measurements (tables as lists of dicts)
    settings : the settings and seeds of the run
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command_line()
    md = [f"# {title}", "", f"Command: `{command}`", "", f"Run time: {seconds:.1f} s", ""]
    for heading, body in sections:
        md += [f"## {heading}", "", body.rstrip(), ""]
    md += ["## Settings", "", "```json", json.dumps(_jsonable(settings), indent=2), "```", ""]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    md += [
        "## Machine",
        "",
        f"{machine['cpu']}, {machine['cpu_count']} logical CPUs, {machine['memory_gb']} GB; "
        f"{machine['platform']}; Python {machine['python']}; torch threads "
        f"{machine['torch_threads']}; load average at start {machine['load_average_at_start']}.",
        "",
        f"Versions: {versions}. Commit: {machine['git_commit']}"
        f"{' (with local changes)' if machine['git_dirty'] else ''}. Date: {machine['date']}.",
        "",
    ]
    payload = {
        "name": name,
        "title": title,
        "command": command,
        "seconds": seconds,
        "machine": machine,
        "settings": settings,
        "results": data,
    }
    md_path, json_path = out / f"{name}.md", out / f"{name}.json"
    _atomic_write(json_path, json.dumps(_jsonable(payload), indent=2) + "\n")
    _atomic_write(md_path, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {md_path} and {json_path}")
    return md_path, json_path
