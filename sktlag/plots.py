"""Figures of a fit: growth evolution, losses, observed against predicted discharge.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so no
GUI backend and no global figure state are involved (safe in scripts, servers and
threads). Save one with ``fig.savefig("name.png", dpi=150)`` or show it in a notebook.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ._record import (
    BEST,
    EPOCH,
    LAYER_ADDED,
    N_LAYERS,
    TRAIN_LOSS,
    VALID_LOSS,
    VALID_NSE,
    VALID_SCORE_MA,
    column,
)
from .ensemble import final_ensemble, members_of
from .estimator import final_regressor
from .io import unit_in_name
from .metrics import kge, nse, output_names

__all__ = ["history_arrays", "plot_evolution", "plot_loss", "plot_prediction"]

# NSE can start far below zero; the axis shows at least this range and clips below it.
_NSE_FLOOR = -1.0
_OBSERVED = "#222222"
_PREDICTED = "#d9480f"
_NSE_COLOR = "#1c7ed6"
_MA_COLOR = "#0b3d91"
_TRAIN_COLOR = "#2b8a3e"
_VALID_COLOR = "#c2255c"
_INSERT_COLOR = "#868e96"


def _count(n: int, noun: str) -> str:
    """``"1 layer"``, ``"2 layers"``, ``"0 layers"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _whole_numbers(axis) -> None:
    # Layer counts and epochs are whole numbers. min_n_ticks=1: with the default (2) a
    # depth that never changed (view 0.5 to 1.5 holds one integer) got ticks at 0.1 steps.
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _history(model):
    """The fitted TLAGRegressor of ``model`` and its skorch history."""
    est = final_regressor(model)
    return est, est.history_


def history_arrays(model) -> dict[str, np.ndarray | int | None]:
    """Per-epoch arrays of a fit, as plotted by :func:`plot_evolution`.

    Returns
    -------
    dict
        ``epoch``, ``valid_nse``, ``valid_nse_ma``, ``n_layers``, ``train_loss``,
        ``valid_loss`` (arrays, NaN where not recorded), ``insertions`` (epochs at whose
        end a layer was inserted) and ``best_epoch`` (the epoch of the returned model,
        or None).
    """
    est, history = _history(model)
    keys = (EPOCH, VALID_NSE, VALID_SCORE_MA, N_LAYERS, TRAIN_LOSS, VALID_LOSS)
    arrays = {key: column(history, key) for key in keys}
    arrays["insertions"] = np.array(
        [row[EPOCH] for row in history if row.get(LAYER_ADDED) is not None], dtype=float
    )
    best = getattr(est, "best_epoch_", None)
    if best is None:
        # Model files written before the best epoch was stored: the flagged row.
        flagged = [row[EPOCH] for row in history if row.get(BEST)]
        best = flagged[-1] if flagged else None
    arrays["best_epoch"] = None if best is None else int(best)
    return arrays


def _mark_insertions(ax, insertions: np.ndarray, label: bool) -> None:
    # A layer inserted at the end of epoch e first trains in epoch e + 1.
    for i, epoch in enumerate(insertions):
        ax.axvline(
            epoch + 0.5, color=_INSERT_COLOR, linestyle="--", linewidth=1.0,
            label="layer inserted" if label and i == 0 else None,
        )


def _loss_axes(ax, data: dict, insertions_label: bool) -> None:
    epochs = data[EPOCH]
    ax.plot(epochs, data[TRAIN_LOSS], color=_TRAIN_COLOR, label="training loss")
    if np.isfinite(data[VALID_LOSS]).any():
        ax.plot(epochs, data[VALID_LOSS], color=_VALID_COLOR, label="validation loss")
    losses = np.concatenate([data[TRAIN_LOSS], data[VALID_LOSS]])
    losses = losses[np.isfinite(losses)]
    if len(losses) and (losses > 0).all():
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    _mark_insertions(ax, data["insertions"], insertions_label)
    ax.set_ylabel("loss (MSE, standardized)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")


def _scores_text(obs: np.ndarray, sim: np.ndarray) -> str:
    """``": NSE x, KGE y"`` where both are defined, else an empty string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return f": NSE {nse(obs, sim):.3f}, KGE {kge(obs, sim):.3f}"
    except ValueError:
        return ""


def _title_suffix(model) -> str:
    interrupted = any(getattr(m, "interrupted_", False) for m in members_of(model))
    return " (training interrupted)" if interrupted else ""


def plot_evolution(model, *, figsize: tuple[float, float] = (10.0, 9.0)) -> Figure:
    """Validation NSE, depth and losses per epoch, with the growth steps marked.

    Top: validation NSE and its moving average (the plateau criterion), with dashed
    lines where layers were inserted and a star at the epoch whose state is the fitted
    model. Middle: the number of LSTM layers. Bottom: training and validation loss.

    For an ensemble: the validation NSE (top) and the depth (bottom) of every member,
    each member's fitted epoch starred.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted regressor or ensemble, or a pipeline ending in one.
    figsize : tuple of float, default=(10, 9)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if final_ensemble(model) is not None:
        return _plot_member_evolution(model, figsize)
    est, _ = _history(model)
    data = history_arrays(model)
    epochs = data[EPOCH]
    fig = Figure(figsize=figsize, layout="constrained")
    ax_nse, ax_depth, ax_loss = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 2]}
    )

    nse_values = data[VALID_NSE]
    ax_nse.plot(epochs, nse_values, color=_NSE_COLOR, marker="o", markersize=2.5,
                linewidth=0.8, alpha=0.7, label="validation NSE")
    ax_nse.plot(epochs, data[VALID_SCORE_MA], color=_MA_COLOR, linewidth=2.0,
                label="moving average")
    _mark_insertions(ax_nse, data["insertions"], label=True)
    best = data["best_epoch"]
    if best is not None:
        value = nse_values[epochs == best][0]
        ax_nse.plot([best], [value], marker="*", markersize=14, color="#f08c00",
                    linestyle="none", label=f"best epoch {best} (NSE {value:.3f})")
    finite = nse_values[np.isfinite(nse_values)]
    if len(finite):
        low = max(float(finite.min()), _NSE_FLOOR)
        high = max(min(float(finite.max()), 1.0), low)  # all below the floor: the floor
        pad = 0.05 * max(high - low, 0.1)
        ax_nse.set_ylim(low - pad, min(high + pad, 1.02))
        if finite.min() < _NSE_FLOOR:
            ax_nse.text(0.01, 0.02, f"values below {_NSE_FLOOR:g} not shown",
                        transform=ax_nse.transAxes, fontsize="small", color="#495057")
    ax_nse.set_ylabel("validation NSE")
    ax_nse.grid(True, alpha=0.3)
    ax_nse.legend(loc="lower right", fontsize="small")

    ax_depth.step(epochs, data[N_LAYERS], where="mid", color="#5f3dc4", linewidth=2.0)
    if best is not None:
        ax_depth.plot([best], [est.n_layers_], marker="*", markersize=14, color="#f08c00",
                      linestyle="none")
    _mark_insertions(ax_depth, data["insertions"], label=False)
    _whole_numbers(ax_depth.yaxis)
    depths = data[N_LAYERS][np.isfinite(data[N_LAYERS])]
    if len(depths):
        ax_depth.set_ylim(depths.min() - 0.5, depths.max() + 0.5)
    ax_depth.set_ylabel("LSTM layers")
    ax_depth.grid(True, alpha=0.3)

    _loss_axes(ax_loss, data, insertions_label=False)
    ax_loss.set_xlabel("epoch")
    _whole_numbers(ax_loss.xaxis)

    fitted = f"fitted model: {_count(est.n_layers_, 'layer')}"
    if best is not None:
        fitted += f" (epoch {best})"
    fig.suptitle(
        f"TLAG-LSTM growth: {_count(len(data['insertions']), 'insertion')} in "
        f"{_count(len(epochs), 'epoch')}, "
        f"{fitted}{_title_suffix(model)}"
    )
    return fig


def _plot_member_evolution(model, figsize) -> Figure:
    members = members_of(model)
    fig = Figure(figsize=figsize, layout="constrained")
    ax_nse, ax_depth = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colors = [f"C{i % 10}" for i in range(len(members))]
    lows, highs = [], []
    for i, (member, color) in enumerate(zip(members, colors, strict=True)):
        data = history_arrays(member)
        epochs, values = data[EPOCH], data[VALID_NSE]
        label = f"member {i + 1} ({_count(member.n_layers_, 'layer')})"
        ax_nse.plot(epochs, values, color=color, linewidth=1.0, label=label)
        ax_depth.step(epochs, data[N_LAYERS] + 0.04 * (i - len(members) / 2), where="mid",
                      color=color, linewidth=1.5)
        best = data["best_epoch"]
        if best is not None:
            ax_nse.plot([best], [values[epochs == best][0]], marker="*", markersize=11,
                        color=color, linestyle="none")
        finite = values[np.isfinite(values)]
        if len(finite):
            lows.append(max(float(finite.min()), _NSE_FLOOR))
            highs.append(max(min(float(finite.max()), 1.0), lows[-1]))
    if lows:
        pad = 0.05 * max(max(highs) - min(lows), 0.1)
        ax_nse.set_ylim(min(lows) - pad, min(max(highs) + pad, 1.02))
    ax_nse.set_ylabel("validation NSE")
    ax_nse.grid(True, alpha=0.3)
    ax_nse.legend(loc="lower right", fontsize="small")
    _whole_numbers(ax_depth.yaxis)
    ax_depth.set_ylabel("LSTM layers")
    ax_depth.set_xlabel("epoch")
    _whole_numbers(ax_depth.xaxis)
    ax_depth.grid(True, alpha=0.3)
    depths = ", ".join(str(m.n_layers_) for m in members)
    fig.suptitle(f"TLAG-LSTM ensemble of {len(members)}: fitted depths {depths} "
                 f"(stars: fitted epochs){_title_suffix(model)}")
    return fig


def plot_loss(model, *, figsize: tuple[float, float] = (9.0, 4.5)) -> Figure:
    """Training and validation loss per epoch, with the growth steps marked.

    For an ensemble, the losses of its first member.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted regressor or ensemble, or a pipeline ending in one.
    figsize : tuple of float, default=(9, 4.5)

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = history_arrays(members_of(model)[0])
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    _loss_axes(ax, data, insertions_label=True)
    ax.set_xlabel("epoch")
    _whole_numbers(ax.xaxis)
    ax.set_title(f"Training and validation loss{_title_suffix(model)}")
    return fig


def _units(y_true, names: list[str], unit) -> list[str | None]:
    """The unit of each output: the option, the data's attrs, or the output's name."""
    if isinstance(unit, str):
        return [unit] * len(names)
    if unit is not None:
        units = list(unit)
        if len(units) != len(names):
            raise ValueError(f"unit has {len(units)} entries for {len(names)} outputs")
        return units
    known = getattr(y_true, "attrs", {}).get("units", {})
    own = output_names(y_true, len(names))
    return [known.get(name) or known.get(mine) or unit_in_name(name) or unit_in_name(mine)
            for name, mine in zip(names, own, strict=True)]


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def plot_prediction(
    y_true,
    y_pred,
    dates: Sequence | pd.DatetimeIndex | None = None,
    *,
    names: Sequence[str] | None = None,
    title: str = "Test period",
    ylabel: str = "discharge",
    figsize: tuple[float, float] | None = None,
    lower=None,
    upper=None,
    coverage: float | None = None,
    unit: str | Sequence[str | None] | None = None,
) -> Figure:
    """Observed against predicted series, one panel per output, NSE and KGE in the titles.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
        Observed and predicted values; rows with a NaN observation are drawn as gaps
        and left out of the scores.
    dates : sequence of datetime-like, optional
        The date of each row; the time axis shows dates. Without it, the axis counts
        rows.
    names : sequence of str, optional
        Output names for the panel titles; by default the name of ``y_true`` (a
        Series) or its columns (a DataFrame), else ``output_0`` ...
    title : str, default="Test period"
        Start of every panel title.
    ylabel : str, default="discharge"
        Label of the value axes; the unit follows it in parentheses.
    figsize : tuple of float, optional
        Default: 11 inches wide, 4 inches per output.
    lower, upper : array-like of the shape of ``y_pred``, optional
        A prediction interval, drawn as a band.
    coverage : float, optional
        Its nominal coverage, for the legend.
    unit : str or sequence of str, optional
        The unit of the values (one for all outputs, or one per output). By default
        the data say it: ``y_true.attrs["units"]`` (as in the data of
        :func:`~sktlag.datasets.load_lahn`), else a name that ends in a unit
        (:func:`~sktlag.io.unit_in_name`: ``q_m3s``, ``Q [m3/s]``, ``flow_cms``);
        otherwise the axis has no unit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    obs = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    sim = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    if obs.shape != sim.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {obs.shape} and {sim.shape}")
    k = obs.shape[1]
    names = list(names) if names is not None else [str(n) for n in output_names(y_true, k)]
    if len(names) != k:
        raise ValueError(f"names has {_entries(len(names))} for {k} outputs")
    if dates is not None and len(dates) != len(obs):
        raise ValueError(f"dates has {_entries(len(dates))} for {len(obs)} rows")
    units = _units(y_true, names, unit)
    x = pd.DatetimeIndex(dates) if dates is not None else np.arange(len(obs))
    fig = Figure(figsize=figsize or (11.0, 4.0 * k), layout="constrained")
    axes = np.atleast_1d(fig.subplots(k, 1, sharex=True, squeeze=False).ravel())
    band = None
    if lower is not None and upper is not None:
        band = (np.asarray(lower, dtype=float).reshape(sim.shape),
                np.asarray(upper, dtype=float).reshape(sim.shape))
    for j, ax in enumerate(axes):
        if band is not None:
            label = "interval" if coverage is None else f"{coverage:.0%} interval"
            ax.fill_between(x, band[0][:, j], band[1][:, j], color=_PREDICTED, alpha=0.2,
                            linewidth=0, label=label)
        ax.plot(x, obs[:, j], color=_OBSERVED, linewidth=1.0, label="observed")
        # A line joins neighbouring points only: a day observed between two gaps gets
        # a marker, or it would be scored in the title but never drawn.
        observed = np.isfinite(obs[:, j])
        beside = np.zeros_like(observed)
        beside[1:] |= observed[:-1]
        beside[:-1] |= observed[1:]
        alone = observed & ~beside
        if alone.any():
            ax.plot(x[alone], obs[alone, j], color=_OBSERVED, marker=".", markersize=4,
                    linestyle="none")
        ax.plot(x, sim[:, j], color=_PREDICTED, linewidth=1.0, alpha=0.85, label="predicted")
        seen = np.isfinite(obs[:, j]) & np.isfinite(sim[:, j])
        scores = _scores_text(obs[seen, j], sim[seen, j])
        # Names and units are the data's text: a $ in them is not mathematics.
        ax.set_title(f"{title}, {names[j]}{scores}", parse_math=False)
        about = ([] if k == 1 else [names[j]]) + ([units[j]] if units[j] else [])
        ax.set_ylabel(f"{ylabel} ({', '.join(about)})" if about else ylabel,
                      parse_math=False)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    bottom = axes[-1]
    if dates is not None:
        locator = mdates.AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        bottom.set_xlabel("date")
    else:
        bottom.set_xlabel("row")
    return fig
