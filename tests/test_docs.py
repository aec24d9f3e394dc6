"""The README's quick start, the examples and the API reference stay in working order."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FAST

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "pipeline_timeseries_cv.py": ["fold 1: NSE", "fold 2: NSE", "mean NSE"],
    "grid_search_threshold.py": ["mean_test_score", "best threshold", "refitted depth"],
    "persistence.py": [".pth:", "joblib:", "identical predictions"],
    "own_excel_table.py": ["research layout", "nse", "artifacts:", "metrics.json"],
}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def example_runs():
    # Start all examples at once; each is a separate interpreter.
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name), "--fast"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(),
            cwd=ROOT,
        )
        for name in EXAMPLES
    }
    results = {}
    for name, process in processes.items():
        try:
            out, err = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results[name] = (process.returncode, out, err)
    return results


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_in_fast_mode(example_runs, name):
    code, out, err = example_runs[name]
    assert code == 0, err[-2000:]
    for fragment in EXAMPLES[name]:
        assert fragment in out, out


def test_examples_have_a_docstring_and_a_fast_flag():
    for name in EXAMPLES:
        text = (ROOT / "examples" / name).read_text()
        assert text.startswith('"""') and "--fast" in text


def test_readme_quick_start_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    original = "TLAGRegressor(random_state=0)"
    assert original in code
    fast = {**FAST, "max_epochs": 3, "batch_size": 256}
    code = code.replace(original, f"TLAGRegressor(random_state=0, **{fast!r})")
    exec(compile(code, "README.md", "exec"), {"inf": float("inf")})  # repr of FAST
    out = capsys.readouterr().out
    assert re.search(r"test NSE: -?\d+\.\d{3}", out)
    assert re.search(r"depth: \d+ LSTM layers", out)


def test_api_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build_api.py"), "--check"],
        capture_output=True, text=True, env=_environment(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
