"""Many prompts per image, on SAM or SAM 2: encode a batch of images once, then decode any number of point and box
prompts against one image's features.

This is how SAM (and the micro models' pretraining, :mod:`convlora_lite.pretrain.sam_pretrain`) trains: one
encoder pass per image, several prompts decoded from it. The prompt-free and one-prompt-per-image segmenters of
fine-tuning are :mod:`convlora_lite.models.segmenter` and :mod:`~convlora_lite.models.segmenter_sam2`.

* SAM (``segment_anything``'s ``Sam``): an image's features are its embedding ``(1, C, g, g)``; boxes go to the
  prompt encoder as boxes.
* SAM 2 (``SAM2Base``): an image's features are its embedding and the two high-resolution maps
  (:func:`~convlora_lite.models.sam2.image_features`); boxes become two corner points labelled 2 and 3 before any
  point prompts, as ``SAM2ImagePredictor`` passes them.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.models.sam2 import image_features

#: one image's features: SAM's embedding (1, C, g, g), or SAM 2's (embedding, [feat_s0, feat_s1]).
Features = Union[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor]]]


def is_sam2(sam: nn.Module) -> bool:
    """Whether ``sam`` is SAM 2's ``SAM2Base`` (it has ``sam_mask_decoder``) rather than SAM's ``Sam``."""
    return hasattr(sam, "sam_mask_decoder")


def input_size(sam: nn.Module) -> int:
    """The side of ``sam``'s input images in pixels."""
    return sam.image_size if is_sam2(sam) else sam.image_encoder.img_size


def encode(sam: nn.Module, images: torch.Tensor) -> list[Features]:
    """``images`` (B, 3, S, S), ImageNet-normalised -> one :data:`Features` per image (a list of B)."""
    if not is_sam2(sam):
        embeddings = sam.image_encoder(images)
        return [embeddings[b:b + 1] for b in range(len(images))]
    no_mem = sam.no_mem_embed if sam.directly_add_no_mem_embed else None
    embeddings, high_res = image_features(sam.image_encoder, sam.sam_mask_decoder, no_mem, images)
    return [(embeddings[b:b + 1], [f[b:b + 1] for f in high_res]) for b in range(len(images))]


def decode(sam: nn.Module, features: Features, points=None, boxes=None, multimask: bool = False,
           size: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode N prompts against one image's ``features`` (from :func:`encode`, or SAM's embedding (1, C, g, g)).

    Args:
        points: None or (coords (N, P, 2) in input pixels, labels (N, P)); boxes: None or (N, 4) (x0, y0, x1, y1).
        size: the side of the returned logits (default the input size; the decoder's own is 4 * g).
    Returns:
        logits (N, M, size, size), iou predictions (N, M); M = 3 if multimask else 1.
    """
    if is_sam2(sam):
        low_res, iou_pred = _decode_sam2(sam, features, points, boxes, multimask)
    else:
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        low_res, iou_pred = sam.mask_decoder(image_embeddings=features, image_pe=sam.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=multimask)
    size = size or input_size(sam)
    if low_res.shape[-1] != size:
        low_res = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    return low_res, iou_pred


def _decode_sam2(sam: nn.Module, features: Features, points, boxes, multimask: bool):
    """SAM 2's prompt encoder and mask decoder on N prompts of one image, as ``SAM2ImagePredictor._predict`` calls
    them: ``(low-res masks (N, M, 4g, 4g), iou (N, M))``."""
    embedding, high_res = features
    if boxes is not None:
        corners = boxes.reshape(-1, 2, 2)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=corners.device).repeat(len(corners), 1)
        if points is None:
            points = (corners, corner_labels)
        else:
            points = (torch.cat([corners, points[0]], 1), torch.cat([corner_labels, points[1].int()], 1))
    sparse, dense = sam.sam_prompt_encoder(points=points, boxes=None, masks=None)
    masks, iou, _, _ = sam.sam_mask_decoder(
        image_embeddings=embedding, image_pe=sam.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=True, high_res_features=high_res)
    return masks, iou
