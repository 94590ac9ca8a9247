"""The official Conv-LoRA input recipe, with the image size a parameter.

What the AutoGluon code does (``SemanticSegImageProcessor`` in
``autogluon/multimodal/data/process_semantic_seg_img.py``), and what this module reproduces:

* the image is opened with PIL and converted with ``img.convert("RGB")``: grayscale and palette
  images become RGB, and an RGBA image **loses its alpha channel** (the stored RGB values are kept,
  not composited on a background). :func:`to_rgb` does the same, plus a rescale of 16-bit and
  float grayscale images that ``convert`` would clip;
* square resize to ``size x size`` (aspect ratio not kept): bicubic for the image, nearest for
  the mask;
* horizontal flip with probability 0.5, training only, the same flip for image and mask;
* ImageNet mean / std normalisation.

The flip draws from torch's global RNG (``torch.rand``), so ``torch.manual_seed`` (and the
per-worker seeds a ``DataLoader`` derives from it) makes a run repeatable. The official code draws
from Python's ``random``; the distribution is the same. We resize first and flip the resized
tensor, which equals flipping first (both filters are symmetric) and is cheaper.

Masks are decoded to a small integer label map before resizing:

* binary (:func:`binary_labels`): any 0/255, 0/1, boolean, grayscale or colour mask; a pixel is
  foreground when its largest channel exceeds half of the mask's full scale (1 for masks whose
  values are all <= 1, 255 for 8-bit masks, 65535 above). The full scale, not the mask's own
  maximum, so that an all-background mask with JPEG noise stays empty. A non-empty mask with no
  pixel above that half (e.g. a 0..3 class-index mask) raises DataError instead of vanishing;
* multi-class (:func:`class_labels`): an index mask (palette ``P`` PNG, grayscale, or RGB with three
  equal channels), values in ``range(num_classes)`` plus :data:`IGNORE_INDEX` (255, kept).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit RGB PIL image.

    Grayscale, bilevel, palette and CMYK images are converted by PIL; RGBA / LA / PA drop their
    alpha (as the official ``convert("RGB")`` does); 16-bit and float grayscale are rescaled to
    0..255 (by 1/257 when the values exceed 255, else kept) instead of being clipped.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def binary_labels(mask: Image.Image | np.ndarray, source: str = "mask") -> np.ndarray:
    """A binary mask (any encoding, see the module docstring) -> uint8 (H, W) in {0, 1}.

    Raises DataError naming ``source`` when the mask is not empty yet no pixel reaches half of
    its full scale (e.g. a class-index mask 0, 1, 2, 3 read as binary): thresholding would
    silently erase it.
    """
    values = np.asarray(mask)  # a palette image gives its indices
    if values.ndim == 3:
        values = values.max(axis=2)
    top = values.max(initial=0)
    full_scale = 1 if top <= 1 else (255 if top <= 255 else 65535)
    if 0 < top <= full_scale / 2:
        raise DataError(
            f"{source} does not look like a binary mask: its largest value is {top}, below half of "
            f"its full scale {full_scale}, so every pixel would become background. Binary masks "
            "must be 0/255 or 0/1; a class-index mask needs a multi-class dataset (for your own data: a "
            "classes.txt naming the classes, one per line, or --task multiclass)."
        )
    return (values > full_scale / 2).astype(np.uint8)


def class_labels(mask: Image.Image | np.ndarray, num_classes: int, source: str = "mask") -> np.ndarray:
    """An index mask -> uint8 (H, W) of class ids in ``range(num_classes)`` or 255 (ignore).

    Raises DataError naming ``source`` when the mask is colour-coded (channels differ) or holds a
    value that is neither a class id nor 255.
    """
    values = np.asarray(mask)  # a palette image gives its indices
    if values.ndim == 3:
        channels = values[..., :3]
        if not np.all(channels == channels[..., :1]):
            raise DataError(
                f"{source} is a colour-coded RGB mask; multi-class masks must hold class indices "
                "(a palette 'P' or grayscale PNG whose pixel value is the class id). Convert it to "
                "an index PNG first."
            )
        values = channels[..., 0]
    present = np.unique(values)
    bad = [int(v) for v in present if not (0 <= v < num_classes or v == IGNORE_INDEX)]
    if bad:
        raise DataError(
            f"{source} holds values {bad[:10]} outside the declared classes 0..{num_classes - 1} "
            f"(and {IGNORE_INDEX} = ignore). Check that this is the right dataset / number of "
            "classes, or map those values to class ids (or 255 to ignore them)."
        )
    return values.astype(np.uint8)


def normalize_image(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W), ImageNet-normalised."""
    image = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


def denormalize_image(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_image` for display: (..., 3, H, W) -> values in [0, 1]. Used in notebook 01."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0)


class SegmentationTransform:
    """The official recipe: square resize, train-time horizontal flip, ImageNet normalisation.

    Args:
        image_size: side S of the square output (1024 in the paper).
        train: flip with probability ``flip_p`` when True; deterministic when False.
        task: ``"binary"`` -> mask float32 (S, S) in {0, 1}; ``"multiclass"`` -> int64 (S, S)
            of class ids, 255 = ignore.
        flip_p: probability of the horizontal flip in training (official 0.5).

    ``transform(image, labels)`` takes an RGB PIL image and a uint8 (H, W) label map (from
    :func:`binary_labels` or :func:`class_labels`) of the same size and returns
    ``(image (3, S, S) float32, mask (S, S))``. It is :meth:`prepare` (deterministic: resize and
    normalise, what a dataset may keep in memory) followed by :meth:`augment` (the random flip).
    """

    def __init__(self, image_size: int, train: bool, task: str = "binary", flip_p: float = 0.5):
        if task not in ("binary", "multiclass"):
            raise ValueError(f"task must be 'binary' or 'multiclass', not {task!r}")
        self.image_size = int(image_size)
        self.train = bool(train)
        self.task = task
        self.flip_p = float(flip_p)

    def prepare(self, image: Image.Image, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic part: ``(image (3, S, S) float32 normalised, mask (S, S))``."""
        size = (self.image_size, self.image_size)
        pixels = np.asarray(image.resize(size, Image.BICUBIC))
        label_map = np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST))
        mask_t = torch.from_numpy(label_map.copy())
        return normalize_image(pixels), mask_t.float() if self.task == "binary" else mask_t.long()

    def augment(self, image_t: torch.Tensor, mask_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The random part (training only): a horizontal flip with probability ``flip_p``. Returns new
        tensors, never the ones given (those may be a dataset's cached copy)."""
        if self.train and torch.rand(()) < self.flip_p:
            return image_t.flip(-1), mask_t.flip(-1)
        return image_t.clone(), mask_t.clone()

    def __call__(self, image: Image.Image, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.augment(*self.prepare(image, labels))

    def __repr__(self) -> str:
        return (f"SegmentationTransform(image_size={self.image_size}, train={self.train}, "
                f"task={self.task!r}, flip_p={self.flip_p})")


def to_model_input(images: list[np.ndarray]) -> torch.Tensor:
    """Stack (S, S, 3) RGB images in [0, 1] into a (B, 3, S, S) ImageNet-normalised float tensor
    (the same normalisation as ``Sam.preprocess`` and the project's datasets)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 255.0
    mean = torch.tensor([255 * m for m in IMAGENET_MEAN]).view(1, 3, 1, 1)
    std = torch.tensor([255 * s for s in IMAGENET_STD]).view(1, 3, 1, 1)
    return (batch - mean) / std
