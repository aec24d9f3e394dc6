"""What the training recipe adapts to the record at hand, and what a record can carry.

The reference LSTM's batch of 256 windows gives 28 updates per epoch on the 31-year
Lahn record and three or four on a record of four years, where early stopping ends
training before the network has learned anything. ``batch_size="auto"`` therefore picks
the batch from the number of training windows, so that every record gets about the same
number of updates per epoch; the rule and its figures are in the user guide and
``docs/benchmarks.md``.

The checks name what a record cannot carry (too few updates, too much of the record
spent on history, a validation part shorter than a seasonal cycle), with the number
and the remedy. They warn; they never change a setting.

Every number of the rule and of the checks is defined here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral

__all__ = [
    "AUTO_BATCH_SIZES",
    "MIN_UPDATES_PER_EPOCH",
    "MIN_VALIDATION_WINDOWS",
    "TARGET_UPDATES_PER_EPOCH",
    "ShortRecordWarning",
    "auto_batch_size",
    "record_problems",
    "resolve_batch_size",
    "updates_per_epoch",
]

#: The batch sizes ``batch_size="auto"`` chooses from (powers of two, as usual for
#: Adam on a GPU): from the reference LSTM's 256 down to 16.
AUTO_BATCH_SIZES = (16, 32, 64, 128, 256)
#: Updates per epoch the automatic batch size aims at: the largest batch that still
#: gives at least this many is chosen. With growth on, on records of 5, 10 and 31 to 36
#: years, the batch that scored best (or level with the best, at 5 years) gave 53 to 65
#: updates per epoch and the next larger one, which scored lower from 10 years on, 27
#: to 33 (``docs/benchmarks.md``, section 2); 45 lies between, so records of those
#: lengths get 16, 32 and 128.
TARGET_UPDATES_PER_EPOCH = 45
#: Fewer updates per epoch than this warn: the epochs that early stopping and growth
#: count become too coarse to train in.
MIN_UPDATES_PER_EPOCH = 10
#: Fewer validation windows than this (days, on a daily record) warn when the network
#: may grow: a validation part shorter than a year misses part of the seasonal cycle,
#: so the NSE that decides growth judges one season.
MIN_VALIDATION_WINDOWS = 365


class ShortRecordWarning(UserWarning):
    """The record is too short for a part of the training recipe (see the message)."""


def updates_per_epoch(n_train_windows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: every training window once, the last batch partial."""
    return math.ceil(n_train_windows / batch_size)


def auto_batch_size(n_train_windows: int) -> int:
    """The batch size of ``batch_size="auto"`` for a record with this many training windows.

    The largest of :data:`AUTO_BATCH_SIZES` that gives at least
    :data:`TARGET_UPDATES_PER_EPOCH` updates per epoch; the smallest where none does.

    Examples
    --------
    >>> auto_batch_size(7000)  # the first 25 of 31 years of daily data
    128
    >>> auto_batch_size(2000)  # the first 8 of 10 years
    32
    >>> auto_batch_size(850)   # the first 4 of 5 years
    16
    """
    fitting = [b for b in AUTO_BATCH_SIZES
               if updates_per_epoch(n_train_windows, b) >= TARGET_UPDATES_PER_EPOCH]
    return max(fitting) if fitting else min(AUTO_BATCH_SIZES)


def resolve_batch_size(batch_size: int | str, n_train_windows: int) -> int:
    """The batch size a fit uses: ``batch_size`` itself, or the automatic one."""
    if batch_size == "auto":
        return auto_batch_size(n_train_windows)
    # (True is an Integral to Python: batches of 1, a slip, not a choice.)
    if isinstance(batch_size, Integral) and not isinstance(batch_size, bool) \
            and batch_size >= 1:
        return int(batch_size)
    raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")


def record_problems(
    *,
    n_train_windows: int,
    n_valid_windows: int,
    lookback: int,
    batch_size: int,
    may_grow: bool,
    lookback_that_fits: Callable[[], int] | None = None,
    shortest_training: tuple[object, int] | None = None,
    shortest_validation: tuple[object, int] | None = None,
) -> list[str]:
    """What the record cannot carry, one message per problem (empty when all is well).

    Parameters
    ----------
    n_train_windows, n_valid_windows : int
        Windows in the training and the validation part of the fit.
    lookback : int
        Rows per window.
    batch_size : int
        The batch size the fit uses.
    may_grow : bool
        Whether growth can insert a layer (the validation part then judges growth).
    lookback_that_fits : callable, optional
        Returns the largest lookback whose training windows are at least the rows it
        spends on history, or None where even ``lookback=1`` leaves fewer than 2
        training windows; named in the message about the lookback.
    shortest_training, shortest_validation : tuple, optional
        With several series: the label of the series with the fewest training
        (validation) windows and their number. The lookback and the validation part
        are a matter of each series (every one spends rows on history and must span a
        season), the updates per epoch of all of them together.

    Returns
    -------
    list of str
    """
    problems = []
    updates = updates_per_epoch(n_train_windows, batch_size)
    if updates < MIN_UPDATES_PER_EPOCH:
        if n_train_windows < MIN_UPDATES_PER_EPOCH:  # no batch size helps
            said = (f"{n_train_windows} training windows give at most {n_train_windows} "
                    "updates per epoch")
            remedy = "a longer record"
        else:
            said = (f"{n_train_windows} training windows in batches of {batch_size} give "
                    f"{updates} updates per epoch")
            # The largest batch with ceil(n / b) >= MIN, i.e. b < n / (MIN - 1).
            largest = math.ceil(n_train_windows / (MIN_UPDATES_PER_EPOCH - 1)) - 1
            remedy = f"at most batch_size={largest}"
            # "auto" is a remedy only where its own choice gives enough updates (its
            # smallest batch does not on the shortest records).
            if updates_per_epoch(n_train_windows, auto_batch_size(n_train_windows)) \
                    >= MIN_UPDATES_PER_EPOCH:
                remedy = f"batch_size='auto' or {remedy}"
        problems.append(
            f"{said}, fewer than {MIN_UPDATES_PER_EPOCH}: early stopping and growth count "
            f"epochs the network barely trains in; use {remedy}"
        )
    history = 2 * (lookback - 1)
    where, n_train = _prefix_and_count(shortest_training, n_train_windows)
    if n_train < history:
        remedy = "use a shorter lookback or a longer record"
        if lookback_that_fits is not None:
            fitting = lookback_that_fits()
            remedy = (f"use a shorter lookback (at most lookback={fitting}) or a longer "
                      "record" if fitting is not None else
                      "no lookback leaves it 2 training windows: use a longer record")
        problems.append(
            f"{where}only {n_train} training windows for lookback={lookback}: the first "
            f"window's history and the gap before the validation part take "
            f"{history} rows, more than the training targets; {remedy}"
        )
    where, n_valid = _prefix_and_count(shortest_validation, n_valid_windows)
    if may_grow and n_valid < MIN_VALIDATION_WINDOWS:
        problems.append(
            f"{where}the validation part has {n_valid} windows, fewer than "
            f"{MIN_VALIDATION_WINDOWS} (a year of days): the validation NSE that decides "
            "growth misses part of the seasonal cycle; raise validation_fraction, use a "
            "longer record, or fix the depth (max_layers=initial_num_layers)"
        )
    return problems


def _prefix_and_count(shortest: tuple[object, int] | None, total: int) -> tuple[str, int]:
    """The prefix that names a series (none for one series) and its count of windows."""
    if shortest is None:
        return "", total
    label, count = shortest
    return f"series {label!r}: ", count
