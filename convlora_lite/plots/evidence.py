"""Notebook 12's figures: what the course's seeds can say about Conv-LoRA against LoRA, and about adapting the
encoder at all. Inputs are the tables of :mod:`convlora_lite.reports.evidence` and
:mod:`convlora_lite.reports.adapter_readings` (x100, signed so that positive favours the first method)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

#: the colour of a difference and its interval, and of the paper's gain.
DIFFERENCE_COLOUR, PAPER_COLOUR, DETECTABLE_COLOUR = "tab:blue", "tab:red", "0.88"


def forest_plot(evidence: pd.DataFrame, *, title: str = "Conv-LoRA minus LoRA per task, and the local-prior "
                "experiment (x100; positive: Conv-LoRA better)") -> Figure:
    """One row per comparison of ``evidence`` (:data:`~convlora_lite.reports.evidence.COLUMNS`): the mean per-seed
    difference with its interval (a dot alone for one seed), the band +-MDD around 0 that these seeds cannot tell
    from no difference (shaded), and the paper's gain on the same task (a red diamond) on the same axis. The label
    names the metric and the paired seeds. Used in notebook 12."""
    rows = evidence.reset_index(drop=True)
    figure = Figure(figsize=(8.5, 0.55 * len(rows) + 1.6))
    ax = figure.subplots()
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows.itertuples()):
        if row.mdd is not None and not pd.isna(row.mdd):
            ax.fill_betweenx([yi - 0.35, yi + 0.35], -row.mdd, row.mdd, color=DETECTABLE_COLOUR, lw=0)
        if row.n > 1:
            ax.plot([row.low, row.high], [yi, yi], color=DIFFERENCE_COLOUR, lw=2)
        if row.n > 0:
            ax.plot(row.gain, yi, "o", color=DIFFERENCE_COLOUR)
        if row.paper_gain is not None and not pd.isna(row.paper_gain):
            ax.plot(row.paper_gain, yi, "D", color=PAPER_COLOUR, ms=6)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, [f"{row.label} ({row.metric}, n = {row.n})" for row in rows.itertuples()])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("difference in points (x100)")
    figure.legend(handles=[Line2D([], [], color=DIFFERENCE_COLOUR, marker="o", lw=2, label="mean and 95 % interval"),
                           Line2D([], [], color=PAPER_COLOUR, marker="D", lw=0, label="the paper's gain"),
                           Patch(color=DETECTABLE_COLOUR, label="within +-MDD: too small for these seeds")],
                  loc="lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(title)
    figure.tight_layout(rect=(0, 0.45 / figure.get_figheight(), 1, 1))
    return figure


def adapter_gains_plot(effects: pd.DataFrame, *, title: str = "Adapting the encoder: gain over each baseline, per "
                       "task (x100)") -> Figure:
    """One row per (task, adapter, other method) of :func:`~convlora_lite.reports.adapter_readings.adapter_effects`:
    the gain with its interval, hollow where a method sat at the all-background floor (no gain read there).
    Used in notebook 12."""
    rows = effects.reset_index(drop=True)
    figure = Figure(figsize=(8.5, 0.4 * len(rows) + 1.4))
    ax = figure.subplots()
    y = np.arange(len(rows))[::-1]
    colours = {"lora": "tab:orange", "conv_lora": "tab:green"}
    for yi, row in zip(y, rows.itertuples()):
        colour = colours.get(row.adapter, "tab:blue")
        if row.n > 1:
            ax.plot([row.low, row.high], [yi, yi], color=colour, lw=2)
        ax.plot(row.gain, yi, "o", color=colour, mfc="none" if row.at_floor else colour)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, [f"{row.dataset.removeprefix('synth_')} {row.metric}: {row.adapter} vs {row.other}"
                      + (" (floor)" if row.at_floor else "") for row in rows.itertuples()], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("gain in points (x100; positive: the adapter is better)")
    ax.set_title(title)
    figure.tight_layout()
    return figure
