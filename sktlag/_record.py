"""The record of a fit: history key names, growth decisions and their table.

Training writes this record and everything else reads it (the estimator's fitted
attributes, reports, plots, model files), so the names and conversions live here once:

- the keys of the per-epoch history (skorch's ``History``);
- the rules that end growth;
- growth decisions as plain dicts, as a table (one row per decision, one column per
  candidate position) and back, and their one-line description;
- the architectures tried, summarized from the history.

This module depends on nothing else in the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------- history keys
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
#: Mean validation NSE over the outputs where it is defined.
VALID_NSE = "valid_nse"
#: What checkpoints and plateaus follow: the validation NSE, or ``1 - MSE`` for an
#: output whose validation target is constant (see ``callbacks.validation_score``).
VALID_SCORE = "valid_score"
#: Moving average of ``valid_score`` over the current architecture's last epochs (NaN
#: until the architecture has trained a full window).
VALID_SCORE_MA = "valid_nse_ma"
#: True in the row of the epoch whose weights the fitted network holds.
BEST = "valid_nse_best"
N_LAYERS = "n_layers"
PLATEAU = "plateau"
#: Position after which a layer was inserted at the end of the epoch.
LAYER_ADDED = "layer_added"
#: The reason growth ended, in the row of the epoch that decided it.
GROWTH_STOPPED = "growth_stopped"
#: True for an epoch that ended with a NaN or inf loss or parameters.
NON_FINITE = "non_finite"
#: Keys that would only clutter the printed epoch table.
QUIET_KEYS = (BEST, PLATEAU, GROWTH_STOPPED, LAYER_ADDED, VALID_SCORE, NON_FINITE)

# ---------------------------------------------------------------------- rules
#: The ``rule`` of a decision that inserted a layer.
INSERTED = "inserted"
#: The rules that can end growth: the grown architecture did not improve validation by
#: ``min_improvement``; no derivative exceeded the threshold; the depth limit; a
#: decision whose numbers were not finite.
STOP_RULES = ("validation", "threshold", "max_layers", "not_computable")
#: What else can end a fit (``growth_stop_rule_``): the epoch budget, skorch's
#: ``EarlyStopping`` among the user's callbacks, or an interrupt.
FIT_END_RULES = ("max_epochs", "early_stopping", "interrupted")

# ---------------------------------------------------------------------- decisions
#: Per-position lists of a decision and the prefix of their table columns.
_POSITION_LISTS = {
    "derivatives": "derivative_",
    "relative_derivatives": "relative_derivative_",
    "holdout_statistics": "holdout_statistic_",
}
#: What each ``criterion`` compares with the threshold: the decision's list and its label.
_CRITERION_LISTS = {
    "relative": ("relative_derivatives", "relative derivatives"),
    "holdout": ("holdout_statistics", "held-out statistics"),
}
_RAW = ("derivatives", "derivatives")
#: The fields of a decision besides its per-position lists: the table has the first two,
#: then the per-position columns, then the others.
DECISION_FIELDS = (
    "epoch", "n_layers_before", "position", "inserted", "rule", "reason",
    "architecture_score", "criterion", "scale", "sign", "backtracking_steps", "n_hvp",
    "hessian_products", "loss_before", "loss_after", "seconds",
)
_INTEGER_FIELDS = ("epoch", "n_layers_before", "position", "backtracking_steps", "n_hvp")


def _position_columns(columns: Iterable, prefix: str) -> list[str]:
    """Columns ``<prefix><k>`` in the order of ``k``."""
    found = [str(c) for c in columns if str(c).startswith(prefix)
             and str(c)[len(prefix):].isdigit()]
    return sorted(found, key=lambda c: int(c[len(prefix):]))


def decision_table(decisions: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Growth decisions as a table: one row each, one column per candidate position.

    The columns are ``epoch``, ``n_layers_before``, ``derivative_1 .. derivative_k``,
    ``relative_derivative_1 .. relative_derivative_k``,
    ``holdout_statistic_1 .. holdout_statistic_k`` (each list's columns empty where a
    decision had fewer positions; the held-out columns only where some decision
    computed held-out statistics), then the other fields of
    :data:`DECISION_FIELDS`: ``position`` (where the layer went), ``inserted``,
    ``rule``, ``reason``, ``architecture_score``, ``criterion``, ``scale``, ``sign``,
    ``backtracking_steps``, ``n_hvp``, ``hessian_products``, ``loss_before``,
    ``loss_after``, ``seconds``.
    """
    rows = []
    for decision in decisions:
        row = {k: v for k, v in decision.items() if k not in _POSITION_LISTS}
        for key, prefix in _POSITION_LISTS.items():
            for position, value in enumerate(decision.get(key) or [], start=1):
                row[f"{prefix}{position}"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    lists = [c for prefix in _POSITION_LISTS.values()
             for c in _position_columns(frame.columns, prefix)]
    others = [c for c in frame.columns if c not in DECISION_FIELDS and c not in lists]
    lead, rest = DECISION_FIELDS[:2], DECISION_FIELDS[2:]
    return frame.reindex(columns=[*lead, *lists, *rest, *others])


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return None if math.isnan(value) else float(value)
    return value


def decisions_from_table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The decisions of :func:`decision_table` back as dicts of plain values.

    Missing values become None; per-position values are lists cut to the depth of
    the decision (empty where none was computed; a position whose value could not be
    computed stays in place as NaN). Tables of older model files, which lack some
    columns, give None for those fields.
    """
    lists = {key: _position_columns(frame.columns, prefix)
             for key, prefix in _POSITION_LISTS.items()}
    decisions = []
    for record in frame.to_dict("records"):
        entry = {field: _plain(record.get(field)) for field in DECISION_FIELDS}
        for field in _INTEGER_FIELDS:
            if entry[field] is not None:
                entry[field] = int(entry[field])
        depth = entry["n_layers_before"]
        for key, columns in lists.items():
            values = [float(record[c]) for c in columns][:depth]
            entry[key] = [] if all(math.isnan(v) for v in values) else values
        if entry["rule"] is None and entry["inserted"] is not None:
            # Files written before decisions carried their rule.
            entry["rule"] = INSERTED if entry["inserted"] else None
        decisions.append(entry)
    return decisions


def _products_label(decision: dict[str, Any]) -> str:
    # Decisions of older model files do not say how their products were computed.
    kind = decision.get("hessian_products")
    return f"{kind} " if kind else ""


def describe_decision(decision: dict[str, Any]) -> str:
    """One line on a growth decision: epoch, depth, derivatives, what happened."""
    key, label = _CRITERION_LISTS.get(decision.get("criterion"), _RAW)
    if not decision.get(key):
        key, label = _RAW
    values = decision.get(key)
    shown = ", ".join(f"{v:.3g}" for v in values or [])
    head = f"epoch {decision['epoch']}: {decision['n_layers_before']} layer(s)"
    if values:
        head += f", {label} [{shown}]"
    if decision.get("inserted"):
        return (
            f"{head} -> residual layer inserted after layer {decision['position']} "
            f"(scale {decision['scale']:.3g}, {decision['backtracking_steps']} backtracking "
            f"steps, {decision['n_hvp']} {_products_label(decision)}HVPs, "
            f"{decision['seconds']:.2f} s)"
        )
    return f"{head} -> growth stops: {decision['reason']}"


# ---------------------------------------------------------------------- architectures
def architecture_score(rows, monitor: str = VALID_SCORE,
                       ma_key: str = VALID_SCORE_MA) -> float:
    """How one architecture competes with the others: from its history rows.

    Its best moving average of ``monitor`` (``ma_key``, NaN until the architecture has
    trained a full window); an architecture that ended before it had one scores the mean
    of ``monitor`` over all its epochs. Missing or non-finite scores count as -inf.
    """
    averages = [row.get(ma_key, math.nan) for row in rows]
    full = [float(v) for v in averages if v is not None and not math.isnan(v)]
    if full:
        return max(full)
    scores = [row.get(monitor) for row in rows]
    if not scores:
        return -math.inf
    return float(np.mean([v if v is not None and math.isfinite(v) else -math.inf
                          for v in scores]))


def architectures(history) -> list[dict[str, Any]]:
    """One entry per architecture of a history, in the order they trained.

    Each has ``n_layers``, ``first_epoch``, ``last_epoch``, ``epochs``,
    ``best_valid_nse`` and ``best_epoch`` (its best single epoch) and
    ``best_valid_nse_ma`` (its :func:`architecture_score`).
    """
    groups: list[list] = []
    for row in history:
        depth = row.get(N_LAYERS)
        if depth is None:
            continue
        if not groups or groups[-1][0][N_LAYERS] != depth:
            groups.append([])
        groups[-1].append(row)
    found = []
    for rows in groups:
        arch = {N_LAYERS: rows[0][N_LAYERS], "first_epoch": rows[0][EPOCH],
                "last_epoch": rows[-1][EPOCH], "epochs": len(rows),
                "best_valid_nse": -math.inf, "best_epoch": None,
                "best_valid_nse_ma": architecture_score(rows)}
        for row in rows:
            nse = row.get(VALID_NSE, -math.inf)
            if nse > arch["best_valid_nse"]:
                arch["best_valid_nse"], arch["best_epoch"] = float(nse), row[EPOCH]
        found.append(arch)
    return found


def column(history, key: str) -> np.ndarray:
    """The values of ``key`` over the epochs of ``history`` (NaN where not recorded)."""
    return np.array([row.get(key, np.nan) for row in history], dtype=float)
