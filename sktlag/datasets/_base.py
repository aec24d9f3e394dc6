"""Loaders for the datasets shipped with sktlag."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import pandas as pd
from sklearn.utils import Bunch

_PACKAGE = "sktlag.datasets"

LAHN_GAUGES = ("q_kalkofen", "q_marburg", "q_leun", "q_dillenburg")
LAHN_DEFAULT_FEATURES = (
    "p_dillenburg",
    "p_marburg",
    "p_leun",
    "p_kalkofen",
    "t_dillenburg",
    "t_marburg",
    "t_leun",
    "t_kalkofen",
)


#: Unit of each column of the Lahn table, by the prefix of its name.
LAHN_UNITS = {"q": "m³/s", "p": "mm/d", "t": "°C"}


def _units(names: Sequence[str]) -> dict[str, str]:
    return {name: LAHN_UNITS[name.split("_")[0]] for name in names}


def _with_units(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs["units"] = _units(frame.columns)
    return frame


def _read_descr(name: str) -> str:
    """Return the text of ``descr/<name>`` shipped with the package."""
    return resources.files(_PACKAGE).joinpath("descr", name).read_text(encoding="utf-8")


def _read_lahn_frame() -> pd.DataFrame:
    """Read the shipped Lahn table, indexed by a daily DatetimeIndex named ``date``."""
    source = resources.files(_PACKAGE).joinpath("data", "lahn.csv.gz")
    with source.open("rb") as handle:
        frame = pd.read_csv(handle, compression="gzip")
    dates = pd.to_datetime(frame.pop("date"), format="%Y-%m-%d")
    frame.index = pd.DatetimeIndex(dates, name="date", freq="D").as_unit("ns")
    return frame.astype("float64")


def _as_name_list(names: str | Sequence[str], what: str) -> list[str]:
    """Turn a single name or a sequence of names into a list, rejecting duplicates."""
    if isinstance(names, str):
        return [names]
    result = list(names)
    if not result:
        raise ValueError(f"{what} must name at least one column.")
    if not all(isinstance(name, str) for name in result):
        raise ValueError(f"{what} must be a column name or a list of column names, got {names!r}.")
    duplicated = sorted({name for name in result if result.count(name) > 1})
    if duplicated:
        raise ValueError(f"{what} names the same column more than once: {duplicated}.")
    return result


def _check_known(names: list[str], valid: Sequence[str], what: str) -> None:
    """Raise a ValueError naming the unknown entries of ``names`` and the valid ones."""
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; valid names are {list(valid)}.")


def load_lahn(
    *,
    as_frame: bool = False,
    return_X_y: bool = False,
    target: str | Sequence[str] = "q_kalkofen",
    features: Sequence[str] | None = None,
):
    """Load the daily Lahn river dataset (regression, 1989-2020).

    Daily discharge at four nested gauges of the Lahn basin (Hesse, Germany)
    together with precipitation and air temperature for the four sub-basins,
    from 1989-11-01 to 2020-12-31 (11,384 days, no gaps, no missing values).
    The data come from the example project ``HydPy-H-Lahn`` distributed with
    HydPy 6.4.0 and are licensed under the LGPL-3.0; see ``DESCR`` for units,
    columns and the nesting of the sub-basins.

    =================   ==============================
    Samples (days)      11,384
    Features            8 by default, real
    Targets             1 by default (m3/s), real
    =================   ==============================

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` is a :class:`pandas.DataFrame` indexed by the dates
        (a daily :class:`pandas.DatetimeIndex` named ``"date"``), ``target`` a
        :class:`pandas.Series` (one target) or DataFrame (a list of targets),
        and ``frame`` the DataFrame holding both. If False, ``data`` and
        ``target`` are NumPy arrays and ``frame`` is None.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.
    target : str or sequence of str, default="q_kalkofen"
        Gauge(s) to predict, among ``"q_kalkofen"``, ``"q_marburg"``,
        ``"q_leun"`` and ``"q_dillenburg"``. A single name gives a 1-D
        target; a list or tuple (even of length one) gives a 2-D target with
        one column per gauge, in the given order.
    features : sequence of str or None, default=None
        Input columns, in the given order. None selects the four
        precipitation series ``p_*`` (mm/day) followed by the four
        temperature series ``t_*`` (degC). Any column of the table except
        the target(s) may be chosen, including discharge at other gauges.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes

        data : ndarray of shape (11384, n_features) or DataFrame
            The inputs.
        target : ndarray of shape (11384,) or (11384, n_targets), or Series / DataFrame
            Daily mean discharge in m3/s.
        frame : DataFrame or None
            Inputs and targets together, only when ``as_frame=True``.
        feature_names : list of str
            Names of the input columns.
        target_names : list of str
            Names of the target columns.
        target_units : list of str
            The unit of each target, ``"m³/s"``.
        feature_units : list of str
            The unit of each input, ``"mm/d"`` (precipitation) or ``"°C"``.
        dates : DatetimeIndex
            The day of each row (daily frequency, named ``"date"``).
        DESCR : str
            Full description of the dataset.

    (data, target) : tuple if ``return_X_y`` is True
        The inputs and the targets, as arrays or pandas objects following
        ``as_frame``.

    Notes
    -----
    With ``as_frame=True`` every pandas object also carries the units of its columns
    in ``attrs["units"]`` (a dict of column name to unit), which
    :func:`~sktlag.plots.plot_prediction` and :func:`~sktlag.write_artifacts` put on
    the axes.

    Raises
    ------
    ValueError
        If ``target`` or ``features`` name an unknown column (the message lists
        the valid names), repeat a column, or overlap each other.

    Examples
    --------
    >>> from sktlag.datasets import load_lahn
    >>> X, y = load_lahn(return_X_y=True)
    >>> X.shape, y.shape
    ((11384, 8), (11384,))
    >>> bunch = load_lahn(as_frame=True, target=["q_kalkofen", "q_leun"])
    >>> bunch.target.shape
    (11384, 2)
    """
    single_target = isinstance(target, str)
    target_names = _as_name_list(target, "target")
    _check_known(target_names, LAHN_GAUGES, "target gauge(s)")

    frame = _read_lahn_frame()
    columns = list(frame.columns)
    if features is None:
        feature_names = list(LAHN_DEFAULT_FEATURES)
    else:
        feature_names = _as_name_list(features, "features")
        _check_known(feature_names, columns, "feature(s)")
    overlap = [name for name in feature_names if name in target_names]
    if overlap:
        raise ValueError(f"Columns {overlap} are used both as target and as feature.")

    data = frame[feature_names]
    target_frame = frame[target_names]
    y = target_frame[target_names[0]] if single_target else target_frame
    if as_frame:
        data.attrs["units"] = _units(feature_names)
        y.attrs["units"] = _units(target_names)

    if return_X_y:
        if as_frame:
            return data, y
        return data.to_numpy(), y.to_numpy()

    return Bunch(
        data=data if as_frame else data.to_numpy(),
        target=y if as_frame else y.to_numpy(),
        frame=_with_units(pd.concat([data, target_frame], axis=1)) if as_frame else None,
        feature_names=feature_names,
        target_names=target_names,
        target_units=list(_units(target_names).values()),
        feature_units=list(_units(feature_names).values()),
        dates=frame.index.copy(),
        DESCR=_read_descr("lahn.rst"),
    )
