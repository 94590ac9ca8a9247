"""Paper-style results tables built from run directories (never from typed-in numbers).

A run directory (:class:`~convlora_lite.training.rundir.RunDir`) holds its config (dataset, method,
seed, ...) and its metrics (``test``: split -> metric -> value, fractions in [0, 1]). :func:`collect_runs`
reads many of them into one long DataFrame, :func:`results_table` pivots it into the paper's
layout: one row per method (in the paper's order), one column per (dataset, test split, metric),
each cell the mean +- standard deviation over seeds, multiplied by 100 for display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from convlora_lite.errors import DataError
from convlora_lite.io import atomic_write
from convlora_lite.peft import METHOD_NAMES
from convlora_lite.training.run_data import run_spec
from convlora_lite.training.rundir import RunDir


def collect_runs(paths) -> pd.DataFrame:
    """One row per (run, test split, metric): columns dataset, method, seed, split, metric, value, run_dir.

    Only the metrics the dataset reports in the paper's table (``DatasetSpec.metrics``) are kept;
    per-class IoU lists are left out of the long table.
    Used in notebook 08."""
    rows = []
    for run in RunDir.find(paths):
        config, metrics = run.read_config_dict(), run.read_metrics()
        spec = run_spec(run.path)  # the registry's, or an own-data run's recorded spec
        for split, values in metrics.get("test", {}).items():
            for metric in spec.metrics:
                value = values.get(metric)
                if isinstance(value, (int, float)):
                    rows.append(dict(dataset=spec.name, method=config["method"], seed=config["seed"],
                                     split=split, metric=metric, value=float(value), run_dir=str(run.path)))
    if not rows:
        raise DataError(f"No finished runs with test metrics found under {', '.join(map(str, paths))}.")
    return pd.DataFrame(rows)


def write_results(output_dir, run_dirs) -> Path:
    """Write a sweep's ``results.csv`` (:func:`collect_runs`) and ``results.md`` (:func:`results_table`)
    into ``output_dir``; returns the path of ``results.md``."""
    runs = collect_runs(list(run_dirs))
    root = Path(output_dir)
    atomic_write(root / "results.csv", lambda tmp: runs.to_csv(tmp, index=False))
    atomic_write(root / "results.md", lambda tmp: tmp.write_text(table_markdown(results_table(runs))))
    return root / "results.md"


def results_table(runs: pd.DataFrame, precision: int = 1) -> pd.DataFrame:
    """Pivot :func:`collect_runs` output into methods x (dataset, split, metric) cells of
    ``"mean ± std"`` over seeds, x100 (``std`` is the sample standard deviation; a single seed
    shows the mean alone). Also exposes the numbers: ``table.attrs["mean"]``, ``["std"]``, ``["n"]``.
    Used in notebook 08."""
    grouped = runs.groupby(["method", "dataset", "split", "metric"])["value"]
    mean, std, n = ((grouped.mean() * 100).unstack([1, 2, 3]), (grouped.std() * 100).unstack([1, 2, 3]),
                    grouped.count().unstack([1, 2, 3]))
    order = [m for m in METHOD_NAMES if m in mean.index] + [m for m in mean.index if m not in METHOD_NAMES]
    mean, std, n = mean.loc[order], std.loc[order], n.loc[order]

    def cell(m: float, s: float, k: float) -> str:
        if np.isnan(m):
            return "–"
        return f"{m:.{precision}f}" if k < 2 or np.isnan(s) else f"{m:.{precision}f} ± {s:.{precision}f}"

    table = pd.DataFrame({col: [cell(mean.at[i, col], std.at[i, col], n.at[i, col]) for i in order]
                          for col in mean.columns},
                         index=pd.Index(order, name="method"))
    table.columns = pd.MultiIndex.from_tuples(mean.columns, names=["dataset", "split", "metric"])
    table.attrs.update(mean=mean, std=std, n=n)
    return table


def table_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, one header row ``dataset/split metric``."""
    headers = ["method"] + [f"{d}/{s} {m}" for d, s, m in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([method, *row.tolist()]) + " |")
    return "\n".join(lines) + "\n"
