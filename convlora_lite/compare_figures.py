"""Figures that put several methods' predictions side by side (the paper's qualitative figure).

``predictions`` are ``method -> (B, S, S)`` foreground probabilities of the same images, in
the order the columns should appear (e.g. VPT, LoRA, Conv-LoRA).
"""
from __future__ import annotations

import numpy as np
import torch

from .data.transforms import denormalize_image


def _display_image(image: torch.Tensor) -> np.ndarray:
    """(3, S, S) ImageNet-normalised -> (S, S, 3) in [0, 1]."""
    return denormalize_image(image.cpu()).permute(1, 2, 0).numpy()


def error_map(probs: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """(S, S, 3) RGB: true positives white, false positives red, false negatives blue, true
    negatives black, for ``probs`` and a binary ``mask`` (both (S, S))."""
    pred, truth = (probs >= threshold).cpu().numpy(), (mask > 0.5).cpu().numpy()
    rgb = np.zeros(pred.shape + (3,), np.float32)
    rgb[pred & truth] = (1, 1, 1)
    rgb[pred & ~truth] = (0.9, 0.1, 0.1)
    rgb[~pred & truth] = (0.1, 0.3, 0.95)
    return rgb


def plot_prediction_grid(images: torch.Tensor, masks: torch.Tensor, predictions: dict[str, torch.Tensor],
                         errors: bool = False, title: str = "Predictions side by side"):
    """Rows = images; columns = image, ground truth, then each method's probability map (or, with
    ``errors=True``, its error map at 0.5: white TP, red FP, blue FN). Returns the figure."""
    import matplotlib.pyplot as plt

    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.1 * cols, 2.1 * len(images) + 0.6), squeeze=False)
    for row, (image, mask) in enumerate(zip(images, masks)):
        axes[row, 0].imshow(_display_image(image))
        axes[row, 1].imshow(mask.cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        for col, (method, probs) in enumerate(predictions.items(), start=2):
            if errors:
                axes[row, col].imshow(error_map(probs[row], mask))
            else:
                axes[row, col].imshow(probs[row].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    for col, name in enumerate(["image", "ground truth", *predictions]):
        axes[0, col].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set(xlabel="x (px)", ylabel="y (px)")
        ax.label_outer()
    fig.suptitle(title + (" — errors at 0.5: white TP, red FP, blue FN" if errors else ""))
    fig.tight_layout()
    return fig
