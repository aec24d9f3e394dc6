"""Every real basin the benchmarks can use: daily inputs and discharge, indexed by date.

Eight sources give 26 records, and the Lahn records give 12 shorter ones:

``lahn_kalkofen``, ``lahn_marburg``, ``lahn_leun``, ``lahn_dillenburg``
    The Lahn table shipped with sktlag (:func:`sktlag.datasets.load_lahn`), one basin per
    gauge. The inputs are always the four precipitation and the four temperature series
    (never the discharge at another gauge), the target is the gauge's discharge in m3/s.
    1989-11-01 to 2020-12-31. Source: example project ``HydPy-H-Lahn`` of HydPy 6.4.0,
    LGPL-3.0.
``lahn_<gauge>_last3y``, ``lahn_<gauge>_last5y``, ``lahn_<gauge>_last10y`` (group ``lahn_short``)
    The last 3, 5 and 10 years of each Lahn gauge, as the last ``round(365.25 N)`` days
    (from 2018-01-01, 2016-01-02 and 2011-01-02 to 2020-12-31; :func:`last_years`):
    short records on data whose full-length results are known. They are loaded only
    when named (the group or a basin), never by ``load_basins()`` without names, so that
    a median over basins does not count the Lahn twice.
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
    two model simulations ``sim1`` and ``sim2`` stored next to them are never used.
``spotpy_fulda``
    The Fulda (Hesse, Germany) at the Grebenau gauge, 2976 km2 (the area given in
    the package's ``examples/spot_setup_cmf_lumped.py``), from
    ``spotpy/examples/cmf_data/fulda_climate.csv`` of the PyPI package ``spotpy`` 1.6.7
    (MIT licence, Tobias Houska). 1979-01-01 to 1988-12-31. Inputs: catchment
    precipitation in mm/day and the daily minimum, maximum and mean air temperature in
    degC; target: discharge in m3/s.
``spotpy_hymod``
    A catchment of 1.783 km2 (the area given in ``examples/spot_setup_hymod_python.py``;
    the package names neither river nor place) from
    ``spotpy/examples/hymod_python/hymod_input.csv`` of ``spotpy`` 1.6.7 (MIT).
    2012-01-01 to 2016-12-31; the discharge of 2012 is missing (NaN). Inputs:
    precipitation and potential evapotranspiration (Turc) in mm/day; target: discharge
    in l/s. No other file of the package is read.

``airgr_l0123001``, ``airgr_l0123002``
    The two daily demonstration catchments of the R package airGR (INRAE, GPL-2), as
    ``tests/data/basin_daily.csv.gz`` and ``tests/data/basin_snow.csv.gz`` of the source
    distribution (sdist) of the PyPI package ``grsuite`` 1.1.1 (GPL-2.0-or-later), whose
    NOTICE states that its test data are airGR 1.7.9's reference data on those
    catchments and carry airGR's licence; its references name SAFRAN (Meteo-France) as
    the forcing and Hydro / Eaufrance as the discharge. airGR gives them codes
    (L0123001, L0123002), not the rivers' names. 1984-01-01 to 2012-12-31. Inputs:
    precipitation, potential evapotranspiration (mm/day) and air temperature (degC);
    target: discharge in mm/day (802 days missing in L0123001). L0123002 is the
    catchment airGR demonstrates its snow module on; its high flow comes in spring.
    Only the sdist holds these files, so the sdist is read (``pip download --no-deps
    --no-binary :all: -d benchmarks/data grsuite==1.1.1``).

``susquehanna_marietta``, ``susquehanna_juniata``
    Two gauges of the Susquehanna basin (USA) from the data of tutorial 3 of the source
    distribution of the PyPI package ``hydrocnhs`` 1.2.0 (BSD-3-Clause; the package
    states no licence of the data, whose file names say USGS and Daymet):
    ``usgs_Q_D_cms_1985_2021.csv`` (daily discharge in m3/s at six outlets) and Daymet
    precipitation, potential evapotranspiration (both cm/day) and mean air temperature
    (degC) of the basin's 18 HUC-8 sub-basins, with their areas in ``SRB_HU8.csv``. The
    inputs of a gauge are the area-weighted means over the sub-basins that drain to it
    (precipitation and evapotranspiration converted to mm/day): for
    ``susquehanna_marietta`` (outlet ``Sb6_2``, which the package says it extended "to
    fit 1576000 outlet", the gauge at Marietta, PA) all 18; for ``susquehanna_juniata``
    (outlet ``Sb5_3``, the Juniata River) ``Sb5_1``, ``Sb5_2`` and ``Sb5_3``, as the
    tutorial's ``model.yaml`` routes them. 1985-01-01 to 2020-12-31. The other outlets
    are left out: the package does not say which sub-basins drain to them.

``cnkit_accotink``, ``cnkit_difficult_run``
    Two small flashy creeks of northern Virginia (USA), from the test data of the source
    distribution of the PyPI package ``cnkit`` 1.1.0 (MIT licence): USGS daily discharge
    in ft3/s (``tests/data/discharge_<gauge>.csv``) and PRISM daily precipitation in
    inches at the gauge's sample point (``tests/data/precip_<gauge>.csv``), as the
    package's ``tests/conftest.py`` names them; names and drainage areas from
    ``tests/data/sites.csv``. Accotink Creek near Annandale, VA (USGS 01654000, 61.9
    km2) and Difficult Run near Great Falls, VA (USGS 01646000, 149.7 km2).
    1990-01-01 to 2026-08-01; the 2 days the Accotink discharge file leaves out are NaN.
    Input: precipitation in mm/day; target: discharge in m3/s.
``pywatershed_<creek>`` (``poquessing``, ``shellpot``, ``christina``, ``skippack``, ``cobbs``)
    Five small flashy creeks of the Delaware River basin (USA), 2 years (1979-01-01 to
    1980-12-31), from the folder ``pywatershed/data/drb_2yr/`` of the source
    distribution of the PyPI package ``pywatershed`` 3.0.0 (CC0-1.0; the discharge at the
    model's gauges is observed USGS data by its gauge numbers, the source of the forcing
    is not stated): the five gauges of ``drb_2yr_gage_poi_obs.nc`` with the highest
    Richards-Baker index among those with discharge on every day (Poquessing Creek,
    Shellpot Creek, Christina River, Skippack Creek, Cobbs Creek at Darby). The inputs
    of a gauge are the area-weighted means of the daily precipitation and minimum and
    maximum air temperature (``prcp.nc``, ``tmin.nc``, ``tmax.nc``) over the model units
    that drain to the gauge's stream segment or above it (``parameters_dis_both.nc``,
    ``parameters_PRMSChannel.nc``), converted to mm/day and degC; the target is the
    discharge in m3/s.

The Vistula and spotpy basins need the optional extra ``basins``
(``pip install -e ".[basins]"``); without their data they are skipped with a warning.
Their files are read from the package release itself, never copied into the repository:
from a path given by the caller (the file, the release's wheel read as a zip without
installing it, or a folder holding either), else from the installed package of that
exact version, else from that release's wheel in :data:`DATA_DIR` (a folder ignored by
git; ``pip download --no-deps -d benchmarks/data spotpy==1.6.7 modelskill==1.3.2`` puts
them there). Nothing is downloaded at load time, so loading works offline and the same
files are read on every machine.

``vistula.msk`` is a zip of one netCDF file per gauge, read with ``xarray``,
``h5netcdf`` and ``h5py`` without importing ``modelskill``: importing it pulls in
``mikeio`` (with compiled MIKE libraries), and modelskill 1.3.2 declares ``pandas<3``. The
values are identical to those of ``modelskill.data.vistula()``. For a machine without
h5netcdf or h5py, :func:`export_vistula` writes the eight gauges to a small CSV file that
:func:`load_basins` reads with pandas alone. The spotpy files are CSV, read with pandas.

Record length and regime
    :attr:`Basin.years` is the length of the record (its dates, target gaps included).
    :attr:`Basin.regime` is read from the observed discharge alone
    (:func:`flow_signatures`, :func:`regime_of`), so that it says only what the data
    show: *intermittent* from a share of zero-flow days (:data:`INTERMITTENT_ZERO_SHARE`),
    *flashy* from a Richards-Baker index, the day-to-day change over the total flow
    (:data:`FLASHY_RB_INDEX`), *baseflow-dominated* from a baseflow index of a
    Lyne-Hollick filter (:data:`BASEFLOW_BFI`), and the season of the month with the
    highest mean discharge (``"winter high flow"``, ...). A snow-fed regime needs more
    than a spring peak (the location, a melt season in the temperature series); no basin
    here is stated to be snow-fed. A min-max scaled target (``yuliang``) has no zero and
    no ratio scale: its regime is not stated.

Run ``python benchmarks/_basins.py [--data path/to/DemoData.xlsx]`` for a table of the
basins found on this machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import io
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
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
#: Lengths in years of the records cut from the end of each Lahn gauge.
LAHN_CUT_YEARS = (3, 5, 10)
#: Mean length of a year in days: a cut of N years is the last ``round(N * 365.25)`` days.
DAYS_PER_YEAR = 365.25
#: Gauges of the Vistula file, in the file's order.
VISTULA_STATIONS = (
    "Tczew", "Krasnystaw", "Sandomierz", "Szczucin", "Nowy Sacz", "Tryncza", "Ptaki", "Suraz",
)
#: The members of each group, in the order :func:`load_basins` returns them. A group name
#: can be given to :func:`load_basins` instead of its members.
GROUP_MEMBERS: dict[str, tuple[str, ...]] = {
    "lahn": tuple(f"lahn_{gauge}" for gauge in LAHN_GAUGES),
    "yuliang": ("yuliang",),
    "vistula": tuple(f"vistula_{station.lower().replace(' ', '_')}"
                     for station in VISTULA_STATIONS),
    "spotpy": ("spotpy_fulda", "spotpy_hymod"),
    "airgr": ("airgr_l0123001", "airgr_l0123002"),
    "susquehanna": ("susquehanna_marietta", "susquehanna_juniata"),
    "cnkit": ("cnkit_accotink", "cnkit_difficult_run"),
    "pywatershed": ("pywatershed_poquessing", "pywatershed_shellpot", "pywatershed_christina",
                    "pywatershed_skippack", "pywatershed_cobbs"),
    "lahn_short": tuple(f"lahn_{gauge}_last{years}y" for gauge in LAHN_GAUGES
                        for years in LAHN_CUT_YEARS),
}
#: Groups of basins.
GROUPS = tuple(GROUP_MEMBERS)
#: Groups of records cut from others: loaded only when named.
DERIVED_GROUPS = ("lahn_short",)
#: Every basin name, in the order :func:`load_basins` returns them.
BASIN_NAMES = tuple(name for members in GROUP_MEMBERS.values() for name in members)
#: Where the wheels of the packages that hold basin data are looked for (a folder
#: ignored by git).
DATA_DIR = REPO_ROOT / "benchmarks" / "data"
#: :data:`DATA_DIR` relative to the checkout, as messages and commands name it (the same
#: on every machine).
_DATA_FOLDER = DATA_DIR.relative_to(REPO_ROOT).as_posix()
#: Where :func:`export_vistula` writes and :func:`load_basins` looks by default.
DEFAULT_VISTULA_CACHE = DATA_DIR / "vistula.csv.gz"

#: A regime is stated as intermittent from this share of zero-flow days on: a river
#: that dries up for about 18 days a year; the perennial rivers here have none.
INTERMITTENT_ZERO_SHARE = 0.05
#: A regime is stated as flashy from this Richards-Baker index on: about twice the
#: index of the perennial rivers of tens to thousands of km2 here (0.01 to 0.23).
FLASHY_RB_INDEX = 0.4
#: A regime is stated as baseflow-dominated from this baseflow index on.
BASEFLOW_BFI = 0.7
#: Filter parameter of the Lyne-Hollick baseflow filter, the value commonly used with
#: daily data.
_LYNE_HOLLICK_ALPHA = 0.925
_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}

_SCALED_UNIT = "min-max scaled"
_LAHN_SOURCE = "HydPy 6.4.0 example project HydPy-H-Lahn (LGPL-3.0), shipped with sktlag"
_YULIANG_SOURCE = "DemoData.xlsx of the TLAG-LSTM research code (licence not stated; by path)"
_CSV_COLUMNS = ("date", "station", "river", "area_km2", "lon", "lat", "precipitation",
                "discharge")


@dataclass(frozen=True)
class PackagedFile:
    """A data file inside one release of a PyPI package.

    Attributes
    ----------
    package : str
        Distribution name, also the name it is imported under.
    version : str
        The exact release the file is read from.
    member : str
        Path of the file inside the release's wheel, or inside its source distribution
        with ``sdist``.
    licence : str
        Licence and holder of the data, as the package states them.
    sdist : bool
        The file is only in the release's source distribution
        (``<package>-<version>.tar.gz``), not in its wheel nor the installed package.
    download_options : str
        More ``pip download`` options that this release's sdist needs: pip builds an
        sdist's metadata before it saves the file, which some releases allow only on
        another Python.
    """

    package: str
    version: str
    member: str
    licence: str
    sdist: bool = False
    download_options: str = ""

    @property
    def download(self) -> str:
        """The ``pip download`` command that puts the release into :data:`DATA_DIR`."""
        binary = " --no-binary :all:" if self.sdist else ""
        options = f" {self.download_options}" if self.download_options else ""
        return (f"pip download --no-deps{binary}{options} -d {_DATA_FOLDER} "
                f"{self.package}=={self.version}")

    @property
    def source(self) -> str:
        """Package, version, file and licence, as a basin's ``source`` states them."""
        where = " sdist" if self.sdist else ""
        return f"{self.package} {self.version}{where} {self.member} ({self.licence})"

    @property
    def release(self) -> str:
        """The glob of the release archives that hold the file."""
        if self.sdist:
            return f"{self.package}-{self.version}.tar.gz"
        return f"{self.package}-{self.version}-*.whl"


_VISTULA_FILE = PackagedFile("modelskill", "1.3.2", "modelskill/data/vistula.msk", "MIT, DHI")
_FULDA_FILE = PackagedFile("spotpy", "1.6.7", "spotpy/examples/cmf_data/fulda_climate.csv",
                           "MIT, Tobias Houska")
_HYMOD_FILE = PackagedFile("spotpy", "1.6.7", "spotpy/examples/hymod_python/hymod_input.csv",
                           "MIT, Tobias Houska")
_AIRGR_LICENCE = "airGR's licence GPL-2, INRAE"
_AIRGR_DAILY_FILE = PackagedFile("grsuite", "1.1.1",
                                 "grsuite-1.1.1/tests/data/basin_daily.csv.gz",
                                 _AIRGR_LICENCE, sdist=True)
_AIRGR_SNOW_FILE = PackagedFile("grsuite", "1.1.1",
                                "grsuite-1.1.1/tests/data/basin_snow.csv.gz",
                                _AIRGR_LICENCE, sdist=True)


@dataclass(frozen=True)
class _TableSpec:
    """How one basin is read from a CSV file of a package: columns, units, facts."""

    name: str
    file: PackagedFile
    sep: str
    date_column: str
    date_format: str
    #: Source column -> input name, in order.
    inputs: dict[str, str]
    target: str
    unit: str
    info: dict[str, Any]
    #: Rows after the header that are not data (a units line).
    skip_rows: tuple[int, ...] = ()


_SPOTPY_TABLES = (
    _TableSpec(
        name="spotpy_fulda", file=_FULDA_FILE, sep=",", date_column="date",
        date_format="%d.%m.%Y", skip_rows=(1,),
        inputs={"Prec": "p", "tmin": "t_min", "tmax": "t_max", "tmean": "t_mean"},
        target="Q", unit="m3/s",
        info={"river": "Fulda (Hesse, Germany)", "gauge": "Grebenau", "area_km2": 2976.41,
              "inputs": "p: precipitation mm/day, t_*: air temperature degC"},
    ),
    _TableSpec(
        name="spotpy_hymod", file=_HYMOD_FILE, sep=";", date_column="Date",
        date_format="%d.%m.%Y",
        inputs={"rainfall[mm]": "p", "TURC [mm d-1]": "pet"},
        target="Discharge[ls-1]", unit="l/s",
        info={"river": "not named by the package", "area_km2": 1.783,
              "inputs": "p: precipitation mm/day, pet: potential evapotranspiration "
                        "(Turc) mm/day"},
    ),
)

_HYDROCNHS_DATA = "hydrocnhs-1.2.0/tutorials/Tutorial_3-Sediment_Routing/Data/"
_HYDROCNHS_LICENCE = "BSD-3-Clause package; data licence not stated, USGS and Daymet"


def _hydrocnhs_file(name: str) -> PackagedFile:
    return PackagedFile("hydrocnhs", "1.2.0", _HYDROCNHS_DATA + name, _HYDROCNHS_LICENCE,
                        sdist=True)


#: The files of the Susquehanna gauges: sub-basin areas, discharge, and the forcing of
#: every sub-basin with the factor to mm/day (temperature: degC as it is).
_SUSQUEHANNA_AREAS = _hydrocnhs_file("SRB_HU8.csv")
_SUSQUEHANNA_DISCHARGE = _hydrocnhs_file("usgs_Q_D_cms_1985_2021.csv")
_SUSQUEHANNA_FORCING = {
    "p": (_hydrocnhs_file("daymet_srb_hu8_d_prcp_cm_1984_2021.csv"), 10.0),
    "pet": (_hydrocnhs_file("daymet_srb_hu8_d_pet_cm_1984_2021.csv"), 10.0),
    "t": (_hydrocnhs_file("daymet_srb_hu8_d_tavg_degC_1984_2021.csv"), 1.0),
}
#: Gauge -> (outlet column of the discharge file, the sub-basins that drain to it).
_SUSQUEHANNA_GAUGES = {
    "susquehanna_marietta": ("Sb6_2", None),  # None: all of them
    "susquehanna_juniata": ("Sb5_3", ("Sb5_1", "Sb5_2", "Sb5_3")),
}

#: Unit conversions of the US records.
_CUBIC_FOOT_M3 = 0.3048 ** 3
_INCH_MM = 25.4
_SQUARE_MILE_KM2 = 1.609344 ** 2

_CNKIT_DATA = "cnkit-1.1.0/tests/data/"
_CNKIT_LICENCE = "MIT package; USGS discharge, PRISM precipitation"


def _cnkit_file(name: str) -> PackagedFile:
    return PackagedFile("cnkit", "1.1.0", _CNKIT_DATA + name, _CNKIT_LICENCE, sdist=True)


#: The site table (names, areas) and the gauge of each cnkit basin.
_CNKIT_SITES = _cnkit_file("sites.csv")
_CNKIT_GAUGES = {"cnkit_accotink": "01654000", "cnkit_difficult_run": "01646000"}

_PYWATERSHED_DATA = "pywatershed-3.0.0/pywatershed/data/drb_2yr/"
_PYWATERSHED_LICENCE = "CC0-1.0 package; USGS discharge, forcing source not stated"


def _pywatershed_file(name: str) -> PackagedFile:
    # pywatershed 3.0.0 requires Python 3.12 and builds with setuptools: on an older
    # Python pip saves its sdist only past that check and with the environment's own
    # setuptools (that of the project's virtual environment).
    return PackagedFile("pywatershed", "3.0.0", _PYWATERSHED_DATA + name,
                        _PYWATERSHED_LICENCE, sdist=True,
                        download_options="--ignore-requires-python --no-build-isolation")


_PYWATERSHED_OBSERVED = _pywatershed_file("drb_2yr_gage_poi_obs.nc")
#: The model units' (HRUs') areas and the stream segment each drains to, and the network.
_PYWATERSHED_NETWORK = _pywatershed_file("parameters_dis_both.nc")
_PYWATERSHED_HRU_SEGMENT = _pywatershed_file("parameters_PRMSChannel.nc")
#: Input name -> (file, its variable, the conversion from the file's unit: inches to
#: mm/day, degrees Fahrenheit to degC).
_PYWATERSHED_FORCING = {
    "p": (_pywatershed_file("prcp.nc"), "prcp", lambda inches: _INCH_MM * inches),
    "t_min": (_pywatershed_file("tmin.nc"), "tmin", lambda deg_f: (deg_f - 32.0) / 1.8),
    "t_max": (_pywatershed_file("tmax.nc"), "tmax", lambda deg_f: (deg_f - 32.0) / 1.8),
}
#: The five flashiest gauges of the file (Richards-Baker index 0.77 to 1.09) among those
#: with discharge on every day: small creeks around Philadelphia and Wilmington.
_PYWATERSHED_GAUGES = {
    "pywatershed_poquessing": "01465798", "pywatershed_shellpot": "01477800",
    "pywatershed_christina": "01478000", "pywatershed_skippack": "01473120",
    "pywatershed_cobbs": "01475550",
}

_AIRGR_INPUTS = "p: precipitation mm/day, pet: potential evapotranspiration mm/day, " \
                "t: air temperature degC"
_AIRGR_TABLES = (
    _TableSpec(
        name="airgr_l0123001", file=_AIRGR_DAILY_FILE, sep=",", date_column="Date",
        date_format="%Y-%m-%d", inputs={"P": "p", "E": "pet", "T": "t"}, target="Qmm",
        unit="mm/day",
        info={"river": "airGR demonstration catchment L0123001 (not named)",
              "inputs": _AIRGR_INPUTS},
    ),
    _TableSpec(
        name="airgr_l0123002", file=_AIRGR_SNOW_FILE, sep=",", date_column="Date",
        date_format="%Y-%m-%d", inputs={"P": "p", "E": "pet", "T": "t"}, target="Qmm",
        unit="mm/day",
        info={"river": "airGR demonstration catchment L0123002 (not named)",
              "snow": "airGR's catchment for its snow module; spring-summer high flow",
              "inputs": _AIRGR_INPUTS},
    ),
)


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

    @property
    def years(self) -> float:
        """Length of the record in years of 365.25 days, days without discharge included."""
        return len(self) / 365.25

    @cached_property
    def signatures(self) -> dict[str, Any] | None:
        """:func:`flow_signatures` of the discharge; None for a min-max scaled target."""
        # Scaling moves the zero and the ratios the signatures are made of.
        return None if self.unit == _SCALED_UNIT else flow_signatures(self.y)

    @property
    def regime(self) -> str:
        """What the discharge shows of the regime (:func:`regime_of`)."""
        if self.signatures is None:
            return "not stated (scaled target)"
        return regime_of(self.signatures)

    def summary(self) -> dict[str, Any]:
        """One row of the basin table: length, dates, inputs, signatures, regime, source."""
        signatures = self.signatures or {}
        return {
            "name": self.name,
            "years": round(self.years, 2),
            "first": self.dates[0].strftime("%Y-%m-%d"),
            "last": self.dates[-1].strftime("%Y-%m-%d"),
            "inputs": ", ".join(self.input_names),
            "target NaN": int(self.y.isna().sum()),
            "mean Q": float(self.y.mean()),
            "unit": self.unit,
            "area km2": self.info.get("area_km2"),
            "zero-flow days": signatures.get("zero_flow_share"),
            "RB index": signatures.get("rb_index"),
            "BFI": signatures.get("bfi"),
            "regime": self.regime,
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
    spotpy_path: str | Path | None = None,
    grsuite_path: str | Path | None = None,
    hydrocnhs_path: str | Path | None = None,
    cnkit_path: str | Path | None = None,
    pywatershed_path: str | Path | None = None,
) -> list[Basin]:
    """Load the requested basins.

    Parameters
    ----------
    names : str or iterable of str, optional
        Basin names (:data:`BASIN_NAMES`) or group names (:data:`GROUPS`). None loads
        every basin whose data are at hand, except the records cut from others
        (:data:`DERIVED_GROUPS`), which are loaded only when named.
    demo_path : str or path-like, optional
        ``DemoData.xlsx`` (research layout) for the basin ``yuliang``.
    vistula_path : str or path-like, optional
        Where to read the Vistula gauges: the file ``vistula.msk``, a modelskill
        1.3.2 wheel (``.whl``, read as a zip without installing it), a file written by
        :func:`export_vistula` (``.csv`` or ``.csv.gz``), or a folder holding one of
        these. None uses the installed ``modelskill`` 1.3.2, else its wheel in
        :data:`DATA_DIR`, else :data:`DEFAULT_VISTULA_CACHE` if it exists.
    spotpy_path : str or path-like, optional
        Where to read the spotpy basins: a spotpy 1.6.7 wheel or a folder holding it
        or the two CSV files. None uses the installed ``spotpy`` 1.6.7, else its wheel
        in :data:`DATA_DIR`.
    grsuite_path : str or path-like, optional
        Where to read the airGR catchments: the grsuite 1.1.1 source distribution
        (``grsuite-1.1.1.tar.gz``) or a folder holding it or the two CSV files. None
        uses that sdist in :data:`DATA_DIR`.
    hydrocnhs_path : str or path-like, optional
        Where to read the Susquehanna gauges: the hydrocnhs 1.2.0 source distribution or
        a folder holding it. None uses that sdist in :data:`DATA_DIR`.
    cnkit_path, pywatershed_path : str or path-like, optional
        Where to read the cnkit and pywatershed gauges: the source distribution of
        cnkit 1.1.0 or pywatershed 3.0.0, or a folder holding it. None uses that sdist
        in :data:`DATA_DIR`.

    Returns
    -------
    list of Basin
        In the order of :data:`BASIN_NAMES`.

    Raises
    ------
    ValueError
        If a name is neither a basin nor a group, or if a file found for a basin lacks
        a column or holds dates that cannot be read (the message names the basin and
        the file).

    Warns
    -----
    UserWarning
        For every group skipped because its data are not at hand (no ``demo_path``, no
        modelskill, spotpy, grsuite, hydrocnhs, cnkit or pywatershed data), and for every
        basin dropped because its inputs are not finite or its dates are not a gap-free
        daily sequence. Nothing is skipped silently.
    """
    wanted = _resolve_names(names)
    groups = {_GROUP_OF[name] for name in wanted}
    basins: list[Basin] = []
    if groups & {"lahn", "lahn_short"}:
        lahn = _lahn_basins()
        basins += lahn
        if "lahn_short" in groups:
            basins += _lahn_cuts(lahn)
    if "yuliang" in groups:
        if demo_path is None:
            warnings.warn("basin 'yuliang' skipped: no demo_path (DemoData.xlsx) given.",
                          UserWarning, stacklevel=2)
        else:
            basins.append(_yuliang_basin(Path(demo_path)))
    optional = {"vistula": lambda: _vistula_basins(vistula_path),
                "spotpy": lambda: _table_basins(_SPOTPY_TABLES, spotpy_path, wanted),
                "airgr": lambda: _table_basins(_AIRGR_TABLES, grsuite_path, wanted),
                "susquehanna": lambda: _susquehanna_basins(hydrocnhs_path, wanted),
                "cnkit": lambda: _cnkit_basins(cnkit_path, wanted),
                "pywatershed": lambda: _pywatershed_basins(pywatershed_path, wanted)}
    for group, read in optional.items():
        if group in groups:
            try:
                basins += read()
            except BasinUnavailable as error:
                warnings.warn(f"{group} basins skipped: {error}", UserWarning, stacklevel=2)
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


def flow_signatures(discharge: pd.Series) -> dict[str, Any]:
    """Signatures of a daily discharge series that show its regime.

    Days without a value are left out: a difference or a filter step is taken only
    between two consecutive days that both have one, so that no gap is bridged.

    Parameters
    ----------
    discharge : pandas.Series
        Daily discharge on a gap-free daily index, in any unit of a ratio scale (m3/s,
        l/s, mm/day); NaN where missing.

    Returns
    -------
    dict
        ``zero_flow_share``: share of the days with a value at or below zero;
        ``rb_index``: Richards-Baker flashiness index, the sum of the absolute
        day-to-day changes over the sum of the flows; ``bfi``: baseflow index, the
        baseflow volume of a Lyne-Hollick filter (alpha 0.925; forward, backward,
        forward) over the total volume; ``peak_month``: the calendar month with the
        highest mean discharge.

    Raises
    ------
    ValueError
        If no two consecutive days both have a value, or no day has any flow.
    """
    q = discharge.to_numpy(dtype=np.float64)
    valid = np.isfinite(q)
    pairs = valid[1:] & valid[:-1]
    if not pairs.any() or not (q[valid] > 0).any():
        raise ValueError(f"discharge {discharge.name!r} has no two consecutive days with "
                         f"values, or no flow")
    change = np.abs(np.diff(q))[pairs].sum()
    rb_index = change / q[1:][pairs].sum()
    baseflow = total = 0.0
    for run in _runs(valid):
        flow = q[run]
        baseflow += _lyne_hollick(flow).sum()
        total += flow.sum()
    monthly = discharge.groupby(discharge.index.month).mean()
    return {
        "zero_flow_share": float((q[valid] <= 0).mean()),
        "rb_index": float(rb_index),
        "bfi": float(baseflow / total),
        "peak_month": int(monthly.idxmax()),
    }


def regime_of(signatures: dict[str, Any]) -> str:
    """The regime that :func:`flow_signatures` support, in words.

    Parameters
    ----------
    signatures : dict
        As returned by :func:`flow_signatures`.

    Returns
    -------
    str
        Each of ``"intermittent"``, ``"flashy"`` and ``"baseflow-dominated"`` whose
        threshold (:data:`INTERMITTENT_ZERO_SHARE`, :data:`FLASHY_RB_INDEX`,
        :data:`BASEFLOW_BFI`) the signatures reach, then the season of the peak month,
        for example ``"baseflow-dominated, spring high flow"``.
    """
    parts = []
    if signatures["zero_flow_share"] >= INTERMITTENT_ZERO_SHARE:
        parts.append("intermittent")
    if signatures["rb_index"] >= FLASHY_RB_INDEX:
        parts.append("flashy")
    if signatures["bfi"] >= BASEFLOW_BFI:
        parts.append("baseflow-dominated")
    parts.append(f"{_SEASONS[signatures['peak_month']]} high flow")
    return ", ".join(parts)


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
_GROUP_OF = {name: group for group, members in GROUP_MEMBERS.items() for name in members}


def _resolve_names(names: str | Iterable[str] | None) -> set[str]:
    if names is None:
        return {name for name, group in _GROUP_OF.items() if group not in DERIVED_GROUPS}
    requested = [names] if isinstance(names, str) else list(names)
    wanted: set[str] = set()
    for name in requested:
        if name in GROUP_MEMBERS:
            wanted.update(GROUP_MEMBERS[name])
        elif name in _GROUP_OF:
            wanted.add(name)
        else:
            raise ValueError(f"unknown basin {name!r}; valid names are {list(BASIN_NAMES)} "
                             f"and the groups {list(GROUPS)}")
    return wanted


def basin_names(names: str | Iterable[str] | None = None) -> list[str]:
    """The basins that ``names`` (basin and group names, as for :func:`load_basins`)
    stand for, in the order of :data:`BASIN_NAMES`, without reading any data.

    Examples
    --------
    >>> basin_names(["spotpy", "lahn_kalkofen_last3y"])
    ['spotpy_fulda', 'spotpy_hymod', 'lahn_kalkofen_last3y']
    """
    return sorted(_resolve_names(names), key=BASIN_NAMES.index)


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


# ---------------------------------------------------------------------------- signatures
def _runs(valid: np.ndarray) -> list[slice]:
    """The slices of the runs of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
    return [slice(start, stop) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def _lyne_hollick(flow: np.ndarray, alpha: float = _LYNE_HOLLICK_ALPHA) -> np.ndarray:
    """Baseflow of one gap-free run: the filter forward, backward and forward again."""
    # A recursive filter: plain Python floats run this loop several times faster than
    # numpy scalars.
    baseflow = flow.tolist()
    for direction in (1, -1, 1):
        series = baseflow[::direction]
        out = [series[0]]
        # Each pass filters the previous pass's baseflow and never exceeds it.
        for previous, current in zip(series[:-1], series[1:], strict=True):
            out.append(min(alpha * out[-1] + (1 - alpha) / 2 * (current + previous), current))
        baseflow = out[::direction]
    return np.asarray(baseflow)


# ---------------------------------------------------------------------------- packaged files
def _read_packaged(file: PackagedFile, path: str | Path | None) -> bytes:
    """The bytes of ``file``, from ``path``, the installed package or :data:`DATA_DIR`.

    ``path`` may be the file itself, a release archive that holds it (a wheel read as a
    zip, or with ``file.sdist`` the source distribution read as a tar), or a folder
    holding either. Without ``path`` the installed package is used if its version is
    the release's (another release may hold other data; an sdist's file is never
    installed), else that release's archive in :data:`DATA_DIR`.
    """
    basename = file.member.rsplit("/", 1)[-1]
    if path is not None:
        path = Path(path)
        if path.is_dir():
            found = [path / basename, *sorted(path.glob(file.release))]
            found = [candidate for candidate in found if candidate.is_file()]
            if not found:
                raise BasinUnavailable(f"no {basename} and no {file.release} in {path}")
            path = found[0]
        if not path.is_file():
            raise BasinUnavailable(f"no such file: {path}")
        if path.match(file.release):
            return _archive_member(path, file)
        if path.name != basename:
            raise BasinUnavailable(f"{path.name} is neither {basename} nor a "
                                   f"{file.release} of {file.package} {file.version}")
        return path.read_bytes()
    installed = None if file.sdist else _installed_member(file)
    if installed is not None:
        return installed.read_bytes()
    cached = sorted(DATA_DIR.glob(file.release))
    if cached:
        return _archive_member(cached[0], file)
    if file.sdist:
        raise BasinUnavailable(
            f"{_DATA_FOLDER} holds no {file.release} ({file.download}), so {file.member} "
            "cannot be read."
        )
    raise BasinUnavailable(
        f"{file.package} {file.version} is not installed (pip install -e \".[basins]\") "
        f"and {_DATA_FOLDER} holds no {file.release} ({file.download}), so {file.member} "
        "cannot be read."
    )


def _installed_member(file: PackagedFile) -> Path | None:
    """``file`` in the installed package, or None if absent or of another version."""
    # find_spec locates the package without running its __init__ (modelskill's would
    # import mikeio).
    spec = importlib.util.find_spec(file.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        if importlib.metadata.version(file.package) != file.version:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    candidate = root / file.member
    return candidate if candidate.is_file() else None


def _archive_member(release: Path, file: PackagedFile) -> bytes:
    """``file`` from a release archive: a wheel (zip) or, with ``file.sdist``, a tar."""
    if file.sdist:
        with tarfile.open(release) as archive:
            try:
                member = archive.extractfile(file.member)
            except KeyError:
                member = None
            if member is None:
                raise BasinUnavailable(f"{release.name} holds no {file.member}")
            return member.read()
    with zipfile.ZipFile(release) as archive:
        if file.member not in archive.namelist():
            raise BasinUnavailable(f"{release.name} holds no {file.member}")
        return archive.read(file.member)


def _table_basin(spec: _TableSpec, raw: bytes) -> Basin:
    """One basin from a CSV file of a package, read as ``spec`` says."""
    where = f"basin {spec.name!r}: {spec.file.package} {spec.file.version} {spec.file.member}"
    table = pd.read_csv(io.BytesIO(raw), sep=spec.sep, skiprows=list(spec.skip_rows),
                        encoding="utf-8",
                        compression="gzip" if spec.file.member.endswith(".gz") else None)
    missing = [c for c in (spec.date_column, *spec.inputs, spec.target)
               if c not in table.columns]
    if missing:
        raise ValueError(f"{where} lacks the columns {missing}")
    try:
        dates = pd.to_datetime(table[spec.date_column], format=spec.date_format)
    except ValueError as error:
        raise ValueError(f"{where}: dates not in the format {spec.date_format!r} "
                         f"({error})") from error
    try:
        values = table[[*spec.inputs, spec.target]].astype(np.float64)
    except ValueError as error:
        raise ValueError(f"{where}: a value is not a number ({error})") from error
    index = _daily_index(dates)
    X = values[list(spec.inputs)].rename(columns=spec.inputs).set_axis(index)
    y = values[spec.target].rename("q").set_axis(index)
    return Basin(name=spec.name, X=X, y=y, unit=spec.unit, source=spec.file.source,
                 group=_GROUP_OF[spec.name], info=dict(spec.info))


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


def last_years(basin: Basin, years: int, group: str | None = None) -> Basin:
    """The last ``years`` years of ``basin`` (its last ``round(years * 365.25)`` days),
    as a basin of its own named ``<name>_last<years>y``."""
    rows = round(years * DAYS_PER_YEAR)
    return Basin(
        name=f"{basin.name}_last{years}y", X=basin.X.iloc[-rows:].copy(),
        y=basin.y.iloc[-rows:].copy(), unit=basin.unit,
        source=f"{basin.source}; last {years} years", group=group or basin.group,
        info=dict(basin.info, cut_from=basin.name),
        notes=(f"the last {years} years of {basin.name}",),
    )


def _lahn_cuts(lahn: list[Basin]) -> list[Basin]:
    """The last :data:`LAHN_CUT_YEARS` years of each Lahn gauge, as basins of their own."""
    return [last_years(basin, years, group="lahn_short")
            for basin in lahn for years in LAHN_CUT_YEARS]


# ---------------------------------------------------------------------------- Yuliang
def _yuliang_basin(path: Path) -> Basin:
    from sktlag.io import read_table

    table = read_table(path, layout="research", allow_missing_target=True)
    return Basin(
        name="yuliang", X=table.X, y=table.y, unit=_SCALED_UNIT,
        source=_YULIANG_SOURCE, group="yuliang",
        info={"inputs": "rain stations, min-max scaled as shipped",
              "target_column": table.target_names[0]},
    )


# ---------------------------------------------------------------------------- spotpy, airGR
def _table_basins(specs, path: str | Path | None, wanted: set[str]) -> list[Basin]:
    # Only the files of the basins asked for: one missing or broken file does not stop
    # another basin.
    return [_table_basin(spec, _read_packaged(spec.file, path))
            for spec in specs if spec.name in wanted]


# ---------------------------------------------------------------------------- Susquehanna
def _susquehanna_basins(path: str | Path | None, wanted: set[str]) -> list[Basin]:
    def table(file: PackagedFile, index: str, dated: bool = True) -> pd.DataFrame:
        frame = pd.read_csv(io.BytesIO(_read_packaged(file, path)), encoding="utf-8")
        if index not in frame.columns:
            raise ValueError(f"{file.package} {file.version} {file.member} has no column "
                             f"{index!r}")
        frame = frame.set_index(index)
        if dated:
            frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, format="%Y-%m-%d"))
        return frame

    areas = table(_SUSQUEHANNA_AREAS, "ID", dated=False)["area_ha"].astype(np.float64)
    discharge = table(_SUSQUEHANNA_DISCHARGE, "date")
    dates = discharge.index
    forcing = {name: (table(file, "Date"), factor)
               for name, (file, factor) in _SUSQUEHANNA_FORCING.items()}
    basins = []
    for name, (outlet, upstream) in _SUSQUEHANNA_GAUGES.items():
        if name not in wanted:
            continue
        sub_basins = list(upstream or areas.index)
        unknown = [b for b in sub_basins if b not in areas.index]
        if unknown:
            raise ValueError(f"basin {name!r}: {_SUSQUEHANNA_AREAS.member} gives no area "
                             f"of {unknown}")
        weights = (areas[sub_basins] / areas[sub_basins].sum()).to_numpy()
        where = f"basin {name!r}: {_SUSQUEHANNA_DISCHARGE.member}"
        if outlet not in discharge.columns:
            raise ValueError(f"{where} has no outlet {outlet!r}")
        inputs = {}
        for key, (frame, factor) in forcing.items():
            missing = [str(d.date()) for d in dates.difference(frame.index)[:3]]
            if missing or any(b not in frame.columns for b in sub_basins):
                raise ValueError(f"basin {name!r}: the {key} file lacks the days "
                                 f"{missing} or a sub-basin of {sub_basins}")
            inputs[key] = factor * frame.loc[dates, sub_basins].to_numpy(np.float64) @ weights
        index = _daily_index(pd.Series(dates))
        basins.append(Basin(
            name=name, X=pd.DataFrame(inputs, index=index),
            y=pd.Series(discharge[outlet].to_numpy(np.float64), index=index, name="q"),
            unit="m3/s", source=_SUSQUEHANNA_DISCHARGE.source, group="susquehanna",
            info={"outlet": outlet, "sub_basins": ", ".join(sub_basins),
                  "area_km2": float(areas[sub_basins].sum() / 100.0),
                  "inputs": "area-weighted means of the sub-basins: p: precipitation "
                            "mm/day, pet: potential evapotranspiration mm/day, t: mean "
                            "air temperature degC"},
        ))
    return basins


# ---------------------------------------------------------------------------- cnkit
def _cnkit_basins(path: str | Path | None, wanted: set[str]) -> list[Basin]:
    def table(file: PackagedFile, columns: tuple[str, ...]) -> pd.DataFrame:
        frame = pd.read_csv(io.BytesIO(_read_packaged(file, path)), encoding="utf-8",
                            dtype={"gage_number": str})
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{file.package} {file.version} {file.member} lacks the "
                             f"columns {missing}")
        return frame

    def series(file: PackagedFile, column: str) -> pd.Series:
        frame = table(file, ("date", column))
        try:
            dates = pd.DatetimeIndex(pd.to_datetime(frame["date"], format="%Y-%m-%d"))
            return pd.Series(frame[column].astype(np.float64).to_numpy(), index=dates)
        except ValueError as error:
            raise ValueError(f"{file.member}: a date or a value cannot be read "
                             f"({error})") from error

    sites = table(_CNKIT_SITES, ("gage_number", "name", "drainage_area_sqmi"))
    sites = sites.set_index("gage_number")
    basins = []
    for name, gauge in _CNKIT_GAUGES.items():
        if name not in wanted:
            continue
        if gauge not in sites.index:
            raise ValueError(f"basin {name!r}: {_CNKIT_SITES.member} has no gauge {gauge}")
        precipitation = series(_cnkit_file(f"precip_{gauge}.csv"), "P_in")
        discharge = series(_cnkit_file(f"discharge_{gauge}.csv"), "Q_cfs")
        unknown = discharge.index.difference(precipitation.index)
        if len(unknown):
            raise ValueError(f"basin {name!r}: discharge on days without precipitation, "
                             f"from {unknown[0].date()}")
        # Days the discharge file leaves out are days without discharge: NaN, said in
        # the notes, never filled.
        absent = precipitation.index.difference(discharge.index)
        index = _daily_index(precipitation.index)
        basins.append(Basin(
            name=name, X=pd.DataFrame({"p": _INCH_MM * precipitation.to_numpy()}, index=index),
            y=pd.Series(_CUBIC_FOOT_M3 * discharge.reindex(precipitation.index).to_numpy(),
                        index=index, name="q"),
            unit="m3/s", source=_cnkit_file(f"discharge_{gauge}.csv").source, group="cnkit",
            info={"river": str(sites.loc[gauge, "name"]), "gauge": f"USGS {gauge}",
                  "area_km2": round(_SQUARE_MILE_KM2
                                    * float(sites.loc[gauge, "drainage_area_sqmi"]), 1),
                  "inputs": "p: PRISM precipitation at the gauge's sample point, mm/day"},
            notes=(f"{len(absent)} days absent from the discharge file are NaN",)
            if len(absent) else (),
        ))
    return basins


# ---------------------------------------------------------------------------- pywatershed
def _upstream_segments(to_segment: np.ndarray, segment: int) -> set[int]:
    """``segment`` and every segment that drains to it; ``to_segment[i]`` is where segment
    ``i + 1`` drains (0: out of the network)."""
    above: dict[int, list[int]] = {}
    for source, target in enumerate(to_segment.tolist(), start=1):
        above.setdefault(int(target), []).append(source)
    found, stack = set(), [segment]
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(above.get(current, ()))
    return found


def _pywatershed_basins(path: str | Path | None, wanted: set[str]) -> list[Basin]:
    try:
        import h5netcdf  # noqa: F401
        import xarray as xr
    except ImportError as error:
        raise BasinUnavailable(f"reading the pywatershed files needs xarray and h5netcdf "
                               f"({error}); pip install -e \".[basins]\"") from error

    def dataset(file: PackagedFile, *variables: str):
        with xr.open_dataset(io.BytesIO(_read_packaged(file, path)),
                             engine="h5netcdf") as raw:
            missing = [v for v in variables if v not in raw.variables]
            if missing:
                raise ValueError(f"{file.member} lacks the variables {missing}")
            return raw[list(variables)].load()

    observed = dataset(_PYWATERSHED_OBSERVED, "discharge", "drainage_area", "poi_name")
    network = dataset(_PYWATERSHED_NETWORK, "poi_gage_id", "poi_gage_segment", "tosegment",
                      "hru_area", "nhm_id")
    hru_segment = dataset(_PYWATERSHED_HRU_SEGMENT, "hru_segment")["hru_segment"].to_numpy()
    forcing = {key: (file, dataset(file, variable)[variable], convert)
               for key, (file, variable, convert) in _PYWATERSHED_FORCING.items()}
    gauges = [str(g) for g in network["poi_gage_id"].to_numpy()]
    hru_area = network["hru_area"].to_numpy().astype(np.float64)
    dates = observed["time"].to_numpy()
    basins = []
    for name, gauge in _PYWATERSHED_GAUGES.items():
        if name not in wanted:
            continue
        if gauge not in gauges:
            raise ValueError(f"basin {name!r}: {_PYWATERSHED_NETWORK.member} has no gauge "
                             f"{gauge}")
        segment = int(network["poi_gage_segment"].to_numpy()[gauges.index(gauge)])
        # The model units that drain to the gauge's segment or above it; their
        # area-weighted mean is the catchment's forcing.
        units = np.isin(hru_segment, list(_upstream_segments(
            network["tosegment"].to_numpy(), segment)))
        weights = hru_area[units] / hru_area[units].sum()
        inputs = {}
        for key, (file, values, convert) in forcing.items():
            if not np.array_equal(values["time"].to_numpy(), dates) or not np.array_equal(
                    values["nhm_id"].to_numpy(), network["nhm_id"].to_numpy()):
                raise ValueError(f"basin {name!r}: {file.member} is not on the days and "
                                 f"model units of the discharge")
            inputs[key] = convert(values.to_numpy().astype(np.float64)[:, units] @ weights)
        index = _daily_index(dates)
        flow = observed["discharge"].sel(poi_id=gauge).to_numpy().astype(np.float64)
        basins.append(Basin(
            name=name, X=pd.DataFrame(inputs, index=index),
            y=pd.Series(_CUBIC_FOOT_M3 * flow, index=index, name="q"), unit="m3/s",
            source=_PYWATERSHED_OBSERVED.source, group="pywatershed",
            info={"river": str(observed["poi_name"].sel(poi_id=gauge).item()),
                  "gauge": f"USGS {gauge}",
                  "area_km2": round(_SQUARE_MILE_KM2 * float(
                      observed["drainage_area"].sel(poi_id=gauge)), 1),
                  "model_units": int(units.sum()),
                  "inputs": "area-weighted means of the model units: p: precipitation "
                            "mm/day, t_min, t_max: air temperature degC"},
        ))
    return basins


# ---------------------------------------------------------------------------- Vistula
def _vistula_basins(vistula_path: str | Path | None) -> list[Basin]:
    kind, source = _vistula_source(vistula_path, allow_csv=True)
    return _read_vistula_csv(source) if kind == "csv" else _read_msk(source)


def _vistula_source(vistula_path: str | Path | None, allow_csv: bool) -> tuple[str, Any]:
    """Find the Vistula data: ``("msk", bytes)`` or ``("csv", path)``."""
    exported = ("vistula.csv.gz", "vistula.csv")
    if allow_csv and vistula_path is not None:
        path = Path(vistula_path)
        if path.name.lower().endswith((".csv", ".csv.gz")):
            return "csv", path
    try:
        return "msk", _read_packaged(_VISTULA_FILE, vistula_path)
    except BasinUnavailable as error:
        if not allow_csv:
            raise
        # A file written by export_vistula: in the folder given, else the default cache.
        if vistula_path is None:
            candidates = [DEFAULT_VISTULA_CACHE]
        elif Path(vistula_path).is_dir():
            candidates = [Path(vistula_path) / name for name in exported]
        else:
            candidates = []
        for candidate in candidates:
            if candidate.is_file():
                return "csv", candidate
        raise BasinUnavailable(f"{error} Nor is there a file written by export_vistula "
                               f"({DEFAULT_VISTULA_CACHE.name}).") from None


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
        name=f"vistula_{slug}", X=X, y=y, unit="m3/s", source=_VISTULA_FILE.source,
        group="vistula",
        info={"station": station, **info,
              "inputs": "catchment precipitation (unit not stated in the file; "
                        "values fit mm/day)"},
    )


def _read_msk(source: bytes) -> list[Basin]:
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
    basins = []
    with zipfile.ZipFile(io.BytesIO(source)) as archive:
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
    """Print a table of every basin found on this machine, the Lahn cuts included."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="path to DemoData.xlsx for the basin 'yuliang'")
    parser.add_argument("--vistula", type=Path, default=None,
                        help="vistula.msk, a modelskill 1.3.2 wheel or an exported CSV "
                             "(default: the installed modelskill, else benchmarks/data)")
    parser.add_argument("--spotpy", type=Path, default=None,
                        help="a spotpy 1.6.7 wheel or a folder holding it (default: the "
                             "installed spotpy, else benchmarks/data)")
    parser.add_argument("--grsuite", type=Path, default=None,
                        help="the grsuite 1.1.1 sdist or a folder holding it (default: "
                             "benchmarks/data)")
    parser.add_argument("--hydrocnhs", type=Path, default=None,
                        help="the hydrocnhs 1.2.0 sdist or a folder holding it (default: "
                             "benchmarks/data)")
    for package, version in (("cnkit", "1.1.0"), ("pywatershed", "3.0.0")):
        parser.add_argument(f"--{package}", type=Path, default=None,
                            help=f"the {package} {version} sdist or a folder holding it "
                                 "(default: benchmarks/data)")
    parser.add_argument("--export-vistula", type=Path, nargs="?", default=None,
                        const=DEFAULT_VISTULA_CACHE, metavar="PATH",
                        help="also write the Vistula gauges to PATH (default "
                             "benchmarks/data/vistula.csv.gz)")
    args = parser.parse_args(argv)

    from _common import markdown_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        basins = load_basins(BASIN_NAMES, demo_path=args.data, vistula_path=args.vistula,
                             spotpy_path=args.spotpy, grsuite_path=args.grsuite,
                             hydrocnhs_path=args.hydrocnhs, cnkit_path=args.cnkit,
                             pywatershed_path=args.pywatershed)
    print(markdown_table([basin.summary() for basin in basins], digits=3), end="")
    for warning in caught:
        print(f"note: {warning.message}")
    if args.export_vistula is not None:
        print(f"wrote {export_vistula(args.export_vistula, args.vistula)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
