"""The documentation site builds without a warning, and a browser shows its pages.

The site is built once per test run (``built_site`` in ``conftest.py``), with warnings
as errors: a docstring that does not render, a broken link or an example that fails
fails the build. The gallery runs every example with its fast settings; the printed
output checked here is what those runs printed.
"""

import json
import os
import re
from pathlib import Path

import pytest

import sktlag

from .site import ROOT, Browser, chromium, page_text

#: Every example, and fragments of what it prints in the gallery.
EXAMPLES = {
    "pipeline_timeseries_cv": ["fold 1: NSE", "fold 2: NSE", "mean NSE"],
    "grid_search_threshold": ["mean_test_score", "best threshold", "refitted depth"],
    "persistence": [".pth:", "joblib:", "identical predictions"],
    "own_excel_table": ["research layout", "nse", "artifacts:", "metrics.json"],
    "dask_grid_search": ["scheduler tcp://127.0.0.1:", ": 2 workers",
                         "2 thresholds x 2 folds", "best threshold: "],
}
#: The modules whose public names (``__all__``) the API reference documents.
MODULES = (
    "sktlag", "sktlag.datasets", "sktlag.recipe", "sktlag.metrics", "sktlag.io", "sktlag.plots",
    "sktlag.report", "sktlag.persistence", "sktlag.estimator", "sktlag.ensemble",
    "sktlag.conformal", "sktlag.cli",
    "sktlag.growth", "sktlag.callbacks", "sktlag.model", "sktlag.windows", "sktlag.losses",
)


def test_every_example_is_in_the_gallery():
    scripts = {path.stem for path in (ROOT / "examples").glob("*.py")}
    assert scripts == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_gallery_page_has_the_output_and_a_figure(built_site, name):
    page = built_site / "auto_examples" / f"{name}.html"
    text = page_text(page)
    for fragment in EXAMPLES[name]:
        assert fragment in text, fragment
    figures = re.findall(rf'<img src="([^"]*sphx_glr_{name}_\d+\.png)"', page.read_text())
    assert figures, "no figure on the page"
    for src in figures:
        assert (page.parent / src).resolve().stat().st_size > 10_000


def test_gallery_states_the_full_command(built_site):
    for name in EXAMPLES:
        assert f"python examples/{name}.py" in page_text(
            built_site / "auto_examples" / f"{name}.html"), name


def test_dask_example_ranks_the_thresholds_best_first(built_site):
    text = page_text(built_site / "auto_examples" / "dask_grid_search.html")
    rows = [line.split() for line in text.splitlines()
            if line.split()[:1] in (["0.000"], ["inf"])]
    assert len(rows) == 2 and int(rows[0][-1]) == 1


def _canonical_pages() -> dict[str, str]:
    """Public name -> the page that documents it (a name ``import sktlag`` gives is
    documented once, under ``sktlag.``)."""
    import importlib
    import inspect

    pages = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            on_top = name in sktlag.__all__ and getattr(sktlag, name) is obj
            pages[f"{module_name}.{name}"] = f"sktlag.{name}" if on_top else f"{module_name}.{name}"
    return pages


def test_every_public_name_has_its_api_page(built_site):
    missing = [name for name, page in _canonical_pages().items()
               if not (built_site / "generated" / f"{page}.html").is_file()]
    assert not missing


def test_every_documented_module_is_in_the_reference(built_site):
    api = (built_site / "api.html").read_text()
    for module_name in MODULES:
        assert f'id="module-{module_name}"' in api, module_name


def test_api_pages_link_to_the_other_projects_online(built_site):
    page = (built_site / "generated" / "sktlag.TLAGRegressor.html").read_text()
    assert 'href="https://pandas.pydata.org/docs/reference/api/pandas.DataFrame.html' in page
    plots = (built_site / "generated" / "sktlag.plots.plot_evolution.html").read_text()
    assert 'href="https://scikit-learn.org/stable/modules/generated/sklearn.pipeline.Pipeline' \
        in plots
    assert "https://matplotlib.org/stable/api/_as_gen/matplotlib.figure.Figure.html" in plots


def test_search_index_knows_the_estimator(built_site):
    index = (built_site / "searchindex.js").read_text()
    assert (built_site / "search.html").is_file()
    assert "sktlag.TLAGRegressor" in index or '"TLAGRegressor"' in index


def test_site_version_is_the_package_version(built_site):
    assert f"sktlag {sktlag.__version__}" in (built_site / "index.html").read_text()


# ------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser(built_site):
    executable = chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing; .ci/run installs it")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    opened = Browser(executable, built_site)
    yield opened
    opened.close()


def test_browser_shows_the_home_page(browser):
    shown = browser.open("index.html")
    assert shown["title"].startswith("sktlag documentation")
    assert shown["h1"].startswith("sktlag documentation")


def test_browser_shows_the_estimator_api_page(browser):
    shown = browser.open("generated/sktlag.TLAGRegressor.html")
    assert shown["title"].startswith("TLAGRegressor")
    assert shown["h1"].startswith("TLAGRegressor")


@pytest.mark.parametrize("name", ["grid_search_threshold", "own_excel_table"])
def test_browser_shows_a_gallery_page_with_its_figure(browser, name):
    shown = browser.open(f"auto_examples/{name}.html")
    assert shown["h1"] and shown["title"].startswith(shown["h1"].rstrip("#"))
    figures = [img for img in shown["images"] if f"sphx_glr_{name}_" in img["src"]]
    assert figures and all(img["loaded"] and img["width"] > 100 for img in figures), \
        json.dumps(shown["images"])


def test_browser_sees_a_missing_figure(browser, built_site, tmp_path):
    # The check itself can fail: a page whose figure is gone shows a broken image.
    page = built_site / "auto_examples" / "persistence.html"
    broken = built_site / "auto_examples" / "persistence_broken.html"
    broken.write_text(page.read_text().replace("sphx_glr_persistence_001.png",
                                               "sphx_glr_persistence_missing.png"))
    try:
        shown = browser.open("auto_examples/persistence_broken.html")
    finally:
        broken.unlink()
    figures = [img for img in shown["images"] if "sphx_glr_persistence_" in img["src"]]
    assert figures and not any(img["loaded"] for img in figures)


def test_readme_says_how_to_open_the_site():
    readme = Path(ROOT / "README.md").read_text()
    assert "make docs" in readme and "docs/_build/html/index.html" in readme
