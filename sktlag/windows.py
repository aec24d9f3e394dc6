"""Sliding windows over a time-ordered 2-D array, without copying it.

A window *ending* at row ``t`` holds rows ``t - lookback + 1 .. t``; its target is row
``t`` of ``y``. Datasets keep the whole series once and gather the windows of a batch
when the batch is drawn, so memory stays at the size of the input, whatever the
lookback.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

__all__ = [
    "WindowDataset",
    "chronological_split",
    "collate_windows",
    "fewest_windows",
    "fit_split",
    "group_starts",
    "holdout_blocks",
    "minimum_rows",
    "padded_series",
    "sliding_windows",
    "window_ends",
]


def sliding_windows(X: np.ndarray, lookback: int) -> np.ndarray:
    """All full windows of ``X`` as a read-only view of shape ``(n - lookback + 1, lookback, F)``.

    No data is copied: the view shares memory with ``X``.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if not 1 <= lookback <= len(X):
        raise ValueError(f"lookback must be between 1 and {len(X)} rows, got {lookback}")
    view = np.lib.stride_tricks.sliding_window_view(X, lookback, axis=0)
    return view.transpose(0, 2, 1)


def group_starts(groups: np.ndarray | None, n_rows: int) -> np.ndarray:
    """For every row, the index of the first row of its group (0 without groups).

    Each group must be one contiguous, time-ordered block of rows.
    """
    if groups is None:
        return np.zeros(n_rows, dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise ValueError(f"groups must have shape ({n_rows},), got {groups.shape}")
    # A missing label is never equal to itself: it would split its series row by row.
    missing = pd.isna(groups)
    if missing.any():
        raise ValueError(
            f"groups has no label at row {int(np.argmax(missing))} ({int(missing.sum())} "
            "rows in total); every row needs the label of its series"
        )
    change = np.ones(n_rows, dtype=bool)
    change[1:] = groups[1:] != groups[:-1]
    block_first = np.flatnonzero(change)
    labels = groups[block_first]
    # Labels are compared for equality only: any hashable ids, of mixed types or dates.
    again = pd.Series(pd.factorize(labels)[0]).duplicated().to_numpy()
    if again.any():
        repeated = pd.Index(labels)[int(np.argmax(again))]  # dates as dates
        repeated = repeated.item() if isinstance(repeated, np.generic) else repeated
        raise ValueError(
            f"each group must be one contiguous block of rows; group {repeated!r} appears "
            "in more than one block (sort the rows by group, then by time)"
        )
    return np.repeat(block_first, np.diff(np.append(block_first, n_rows)))


def window_ends(n_rows: int, lookback: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Rows at which a full window ends without crossing a group boundary."""
    starts = group_starts(groups, n_rows)
    rows = np.arange(n_rows, dtype=np.int64)
    return rows[rows - lookback + 1 >= starts]


def chronological_split(
    ends: np.ndarray,
    valid_fraction: float,
    lookback: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split window ends into earlier training and later validation windows.

    Within each group the last ``valid_fraction`` of the windows validate; the
    ``lookback - 1`` windows before them are dropped so that no training window shares
    a row with a validation window.
    """
    train, valid = [ends[:0]], [ends[:0]]  # two empty parts when there are no windows
    # The ends are in row order and every group is one block of rows, so each group's
    # windows are one stretch of ``ends``: cut where the label changes.
    codes = (np.zeros(len(ends), dtype=np.int64) if groups is None
             else pd.factorize(np.asarray(groups)[ends])[0])
    for block in np.split(ends, np.flatnonzero(np.diff(codes)) + 1):
        if not len(block):
            continue
        n_valid = math.ceil(valid_fraction * len(block))
        n_train = len(block) - n_valid - (lookback - 1)
        train.append(block[: max(n_train, 0)])
        valid.append(block[len(block) - n_valid :])
    return np.concatenate(train), np.concatenate(valid)


def minimum_rows(lookback: int, valid_fraction: float) -> int:
    """The fewest rows of one series that :func:`chronological_split` divides into at
    least 2 training and 2 validation windows.

    With ``w`` windows the split validates on ``ceil(f * w)`` (``f * w`` rounded to a
    float) and trains on ``w - ceil(f * w) - (lookback - 1)``. Two training windows need
    ``w (1 - f) >= lookback + 1`` and two validation windows ``w f > 1``, up to the
    product's rounding (at most ``w * 2**-53``); the search for the first ``w`` that
    fits starts below both bounds with that allowance, since a fraction near 0 or 1
    needs billions of windows.
    """

    def fits(windows: int) -> bool:
        n_valid = math.ceil(valid_fraction * windows)
        return n_valid >= 2 and windows - n_valid - (lookback - 1) >= 2

    rounding = 2.0**-52  # twice the relative rounding of f * w
    bound = max((lookback + 1) / (1.0 - valid_fraction + rounding),
                1.0 / (valid_fraction * (1.0 + rounding)))
    windows = max(1, int(bound) - 2)
    while not fits(windows):
        windows += 1
    return windows + lookback - 1


def fit_split(
    y: np.ndarray,
    lookback: int,
    valid_fraction: float,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation window ends of a fit on targets ``y`` (rows x outputs).

    The windows (not crossing groups) whose target row has at least one observed
    (non-NaN) value, split by :func:`chronological_split`.
    """
    ends = window_ends(len(y), lookback, groups)
    ends = ends[~np.isnan(y[ends]).all(axis=1)]
    return chronological_split(ends, valid_fraction, lookback, groups)


def fewest_windows(ends: np.ndarray, groups: np.ndarray) -> tuple[object, int]:
    """The series with the fewest of the windows ending at rows ``ends``, and how many.

    ``groups`` labels every row; a series with none of the windows counts 0.
    """
    labels = pd.unique(pd.Series(groups))
    counts = pd.Series(groups[ends]).value_counts().reindex(labels, fill_value=0)
    return counts.idxmin(), int(counts.min())


def holdout_blocks(n_windows: int, n_samples: int, n_blocks: int = 8) -> list[np.ndarray]:
    """Positions of held-out windows in ``n_blocks`` consecutive stretches.

    The ``n_windows`` windows (in time order) are cut into ``n_blocks`` stretches of
    about equal length (fewer if there are fewer windows), and ``n_samples // n_blocks``
    windows (at least one) are taken evenly spaced from each. Every block covers its own
    part of the period, so the blocks are nearly independent samples although
    neighbouring windows overlap.
    """
    n_blocks = max(1, min(int(n_blocks), int(n_windows)))
    per_block = max(1, int(n_samples) // n_blocks)
    blocks = []
    for stretch in np.array_split(np.arange(int(n_windows)), n_blocks):
        take = np.linspace(0, len(stretch) - 1, min(per_block, len(stretch)))
        blocks.append(stretch[np.unique(np.round(take).astype(np.int64))])
    return blocks


def padded_series(
    X: np.ndarray,
    lookback: int,
    fill: np.ndarray,
    groups: np.ndarray | None = None,
    history: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``X`` with ``lookback - 1`` rows in front of every group, and where each row's window ends.

    The padding rows are ``fill`` (one value per feature); the last rows of the padding
    of the first group are replaced by ``history`` when given (real preceding rows).

    Returns
    -------
    series : ndarray of shape (n + n_groups * (lookback - 1), F)
    ends : ndarray of shape (n,)
        ``series[ends[i] - lookback + 1 : ends[i] + 1]`` is the window of row ``i``.
    """
    n, n_features = X.shape
    starts = group_starts(groups, n)
    block_first = np.unique(starts)
    pad = lookback - 1
    pieces, ends = [], np.empty(n, dtype=np.int64)
    offset = 0
    for i, first in enumerate(block_first):
        last = block_first[i + 1] if i + 1 < len(block_first) else n
        padding = np.broadcast_to(fill.astype(X.dtype), (pad, n_features)).copy()
        if i == 0 and history is not None and pad > 0:
            take = history[-pad:]
            padding[pad - len(take) :] = take
        pieces += [padding, X[first:last]]
        ends[first:last] = offset + pad + np.arange(last - first)
        offset += pad + last - first
    return np.concatenate(pieces), ends


class WindowDataset(Dataset):
    """Windows of a series, gathered per batch.

    Parameters
    ----------
    X : Tensor of shape (n_rows, n_features)
        The whole series (shared, never copied).
    y : Tensor of shape (n_rows, n_outputs) or None
        Targets by row.
    ends : ndarray of int
        Row at which each window ends; item ``i`` is the window ending at ``ends[i]``.
    lookback : int
        Rows per window.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None, ends: np.ndarray, lookback: int):
        self.X = X
        self.y = y
        self.ends = np.asarray(ends, dtype=np.int64)
        self.lookback = int(lookback)
        self._offsets = np.arange(-self.lookback + 1, 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int):
        Xb, yb = self.__getitems__([i])
        return Xb[0], yb[0]

    def __getitems__(self, indices):
        # One fancy-indexing gather per batch instead of one slice per window.
        rows = self.ends[np.asarray(indices, dtype=np.int64)]
        Xb = self.X[torch.from_numpy(rows[:, None] + self._offsets)]
        yb = self.y[torch.from_numpy(rows)] if self.y is not None else torch.zeros(len(rows))
        return Xb, yb

    def gather(self, indices, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows ``indices`` and their targets, on ``device``."""
        Xb, yb = self.__getitems__(indices)
        return Xb.to(device), yb.to(device)

    def gather_blocks(self, blocks, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`gather` of each block of indices."""
        return [self.gather(indices, device) for indices in blocks]


def collate_windows(batch):
    """The batch is already stacked by ``WindowDataset.__getitems__``."""
    return batch
