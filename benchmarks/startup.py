"""Start-up: time and memory of ``import sktlag`` next to importing torch and sklearn.

Each statement runs in a fresh interpreter (nothing cached in the process; the files
are in the operating system's cache after the first run, as on any working machine),
which reports the seconds the statement took (wall clock, and the CPU time of the
process, which a busy shared machine disturbs less) and its peak resident set size
(VmHWM, Linux). The statements take turns, so a busy moment hits all of them alike;
the tables show the median of the runs. The package's bytecode is compiled first, as
pip does when it installs a package (torch and sklearn come compiled), so that no run
pays for compiling sktlag's sources, also where PYTHONDONTWRITEBYTECODE is set.

``import torch, sklearn`` is the floor: the estimator needs both. What the estimator
(``from sktlag import TLAGRegressor``) adds on top is skorch and the package itself;
plotting (matplotlib) comes in only with the first figure, measured as its own row.
``import sktlag`` alone loads no public name (each loads on first use), so that the
``sktlag`` command can catch Ctrl-C while the rest loads.

Usage::

    python benchmarks/startup.py            # 5 runs of each statement
    python benchmarks/startup.py --quick    # 1 run of each
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
import time

import _common as C

#: Label -> statement; the first is the floor the others are compared with.
STATEMENTS = {
    "import torch, sklearn": "import torch, sklearn",
    "from sktlag import TLAGRegressor": "from sktlag import TLAGRegressor",
    "from sktlag import TLAGRegressor, then sktlag.plots":
        "from sktlag import TLAGRegressor; import sktlag; sktlag.plots",
    "import sktlag": "import sktlag",
}
#: Run in the child: time the statement, then report seconds, peak RSS and module count.
_CHILD = """
import json, sys, time
start, cpu = time.perf_counter(), time.process_time()
exec({statement!r})
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "peak_mib": peak / 1024,
                  "modules": len(sys.modules)}}))
"""


def measure(statement: str) -> dict:
    """Seconds (wall, CPU), peak RSS (MiB) and loaded modules of a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(C.REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(statement=statement)],
        capture_output=True, text=True, check=False, env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"{statement!r} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], default_seeds=1)
    parser.add_argument("--runs", type=int, default=None,
                        help="fresh interpreters per statement (default 5, 1 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    machine = C.machine_info()
    compileall.compile_dir(C.REPO_ROOT / "sktlag", quiet=1)
    start = time.perf_counter()
    raw: dict[str, list[dict]] = {label: [] for label in STATEMENTS}
    for _ in range(runs):
        for label, statement in STATEMENTS.items():
            raw[label].append(measure(statement))
    seconds = time.perf_counter() - start

    floor = C.median([r["seconds"] for r in raw["import torch, sklearn"]])
    cpu_floor = C.median([r["cpu_seconds"] for r in raw["import torch, sklearn"]])
    rows = []
    for label, results in raw.items():
        median_s = C.median([r["seconds"] for r in results])
        cpu_s = C.median([r["cpu_seconds"] for r in results])
        rows.append({
            "statement": f"`{label}`",
            "median s": median_s,
            "range s": C.spread([r["seconds"] for r in results], 2),
            "over torch + sklearn s": median_s - floor,
            "median CPU s": cpu_s,
            "CPU over torch + sklearn s": cpu_s - cpu_floor,
            "peak RSS MiB": C.median([r["peak_mib"] for r in results]),
            "modules": int(C.median([r["modules"] for r in results])),
        })
    added = rows[1]["over torch + sklearn s"]
    sections = [
        ("Import time and memory", C.markdown_table(rows, digits=2)),
        ("Summary",
         f"`from sktlag import TLAGRegressor` took {rows[1]['median s']:.2f} s, "
         f"{added:+.2f} s against "
         f"`import torch, sklearn` ({floor:.2f} s), median of {runs} fresh interpreters "
         f"(CPU time {rows[1]['CPU over torch + sklearn s']:+.2f} s); "
         f"peak RSS {rows[1]['peak RSS MiB']:.0f} MiB against "
         f"{rows[0]['peak RSS MiB']:.0f} MiB. The first figure adds "
         f"{rows[2]['median s'] - rows[1]['median s']:.2f} s (matplotlib; CPU time "
         f"{rows[2]['median CPU s'] - rows[1]['median CPU s']:.2f} s). `import sktlag` "
         f"alone took {rows[3]['median s'] * 1000:.1f} ms."),
    ]
    C.write_results(
        args.out, "startup", "Start-up: import time and memory", sections,
        {"runs": raw, "table": rows}, {"runs": runs, "statements": STATEMENTS,
                                       "quick": args.quick}, machine, seconds,
    )


if __name__ == "__main__":
    main()
