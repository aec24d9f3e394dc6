"""sktlag: streamflow prediction with a Topologically Layer Adaptive Growing LSTM.

The estimator :class:`TLAGRegressor` grows the depth of an LSTM while it trains and
behaves like any scikit-learn regressor; :class:`TLAGEnsemble` averages several of them
and gives calibrated prediction intervals.
"""

import importlib

from ._version import __version__

# Every public name loads on first use (PEP 562): `import sktlag` then costs nothing,
# so the `sktlag` command can catch Ctrl-C while torch and pandas load (they take
# seconds), and the figures' matplotlib never loads for fits that plot nothing.
# Name -> module that defines it; a submodule maps to itself.
_LAZY = {
    "PRESETS": "sktlag.estimator",
    "TLAGRegressor": "sktlag.estimator",
    "TLAGEnsemble": "sktlag.ensemble",
    "forecast": "sktlag.forecasting",
    "GrowingLSTM": "sktlag.model",
    "load_model": "sktlag.persistence",
    "save_model": "sktlag.persistence",
    "write_artifacts": "sktlag.report",
    "datasets": "sktlag.datasets",
    "metrics": "sktlag.metrics",
    "cli": "sktlag.cli",
    "plots": "sktlag.plots",
    "report": "sktlag.report",
    "forecasting": "sktlag.forecasting",
}

__all__ = [
    "PRESETS",
    "GrowingLSTM",
    "TLAGEnsemble",
    "TLAGRegressor",
    "__version__",
    "datasets",
    "forecast",
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
