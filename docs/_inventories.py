"""Intersphinx inventories of the other projects, written at build time without network.

Links to scikit-learn, skorch, PyTorch, NumPy, pandas and the others go to their
official online reference pages, as with any intersphinx set-up. What differs is where
the inventory (``objects.inv``, the list of names and pages) comes from: the build
machine need not reach those sites, so instead of downloading them (which fails, or
warns, offline) the build writes a small inventory per project here, for the names
these pages use (:data:`NAMES`), each checked against the installed package, so a
renamed or removed name fails the build instead of linking nowhere. A name missing
from :data:`NAMES` is an unresolved reference: the build (nitpicky, warnings as errors)
says which.

No third-party file is shipped: the inventories are written into the build folder.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from collections.abc import Callable
from pathlib import Path

#: Project -> (root of its online reference, the page of a name in that project's own
#: layout). ``{name}`` is the name; a page without ``#`` gets ``#name`` appended.
PROJECTS: dict[str, tuple[str, Callable[[str], str]]] = {
    # scikit-learn, NumPy, pandas, SciPy, joblib, PyTorch: one generated page per name.
    "sklearn": ("https://scikit-learn.org/stable/",
                lambda name: f"modules/generated/{name}.html"),
    "numpy": ("https://numpy.org/doc/stable/", lambda name: f"reference/generated/{name}.html"),
    "pandas": ("https://pandas.pydata.org/docs/", lambda name: f"reference/api/{name}.html"),
    "scipy": ("https://docs.scipy.org/doc/scipy/",
              lambda name: f"reference/generated/{name}.html"),
    "joblib": ("https://joblib.readthedocs.io/en/stable/",
               lambda name: f"generated/{name}.html"),
    "torch": ("https://docs.pytorch.org/docs/stable/", lambda name: f"generated/{name}.html"),
    "matplotlib": ("https://matplotlib.org/stable/", lambda name: f"api/_as_gen/{name}.html"),
    # skorch documents each module on one page: skorch.callbacks.* on callbacks.html.
    "skorch": ("https://skorch.readthedocs.io/en/stable/",
               lambda name: name.split(".")[1] + ".html"),
    # Python: builtins on functions.html, everything else on its module's page.
    "python": ("https://docs.python.org/3/",
               lambda name: f"library/{name.split('.')[0]}.html" if "." in name
               else "library/functions.html"),
}

#: The names these pages refer to, by project; a page given here replaces the rule's.
NAMES: dict[str, dict[str, str | None]] = {
    "sklearn": {
        "sklearn.pipeline.Pipeline": None,
        "sklearn.preprocessing.StandardScaler": None,
        "sklearn.exceptions.NotFittedError": None,
        "sklearn.exceptions.UndefinedMetricWarning": None,
        "sklearn.metrics.r2_score": None,
        "sklearn.metrics.get_scorer": None,
        "sklearn.utils.Bunch": None,
        "sklearn.metrics": "api/sklearn.metrics.html#module-sklearn.metrics",
    },
    "numpy": {
        "numpy.ndarray": None,
        "numpy.random.RandomState": "reference/random/legacy.html",
    },
    "pandas": {
        "pandas.DataFrame": None,
        "pandas.Series": None,
        "pandas.DatetimeIndex": None,
    },
    "scipy": {
        "scipy.signal.find_peaks": None,
    },
    "joblib": {
        "joblib.dump": None,
    },
    "torch": {
        "torch.Tensor": "tensors.html",
        "torch.nn.Module": None,
        "torch.utils.data.Dataset": "data.html",
    },
    "matplotlib": {
        "matplotlib.figure.Figure": None,
    },
    "skorch": {
        "skorch.NeuralNet": "net.html#skorch.net.NeuralNet",
        "skorch.History": "history.html#skorch.history.History",
        "skorch.callbacks.Callback": None,
    },
    "python": {
        "int": None,
        "float": None,
        "callable": None,
        "open": None,
        "str": "library/stdtypes.html",
        "dict": "library/stdtypes.html",
        "list": "library/stdtypes.html",
        "tuple": "library/stdtypes.html",
        "None": "library/constants.html",
        "True": "library/constants.html",
        "False": "library/constants.html",
        "ValueError": "library/exceptions.html",
        "TypeError": "library/exceptions.html",
        "KeyboardInterrupt": "library/exceptions.html",
        "FileExistsError": "library/exceptions.html",
        "pathlib.Path": None,
        "os.replace": None,
        "json.dumps": None,
    },
}

#: Entries that are not Python objects: glossary terms and section labels (numpydoc
#: links the words of type lines such as ``array-like`` and ``bool`` to them), as
#: (name, role, page#anchor, title).
OTHER_ENTRIES: dict[str, list[tuple[str, str, str, str]]] = {
    "numpy": [("array_like", "std:term", "glossary.html#term-array_like", "array_like")],
    "python": [
        ("sequence", "std:term", "glossary.html#term-sequence", "sequence"),
        ("bltin-boolean-values", "std:label", "library/stdtypes.html#bltin-boolean-values",
         "Boolean Values"),
    ],
}


def _locate(name: str):
    """The installed object called ``name`` (an ImportError if there is none)."""
    if "." not in name:
        import builtins

        constants = {"None": None, "True": True, "False": False}
        return constants[name] if name in constants else getattr(builtins, name)
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError as exc:
            raise ImportError(f"{name} is not in the installed package") from exc
        return obj
    raise ImportError(f"{name} is not in the installed package")


def _role(obj) -> str:
    if obj is None or isinstance(obj, bool):
        return "py:data"
    if inspect.ismodule(obj):
        return "py:module"
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if inspect.isroutine(obj):
        return "py:method" if "." in getattr(obj, "__qualname__", "") else "py:function"
    return "py:data"


def inventory_text(project: str, version: str,
                   entries: list[tuple[str, str, str, str]]) -> bytes:
    """An ``objects.inv`` (format 2) with entries ``(name, role, page#anchor, title)``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    # name, role, priority, page#anchor, title ("-": the name itself)
    lines = "".join(f"{name} {role} 1 {page} {title}\n" for name, role, page, title in entries)
    return header + zlib.compress(lines.encode())


def write_inventories(folder: Path) -> dict[str, tuple[str, Path]]:
    """Write one inventory per project into ``folder``.

    Returns
    -------
    dict
        Project -> (online root, inventory path), as ``intersphinx_mapping`` wants it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (url, page) in PROJECTS.items():
        entries = list(OTHER_ENTRIES.get(project, []))
        for name, given in NAMES[project].items():
            role = _role(_locate(name))
            where = given or page(name)
            if "#" not in where:
                where += f"#module-{name}" if role == "py:module" else f"#{name}"
            entries.append((name, role, where, "-"))
        version = "" if project == "python" else getattr(
            importlib.import_module(project), "__version__", "")
        path = folder / f"{project}.inv"
        path.write_bytes(inventory_text(project, version, entries))
        mapping[project] = (url, path)
    return mapping
