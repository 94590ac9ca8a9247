"""Figures for the notebooks: overlays, comparison grids, error maps, training curves, data previews.

Every ``*_figure``-like function returns a titled, labelled :class:`matplotlib.figure.Figure`
(it does not show or save it). Inputs are what the datasets and :mod:`convlora_lite.analysis.predictions`
produce, torch or NumPy:

* an **image** is either channel-first ``(3, H, W)`` ImageNet-normalised (a dataset item's
  ``image``; denormalised with :func:`convlora_lite.data.denormalize_image`) or channel-last
  ``(H, W, 3)`` for display already (uint8, or float in [0, 1]);
* a **mask** is ``(H, W)``: {0, 1} for binary tasks, class ids for multi-class (255 = ignore);
* a **prediction** is ``(H, W)``: foreground probabilities for binary tasks (binarised at
  ``threshold``, 0.5 as in the metrics: ``prob > 0.5``), class ids for multi-class.

A task is multi-class when ``classes`` (the dataset spec's ``classes``) has more than two
names; multi-class maps are drawn with the fixed 12-colour :data:`CLASS_PALETTE` and a legend.
The array helpers (:func:`display_image`, :func:`colorize_labels`, :func:`error_colours`,
:func:`blend`) are public so that other figures can reuse them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.errors import DataError

#: one RGB colour (floats in [0, 1]) per class id 0..11: black background, then tab10 and gold.
CLASS_PALETTE = np.array([
    (0.00, 0.00, 0.00), (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81), (1.00, 0.84, 0.00),
])
#: colour of ignored pixels (255) in label maps.
IGNORE_COLOUR = (1.0, 1.0, 1.0)
#: colours of the binary overlays.
MASK_COLOUR = (0.1, 0.85, 0.1)
PREDICTION_COLOUR = (1.0, 0.25, 0.1)
#: the error map's colours; true negatives show the darkened grey image.
ERROR_COLOURS = {"true positive": (0.0, 0.8, 0.0), "false positive": (1.0, 0.0, 0.0),
                 "false negative": (0.0, 0.4, 1.0)}
#: multi-class error map: correctly labelled object pixels / wrongly labelled pixels (correct
#: background shows the darkened grey image, as true negatives do).
LABEL_ERROR_COLOURS = {"correct object class": (0.0, 0.8, 0.0), "wrong class": (1.0, 0.0, 0.0)}
THRESHOLD = 0.5
#: the label of the trivial baseline's line (:func:`~convlora_lite.reports.readings.trivial_baseline`).
BASELINE_NAME = "all background"
#: how the trivial baseline is drawn (a dashed black line).
BASELINE_STYLE = dict(color="black", linestyle="--", linewidth=1.2)


# ------------------------------------------------------------------------------ array helpers
def _numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)


def display_image(image) -> np.ndarray:
    """``(3, H, W)`` ImageNet-normalised (dataset) or ``(H, W, 3)`` display image -> ``(H, W, 3)``
    float in [0, 1]. Used in notebook 09."""
    from convlora_lite.data.transforms import denormalize_image

    if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] == 3:
        return denormalize_image(image.detach().float().cpu()).permute(1, 2, 0).numpy()
    array = _numpy(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        return display_image(torch.from_numpy(array.astype(np.float32)))
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"Expected an image (3, H, W) from a dataset or (H, W, 3) for display, got {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64) / 255.0
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def _plane(array, what: str) -> np.ndarray:
    """A ``(H, W)`` map (a leading singleton dimension is dropped)."""
    array = _numpy(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise DataError(f"Expected a {what} of shape (H, W), got {array.shape}.")
    return array


def binarize(pred, threshold: float = THRESHOLD) -> np.ndarray:
    """``(H, W)`` probabilities (or a {0, 1}/bool mask) -> bool, foreground where ``pred > threshold``."""
    pred = _plane(pred, "prediction")
    return pred.astype(bool) if pred.dtype == bool else pred > threshold


def blend(image: np.ndarray, region: np.ndarray, colour, alpha: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 1] with ``colour`` laid over the bool ``region`` (H, W) at ``alpha``."""
    out = image.copy()
    out[region] = (1 - alpha) * out[region] + alpha * np.asarray(colour)
    return out


def colorize_labels(labels, palette: np.ndarray = CLASS_PALETTE, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W, 3)`` colours from ``palette`` (ignored pixels white)."""
    labels = _plane(labels, "label map").astype(np.int64)
    ignored = labels == ignore_index
    if (labels[~ignored] >= len(palette)).any() or (labels < 0).any():
        raise DataError(f"Label map holds class ids outside 0..{len(palette) - 1}; pass a longer palette.")
    out = palette[np.where(ignored, 0, labels)]
    out[ignored] = IGNORE_COLOUR
    return out


def error_colours(mask, pred, image=None, *, threshold: float = THRESHOLD, multiclass: bool = False) -> np.ndarray:
    """The error map as an ``(H, W, 3)`` array.

    Binary: :data:`ERROR_COLOURS` on true positives, false positives (predicted, not in the mask)
    and false negatives (in the mask, missed); true negatives show ``image`` in darkened grey
    (black without an image). Multi-class (``pred`` and ``mask`` class ids):
    :data:`LABEL_ERROR_COLOURS` on correctly labelled object pixels and on wrong pixels, the grey
    image on correctly labelled background (class 0), white where the mask is ignored.
    """
    mask = _plane(mask, "mask")
    shape = mask.shape
    base = np.zeros((*shape, 3))
    if image is not None:
        base = np.repeat(display_image(image).mean(-1, keepdims=True), 3, axis=-1) * 0.5
    if multiclass:
        pred = _plane(pred, "prediction")
        ignored = mask == IGNORE_INDEX
        base[~ignored & (pred == mask) & (mask != 0)] = LABEL_ERROR_COLOURS["correct object class"]
        base[~ignored & (pred != mask)] = LABEL_ERROR_COLOURS["wrong class"]
        base[ignored] = IGNORE_COLOUR
        return base
    truth, found = mask > 0.5, binarize(pred, threshold)
    for name, region in (("true positive", truth & found), ("false positive", ~truth & found),
                         ("false negative", truth & ~found)):
        base[region] = ERROR_COLOURS[name]
    return base


# ------------------------------------------------------------------------------ figure helpers
def _is_multiclass(classes) -> bool:
    return classes is not None and len(classes) > 2


def _items(values, single_ndim: int) -> list:
    """A list of items from a list, or from one array/tensor of one item (``single_ndim`` dims)
    or a batch of them."""
    if isinstance(values, (list, tuple)):
        return list(values)
    ndim = values.ndim if hasattr(values, "ndim") else np.ndim(values)
    return [values] if ndim == single_ndim else list(values)


def _new_figure(rows: int, cols: int, size: float = 2.4) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(size * cols, size * rows + 0.6))
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes


def _legend(figure: Figure, colours: Mapping[str, tuple], ncol: int | None = None) -> None:
    handles = [Patch(facecolor=colour, edgecolor="0.3", label=name) for name, colour in colours.items()]
    figure.legend(handles=handles, loc="lower center", ncol=ncol or len(handles), fontsize=8, frameon=False)


def finish(figure: Figure, title: str, bottom: float = 0.0) -> None:
    """Give ``figure`` its ``title`` and lay it out, the title kept clear of the panels' own titles (0.4 inch
    above them) and the share ``bottom`` of the height kept free below (for a legend)."""
    figure.suptitle(title)
    figure.tight_layout(rect=(0, bottom, 1, 1 - 0.4 / figure.get_figheight()))


def baseline_line(ax, value: float, note: str = "") -> None:
    """The trivial baseline (predicting background everywhere) as a labelled dashed horizontal line at
    ``value`` (in the units of ``ax``'s y axis); ``note`` follows the name in the label."""
    ax.axhline(value, **BASELINE_STYLE, label=f"{BASELINE_NAME}{note} {value:.3g}")


def outline(ax, region: np.ndarray) -> None:
    """The edge of the bool ``region`` (H, W) on ``ax`` (an image axis): a white line with a black rim,
    so that it shows on any image even where a fill has the image's colour. Nothing when ``region`` is
    empty or everything (no edge)."""
    if region.any() and not region.all():
        ax.contour(region.astype(float), levels=[0.5], colors="white", linewidths=1,
                   path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])


def class_colours(classes: Sequence[str], palette: np.ndarray = CLASS_PALETTE) -> dict[str, tuple]:
    """``{class name: colour}`` for a legend."""
    if len(classes) > len(palette):
        raise DataError(f"{len(classes)} classes but the palette has {len(palette)} colours; pass a longer palette.")
    return {name: tuple(palette[i]) for i, name in enumerate(classes)}


def _mask_panel(mask, classes, threshold: float) -> np.ndarray:
    """A mask or prediction drawn on its own: class colours, or white foreground on black."""
    if _is_multiclass(classes):
        return colorize_labels(mask)
    return np.repeat(binarize(mask, threshold)[..., None], 3, axis=-1).astype(float)


def _on_image(image: np.ndarray, mask, classes, colour, threshold: float) -> np.ndarray:
    """A mask or prediction laid over the image: class colours (not the background), or ``colour``."""
    if _is_multiclass(classes):
        labels = _plane(mask, "label map")
        region = (labels > 0) & (labels != IGNORE_INDEX)
        out = image.copy()
        out[region] = 0.45 * out[region] + 0.55 * colorize_labels(labels)[region]
        return out
    return blend(image, binarize(mask, threshold), colour)


# ------------------------------------------------------------------------------ figures
def overlay(image, mask, pred, *, classes: Sequence[str] | None = None, threshold: float = THRESHOLD,
            title: str = "Image, ground truth and prediction") -> Figure:
    """One sample in three panels: the image; the ground truth over it; the prediction over it.

    Binary: ground truth in green, prediction (``> threshold``) in orange-red, each with its
    :func:`outline` (visible where the image has the fill's colour); multi-class (``classes`` with more
    than two names): class colours and a legend.
    Used in notebook 00."""
    shown = display_image(image)
    figure, axes = _new_figure(1, 3, size=3.0)
    panels = (("image", shown), ("ground truth", _on_image(shown, mask, classes, MASK_COLOUR, threshold)),
              ("prediction", _on_image(shown, pred, classes, PREDICTION_COLOUR, threshold)))
    for ax, (name, picture) in zip(axes[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name)
    if _is_multiclass(classes):
        _legend(figure, class_colours(classes), ncol=6)
    else:
        outline(axes[0, 1], binarize(mask, threshold))
        outline(axes[0, 2], binarize(pred, threshold))
    finish(figure, title, 0.08 if _is_multiclass(classes) else 0)
    return figure


def prediction_grid(images, masks, predictions_by_method: Mapping[str, Sequence], *,
                    classes: Sequence[str] | None = None, threshold: float = THRESHOLD,
                    title: str = "Predictions on test images") -> Figure:
    """The paper's qualitative figure: one row per sample, columns image | ground truth | one per method.

    ``predictions_by_method``: ``{method label: predictions}`` with one prediction per image, in
    the same order. Binary masks and predictions (``> threshold``) are white on black;
    multi-class maps use :data:`CLASS_PALETTE` with a legend.
    Used in notebook 09."""
    images, masks = _items(images, 3), _items(masks, 2)
    predictions = {name: _items(values, 2) for name, values in predictions_by_method.items()}
    for name, values in predictions.items():
        if len(values) != len(images):
            raise DataError(f"{name!r} has {len(values)} predictions for {len(images)} images; give one per image.")
    if len(masks) != len(images):
        raise DataError(f"{len(masks)} masks for {len(images)} images; give one per image.")
    columns = ["image", "ground truth", *predictions]
    figure, axes = _new_figure(len(images), len(columns))
    for row, (image, mask) in enumerate(zip(images, masks)):
        pictures = [display_image(image), _mask_panel(mask, classes, threshold),
                    *(_mask_panel(values[row], classes, threshold) for values in predictions.values())]
        for col, picture in enumerate(pictures):
            axes[row, col].imshow(picture, interpolation="nearest")
    for col, name in enumerate(columns):
        axes[0, col].set_title(name)
    if _is_multiclass(classes):
        _legend(figure, class_colours(classes), ncol=6)
    finish(figure, title, 0.06 if _is_multiclass(classes) else 0)
    return figure


def error_map(images, masks, predictions, *, classes: Sequence[str] | None = None, threshold: float = THRESHOLD,
              title: str = "Where the prediction is wrong", names: Sequence[str] | None = None) -> Figure:
    """One panel per sample coloured by :func:`error_colours`: binary tasks show true positives,
    false positives and false negatives; multi-class tasks correctly labelled objects and wrongly
    labelled pixels. ``names``: the panels' titles (the images' file names; default "image k").
    Used in notebooks 00 and 09."""
    images, masks, predictions = _items(images, 3), _items(masks, 2), _items(predictions, 2)
    if not len(images) == len(masks) == len(predictions):
        raise DataError(f"{len(images)} images, {len(masks)} masks, {len(predictions)} predictions: give one each.")
    multiclass = _is_multiclass(classes)
    figure, axes = _new_figure(1, len(images), size=2.8)
    for i, (ax, image, mask, pred) in enumerate(zip(axes[0], images, masks, predictions)):
        ax.imshow(error_colours(mask, pred, image, threshold=threshold, multiclass=multiclass), interpolation="nearest")
        ax.set_title(names[i] if names is not None else f"image {i + 1}", fontsize=9)
    _legend(figure, LABEL_ERROR_COLOURS if multiclass else ERROR_COLOURS)
    finish(figure, title, 0.1)
    return figure


def save_loss_curve(run, spec) -> None:
    """Draw a finished run's :func:`plot_history` into its ``figures/`` folder (the hook ``convlora train``
    and ``reproduce`` pass to :func:`~convlora_lite.training.trainer.fit` as ``on_finish``)."""
    plot_history(run.path, spec).savefig(run.loss_curve, dpi=100)


def plot_history(run_dir, spec=None) -> Figure:
    """A run's curves from ``history.csv``: training, validation and auxiliary loss per epoch (left), the
    validation metrics per epoch with the selection metric bold and its best epoch marked (right;
    metrics where lower is better say so in the legend). ``spec`` (the task's selection metric and
    mode) defaults to the registry's entry for the run's dataset. Used in notebook 00."""
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.training.metrics import METRIC_DIRECTIONS
    from convlora_lite.training.rundir import RunDir

    run = RunDir(run_dir)
    history = run.read_history()
    config = run.read_config_dict()
    spec = spec if spec is not None else get_dataset_spec(config["dataset"])
    figure = Figure(figsize=(12, 3.8))
    loss_ax, metric_ax = figure.subplots(1, 2)
    epochs = history["epoch"]
    for column, label in (("train_loss", "training loss (task)"), ("val_loss", "validation loss (task)"),
                          ("aux_loss", "auxiliary loss (MoE balance)")):
        if column in history and history[column].abs().sum() > 0:  # a method without a balance loss logs zeros
            loss_ax.plot(epochs, history[column], marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Losses")
    loss_ax.legend(fontsize=8)
    selected = f"val_{spec.select_metric}"
    for column in (c for c in history if c.startswith("val_") and c != "val_loss"):
        bold, metric = column == selected, column.removeprefix("val_")
        note = " (selection)" if bold else " (lower is better)" if METRIC_DIRECTIONS.get(metric) == "min" else ""
        metric_ax.plot(epochs, history[column], marker="o", linewidth=2.5 if bold else 1, alpha=1 if bold else 0.6,
                       label=metric + note)
    if selected in history:
        best = history[selected].idxmax() if spec.select_mode == "max" else history[selected].idxmin()
        metric_ax.axvline(epochs[best], color="0.5", linestyle="--", label=f"best epoch ({int(epochs[best])})")
    metric_ax.set(xlabel="epoch", ylabel="validation metric (fraction)", title="Validation metrics")
    metric_ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finish(figure, f"Training curves: {config['method']} on {config['dataset']} ({config['model']}, seed "
                   f"{config['seed']})")
    return figure


def preview_figure(name: str, root, n: int = 4, split: str = "train"):
    """A matplotlib Figure: the first ``n`` images of ``split`` (top row) and their masks (bottom).

    ``name`` is any registered dataset (``"synth_polyp"``, or a real one once downloaded);
    images and masks are shown as stored, before the training transform; multi-class masks in
    :data:`CLASS_PALETTE`, as every multi-class figure. Used in notebook 00."""
    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.data.registry import get_dataset_spec

    spec = get_dataset_spec(name)
    dataset = build_dataset(spec, split, root, image_size=256, train=False)
    n = min(n, len(dataset))
    figure = Figure(figsize=(2.2 * n, 4.6 if spec.task == "binary" else 5.2))
    axes = figure.subplots(2, n, squeeze=False)
    for column in range(n):
        image, labels = dataset.load_pair(column)
        axes[0, column].imshow(image)
        if spec.task == "binary":
            axes[1, column].imshow(labels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:  # the palette of every multi-class figure (ignored pixels white)
            axes[1, column].imshow(colorize_labels(labels), interpolation="nearest")
        axes[0, column].set_title(dataset.pairs[column][0].stem, fontsize=8)
        for row in range(2):
            axes[row, column].axis("off")
    axes[0, 0].text(-0.08, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.08, 0.5, "mask", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
    if spec.task != "binary":
        _legend(figure, class_colours(spec.classes), ncol=6)
    finish(figure, f"{spec.title} ({split})", 0.0 if spec.task == "binary" else 0.12)
    return figure
