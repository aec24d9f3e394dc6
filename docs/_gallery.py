"""How the gallery runs the examples and collects their figures (see ``conf.py``)."""

from __future__ import annotations

from pathlib import Path

#: Command-line arguments of each example in the gallery: the fast settings, so the
#: whole site builds in minutes; each example's text gives the command of a full run.
ARGUMENTS = {
    "dask_grid_search.py": ["--local", "--fast", "--workers", "2"],
}
FAST = ["--fast"]
#: The order of the gallery: from a first fit to a cluster.
ORDER = ("pipeline_timeseries_cv.py", "grid_search_threshold.py", "persistence.py",
         "own_excel_table.py", "dask_grid_search.py")


class ExampleOrder:
    """Sort key of the gallery: the examples of :data:`ORDER` first, in that order."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def fast_arguments(gallery_conf, script_vars) -> list[str]:
    """The ``sys.argv[1:]`` an example runs with in the gallery."""
    return list(ARGUMENTS.get(Path(script_vars["src_file"]).name, FAST))


def figures_in_globals(block, block_vars, gallery_conf, **kwargs) -> str:
    """Save the figures that a code block left in the example's variables.

    sktlag's plotting functions build figures without pyplot (no global figure state),
    so sphinx-gallery's matplotlib scraper, which asks pyplot for its figures, never
    sees them. This one takes every :class:`matplotlib.figure.Figure` among the
    example's variables that has not been shown yet, in the order they appear.
    """
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    shown = block_vars.setdefault("sktlag_figures_shown", set())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        if isinstance(value, Figure) and id(value) not in shown:
            shown.add(id(value))
            path = next(block_vars["image_path_iterator"])
            value.savefig(path, dpi=100)
            paths.append(path)
    if not paths:
        return ""
    return figure_rst(paths, gallery_conf["src_dir"])
