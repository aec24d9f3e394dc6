"""sktlag: streamflow prediction with a Topologically Layer Adaptive Growing LSTM.

The estimator :class:`TLAGRegressor` grows the depth of an LSTM while it trains and
behaves like any scikit-learn regressor; :class:`TLAGEnsemble` averages several of them
and gives calibrated prediction intervals.
"""

import importlib

from . import datasets, metrics
from ._version import __version__
from .ensemble import TLAGEnsemble
from .estimator import PRESETS, TLAGRegressor
from .model import GrowingLSTM
from .persistence import load_model, save_model

# Loaded on first use (PEP 562): the figures and the artifacts need matplotlib, which
# would otherwise make every `import sktlag` slower and heavier though most fits plot
# nothing. Name -> module that defines it; a submodule maps to itself.
_LAZY = {
    "write_artifacts": "sktlag.report",
    "cli": "sktlag.cli",
    "plots": "sktlag.plots",
    "report": "sktlag.report",
}

__all__ = [
    "PRESETS",
    "GrowingLSTM",
    "TLAGEnsemble",
    "TLAGRegressor",
    "__version__",
    "datasets",
    "load_model",
    "metrics",
    "save_model",
    "write_artifacts",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith(f".{name}") else getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
