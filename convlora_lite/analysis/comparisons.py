"""Figures that compare methods: metric bars, overlaid validation curves, parameters against score,
where two methods' predictions disagree. Inputs as in :mod:`convlora_lite.analysis.figures`."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from convlora_lite.analysis.figures import (
    THRESHOLD,
    _items,
    _legend,
    _new_figure,
    baseline_line,
    binarize,
    display_image,
)


def metric_bars(results: pd.DataFrame, *, title: str = "Test metrics per method (x100)") -> Figure:
    """Grouped bars of a :func:`~convlora_lite.analysis.results_tables.results_table`'s means: one
    group per method, one bar per (dataset, split, metric)."""
    mean = results.attrs["mean"]
    figure = Figure(figsize=(7, 3.6))
    ax = figure.subplots()
    mean.plot.bar(ax=ax, rot=0)
    ax.set(title=title, xlabel="method", ylabel="metric value (x100)")
    ax.legend([f"{d}/{s} {m}" for d, s, m in mean.columns], fontsize=8)
    figure.tight_layout()
    return figure

def compare_curves(runs_by_method: Mapping[str, Sequence], metric: str, *, title: str | None = None,
                   baseline: float | None = None) -> Figure:
    """The validation ``metric`` per epoch of every method, overlaid: each method's mean over its runs
    (run directories), with the range over seeds shaded when there are several.

    ``baseline``: the trivial baseline's ``metric`` on the validation split (a fraction, as in
    ``history.csv``; :func:`~convlora_lite.analysis.readings.trivial_baseline`), drawn as a dashed line."""
    from convlora_lite.training.metrics import METRIC_DIRECTIONS
    from convlora_lite.training.rundir import RunDir

    figure = Figure(figsize=(6.5, 3.8))
    ax = figure.subplots()
    for method, runs in runs_by_method.items():
        curves = pd.concat([RunDir(r).read_history().set_index("epoch")[f"val_{metric}"] for r in runs], axis=1)
        mean = curves.mean(axis=1)
        ax.plot(mean.index, mean.to_numpy(), marker="o", label=f"{method} ({curves.shape[1]} seed(s))")
        if curves.shape[1] > 1:
            ax.fill_between(mean.index, curves.min(axis=1), curves.max(axis=1), alpha=0.2)
    if baseline is not None:
        baseline_line(ax, baseline)
    lower = " (lower is better)" if METRIC_DIRECTIONS.get(metric) == "min" else ""
    ax.set(xlabel="epoch", ylabel=f"validation {metric}{lower}", title=title or f"Validation {metric} per method")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure

def params_vs_score(params: Mapping[str, int], scores: Mapping[str, float], *, metric: str,
                    title: str = "Trainable parameters against the score") -> Figure:
    """One point per method: its trainable parameters (x; log scale when they span more than 10x) and its
    mean test ``metric`` (x100)."""
    figure = Figure(figsize=(6.5, 3.8))
    ax = figure.subplots()
    for method, score in scores.items():
        ax.scatter(params[method], score)
        ax.annotate(method, (params[method], score), textcoords="offset points", xytext=(4, 4), fontsize=8)
    spread = max(params[m] for m in scores) / max(min(params[m] for m in scores), 1)
    ax.set(xscale="log" if spread > 10 else "linear", xlabel="trainable parameters", ylabel=f"test {metric} (x100)",
           title=title)
    figure.tight_layout()
    return figure

def disagreement_map(images, predictions_a, predictions_b, names: tuple[str, str], *, threshold: float = THRESHOLD,
                     title: str | None = None) -> Figure:
    """Where two methods' binary predictions (at ``threshold``) differ, one panel per sample: pixels only
    the first method marks, pixels only the second marks, over the darkened image; the share of
    disagreeing pixels in each title."""
    images, first, second = _items(images, 3), _items(predictions_a, 2), _items(predictions_b, 2)
    colours = {f"only {names[0]}": (1.0, 0.55, 0.0), f"only {names[1]}": (0.6, 0.2, 1.0)}
    figure, axes = _new_figure(1, len(images), size=2.8)
    for ax, image, a, b in zip(axes[0], images, first, second):
        a, b = binarize(a, threshold), binarize(b, threshold)
        shown = 0.4 * display_image(image).mean(-1, keepdims=True).repeat(3, -1)
        for region, colour in zip((a & ~b, b & ~a), colours.values()):
            shown[region] = colour
        ax.imshow(shown, interpolation="nearest")
        ax.set_title(f"{100 * (a != b).mean():.1f} % differ", fontsize=9)
    _legend(figure, colours)
    figure.suptitle(title or f"Where {names[0]} and {names[1]} disagree (threshold {threshold:g})")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return figure
