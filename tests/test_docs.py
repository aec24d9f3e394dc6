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


def _benchmark_titles(text: str) -> dict[str, list[str]]:
    """The titles of each numbered section of the benchmarks page: its headings and the
    bold run-in titles of its paragraphs, without backticks or closing stops."""
    titles: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        numbered = re.match(r"## (\d+)\. ", line)
        if numbered:
            section = numbered.group(1)
        title = re.match(r"#{3,} (.+)|(?:- )?\*\*(.+?)\*\*", line)
        if section and title:
            titles.setdefault(section, []).append(
                (title.group(1) or title.group(2)).replace("`", "").rstrip(".:"))
    return titles


def test_sections_of_the_benchmarks_page_named_elsewhere_exist():
    # A reference such as 'section 2, "Lookback by record length"' names a heading (or a
    # paragraph's bold title) of that numbered section; an edit must not lose it.
    titles = _benchmark_titles((ROOT / "docs" / "benchmarks.md").read_text())
    sources = [*(ROOT / "docs").glob("*.md"), ROOT / "README.md",
               *(ROOT / "sktlag").glob("*.py")]
    references = []
    for path in sources:
        text = re.sub(r"\s*\n\s*", " ", path.read_text())
        references += [(path.name, number, name.replace("`", "")) for number, name in
                       re.findall(r'section (\d+)(?: of the benchmarks)?, "([^"]+)"', text)]
    assert len(references) >= 5
    for where, number, name in references:
        assert any(title.startswith(name) for title in titles.get(number, [])), (
            where, number, name)
