"""Interactive explorers for JupyterLab and Colab (ipywidgets), each a thin shell around a plain
drawing function that the tests call directly.

Every explorer is built from ``draw(**choices) -> Figure`` and a set of controls. In a live
frontend it returns a widget (the controls, a caption saying what is shown, and the figure, redrawn
on every change). Headless (papermill, nbval: ``CONVLORA_HEADLESS=1``) it returns the static figure of
its first choices, so an executed notebook still holds a picture.

* :func:`prediction_explorer`: browse test images, methods and the threshold of a prediction;
* :func:`routing_explorer`: pick a Conv-LoRA block and an image, see each window's chosen scale;
* :func:`expert_explorer`: pick an expert's scale, see what it does to one window of the bottleneck;
* :func:`own_image`: a finished run on one image of any size (a path, or an upload widget live).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from convlora_lite.analysis.expert_routing import LayerRouting, scale_colours, scale_map
from convlora_lite.plots.figures import display_image, overlay
from convlora_lite.progress import is_headless


def draw_prediction(images, masks, predictions: Mapping[str, Sequence], index: int, method: str,
                    threshold: float, classes: Sequence[str] | None = None) -> Figure:
    """Image ``index``: the ground truth and ``method``'s prediction binarised at ``threshold``."""
    return overlay(images[index], masks[index], predictions[method][index], classes=classes, threshold=threshold,
                   title=f"image {index + 1} of {len(images)}: {method}, threshold {threshold:.2f}")


def draw_routing(image: np.ndarray, routings: Sequence[LayerRouting], block: int, index: int, grid: int) -> Figure:
    """Image ``index`` (``image`` (S, S, 3) in [0, 1]) with the scale every window of ``block`` chose."""
    routing = next(r for r in routings if r.block == block)
    scales = scale_map(routing, grid, image.shape[0])[index].numpy()
    figure = Figure(figsize=(4.2, 3.6))
    ax = figure.subplots()
    ax.imshow(image)
    cmap, norm, ticks = scale_colours(routing.scales)
    shown = ax.imshow(scales, cmap=cmap, norm=norm, alpha=0.55, interpolation="nearest")
    figure.colorbar(shown, ax=ax, label="chosen expert scale", ticks=ticks)
    ax.set(title=f"block {block} ({routing.kind}), image {index + 1}", xlabel="x (px)", ylabel="y (px)")
    figure.tight_layout()
    return figure


@torch.no_grad()
def draw_expert(moe, window: torch.Tensor, scale: float, channel: int = 0) -> Figure:
    """What the expert of ``scale`` in ``moe`` (a Conv-LoRA ``MoEConv``) does to one bottleneck window
    ``window`` (r, n, n): the input channel, the expert's output, and the update it adds."""
    expert = next(e for e in moe.experts if e.scale == scale)
    out = expert(window[None].to(expert.weight))[0].float().cpu()
    window = window.float().cpu()
    panels = (("bottleneck h", window[channel]), (f"expert x{scale:g}(h)", out[channel]),
              ("h + expert(h)", window[channel] + out[channel]))
    figure = Figure(figsize=(9, 3))
    for ax, (name, values) in zip(figure.subplots(1, 3), panels):
        shown = ax.imshow(values.numpy(), cmap="coolwarm", interpolation="nearest")
        figure.colorbar(shown, ax=ax, shrink=0.8)
        ax.set(title=name, xlabel="token x", ylabel="token y")
    figure.suptitle(f"Expert x{scale:g} on one window, channel {channel}")
    figure.tight_layout()
    return figure


@torch.no_grad()
def draw_experts(moe, window: torch.Tensor, channel: int = 0) -> Figure:
    """Every expert of ``moe`` on one bottleneck window ``window`` (r, n, n) at once: the input channel, then each
    expert's output on one shared colour scale, so that the scales can be compared (the static view of
    :func:`expert_explorer`). Used in notebook 02."""
    outputs = [(f"x{e.scale:g}", e(window[None].to(e.weight))[0, channel].float().cpu()) for e in moe.experts]
    limit = max(float(values.abs().max()) for _, values in outputs) or 1.0
    figure = Figure(figsize=(2.0 * (len(outputs) + 1), 2.6))
    axes = figure.subplots(1, len(outputs) + 1)
    axes[0].imshow(window[channel].float().cpu().numpy(), cmap="coolwarm", interpolation="nearest")
    axes[0].set_title("bottleneck h")
    for ax, (name, values) in zip(axes[1:], outputs):
        shown = ax.imshow(values.numpy(), cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"expert {name}")
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    figure.colorbar(shown, ax=list(axes[1:]), shrink=0.8, label="expert output")
    figure.suptitle(f"All {len(outputs)} experts on one window (channel {channel}), one colour scale", y=0.98)
    return figure


def use_inline_figures() -> None:
    """Inside IPython, show figures inline (what ``%matplotlib inline`` does: it registers the PNG
    formatter that turns a displayed ``Figure`` into a picture); elsewhere nothing."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebooks extra
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


def explorer(draw: Callable[..., Figure], controls: Mapping[str, object], first: Mapping[str, object]):
    """A widget that redraws ``draw(**values)`` whenever one of ``controls`` (name -> ipywidget)
    changes; headless, the static ``draw(**first)``. The widget's ``caption`` names what is shown."""
    if is_headless():
        return draw(**first)
    import ipywidgets as w
    from IPython.display import display

    use_inline_figures()
    out, caption = w.Output(), w.Label()

    def refresh(_change=None) -> None:
        values = {name: control.value for name, control in controls.items()}
        caption.value = ", ".join(f"{name} {value}" for name, value in values.items())
        with out:
            out.clear_output(wait=True)
            display(draw(**values))

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    box = w.VBox([w.HBox(list(controls.values())), caption, out])
    box.caption, box.refresh = caption, refresh
    return box


def prediction_explorer(images, masks, predictions: Mapping[str, Sequence], classes: Sequence[str] | None = None):
    """Browse the test images, methods and threshold of :func:`~convlora_lite.analysis.predictions.predict_runs`.
    Used in notebook 09."""
    methods = list(predictions)

    def draw(index, method, threshold):
        return draw_prediction(images, masks, predictions, index, method, threshold, classes)

    controls = {}
    if not is_headless():
        import ipywidgets as w

        controls = {"index": w.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
                    "method": w.Dropdown(options=methods, value=methods[-1], description="method"),
                    "threshold": w.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="threshold")}
    return explorer(draw, controls, {"index": 0, "method": methods[-1], "threshold": 0.5})


def routing_explorer(images, routings: Sequence[LayerRouting], grid: int):
    """Pick a Conv-LoRA block and an image (``images`` (B, 3, S, S)) of :func:`record_routing`'s batch.
    Used in notebook 09."""
    blocks = [r.block for r in routings]

    def draw(block, index):
        return draw_routing(display_image(images[index]), routings, block, index, grid)

    controls = {}
    if not is_headless():
        import ipywidgets as w

        controls = {"block": w.Dropdown(options=blocks, value=blocks[0], description="block"),
                    "index": w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")}
    return explorer(draw, controls, {"block": blocks[0], "index": 0})


def expert_explorer(moe, window: torch.Tensor):
    """Choose an expert's scale and see what it does to ``window`` (r, n, n) of the bottleneck. Used in notebook 02."""
    scales = [e.scale for e in moe.experts]

    def draw(scale):
        return draw_expert(moe, window, scale)

    controls = {}
    if not is_headless():
        import ipywidgets as w

        controls = {"scale": w.Dropdown(options=scales, value=scales[0], description="scale")}
    return explorer(draw, controls, {"scale": scales[0]})


def draw_own_image(segmenter, image, title: str | None = None) -> Figure:
    """``image`` (a path, PIL image or array of any size) and ``segmenter``'s prediction on it,
    both at the image's own size (:class:`~convlora_lite.inference.segmenter.Segmenter`)."""
    from PIL import Image

    picture = Image.open(image).convert("RGB") if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__") \
        else image
    array = np.asarray(picture.convert("RGB") if hasattr(picture, "convert") else picture)
    mask = segmenter.segment(picture)
    figure = Figure(figsize=(8, 4))
    left, right = figure.subplots(1, 2)
    left.imshow(array)
    right.imshow(array)
    right.imshow(np.ma.masked_equal(mask, 0), cmap="autumn" if segmenter.is_binary else "tab20", alpha=0.5,
                 interpolation="nearest")
    left.set(title=f"your image ({array.shape[1]} x {array.shape[0]} px)")
    right.set(title=f"{segmenter.config.method}: predicted mask (its own size)")
    figure.suptitle(title or f"{segmenter.config.method} on {segmenter.config.dataset}, at the image's own size")
    figure.tight_layout()
    return figure


def own_image(run_dir, image=None):
    """A finished run on one image of any size: ``image`` (a path) when given, shown as a figure; live
    and without ``image``, an upload that segments what is uploaded (in JupyterLab an ipywidgets
    button; on Colab its own upload dialog, ``google.colab.files.upload``, because ipywidgets'
    FileUpload loses files of 1 MB or more there, jupyter-widgets/ipywidgets#3452); headless without
    ``image``, nothing to show (``None``). Used in notebook 00."""
    import io
    import sys

    from PIL import Image

    from convlora_lite.inference.segmenter import Segmenter

    segmenter = Segmenter.from_run(run_dir)
    if image:
        return draw_own_image(segmenter, image)
    if is_headless():
        return None
    if "google.colab" in sys.modules:
        from google.colab import files

        uploaded = files.upload()  # {file name: bytes}; empty when the dialog is cancelled
        if not uploaded:
            return None
        name, content = next(iter(uploaded.items()))
        return draw_own_image(segmenter, Image.open(io.BytesIO(content)), name)
    import ipywidgets as w
    from IPython.display import display

    use_inline_figures()
    upload, out = w.FileUpload(accept="image/*", multiple=False, description="your image"), w.Output()

    def segment(_change=None) -> None:
        for item in upload.value:
            with out:
                out.clear_output(wait=True)
                display(draw_own_image(segmenter, Image.open(io.BytesIO(bytes(item["content"]))), item["name"]))

    upload.observe(segment, names="value")
    return w.VBox([upload, out])
