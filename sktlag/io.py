"""Reading and writing tables of daily series.

:func:`read_table` turns a spreadsheet or CSV file into inputs ``X`` and
targets ``y`` indexed by date, after checking the table thoroughly: it never
repairs, fills, sorts or drops data rows on its own, and every problem is
reported as a :class:`TableError` that names the file, the rows and the
columns involved.

Row numbers in messages count the way a spreadsheet shows them: row 1 is the
header row and the first data row is row 2 (for a CSV file this is the line
number in a text editor). Columns are named by their header and by their
position, counted from 1 with the spreadsheet letter in brackets.

:func:`write_table` and :func:`atomic_write` write files so that a reader never
sees a half-written file: the content goes to a temporary file in the target
directory, which replaces the target only once it is complete.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import math
import numbers
import os
import re
import secrets
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

__all__ = [
    "DISCHARGE_WORDS",
    "FLAG_WORDS",
    "LARGEST_VALUE",
    "MISSING_CODES",
    "NAME_UNITS",
    "NOT_OBSERVED_WORDS",
    "TableData",
    "TableError",
    "atomic_write",
    "check_destination",
    "check_table_suffix",
    "means_discharge",
    "read_table",
    "unit_in_name",
    "write_table",
]

READ_SUFFIXES = (".csv.gz", ".csv", ".xlsx", ".xls")
WRITE_SUFFIXES = (".csv", ".xlsx")
LAYOUTS = ("auto", "research", "tidy")
DATE_COLUMN_NAMES = ("date", "time", "datetime")
DATE_PARTS = ("year", "month", "day")
#: Words that mean discharge when a column name has one of them as a token (see
#: :func:`read_table`); so does the token ``q``, ``qo`` or ``qobs``.
DISCHARGE_WORDS = ("discharge", "flow", "streamflow", "runoff")
#: Tokens that say a column holds flags or quality codes of another column (USGS's
#: ``*_cd``, a ``qc`` column): never an input unless named in ``features``.
FLAG_WORDS = ("flag", "qc", "quality", "cd", "code")
#: Tokens that say a column is not an observed discharge value (a simulation, a
#: forecast, a quality flag): a name with one of them never means discharge.
NOT_OBSERVED_WORDS = (
    "sim", "simulated", "pred", "predicted", "prediction", "forecast",
    "model", "modelled", "modeled", *FLAG_WORDS,
)
#: Numbers that agencies write for a missing value (GRDC -999.000, CAMELS -999, many
#: others -9999): read as numbers, they would be taken for flows and rain.
MISSING_CODES = (-999.0, -9999.0)
#: The largest magnitude of a value: the network computes in float32, where a larger
#: number is infinite (and a scaler would square it into an overflow before that).
LARGEST_VALUE = float(np.finfo(np.float32).max)
#: How the target of a table was chosen (:attr:`TableData.target_rule`).
TARGET_RULES = ("argument", "position", "name", "none")
# Texts that mark an empty cell (besides blank cells), in CSV files and workbooks alike.
MISSING_TEXTS = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "#N/A"})

# How many rows, dates or values a message lists before summarising the rest.
_SHOWN = 5
_HEADER_ROW = 1
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_TOKEN = re.compile(r"[^\W_]+")
_Q_TOKEN = re.compile(r"q(?:o|obs)?")
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?", re.ASCII
)


class TableError(ValueError):
    """A table that cannot be used as it is.

    The message names the file (and sheet), the affected columns and the
    affected rows. Row numbers count like a spreadsheet: the header is row 1,
    the first data row is row 2.
    """


@dataclass(frozen=True, eq=False)
class TableData:
    """Inputs and targets read from a table by :func:`read_table`.

    Attributes
    ----------
    X : pandas.DataFrame
        Feature columns as float64, indexed by a :class:`pandas.DatetimeIndex`
        named ``"date"`` (with daily frequency unless the table has gaps).
    y : pandas.Series, pandas.DataFrame or None
        Target column(s) as float64 with the same index: a Series named after
        the target for a single target, a DataFrame for a list of targets;
        None when the table has no target column (only with
        ``require_target=False``).
    feature_names : tuple of str
        Names of the columns of ``X``, in table order or in the requested order.
    target_names : tuple of str
        Names of the target column(s); empty when ``y`` is None.
    layout : {"research", "tidy"}
        The layout the table was read with.
    target_rule : {"argument", "position", "name", "none"}
        How the target was chosen: named by the ``target`` argument, by its
        position (the column after year, month, day in the research layout),
        by its name (the one column of a tidy table whose name means
        discharge), or ``"none"`` when no target column was read.
    """

    X: pd.DataFrame
    y: pd.Series | pd.DataFrame | None
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    layout: str
    target_rule: str = "argument"

    @property
    def dates(self) -> pd.DatetimeIndex:
        """The day of each row (the index of ``X`` and ``y``)."""
        return self.X.index


# ----------------------------------------------------------------------------
# Small helpers for messages and cell values
# ----------------------------------------------------------------------------


def _preview(items: Sequence[str], total: int | None = None) -> str:
    """Join the first few ``items``, saying how many there are in all."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:_SHOWN])
    if total > _SHOWN:
        shown += f", ... ({total} in total)"
    return shown


def _rows_word(rows: Sequence[int]) -> str:
    """``"row"`` or ``"rows"``, to go before a list of row numbers."""
    return "row" if len(rows) == 1 else "rows"


def _quoted(names: Sequence[str]) -> str:
    """``column 'a'`` or ``columns 'a', 'b'`` for messages."""
    word = "column" if len(names) == 1 else "columns"
    return f"{word} {', '.join(repr(name) for name in names)}"


def _column_letter(position: int) -> str:
    """Spreadsheet letter of the 1-based column ``position`` (1 -> A, 27 -> AA)."""
    letters = ""
    while position > 0:
        position, remainder = divmod(position - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _is_missing(value: Any) -> bool:
    """Whether a raw cell is empty (NaN, None, NaT, blank or a missing-value text)."""
    if isinstance(value, str):
        return value.strip() in MISSING_TEXTS
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or value is pd.NaT or (isinstance(value, np.floating) and np.isnan(value))


def _show_value(value: Any) -> str:
    """Render a raw cell for a message."""
    if _is_missing(value):
        return "empty"
    if isinstance(value, dt.datetime | dt.date):
        return repr(value.isoformat())
    return repr(value)


def _to_float(value: Any) -> float | None:
    """Convert a raw cell to a float: NaN when empty, None when not a number.

    Text is accepted when it is a plain decimal number (surrounding blanks
    allowed); booleans, dates, infinite values and any other text are not
    numbers.
    """
    if isinstance(value, str):
        text = value.strip()
        if text in MISSING_TEXTS:
            return math.nan
        number = float(text) if _NUMBER.fullmatch(text) else math.inf
    elif _is_missing(value):
        return math.nan
    elif isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    else:
        number = float(value)
    return number if math.isfinite(number) else None


def _to_day(value: Any) -> pd.Timestamp | None:
    """Convert a raw date cell to a day, or None when it is not a valid day.

    Accepted are spreadsheet date cells and ISO 8601 text (``YYYY-MM-DD``,
    optionally followed by a time), in both cases only at midnight and
    without a time zone.
    """
    if _is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.fullmatch(text):
            return None
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    if not isinstance(value, dt.date | np.datetime64):
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None or stamp != stamp.normalize():
        return None
    return _held(stamp)


def _held(stamp: pd.Timestamp) -> pd.Timestamp | None:
    """``stamp``, or None beyond the days a nanosecond index holds (years 1678-2261)."""
    return stamp if pd.Timestamp.min <= stamp <= pd.Timestamp.max else None


def _day_from_parts(year: Any, month: Any, day: Any) -> pd.Timestamp | None:
    """Build a day from year, month and day cells, or None when they are not valid."""
    parts = [_to_float(value) for value in (year, month, day)]
    if any(part is None or np.isnan(part) or part != int(part) for part in parts):
        return None
    try:
        return _held(pd.Timestamp(dt.date(*(int(part) for part in parts))))
    except (ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------------
# Reading the raw cells
# ----------------------------------------------------------------------------


def _table_suffix(path: Path, suffixes: Sequence[str]) -> str | None:
    """The entry of ``suffixes`` that the file name ends with, ignoring case."""
    name = path.name.lower()
    for suffix in suffixes:
        if name.endswith(suffix):
            return suffix
    return None


def _read_csv_cells(path: Path, suffix: str, label: str) -> pd.DataFrame:
    """All cells of a CSV file as text, header included; short rows are padded."""
    opener = gzip.open if suffix == ".csv.gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TableError(f"{label}: cannot be read as a UTF-8 CSV file: {exc}") from exc
    except OSError as exc:  # no permission, a device error
        raise TableError(f"{label}: cannot be read: {exc.strerror or exc}") from exc
    _check_comment_lines(rows, label)
    _check_separator(rows[0] if rows else [], label)
    width = max((len(row) for row in rows), default=0)
    return pd.DataFrame([row + [""] * (width - len(row)) for row in rows], dtype=object)


def _check_comment_lines(rows: list[list[str]], label: str) -> None:
    """A TableError for a file that starts with comment lines (GRDC, USGS exports)."""
    def is_comment(row: list[str]) -> bool:
        # A bare "#" beside other names heads a column of row numbers.
        first = row[0].strip() if row else ""
        return first.startswith("#") and (first != "#" or not any(c.strip() for c in row[1:]))

    comments = 0
    while comments < len(rows) and is_comment(rows[comments]):
        comments += 1
    if comments:
        raise TableError(
            f"{label}: row 1 starts with '#' ({comments} such row{'s' if comments > 1 else ''}"
            "): comment lines are not read; delete them, so that the column names are "
            "in row 1"
        )


def _check_separator(header: list[str], label: str) -> None:
    """A TableError for a header that holds another separator.

    Spreadsheets in many locales save CSV files separated by semicolons, with decimal
    commas; read with commas, such a header is one cell (or splits where a name holds
    a comma), and its rows split at the decimal commas. Said here, before those cells
    give a puzzling message. No column name holds a semicolon or a tab.
    """
    for separator, shown in ((";", ";"), ("\t", "\\t")):
        if any(separator in cell for cell in header):
            raise TableError(
                f"{label}: the header row (row 1) has {shown} in it "
                f"({_show_value(','.join(header))}): CSV files are read comma-separated, "
                "with a decimal point; save the table as comma-separated CSV (UTF-8) or "
                "as .xlsx"
            )


def _resolve_sheet(sheet_name: str | int, sheet_names: list[str], path: Path) -> str:
    """The name of the requested sheet; a TableError lists the sheets otherwise."""
    if isinstance(sheet_name, str) and sheet_name in sheet_names:
        return sheet_name
    # Digits that name no sheet are a position (as typed on a command line).
    position = int(sheet_name) if isinstance(sheet_name, str) and sheet_name.isdigit() else (
        sheet_name)
    if (
        isinstance(position, int)
        and not isinstance(position, bool)
        and 0 <= position < len(sheet_names)
    ):
        return sheet_names[position]
    raise TableError(
        f"'{path}': no sheet {sheet_name!r}; the workbook has the sheets {sheet_names} "
        "(pass a name or a 0-based position)."
    )


def _read_excel_cells(path: Path, sheet_name: str | int) -> tuple[pd.DataFrame, str]:
    """All cells of one sheet as Python objects, header included, and a label."""
    if path.suffix.lower() == ".xlsx":
        return _read_xlsx_cells(path, sheet_name)
    try:
        book = pd.ExcelFile(path)
    except ImportError as exc:
        # openpyxl (.xlsx) is a dependency: a missing reader means an old-style
        # workbook, whose reader is optional (pandas names xlrd, or python-calamine
        # when it falls back to it).
        raise ImportError(
            f"'{path}': reading an old-style Excel workbook (.xls) needs the optional "
            "package xlrd: pip install sktlag[xls] (or save the workbook as .xlsx)"
        ) from exc
    except Exception as exc:  # the Excel engines raise many unrelated types
        raise TableError(f"'{path}': cannot be read as an Excel workbook: {exc}") from exc
    with book:
        sheet = _resolve_sheet(sheet_name, book.sheet_names, path)
        label = f"'{path}' (sheet '{sheet}')"
        try:
            cells = pd.read_excel(
                book, sheet_name=sheet, header=None, dtype=object, na_filter=False
            )
        except Exception as exc:
            raise TableError(f"{label}: cannot be read: {exc}") from exc
    return cells, label


def _read_xlsx_cells(path: Path, sheet_name: str | int) -> tuple[pd.DataFrame, str]:
    """:func:`_read_excel_cells` of a workbook read by openpyxl itself.

    pandas' reader of these workbooks turns a FALSE cell into 0 in a column that also
    holds whole numbers, and an error cell (#DIV/0!, #VALUE!) into an empty one; read
    here, a boolean stays a boolean and an error cell its text, so that neither passes
    for a number or a missing value (Excel's #N/A is one, as in a text table).
    """
    import openpyxl  # a dependency; imported with the first workbook

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl's own errors
        raise TableError(f"'{path}': cannot be read as an Excel workbook: {exc}") from exc
    try:
        sheet = _resolve_sheet(sheet_name, book.sheetnames, path)
        label = f"'{path}' (sheet '{sheet}')"
        try:
            cells = book[sheet]
            # The size a writer stored for the sheet may be wrong ("A1"): read to its end.
            cells.reset_dimensions()
            rows = [list(row) for row in cells.iter_rows(values_only=True)]
        except Exception as exc:
            raise TableError(f"{label}: cannot be read: {exc}") from exc
    finally:
        book.close()
    return pd.DataFrame(rows, dtype=object), label


def _drop_blank_margins(cells: pd.DataFrame) -> pd.DataFrame:
    """Drop the empty columns after the last column and empty rows after the last row.

    Such cells carry no data: they come from trailing separators, formatting
    or blank lines at the end of a file. Empty rows and columns inside the
    table are kept (and reported later), so that row and column numbers stay
    those of the file.
    """
    if cells.empty:
        return cells
    filled = ~cells.map(_is_missing).to_numpy()
    filled_rows = np.flatnonzero(filled.any(axis=1))
    filled_columns = np.flatnonzero(filled.any(axis=0))
    if filled_rows.size == 0:
        return cells.iloc[:0, :0]
    return cells.iloc[: filled_rows[-1] + 1, : filled_columns[-1] + 1]


def _split_header(cells: pd.DataFrame, label: str) -> pd.DataFrame:
    """Use the first row as column names; index the data by spreadsheet row number."""
    header = cells.iloc[0].tolist()
    if all(_is_missing(cell) for cell in header):
        raise TableError(
            f"{label}: the header row (row 1) is empty; the column names must be in the first row."
        )
    names = []
    for position, cell in enumerate(header, start=1):
        where = f"column {position} ({_column_letter(position)})"
        if _is_missing(cell):
            # Say where its values are: often one row with a stray separator.
            filled = [row + 1 for row in range(1, len(cells))
                      if not _is_missing(cells.iat[row, position - 1])]
            holding = (f"; it holds values in {_rows_word(filled)} "
                       f"{_preview([str(row) for row in filled])}") if filled else ""
            raise TableError(
                f"{label}: {where} has no name in the header row (row 1){holding}.")
        if isinstance(cell, float) and cell.is_integer():
            cell = int(cell)
        names.append(str(cell).strip())
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        details = [
            f"'{name}' in columns {[i + 1 for i, n in enumerate(names) if n == name]}"
            for name in repeated
        ]
        raise TableError(f"{label}: repeated column names in the header: {'; '.join(details)}.")
    data = cells.iloc[1:].copy()
    data.columns = names
    data.index = pd.RangeIndex(_HEADER_ROW + 1, _HEADER_ROW + 1 + len(data))
    return data


# ----------------------------------------------------------------------------
# Column roles
# ----------------------------------------------------------------------------


def _names(value: str | Sequence[str] | None, argument: str) -> list[str] | None:
    """Normalise a column argument to a list of names (None stays None)."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"{argument} must be a column name or a non-empty list of names.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{argument} names the same column more than once: {repeated}.")
    return names


def _check_columns(names: list[str], available: list[str], role: str, label: str) -> None:
    """A TableError listing the available columns when ``names`` are not among them."""
    unknown = [name for name in names if name not in available]
    if unknown:
        raise TableError(
            f"{label}: no {role} column(s) {unknown}; the available columns are {available}."
        )


def _find_date_column(columns: list[str], date_column: str | None, label: str) -> str:
    """The column holding the dates of a tidy table."""
    if date_column is not None:
        _check_columns([date_column], columns, "date", label)
        return date_column
    found = [name for name in columns if name.lower() in DATE_COLUMN_NAMES]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TableError(
            f"{label}: no date column; name one of the columns {list(DATE_COLUMN_NAMES)} "
            f"(any case) or name it (date_column, --date-column). The columns are "
            f"{columns}."
        )
    raise TableError(f"{label}: several possible date columns {found}; name the one to "
                     "use (date_column, --date-column).")


def _choose_layout(
    columns: list[str], layout: str, date_column: str | None, label: str
) -> tuple[str, list[str], list[str]]:
    """Resolve the layout; return it with the date columns and the value columns."""
    starts_with_parts = [name.lower() for name in columns[:3]] == list(DATE_PARTS)
    if layout == "auto":
        layout = "research" if starts_with_parts and date_column is None else "tidy"
    if layout == "research":
        if date_column is not None:
            raise ValueError("date_column (--date-column) applies to the tidy layout only.")
        if not starts_with_parts:
            raise TableError(
                f"{label}: the research layout needs the columns year, month, day first "
                f"(any case); the table starts with {columns[:3]}."
            )
        return layout, columns[:3], columns[3:]
    date_name = _find_date_column(columns, date_column, label)
    return layout, [date_name], [name for name in columns if name != date_name]


def means_discharge(name: str) -> bool:
    """Whether a column name means an observed discharge (the rule of :func:`read_table`).

    The name is split into tokens, the maximal runs of letters and digits, compared
    in lower case. It means discharge when one token is ``q``, ``qo``, ``qobs`` or
    one of :data:`DISCHARGE_WORDS` (``discharge``, ``flow``, ``streamflow``,
    ``runoff``), and no token is one of :data:`NOT_OBSERVED_WORDS` (``sim``,
    ``forecast``, ``flag``, ...).

    Parameters
    ----------
    name : str
        A column name.

    Returns
    -------
    bool

    Examples
    --------
    >>> [means_discharge(n) for n in ["Qo", "Q [m3/s]", "Qobs(mm/d)", "q_kalkofen"]]
    [True, True, True, True]
    >>> [means_discharge(n) for n in ["discharge_m3s", "flow_cms", "Runoff"]]
    [True, True, True]
    >>> [means_discharge(n) for n in ["P", "E0", "temp", "quality", "frequency", "qsim"]]
    [False, False, False, False, False, False]
    >>> means_discharge("Q_sim"), means_discharge("baseflow")
    (False, False)
    """
    tokens = _TOKEN.findall(str(name).lower())
    if any(token in NOT_OBSERVED_WORDS for token in tokens):
        return False
    return any(token in DISCHARGE_WORDS or _Q_TOKEN.fullmatch(token) for token in tokens)


#: The units a column name may end in, as the tokens of :func:`unit_in_name` (``3``
#: stands for ``³``), and how the figures write them.
NAME_UNITS: dict[tuple[str, ...], str] = {
    ("m3", "s"): "m³/s", ("m3s",): "m³/s", ("cms",): "m³/s", ("cumecs",): "m³/s",
    ("m3", "d"): "m³/d",
    ("ft3", "s"): "ft³/s", ("cfs",): "ft³/s",
    ("l", "s"): "l/s", ("ls",): "l/s", ("lps",): "l/s",
    ("mm", "d"): "mm/d", ("mm", "day"): "mm/d", ("mmd",): "mm/d",
    ("mm", "h"): "mm/h",
}


def unit_in_name(name: str) -> str | None:
    """The unit a column name ends in, or None.

    The name is split into tokens as in :func:`means_discharge`; when its last tokens
    are one of the units of :data:`NAME_UNITS` and some token comes before them (a
    name that is only a unit names no quantity), that unit is returned as the
    figures write it.

    Parameters
    ----------
    name : str
        A column name.

    Returns
    -------
    str or None

    Examples
    --------
    >>> [unit_in_name(n) for n in ["q_m3s", "Q [m3/s]", "flow_cms", "Qobs(mm/d)"]]
    ['m³/s', 'm³/s', 'm³/s', 'mm/d']
    >>> unit_in_name("q_kalkofen"), unit_in_name("m3s")
    (None, None)
    """
    tokens = _TOKEN.findall(str(name).lower().replace("³", "3"))
    for key, unit in NAME_UNITS.items():
        if len(tokens) > len(key) and tuple(tokens[-len(key):]) == key:
            return unit
    return None


def _target_by_name(
    values: list[str], features: list[str] | None, require_target: bool, label: str
) -> list[str]:
    """The one value column whose name means discharge (none: an empty list).

    A TableError when several names mean discharge, or none does and
    ``require_target`` is true. Columns listed in ``features`` are not candidates.
    """
    candidates = [name for name in values if features is None or name not in features]
    found = [name for name in candidates if means_discharge(name)]
    if len(found) == 1 or (not found and not require_target):
        return found
    ask = "pass target= (--target on the command line) to name the target column"
    if found:
        raise TableError(
            f"{label}: cannot choose the target: several column names mean discharge: "
            f"{', '.join(repr(name) for name in found)}; {ask}."
        )
    raise TableError(
        f"{label}: cannot choose the target: no column name means discharge (a token "
        f"q, qo, qobs, {', '.join(DISCHARGE_WORDS)}); the value columns are "
        f"{candidates}; {ask}."
    )


def _is_flag(name: str) -> bool:
    """Whether a column name has one of :data:`FLAG_WORDS` as a token."""
    return any(token in FLAG_WORDS for token in _TOKEN.findall(str(name).lower()))


def _choose_roles(
    columns: list[str],
    values: list[str],
    target: list[str] | None,
    features: list[str] | None,
    layout: str,
    require_target: bool,
    label: str,
) -> tuple[list[str], list[str], str]:
    """Target and feature columns among the value columns, and the target rule.

    See :func:`read_table` for the rules; ``columns`` (all of them) place names in
    messages.
    """
    if not values:
        raise TableError(f"{label}: the table has no columns besides the dates.")
    if target is not None:
        rule = "argument"
        if not require_target:
            # Of the targets, the table holds those it observed (none: future days).
            target = [name for name in target if name in values]
            rule = "argument" if target else "none"
    elif layout == "research":
        # The first value column is the discharge, unless a table that need not hold it
        # (future days) names that column as an input.
        inputs_only = not require_target and features is not None and values[0] in features
        target, rule = ([], "none") if inputs_only else (values[:1], "position")
        named = [name for name in values[1:] if means_discharge(name)
                 and (features is None or name not in features)]
        if target and named and not means_discharge(target[0]):
            raise TableError(
                f"{label}: the research layout takes the column after year, month, day "
                f"for the discharge, {_column_where(target[0], columns)}, but "
                f"{_column_where(named[0], columns)} means discharge; pass target= "
                "(--target on the command line) to name the target column."
            )
    else:
        target = _target_by_name(values, features, require_target, label)
        rule = "name" if target else "none"
    _check_columns(target, values, "target", label)
    if features is None:
        features = [name for name in values if name not in target]
        # A "#" column numbers the rows: a trend the test period runs beyond.
        flags = [name for name in features if _is_flag(name) or name.strip() == "#"]
        if flags:
            raise TableError(
                f"{label}: {', '.join(_column_where(name, columns) for name in flags)}: "
                "by the name, a column of flags, quality codes or row numbers, not an "
                "input (every other value column is one by default); pass features= "
                "(--features on the command line) to name the inputs."
            )
    else:
        _check_columns(features, values, "feature", label)
        overlap = [name for name in features if name in target]
        if overlap:
            raise ValueError(f"Columns {overlap} are requested both as target and as feature.")
    if not features:
        raise TableError(
            f"{label}: no feature columns; the only value column(s) {target} are the target."
        )
    return target, features, rule


# ----------------------------------------------------------------------------
# Checking dates and values
# ----------------------------------------------------------------------------


def _parse_dates(data: pd.DataFrame, date_columns: list[str], label: str) -> pd.Series:
    """The day of each row; a TableError names the rows without a valid day."""
    if len(date_columns) == 3:
        parts = data[date_columns].itertuples(index=False, name=None)
        days = [_day_from_parts(*row) for row in parts]
    else:
        days = [_to_day(value) for value in data[date_columns[0]].tolist()]
    bad = [row for row, day in zip(data.index, days, strict=True) if day is None]
    if bad:
        shown = [
            f"row {row} ({', '.join(_show_value(v) for v in data.loc[row, date_columns])})"
            for row in bad[:_SHOWN]
        ]
        expected = (
            "whole numbers forming a calendar day"
            if len(date_columns) == 3
            else "dates without time of day, as spreadsheet dates or ISO text YYYY-MM-DD"
        ) + " in the years 1678 to 2261"
        raise TableError(
            f"{label}: invalid dates in {_quoted(date_columns)}: {_preview(shown, len(bad))}; "
            f"expected {expected}."
        )
    return pd.Series(pd.DatetimeIndex(days).as_unit("ns"), index=data.index)


def _check_dates(days: pd.Series, label: str, allow_gaps: bool) -> None:
    """Reject repeated, unordered and (unless allowed) missing days."""
    repeated = days[days.duplicated(keep=False)]
    if not repeated.empty:
        groups = repeated.groupby(repeated, sort=False).groups
        shown = [
            f"{day:%Y-%m-%d} in rows {', '.join(str(row) for row in rows)}"
            for day, rows in groups.items()
        ]
        raise TableError(
            f"{label}: repeated dates: {_preview(shown, len(groups))}. Each day may appear once."
        )
    steps = days.diff().iloc[1:]
    backwards = steps.index[steps < pd.Timedelta(0)]
    if len(backwards):
        rows = days.index
        shown = []
        for row in backwards[:_SHOWN]:
            before = rows[rows.get_loc(row) - 1]
            shown.append(
                f"row {row} ({days[row]:%Y-%m-%d}) after row {before} ({days[before]:%Y-%m-%d})"
            )
        raise TableError(
            f"{label}: dates are not in increasing order: {_preview(shown, len(backwards))}. "
            "Sort the table by date."
        )
    if allow_gaps or days.empty:
        return
    expected = pd.date_range(days.iloc[0], days.iloc[-1], freq="D")
    missing = expected.difference(pd.DatetimeIndex(days))
    if len(missing):
        shown = [f"{day:%Y-%m-%d}" for day in missing]
        raise TableError(
            f"{label}: {len(missing)} day(s) missing between {days.iloc[0]:%Y-%m-%d} and "
            f"{days.iloc[-1]:%Y-%m-%d}: {_preview(shown)}. The rows must form a daily "
            "sequence, as the model's windows span consecutive days: add the missing "
            "days, or, in Python, read with allow_gaps=True (gaps are not filled) and fit "
            "each stretch without gaps as a group (fit(..., groups=...))."
        )


def _parse_numbers(data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict]:
    """Convert ``columns`` to float; also return the non-numeric cells per column."""
    converted = {}
    not_numbers = {}
    for name in columns:
        raw = data[name].tolist()
        floats = [_to_float(value) for value in raw]
        bad = [
            (row, value) for row, value, f in zip(data.index, raw, floats, strict=True) if f is None
        ]
        if bad:
            not_numbers[name] = bad
        converted[name] = [np.nan if f is None else f for f in floats]
    return pd.DataFrame(converted, index=data.index, dtype="float64"), not_numbers


def _column_where(name: str, columns: list[str]) -> str:
    """``'name' (column 3, C)`` for messages."""
    position = columns.index(name) + 1
    return f"'{name}' (column {position}, {_column_letter(position)})"


def _check_missing_codes(parsed: pd.DataFrame, names: list[str], columns: list[str],
                         label: str) -> None:
    """A TableError for cells that hold one of :data:`MISSING_CODES`."""
    details = []
    for name in names:
        for code in MISSING_CODES:
            rows = parsed.index[parsed[name] == code]
            if len(rows):
                details.append(f"column {_column_where(name, columns)}: {code:g} in "
                               f"{_rows_word(rows)} {_preview([str(row) for row in rows])}")
    if details:
        raise TableError(
            f"{label}: values that agencies write for a missing-value code: "
            f"{'; '.join(details)}. Empty these cells (missing discharge can then be "
            "masked: allow_missing_target=True, on the command line --missing-target "
            "mask; missing inputs must be filled first)."
        )


def _check_magnitudes(parsed: pd.DataFrame, names: list[str], columns: list[str],
                      label: str) -> None:
    """A TableError for cells beyond :data:`LARGEST_VALUE`."""
    details = []
    for name in names:
        rows = parsed.index[parsed[name].abs() > LARGEST_VALUE]
        if len(rows):
            cells = [f"row {row} ({parsed.at[row, name]:g})" for row in rows]
            details.append(f"column {_column_where(name, columns)}: {_preview(cells)}")
    if details:
        raise TableError(
            f"{label}: numbers too large for the model, which computes in float32 "
            f"(largest {LARGEST_VALUE:.3g}): {'; '.join(details)}. Check the cells and "
            "the units."
        )


def _check_values(
    data: pd.DataFrame,
    parsed: pd.DataFrame,
    not_numbers: dict,
    target: list[str],
    features: list[str],
    allow_missing_target: bool,
    require_target: bool,
    label: str,
) -> None:
    """Reject text in numeric columns and empty cells (see :func:`read_table`)."""
    columns = list(data.columns)
    if all(parsed[name].isna().all() for name in features):
        raise TableError(
            f"{label}: no numeric feature columns; the feature column(s) "
            f"{', '.join(_column_where(name, columns) for name in features)} hold no numbers."
        )
    if not_numbers:
        details = []
        for name, bad in not_numbers.items():
            cells = [f"row {row} ({_show_value(value)})" for row, value in bad]
            details.append(f"column {_column_where(name, columns)}: {_preview(cells)}")
        raise TableError(f"{label}: cells that are not numbers: {'; '.join(details)}.")
    _check_missing_codes(parsed, [*target, *features], columns, label)
    _check_magnitudes(parsed, [*target, *features], columns, label)
    checked = features if allow_missing_target else [*target, *features]
    details = []
    for name in checked:
        rows = parsed.index[parsed[name].isna()]
        if len(rows):
            shown = _preview([str(row) for row in rows])
            details.append(f"column {_column_where(name, columns)} in {_rows_word(rows)} {shown}")
    if details:
        hint = ""
        if any(parsed[name].isna().any() for name in target) and not allow_missing_target:
            hint = (" Empty target cells can be accepted with allow_missing_target=True "
                    "(on the command line: --missing-target mask).")
        raise TableError(f"{label}: empty cells: {'; '.join(details)}.{hint}")
    empty_targets = [name for name in target if parsed[name].isna().all()]
    if empty_targets and require_target:
        raise TableError(f"{label}: the target column(s) {empty_targets} hold no values.")


# ----------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------


def read_table(
    path: str | os.PathLike[str],
    *,
    layout: str = "auto",
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    date_column: str | None = None,
    sheet_name: str | int | None = None,
    allow_gaps: bool = False,
    allow_missing_target: bool = False,
    require_target: bool = True,
) -> TableData:
    """Read a table of daily series into inputs and targets indexed by date.

    The first row of the table (or sheet) is the header. Two layouts are
    understood:

    ``"research"``
        The first three columns are ``year``, ``month`` and ``day`` (names in
        any case, for example ``Year, month, day``), followed by the
        discharge column and then one column per station.
    ``"tidy"``
        One date column, found by its name ``date``, ``time`` or
        ``datetime`` (any case) or given as ``date_column``, and any number
        of value columns in any position. Dates are spreadsheet date cells or
        ISO 8601 text (``YYYY-MM-DD``), at midnight.

    The *value columns* are all columns except the date column(s). The
    features are ``features`` if given, otherwise all value columns except the
    target(s), in table order; a column whose name has a token of :data:`FLAG_WORDS`
    (``flag``, ``qc``, ``quality``, ``cd``, ``code``) is then a :class:`TableError`
    that asks for ``features``. The target is ``target`` if given; otherwise:

    - research layout: the first value column (the discharge, by the layout's
      convention), unless its name does not mean discharge and another's does: then
      a :class:`TableError` asks for ``target``;
    - tidy layout: the one value column whose name means discharge
      (:func:`means_discharge`), never a column picked by its position. If no
      name or several names mean discharge, a :class:`TableError` lists the
      columns and asks for ``target``. Columns listed in ``features`` are not
      candidates.

    A name means discharge when, split into tokens (runs of letters and digits,
    in any case), one token is ``q``, ``qo``, ``qobs``, ``discharge``, ``flow``,
    ``streamflow`` or ``runoff``, and no token marks a value that is not
    observed (``sim``, ``simulated``, ``pred``, ``predicted``, ``prediction``,
    ``forecast``, ``model``, ``modelled``, ``modeled``, ``flag``, ``qc``,
    ``quality``). So ``Qo``, ``Q [m3/s]``, ``Qobs(mm/d)``, ``q_kalkofen``,
    ``discharge_m3s`` and ``flow_cms`` mean discharge; ``P``, ``E0``,
    ``temp``, ``precip``, ``quality``, ``frequency``, ``qsim``, ``Q_sim``
    and ``baseflow`` do not. ``target_rule`` of the result says how the target
    was chosen.

    The table is validated and never repaired. Empty columns after the last
    column and empty rows after the last row are ignored; everything else must
    be right: a name for every column, valid, unique, increasing dates forming
    a daily sequence, and a number in every cell of the target and feature
    columns. Numbers may be numeric cells or plain decimal text such as
    ``1.5`` or ``-2e-3`` (a decimal point, no thousands separators). A cell is
    empty when it is blank or holds one of the texts ``NA``, ``N/A``,
    ``n/a``, ``NaN``, ``nan``, ``NULL``, ``null`` or ``#N/A``. Columns that
    are neither target nor features are not checked.

    Parameters
    ----------
    path : str or path-like
        A ``.xlsx``, ``.xls`` (needs the optional package ``xlrd``:
        ``pip install sktlag[xls]``), ``.csv``
        or ``.csv.gz`` file (extensions in any case). CSV files are comma
        separated and UTF-8 encoded (a byte order mark is allowed).
    layout : {"auto", "research", "tidy"}, default="auto"
        ``"auto"`` reads the table as ``"research"`` when its first three
        columns are year, month and day (and ``date_column`` is not given),
        and as ``"tidy"`` otherwise.
    target : str or sequence of str, optional
        Target column name (``y`` is a Series) or list of names (``y`` is a
        DataFrame). Default: the first value column (research layout), the one
        column whose name means discharge (tidy layout).
    features : sequence of str, optional
        Feature column names, in the order wanted for ``X``. Default: all
        value columns except the target(s).
    date_column : str, optional
        Name of the date column of a tidy table.
    sheet_name : str or int, optional
        Sheet of a workbook, by name or 0-based position (digits that name no sheet
        are a position); by default the first. A CSV file has no sheets: naming one
        is an error.
    allow_gaps : bool, default=False
        Accept missing days between the first and the last date. The gaps are
        kept as they are (no rows are added) and ``X.index`` then has no
        frequency.
    allow_missing_target : bool, default=False
        Accept empty target cells; they are kept as NaN. Empty feature cells
        are always an error.
    require_target : bool, default=True
        If False, a table without a target column is read too, as inputs only
        (future days without observed flow): ``y`` is None, ``target_names``
        is empty and ``target_rule`` is ``"none"``. That is the case when none
        of the ``target`` columns is in the table, or, without ``target``, when
        no column name of a tidy table means discharge, or when the first value
        column of a research table is one of ``features``. Of a list of
        ``target`` columns, those the table holds are read (``target_names`` says
        which). Several names meaning discharge are still an error. A target
        column without any value (the column of a template for future days) is
        accepted too, when ``allow_missing_target`` is true.

    Returns
    -------
    TableData
        ``X`` (float64 features), ``y`` (float64 target(s)), both indexed by a
        :class:`pandas.DatetimeIndex` named ``"date"``, plus
        ``feature_names``, ``target_names``, the resolved ``layout`` and the
        ``target_rule``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TableError
        If the table cannot be used as it is. This covers unsupported
        extensions, unreadable files, empty tables or sheets, unknown sheets,
        header cells without a name, repeated column names, a missing date
        column, a tidy table without ``target`` where no name or several names
        mean discharge, a research table whose first value column's name does not
        mean discharge where another's does, flag columns among the default
        features, unknown target or feature names, invalid, repeated or unsorted
        dates, missing days, cells that are not numbers, cells holding a missing-value
        code (:data:`MISSING_CODES`), numbers beyond float32 (:data:`LARGEST_VALUE`),
        empty cells, comment lines (``#``) above the
        header, a CSV header with semicolons or tabs, and tables without numeric
        feature columns. The message names the file and sheet,
        the columns and the rows; rows are numbered like in a spreadsheet,
        with the header as row 1 and the first data row as row 2.
    ValueError
        For invalid arguments (unknown ``layout``, ``date_column`` with the
        research layout, a column requested both as target and as feature).
    ImportError
        If a ``.xls`` file is read without ``xlrd`` installed; the message says
        ``pip install sktlag[xls]``.

    Examples
    --------
    >>> table = read_table("DemoData.xlsx")  # doctest: +SKIP
    >>> table.X.shape, table.target_names, table.target_rule  # doctest: +SKIP
    ((4018, 11), ('Data',), 'position')
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}.")
    target_names = _names(target, "target")
    feature_names = _names(features, "features")

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such table file: '{path}'.")
    if not path.is_file():
        raise TableError(f"'{path}' is not a file.")
    suffix = _table_suffix(path, READ_SUFFIXES)
    if suffix is None:
        raise TableError(f"'{path}': unsupported file type; use one of {list(READ_SUFFIXES)}.")
    if suffix in (".xlsx", ".xls"):
        cells, label = _read_excel_cells(path, 0 if sheet_name is None else sheet_name)
    else:
        label = f"'{path}'"
        if sheet_name is not None:
            raise TableError(f"{label}: a CSV file has no sheets, but sheet "
                             f"{sheet_name!r} was asked for (--sheet).")
        cells = _read_csv_cells(path, suffix, label)

    cells = _drop_blank_margins(cells)
    if cells.empty:
        raise TableError(f"{label}: the table is empty.")
    data = _split_header(cells, label)
    if data.empty:
        raise TableError(f"{label}: the table has a header (row 1) but no data rows.")

    columns = list(data.columns)
    layout, date_columns, values = _choose_layout(columns, layout, date_column, label)
    target_names, feature_names, rule = _choose_roles(
        columns, values, target_names, feature_names, layout, require_target, label
    )

    days = _parse_dates(data, date_columns, label)
    _check_dates(days, label, allow_gaps)
    parsed, not_numbers = _parse_numbers(data, [*target_names, *feature_names])
    _check_values(
        data, parsed, not_numbers, target_names, feature_names, allow_missing_target,
        require_target, label,
    )

    index = pd.DatetimeIndex(days.to_numpy(), name="date")
    if (index[-1] - index[0]).days == len(index) - 1:
        index = pd.DatetimeIndex(index, freq="D")
    X = parsed[feature_names].set_axis(index, axis=0)
    y_frame = parsed[target_names].set_axis(index, axis=0)
    if not target_names:
        y = None
    elif isinstance(target, str) or target is None:
        y = y_frame[target_names[0]]
    else:
        y = y_frame
    return TableData(
        X=X,
        y=y,
        feature_names=tuple(feature_names),
        target_names=tuple(target_names),
        layout=layout,
        target_rule=rule,
    )


def check_destination(path: str | os.PathLike[str], *, create_parents: bool = False) -> Path:
    """Check that ``path`` can be written, before the work that fills it; return it.

    Outputs are written next to ``path`` and then moved onto it (:func:`atomic_write`),
    so its folder must be a writable directory. Checking first keeps a long fit or
    prediction from ending in an error about a temporary file.

    Parameters
    ----------
    path : str or path-like
        The file or directory to create or replace.
    create_parents : bool, default=False
        Whether missing folders above it will be created: then the nearest folder that
        exists must be writable.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    NotADirectoryError
        If a part of its folder is a file.
    FileNotFoundError
        If its folder does not exist and ``create_parents`` is False.
    PermissionError
        If the folder (or the nearest existing one) cannot be written.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path)).parent
    # The nearest folder that exists (a file in the way makes the rest not exist).
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write '{path}': '{existing}' is a file, not a folder")
    if existing != folder and not create_parents:
        raise FileNotFoundError(f"cannot write '{path}': the folder '{folder}' does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write '{path}': no permission to write in '{existing}'")
    return path


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    fsync: bool = False,
) -> Iterator[IO[Any]]:
    """Open a file for writing so that it appears complete or not at all.

    The content goes to a temporary file in the directory of ``path``. When
    the ``with`` block ends without an exception, the temporary file replaces
    ``path`` in one step (:func:`os.replace`); when it raises, the temporary
    file is deleted, ``path`` is left as it was and the exception propagates.

    Parameters
    ----------
    path : str or path-like
        The file to write. Its directory must exist.
    mode : {"w", "wt", "wb"}, default="w"
        Text or binary mode.
    encoding : str, optional
        Text encoding, UTF-8 by default; only for text mode.
    newline : str, optional
        As for :func:`open`; only for text mode.
    fsync : bool, default=False
        Flush the file (and, on POSIX systems, its directory) to disk before
        returning, for outputs that must survive a power failure.

    Yields
    ------
    file object
        The open temporary file.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "scores.json"
    >>> with atomic_write(target) as handle:
    ...     json.dump({"nse": 0.9}, handle)
    >>> json.loads(target.read_text())
    {'nse': 0.9}
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"mode must be 'w', 'wt' or 'wb', got {mode!r}.")
    binary = mode == "wb"
    if binary and (encoding is not None or newline is not None):
        raise ValueError("encoding and newline apply to text mode only.")
    # Errors name the file asked for, not the temporary one, before anything is written.
    path = check_destination(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write '{path}': it is a folder")
    options = {} if binary else {"encoding": encoding or "utf-8", "newline": newline}
    # Exclusive creation of a fresh name gives the file the usual permissions.
    while True:
        temporary = path.with_name(hidden_sibling_name(path, "tmp"))
        try:
            handle = open(temporary, mode.replace("w", "x"), **options)
        except FileExistsError:
            continue
        break
    try:
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if fsync and os.name == "posix":
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def hidden_sibling_name(path: Path, tag: str) -> str:
    """A fresh hidden name for a temporary file or folder beside ``path``.

    Made of the start of ``path``'s name (so that a stray one is recognised), ``tag``
    and random digits; at most about 120 bytes, so that it fits where ``path``'s own
    name takes the 255 bytes a file system allows.
    """
    start = path.name.encode()[:96].decode(errors="ignore")
    return f".{start}.{secrets.token_hex(6)}.{tag}"


def check_table_suffix(path: str | os.PathLike[str]) -> str:
    """The table format :func:`write_table` writes ``path`` in.

    Parameters
    ----------
    path : str or path-like
        The file to write.

    Returns
    -------
    str
        ``".csv"`` or ``".xlsx"``.

    Raises
    ------
    ValueError
        If ``path`` ends in neither (any case); the message names the file.
    """
    suffix = _table_suffix(Path(path), WRITE_SUFFIXES)
    if suffix is None:
        raise ValueError(f"'{path}': cannot write this file type; use {list(WRITE_SUFFIXES)}.")
    return suffix


def write_table(
    frame: pd.DataFrame | pd.Series, path: str | os.PathLike[str], *, index: bool = True
) -> Path:
    """Write a table to ``.xlsx`` or ``.csv`` atomically.

    The file is written through :func:`atomic_write`, so an existing file is
    replaced only by a complete new one. A frame indexed by a
    :class:`pandas.DatetimeIndex` named ``"date"`` (as returned by
    :func:`read_table` or produced by predictions) is written as a tidy table
    that :func:`read_table` reads back. CSV files keep every float exactly;
    workbook cells keep 16 significant digits.

    Parameters
    ----------
    frame : pandas.DataFrame or pandas.Series
        The data; a Series is written as a single column.
    path : str or path-like
        Target file, ending in ``.xlsx`` or ``.csv`` (any case). Its directory
        must exist.
    index : bool, default=True
        Write the index as the first column.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If the extension is not supported.
    """
    path = Path(path)
    suffix = check_table_suffix(path)
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if suffix == ".csv":
        with atomic_write(path, "w", newline="") as handle:
            frame.to_csv(handle, index=index, lineterminator="\n")
    else:
        with atomic_write(path, "wb") as handle:
            frame.to_excel(handle, index=index, engine="openpyxl")
    return path
