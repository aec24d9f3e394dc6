"""sktlag: streamflow prediction with a Topologically Layer Adaptive Growing LSTM.

The estimator :class:`TLAGRegressor` grows the depth of an LSTM while it trains and
behaves like any scikit-learn regressor; :class:`TLAGEnsemble` averages several of them
and gives calibrated prediction intervals.
"""

from . import datasets, metrics
from ._version import __version__
from .ensemble import TLAGEnsemble
from .estimator import PRESETS, TLAGRegressor
from .model import GrowingLSTM
from .persistence import load_model, save_model
from .report import write_artifacts

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
