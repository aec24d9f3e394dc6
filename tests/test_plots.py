"""The figures say what a hydrologist reads off them: whole layers, plurals, units."""

from functools import cache

import numpy as np
import pandas as pd
import pytest

from sktlag import TLAGEnsemble, TLAGRegressor
from sktlag.datasets import load_lahn
from sktlag.plots import plot_evolution, plot_prediction

from .conftest import FAST, make_series
from .fitted import study


@cache
def one_layer_model() -> TLAGRegressor:
    """A fit that never grew: one layer from the first epoch to the last."""
    X, y = make_series(n_rows=200)
    return TLAGRegressor(**{**FAST, "max_layers": 1, "max_epochs": 3},
                         random_state=0).fit(X, y)


def _visible_ticks(axis, limits) -> np.ndarray:
    low, high = sorted(limits)
    ticks = np.asarray(axis.get_ticklocs())
    return ticks[(ticks >= low) & (ticks <= high)]


def test_depth_axis_has_whole_layer_ticks_when_the_depth_never_changed():
    fig = plot_evolution(one_layer_model())
    ax_depth = fig.axes[1]
    fig.canvas.draw()  # ticks as drawn, after the limits are final
    ticks = _visible_ticks(ax_depth.yaxis, ax_depth.get_ylim())
    assert len(ticks) >= 1
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_depth_axis_of_a_grown_model_has_whole_layer_ticks():
    fig = plot_evolution(study().model)
    ax_depth = fig.axes[1]
    fig.canvas.draw()
    ticks = _visible_ticks(ax_depth.yaxis, ax_depth.get_ylim())
    assert len(ticks) >= 2
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_nse_axis_stays_upright_when_every_score_is_below_the_floor():
    import copy

    model = copy.deepcopy(one_layer_model())
    for row in model.history_:
        row["valid_nse"] = row["valid_score"] = row["valid_nse_ma"] = -3.0
    ens = TLAGEnsemble(TLAGRegressor(**{**FAST, "max_layers": 1, "max_epochs": 3}),
                       n_members=1, random_state=0)
    ens.estimators_ = [model]
    for figure in (plot_evolution(model), plot_evolution(ens)):
        bottom, top = figure.axes[0].get_ylim()
        assert bottom < -1 < top  # the floor in view, not an upside-down axis


def test_prediction_names_and_dates_of_the_wrong_length_are_named():
    y = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match="names has 1 entry for 2 outputs"):
        plot_prediction(y, y, names=["A"])
    with pytest.raises(ValueError, match="names has 3 entries for 2 outputs"):
        plot_prediction(y, y, names=["A", "B", "C"])
    with pytest.raises(ValueError, match="dates has 9 entries for 10 rows"):
        plot_prediction(y, y, pd.date_range("2000-01-01", periods=9))


def test_evolution_title_counts_in_singular_and_plural():
    title = plot_evolution(one_layer_model()).get_suptitle()
    assert "0 insertions" in title and "fitted model: 1 layer " in title
    assert "1 layers" not in title
    grown = study().model[-1]
    title = plot_evolution(study().model).get_suptitle()
    n = len([row for row in grown.history_ if row.get("layer_added") is not None])
    assert f"{n} insertion{'' if n == 1 else 's'} in" in title
    assert f"fitted model: {grown.n_layers_} layers" in title


def test_ensemble_member_labels_use_the_singular_for_one_layer():
    X, y = make_series(n_rows=200)
    ens = TLAGEnsemble(TLAGRegressor(**{**FAST, "max_layers": 1, "max_epochs": 3}),
                       n_members=2, random_state=0).fit(X, y)
    ax_nse = plot_evolution(ens).axes[0]
    labels = ax_nse.get_legend_handles_labels()[1]
    assert labels == ["member 1 (1 layer)", "member 2 (1 layer)"]


@pytest.mark.parametrize(("name", "unit"), [
    ("q_m3s", "m³/s"), ("discharge_m3s", "m³/s"), ("Q [m3/s]", "m³/s"), ("flow_cms", "m³/s"),
    ("Qobs(mm/d)", "mm/d"), ("runoff_mm_day", "mm/d"), ("q_cfs", "ft³/s"), ("Q (l/s)", "l/s"),
    ("Q_ls", "l/s"),
    ("q_kalkofen", None), ("Q", None), ("discharge", None), ("q_ms", None),
])
def test_unit_in_name(name, unit):
    from sktlag.io import unit_in_name

    assert unit_in_name(name) == unit


def _ylabel(fig) -> str:
    return fig.axes[0].get_ylabel()


def test_prediction_axis_names_the_unit_of_the_column():
    obs = pd.Series(np.arange(10.0), name="q_m3s")
    assert _ylabel(plot_prediction(obs, obs + 1, names=["q_m3s"])) == "discharge (m³/s)"
    # The name of the series says it as well as the names argument.
    assert _ylabel(plot_prediction(obs, obs + 1)) == "discharge (m³/s)"


def test_prediction_axis_without_a_known_unit_says_discharge():
    obs = np.arange(10.0)
    assert _ylabel(plot_prediction(obs, obs + 1, names=["gauge"])) == "discharge"


def test_prediction_unit_option_wins():
    obs = pd.Series(np.arange(10.0), name="q_m3s")
    assert _ylabel(plot_prediction(obs, obs + 1, unit="l/s")) == "discharge (l/s)"


def test_prediction_axis_takes_the_unit_of_the_embedded_data():
    X, y = load_lahn(return_X_y=True, as_frame=True)
    y = y.iloc[-30:]
    fig = plot_prediction(y, y * 1.1, y.index, names=[y.name])
    assert _ylabel(fig) == "discharge (m³/s)"
    bunch = load_lahn(as_frame=True, target=["q_kalkofen", "q_leun"])
    assert bunch.target_units == ["m³/s", "m³/s"]
    target = bunch.target.iloc[-30:]
    fig = plot_prediction(target, target, target.index, names=bunch.target_names)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "discharge (q_kalkofen, m³/s)", "discharge (q_leun, m³/s)"]


def test_artifact_prediction_figure_has_the_unit(tmp_path, monkeypatch):
    from sktlag import report

    labels = []
    original = report.plot_prediction

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        labels.append(fig.axes[0].get_ylabel())
        return fig

    monkeypatch.setattr(report, "plot_prediction", spy)
    s = study()
    y_test = s.y_test.rename("discharge_m3s")
    report.write_artifacts(s.model, tmp_path / "out", X_test=s.X_test, y_test=y_test)
    report.write_artifacts(s.model, tmp_path / "cfs", X_test=s.X_test, y_test=y_test,
                           unit="ft³/s")
    assert labels == ["discharge (m³/s)", "discharge (ft³/s)"]


def test_dollar_signs_in_names_are_drawn_as_text():
    import io

    # matplotlib reads text between two $ as mathematics: a column name such as this
    # one failed to draw (after the whole fit, in `sktlag run`), others came out garbled.
    obs = pd.Series(np.arange(10.0), name=r"Q_$\frac$ [m3/s]")
    fig = plot_prediction(obs, obs + 1)
    fig.savefig(io.BytesIO(), format="png")
    ax = fig.axes[0]
    assert not ax.title.get_parse_math() and not ax.yaxis.label.get_parse_math()
    assert r"Q_$\frac$" in ax.get_title()


def test_an_observed_day_between_gaps_is_drawn():
    # A line needs two neighbouring points: observations every other day drew nothing,
    # while the title scored them.
    obs = np.full(20, np.nan)
    obs[::2] = np.arange(10.0)
    obs[6:9] = [3.0, 3.5, 4.0]  # a stretch of three observed days is a line of its own
    fig = plot_prediction(obs, np.arange(20.0))
    drawn = [line for line in fig.axes[0].get_lines() if line.get_label() == "observed"
             or line.get_marker() not in ("None", None, "")]
    shown = set()
    for line in drawn:
        xs, ys = line.get_data()
        if line.get_marker() in ("None", None, ""):  # a line shows stretches of 2 or more
            finite = np.isfinite(np.asarray(ys, dtype=float))
            neighbours = np.convolve(finite, [1, 0, 1], mode="same") > 0
            shown |= set(np.asarray(xs)[finite & neighbours].tolist())
        else:
            shown |= set(np.asarray(xs)[np.isfinite(np.asarray(ys, dtype=float))].tolist())
    assert shown >= set(np.flatnonzero(np.isfinite(obs)).tolist())
