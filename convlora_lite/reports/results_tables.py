"""Paper-style results tables built from run directories (never from typed-in numbers).

A run directory (:class:`~convlora_lite.training.rundir.RunDir`) holds its config (dataset, method,
seed, ...) and its metrics (``test``: split -> metric -> value, fractions in [0, 1]). :func:`collect_runs`
reads many of them into one long DataFrame, :func:`results_table` pivots it into the paper's
layout: one row per method (in the paper's order), one column per (dataset, test split, metric),
each cell the mean +- standard deviation over seeds, multiplied by 100 for display; :func:`run_hours` reads what
each run recorded of its wall time and device, the table's device-hours column (``convlora table``, ``results.md``).
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
    Used in notebooks 00, 08 and 12."""
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
    """Write a sweep's ``results.csv`` (:func:`collect_runs`) and ``results.md`` (:func:`results_table`, with the
    device-hours of :func:`run_hours`) into ``output_dir``; returns the path of ``results.md``."""
    runs = collect_runs(list(run_dirs))
    markdown = table_markdown(results_table(runs), run_hours(runs.run_dir))
    root = Path(output_dir)
    atomic_write(root / "results.csv", lambda tmp: runs.to_csv(tmp, index=False))
    atomic_write(root / "results.md", lambda tmp: tmp.write_text(markdown))
    return root / "results.md"


def run_hours(run_dirs) -> pd.DataFrame:
    """One row per run directory: ``run_dir``, ``method``, ``device`` (the name the run recorded: ``"NVIDIA H200"``,
    ``"cpu"``; ``"not recorded"`` before runs recorded it) and ``hours``: the device-hours the run recorded, its
    epochs' wall time (``time_s`` of ``history.csv``: training and validation; a resumed run's epochs from every
    segment, an epoch cut short by the interruption not) plus the test pass (``metrics.json``'s ``test_s``), times
    its processes; NaN for a run whose history records no time. Start-up and downloads are not counted."""
    rows = []
    for path in dict.fromkeys(map(str, run_dirs)):
        run = RunDir(path)
        metrics = run.read_metrics()
        history = run.read_history() if run.history.exists() else pd.DataFrame()
        seconds = history["time_s"].sum() + metrics.get("test_s", 0.0) if "time_s" in history else np.nan
        rows.append(dict(run_dir=path, method=run.method, device=metrics.get("device", "not recorded"),
                         hours=seconds * metrics.get("processes", 1) / 3600))
    return pd.DataFrame(rows, columns=["run_dir", "method", "device", "hours"])


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


def table_markdown(table: pd.DataFrame, hours: pd.DataFrame | None = None) -> str:
    """The table as GitHub markdown, one header row ``dataset/split metric``; with ``hours`` (:func:`run_hours`), a
    last column of each method's device-hours (its runs' sum) and a line under the table naming the devices."""
    headers = ["method"] + [f"{d}/{s} {m}" for d, s, m in table.columns] + ([] if hours is None else ["device-hours"])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, row in table.iterrows():
        mine = None if hours is None else hours.hours[hours.method == method].dropna()
        cells = [] if mine is None else [f"{mine.sum():.2f}" if len(mine) else "–"]
        lines.append("| " + " | ".join([method, *row.tolist(), *cells]) + " |")
    if hours is not None:
        lines += ["", hours_note(hours)]
    return "\n".join(lines) + "\n"


def hours_note(hours: pd.DataFrame) -> str:
    """What the device-hours column holds, and on which devices (:func:`run_hours`)."""
    timed = hours.dropna(subset=["hours"])
    devices = ", ".join(f"{device} ({n} run{'s' if n > 1 else ''}, {timed.hours[timed.device == device].sum():.2f} h)"
                        for device, n in timed.device.value_counts(sort=False).items())
    missing = len(hours) - len(timed)
    untimed = f"; {missing} run(s) recorded no time, not counted" if missing else ""
    return (f"device-hours: each method's runs' recorded wall time, summed (training and validation epochs, the test "
            f"pass, x processes; start-up and downloads not counted), on the device each run recorded: "
            f"{devices or 'none'}{untimed}.")
