"""Write ``docs/api.md``, the API reference, from the docstrings of the package.

Run ``python docs/build_api.py`` after changing a public docstring or signature;
``python docs/build_api.py --check`` exits with status 1 when ``api.md`` is out of date
(the test suite runs this check).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

API_FILE = Path(__file__).resolve().parent / "api.md"

#: Modules in the order they appear, with a one-line introduction.
MODULES = [
    ("sktlag", "The estimator, the network, the model files and the artifacts."),
    ("sktlag.ensemble", "Ensembles of grown networks with calibrated prediction intervals."),
    ("sktlag.datasets", "Data shipped with the package."),
    ("sktlag.io", "Reading and writing tables of daily series."),
    ("sktlag.metrics", "Hydrological goodness-of-fit metrics and scikit-learn scorers."),
    ("sktlag.persistence", "Model files (``.pth``) that load without running code."),
    ("sktlag.report", "The artifacts of a fit."),
    ("sktlag.plots", "Figures of a fit."),
    ("sktlag.cli", "The ``sktlag`` command."),
    ("sktlag.growth", "The growth math (building blocks)."),
    ("sktlag.callbacks", "skorch callbacks that drive growth (building blocks)."),
    ("sktlag.model", "The network module (building blocks)."),
    ("sktlag.windows", "Sliding windows over a series (building blocks)."),
    ("sktlag.losses", "The training loss (building blocks)."),
]

_SECTION = re.compile(r"^(\S[^\n]*)\n-{3,}$", re.MULTILINE)


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj, eval_str=True))
    except NameError:  # an annotation that only exists for type checkers
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _docstring(obj) -> str:
    """The docstring as markdown: prose as it is, numpydoc sections as text blocks."""
    doc = inspect.getdoc(obj) or "(No description.)"
    parts = _SECTION.split(doc)
    out = [parts[0].strip()]
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        body = body.strip("\n")
        out.append(f"**{title.strip()}**\n\n```text\n{body}\n```" if body else f"**{title}**")
    return "\n\n".join(out)


def _methods(cls) -> list[tuple[str, object]]:
    """Public methods and properties defined by the class itself."""
    found = []
    for name, member in vars(cls).items():
        documented = callable(member) or isinstance(member, (classmethod, staticmethod, property))
        # scikit-learn generates set_*_request methods for metadata routing.
        if name.startswith("_") or name.endswith("_request") or not documented:
            continue
        found.append((name, getattr(cls, name)))
    return found


def _entry(module_name: str, name: str, obj) -> str:
    qualified = f"{module_name}.{name}"
    if inspect.isclass(obj):
        lines = [f"### class `{qualified}{_signature(obj)}`", "", _docstring(obj)]
        for method_name, method in _methods(obj):
            if isinstance(inspect.getattr_static(obj, method_name), property):
                lines += ["", f"#### property `{name}.{method_name}`", "", _docstring(method)]
            else:
                lines += ["", f"#### `{name}.{method_name}{_signature(method)}`", "",
                          _docstring(method)]
        return "\n".join(lines)
    if callable(obj):
        return "\n".join([f"### `{qualified}{_signature(obj)}`", "", _docstring(obj)])
    text = repr(obj)
    if len(text) > 400:
        text = f"{type(obj).__name__} with {len(obj)} entries: {', '.join(map(repr, obj))}"
    return f"### `{qualified}`\n\n```text\n{text}\n```"


def render() -> str:
    """The content of ``api.md``."""
    sections = [
        "# API reference",
        "",
        "Generated from the docstrings by `docs/build_api.py`; do not edit by hand.",
        "",
        "\n".join(f"- [`{name}`](#{name.replace('.', '')})" for name, _ in MODULES),
    ]
    documented = {name for name, _ in MODULES}
    for module_name, intro in MODULES:
        module = importlib.import_module(module_name)
        sections += ["", f"## {module_name}", "", intro]
        for name in sorted(module.__all__, key=str.lower):
            obj = getattr(module, name)
            home = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
            if home != module_name and home in documented:
                target = home if inspect.ismodule(obj) else f"{home}.{name}"
                sections += ["", f"### `{module_name}.{name}`", "", f"See `{target}`."]
            else:
                sections += ["", _entry(module_name, name, obj)]
    return "\n".join(sections).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = API_FILE.read_text(encoding="utf-8") if API_FILE.exists() else ""
        if current != text:
            print(f"{API_FILE.name} is out of date; run python docs/build_api.py",
                  file=sys.stderr)
            return 1
        return 0
    API_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {API_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
