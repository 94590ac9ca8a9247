"""SAM-style prompts sampled from ground-truth masks: the one home of prompt sampling.

Used by the micro SAM pretraining (:mod:`convlora_lite.pretrain.sam_pretrain`) and by prompted
fine-tuning (``TrainConfig.prompt``, :class:`~convlora_lite.models.segmenter.PromptedSAM`). As in
SAM's training:

* ``box``: the mask's tight box, each coordinate moved by N(0, 10 % of the box side), at most
  20 px in SAM's 1024 px frame (:func:`sam_box_noise_cap` scales it to the input size);
* ``point``: one positive point drawn uniformly from the mask's pixels (decoded with SAM's
  multimask output, 3 masks).

A binary task's mask may hold several objects: the box covers all of them and the point falls in
one of them. An image whose mask is empty gets no prompt (``Prompts.present`` is False; the model
replaces its prompt tokens with SAM's "not a point" padding embedding), so it must predict
background.

:func:`batch_prompts` draws one prompt per image with a generator seeded by ``key`` and the
image's name, so the prompts of an image do not depend on the batch it is in or on the order of
the data: training uses ``key = (seed, epoch)`` (a resumed run draws the prompts an uninterrupted
one draws), evaluation the fixed :data:`EVAL_PROMPT_SEED`, so a fine-tuned model and the
zero-shot SAM it is compared with see the same prompts.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from convlora_lite.errors import ConfigError

#: ``TrainConfig.prompt`` values: prompt-free (the paper), a box per image, a point per image.
PROMPTS = ("none", "box", "point")
#: the seed of the evaluation prompts (fixed: every run and the zero-shot baseline share them).
EVAL_PROMPT_SEED = 20240117
#: SAM's cap on the box noise, in its 1024 px frame.
SAM_BOX_NOISE_MAX_PX = 20.0


def check_prompt(prompt: str) -> str:
    """``prompt`` if it is one of :data:`PROMPTS`, else a :class:`ConfigError` listing them."""
    if prompt not in PROMPTS:
        raise ConfigError(f"prompt={prompt!r}; choose one of {', '.join(PROMPTS)} "
                          "(none = prompt-free, as the paper).")
    return prompt


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) in pixel coordinates of a bool (H, W) mask (x1, y1 exclusive)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def jitter_box(rng: np.random.Generator, box: np.ndarray, size: int, max_px: float = 20.0) -> np.ndarray:
    """SAM's box noise: each coordinate + N(0, 0.1 * side), clipped to +-``max_px`` and to the image.

    SAM's 20 px cap is in its 1024 px frame; the pretraining keeps 20 px at 256 px (the bundled
    weights' setting). ``benchmarks/micro_sam_probes.py --box-noise-max 5`` tried the cap scaled to
    256 px: no change in the one-box score."""
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
    noise = np.clip(rng.normal(0, 1, 4) * 0.1 * side, -max_px, max_px)
    out = np.clip(box + noise, 0, size)
    out[2], out[3] = max(out[2], out[0] + 1), max(out[3], out[1] + 1)
    return out.astype(np.float32)


def random_point(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A point (x, y) at the centre of a pixel drawn uniformly from ``mask``."""
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(ys))
    return np.array([xs[i] + 0.5, ys[i] + 0.5], np.float32)


def centre_point(mask: np.ndarray) -> np.ndarray:
    """The pixel of ``mask`` farthest from its border (x, y): the standard one-point evaluation prompt."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    return np.array([x + 0.5, y + 0.5], np.float32)


def sam_box_noise_cap(size: int) -> float:
    """SAM's 20 px box-noise cap scaled from its 1024 px frame to ``size`` px."""
    return SAM_BOX_NOISE_MAX_PX * size / 1024


@dataclass
class Prompts:
    """One prompt per image of a batch, in input pixels.

    Attributes:
        kind: ``"box"`` or ``"point"``.
        boxes: ``(B, 4)`` float (x0, y0, x1, y1) for ``box``, else ``None``.
        points: ``(B, 1, 2)`` float (x, y) for ``point``, else ``None``.
        labels: ``(B, 1)`` float point labels (1 = foreground) for ``point``, else ``None``.
        present: ``(B,)`` bool, False where the mask is empty (that image gets no prompt).
    """

    kind: str
    boxes: Optional[torch.Tensor]
    points: Optional[torch.Tensor]
    labels: Optional[torch.Tensor]
    present: torch.Tensor

    def to(self, device) -> "Prompts":
        def move(tensor):
            return None if tensor is None else tensor.to(device)

        return Prompts(self.kind, move(self.boxes), move(self.points), move(self.labels), move(self.present))


def image_rng(key: Sequence[int], name) -> np.random.Generator:
    """The generator of one image's prompt: seeded by ``key`` and the CRC-32 of its name."""
    return np.random.default_rng([*(int(k) for k in key), zlib.crc32(str(name).encode())])


def sample_prompt(kind: str, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """One prompt of ``kind`` for the bool (S, S) ``mask``: ``(box (4,) or point (2,), present)``.

    An empty mask gives a placeholder (the whole image, or its centre) and ``present=False``."""
    size = mask.shape[-1]
    if kind == "box":
        if not mask.any():
            return np.array([0, 0, size, size], np.float32), False
        return jitter_box(rng, mask_box(mask), size, max_px=sam_box_noise_cap(size)), True
    if kind == "point":
        if not mask.any():
            return np.array([size / 2, size / 2], np.float32), False
        return random_point(rng, mask), True
    raise ConfigError(f"Cannot sample a {kind!r} prompt; choose box or point.")


def batch_prompts(masks, names: Sequence, kind: str, key: Sequence[int]) -> Prompts:
    """One ``kind`` prompt per image from the ground-truth ``masks`` ((B, S, S), foreground > 0.5).

    Args:
        names: one name per image (its prompt's seed, with ``key``).
        key: integers that seed the batch's prompts: ``(seed, epoch)`` in training,
            ``(EVAL_PROMPT_SEED,)`` in evaluation (see :func:`eval_prompts`).
    """
    check_prompt(kind)
    if kind == "none":
        raise ConfigError("prompt='none' takes no prompts; batch_prompts is for box or point.")
    masks = torch.as_tensor(masks).detach().cpu().numpy()
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if len(names) != len(masks):
        raise ConfigError(f"{len(names)} names for {len(masks)} masks: give one name per image.")
    drawn = [sample_prompt(kind, m > 0.5, image_rng(key, name)) for m, name in zip(masks, names)]
    coords = torch.from_numpy(np.stack([p for p, _ in drawn]))
    present = torch.tensor([ok for _, ok in drawn], dtype=torch.bool)
    if kind == "box":
        return Prompts(kind, boxes=coords, points=None, labels=None, present=present)
    return Prompts(kind, boxes=None, points=coords[:, None], labels=torch.ones(len(coords), 1), present=present)


def eval_prompts(masks, names: Sequence, kind: str) -> Prompts:
    """The evaluation prompts of a batch: :func:`batch_prompts` with :data:`EVAL_PROMPT_SEED`
    (the same for every run, method and seed, and for the zero-shot baseline)."""
    return batch_prompts(masks, names, kind, (EVAL_PROMPT_SEED,))


def train_prompts(masks, names: Sequence, kind: str, seed: int, epoch: int) -> Prompts:
    """The training prompts of a batch in epoch ``epoch`` of a run with ``seed``."""
    return batch_prompts(masks, names, kind, (seed, epoch))


def batch_names(batch: dict, start: int) -> list:
    """The items' names of a data-loader batch (their positions ``start, start + 1, ...`` when the
    dataset gives none)."""
    names = batch.get("name")
    if names is None:
        return list(range(start, start + len(batch["mask"])))
    return list(names)
