"""Zero-shot SAM on a binary task: the promptable model with boxes or points, before any fine-tuning.

For each test image with foreground, SAM (its image encoder, prompt encoder and mask decoder, as
pretrained) gets prompts derived from the ground truth, **per object** as SAM is evaluated: each
connected component of the mask (8-connected) is one object and gets its own prompt, and the
image's prediction is the union of the objects' masks (the pixelwise maximum of their probabilities):

* **box**: the tight box around each object; single-mask output;
* **point**: each object's pixel farthest from its border; multimask output, the mask with the
  highest predicted IoU (SAM's automatic choice).

Both are **oracle** prompts: drawn from the test mask, they hand SAM where each object is (and, for the
box, its extent), which a prompt-free fine-tuned model must find on its own (``docs/recipe.md``,
"Zero-shot SAM"). Next to them, the **filled box**: the objects' boxes themselves used as the mask,
which needs no model: what the localisation alone scores. Each is scored with the task's own metrics
(:func:`~convlora_lite.training.metrics.task_metrics`), on the same images, at the training resolution.
Images without foreground are skipped (no prompt can be derived); the count is reported, with the
number of objects. Multi-class tasks have no class-agnostic prompt reading and are refused.
"""
from __future__ import annotations

from itertools import islice
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from convlora_lite.errors import ConfigError
from convlora_lite.models.promptable import decode, encode
from convlora_lite.models.prompts import centre_point, mask_box
from convlora_lite.training.metrics import task_metrics

#: the rows of :func:`zero_shot_scores`, in order: one box per object, one point per object, the filled boxes
#: (the names of the one-object case, which :func:`~convlora_lite.reports.readings.zero_shot_readings` reads).
PROMPT_ROWS = ("one box", "one point", "filled box (no model)")


class ZeroShot(NamedTuple):
    """SAM's zero-shot answer on one image, each map ``(S, S)`` float in [0, 1]: ``box`` and ``point`` (the
    union over objects of SAM's foreground probability), ``filled`` (the objects' boxes as a {0, 1} mask);
    the prompts: ``boxes`` ``(K, 4)`` (x0, y0, x1, y1; x1, y1 exclusive) and ``points`` ``(K, 2)`` (x, y),
    one per object."""

    box: torch.Tensor
    point: torch.Tensor
    filled: torch.Tensor
    boxes: np.ndarray
    points: np.ndarray


def objects(mask: np.ndarray) -> list[np.ndarray]:
    """The objects of a bool ``(H, W)`` mask: its 8-connected components, each a bool ``(H, W)`` mask."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return [labels == k for k in range(1, count + 1)]


@torch.no_grad()
def zero_shot_predict(sam, image: torch.Tensor, mask: torch.Tensor, device: str = "cpu") -> ZeroShot:
    """SAM's answer to one box and one point per object of ``mask`` ``(S, S)`` (it must hold foreground) on
    ``image`` ``(3, S, S)`` (ImageNet-normalised, at SAM's input size), with the filled boxes."""
    parts = objects(mask.numpy() > 0.5)
    boxes = np.stack([mask_box(part) for part in parts])
    points = np.stack([centre_point(part) for part in parts])
    embedding = encode(sam, image[None].to(device))[0]
    logits, _ = decode(sam, embedding, boxes=torch.from_numpy(boxes).to(device))
    box = torch.sigmoid(logits[:, 0]).float().amax(0).cpu()
    coords = torch.from_numpy(points)[:, None].to(device)
    logits, iou = decode(sam, embedding, points=(coords, torch.ones(len(points), 1, device=device)), multimask=True)
    best = logits[torch.arange(len(points)), iou.argmax(1)]
    point = torch.sigmoid(best).float().amax(0).cpu()
    filled = torch.zeros(mask.shape)
    for x0, y0, x1, y1 in boxes.astype(int):
        filled[y0:y1, x0:x1] = 1.0
    return ZeroShot(box, point, filled, boxes, points)


def _with_foreground(dataset, count: int):
    """``(index, item)`` of the first ``count`` items of ``dataset`` whose mask holds foreground."""
    for i in range(count):
        item = dataset[i]
        if (item["mask"] > 0.5).any():
            yield i, item


@torch.no_grad()
def zero_shot_scores(sam, dataset, spec, max_items: int | None = None, device: str = "cpu") -> pd.DataFrame:
    """One row per prompt (:data:`PROMPT_ROWS`): the task's metrics, x100, then ``images`` (how many had
    foreground) and ``objects`` (the prompts per image, on average). ``sam`` is a ``segment_anything``
    ``Sam`` or SAM 2's ``SAM2Base`` whose input size is the dataset's image size; ``dataset`` items are
    ``dict(image (3,S,S), mask (S,S))``."""
    if spec.task != "binary":
        raise ConfigError(f"Zero-shot promptable SAM is class-agnostic; {spec.name} is a multi-class task.")
    sam = sam.eval().to(device)
    scores = {name: task_metrics(spec, 1) for name in PROMPT_ROWS}
    count = len(dataset) if max_items is None else min(len(dataset), max_items)
    used = prompts = 0
    for _, item in _with_foreground(dataset, count):
        answer = zero_shot_predict(sam, item["image"], item["mask"], device)
        target = (item["mask"] > 0.5).float()[None]
        for name, prediction in zip(PROMPT_ROWS, answer[:3]):
            scores[name].update(prediction[None], target)
        used, prompts = used + 1, prompts + len(answer.boxes)
    if not used:
        raise ConfigError(f"No image of this {spec.name} split has foreground: no prompt can be derived.")
    rows = [{"prompt": name, **{k: 100 * v for k, v in metric.compute().items() if k in spec.metrics},
             "images": used, "objects": prompts / used} for name, metric in scores.items()]
    return pd.DataFrame(rows).set_index("prompt")


def zero_shot_examples(sam, dataset, n: int = 3, device: str = "cpu") -> list[tuple[dict, ZeroShot]]:
    """``(item, answer)`` for the first ``n`` items of ``dataset`` with foreground: what
    :func:`~convlora_lite.plots.comparisons.zero_shot_figure` draws."""
    sam = sam.eval().to(device)
    chosen = islice(_with_foreground(dataset, len(dataset)), n)
    return [(item, zero_shot_predict(sam, item["image"], item["mask"], device)) for _, item in chosen]
