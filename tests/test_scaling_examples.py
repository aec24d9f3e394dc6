"""The scaling-out example scripts run as documented (tiny settings, loopback only)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_dask_grid_search_example_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    script = ROOT / "examples" / "dask_grid_search.py"
    done = subprocess.run(
        [sys.executable, str(script), "--local", "--fast", "--workers", "2"],
        capture_output=True, text=True, timeout=150, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("scheduler tcp://127.0.0.1:") and lines[0].endswith("2 workers")
    assert "2 thresholds x 2 folds" in lines[1]
    assert any(line.startswith("best threshold: ") for line in lines)
    # one table row per threshold, best first
    rows = [line.split() for line in lines if line.split()[:1] in (["0.000"], ["inf"])]
    assert len(rows) == 2 and int(rows[0][-1]) == 1
