"""The benchmark basin loader: names, groups, Lahn cuts, regimes, splits, optional data."""

import importlib.util
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def basins_module():
    spec = importlib.util.spec_from_file_location("_basins", ROOT / "benchmarks" / "_basins.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_basins", module)
    spec.loader.exec_module(module)
    return module


def test_lahn_gauges_are_separate_basins_without_discharge_inputs(basins_module):
    basins = basins_module.load_basins("lahn")
    assert [b.name for b in basins] == [
        "lahn_kalkofen", "lahn_marburg", "lahn_leun", "lahn_dillenburg"
    ]
    for basin in basins:
        assert basin.X.shape == (11384, 8) and basin.y.name == "q_" + basin.name[5:]
        assert not any(name.startswith("q_") for name in basin.input_names)
        assert basin.X.index.equals(basin.y.index) and basin.X.index.freqstr == "D"


def test_unknown_name_raises_and_missing_data_warns(basins_module):
    with pytest.raises(ValueError, match="unknown basin"):
        basins_module.load_basins("rhine")
    with pytest.warns(UserWarning, match="demo_path"):
        assert basins_module.load_basins("yuliang") == []


def test_basin_names_expand_groups_without_reading_data(basins_module):
    # No spotpy data on a clean machine: the names come without them.
    assert basins_module.basin_names(["lahn_kalkofen_last3y", "spotpy"]) == [
        "spotpy_fulda", "spotpy_hymod", "lahn_kalkofen_last3y"]
    assert "lahn_kalkofen_last3y" not in basins_module.basin_names()  # cuts: by name only
    with pytest.raises(ValueError, match="unknown basin"):
        basins_module.basin_names(["rhine"])


def test_split_masks_cover_every_row_once_in_order(basins_module):
    split = basins_module.split_masks(4018)
    assert [int(mask.sum()) for mask in split] == [2571, 643, 804]
    stacked = np.vstack(split).astype(int)
    assert (stacked.sum(axis=0) == 1).all()
    assert (np.diff(stacked.argmax(axis=0)) >= 0).all()
    with pytest.raises(ValueError):
        basins_module.split_masks(100, train=0.9, valid=0.2)


def test_vistula_round_trips_through_the_exported_csv(basins_module, tmp_path):
    pytest.importorskip("h5netcdf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        original = basins_module.load_basins("vistula")
    if not original:
        pytest.skip("; ".join(str(w.message) for w in caught))
    assert len(original) == 8
    assert all(b.input_names == ["p_" + b.name[8:]] for b in original)
    path = basins_module.export_vistula(tmp_path / "vistula.csv.gz")
    copy = basins_module.load_basins("vistula", vistula_path=path)
    for a, b in zip(original, copy, strict=True):
        assert a.name == b.name and a.X.equals(b.X) and a.y.equals(b.y)


# ---------------------------------------------------------------------------- Lahn cuts
def test_lahn_cuts_are_the_last_years_of_each_gauge(basins_module):
    full = {b.name: b for b in basins_module.load_basins("lahn")}
    cuts = basins_module.load_basins("lahn_short")
    assert len(cuts) == 12 and {b.group for b in cuts} == {"lahn_short"}
    first_day = {3: "2018-01-01", 5: "2016-01-02", 10: "2011-01-02"}
    rows = {3: 1096, 5: 1826, 10: 3652}
    for cut in cuts:
        parent_name, years = cut.name.rsplit("_last", 1)
        years = int(years.rstrip("y"))
        parent = full[parent_name]
        assert len(cut) == rows[years] and round(cut.years) == years
        assert cut.dates[0] == pd.Timestamp(first_day[years]) and cut.dates.freqstr == "D"
        assert cut.dates[-1] == parent.dates[-1]
        assert cut.X.equals(parent.X.iloc[-rows[years]:])
        assert cut.y.equals(parent.y.iloc[-rows[years]:])
        assert cut.input_names == parent.input_names and "last" in cut.source


def test_cuts_load_only_when_named(basins_module):
    default = basins_module._resolve_names(None)
    short = set(basins_module.GROUP_MEMBERS["lahn_short"])
    assert not default & short
    assert default | short == set(basins_module.BASIN_NAMES)
    assert basins_module._resolve_names(["lahn_short", "lahn_leun"]) == short | {"lahn_leun"}
    assert len(set(basins_module.BASIN_NAMES)) == len(basins_module.BASIN_NAMES)


# ---------------------------------------------------------------------------- regime
def _daily(values, start="2001-01-01"):
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D"),
                     dtype=float)


def test_signatures_of_constant_intermittent_and_flashy_flows(basins_module):
    sig, regime = basins_module.flow_signatures, basins_module.regime_of
    constant = sig(_daily(np.full(400, 5.0)))
    assert constant["rb_index"] == 0 and constant["bfi"] == pytest.approx(1)
    assert regime(constant).startswith("baseflow-dominated")

    rng = np.random.default_rng(0)
    flow = rng.gamma(2.0, 1.0, 730)
    flow[rng.random(730) < 0.2] = 0.0
    dry = sig(_daily(flow))
    assert 0.15 < dry["zero_flow_share"] < 0.25
    assert "intermittent" in regime(dry) and "flashy" in regime(dry)
    assert "baseflow-dominated" not in regime(dry)

    # A gap is never bridged: the jump from 1 to 100 across it is not a change.
    gap = sig(_daily([1.0, 1.0, np.nan, 100.0, 100.0]))
    assert gap["rb_index"] == 0
    with pytest.raises(ValueError, match="consecutive"):
        sig(_daily([1.0, np.nan, 2.0]))


def test_regime_names_the_season_of_the_peak_month(basins_module):
    dates = pd.date_range("2001-01-01", "2002-12-31", freq="D")
    for month, season in [(1, "winter"), (4, "spring"), (7, "summer"), (10, "autumn")]:
        flow = pd.Series(np.where(dates.month == month, 10.0, 1.0), index=dates)
        signatures = basins_module.flow_signatures(flow)
        assert signatures["peak_month"] == month
        assert basins_module.regime_of(signatures).endswith(f"{season} high flow")


def test_lahn_regime_and_scaled_target(basins_module):
    kalkofen = basins_module.load_basins("lahn_kalkofen")[0]
    assert kalkofen.regime == "winter high flow" and round(kalkofen.years, 2) == 31.17
    row = kalkofen.summary()
    assert {"years", "regime", "source", "BFI", "RB index"} <= set(row)
    scaled = basins_module.Basin("yuliang", kalkofen.X, kalkofen.y, "min-max scaled",
                                 "test", "yuliang")
    assert scaled.signatures is None and scaled.regime.startswith("not stated")


# ---------------------------------------------------------------------------- spotpy
_FULDA = "spotpy/examples/cmf_data/fulda_climate.csv"
_HYMOD = "spotpy/examples/hymod_python/hymod_input.csv"


def _fake_spotpy_wheel(folder, fulda_header="date,tmax,tmin,tmean,Prec,Q"):
    """A wheel named like spotpy 1.6.7's holding two tiny files in its layouts."""
    days = pd.date_range("2001-01-01", periods=4, freq="D").strftime("%d.%m.%Y")
    fulda = "\n".join([fulda_header, "#,°C,°C,°C,mm/day,m³/s",
                       *(f"{d},{i + 2},{i},{i + 1},{i * 0.5},{10 + i}"
                         for i, d in enumerate(days))])
    hymod = "\n".join(["Date;rainfall[mm];TURC [mm d-1];Discharge[ls-1]",
                       *(f"{d};{i};0.5;{'nan' if i == 0 else 3 + i}"
                         for i, d in enumerate(days))])
    wheel = folder / "spotpy-1.6.7-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(_FULDA, fulda)
        archive.writestr(_HYMOD, hymod)
    return wheel


def test_spotpy_basins_read_from_a_wheel_in_a_folder(basins_module, tmp_path):
    _fake_spotpy_wheel(tmp_path)
    fulda, hymod = basins_module.load_basins("spotpy", spotpy_path=tmp_path)
    assert fulda.name == "spotpy_fulda" and fulda.input_names == ["p", "t_min", "t_max",
                                                                   "t_mean"]
    assert fulda.y.tolist() == [10, 11, 12, 13] and fulda.X["t_max"].tolist() == [2, 3, 4, 5]
    assert fulda.dates.freqstr == "D" and fulda.unit == "m3/s"
    assert hymod.input_names == ["p", "pet"] and hymod.unit == "l/s"
    assert np.isnan(hymod.y.iloc[0]) and hymod.y.iloc[1:].tolist() == [4, 5, 6]
    assert "spotpy 1.6.7" in fulda.source and "MIT" in fulda.source


def test_spotpy_missing_or_bad_data_is_named(basins_module, tmp_path):
    with zipfile.ZipFile(tmp_path / "spotpy-1.6.7-py3-none-any.whl", "w") as archive:
        archive.writestr(_FULDA, "date\n")
    with pytest.warns(UserWarning, match="holds no " + _HYMOD):
        assert basins_module.load_basins("spotpy_hymod", spotpy_path=tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning, match="no fulda_climate.csv"):
        assert basins_module.load_basins("spotpy", spotpy_path=empty) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    _fake_spotpy_wheel(bad, fulda_header="date,tmax,tmin,tmean,Prec,flow")
    with pytest.raises(ValueError, match=r"'spotpy_fulda'.*fulda_climate\.csv lacks.*'Q'"):
        basins_module.load_basins("spotpy_fulda", spotpy_path=bad)


def _real_or_skip(basins_module, group):
    """The group's real records, or a skip that says why they are not at hand."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        basins = basins_module.load_basins(group)
    if not basins:
        pytest.skip("; ".join(str(w.message) for w in caught))
    return basins


def test_spotpy_real_records_when_present(basins_module):
    basins = _real_or_skip(basins_module, "spotpy")
    fulda, hymod = basins
    assert len(fulda) == 3653 and str(fulda.dates[0].date()) == "1979-01-01"
    assert str(fulda.dates[-1].date()) == "1988-12-31" and not fulda.y.isna().any()
    # The first day as the file gives it: 1 mm, -12.9 / -20.1 degC, 143 m3/s.
    assert fulda.X.iloc[0].tolist() == [1.0, -20.1, -12.9, -16.5] and fulda.y.iloc[0] == 143
    assert len(hymod) == 1827 and int(hymod.y.isna().sum()) == 366
    assert hymod.y.first_valid_index() == pd.Timestamp("2013-01-01")
    assert fulda.regime == "spring high flow" and hymod.regime == "winter high flow"


_AIRGR_DAILY = "grsuite-1.1.1/tests/data/basin_daily.csv.gz"
_AIRGR_SNOW = "grsuite-1.1.1/tests/data/basin_snow.csv.gz"


def _write_sdist(path, prefix, files):
    """A source distribution (tar.gz) holding ``files`` (name -> bytes) under ``prefix``."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _fake_grsuite_sdist(folder, members=(_AIRGR_DAILY, _AIRGR_SNOW), header="Date,P,E,T,Qmm"):
    """A grsuite 1.1.1 source distribution holding gzip-compressed airGR tables."""
    import gzip

    days = pd.date_range("1984-01-01", periods=4, freq="D").strftime("%Y-%m-%d")
    files = {}
    for k, member in enumerate(members):
        rows = [header, *(f"{d},{i},{0.5 * i},{i - 2},{'NA' if k == 0 and i == 1 else i + k}"
                          for i, d in enumerate(days))]
        files[member] = gzip.compress("\n".join(rows).encode())
    return _write_sdist(folder / "grsuite-1.1.1.tar.gz", "", files)


def test_airgr_basins_read_from_the_grsuite_sdist(basins_module, tmp_path):
    sdist = _fake_grsuite_sdist(tmp_path)
    for path in (tmp_path, sdist):
        daily, snow = basins_module.load_basins("airgr", grsuite_path=path)
        assert daily.name == "airgr_l0123001" and snow.name == "airgr_l0123002"
        assert daily.input_names == ["p", "pet", "t"] and daily.unit == "mm/day"
        assert daily.X["pet"].tolist() == [0, 0.5, 1, 1.5] and daily.X["t"].iloc[0] == -2
        assert np.isnan(daily.y.iloc[1]) and daily.y.drop(daily.dates[1]).tolist() == [0, 2, 3]
        assert snow.y.tolist() == [1, 2, 3, 4] and snow.dates.freqstr == "D"
        assert "grsuite 1.1.1 sdist" in snow.source and "GPL-2" in snow.source


def test_airgr_missing_or_bad_data_is_named(basins_module, tmp_path):
    _fake_grsuite_sdist(tmp_path, members=(_AIRGR_DAILY,))
    with pytest.warns(UserWarning, match="holds no " + _AIRGR_SNOW):
        assert basins_module.load_basins("airgr_l0123002", grsuite_path=tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning,
                      match=r"no basin_daily\.csv\.gz and no grsuite-1\.1\.1\.tar\.gz"):
        assert basins_module.load_basins("airgr_l0123001", grsuite_path=empty) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    _fake_grsuite_sdist(bad, header="Date,P,E,T,Q")
    with pytest.raises(ValueError, match=r"'airgr_l0123001'.*basin_daily\.csv\.gz lacks.*'Qmm'"):
        basins_module.load_basins("airgr_l0123001", grsuite_path=bad)
    # Without a path, the sdist is looked for in the data folder, and the message says how
    # to put it there.
    missing = basins_module.PackagedFile("grsuite", "0.0.0", "grsuite-0.0.0/x.csv", "GPL",
                                         sdist=True)
    with pytest.raises(basins_module.BasinUnavailable,
                       match=r"--no-binary :all: -d benchmarks/data grsuite==0\.0\.0"):
        basins_module._read_packaged(missing, None)
    # A release whose sdist pip saves only with more options gets them in the command.
    picky = basins_module.PackagedFile("grsuite", "0.0.0", "grsuite-0.0.0/x.csv", "GPL",
                                       sdist=True, download_options="--no-build-isolation")
    with pytest.raises(basins_module.BasinUnavailable,
                       match=r"--no-binary :all: --no-build-isolation -d benchmarks/data "
                       r"grsuite==0\.0\.0\), so grsuite-0\.0\.0/x\.csv cannot be read"):
        basins_module._read_packaged(picky, None)
    # pywatershed 3.0.0 requires Python 3.12: pip on an older one needs both options.
    assert basins_module._PYWATERSHED_OBSERVED.download == (
        "pip download --no-deps --no-binary :all: --ignore-requires-python "
        "--no-build-isolation -d benchmarks/data pywatershed==3.0.0")


def test_airgr_real_records_when_present(basins_module):
    basins = _real_or_skip(basins_module, "airgr")
    daily, snow = basins
    for basin in basins:
        assert len(basin) == 10593 and str(basin.dates[0].date()) == "1984-01-01"
        assert str(basin.dates[-1].date()) == "2012-12-31"
    assert int(daily.y.isna().sum()) == 802 and not snow.y.isna().any()
    # The first day as the file gives it.
    assert snow.X.iloc[0].tolist() == pytest.approx([7.09, 0.0, -1.60835])
    assert snow.y.iloc[0] == pytest.approx(0.4042)
    # The snow catchment's discharge peaks after the thaw, the other's in winter.
    assert snow.regime == "spring high flow" and daily.regime == "winter high flow"


_HYDROCNHS = "hydrocnhs-1.2.0/tutorials/Tutorial_3-Sediment_Routing/Data/"


def _fake_hydrocnhs_sdist(folder, outlets=("Sb5_3", "Sb6_2"), forcing_days=4,
                          sub_basins=("Sb5_1", "Sb5_2", "Sb5_3", "Sb6_1")):
    """A hydrocnhs 1.2.0 sdist: four sub-basins, two outlets, four days."""
    days = pd.date_range("1985-01-01", periods=4, freq="D").strftime("%Y-%m-%d")
    forcing_dates = pd.date_range("1985-01-01", periods=forcing_days,
                                  freq="D").strftime("%Y-%m-%d")
    files = {
        "SRB_HU8.csv": "ID,name,area_ha\n" + "".join(
            f"{b},{b},{area}\n"
            for b, area in zip(("Sb5_1", "Sb5_2", "Sb5_3", "Sb6_1"), (100, 300, 600, 1000),
                               strict=True) if b in sub_basins),
        "usgs_Q_D_cms_1985_2021.csv": "\n".join(
            ["date," + ",".join(outlets),
             *(f"{d}," + ",".join(str(10 * k + i) for k in range(len(outlets)))
               for i, d in enumerate(days))]),
    }
    # Each sub-basin's forcing is constant: 1, 2, 3, 4 (in the file's unit) for Sb5_1,
    # Sb5_2, Sb5_3, Sb6_1, in another column order.
    for key in ("prcp_cm", "pet_cm", "tavg_degC"):
        files[f"daymet_srb_hu8_d_{key}_1984_2021.csv"] = "\n".join(
            ["Date,Sb6_1,Sb5_1,Sb5_3,Sb5_2", *(f"{d},4,1,3,2" for d in forcing_dates)])
    return _write_sdist(folder / "hydrocnhs-1.2.0.tar.gz", _HYDROCNHS,
                        {name: text.encode() for name, text in files.items()})


def test_susquehanna_inputs_are_area_weighted_means_in_mm(basins_module, tmp_path):
    _fake_hydrocnhs_sdist(tmp_path)
    marietta, juniata = basins_module.load_basins("susquehanna", hydrocnhs_path=tmp_path)
    assert marietta.name == "susquehanna_marietta" and juniata.name == "susquehanna_juniata"
    # All four sub-basins drain to Marietta, weights 0.05, 0.15, 0.3, 0.5; cm become mm.
    assert marietta.X["p"].tolist() == pytest.approx([10 * (0.05 + 0.3 + 0.9 + 2.0)] * 4)
    assert marietta.X["t"].tolist() == pytest.approx([0.05 + 0.3 + 0.9 + 2.0] * 4)
    # The Juniata: its three sub-basins, weights 0.1, 0.3, 0.6.
    assert juniata.X["pet"].tolist() == pytest.approx([10 * (0.1 + 0.6 + 1.8)] * 4)
    assert juniata.y.tolist() == [0, 1, 2, 3] and marietta.y.tolist() == [10, 11, 12, 13]
    assert juniata.info["area_km2"] == 10.0 and marietta.info["area_km2"] == 20.0
    assert marietta.dates.freqstr == "D"
    assert "hydrocnhs 1.2.0 sdist" in juniata.source


def test_susquehanna_missing_or_bad_data_is_named(basins_module, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning, match="susquehanna basins skipped.*hydrocnhs-1.2.0.tar.gz"):
        assert basins_module.load_basins("susquehanna", hydrocnhs_path=empty) == []
    no_outlet = tmp_path / "no_outlet"
    no_outlet.mkdir()
    _fake_hydrocnhs_sdist(no_outlet, outlets=("Sb6_2",))
    with pytest.raises(ValueError, match="'susquehanna_juniata'.*no outlet 'Sb5_3'"):
        basins_module.load_basins("susquehanna_juniata", hydrocnhs_path=no_outlet)
    short = tmp_path / "short"
    short.mkdir()
    _fake_hydrocnhs_sdist(short, forcing_days=3)
    with pytest.raises(ValueError, match=r"the p file lacks the days \['1985-01-04'\]"):
        basins_module.load_basins("susquehanna_marietta", hydrocnhs_path=short)
    no_area = tmp_path / "no_area"
    no_area.mkdir()
    _fake_hydrocnhs_sdist(no_area, sub_basins=("Sb5_1", "Sb5_3", "Sb6_1"))
    with pytest.raises(ValueError, match=r"SRB_HU8\.csv gives no area of \['Sb5_2'\]"):
        basins_module.load_basins("susquehanna_juniata", hydrocnhs_path=no_area)


def test_susquehanna_real_records_when_present(basins_module):
    basins = _real_or_skip(basins_module, "susquehanna")
    marietta, juniata = basins
    for basin in basins:
        assert len(basin) == 13149 and str(basin.dates[0].date()) == "1985-01-01"
        assert str(basin.dates[-1].date()) == "2020-12-31" and not basin.y.isna().any()
    # The discharge of the first day as the file gives it.
    assert marietta.y.iloc[0] == pytest.approx(2166.2388)
    assert juniata.y.iloc[0] == pytest.approx(125.7268)
    assert len(marietta.info["sub_basins"].split(", ")) == 18
    assert juniata.info["sub_basins"] == "Sb5_1, Sb5_2, Sb5_3"


# ---------------------------------------------------------------------------- cnkit
_CNKIT = "cnkit-1.1.0/tests/data/"


def _fake_cnkit_sdist(folder, precip_column="P_in"):
    """cnkit 1.1.0's layout: a site table, and per gauge rain (in) and discharge (ft3/s);
    the Accotink discharge lacks its third day."""
    days = pd.date_range("1990-01-01", periods=4, freq="D").strftime("%Y-%m-%d")
    sites = ("watershed,name,gage,gage_number,drainage_area_sqmi\n"
             "difficult_run,Difficult Run,USGS-01646000,01646000,57.8\n"
             "accotink_creek,Accotink Creek,USGS-01654000,01654000,23.9\n")
    files = {"sites.csv": sites.encode()}
    for gauge in ("01646000", "01654000"):
        flow_days = [d for i, d in enumerate(days) if gauge == "01646000" or i != 2]
        files[f"precip_{gauge}.csv"] = "\n".join(
            [f"date,{precip_column}", *(f"{d},{i}" for i, d in enumerate(days))]).encode()
        files[f"discharge_{gauge}.csv"] = "\n".join(
            ["date,Q_cfs", *(f"{d},{100 * (i + 1)}" for i, d in enumerate(flow_days))]).encode()
    return _write_sdist(folder / "cnkit-1.1.0.tar.gz", _CNKIT, files)


def test_cnkit_basins_in_metric_units_with_absent_days_as_nan(basins_module, tmp_path):
    _fake_cnkit_sdist(tmp_path)
    accotink, difficult = basins_module.load_basins("cnkit", cnkit_path=tmp_path)
    assert accotink.name == "cnkit_accotink" and difficult.name == "cnkit_difficult_run"
    # Inches to mm, cubic feet to cubic metres, square miles to km2.
    assert accotink.X["p"].tolist() == pytest.approx([0.0, 25.4, 50.8, 76.2])
    assert difficult.y.tolist() == pytest.approx([2.8316847 * k for k in (1, 2, 3, 4)])
    assert difficult.info["area_km2"] == pytest.approx(149.7)
    # The day the discharge file leaves out is NaN and said so, the others keep their day.
    assert accotink.y.iloc[[0, 1, 3]].tolist() == pytest.approx([2.8316847, 5.6633694,
                                                                8.4950540])
    assert np.isnan(accotink.y.iloc[2]) and accotink.notes == (
        "1 days absent from the discharge file are NaN",)
    assert difficult.notes == () and accotink.dates.freqstr == "D"
    assert "cnkit 1.1.0 sdist" in accotink.source and "MIT" in accotink.source


def test_cnkit_missing_or_bad_data_is_named(basins_module, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning, match="cnkit basins skipped.*cnkit-1.1.0.tar.gz"):
        assert basins_module.load_basins("cnkit", cnkit_path=empty) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    _fake_cnkit_sdist(bad, precip_column="rain")
    with pytest.raises(ValueError, match=r"precip_01654000\.csv lacks the columns \['P_in'\]"):
        basins_module.load_basins("cnkit_accotink", cnkit_path=bad)


def test_cnkit_real_records_when_present(basins_module):
    accotink, difficult = _real_or_skip(basins_module, "cnkit")
    for basin in (accotink, difficult):
        assert len(basin) == 13362 and str(basin.dates[0].date()) == "1990-01-01"
        assert "flashy" in basin.regime
    assert int(accotink.y.isna().sum()) == 2 and not difficult.y.isna().any()
    # The first day as the files give it: 0.91 in of rain, 233 ft3/s.
    assert accotink.X["p"].iloc[0] == pytest.approx(23.114)
    assert accotink.y.iloc[0] == pytest.approx(233 * 0.3048 ** 3)


# ---------------------------------------------------------------------------- pywatershed
_DRB = "pywatershed-3.0.0/pywatershed/data/drb_2yr/"


def test_upstream_segments_follow_the_network(basins_module):
    # Segments 1 and 2 drain to 3, 3 to 5, 4 to 5, 5 out of the network.
    to_segment = np.array([3, 3, 5, 5, 0])
    assert basins_module._upstream_segments(to_segment, 3) == {1, 2, 3}
    assert basins_module._upstream_segments(to_segment, 5) == {1, 2, 3, 4, 5}
    assert basins_module._upstream_segments(to_segment, 4) == {4}


def _fake_pywatershed_sdist(folder, forcing_days=3):
    """pywatershed 3.0.0's layout: one gauge (Poquessing's id) on segment 2; segment 1
    drains to 2, segment 3 out. Model units 1, 2, 3 of 10, 30, 60 acres drain to segments
    1, 2, 3: the gauge's catchment is units 1 and 2, weights 0.25 and 0.75."""
    h5netcdf = pytest.importorskip("h5netcdf")  # noqa: F841
    xr = pytest.importorskip("xarray")
    days = pd.date_range("1979-01-01", periods=3, freq="D")
    nhm_id = np.array([7, 8, 9])

    def netcdf(dataset):
        return dataset.to_netcdf(engine="h5netcdf")

    observed = xr.Dataset(
        {"discharge": (("poi_id", "time"), np.array([[100.0, 200.0, 300.0]])),
         "drainage_area": (("poi_id",), np.array([1.0])),
         "poi_name": (("poi_id",), np.array(["Poquessing Creek"]))},
        coords={"poi_id": ["01465798"], "time": days})
    network = xr.Dataset(
        {"poi_gage_id": (("npoigages",), np.array(["01465798"])),
         "poi_gage_segment": (("npoigages",), np.array([2])),
         "tosegment": (("nsegment",), np.array([2, 0, 0])),
         "hru_area": (("nhm_id",), np.array([10.0, 30.0, 60.0]))},
        coords={"nhm_id": nhm_id})
    channel = xr.Dataset({"hru_segment": (("nhm_id",), np.array([1, 2, 3]))},
                         coords={"nhm_id": nhm_id})
    # Every unit's forcing is constant over the days: 1, 2, 3 (in, degF + 32).
    forcing_days = pd.date_range("1979-01-01", periods=forcing_days, freq="D")
    files = {"drb_2yr_gage_poi_obs.nc": netcdf(observed),
             "parameters_dis_both.nc": netcdf(network),
             "parameters_PRMSChannel.nc": netcdf(channel)}
    for variable, offset in (("prcp", 0.0), ("tmin", 32.0), ("tmax", 32.0)):
        values = np.tile(np.array([1.0, 2.0, 3.0]) * (1.8 if offset else 1.0) + offset,
                         (len(forcing_days), 1))
        files[f"{variable}.nc"] = netcdf(xr.Dataset(
            {variable: (("time", "nhm_id"), values)},
            coords={"time": forcing_days, "nhm_id": nhm_id}))
    return _write_sdist(folder / "pywatershed-3.0.0.tar.gz", _DRB, files)


def test_pywatershed_inputs_are_catchment_means_in_metric_units(basins_module, tmp_path):
    _fake_pywatershed_sdist(tmp_path)
    (basin,) = basins_module.load_basins("pywatershed_poquessing", pywatershed_path=tmp_path)
    assert basin.input_names == ["p", "t_min", "t_max"] and basin.info["model_units"] == 2
    # Units 1 and 2 (weights 0.25, 0.75); inches to mm; degF to degC.
    assert basin.X["p"].tolist() == pytest.approx([25.4 * 1.75] * 3)
    assert basin.X["t_min"].tolist() == pytest.approx([1.75] * 3)
    assert basin.y.tolist() == pytest.approx([2.8316847, 5.6633694, 8.4950540])
    assert basin.info["river"] == "Poquessing Creek" and basin.dates.freqstr == "D"
    assert basin.info["area_km2"] == pytest.approx(2.6)


def test_pywatershed_missing_or_bad_data_is_named(basins_module, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    # Without the netCDF reader the skip names it; with it, the missing release.
    readable = all(importlib.util.find_spec(m) for m in ("h5netcdf", "xarray"))
    missing = "pywatershed-3.0.0" if readable else "needs xarray and h5netcdf"
    with pytest.warns(UserWarning, match="pywatershed basins skipped.*" + missing):
        assert basins_module.load_basins("pywatershed", pywatershed_path=empty) == []
    if not readable:
        pytest.skip("the netCDF files cannot be written without h5netcdf and xarray")
    short = tmp_path / "short"
    short.mkdir()
    _fake_pywatershed_sdist(short, forcing_days=2)
    with pytest.raises(ValueError, match=r"'pywatershed_poquessing'.*prcp\.nc is not on the "
                                         r"days"):
        basins_module.load_basins("pywatershed_poquessing", pywatershed_path=short)
    with pytest.raises(ValueError, match="'pywatershed_shellpot'.*has no gauge 01477800"):
        basins_module.load_basins("pywatershed_shellpot", pywatershed_path=tmp_path / "short")


def test_pywatershed_real_records_when_present(basins_module):
    basins = _real_or_skip(basins_module, "pywatershed")
    assert len(basins) == 5
    for basin in basins:
        assert len(basin) == 731 and str(basin.dates[0].date()) == "1979-01-01"
        assert not basin.y.isna().any() and "flashy" in basin.regime
    # Cobbs Creek's three model units, the others' one.
    assert [b.info["model_units"] for b in basins] == [1, 1, 1, 1, 3]
