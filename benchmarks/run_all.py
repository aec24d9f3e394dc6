"""Run every benchmark script, each in its own process.

Usage::

    python benchmarks/run_all.py --quick            # CI: all scripts, tiny settings
    python benchmarks/run_all.py --data path/to/DemoData.xlsx --out results/
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("accuracy.py", "speed.py", "eigensolver.py", "memory.py", "warmup.py", "recipe.py",
           "growth_pays.py", "holdout_check.py", "ensemble.py", "startup.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="result folder")
    parser.add_argument("--data", type=Path, default=None, help="DemoData.xlsx for accuracy.py")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    failed = []
    for script in SCRIPTS:
        command = [sys.executable, str(HERE / script), "--out", str(args.out),
                   "--threads", str(args.threads)]
        if args.quick:
            command.append("--quick")
        if script == "accuracy.py" and args.data is not None:
            command += ["--data", str(args.data)]
        start = time.perf_counter()
        done = subprocess.run(command, check=False)
        print(f"{script}: exit {done.returncode} after {time.perf_counter() - start:.1f} s",
              flush=True)
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
