"""Zero-shot SAM on a binary task: the promptable model with a box or a point, before any fine-tuning.

For each test image with foreground, SAM (its image encoder, prompt encoder and mask decoder, as
pretrained) gets one prompt derived from the ground truth, as SAM is evaluated:

* **one box**: the tight box around all the foreground of the image; single-mask output;
* **one point**: the foreground pixel farthest from the mask border; multimask output, the mask
  with the highest predicted IoU (SAM's automatic choice).

Next to them, the **filled box**: the tight box itself used as the mask, which needs no model: the
floor a box-prompted model must clear. Each is scored with the task's own metrics
(:func:`~convlora_lite.training.metrics.task_metrics`), on the same images, at the training
resolution. Images without foreground are skipped (no prompt can be derived); the count is
reported. Multi-class tasks have no class-agnostic prompt reading and are refused.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from convlora_lite.errors import ConfigError
from convlora_lite.models.prompts import centre_point, decode, mask_box
from convlora_lite.training.metrics import task_metrics


@torch.no_grad()
def zero_shot_scores(sam, dataset, spec, max_items: int | None = None, device: str = "cpu") -> pd.DataFrame:
    """One row per prompt (``one box``, ``one point``, ``filled box (no model)``): the task's metrics,
    x100, and ``images`` (how many had foreground). ``sam`` is a ``segment_anything`` ``Sam`` whose
    input size is the dataset's image size; ``dataset`` items are ``dict(image (3,S,S), mask (S,S))``."""
    if spec.task != "binary":
        raise ConfigError(f"Zero-shot promptable SAM is class-agnostic; {spec.name} is a multi-class task.")
    sam = sam.eval().to(device)
    scores = {name: task_metrics(spec, 1) for name in ("one box", "one point", "filled box (no model)")}
    count = len(dataset) if max_items is None else min(len(dataset), max_items)
    used = 0
    for i in range(count):
        item = dataset[i]
        mask = item["mask"].numpy() > 0.5
        if not mask.any():
            continue
        used += 1
        target = torch.from_numpy(mask.astype(np.float32))[None]
        embedding = sam.image_encoder(item["image"][None].to(device))
        box = mask_box(mask)
        logits, _ = decode(sam, embedding, boxes=torch.from_numpy(box[None]).to(device))
        scores["one box"].update(torch.sigmoid(logits[:, 0]).float().cpu(), target)
        point = torch.from_numpy(centre_point(mask))[None, None].to(device)
        logits, iou = decode(sam, embedding, points=(point, torch.ones(1, 1, device=device)), multimask=True)
        best = logits[0, iou[0].argmax()][None]
        scores["one point"].update(torch.sigmoid(best).float().cpu(), target)
        filled = torch.zeros_like(target)
        x0, y0, x1, y1 = box.astype(int)
        filled[:, y0:y1, x0:x1] = 1.0
        scores["filled box (no model)"].update(filled, target)
    if not used:
        raise ConfigError(f"No image of this {spec.name} split has foreground: no prompt can be derived.")
    rows = [{"prompt": name, **{k: 100 * v for k, v in metric.compute().items() if k in spec.metrics},
             "images": used} for name, metric in scores.items()]
    return pd.DataFrame(rows).set_index("prompt")
