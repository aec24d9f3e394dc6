"""Every real basin the benchmarks can use: daily inputs and discharge, indexed by date.

Three sources give 13 basins:

``lahn_kalkofen``, ``lahn_marburg``, ``lahn_leun``, ``lahn_dillenburg``
    The Lahn table shipped with sktlag (:func:`sktlag.datasets.load_lahn`), one basin per
    gauge. The inputs are always the four precipitation and the four temperature series
    (never the discharge at another gauge), the target is the gauge's discharge in m3/s.
    1989-11-01 to 2020-12-31. Source: example project ``HydPy-H-Lahn`` of HydPy 6.4.0,
    LGPL-3.0.
``yuliang``
    The demo table of the original TLAG-LSTM research code (``DemoData.xlsx``), read from
    a path given by the caller (``demo_path``); its licence is not stated, so it is never
    copied into the repository. Eleven rain stations as inputs, discharge ``Data`` as
    target, both min-max scaled as shipped. 2000-01-01 to 2010-12-31.
``vistula_<station>``
    Eight gauges of the Vistula basin (Poland) from the data file ``vistula.msk`` of the
    PyPI package ``modelskill`` 1.3.2 (MIT licence, DHI), 2005-01-01 to 2010-01-01. The
    target is the observed discharge in m3/s; the only input is the daily precipitation
    over the gauge's own catchment (the file holds no other meteorological series). The
    two model simulations ``sim1`` and ``sim2`` stored next to them are never used. These
    basins need the optional extra ``basins`` (``pip install -e ".[basins]"``); without
    it they are skipped with a warning.

The file is read directly (a zip of one netCDF file per gauge) with ``xarray``,
``h5netcdf`` and ``h5py``, without importing ``modelskill``: importing it pulls in
``mikeio`` (with compiled MIKE libraries), and modelskill 1.3.2 declares ``pandas<3``. The
values are identical to those of ``modelskill.data.vistula()``. The modelskill wheel
itself can be given as ``vistula_path`` (read as a zip, not installed), which suits a
machine without network access. For a machine without h5netcdf or h5py,
:func:`export_vistula` writes the eight gauges to a small CSV file that
:func:`load_basins` reads with pandas alone.

Run ``python benchmarks/_basins.py [--data path/to/DemoData.xlsx]`` for a table of the
basins found on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]

# The module runs from a checkout (``python benchmarks/_basins.py``): make the package in
# this checkout importable even when it is not installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Gauges of the Lahn table, outlet first.
LAHN_GAUGES = ("kalkofen", "marburg", "leun", "dillenburg")
#: Gauges of the Vistula file, in the file's order.
VISTULA_STATIONS = (
    "Tczew", "Krasnystaw", "Sandomierz", "Szczucin", "Nowy Sacz", "Tryncza", "Ptaki", "Suraz",
)
#: Groups of basins; each can be named in :func:`load_basins` instead of its members.
GROUPS = ("lahn", "yuliang", "vistula")
#: Every basin name, in the order :func:`load_basins` returns them.
BASIN_NAMES = (
    *(f"lahn_{gauge}" for gauge in LAHN_GAUGES),
    "yuliang",
    *(f"vistula_{station.lower().replace(' ', '_')}" for station in VISTULA_STATIONS),
)
#: Where :func:`export_vistula` writes and :func:`load_basins` looks by default (a folder
#: ignored by git).
DEFAULT_VISTULA_CACHE = REPO_ROOT / "benchmarks" / "data" / "vistula.csv.gz"

_MODELSKILL_VERSION = "1.3.2"
_MSK_MEMBER = "modelskill/data/vistula.msk"
_LAHN_SOURCE = "HydPy 6.4.0 example project HydPy-H-Lahn (LGPL-3.0), shipped with sktlag"
_YULIANG_SOURCE = "DemoData.xlsx of the TLAG-LSTM research code (licence not stated; by path)"
_VISTULA_SOURCE = f"modelskill {_MODELSKILL_VERSION} data/vistula.msk (MIT, DHI)"
_CSV_COLUMNS = ("date", "station", "river", "area_km2", "lon", "lat", "precipitation",
                "discharge")


@dataclass(frozen=True, eq=False)
class Basin:
    """One basin: daily inputs and the discharge to predict, on the same dates.

    Attributes
    ----------
    name : str
        Unique name, for example ``"lahn_kalkofen"`` or ``"vistula_tczew"``.
    X : pandas.DataFrame
        Inputs as float64, one column per series, indexed by a daily
        :class:`pandas.DatetimeIndex` named ``"date"`` without gaps. Every value is
        finite.
    y : pandas.Series
        Discharge as float64 on the same index; may hold NaN (fit with
        ``missing_target="mask"`` then).
    unit : str
        Unit of ``y``.
    source : str
        Where the data come from and under which licence.
    group : str
        One of :data:`GROUPS`.
    info : dict
        Extra facts about the basin (river, catchment area, units of the inputs, ...).
    notes : tuple of str
        Anything done to the data on loading.
    """

    name: str
    X: pd.DataFrame
    y: pd.Series
    unit: str
    source: str
    group: str
    info: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def dates(self) -> pd.DatetimeIndex:
        """The day of each row."""
        return self.X.index

    @property
    def input_names(self) -> list[str]:
        """Names of the input columns, in order."""
        return list(self.X.columns)

    def summary(self) -> dict[str, Any]:
        """One row of the basin table: size, dates, inputs, missing targets, mean discharge."""
        return {
            "name": self.name,
            "rows": len(self),
            "first": self.dates[0].strftime("%Y-%m-%d"),
            "last": self.dates[-1].strftime("%Y-%m-%d"),
            "n inputs": self.X.shape[1],
            "inputs": ", ".join(self.input_names),
            "target NaN": int(self.y.isna().sum()),
            "mean Q": float(self.y.mean()),
            "unit": self.unit,
            "source": self.source,
        }


class Split(NamedTuple):
    """Boolean row masks of a sequential train / validation / test split."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


class BasinUnavailable(RuntimeError):
    """The data of a group of basins cannot be read on this machine."""


# ---------------------------------------------------------------------------- public API
def load_basins(
    names: str | Iterable[str] | None = None,
    *,
    demo_path: str | Path | None = None,
    vistula_path: str | Path | None = None,
) -> list[Basin]:
    """Load the requested basins.

    Parameters
    ----------
    names : str or iterable of str, optional
        Basin names (:data:`BASIN_NAMES`) or group names (:data:`GROUPS`). None loads
        every basin whose data are at hand.
    demo_path : str or path-like, optional
        ``DemoData.xlsx`` (research layout) for the basin ``yuliang``.
    vistula_path : str or path-like, optional
        Where to read the Vistula gauges: the file ``vistula.msk``, a modelskill
        1.3.2 wheel (``.whl``, read as a zip without installing it), a file written by
        :func:`export_vistula` (``.csv`` or ``.csv.gz``), or a folder holding one of
        these. None uses the installed ``modelskill`` package, else
        :data:`DEFAULT_VISTULA_CACHE` if it exists.

    Returns
    -------
    list of Basin
        In the order of :data:`BASIN_NAMES`.

    Raises
    ------
    ValueError
        If a name is neither a basin nor a group.

    Warns
    -----
    UserWarning
        For every group skipped because its data are not at hand (no ``demo_path``, no
        modelskill data), and for every basin dropped because its inputs are not finite
        or its dates are not a gap-free daily sequence. Nothing is skipped silently.
    """
    wanted = _resolve_names(names)
    groups = {_group_of(name) for name in wanted}
    basins: list[Basin] = []
    if "lahn" in groups:
        basins += _lahn_basins()
    if "yuliang" in groups:
        if demo_path is None:
            warnings.warn("basin 'yuliang' skipped: no demo_path (DemoData.xlsx) given.",
                          UserWarning, stacklevel=2)
        else:
            basins.append(_yuliang_basin(Path(demo_path)))
    if "vistula" in groups:
        try:
            basins += _vistula_basins(vistula_path)
        except BasinUnavailable as error:
            warnings.warn(f"Vistula basins skipped: {error}", UserWarning, stacklevel=2)
    kept = [basin for basin in basins if basin.name in wanted and _usable(basin)]
    return sorted(kept, key=lambda basin: BASIN_NAMES.index(basin.name))


def split_masks(basin: Basin | int, train: float = 0.64, valid: float = 0.16) -> Split:
    """Sequential split: the first rows train, the next validate, the rest test.

    The defaults match the benchmarks: 80 % for fitting, of which the estimator holds
    out the last 20 % for validation, and the last 20 % for the test.

    Parameters
    ----------
    basin : Basin or int
        The basin, or its number of rows.
    train, valid : float
        Fractions of the rows for training and validation; the test gets the rest.

    Returns
    -------
    Split
        Three boolean masks of length ``len(basin)`` that cover every row once.
    """
    n = basin if isinstance(basin, int) else len(basin)
    if not (0 < train < 1 and 0 <= valid < 1 and train + valid < 1):
        raise ValueError(f"need 0 < train, 0 <= valid and train + valid < 1, got "
                         f"train={train}, valid={valid}")
    n_train = int(n * train)
    n_fit = int(n * (train + valid))
    rows = np.arange(n)
    return Split(rows < n_train, (rows >= n_train) & (rows < n_fit), rows >= n_fit)


def export_vistula(
    path: str | Path = DEFAULT_VISTULA_CACHE, vistula_path: str | Path | None = None
) -> Path:
    """Write the eight Vistula gauges to a gzip-compressed CSV file.

    The data come from ``modelskill/data/vistula.msk`` of the PyPI package
    ``modelskill`` 1.3.2 by DHI, released under the MIT licence (copyright DHI); the
    copy keeps that licence and must be attributed the same way. One row per gauge and
    day with the columns ``date, station, river, area_km2, lon, lat, precipitation,
    discharge``; the two model simulations of the original file are left out. Values are
    written with 9 significant digits, so that the original float32 numbers are read
    back exactly. About 120 kB: small enough to carry to a machine that has pandas but
    neither modelskill nor h5netcdf, where ``load_basins(vistula_path=path)`` reads it.

    Parameters
    ----------
    path : str or path-like, default=DEFAULT_VISTULA_CACHE
        File to write (``.csv.gz`` recommended); its folder is created. The default lies
        in a folder ignored by git.
    vistula_path : str or path-like, optional
        Where to read the original file, as in :func:`load_basins` (a CSV file is not
        accepted here).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    _, source = _vistula_source(vistula_path, allow_csv=False)
    frames = []
    for basin in _read_msk(source):
        frames.append(pd.DataFrame({
            "date": basin.dates.strftime("%Y-%m-%d"),
            "station": basin.info["station"],
            "river": basin.info["river"],
            "area_km2": basin.info["area_km2"],
            "lon": basin.info["lon"],
            "lat": basin.info["lat"],
            "precipitation": basin.X.iloc[:, 0].to_numpy(),
            "discharge": basin.y.to_numpy(),
        }))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False, float_format="%.9g")
    return path


# ---------------------------------------------------------------------------- names
def _group_of(name: str) -> str:
    return name.split("_", 1)[0]


def _resolve_names(names: str | Iterable[str] | None) -> set[str]:
    if names is None:
        return set(BASIN_NAMES)
    requested = [names] if isinstance(names, str) else list(names)
    wanted: set[str] = set()
    for name in requested:
        if name in GROUPS:
            wanted.update(n for n in BASIN_NAMES if _group_of(n) == name)
        elif name in BASIN_NAMES:
            wanted.add(name)
        else:
            raise ValueError(f"unknown basin {name!r}; valid names are {list(BASIN_NAMES)} "
                             f"and the groups {list(GROUPS)}")
    return wanted


def _usable(basin: Basin) -> bool:
    """Warn and return False when the inputs have gaps or the dates are not daily."""
    problems = []
    n_bad = int((~np.isfinite(basin.X.to_numpy())).sum())
    if n_bad:
        problems.append(f"{n_bad} missing or infinite input values")
    index = basin.dates
    if not (index.is_monotonic_increasing and index.is_unique
            and (len(index) < 2 or (np.diff(index.asi8) == 86_400 * 10**9).all())):
        problems.append("dates are not a gap-free daily sequence")
    if len(basin.X) != len(basin.y) or not basin.X.index.equals(basin.y.index):
        problems.append("inputs and target are not on the same dates")
    if problems:
        # Filling inputs would invent data the benchmark then scores against: drop instead.
        warnings.warn(f"basin {basin.name!r} dropped: {'; '.join(problems)}.", UserWarning,
                      stacklevel=3)
        return False
    return True


def _daily_index(dates: Any) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(dates, name="date").as_unit("ns")
    # A daily frequency where the dates allow it, as sktlag's own loaders give.
    try:
        return pd.DatetimeIndex(index, freq="D")
    except ValueError:
        return index


# ---------------------------------------------------------------------------- Lahn
def _lahn_basins() -> list[Basin]:
    from sktlag.datasets import load_lahn

    targets = [f"q_{gauge}" for gauge in LAHN_GAUGES]
    # The default features are the 4 precipitation and 4 temperature series only.
    X, Y = load_lahn(return_X_y=True, as_frame=True, target=targets)
    info = {"inputs": "p_*: precipitation mm/day, t_*: air temperature degC",
            "river": "Lahn (Hesse, Germany)"}
    return [
        Basin(name=f"lahn_{gauge}", X=X.copy(), y=Y[f"q_{gauge}"].copy(), unit="m3/s",
              source=_LAHN_SOURCE, group="lahn", info=dict(info, gauge=gauge.capitalize()))
        for gauge in LAHN_GAUGES
    ]


# ---------------------------------------------------------------------------- Yuliang
def _yuliang_basin(path: Path) -> Basin:
    from sktlag.io import read_table

    table = read_table(path, layout="research", allow_missing_target=True)
    return Basin(
        name="yuliang", X=table.X, y=table.y, unit="min-max scaled",
        source=_YULIANG_SOURCE, group="yuliang",
        info={"inputs": "rain stations, min-max scaled as shipped",
              "target_column": table.target_names[0]},
    )


# ---------------------------------------------------------------------------- Vistula
def _vistula_basins(vistula_path: str | Path | None) -> list[Basin]:
    kind, source = _vistula_source(vistula_path, allow_csv=True)
    return _read_vistula_csv(source) if kind == "csv" else _read_msk(source)


def _vistula_source(vistula_path: str | Path | None, allow_csv: bool) -> tuple[str, Any]:
    """Find the Vistula data: ``("msk", path or bytes)`` or ``("csv", path)``."""
    if vistula_path is None:
        # find_spec locates the installed package without running its __init__, which
        # would import mikeio.
        spec = importlib.util.find_spec("modelskill")
        if spec is not None and spec.submodule_search_locations:
            msk = Path(next(iter(spec.submodule_search_locations))) / "data" / "vistula.msk"
            if msk.is_file():
                return "msk", msk
        if allow_csv and DEFAULT_VISTULA_CACHE.is_file():
            return "csv", DEFAULT_VISTULA_CACHE
        raise BasinUnavailable(
            f"modelskill is not installed (pip install -e \".[basins]\") and "
            f"{DEFAULT_VISTULA_CACHE} does not exist; or pass "
            f"vistula_path (vistula.msk, a modelskill {_MODELSKILL_VERSION} wheel or a "
            f"file written by export_vistula)."
        )
    path = Path(vistula_path)
    if path.is_dir():
        candidates = [path / "vistula.msk", *sorted(path.glob("modelskill-*.whl"))]
        if allow_csv:
            candidates += [path / "vistula.csv.gz", path / "vistula.csv"]
        found = [candidate for candidate in candidates if candidate.is_file()]
        if not found:
            raise BasinUnavailable(f"no vistula.msk, modelskill wheel or vistula.csv.gz "
                                   f"in {path}")
        path = found[0]
    if not path.is_file():
        raise BasinUnavailable(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            if _MSK_MEMBER not in wheel.namelist():
                raise BasinUnavailable(f"{path.name} holds no {_MSK_MEMBER}")
            return "msk", wheel.read(_MSK_MEMBER)
    if name.endswith(".msk"):
        return "msk", path
    if allow_csv and name.endswith((".csv", ".csv.gz")):
        return "csv", path
    raise BasinUnavailable(f"cannot read Vistula data from {path.name}")


def _vistula_basin(station: str, dates: Any, precipitation: np.ndarray,
                   discharge: np.ndarray, info: dict[str, Any]) -> Basin:
    slug = station.lower().replace(" ", "_")
    index = _daily_index(dates)
    # The file stores float32; widening the same float32 numbers on both reading paths
    # makes the netCDF and the CSV path give identical values.
    X = pd.DataFrame({f"p_{slug}": np.asarray(precipitation, dtype=np.float32)
                      .astype(np.float64)}, index=index)
    y = pd.Series(np.asarray(discharge, dtype=np.float32).astype(np.float64), index=index,
                  name=f"q_{slug}")
    return Basin(
        name=f"vistula_{slug}", X=X, y=y, unit="m3/s", source=_VISTULA_SOURCE,
        group="vistula",
        info={"station": station, **info,
              "inputs": "catchment precipitation (unit not stated in the file; "
                        "values fit mm/day)"},
    )


def _read_msk(source: Path | bytes) -> list[Basin]:
    """Read the gauges of ``vistula.msk``: a zip holding one netCDF-4 file per gauge."""
    try:
        # The engine below and its backend (h5netcdf 1.8 lists h5py as an extra only):
        # fail here with a clear message rather than deep inside xarray.
        import h5netcdf  # noqa: F401
        import h5py  # noqa: F401
        import xarray as xr
    except ImportError as error:
        raise BasinUnavailable(f"reading vistula.msk needs xarray, h5netcdf and h5py ({error}); "
                               f"pip install -e \".[basins]\"") from error
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    basins = []
    with zipfile.ZipFile(handle) as archive:
        members = sorted((m for m in archive.namelist() if m.endswith(".nc")),
                         key=lambda m: int(m.split("_", 1)[0]))
        for member in members:
            with xr.open_dataset(io.BytesIO(archive.read(member)), engine="h5netcdf") as raw:
                ds = raw.load()
            # Only the observation and the auxiliary precipitation: sim1 and sim2 are
            # another model's output and would leak a forecast into the inputs.
            basins.append(_vistula_basin(
                str(ds.attrs["name"]), ds["time"].to_numpy(),
                ds["Precipitation"].to_numpy(), ds["Observation"].to_numpy(),
                {"river": str(ds.attrs["River"]), "area_km2": float(ds.attrs["Area"]),
                 "lon": float(ds["x"]), "lat": float(ds["y"])},
            ))
    return basins


def _read_vistula_csv(path: Path) -> list[Basin]:
    """Read a file written by :func:`export_vistula`."""
    table = pd.read_csv(path, dtype={"station": str, "river": str})
    missing = sorted(set(_CSV_COLUMNS) - set(table.columns))
    if missing:
        raise BasinUnavailable(f"{path.name} lacks the columns {missing}")
    basins = []
    for station, rows in table.groupby("station", sort=False):
        first = rows.iloc[0]
        basins.append(_vistula_basin(
            str(station), pd.to_datetime(rows["date"], format="%Y-%m-%d"),
            rows["precipitation"].to_numpy(), rows["discharge"].to_numpy(),
            {"river": str(first["river"]), "area_km2": float(first["area_km2"]),
             "lon": float(first["lon"]), "lat": float(first["lat"])},
        ))
    return basins


# ---------------------------------------------------------------------------- command
def main(argv: list[str] | None = None) -> int:
    """Print a table of every basin found on this machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="path to DemoData.xlsx for the basin 'yuliang'")
    parser.add_argument("--vistula", type=Path, default=None,
                        help="vistula.msk, a modelskill wheel or an exported CSV "
                             "(default: the installed modelskill, else the exported CSV)")
    parser.add_argument("--export-vistula", type=Path, nargs="?", default=None,
                        const=DEFAULT_VISTULA_CACHE, metavar="PATH",
                        help="also write the Vistula gauges to PATH (default "
                             "benchmarks/data/vistula.csv.gz)")
    args = parser.parse_args(argv)

    from _common import markdown_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        basins = load_basins(demo_path=args.data, vistula_path=args.vistula)
    print(markdown_table([basin.summary() for basin in basins], digits=3), end="")
    for warning in caught:
        print(f"note: {warning.message}")
    if args.export_vistula is not None:
        print(f"wrote {export_vistula(args.export_vistula, args.vistula)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
