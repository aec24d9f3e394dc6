"""The benchmark scripts run in quick mode and write readable results."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ("accuracy_lahn", "speed", "eigensolver", "memory", "warmup", "recipe", "growth_pays")


def test_quick_benchmarks_write_markdown_and_json(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name in EXPECTED:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["name"] == name and payload["settings"]["quick"] is True
        assert payload["machine"]["versions"]["torch"]
        markdown = (tmp_path / f"{name}.md").read_text()
        assert markdown.startswith("# ") and "| " in markdown and "Command: `python" in markdown
