"""SAM 2.1 as a segmenter, through SAM 2's own mask decoder with its high-resolution features: prompt-free (binary
and multi-class, :class:`PromptFreeSAM2`) and prompted (one box or point per image, :class:`PromptedSAM2`); and
:func:`segmenter_for`, which picks the segmenter of either backbone.

They are SAM's segmenters (:mod:`convlora_lite.models.segmenter`) with three changes:

* the heads are ``SAM2Base``'s ``sam_prompt_encoder`` and ``sam_mask_decoder``, and the segmenter keeps SAM 2's
  no-memory embedding (frozen: it is not in the decoder), which an image gets in place of video memory;
* the encoder gives the decoder what ``SAM2ImagePredictor`` gives it
  (:func:`~convlora_lite.models.sam2.image_features`): the stride-16 embedding and the stride-4 and stride-8 FPN
  maps through the decoder's ``conv_s0`` and ``conv_s1`` (which train with the decoder), fused into the upscaling;
* the prompt-free decoder's output tokens are SAM 2's: the object-score token, the IoU token, then the mask tokens
  (all take part in the two-way transformer; the object-score and IoU heads are not computed, and the object-score
  head is not kept). The prompted one is Meta's decoder, called as ``SAM2ImagePredictor`` calls it, boxes included:
  they enter the prompt encoder as two corner points labelled 2 and 3, followed by a padding point. With no PEFT
  method, or every adapter at zero, :class:`PromptedSAM2` gives ``SAM2ImagePredictor``'s logits (tested).

Evaluation follows Meta's defaults: a single-mask (box) output whose stability is low is replaced by the best of
the three multimask outputs (``dynamic_multimask_via_stability``); training always uses mask token 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from convlora_lite.models.sam2 import image_features
from convlora_lite.models.segmenter import PromptedSAM, PromptFreeMaskDecoder, PromptFreeSAM


class PromptFreeMaskDecoder2(PromptFreeMaskDecoder):
    """SAM 2's mask decoder without prompts: :class:`PromptFreeMaskDecoder` with SAM 2's object-score token before
    the IoU token and the high-resolution features fused into the upscaling (``conv_s0``, ``conv_s1``)."""

    first_mask_token = 2

    def __init__(self, decoder: nn.Module, num_queries: int, num_classes: Optional[int], query_jitter: float = 0.0):
        super().__init__(decoder, num_queries, num_classes, query_jitter)
        self.obj_score_token = decoder.obj_score_token
        self.conv_s0, self.conv_s1 = decoder.conv_s0, decoder.conv_s1

    def output_tokens(self) -> torch.Tensor:
        """``(2 + Q, C)``: the object-score token, the IoU token, then the mask tokens."""
        return torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def upscale(self, src: torch.Tensor, high_res_features: Optional[list[torch.Tensor]]) -> torch.Tensor:
        """``(B, C, g, g) -> (B, C / 8, 4g, 4g)``, adding ``feat_s1`` (B, C/4, 2g, 2g) after the first transposed
        convolution and ``feat_s0`` (B, C/8, 4g, 4g) after the second, as SAM 2's decoder does."""
        conv1, norm1, act1, conv2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        return act2(conv2(act1(norm1(conv1(src) + feat_s1))) + feat_s0)


class Sam2Encoding:
    """What SAM 2's two segmenters share: their heads, the no-memory embedding and the encoder's features."""

    backbone = "hiera"

    @staticmethod
    def heads(sam: nn.Module) -> tuple[nn.Module, nn.Module]:
        """``(prompt_encoder, mask_decoder)`` of a ``SAM2Base``."""
        return sam.sam_prompt_encoder, sam.sam_mask_decoder

    def keep_no_mem_embed(self, sam: nn.Module) -> None:
        """Adopt ``sam``'s no-memory embedding ``(1, 1, C)`` (``None`` for a model that does not add it)."""
        self.no_mem_embed = sam.no_mem_embed if sam.directly_add_no_mem_embed else None

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(embedding (B, C, g, g), [feat_s0 (B, C/8, 4g, 4g), feat_s1 (B, C/4, 2g, 2g)])``."""
        return image_features(self.image_encoder, self.mask_decoder, self.no_mem_embed, images)


class PromptFreeSAM2(Sam2Encoding, PromptFreeSAM):
    """SAM 2.1 as a prompt-free segmenter (binary or MaskFormer-style multi-class), as :class:`PromptFreeSAM`.

    Args:
        sam: a ``SAM2Base`` from ``build_sam("sam2.1_hiera_*")``.
        num_classes, num_queries: as :class:`PromptFreeSAM`.

    ``forward(images (B, 3, S, S))`` returns a :class:`~convlora_lite.models.segmenter.SegOutput`; the decoder's
    logits are ``(B, Q, S/4, S/4)`` before upsampling."""

    decoder_type = PromptFreeMaskDecoder2

    def __init__(self, sam: nn.Module, num_classes: int = 1, num_queries: Optional[int] = None,
                 query_jitter: float = 0.0):
        super().__init__(sam, num_classes, num_queries, query_jitter)
        self.keep_no_mem_embed(sam)


class PromptedSAM2(Sam2Encoding, PromptedSAM):
    """SAM 2.1 kept promptable: one box or one point per image, as :class:`PromptedSAM`, through Meta's decoder.

    Args:
        sam: a ``SAM2Base`` from ``build_sam("sam2.1_hiera_*")``.
        prompt: ``"box"`` or ``"point"``."""

    def __init__(self, sam: nn.Module, prompt: str):
        super().__init__(sam, prompt)
        self.keep_no_mem_embed(sam)

    def prompt_inputs(self, prompts) -> tuple[Optional[tuple[torch.Tensor, torch.Tensor]], None]:
        """``(points, None)`` as ``SAM2ImagePredictor`` passes them: a box ``(B, 4)`` becomes its two corners
        ``(B, 2, 2)`` with labels 2 and 3."""
        if prompts.boxes is None:
            return (prompts.points, prompts.labels), None
        corners = prompts.boxes.reshape(-1, 2, 2)
        labels = torch.tensor([[2, 3]], dtype=torch.int, device=corners.device).repeat(len(corners), 1)
        return (corners, labels), None

    def decode_image(self, embeddings: torch.Tensor, high_res: list[torch.Tensor], index: int,
                     sparse: torch.Tensor, dense: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM 2's mask decoder on image ``index``, its high-resolution features and its prompt:
        ``(masks (1, M, 4g, 4g), iou (1, M))``."""
        masks, iou, _, _ = self.mask_decoder(
            image_embeddings=embeddings[index:index + 1], image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse[index:index + 1], dense_prompt_embeddings=dense[index:index + 1],
            multimask_output=multimask, repeat_image=False, high_res_features=[f[index:index + 1] for f in high_res])
        return masks, iou


def segmenter_for(sam: nn.Module, num_classes: int = 1, prompt: str = "none",
                  num_queries: Optional[int] = None, query_jitter: float = 0.0) -> nn.Module:
    """The segmenter of ``sam`` (from ``build_sam``, either backbone): prompt-free (``prompt="none"``, ``num_classes``,
    ``num_queries`` and ``query_jitter`` as :class:`PromptFreeSAM`) or prompted (``"box"``, ``"point"``)."""
    hiera = getattr(getattr(sam, "config", None), "backbone", "vit") == "hiera"
    if prompt != "none":
        return (PromptedSAM2 if hiera else PromptedSAM)(sam, prompt)
    return (PromptFreeSAM2 if hiera else PromptFreeSAM)(sam, num_classes=num_classes, num_queries=num_queries,
                                                        query_jitter=query_jitter)
