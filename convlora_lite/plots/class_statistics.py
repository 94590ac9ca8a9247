"""What the masks of a dataset hold, and per-class scores: tables and their bar charts."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.plots.figures import CLASS_PALETTE, MASK_COLOUR, baseline_line, finish


def _rotate_class_names(ax, names) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(list(names), rotation=45, ha="right", rotation_mode="anchor")


def class_statistics(dataset, classes: Sequence[str], max_items: int | None = None) -> pd.DataFrame:
    """How often each class occurs in ``dataset`` (a dataset of :mod:`convlora_lite.data`):
    columns class, pixel share (% of the labelled pixels), images (how many contain it).

    Reads the stored masks (``dataset.load_pair``, before any resize); ``max_items`` caps the
    number of items read (``None``: all)."""
    count = len(dataset) if max_items is None else min(max_items, len(dataset))
    pixels, images = np.zeros(len(classes), dtype=np.int64), np.zeros(len(classes), dtype=np.int64)
    for index in range(count):
        labels = np.asarray(dataset.load_pair(index)[1]).astype(np.int64)
        per_class = np.bincount(labels[labels != IGNORE_INDEX].ravel(), minlength=len(classes))[: len(classes)]
        pixels += per_class
        images += per_class > 0
    share = 100.0 * pixels / max(pixels.sum(), 1)
    table = pd.DataFrame({"class": list(classes), "pixel share (%)": share, "images": images})
    table.attrs["items"] = count
    return table


def plot_class_statistics(statistics: pd.DataFrame, title: str = "Class statistics") -> Figure:
    """Bar charts of :func:`class_statistics`: pixel share (log scale for multi-class) and images per class."""
    multiclass = len(statistics) > 2
    figure = Figure(figsize=(11, 3.6) if multiclass else (7, 3.2))
    share_ax, count_ax = figure.subplots(1, 2)
    colours = CLASS_PALETTE[: len(statistics)] if multiclass else ["0.4", MASK_COLOUR]
    share_ax.bar(statistics["class"], statistics["pixel share (%)"], color=colours, edgecolor="0.3")
    share_ax.set(yscale="log" if multiclass else "linear", ylabel="% of labelled pixels", title="Pixel share")
    count_ax.bar(statistics["class"], statistics["images"], color=colours, edgecolor="0.3")
    count_ax.set(ylabel="images containing the class",
                 title=f"Images per class (of {statistics.attrs.get('items', '?')})")
    for ax in (share_ax, count_ax):
        ax.set_xlabel("class")
        _rotate_class_names(ax, statistics["class"])
    finish(figure, title)
    return figure


def class_iou_bars(iou_per_class: Mapping[str, float], *, title: str = "IoU per class",
                   baseline: float | None = None) -> Figure:
    """Per-class IoU (``{class name: fraction}``, NaN for an absent class) as bars in %, in
    :data:`CLASS_PALETTE`, with the mean over the present classes (mIoU) as a grey dashed line.

    ``baseline``: the trivial baseline's mIoU (a fraction, as ``trivial_baseline(...)["miou"]`` of
    :mod:`~convlora_lite.reports.readings`), drawn in % as a black dashed line: the mIoU to beat. Within
    half a point of the mIoU the two would be drawn on top of each other: one line then carries both
    labels. The legend sits beside the axes, clear of the bars."""
    names, values = list(iou_per_class), 100.0 * np.array(list(iou_per_class.values()), dtype=float)
    figure = Figure(figsize=(9, 3.8))
    ax = figure.subplots()
    ax.bar(names, np.nan_to_num(values), color=CLASS_PALETTE[: len(names)], edgecolor="0.3")
    miou = float(np.nanmean(values))
    if baseline is not None and abs(100.0 * baseline - miou) < 0.5:
        baseline_line(ax, 100.0 * baseline, note=f" mIoU (= this mIoU {miou:.1f})")
    else:
        ax.axhline(miou, color="0.3", linestyle="--", label=f"mIoU {miou:.1f}")
        if baseline is not None:
            baseline_line(ax, 100.0 * baseline, note=" mIoU")
    for i, value in enumerate(values):
        if np.isnan(value):
            ax.text(i, 1, "absent", ha="center", rotation=90, fontsize=8)
    ax.set(xlabel="class", ylabel="IoU (%)", ylim=(0, 100), title=title)
    _rotate_class_names(ax, names)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure
