"""The README's quick start runs; the examples are gallery scripts (the site runs them)."""

import re
from pathlib import Path

from .conftest import FAST

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_examples_are_gallery_scripts_with_a_fast_flag():
    # sphinx-gallery takes the title from the docstring's first line, underlined.
    for path in EXAMPLES:
        text = path.read_text()
        assert re.match(r'"""\n(.+)\n=+\n', text), path.name
        assert "--fast" in text, path.name


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
