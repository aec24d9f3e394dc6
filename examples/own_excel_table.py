"""Fit on your own Excel table in the research layout and write the artifacts.

The research layout has the columns year, month, day, then the discharge, then one
column per station. This example writes such a workbook from the Lahn data into a
temporary folder (replace ``path`` with your file), reads it with
``sktlag.io.read_table`` (which checks dates and values and says exactly what is
wrong), fits on the first 80 % and scores the last 20 %.

Run ``python examples/own_excel_table.py`` or add ``--fast`` for a tiny smoke run.
"""

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sktlag
from sktlag.datasets import load_lahn
from sktlag.io import read_table
from sktlag.metrics import evaluate


def write_research_workbook(path: Path, n_rows: int | None) -> None:
    frame = load_lahn(as_frame=True).frame.iloc[:n_rows]
    table = pd.DataFrame({"Year": frame.index.year, "month": frame.index.month,
                          "day": frame.index.day})
    table["discharge"] = frame["q_kalkofen"].to_numpy()
    for station in ("p_dillenburg", "p_marburg", "p_leun", "p_kalkofen", "t_kalkofen"):
        table[station] = frame[station].to_numpy()
    table.to_excel(path, index=False)


def main(fast: bool) -> None:
    params = {"random_state": 0}
    if fast:
        params |= {**sktlag.PRESETS["fast"], "max_epochs": 6}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "my_basin.xlsx"
        write_research_workbook(path, 600 if fast else None)

        table = read_table(path)  # year, month, day first: the research layout
        print(f"{path.name}: {table.layout} layout, target {table.target_names[0]}, "
              f"stations {', '.join(table.feature_names)}, {len(table.X)} days")
        n_fit = int(0.8 * len(table.X))
        X_fit, X_test = table.X.iloc[:n_fit], table.X.iloc[n_fit:]
        y_fit, y_test = table.y.iloc[:n_fit], table.y.iloc[n_fit:]

        model = make_pipeline(StandardScaler(), sktlag.TLAGRegressor(**params))
        model.set_output(transform="pandas")
        model.fit(X_fit, y_fit)
        scores = evaluate(y_test, model.predict(X_test), metrics=["nse", "kge", "rmse"])
        print(scores.round(3).to_string())

        written = sktlag.write_artifacts(model, Path(folder) / "results", X_test=X_test,
                                         y_test=y_test, X_train=X_fit, y_train=y_fit)
        print("artifacts:", ", ".join(p.name for p in written.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    main(parser.parse_args().fast)
