"""Figures that compare methods: metric bars, overlaid validation curves, parameters against score,
where two methods' predictions disagree, zero-shot SAM's prompts against the filled boxes. Inputs as in
:mod:`convlora_lite.plots.figures`."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from convlora_lite.plots.figures import (
    BASELINE_NAME,
    BASELINE_STYLE,
    MASK_COLOUR,
    PREDICTION_COLOUR,
    THRESHOLD,
    _items,
    _legend,
    _new_figure,
    baseline_line,
    binarize,
    blend,
    display_image,
    finish,
    outline,
)

#: how the prompts are drawn on :func:`zero_shot_figure`.
PROMPT_COLOUR = (1.0, 0.9, 0.0)


def _seeds(counts: pd.Series) -> str:
    """``"3 seeds"`` (or ``"1-3 seeds"`` when they differ) for a method's seed counts per column."""
    low, high = int(counts.min()), int(counts.max())
    return f"{low if low == high else f'{low}-{high}'} seed{'s' if high > 1 else ''}"

def metric_bars(results: pd.DataFrame, *, title: str = "Test metrics per method (x100)",
                baselines: Mapping[tuple, float] | None = None) -> Figure:
    """Grouped bars of a :func:`~convlora_lite.reports.results_tables.results_table`'s means: one
    group per method (its number of seeds under its name), one bar per (dataset, split, metric) column.

    ``results.attrs``: ``mean``, ``std`` and ``n`` (methods x columns; x100, x100, seeds). Where a bar
    averages more than one seed, its error bar spans mean ± the std over seeds; a single seed has no
    error bar. ``baselines``: ``{(dataset, split, metric): value x100}``, e.g. the trivial baseline of
    :func:`~convlora_lite.reports.readings.trivial_baseline` times 100, drawn as a dashed segment
    over that column's bars. Used in notebook 08."""
    mean, std, n = results.attrs["mean"], results.attrs["std"], results.attrs["n"]
    baselines, baseline_label = baselines or {}, BASELINE_NAME
    figure = Figure(figsize=(9, 3.6))
    ax = figure.subplots()
    centres, width = np.arange(len(mean.index)), 0.8 / len(mean.columns)
    for j, column in enumerate(mean.columns):
        x = centres - 0.4 + width * (j + 0.5)
        heights = mean[column].to_numpy(dtype=float)
        ax.bar(x, heights, width, label=f"{column[0]}/{column[1]} {column[2]}")
        spread = (n[column] > 1).to_numpy()
        if spread.any():
            ax.errorbar(x[spread], heights[spread], yerr=std[column].to_numpy(dtype=float)[spread], fmt="none",
                        ecolor="0.2", capsize=3, label="_std over seeds")
        if column in baselines:
            ax.hlines(np.full(len(x), baselines[column]), x - width / 2, x + width / 2, **BASELINE_STYLE,
                      label=baseline_label)
            baseline_label = f"_{BASELINE_NAME}"  # one legend entry for every column's segments
    ax.set_xticks(centres, [f"{method}\n{_seeds(n.loc[method].dropna())}" for method in mean.index])
    ax.set(title=title, xlabel="method", ylabel="metric value (x100)")
    ax.legend(fontsize=8, title="error bars: std over seeds\n(1 seed: no error bar)", title_fontsize=8,
              loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure

def compare_curves(runs_by_method: Mapping[str, Sequence], metric: str, *, title: str | None = None,
                   baseline: float | None = None) -> Figure:
    """The validation ``metric`` per epoch of every method, overlaid: each method's mean over its runs
    (run directories), with the range over seeds shaded when there are several.

    ``baseline``: the trivial baseline's ``metric`` on the validation split (a fraction, as in
    ``history.csv``; :func:`~convlora_lite.reports.readings.trivial_baseline`), drawn as a dashed line when
    it lies within one span of the curves' range of them; farther away it would flatten the curves into a
    band, so it is written at the axis' edge instead (its value, and that it lies below or above)."""
    from convlora_lite.training.metrics import METRIC_DIRECTIONS
    from convlora_lite.training.rundir import RunDir

    figure = Figure(figsize=(6.5, 3.8))
    ax = figure.subplots()
    low, high = np.inf, -np.inf
    for method, runs in runs_by_method.items():
        curves = pd.concat([RunDir(r).read_history().set_index("epoch")[f"val_{metric}"] for r in runs], axis=1)
        mean, count = curves.mean(axis=1), curves.shape[1]
        ax.plot(mean.index, mean.to_numpy(), marker="o", label=f"{method} ({count} seed{'s' * (count > 1)})")
        if count > 1:
            ax.fill_between(mean.index, curves.min(axis=1), curves.max(axis=1), alpha=0.2)
        low, high = min(low, float(curves.min().min())), max(high, float(curves.max().max()))
    if baseline is not None:
        span = max(high - low, 1e-6)
        if low - span <= baseline <= high + span:
            baseline_line(ax, baseline)
        else:
            below = baseline < low
            ax.text(0.01, 0.02 if below else 0.98, f"{BASELINE_NAME}: {baseline:.3g} ({'below' if below else 'above'}"
                    " this axis, not drawn)", transform=ax.transAxes, fontsize=8, va="bottom" if below else "top")
    lower = " (lower is better)" if METRIC_DIRECTIONS.get(metric) == "min" else ""
    ax.set(xlabel="epoch", ylabel=f"validation {metric}{lower}", title=title or f"Validation {metric} per method")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure

def params_vs_score(params: Mapping[str, int], scores: Mapping[str, float], *, metric: str,
                    title: str = "Trainable parameters against the score") -> Figure:
    """One point per method: its trainable parameters (x; log scale when they span more than 10x) and its
    mean test ``metric`` (x100). Used in notebook 08."""
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
    disagreeing pixels in each title. Used in notebook 09."""
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
    finish(figure, title or f"Where {names[0]} and {names[1]} disagree (threshold {threshold:g})", 0.1)
    return figure


def zero_shot_figure(examples, *, threshold: float = THRESHOLD, title: str = "Zero-shot SAM, prompted from the "
                     "ground truth") -> Figure:
    """One row per image of :func:`~convlora_lite.analysis.zero_shot.zero_shot_examples`: the image with its
    ground truth (green, outlined); SAM's mask for one box per object and for one point per object (orange-red
    above ``threshold``, outlined, with the prompts in yellow); the filled boxes, the mask that needs no model.
    Used in notebooks 00 and 03-06."""
    figure, axes = _new_figure(len(examples), 4, size=2.6)
    for row, (item, answer) in enumerate(examples):
        shown, truth = display_image(item["image"]), item["mask"].numpy() > 0.5
        count = len(answer.boxes)
        panels = (("image, ground truth", truth, MASK_COLOUR),
                  (f"{count} box prompt{'s' * (count > 1)}", binarize(answer.box, threshold), PREDICTION_COLOUR),
                  (f"{count} point prompt{'s' * (count > 1)}", binarize(answer.point, threshold), PREDICTION_COLOUR),
                  ("filled boxes (no model)", answer.filled.numpy() > 0.5, PREDICTION_COLOUR))
        for col, (name, region, colour) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(blend(shown, region, colour), interpolation="nearest")
            outline(ax, region)
            ax.set_title(f"{item.get('name', '')}: {name}" if col == 0 else name, fontsize=8)
        for x0, y0, x1, y1 in answer.boxes:
            axes[row, 1].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                             edgecolor=PROMPT_COLOUR, linewidth=1.2))
        axes[row, 2].scatter(answer.points[:, 0] - 0.5, answer.points[:, 1] - 0.5, marker="*", s=70,
                             color=PROMPT_COLOUR, edgecolors="black", linewidths=0.5)
    _legend(figure, {"ground truth": MASK_COLOUR, "SAM's mask / the filled boxes": PREDICTION_COLOUR,
                     "prompt (box or point)": PROMPT_COLOUR})
    finish(figure, title, 0.05)
    return figure
