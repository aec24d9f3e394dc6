"""``import sktlag`` stays light: plotting and peak finding load when first used."""

import json
import subprocess
import sys

# Modules that `import sktlag` must leave unloaded; each comes in with the first
# function that needs it (figures, artifacts, spreadsheets, CRPS, peak timing).
LAZY = (
    "matplotlib",
    "PIL",
    "openpyxl",
    "scoringrules",
    "scipy.signal",
    "sktlag.plots",
    "sktlag.report",
    "sktlag.cli",
)


def _loaded_after(code: str) -> list[str]:
    """The modules of LAZY loaded after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_import_leaves_plotting_spreadsheets_and_scoring_unloaded():
    assert _loaded_after("import sktlag") == []


def test_lazy_names_load_on_first_use():
    loaded = _loaded_after(
        "import sktlag\n"
        "assert callable(sktlag.write_artifacts)\n"
        "assert 'write_artifacts' in dir(sktlag) and 'plots' in dir(sktlag)\n"
        "assert callable(sktlag.plots.plot_prediction)"
    )
    assert {"matplotlib", "sktlag.plots", "sktlag.report"} <= set(loaded)


def test_unknown_attribute_is_an_attribute_error():
    done = subprocess.run(
        [sys.executable, "-c", "import sktlag; sktlag.no_such_name"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert "AttributeError: module 'sktlag' has no attribute 'no_such_name'" in done.stderr
