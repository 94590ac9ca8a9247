"""A finished run (or its export) as a segmenter of images of any size: :class:`Segmenter`.

>>> from convlora_lite import Segmenter
>>> segmenter = Segmenter.from_run("runs/own_leaves/conv_lora/seed42686693")   # or an export .safetensors
>>> mask = segmenter.segment(Image.open("leaf.jpg"))     # uint8 (H, W) at the image's own size

The image goes through the training recipe's evaluation transform (RGB, square bicubic resize to
the run's ``image_size``, ImageNet normalisation); the model's probabilities are resized back to
the image's size (bilinear) and then thresholded at 0.5 (binary: 0/1) or arg-maxed (multi-class:
class ids).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convlora_lite.data.transforms import normalize_image, to_rgb
from convlora_lite.errors import DataError
from convlora_lite.training import devices

#: a binary model's foreground: probability above this.
THRESHOLD = 0.5


def as_pil(image) -> Image.Image:
    """A PIL image from a PIL image, a path, or an array (H, W), (H, W, 3|4) as uint8, or floats in [0, 1]."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, Path)):
        from convlora_lite.data.datasets import _open_image

        return _open_image(Path(image), "image", "the input")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise DataError(f"cannot read an image from an array of shape {array.shape}; pass (H, W), (H, W, 3) or "
                        "(H, W, 4), or a PIL image.")
    if array.dtype != np.uint8:
        top = float(array.max(initial=0))
        scale = 255.0 if top <= 1.0 else 1.0
        array = np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


class Segmenter:
    """A model of a finished run with its config and spec, ready to segment images.

    Args:
        model: a :class:`~convlora_lite.models.segmenter.PromptFreeSAM` with the run's weights, or an
            :class:`~convlora_lite.inference.onnx_model.OnnxModel` (an ONNX export run by onnxruntime).
        config: the run's :class:`~convlora_lite.training.config.TrainConfig`.
        spec: the run's dataset spec (task, class names, metrics).
        device: ``"auto"`` (a GPU when there is one), ``"cuda"``, ``"mps"`` or ``"cpu"``.
        batch_size: images per forward pass in :meth:`segment_batch`.

    The model runs in the run's own precision on ``device``
    (:func:`~convlora_lite.training.devices.inference_precision`: fp16 or bf16 autocast where the run
    trained so, fp32 for an fp16 run on a CPU); probabilities are float32.
    """

    def __init__(self, model, config, spec, *, device: str = "auto", batch_size: int = 4) -> None:
        self.device = devices.resolve_device(device)
        self.precision = devices.inference_precision(config.precision, self.device, config.model)
        self.model = model.eval().to(self.device)
        self.config, self.spec = config, spec
        self.batch_size = int(batch_size)

    @classmethod
    def from_run(cls, source, *, device: str = "auto", batch_size: int = 4, checkpoint=None) -> "Segmenter":
        """The segmenter of a finished run directory, of a ``convlora export`` ``.safetensors`` file, or of a Hub
        folder (``convlora export --format hub``, ``convlora hub pull``); ``checkpoint``: the SAM base weights'
        path here, for an export made elsewhere (checked by sha256). A ``.onnx`` file (``convlora export --format
        onnx``) is run by onnxruntime (:class:`~convlora_lite.inference.onnx_model.OnnxModel`)."""
        from convlora_lite.inference.export import load_source
        from convlora_lite.inference.onnx_model import is_onnx, load_onnx

        model, config, spec = (load_onnx if is_onnx(source) else load_source)(source, checkpoint)
        return cls(model, config, spec, device=device, batch_size=batch_size)

    @property
    def is_binary(self) -> bool:
        return self.spec.task == "binary"

    @property
    def classes(self) -> tuple:
        return tuple(self.spec.classes)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def __repr__(self) -> str:
        return (f"Segmenter({self.config.method} on {self.config.dataset}, {self.spec.task}, classes {self.classes}, "
                f"{self.config.model} at {self.image_size} px, device {self.device})")

    def _inputs(self, images: Sequence) -> tuple[torch.Tensor, list]:
        pils = [to_rgb(as_pil(image)) for image in images]
        size = (self.image_size, self.image_size)
        batch = torch.stack([normalize_image(np.asarray(p.resize(size, Image.BICUBIC))) for p in pils])
        return batch, [(p.size[1], p.size[0]) for p in pils]

    @torch.no_grad()
    def probabilities_batch(self, images: Sequence) -> list[np.ndarray]:
        """Per image, at its own size: binary ``(H, W)`` foreground probabilities; multi-class
        ``(K, H, W)`` class scores (``PromptFreeSAM.predict``)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch, sizes = self._inputs(images[start:start + self.batch_size])
            with devices.autocast(self.device, self.precision):
                scores = self.model.predict(batch.to(self.device)).float()
            if self.is_binary:
                scores = scores[:, None]
            for score, (height, width) in zip(scores, sizes):
                resized = F.interpolate(score[None], size=(height, width), mode="bilinear", align_corners=False)[0]
                out.append((resized[0] if self.is_binary else resized).cpu().numpy())
        return out

    def probabilities(self, image) -> np.ndarray:
        """:meth:`probabilities_batch` of one image."""
        return self.probabilities_batch([image])[0]

    def mask_of(self, probabilities: np.ndarray) -> np.ndarray:
        """uint8 (H, W): binary 0/1 (probability > :data:`THRESHOLD`), multi-class the class id of the highest
        score."""
        if self.is_binary:
            return (probabilities > THRESHOLD).astype(np.uint8)
        return probabilities.argmax(0).astype(np.uint8)

    def segment_batch(self, images: Sequence) -> list[np.ndarray]:
        """:meth:`segment` of each image (batched)."""
        return [self.mask_of(p) for p in self.probabilities_batch(list(images))]

    def segment(self, image) -> np.ndarray:
        """The mask of ``image`` (PIL image, path or array of any size) at its own size: uint8
        (H, W), binary 0/1 or multi-class class ids."""
        return self.segment_batch([image])[0]
