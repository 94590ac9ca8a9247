"""Prompt-free SAM: SAM used as a plain semantic segmenter, as Conv-LoRA fine-tunes it.

No prompts enter the decoder: the sparse prompt embeddings are empty and the dense one is the
prompt encoder's no-mask embedding. The decoder keeps the IoU token (it takes part in the
two-way transformer) and its IoU head (frozen by ``apply_peft`` and never computed here), and:

* binary tasks (``num_classes=1``): SAM's mask token 0 and hypernetwork MLP 0 only; the other
  three tokens and MLPs are dropped, so they are not counted as parameters;
* multi-class tasks (``num_classes=K >= 2``, background = class 0): ``num_queries`` mask tokens
  initialised as copies of token 0, sharing hypernetwork MLP 0, and a new class head
  ``Linear(transformer_dim, K + 1)`` (MaskFormer style; the last class is "no object"). Identical copies
  (AutoGluon's head, the official one) predict identical masks until something breaks the tie;
  ``query_jitter`` adds Gaussian noise of that many times token 0's standard deviation to each copy
  (the ``cpu`` preset's setting, ``docs/recipe.md``).

The decoder predicts logits on a ``4 g x 4 g`` grid (``g`` = encoder tokens per side, 256 x 256
for SAM at 1024 px), bilinearly upsampled to the input size.

SAM 2.1's segmenters (:mod:`convlora_lite.models.segmenter_sam2`) subclass these two: they change only where the
heads come from, what the encoder gives the decoder (SAM 2's high-resolution features) and its output tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, Sam
from torch import nn

from convlora_lite.errors import ConfigError, DataError
from convlora_lite.peft.base import collect_aux_loss


@dataclass
class SegOutput:
    """What :class:`PromptFreeSAM` returns.

    Attributes:
        logits: ``(B, 1, S, S)`` mask logits for a binary model, else ``None``.
        mask_logits: ``(B, Q, S, S)`` per-query mask logits for a multi-class model, else ``None``.
        class_logits: ``(B, Q, K + 1)`` per-query class logits (last = no object), or ``None``.
        aux_loss: 0-dim tensor, the sum of the adapters' auxiliary losses (0 when none).
        multimask_logits: :class:`PromptedSAM` with point prompts only: ``(B, 3, S, S)``, SAM's
            three masks for an ambiguous prompt (the loss takes the best of them); else ``None``.
        iou_predictions: :class:`PromptedSAM` only: ``(B, M)`` the IoU head's estimates of the
            ``M`` output masks (1, or 3 with ``multimask_logits``); else ``None``.
    """

    logits: Optional[torch.Tensor]
    mask_logits: Optional[torch.Tensor]
    class_logits: Optional[torch.Tensor]
    aux_loss: torch.Tensor
    multimask_logits: Optional[torch.Tensor] = None
    iou_predictions: Optional[torch.Tensor] = None


class PromptFreeMaskDecoder(nn.Module):
    """SAM's mask decoder without prompts, with ``num_queries`` mask tokens that share
    hypernetwork MLP 0 and an optional class head.

    Parameter names follow SAM's ``MaskDecoder`` (``mask_tokens``, ``output_hypernetworks_mlps.0``,
    ...), so SAM decoder weights map onto it one to one.
    """

    #: the index of the first mask token among the output tokens (after the IoU token).
    first_mask_token = 1

    def __init__(self, decoder: MaskDecoder, num_queries: int, num_classes: Optional[int],
                 query_jitter: float = 0.0):
        """Reuse ``decoder``'s modules; ``num_classes=None`` means no class head (binary). With
        ``num_queries > 1``, each copy of token 0 gets Gaussian noise of ``query_jitter`` times token 0's
        standard deviation (from torch's global generator: seed it first)."""
        super().__init__()
        dim = decoder.transformer_dim
        token0 = decoder.mask_tokens.weight[:1]
        self.transformer_dim = dim
        self.num_mask_tokens = num_queries
        self.transformer = decoder.transformer
        self.iou_token = decoder.iou_token
        self.mask_tokens = nn.Embedding(num_queries, dim, device=token0.device)
        with torch.no_grad():
            self.mask_tokens.weight.copy_(token0.expand(num_queries, dim))
            if num_queries > 1 and query_jitter:
                noise = torch.randn(num_queries, dim).to(token0.device)
                self.mask_tokens.weight.add_(noise * (query_jitter * token0.float().std()).to(token0.dtype))
        self.output_upscaling = decoder.output_upscaling
        self.output_hypernetworks_mlps = nn.ModuleList([decoder.output_hypernetworks_mlps[0]])
        self.iou_prediction_head = decoder.iou_prediction_head
        self.class_head = nn.Linear(dim, num_classes + 1, device=token0.device) if num_classes else None

    def output_tokens(self) -> torch.Tensor:
        """``(1 + Q, C)``: the IoU token, then the mask tokens."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def upscale(self, src: torch.Tensor, high_res_features: Optional[list[torch.Tensor]]) -> torch.Tensor:
        """``(B, C, g, g) -> (B, C / 8, 4g, 4g)``: SAM's two transposed convolutions (no high-resolution features)."""
        return self.output_upscaling(src)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense_embeddings: torch.Tensor,
                high_res_features: Optional[list[torch.Tensor]] = None):
        """
        Args:
            image_embeddings: ``(B, C, g, g)`` from the image encoder.
            image_pe: ``(1, C, g, g)`` dense positional encoding of the grid.
            dense_embeddings: ``(B, C, g, g)`` dense prompt embedding (the no-mask embedding).
            high_res_features: SAM 2 only: ``[(B, C/8, 4g, 4g), (B, C/4, 2g, 2g)]``; ``None`` for SAM.

        Returns:
            ``(mask_logits (B, Q, 4g, 4g), class_logits (B, Q, K + 1) or None)``.
        """
        batch, channels, grid_h, grid_w = image_embeddings.shape
        tokens = self.output_tokens().unsqueeze(0).expand(batch, -1, -1)
        hs, src = self.transformer(image_embeddings + dense_embeddings, image_pe, tokens)
        first = self.first_mask_token
        query_out = hs[:, first : first + self.num_mask_tokens, :]  # (B, Q, C)
        upscaled = self.upscale(src.transpose(1, 2).reshape(batch, channels, grid_h, grid_w), high_res_features)
        hyper = self.output_hypernetworks_mlps[0](query_out)  # (B, Q, C / 8)
        mask_logits = (hyper @ upscaled.flatten(2)).view(batch, self.num_mask_tokens, *upscaled.shape[-2:])
        class_logits = self.class_head(query_out) if self.class_head is not None else None
        return mask_logits, class_logits


class PromptFreeSAM(nn.Module):
    """SAM as a prompt-free segmenter (binary or MaskFormer-style multi-class).

    Args:
        sam: a ``Sam`` from :func:`convlora_lite.models.sam.build_sam` (its image encoder and prompt
            encoder are reused, its mask decoder is trimmed as described in the module docstring).
        num_classes: 1 for binary segmentation; ``K >= 2`` classes, background included, for
            multi-class.
        num_queries: multi-class only: the number of mask tokens (default ``K``).
        query_jitter: multi-class only: the noise that breaks the tie between the mask tokens, in units of
            token 0's standard deviation (default 0: identical copies, the official head).

    ``forward(images)`` takes ``(B, 3, S, S)`` ImageNet-normalised float images with ``S`` =
    ``self.image_size`` and returns a :class:`SegOutput`.
    Used in notebooks 00 and 02."""

    #: the image encoder this class takes (SAM 2's Hiera: :class:`~convlora_lite.models.segmenter_sam2.PromptFreeSAM2`).
    backbone = "vit"
    decoder_type = PromptFreeMaskDecoder

    def __init__(self, sam: Sam, num_classes: int = 1, num_queries: Optional[int] = None,
                 query_jitter: float = 0.0):
        super().__init__()
        check_backbone(self, sam)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes={num_classes!r}: use 1 for binary segmentation or K >= 2 classes "
                              "(background included) for multi-class.")
        if num_classes == 1 and num_queries not in (None, 1):
            raise ConfigError(f"num_queries={num_queries} is for multi-class models; a binary model "
                              "(num_classes=1) has one mask token. Drop num_queries or set num_classes >= 2.")
        if num_queries is not None and (not isinstance(num_queries, int) or num_queries < 1):
            raise ConfigError(f"num_queries={num_queries!r} must be a positive integer (default: num_classes).")
        self.config = sam.config
        self.image_size = sam.config.image_size
        self.num_classes = num_classes
        self.num_queries = 1 if num_classes == 1 else (num_queries or num_classes)
        self.image_encoder = sam.image_encoder
        self.prompt_encoder, decoder = self.heads(sam)
        self.mask_decoder = self.decoder_type(decoder, self.num_queries, num_classes if num_classes > 1 else None,
                                              query_jitter)

    @staticmethod
    def heads(sam: nn.Module) -> tuple[nn.Module, nn.Module]:
        """``(prompt_encoder, mask_decoder)`` of ``sam``."""
        return sam.prompt_encoder, sam.mask_decoder

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]:
        """``(embedding (B, C, g, g), None)``: the image encoder's output (SAM 2 adds its high-resolution features)."""
        return self.image_encoder(images), None

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 1

    @property
    def class_head(self) -> Optional[nn.Linear]:
        """The multi-class head (inside ``mask_decoder`` so that it trains with it), or ``None``."""
        return self.mask_decoder.class_head

    def check_images(self, images) -> None:
        """Raise a clear error unless ``images`` is a ``(B, 3, S, S)`` float tensor at this size."""
        size = self.image_size
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise DataError(f"Expected a batch of images as a (B, 3, {size}, {size}) tensor, got {shape}. "
                            "Add the batch dimension with images.unsqueeze(0) for a single image.")
        if not images.is_floating_point():
            raise DataError(f"Expected float images (ImageNet-normalised), got dtype {images.dtype}. "
                            "Convert with the dataset transforms (to float, /255, ImageNet mean/std).")
        channels = images.shape[1]
        if channels != 3:
            how = {1: "repeat the gray channel: images.expand(-1, 3, -1, -1)",
                   4: "drop the alpha channel: images[:, :3]"}.get(channels, "convert the images to RGB")
            raise DataError(f"SAM takes RGB images (3 channels), got {channels} channel(s) with shape "
                            f"{tuple(images.shape)}; {how} (the datasets convert grayscale and RGBA to RGB).")
        if images.shape[-2:] != (size, size):
            raise DataError(f"This model takes {size}x{size} images, got {tuple(images.shape[-2:])}. Resize the "
                            f"images to {size} (the dataset's image_size) or build the model with "
                            f"build_sam(..., image_size={images.shape[-1]}) if that is a multiple of "
                            f"{self.config.size_multiple}.")

    def forward(self, images: torch.Tensor) -> SegOutput:
        """
        Args:
            images: ``(B, 3, S, S)`` ImageNet-normalised float images.

        Returns:
            :class:`SegOutput` with ``logits`` (binary) or ``mask_logits`` and ``class_logits``
            (multi-class), upsampled to ``S x S``, and the adapters' ``aux_loss``.
        """
        low_res, class_logits = self.decode(images)
        return self.upsample(low_res, class_logits, collect_aux_loss(self))

    def decode(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The image encoder and the prompt-free decoder, before upsampling (what an ONNX export computes:
        ``convlora_lite.inference.onnx_export``).

        Args:
            images: ``(B, 3, S, S)`` ImageNet-normalised float images.

        Returns:
            ``(low_res (B, Q, 4g, 4g), class_logits (B, Q, K + 1) or None)``: the mask logits on the decoder's
            grid (Q = 1 for a binary model) and, multi-class, the class logits.
        """
        self.check_images(images)
        embeddings, high_res = self.encode(images)  # (B, C, g, g)
        batch, channels, grid_h, grid_w = embeddings.shape
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, channels, 1, 1).expand(batch, -1, grid_h, grid_w)
        return self.mask_decoder(embeddings, self.prompt_encoder.get_dense_pe(), dense, high_res)

    def upsample(self, low_res: torch.Tensor, class_logits: Optional[torch.Tensor],
                 aux_loss: torch.Tensor) -> SegOutput:
        """The :class:`SegOutput` of :meth:`decode`'s logits, the masks bilinearly upsampled to ``S x S``."""
        size = (self.image_size, self.image_size)
        masks = F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)
        if self.is_binary:
            return SegOutput(logits=masks, mask_logits=None, class_logits=None, aux_loss=aux_loss)
        return SegOutput(logits=None, mask_logits=masks, class_logits=class_logits, aux_loss=aux_loss)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (no gradients; call ``.eval()`` first for inference).

        Returns:
            binary: ``(B, S, S)`` foreground probabilities (sigmoid of the logits);
            multi-class: ``(B, K, S, S)`` per-class scores, MaskFormer's semantic inference
            ``score_k = sum_q softmax(class_q)[k] * sigmoid(mask_q)`` for ``k < K`` (the
            no-object class dropped); the predicted label map is ``scores.argmax(1)``.
        """
        return self.probabilities(self(images))

    def probabilities(self, out: SegOutput) -> torch.Tensor:
        """What :meth:`predict` returns, from the output ``out`` of a forward pass already made (e.g. the one
        a validation loss was computed on)."""
        if self.is_binary:
            return out.logits.sigmoid()[:, 0]
        class_probs = out.class_logits.softmax(-1)[..., :-1]  # (B, Q, K)
        return torch.einsum("bqk,bqhw->bkhw", class_probs, out.mask_logits.sigmoid())


def check_backbone(segmenter: nn.Module, sam: nn.Module) -> None:
    """A :class:`ConfigError` unless ``sam`` was built by ``build_sam`` (it has ``config``) for ``segmenter``'s
    backbone, naming the segmenter to use otherwise."""
    name = type(segmenter).__name__
    if not hasattr(sam, "config"):
        raise ConfigError(f"{name} needs a model built by convlora_lite.build_sam (it reads sam.config).")
    if sam.config.backbone != segmenter.backbone:
        other = "PromptFreeSAM2 or PromptedSAM2" if sam.config.backbone == "hiera" else "PromptFreeSAM or PromptedSAM"
        family = {"vit": "SAM's ViT", "hiera": "SAM 2.1's Hiera"}[segmenter.backbone]
        raise ConfigError(f"{name} takes {family} backbones, not {sam.config.name}: use "
                          f"{other} (convlora_lite.models.segmenter_sam2.segmenter_for(sam, ...) picks the right one).")


class PromptedSAM(nn.Module):
    """SAM kept promptable: a binary segmenter that takes one box or one point per image.

    Beyond the paper (which trains SAM prompt-free, :class:`PromptFreeSAM`): the whole of SAM's mask
    decoder is kept (its 4 mask tokens and hypernetwork MLPs, the IoU head), and each image's
    prompt goes through SAM's (frozen) prompt encoder. The prompts are
    :class:`~convlora_lite.models.prompts.Prompts` in input pixels:

    * ``box``: SAM's single-mask output (mask token 0);
    * ``point``: SAM's multimask output for an ambiguous prompt (tokens 1-3); ``logits`` is the
      mask with the highest predicted IoU (SAM's automatic choice) and ``multimask_logits`` holds
      all three (training puts the loss on the best of them, as SAM does).

    An image whose prompt is absent (``present`` False: an empty ground-truth mask) gets SAM's
    "not a point" padding embedding in place of its prompt tokens. Each image is decoded by SAM's
    own ``MaskDecoder`` against its own embedding (SAM's decoder expands one image embedding to
    the prompts of that image). Built without a PEFT method, this is the zero-shot promptable SAM.
    """

    backbone = "vit"

    def __init__(self, sam: Sam, prompt: str):
        super().__init__()
        from convlora_lite.models.prompts import check_prompt

        check_backbone(self, sam)
        if check_prompt(prompt) == "none":
            free = type(self).__name__.replace("Prompted", "PromptFree")
            raise ConfigError(f"{type(self).__name__} is for prompt='box' or 'point'; use {free} for prompt='none'.")
        self.config = sam.config
        self.prompt = prompt
        self.image_size = sam.config.image_size
        self.num_classes = 1
        self.image_encoder = sam.image_encoder
        self.prompt_encoder, self.mask_decoder = self.heads(sam)

    is_binary = True
    check_images = PromptFreeSAM.check_images
    heads = staticmethod(PromptFreeSAM.heads)
    encode = PromptFreeSAM.encode

    def prompt_inputs(self, prompts) -> tuple[Optional[tuple[torch.Tensor, torch.Tensor]], Optional[torch.Tensor]]:
        """``(points, boxes)`` for the prompt encoder, as SAM's predictor passes them: ``(coords (B, N, 2), labels
        (B, N))`` or ``None``, and boxes ``(B, 4)`` or ``None``."""
        return (None if prompts.points is None else (prompts.points, prompts.labels)), prompts.boxes

    def decode_image(self, embeddings: torch.Tensor, high_res: Optional[list[torch.Tensor]], index: int,
                     sparse: torch.Tensor, dense: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's mask decoder on image ``index`` and its prompt: ``(masks (1, M, 4g, 4g), iou (1, M))``."""
        return self.mask_decoder(image_embeddings=embeddings[index:index + 1],
                                 image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse[index:index + 1],
                                 dense_prompt_embeddings=dense[index:index + 1], multimask_output=multimask)

    def encode_prompts(self, prompts, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sparse (B, T, C), dense (B, C, g, g))`` prompt embeddings from the frozen prompt encoder."""
        if prompts is None or prompts.kind != self.prompt:
            got = "none" if prompts is None else prompts.kind
            raise ConfigError(f"This model takes {self.prompt} prompts, got {got}: pass "
                              f"convlora_lite.models.prompts.eval_prompts(masks, names, {self.prompt!r}).")
        if len(prompts.present) != batch:
            raise DataError(f"{len(prompts.present)} prompts for {batch} images: give one prompt per image.")
        points, boxes = self.prompt_inputs(prompts)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=None)
        padding = self.prompt_encoder.not_a_point_embed.weight.expand_as(sparse)
        sparse = torch.where(prompts.present.to(sparse.device)[:, None, None], sparse, padding)
        return sparse, dense

    def forward(self, images: torch.Tensor, prompts=None) -> SegOutput:
        """
        Args:
            images: ``(B, 3, S, S)`` ImageNet-normalised float images.
            prompts: :class:`~convlora_lite.models.prompts.Prompts` of this model's kind, one per image.

        Returns:
            :class:`SegOutput` with ``logits`` ``(B, 1, S, S)``, ``iou_predictions`` and, for
            points, ``multimask_logits``; all upsampled to ``S x S``.
        """
        self.check_images(images)
        embeddings, high_res = self.encode(images)
        sparse, dense = self.encode_prompts(prompts, len(images))
        multimask = self.prompt == "point"
        decoded = [self.decode_image(embeddings, high_res, b, sparse, dense, multimask) for b in range(len(images))]
        low_res = torch.cat([masks for masks, _ in decoded])  # (B, M, 4g, 4g)
        iou_pred = torch.cat([iou for _, iou in decoded])  # (B, M)
        masks = F.interpolate(low_res, size=images.shape[-2:], mode="bilinear", align_corners=False)
        aux_loss = collect_aux_loss(self)
        if not multimask:
            return SegOutput(logits=masks, mask_logits=None, class_logits=None, aux_loss=aux_loss,
                             iou_predictions=iou_pred)
        chosen = masks[torch.arange(len(masks)), iou_pred.argmax(1)][:, None]
        return SegOutput(logits=chosen, mask_logits=None, class_logits=None, aux_loss=aux_loss,
                         multimask_logits=masks, iou_predictions=iou_pred)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, prompts=None) -> torch.Tensor:
        """``(B, S, S)`` foreground probabilities for ``images`` and their ``prompts`` (no gradients)."""
        return self.probabilities(self(images, prompts))

    @staticmethod
    def probabilities(out: SegOutput) -> torch.Tensor:
        """What :meth:`predict` returns, from the output ``out`` of a forward pass already made."""
        return out.logits.sigmoid()[:, 0]
