"""One small fitted study shared by the report, persistence and command tests.

The fit is cached per test process; tests must not change the returned objects.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sktlag import TLAGRegressor

from .conftest import FAST, make_series

FEATURES = ["p_a", "p_b", "t_a"]


@dataclass(frozen=True)
class Study:
    model: Pipeline
    X_fit: pd.DataFrame
    y_fit: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series


def dated_series(n_rows: int = 360) -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_series(n_rows=n_rows, n_features=len(FEATURES))
    dates = pd.date_range("2001-01-01", periods=n_rows, freq="D", name="date")
    return pd.DataFrame(X, columns=FEATURES, index=dates), pd.Series(y, index=dates, name="q")


@cache
def study() -> Study:
    """A scaler + TLAGRegressor pipeline that grew twice, fitted on the first 80 %."""
    X, y = dated_series()
    n_fit = int(0.8 * len(X))
    model = Pipeline([
        ("scaler", StandardScaler()),
        ("tlag", TLAGRegressor(**FAST, topo_derivative_threshold=-np.inf,
                               random_state=0)),
    ]).set_output(transform="pandas")
    model.fit(X.iloc[:n_fit], y.iloc[:n_fit])
    return Study(model, X.iloc[:n_fit], y.iloc[:n_fit], X.iloc[n_fit:], y.iloc[n_fit:])
