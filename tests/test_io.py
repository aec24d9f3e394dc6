"""Tests for reading and writing user tables."""

import gzip
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sktlag.datasets import load_lahn
from sktlag.io import (
    LARGEST_VALUE,
    MISSING_CODES,
    TableData,
    TableError,
    atomic_write,
    check_destination,
    means_discharge,
    read_table,
    write_table,
)

EMBEDDED_LAHN = Path(__file__).resolve().parents[1] / "sktlag" / "datasets" / "data" / "lahn.csv.gz"
SUFFIXES = [".csv", ".xlsx", ".csv.gz"]


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def research_frame(n_rows=40, n_stations=3, start="2000-01-01", seed=0):
    """A research-layout table: Year, month, day, the flow, then the stations."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_rows, freq="D")
    frame = pd.DataFrame({"Year": dates.year, "month": dates.month, "day": dates.day})
    frame["Data"] = rng.random(n_rows).round(6)
    for station in range(n_stations):
        frame[f"Station{station + 1}"] = rng.gamma(0.5, 4.0, n_rows).round(1)
    return frame


def tidy_frame(n_rows=30, start="1999-12-20", seed=1):
    """A tidy table: a date column, the flow, then rain and temperature."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Date": pd.date_range(start, periods=n_rows, freq="D"),
            "flow": rng.lognormal(2.0, 1.0, n_rows).round(3),
            "rain": rng.gamma(0.5, 4.0, n_rows).round(1),
            "temp": rng.normal(8.0, 7.0, n_rows).round(2),
        }
    )


def write(frame, path, **kwargs):
    """Write ``frame`` without index in the format given by the file name."""
    path = Path(path)
    if path.name.endswith(".xlsx"):
        frame.to_excel(path, index=False, **kwargs)
    elif path.name.endswith(".csv.gz"):
        frame.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    else:
        frame.to_csv(path, index=False)
    return path


def message(excinfo):
    return str(excinfo.value)


# ----------------------------------------------------------------------------
# Reading valid tables
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_research_layout_values_match(tmp_path, suffix):
    frame = research_frame()
    path = write(frame, tmp_path / f"basin{suffix}")
    table = read_table(path)

    assert isinstance(table, TableData)
    assert table.layout == "research"
    assert table.target_names == ("Data",)
    assert table.feature_names == ("Station1", "Station2", "Station3")
    assert isinstance(table.y, pd.Series)
    assert table.y.name == "Data"
    expected_index = pd.date_range("2000-01-01", periods=40, freq="D", name="date")
    pd.testing.assert_index_equal(table.X.index, expected_index, exact=False)
    assert table.X.index.freq == "D"
    assert table.X.index.name == "date"
    assert table.y.index.equals(table.X.index)
    assert table.dates.equals(table.X.index)
    np.testing.assert_array_equal(table.X.to_numpy(), frame.iloc[:, 4:].to_numpy())
    np.testing.assert_array_equal(table.y.to_numpy(), frame["Data"].to_numpy())
    assert (table.X.dtypes == "float64").all()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_tidy_layout_values_match(tmp_path, suffix):
    frame = tidy_frame()
    path = write(frame, tmp_path / f"basin{suffix}")
    table = read_table(path)

    assert table.layout == "tidy"
    assert table.target_names == ("flow",)
    assert table.feature_names == ("rain", "temp")
    assert list(table.X.index) == list(frame["Date"])
    assert table.X.index.freq == "D"
    np.testing.assert_array_equal(table.X.to_numpy(), frame[["rain", "temp"]].to_numpy())
    np.testing.assert_array_equal(table.y.to_numpy(), frame["flow"].to_numpy())


def test_research_case_insensitive_and_explicit_layout(tmp_path):
    frame = research_frame().rename(columns={"Year": "YEAR", "month": "Month", "day": "DAY"})
    path = write(frame, tmp_path / "basin.csv")
    assert read_table(path, layout="research").layout == "research"
    assert read_table(path).layout == "research"


def test_research_target_and_features_chosen(tmp_path):
    path = write(research_frame(), tmp_path / "basin.xlsx")
    table = read_table(path, target="Station2", features=["Station3", "Data"])
    assert table.target_names == ("Station2",)
    assert table.feature_names == ("Station3", "Data")
    assert list(table.X.columns) == ["Station3", "Data"]


def test_research_target_only_uses_other_columns_as_features(tmp_path):
    path = write(research_frame(), tmp_path / "basin.csv")
    table = read_table(path, target="Station1")
    assert table.feature_names == ("Data", "Station2", "Station3")


def test_multi_target_gives_frame(tmp_path):
    path = write(tidy_frame(), tmp_path / "basin.csv")
    table = read_table(path, target=["flow", "temp"])
    assert isinstance(table.y, pd.DataFrame)
    assert list(table.y.columns) == ["flow", "temp"]
    assert table.feature_names == ("rain",)
    single = read_table(path, target=["flow"])
    assert isinstance(single.y, pd.DataFrame)


def test_tidy_date_column_anywhere_and_named(tmp_path):
    frame = tidy_frame()[["flow", "rain", "Date", "temp"]].rename(columns={"Date": "TIME"})
    path = write(frame, tmp_path / "basin.csv")
    table = read_table(path)
    assert table.target_names == ("flow",)
    assert table.feature_names == ("rain", "temp")

    renamed = write(frame.rename(columns={"TIME": "observed_on"}), tmp_path / "other.xlsx")
    table = read_table(renamed, date_column="observed_on")
    assert table.layout == "tidy"
    assert table.X.index[0] == pd.Timestamp("1999-12-20")


def test_tidy_accepts_iso_text_with_midnight_time(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,q,p\n2000-01-01 00:00:00,1,2\n2000-01-02T00:00,3,4\n")
    table = read_table(path)
    assert list(table.X.index) == [pd.Timestamp("2000-01-01"), pd.Timestamp("2000-01-02")]


def test_numbers_stored_as_text_in_a_workbook_are_read(tmp_path):
    frame = tidy_frame(n_rows=3).astype({"rain": object})
    frame["rain"] = [" 1.5", "2", "-3e-2"]
    table = read_table(write(frame, tmp_path / "basin.xlsx"))
    assert table.X["rain"].tolist() == [1.5, 2.0, -0.03]


def test_booleans_and_error_cells_of_a_workbook_are_not_numbers(tmp_path):
    import openpyxl

    # A FALSE cell in a column of zeros was read as 0, and an error cell such as
    # #DIV/0! as an empty cell (a missing observation where those are allowed).
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["date", "q", "rain"])
    for day, q, rain in [(1, 1.0, 0.0), (2, 2.0, False), (3, 3.0, 0.0)]:
        sheet.append([f"2000-01-0{day}", q, rain])
    book.save(tmp_path / "flag.xlsx")
    with pytest.raises(TableError, match=r"column 'rain'.*row 3.*\(False\)"):
        read_table(tmp_path / "flag.xlsx")
    sheet["C3"] = 0.0
    sheet["B4"] = "#DIV/0!"  # written as text; the next cell is a real error cell
    sheet["B4"].data_type = "e"
    book.save(tmp_path / "error.xlsx")
    for allow in (False, True):
        with pytest.raises(TableError, match=r"column 'q'.*row 4.*#DIV/0!"):
            read_table(tmp_path / "error.xlsx", allow_missing_target=allow)
    # Excel's #N/A is its own way of writing a missing value.
    sheet["B4"] = "#N/A"
    sheet["B4"].data_type = "e"
    book.save(tmp_path / "missing.xlsx")
    table = read_table(tmp_path / "missing.xlsx", allow_missing_target=True)
    assert np.isnan(table.y.iloc[2]) and table.y.iloc[0] == 1.0


def test_a_workbook_whose_stored_size_is_wrong_is_read_whole(tmp_path):
    import zipfile

    # Some writers store a sheet's size as "A1"; a reader that trusts it sees the
    # header alone.
    path = write(tidy_frame(n_rows=10), tmp_path / "basin.xlsx")
    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', parts[sheet])
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
    assert len(read_table(path).X) == 10


def test_blank_lines_and_empty_columns_at_the_margins_are_ignored(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,q,p,\n2000-01-01,1,2,\n2000-01-02,3,4,\n\n\n")
    table = read_table(path)
    assert table.X.shape == (2, 1)


def test_sheet_by_name_and_position(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        research_frame(seed=1).to_excel(writer, sheet_name="first", index=False)
        tidy_frame().to_excel(writer, sheet_name="second", index=False)
    assert read_table(path).layout == "research"
    assert read_table(path, sheet_name="second").layout == "tidy"
    assert read_table(path, sheet_name=1).layout == "tidy"
    assert read_table(path, sheet_name="1").layout == "tidy"  # as typed on a command line


def test_a_sheet_named_by_digits_is_found_by_name(tmp_path):
    path = tmp_path / "years.xlsx"
    with pd.ExcelWriter(path) as writer:
        research_frame(seed=1).to_excel(writer, sheet_name="2019", index=False)
        tidy_frame().to_excel(writer, sheet_name="2020", index=False)
    assert read_table(path, sheet_name="2020").layout == "tidy"
    assert read_table(path, sheet_name="0").layout == "research"


def test_table_data_is_frozen(tmp_path):
    table = read_table(write(tidy_frame(), tmp_path / "basin.csv"))
    with pytest.raises(AttributeError):
        table.layout = "research"


def test_allow_gaps_keeps_gaps(tmp_path):
    frame = tidy_frame().drop(index=[5, 6, 20])
    path = write(frame, tmp_path / "basin.csv")
    table = read_table(path, allow_gaps=True)
    assert len(table.X) == len(frame)
    assert table.X.index.freq is None
    assert list(table.X.index) == list(frame["Date"])


def test_allow_missing_target_keeps_nan(tmp_path):
    frame = tidy_frame()
    frame.loc[[3, 7], "flow"] = np.nan
    path = write(frame, tmp_path / "basin.xlsx")
    table = read_table(path, allow_missing_target=True)
    assert table.y.isna().sum() == 2
    assert np.isnan(table.y.iloc[3])
    np.testing.assert_array_equal(table.y.to_numpy(), frame["flow"].to_numpy())


def test_unused_columns_are_not_checked(tmp_path):
    frame = tidy_frame()
    frame["note"] = "text"
    path = write(frame, tmp_path / "basin.csv")
    table = read_table(path, features=["rain", "temp"])
    assert table.feature_names == ("rain", "temp")


def test_lahn_data_in_a_research_workbook(tmp_path):
    # Real daily series (three years with a leap day) from the data shipped with the
    # package, in the research layout its original workbook has.
    frame = load_lahn(as_frame=True).frame.loc["1991-01-01":"1993-12-31"]
    stations = [c for c in frame.columns if c.startswith(("p_", "t_"))]
    workbook = pd.DataFrame({"Year": frame.index.year, "month": frame.index.month,
                             "day": frame.index.day})
    workbook["q_kalkofen"] = frame["q_kalkofen"].to_numpy()
    workbook[stations] = frame[stations].to_numpy()
    table = read_table(write(workbook, tmp_path / "lahn.xlsx"))
    assert table.layout == "research"
    assert table.target_names == ("q_kalkofen",)
    assert table.feature_names == tuple(stations)
    assert table.X.shape == (1096, 8) and table.y.shape == (1096,)
    assert table.X.index.equals(frame.index) and table.X.index.freq == "D"
    assert pd.Timestamp("1992-02-29") in table.X.index
    np.testing.assert_array_equal(table.y.to_numpy(), frame["q_kalkofen"].to_numpy())
    np.testing.assert_array_equal(table.X.to_numpy(), frame[stations].to_numpy())


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def old_style_workbook(path: Path) -> Path:
    """A file that pandas recognises as an old-style (.xls, OLE2) workbook."""
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    return path


def without_xls_readers(monkeypatch):
    # None in sys.modules makes an import fail, whatever is installed.
    for module in ("xlrd", "python_calamine"):
        monkeypatch.setitem(sys.modules, module, None)


def test_xls_without_xlrd_names_the_extra(tmp_path, monkeypatch):
    without_xls_readers(monkeypatch)
    path = old_style_workbook(tmp_path / "old.xls")
    with pytest.raises(ImportError, match=r"old\.xls.*xlrd.*pip install sktlag\[xls\]"):
        read_table(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.xlsx"
    with pytest.raises(FileNotFoundError) as excinfo:
        read_table(path)
    assert str(path) in message(excinfo)


@pytest.mark.parametrize("name", ["basin.txt", "basin.json", "basin.xlsx.bak", "basin"])
def test_unsupported_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("date,q,p\n2000-01-01,1,2\n")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert name in message(excinfo)
    assert "unsupported file type" in message(excinfo)
    assert ".xlsx" in message(excinfo) and ".csv" in message(excinfo)


def test_directory_is_not_a_table(tmp_path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(TableError, match="not a file"):
        read_table(folder)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "empty.csv" in message(excinfo)
    assert "empty" in message(excinfo)


def test_empty_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        research_frame().to_excel(writer, sheet_name="data", index=False)
        pd.DataFrame().to_excel(writer, sheet_name="blank", index=False)
    with pytest.raises(TableError) as excinfo:
        read_table(path, sheet_name="blank")
    assert "book.xlsx" in message(excinfo)
    assert "sheet 'blank'" in message(excinfo)
    assert "is empty" in message(excinfo)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_header_without_rows(tmp_path, suffix):
    path = write(tidy_frame().iloc[:0], tmp_path / f"basin{suffix}")
    with pytest.raises(TableError, match="no data rows"):
        read_table(path)


def test_unknown_sheet_lists_sheets(tmp_path):
    path = write(tidy_frame(), tmp_path / "book.xlsx", sheet_name="flows")
    for sheet in ["rain", 3]:
        with pytest.raises(TableError) as excinfo:
            read_table(path, sheet_name=sheet)
        assert "book.xlsx" in message(excinfo)
        assert "flows" in message(excinfo)


def test_not_a_workbook(tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text("date,q\n2000-01-01,1\n")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "fake.xlsx" in message(excinfo)
    assert "Excel workbook" in message(excinfo)


def test_not_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("date,débit\n2000-01-01,1\n".encode("latin-1"))
    with pytest.raises(TableError, match="UTF-8"):
        read_table(path)


@pytest.mark.parametrize("text", [
    "Datum;Niederschlag;Abfluss\n01.01.2000;1,5;2,3\n02.01.2000;0,0;2,1\n",
    "date;p;q\n2000-01-01;1;2\n",
    "date\tp\tq\n2000-01-01\t1\t2\n",
])
def test_a_csv_file_with_another_separator_is_named_as_such(tmp_path, text):
    # Spreadsheets in many locales save CSV files with semicolons (and decimal commas):
    # the header then reads as one cell, and the message must say why.
    path = tmp_path / "local.csv"
    path.write_text(text)
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    separator = ";" if ";" in text else "\\t"
    assert "local.csv" in message(excinfo)
    assert f"the header row (row 1) has {separator} in it" in message(excinfo)
    assert "comma-separated" in message(excinfo)


def test_row_longer_than_header(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("date,q,p\n2000-01-01,1,2\n2000-01-02,1,2,3\n")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "ragged.csv" in message(excinfo)
    assert "column 4 (D) has no name in the header row (row 1); it holds values in row 3" \
        in message(excinfo)


def test_row_shorter_than_header_has_empty_cells(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("date,q,p\n2000-01-01,1,2\n2000-01-02,1\n")
    with pytest.raises(TableError, match=r"empty cells: column 'p' \(column 3, C\) in row 3"):
        read_table(path)


@pytest.mark.parametrize("token", ["NA", "nan", "#N/A", " "])
def test_missing_value_texts(tmp_path, token):
    path = tmp_path / "basin.csv"
    path.write_text(f"date,q,p\n2000-01-01,{token},2\n2000-01-02,1,2\n")
    table = read_table(path, allow_missing_target=True)
    assert np.isnan(table.y.iloc[0])


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_bytes("date,q,p\n2000-01-01,1,2\n".encode("utf-8-sig"))
    assert read_table(path).target_names == ("q",)


def test_broken_gzip(tmp_path):
    path = tmp_path / "basin.csv.gz"
    path.write_bytes(gzip.compress(b"date,q,p\n2000-01-01,1,2\n")[:-12])
    with pytest.raises(TableError, match="basin.csv.gz"):
        read_table(path)


def test_header_cell_without_name(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,,p\n2000-01-01,1,2\n")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "column 2 (B)" in message(excinfo)
    assert "row 1" in message(excinfo)


def test_header_not_in_first_row(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("\ndate,q,p\n2000-01-01,1,2\n")
    with pytest.raises(TableError, match=r"header row \(row 1\) is empty"):
        read_table(path)


def test_empty_column_inside_the_table_keeps_positions(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,,q,p\n2000-01-01,,1,x\n")
    with pytest.raises(TableError, match=r"column 2 \(B\) has no name"):
        read_table(path)
    path.write_text("date,gap,q,p\n2000-01-01,,1,x\n2000-01-02,,1,2\n")
    with pytest.raises(TableError, match=r"'p' \(column 4, D\): row 2 \('x'\)"):
        read_table(path, features=["p"])


def test_repeated_column_names(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,q,p,p\n2000-01-01,1,2,3\n")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "'p' in columns [3, 4]" in message(excinfo)


def test_invalid_tidy_dates_name_rows(tmp_path):
    frame = tidy_frame(n_rows=6).astype({"Date": object})
    frame.loc[2, "Date"] = "2000-02-30"
    frame.loc[4, "Date"] = "31/12/1999"
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "basin.csv" in text
    assert "invalid dates" in text
    assert "column 'Date'" in text
    # data row i (counted from 0) is spreadsheet row i + 2
    assert "row 4 ('2000-02-30')" in text
    assert "row 6 ('31/12/1999')" in text
    assert "YYYY-MM-DD" in text


def test_dates_with_time_of_day_are_invalid(tmp_path):
    frame = tidy_frame(n_rows=4)
    frame.loc[1, "Date"] = pd.Timestamp("1999-12-21 12:00")
    path = write(frame, tmp_path / "basin.xlsx")
    with pytest.raises(TableError, match=r"invalid dates.*row 3"):
        read_table(path)


def test_dates_beyond_the_years_pandas_holds_name_rows(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,q,p\n2000-01-01,1,2\n2920-01-02,1,2\n")  # a typo for 2000
    with pytest.raises(TableError, match=r"invalid dates.*row 3 \('2920-01-02'\).*1678"):
        read_table(path)
    research = tmp_path / "research.csv"
    research.write_text("year,month,day,q,p\n1600,1,1,1,2\n1600,1,2,1,2\n")
    with pytest.raises(TableError, match=r"invalid dates.*row 2 \('1600', '1', '1'\)"):
        read_table(research)


def test_invalid_research_dates_name_rows(tmp_path):
    frame = research_frame(n_rows=10).astype({"month": object})
    frame.loc[3, "month"] = 13
    frame.loc[5, "month"] = "May"
    path = write(frame, tmp_path / "basin.xlsx")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "sheet 'Sheet1'" in text
    assert "row 5 (2000, 13, 4)" in text
    assert "row 7 (2000, 'May', 6)" in text
    assert "calendar day" in text


def test_blank_row_between_data_rows(tmp_path):
    path = tmp_path / "basin.csv"
    path.write_text("date,q,p\n2000-01-01,1,2\n\n2000-01-02,1,2\n")
    with pytest.raises(TableError, match=r"row 3 \(empty\)"):
        read_table(path)


def test_duplicate_dates(tmp_path):
    frame = tidy_frame(n_rows=10)
    frame.loc[4, "Date"] = frame.loc[3, "Date"]
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "repeated dates" in text
    assert "1999-12-23 in rows 5, 6" in text


def test_duplicate_dates_listed_briefly(tmp_path):
    frame = pd.concat([tidy_frame(n_rows=10)] * 2, ignore_index=True)
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "(10 in total)" in message(excinfo)
    assert "1999-12-20 in rows 2, 12" in message(excinfo)


def test_unsorted_dates(tmp_path):
    frame = research_frame(n_rows=10)
    frame.iloc[[6, 7]] = frame.iloc[[7, 6]].to_numpy()
    path = write(frame, tmp_path / "basin.xlsx")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "not in increasing order" in text
    assert "row 9 (2000-01-07) after row 8 (2000-01-08)" in text


def test_gaps(tmp_path):
    frame = tidy_frame(n_rows=40).drop(index=[10, 11, 12, 30])
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "4 day(s) missing" in text
    assert "1999-12-30, 1999-12-31, 2000-01-01, 2000-01-19" in text
    assert "allow_gaps=True" in text


def test_missing_feature_cells(tmp_path):
    frame = tidy_frame()
    frame.loc[[0, 8], "temp"] = np.nan
    path = write(frame, tmp_path / "basin.xlsx")
    for allow in [False, True]:
        with pytest.raises(TableError) as excinfo:
            read_table(path, allow_missing_target=allow)
        text = message(excinfo)
        assert "empty cells" in text
        assert "'temp' (column 4, D) in rows 2, 10" in text
        assert "allow_missing_target" not in text


def test_missing_target_cells(tmp_path):
    frame = research_frame()
    frame.loc[list(range(10, 17)), "Data"] = np.nan
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "'Data' (column 4, D) in rows 12, 13, 14, 15, 16, ... (7 in total)" in text
    assert "allow_missing_target=True" in text


def test_target_without_any_value(tmp_path):
    frame = tidy_frame()
    frame["flow"] = np.nan
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError, match="hold no values"):
        read_table(path, allow_missing_target=True)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_text_in_numeric_columns(tmp_path, suffix):
    frame = tidy_frame().astype({"rain": object, "flow": object})
    frame.loc[2, "rain"] = "n.a."
    frame.loc[5, "rain"] = "1,5"
    frame.loc[9, "flow"] = "high"
    path = write(frame, tmp_path / f"basin{suffix}")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "not numbers" in text
    assert "'rain' (column 3, C): row 4 ('n.a.'), row 7 ('1,5')" in text
    assert "'flow' (column 2, B): row 11 ('high')" in text


def test_digits_of_other_scripts_are_not_plain_decimal_numbers(tmp_path):
    frame = tidy_frame(n_rows=4).astype({"rain": object})
    frame.loc[1, "rain"] = "\uff11\uff12"  # full-width 12
    frame.loc[2, "rain"] = "\u0661\u0662"  # Arabic-Indic 12
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError, match=r"not numbers.*row 3 .*row 4 "):
        read_table(path)


def test_a_file_without_permission_to_read_is_a_table_error(tmp_path, monkeypatch):
    import sktlag.io as io_module

    path = write(tidy_frame(n_rows=3), tmp_path / "basin.csv")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io_module, "open", refuse, raising=False)
    with pytest.raises(TableError, match="basin.csv': cannot be read: Permission denied"):
        read_table(path)


def test_booleans_are_not_numbers(tmp_path):
    frame = tidy_frame(n_rows=3).astype({"rain": object})
    frame.loc[1, "rain"] = True
    path = write(frame, tmp_path / "basin.xlsx")
    with pytest.raises(TableError, match=r"row 3 \(True\)"):
        read_table(path)


@pytest.mark.parametrize(
    ("kwargs", "unknown"),
    [({"target": "discharge"}, "discharge"), ({"features": ["rain", "wind"]}, "wind")],
)
def test_unknown_columns_list_available(tmp_path, kwargs, unknown):
    path = write(tidy_frame(), tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path, **kwargs)
    text = message(excinfo)
    assert "basin.csv" in text
    assert f"['{unknown}']" in text
    assert "['flow', 'rain', 'temp']" in text


def test_unknown_date_column(tmp_path):
    path = write(tidy_frame(), tmp_path / "basin.csv")
    with pytest.raises(TableError, match=r"no date column\(s\) \['when'\]"):
        read_table(path, date_column="when")


def test_no_date_column(tmp_path):
    frame = tidy_frame().rename(columns={"Date": "day_of_year"})
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "no date column" in message(excinfo)
    assert "date_column" in message(excinfo)
    assert "day_of_year" in message(excinfo)


def test_several_date_columns(tmp_path):
    frame = tidy_frame()
    frame["time"] = frame["Date"]
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError, match="several possible date columns"):
        read_table(path)
    assert read_table(path, date_column="Date", features=["rain"]).feature_names == ("rain",)


def test_research_layout_needs_date_parts(tmp_path):
    path = write(tidy_frame(), tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path, layout="research")
    assert "year, month, day" in message(excinfo)
    assert "['Date', 'flow', 'rain']" in message(excinfo)


def test_no_feature_columns(tmp_path):
    path = write(research_frame(n_stations=0), tmp_path / "basin.xlsx")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "no feature columns" in message(excinfo)
    assert "['Data']" in message(excinfo)


def test_dates_only(tmp_path):
    path = write(tidy_frame()[["Date"]], tmp_path / "basin.csv")
    with pytest.raises(TableError, match="no columns besides the dates"):
        read_table(path)


def test_no_numeric_feature_columns(tmp_path):
    frame = tidy_frame()
    frame["rain"] = "dry"
    frame["temp"] = "mild"
    path = write(frame, tmp_path / "basin.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "no numeric feature columns" in text
    assert "'rain' (column 3, C)" in text and "'temp' (column 4, D)" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layout": "wide"},
        {"target": "flow", "features": ["flow", "rain"]},
        {"target": []},
        {"features": ["rain", "rain"]},
        {"layout": "research", "date_column": "Date"},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    path = write(tidy_frame(), tmp_path / "basin.csv")
    with pytest.raises(ValueError):
        read_table(path, **kwargs)


# ----------------------------------------------------------------------------
# Which column is the target
# ----------------------------------------------------------------------------


def named_table(path, names, n_rows=6):
    """A tidy CSV with a Date column and one column of numbers per name."""
    frame = pd.DataFrame({"Date": pd.date_range("2000-01-01", periods=n_rows, freq="D")})
    for k, name in enumerate(names):
        frame[name] = np.arange(n_rows) + 10.0 * k
    return write(frame, path)


def test_tidy_target_is_the_column_named_discharge_not_the_first(tmp_path):
    # Evaporation, precipitation, discharge: the discharge is the last column.
    path = named_table(tmp_path / "basin.csv", ["E0", "P", "Qo"])
    table = read_table(path)
    assert table.target_names == ("Qo",)
    assert table.feature_names == ("E0", "P")
    assert table.target_rule == "name"
    np.testing.assert_array_equal(table.y.to_numpy(), np.arange(6) + 20.0)


DISCHARGE_NAMES = [
    "q", "Q", "Qo", "qobs", "Q_obs", "QOBS", "Q [m3/s]", "Qobs(mm/d)", "q_kalkofen",
    "discharge", "Discharge_m3s", "flow_cms", "Flow (cfs)", "streamflow", "RUNOFF_mm",
    "obs flow", "q-obs",
]
NOT_DISCHARGE_NAMES = [
    "P", "E0", "temp", "quality", "frequency", "precip", "qualifier", "Qsim", "q_sim",
    "Flow (simulated)", "discharge_forecast", "q_flag", "Q_qc", "baseflow", "overflow",
    "squall", "eq", "q2", "qa", "Tmax", "PET",
]


@pytest.mark.parametrize("name", DISCHARGE_NAMES)
def test_names_that_mean_discharge(tmp_path, name):
    assert means_discharge(name)
    table = read_table(named_table(tmp_path / "basin.csv", ["P", name, "temp"]))
    assert table.target_names == (name,)
    assert table.feature_names == ("P", "temp")


@pytest.mark.parametrize("name", NOT_DISCHARGE_NAMES)
def test_names_that_do_not_mean_discharge(name):
    assert not means_discharge(name)


def test_no_name_means_discharge(tmp_path):
    path = named_table(tmp_path / "basin.csv", ["E0", "P", "quality", "frequency"])
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "\n" not in text
    assert "basin.csv" in text and "no column name means discharge" in text
    assert "['E0', 'P', 'quality', 'frequency']" in text
    assert "target=" in text and "--target" in text


def test_several_names_mean_discharge(tmp_path):
    path = named_table(tmp_path / "basin.csv", ["q_up", "P", "Q_out", "discharge_sim"])
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert "\n" not in text
    assert "several column names mean discharge: 'q_up', 'Q_out';" in text
    assert "target=" in text and "--target" in text
    # Naming the target, or listing the other one as a feature, settles it.
    assert read_table(path, target="Q_out").feature_names == ("q_up", "P", "discharge_sim")
    table = read_table(path, features=["q_up", "P"])
    assert table.target_names == ("Q_out",) and table.target_rule == "name"


def test_explicit_target_is_taken_as_given(tmp_path):
    path = named_table(tmp_path / "basin.csv", ["E0", "P", "Qo"])
    table = read_table(path, target="P")
    assert table.target_names == ("P",) and table.target_rule == "argument"
    assert table.feature_names == ("E0", "Qo")


def test_research_layout_keeps_the_positional_target(tmp_path):
    # The column after year, month, day is the target where no name says otherwise.
    frame = research_frame().rename(columns={"Data": "Q_m3s", "Station2": "q_upstream"})
    table = read_table(write(frame, tmp_path / "basin.csv"))
    assert table.layout == "research" and table.target_rule == "position"
    assert table.target_names == ("Q_m3s",)
    assert table.feature_names == ("Station1", "q_upstream", "Station3")


def test_research_inputs_only_table_when_the_target_is_not_required(tmp_path):
    # Future days in the research layout: year, month, day, then the stations only.
    frame = research_frame().drop(columns="Data")
    path = write(frame, tmp_path / "future.csv")
    stations = ["Station1", "Station2", "Station3"]
    table = read_table(path, features=stations, require_target=False)
    assert table.y is None and table.target_rule == "none"
    assert table.feature_names == tuple(stations)
    # With the flow in its place it is still the target.
    observed = write(research_frame(), tmp_path / "observed.csv")
    table = read_table(observed, features=stations, require_target=False)
    assert table.target_names == ("Data",) and table.target_rule == "position"


def test_inputs_only_table_when_the_target_is_not_required(tmp_path):
    path = named_table(tmp_path / "future.csv", ["E0", "P"])
    with pytest.raises(TableError, match="no column name means discharge"):
        read_table(path)
    for kwargs in [{}, {"target": "Qo"}, {"target": ["Qo", "Q2"]}]:
        table = read_table(path, require_target=False, **kwargs)
        assert table.y is None and table.target_names == () and table.target_rule == "none"
        assert table.feature_names == ("E0", "P")
    # Present targets are read as usual; of a list, those the table holds.
    observed = named_table(tmp_path / "observed.csv", ["E0", "P", "Qo"])
    table = read_table(observed, target="Qo", require_target=False)
    assert table.target_names == ("Qo",) and table.y.name == "Qo"
    assert read_table(observed, require_target=False).target_rule == "name"
    table = read_table(observed, target=["Q2", "Qo"], require_target=False)
    assert table.target_names == ("Qo",) and list(table.y.columns) == ["Qo"]
    assert table.target_rule == "argument"
    with pytest.raises(TableError, match=r"no target column\(s\) \['Q2'\]"):
        read_table(observed, target=["Qo", "Q2"])
    several = named_table(tmp_path / "several.csv", ["q_a", "q_b", "P"])
    with pytest.raises(TableError, match="several column names"):
        read_table(several, require_target=False)
    # A target column left empty for the future days.
    frame = pd.read_csv(observed)
    frame["Qo"] = np.nan
    template = write(frame, tmp_path / "template.csv")
    with pytest.raises(TableError, match=r"\['Qo'\] hold no values"):
        read_table(template, allow_missing_target=True)
    with pytest.raises(TableError, match="empty cells: column 'Qo'"):
        read_table(template, require_target=False)
    table = read_table(template, require_target=False, allow_missing_target=True)
    assert table.target_names == ("Qo",) and table.y.isna().all()


def test_lahn_csv_has_four_gauges_and_needs_a_target():
    path = EMBEDDED_LAHN
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    assert "'q_kalkofen', 'q_marburg', 'q_leun', 'q_dillenburg'" in message(excinfo)
    X, y = load_lahn(return_X_y=True, as_frame=True, features=["p_leun", "t_leun"])
    table = read_table(path, target="q_kalkofen", features=["p_leun", "t_leun"])
    pd.testing.assert_frame_equal(table.X, X)
    pd.testing.assert_series_equal(table.y, y)


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


def test_the_longest_file_name_a_folder_takes_can_be_written(tmp_path):
    # 255 bytes is the usual limit of a name; the temporary file beside it needs a
    # name of its own that fits too (it took the whole name plus 18 characters).
    long_name = "é" * 123 + ".csv"  # 250 bytes in UTF-8
    table = read_table(write(tidy_frame(), tmp_path / "input.csv"))
    path = write_table(table.y.to_frame(), tmp_path / long_name)
    assert path.exists() and leftovers(tmp_path) == []
    from sktlag import TLAGRegressor
    from sktlag.report import write_artifacts

    model = TLAGRegressor(max_epochs=1, lookback=3, hidden_size=2, max_layers=1,
                          batch_size=8).fit(table.X, table.y)
    out = tmp_path / ("d" * 250)
    assert write_artifacts(model, out)["model"].exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".CSV"])
def test_write_table_round_trip(tmp_path, suffix):
    table = read_table(write(tidy_frame(), tmp_path / "input.csv"))
    predictions = table.y.rename("prediction").to_frame()
    predictions["observed"] = table.y
    path = write_table(predictions, tmp_path / f"predictions{suffix}")
    assert path.exists()
    assert leftovers(tmp_path) == []
    if suffix == ".CSV":
        path = path.rename(tmp_path / "predictions.csv")
    back = read_table(path, target="observed")
    pd.testing.assert_series_equal(back.y, table.y.rename("observed"), check_freq=False)
    np.testing.assert_array_equal(back.X["prediction"].to_numpy(), table.y.to_numpy())


def test_write_table_series(tmp_path):
    series = pd.Series(
        [1.5, 2.5], index=pd.date_range("2000-01-01", periods=2, name="date"), name="q"
    )
    path = write_table(series, tmp_path / "q.csv")
    assert path.read_text() == "date,q\n2000-01-01,1.5\n2000-01-02,2.5\n"


def test_write_table_rejects_other_types(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        write_table(tidy_frame(), tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_write_table_failure_keeps_old_file(tmp_path):
    path = tmp_path / "out.xlsx"
    path.write_bytes(b"old")
    zoned = pd.DataFrame(
        {"q": [1.0]}, index=pd.DatetimeIndex(["2000-01-01"], tz="UTC", name="date")
    )
    with pytest.raises(ValueError):
        write_table(zoned, path)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_atomic_write_text(tmp_path):
    path = tmp_path / "scores.json"
    with atomic_write(path) as handle:
        handle.write('{"nse": 0.9}')
        assert not path.exists()
    assert path.read_text() == '{"nse": 0.9}'
    assert leftovers(tmp_path) == []


def test_atomic_write_binary_replaces(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old")
    with atomic_write(path, "wb", fsync=True) as handle:
        handle.write(b"\x89PNG new")
    assert path.read_bytes() == b"\x89PNG new"
    assert leftovers(tmp_path) == []


def test_atomic_write_error_leaves_nothing(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path) as handle:
        handle.write("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_error_keeps_old_content(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(KeyError), atomic_write(path, "wb") as handle:
        handle.write(b"new")
        raise KeyError("x")
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_write_default_permissions(tmp_path):
    reference = tmp_path / "reference.txt"
    reference.write_text("x")
    path = tmp_path / "written.txt"
    with atomic_write(path) as handle:
        handle.write("x")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


def test_atomic_write_names_the_file_asked_for_not_its_temporary_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write '.*nodir/x.pth': the folder"):
        with atomic_write(tmp_path / "nodir" / "x.pth", "wb"):
            raise AssertionError("opened")
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot write '.*run': it is a folder"):
        with atomic_write(folder):
            raise AssertionError("opened")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert list(folder.iterdir()) == []


def test_atomic_write_arguments(tmp_path):
    with pytest.raises(ValueError), atomic_write(tmp_path / "a.txt", "a"):
        pass
    with pytest.raises(ValueError), atomic_write(tmp_path / "a.bin", "wb", encoding="utf-8"):
        pass
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "missing" / "a.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------

FAULTS = ["missing", "text", "duplicate", "unsorted", "gap", "bad_date", "no_rows", "empty"]
TEXTS = ["abc", "1,5", "n.a.", "--", "#DIV/0!", "x1"]
# Workbooks written by openpyxl keep 16 significant digits, so generated values
# carry at most 15 (the precision of a spreadsheet cell).
# Missing-value codes and numbers beyond float32 are faults of their own (tests above).
values = st.floats(min_value=-LARGEST_VALUE, max_value=LARGEST_VALUE).map(
    lambda x: float(f"{x:.15g}")).filter(
    lambda x: x not in MISSING_CODES and abs(x) <= LARGEST_VALUE)


@st.composite
def generated_tables(draw):
    """A small table, the layout and format to write it in, and the faults put in."""
    n_rows = draw(st.integers(min_value=1, max_value=8))
    n_features = draw(st.integers(min_value=1, max_value=3))
    layout = draw(st.sampled_from(["research", "tidy"]))
    suffix = draw(st.sampled_from([".csv", ".xlsx"]))
    faults = draw(st.sets(st.sampled_from(FAULTS), max_size=2))
    start = draw(
        st.dates(
            min_value=pd.Timestamp("1900-01-01").date(), max_value=pd.Timestamp("2100-01-01").date()
        )
    )

    names = ["q", *[f"x{i}" for i in range(n_features)]]
    data = {name: draw(st.lists(values, min_size=n_rows, max_size=n_rows)) for name in names}
    dates = list(pd.date_range(start, periods=n_rows, freq="D"))
    # Faults that need more than one row are dropped for one-row tables.
    if n_rows < 2:
        faults -= {"duplicate", "unsorted", "gap"}
    if "gap" in faults:
        cut = draw(st.integers(min_value=1, max_value=n_rows - 1))
        dates = dates[:cut] + [day + pd.Timedelta(days=1) for day in dates[cut:]]
    if "duplicate" in faults:
        row = draw(st.integers(min_value=1, max_value=n_rows - 1))
        dates[row] = dates[row - 1]
    if "unsorted" in faults:
        row = draw(st.integers(min_value=1, max_value=n_rows - 1))
        dates[row - 1], dates[row] = dates[row], dates[row - 1]
        if dates[row - 1] == dates[row]:
            faults.discard("unsorted")
    frame = pd.DataFrame(data).astype(object)
    for fault, filler in [("missing", None), ("text", TEXTS)]:
        if fault in faults:
            column = draw(st.sampled_from(names))
            row = draw(st.integers(min_value=0, max_value=n_rows - 1))
            frame.loc[row, column] = draw(st.sampled_from(filler)) if filler else None
    if layout == "research":
        parts = pd.DataFrame(
            {
                "Year": [d.year for d in dates],
                "month": [d.month for d in dates],
                "day": [d.day for d in dates],
            }
        ).astype(object)
        if "bad_date" in faults:
            parts.loc[draw(st.integers(0, n_rows - 1)), "month"] = draw(
                st.sampled_from([0, 13, "Jan"])
            )
        table = pd.concat([parts, frame], axis=1)
    else:
        column = pd.Series(dates, dtype=object)
        if "bad_date" in faults:
            column[draw(st.integers(0, n_rows - 1))] = draw(
                st.sampled_from(["2001-02-30", "soon", 5])
            )
        table = pd.concat([pd.Series(column, name="date"), frame], axis=1)
    if "no_rows" in faults:
        table = table.iloc[:0]
    if "empty" in faults:
        table = pd.DataFrame()
    wrong_suffix = draw(st.sampled_from([None, None, None, ".txt", ".xlsx.old"]))
    return table, names, suffix, wrong_suffix, faults


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=generated_tables())
def test_read_table_returns_values_or_raises_clear_error(tmp_path_factory, case):
    table, names, suffix, wrong_suffix, faults = case
    folder = tmp_path_factory.mktemp("generated")
    path = write(table, folder / f"table{suffix}")
    if wrong_suffix:
        path = path.rename(folder / f"table{wrong_suffix}")
    try:
        result = read_table(path)
    except TableError as error:
        assert faults or wrong_suffix, f"unexpected error for a clean table: {error}"
        assert path.name in str(error)
        return
    assert not faults and not wrong_suffix
    assert result.target_names == ("q",)
    assert result.feature_names == tuple(names[1:])
    expected = table[names].to_numpy(dtype=float)
    np.testing.assert_array_equal(result.y.to_numpy(), expected[:, 0])
    np.testing.assert_array_equal(result.X.to_numpy(), expected[:, 1:])
    assert result.X.index.freq == "D"
    assert len(result.X) == len(table)


cell_values = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=6),
    values.map(repr),
    st.integers(min_value=-5, max_value=3000),
    st.sampled_from(
        ["date", "Year", "month", "day", "q", "p", "2000-01-01", "2000-01-02", "2000-02-30"]
    ),
)


@st.composite
def arbitrary_cells(draw):
    """Rows of arbitrary cells of the same length, often below a usable header."""
    n_columns = draw(st.integers(min_value=1, max_value=4))
    row = st.lists(cell_values, min_size=n_columns, max_size=n_columns)
    rows = draw(st.lists(row, max_size=6))
    if draw(st.booleans()):
        rows.insert(0, ["date", "q", "p", "r"][:n_columns])
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=arbitrary_cells(), suffix=st.sampled_from([".csv", ".xlsx"]))
def test_read_table_never_fails_unexpectedly(tmp_path_factory, cells, suffix):
    folder = tmp_path_factory.mktemp("arbitrary")
    path = folder / f"table{suffix}"
    frame = pd.DataFrame(cells)
    if suffix == ".csv":
        frame.to_csv(path, index=False, header=False)
    else:
        frame.to_excel(path, index=False, header=False)
    try:
        result = read_table(path, allow_gaps=True)
    except (TableError, FileNotFoundError) as error:
        assert path.name in str(error)
    else:
        assert isinstance(result.X, pd.DataFrame)
        assert len(result.X) == len(result.y)


def test_check_destination_names_what_is_in_the_way(tmp_path, monkeypatch):
    (tmp_path / "plain").write_text("")
    for create_parents in (False, True):
        with pytest.raises(NotADirectoryError, match="plain' is a file, not a folder"):
            check_destination(tmp_path / "plain" / "a" / "out", create_parents=create_parents)
    with pytest.raises(FileNotFoundError, match="missing' does not exist"):
        check_destination(tmp_path / "missing" / "out.csv")
    assert check_destination(tmp_path / "missing" / "out", create_parents=True) == \
        tmp_path / "missing" / "out"
    # Permissions as the operating system reports them (root may write anywhere).
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(PermissionError, match="no permission to write in"):
        check_destination(tmp_path / "missing" / "out", create_parents=True)


def test_a_sheet_of_a_csv_file_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("date,p,q\n2000-01-01,0,1\n2000-01-02,3,2\n")
    with pytest.raises(TableError, match="t.csv': a CSV file has no sheets"):
        read_table(path, sheet_name=0)
    assert len(read_table(path).y) == 2


@pytest.mark.parametrize("code", [-999.0, -9999.0])
@pytest.mark.parametrize("column", ["flow", "rain"])
def test_missing_value_codes_are_refused_not_read_as_values(tmp_path, code, column):
    # GRDC files mark a missing day with -999.000, CAMELS with -999, many agencies with
    # -9999: read as numbers they would train the model on a flow of -999.
    frame = tidy_frame()
    frame.loc[[3, 7], column] = code
    path = write(frame, tmp_path / "coded.csv")
    with pytest.raises(TableError) as excinfo:
        read_table(path)
    text = message(excinfo)
    assert f"'{column}'" in text and f"{code:g} in rows 5, 9" in text
    assert "missing-value code" in text
    frame.loc[[3, 7], column] = code + 0.5  # a value near the code is a value
    assert read_table(write(frame, tmp_path / "values.csv")).X.shape == (30, 2)


@pytest.mark.parametrize("column", ["flow", "rain"])
def test_numbers_too_large_for_the_model_are_refused_where_they_are(tmp_path, column):
    # 1e200 is a finite number, but in float32 it is infinite, and a scaler squares it
    # into an overflow: the error would name a NaN in a row that holds none.
    frame = tidy_frame()
    frame[column] = frame[column].astype(float)
    frame.loc[[3], column] = 1e200
    frame.loc[[7], column] = -4e38
    with pytest.raises(TableError) as excinfo:
        read_table(write(frame, tmp_path / "large.csv"))
    text = message(excinfo)
    assert f"'{column}'" in text and "row 5 (1e+200), row 9 (-4e+38)" in text
    assert "too large for the model, which computes in float32" in text
    frame.loc[[3, 7], column] = 3e38  # within float32
    assert read_table(write(frame, tmp_path / "fits.csv")).X.shape == (30, 2)


def test_research_layout_does_not_take_rain_for_discharge_named_elsewhere(tmp_path):
    # year, month, day, then P and a column named Q: the column after day is the target
    # by position, but Q says it is the discharge.
    frame = research_frame().rename(columns={"Data": "P", "Station1": "Q"})
    path = write(frame, tmp_path / "research_pq.csv")
    with pytest.raises(TableError, match=r"'P' \(column 4, D\), but 'Q' \(column 5, E\) "
                                         r"means discharge"):
        read_table(path)
    assert read_table(path, target="Q").target_names == ("Q",)
    # The research code's own tables name no column a discharge: position decides.
    assert read_table(write(research_frame(), tmp_path / "demo.csv")).target_names == ("Data",)


@pytest.mark.parametrize("name", ["flow_flag", "qc", "flow_quality", "discharge_cd"])
def test_flag_columns_are_not_taken_for_inputs(tmp_path, name):
    # A quality flag next to the discharge (USGS's *_cd codes, GRDC's, a QC column) is
    # no input: by default every other column is one, so the reader refuses to guess.
    frame = tidy_frame()
    frame[name] = 0
    path = write(frame, tmp_path / "flagged.csv")
    with pytest.raises(TableError, match=rf"'{name}'.*flags, quality codes or row numbers"
                                         r".*features="):
        read_table(path)
    table = read_table(path, features=["rain", "temp"])
    assert table.target_names == ("flow",) and list(table.X.columns) == ["rain", "temp"]


@pytest.mark.parametrize("text, expected", [
    ("# GRDC STATION DATA FILE\n# Station: BASEL, RHEINHALLE\nYYYY-MM-DD;hh:mm; Value\n",
     "row 1 starts with '#'"),
    ("Datum;Abfluss;Temp, Mittel\n01.01.2020;1,5;2,0\n", "the header row (row 1) has ; in it"),
])
def test_comment_lines_and_separators_beside_commas_are_named(tmp_path, text, expected):
    path = tmp_path / "export.csv"
    path.write_text(text)
    with pytest.raises(TableError, match=re.escape(expected)):
        read_table(path)


def test_a_header_cell_of_a_hash_sign_is_a_column_name_not_a_comment(tmp_path):
    # "#" heads a column of row numbers in many exports; a comment line has more text.
    frame = tidy_frame().rename(columns={"temp": "station_flag"})
    frame.insert(0, "#", range(len(frame)))
    path = write(frame, tmp_path / "numbered.csv")
    with pytest.raises(TableError, match=r"'station_flag' \(column 5, E\): by the name, a "
                                         r"column of flags"):
        read_table(path)
    assert read_table(path, features=["#", "rain"]).feature_names == ("#", "rain")
    # Row numbers are no input either: a trend the test period runs beyond.
    path = write(tidy_frame().assign(**{"#": range(30)})[["#", "Date", "flow", "rain"]],
                 tmp_path / "rows.csv")
    with pytest.raises(TableError, match=r"'#' \(column 1, A\): by the name.*row numbers"):
        read_table(path)
