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


def test_import_loads_neither_torch_nor_pandas_until_a_name_is_used():
    code = ("import sys, sktlag\n"
            "assert not {'torch', 'pandas', 'sklearn'} & set(sys.modules), sys.modules\n"
            "from sktlag import TLAGRegressor, metrics\n"
            "assert 'torch' in sys.modules and callable(metrics.nse)\n"
            "assert sktlag.TLAGRegressor is TLAGRegressor")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def test_ctrl_c_while_the_command_loads_ends_without_a_traceback():
    # The interrupt arrives while torch is imported, before the command's own handler
    # exists: the entry point still says one line and exits with 130.
    code = (
        "import runpy, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['sktlag', '--help']\n"
        "runpy.run_module('sktlag', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert (done.returncode, done.stderr, done.stdout) == (130, "sktlag: interrupted\n", "")


def test_the_command_enters_through_the_light_entry_point():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"sktlag": "sktlag._command:main"}
