"""The benchmark basin loader: names, inputs without discharge, splits, optional data."""

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
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
