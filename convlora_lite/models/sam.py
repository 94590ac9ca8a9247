"""Build SAM (Kirillov et al., 2023) from Meta's ``segment-anything`` classes, and SAM 2.1 by the same call.

``build_sam(name)`` knows the three official backbones (``vit_b``, ``vit_l``, ``vit_h``), the
bundled micro model (``micro_sam``) and a random tiny model for tests (``test_tiny``). Every
such model is a ``segment_anything.modeling.Sam`` with the same component classes, so everything
that works on one works on the others. It also builds SAM 2.1's four Hiera backbones
(``sam2.1_hiera_tiny``, ``_small``, ``_base_plus``, ``_large``): Meta's ``SAM2Base``, from Meta's ``sam2``
package (:mod:`convlora_lite.models.sam2`), with their weights found, downloaded and checked the same way.

The variants' sizes are :mod:`convlora_lite.models.configs` (re-exported here); checkpoints (finding,
downloading, checking and resizing them) are :mod:`convlora_lite.models.checkpoints`' job.
"""
from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from convlora_lite.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from convlora_lite.errors import CheckpointError
from convlora_lite.models.checkpoints import fit_state_dict, load_state_dict_file, resolve_checkpoint
from convlora_lite.models.configs import MODEL_CONFIGS, Sam2Config, SamConfig, get_config, sized_config
from convlora_lite.models.sam2 import sam2_from_config

__all__ = ["MODEL_CONFIGS", "Sam2Config", "SamConfig", "build_sam", "get_config", "sam_from_config", "sized_config"]


def sam_from_config(cfg: SamConfig) -> Sam:
    """A randomly initialised ``Sam`` with the sizes of ``cfg`` (in eval mode). Used in notebook 01."""
    grid = cfg.grid_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=4,
            out_chans=cfg.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
        pixel_mean=[255 * m for m in IMAGENET_MEAN],  # used only by Sam.preprocess, which we never call
        pixel_std=[255 * s for s in IMAGENET_STD],
    )
    return sam.eval()


def _empty_model(cfg: SamConfig | Sam2Config) -> nn.Module:
    """The model of ``cfg`` with its parameters on the meta device (nothing allocated)."""
    if cfg.backbone == "hiera":
        return sam2_from_config(cfg, empty=True)
    with torch.device("meta"):
        return sam_from_config(cfg)


def build_sam(name: str, checkpoint="auto", image_size: int | None = None, device="cpu",
              cache_dir=None, base_url: str | None = None) -> nn.Module:
    """Build the SAM variant ``name`` (see :data:`MODEL_CONFIGS`) with its weights.

    Args:
        name: ``vit_b``, ``vit_l``, ``vit_h``, ``micro_sam``, ``test_tiny``, or SAM 2.1's
            ``sam2.1_hiera_tiny``, ``sam2.1_hiera_small``, ``sam2.1_hiera_base_plus``, ``sam2.1_hiera_large``.
        checkpoint: ``"auto"`` (official weights for vit_b/l/h, downloaded once into the cache and
            sha256-verified; SAM 2.1's likewise, checked by content (their digests are not pinned:
            :class:`Sam2Config`); the bundled file for ``micro_sam``; random for ``test_tiny``),
            ``None`` (random initialisation) or a path to a ``.pth`` state dict or ``.safetensors``
            (SAM 2.1: Meta's ``.pt``, ``{"model": state_dict}``).
        image_size: input side in pixels (default: the model's native size); a multiple of the
            patch size (of 32 for SAM 2.1). SAM's checkpoint position tables are resized to it (SAM 2.1's Hiera
            interpolates its own).
        device: where the model lives. ``"meta"`` builds shapes only: no weights are read or
            downloaded and nothing is allocated (for parameter accounting).
        cache_dir: download folder (default ``$CONVLORA_CACHE`` or ``~/.cache/convlora_lite``).
        base_url: a mirror holding the official file names (default ``$CONVLORA_SAM_BASE_URL``).

    Returns:
        A ``Sam`` (SAM 2.1: Meta's ``SAM2Base``) in eval mode, with ``sam.config`` the :class:`SamConfig`
        (:class:`Sam2Config`) it was built from (``image_size`` included).

    Used in notebooks 00, 01 and 02."""
    cfg = sized_config(get_config(name), image_size)
    if torch.device(device).type == "meta":
        sam = _empty_model(cfg)
    else:
        path = resolve_checkpoint(cfg, checkpoint, cache_dir, base_url)
        if path is None:
            sam = sam_from_config(cfg) if cfg.backbone == "vit" else sam2_from_config(cfg)
        else:
            state = fit_state_dict(load_state_dict_file(path), cfg, path)
            sam = _empty_model(cfg)
            try:
                sam.load_state_dict(state, strict=True, assign=True)
            except RuntimeError as err:
                raise CheckpointError(f"Checkpoint {path} does not fit model {cfg.name!r}: {str(err)[:600]} "
                                      f"Pass a checkpoint saved from {cfg.name}.") from err
        sam = sam.to(device)
    sam.config = cfg
    return sam
