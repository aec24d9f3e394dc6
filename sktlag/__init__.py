"""sktlag: streamflow prediction with a Topologically Layer Adaptive Growing LSTM.

The estimator :class:`TLAGRegressor` grows the depth of an LSTM while it trains and
behaves like any scikit-learn regressor.
"""

from . import datasets, metrics
from ._version import __version__
from .estimator import PRESETS, TLAGRegressor
from .model import GrowingLSTM
from .persistence import load_model, save_model
from .report import write_artifacts

__all__ = [
    "PRESETS",
    "GrowingLSTM",
    "TLAGRegressor",
    "__version__",
    "datasets",
    "load_model",
    "metrics",
    "save_model",
    "write_artifacts",
]
