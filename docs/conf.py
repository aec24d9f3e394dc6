"""Sphinx configuration of the sktlag documentation site.

Build it with ``make docs`` (HTML in ``docs/_build/html``). The pages are Markdown
(MyST), the API reference comes from the docstrings (autosummary + numpydoc) and the
examples in ``examples/`` run during the build as a sphinx-gallery gallery.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The package of this checkout, and _inventories.py and _gallery.py beside this file.
sys.path[:0] = [str(ROOT), str(HERE)]
# Figures are written to files only; no window may open while the examples run.
os.environ.setdefault("MPLBACKEND", "Agg")

from _inventories import write_inventories  # noqa: E402

import sktlag  # noqa: E402
from sktlag.recipe import ShortRecordWarning  # noqa: E402

# The gallery runs the examples in their fast settings, on slices of a few hundred days
# that are short records by design; run in full, the same examples raise no such warning.
warnings.filterwarnings("ignore", category=ShortRecordWarning)

project = "sktlag"
author = "sktlag developers"
copyright = "sktlag developers, MIT License"  # noqa: A001 (Sphinx's name)
release = sktlag.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]
# Every cross-reference must resolve: a name that is neither in the package nor in an
# inventory below is an error of the build (the test suite builds with -W).
nitpicky = True

# ------------------------------------------------------------------- Markdown pages
# GitHub-style anchors, so that links like `user_guide.md#4-the-command` keep working
# both on the site and when the Markdown files are read on their own.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]

# ---------------------------------------------------------------- API reference
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc sections say the types
# A method documents itself or not at all: no docstring copied from torch or sklearn.
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "TLAGRegressor": "sktlag.TLAGRegressor",
    "TLAGEnsemble": "sktlag.TLAGEnsemble",
    "GrowingLSTM": "sktlag.GrowingLSTM",
    "LSTMLayer": "sktlag.model.LSTMLayer",
    "ModelFileError": "sktlag.persistence.ModelFileError",
    "DataFrame": "pandas.DataFrame",
    "Series": "pandas.Series",
    "DatetimeIndex": "pandas.DatetimeIndex",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "ndarray": "numpy.ndarray",
    "Tensor": "torch.Tensor",
    "nn.Module": "torch.nn.Module",
    "Figure": "matplotlib.figure.Figure",
    "Path": "pathlib.Path",
}
# Words of the type lines that are prose, not names.
# Words of the type lines that are prose or shape names, not names to link.
numpydoc_xref_ignore = {
    "of", "or", "and", "shape", "default", "optional", "like", "path-like", "file-like",
    "mapping", "iterable", "scalar", "object", "bytes", "to", "the", "is", "if", "same",
    "instance", "file", "time", "batch", "dates", "k", "n", "n_rows", "n_outputs",
    "n_features", "n_samples", "n_positions", "n_blocks", "n_windows",
    "n_validation_windows", "n_scores", "n_history", "n_groups", "lookback",
    "hidden_size", "y_true", "y_pred", "H", "F", "n_days", "in",
}



def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn adds set_fit_request & co. to every estimator (metadata routing);
    # they are scikit-learn's, documented there.
    return True if name.endswith("_request") and name.startswith("set_") else skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)


# ------------------------------------------------------------------ intersphinx
# No network is needed to build the site: the inventories of the other projects are
# written by _inventories.py from the packages installed here, for the names these
# pages use, and each entry links to that project's page online (see its docstring).
INVENTORY_DIR = HERE / "_build" / "inventories"
intersphinx_mapping = {
    name: (url, str(path)) for name, (url, path) in write_inventories(INVENTORY_DIR).items()
}

# ---------------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Every example runs, with its --fast settings (see _gallery.py).
    "filename_pattern": r".*\.py$",
    "reset_argv": "_gallery.fast_arguments",
    "image_scrapers": ("matplotlib", "_gallery.figures_in_globals"),
    "within_subsection_order": "_gallery.ExampleOrder",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "show_memory": False,
    "remove_config_comments": True,
    "min_reported_time": 1e9,
    # No page of computation times: they depend on the machine, not on the examples.
    "write_computation_times": False,
    "doc_module": (),
}

# ------------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sktlag {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}
