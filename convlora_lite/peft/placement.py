"""Where the PEFT methods enter the image encoder: its attention blocks, on SAM's ViT or SAM 2's Hiera, and the
placement option that chooses among them (``blocks=``, ``stages=``; default every block).

* SAM (``segment_anything``'s ``ImageEncoderViT``): ``model.image_encoder.blocks``, one width and one token grid
  throughout, windowed or global attention.
* SAM 2.1 (Meta's Hiera): ``model.image_encoder.trunk.blocks``, ``MultiScaleBlock``\\ s in four stages
  (``trunk.stage_ends``). The first block of stages 2-4 widens the tokens (its ``attn.qkv`` maps ``dim`` to
  ``3 dim_out``, ``dim_out = 2 dim``) and max-pools the queries 2x (the keys and values keep the previous grid);
  each stage has its own window size (``trunk.window_spec``, the first block of a stage keeping the previous
  stage's), and ``trunk.global_att_blocks`` attend over the whole map. At 1024 px the stages see 256, 128, 64 and
  32 tokens per side.

``blocks`` are 0-based block indices (as Meta's ``global_att_blocks``) and work on both backbones; ``stages`` are
Hiera's stages numbered 1 to 4 (as in the Hiera paper and Meta's code), for SAM 2 only.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from convlora_lite.errors import ConfigError


def encoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The attention blocks of ``model.image_encoder``: SAM's ``blocks`` or SAM 2's ``trunk.blocks``; a clear
    :class:`ConfigError` for a model without a SAM image encoder."""
    encoder = getattr(model, "image_encoder", None)
    blocks = getattr(getattr(encoder, "trunk", encoder), "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError("The model has no SAM image encoder (`model.image_encoder.blocks`, or SAM 2's "
                          "`model.image_encoder.trunk.blocks`); pass a model from convlora_lite.build_sam or one of "
                          "its segmenters (PromptFreeSAM, PromptedSAM, PromptFreeSAM2, PromptedSAM2).")
    return blocks


def is_hiera(model: nn.Module) -> bool:
    """Whether ``model``'s image encoder is SAM 2's Hiera (it has a ``trunk``)."""
    return hasattr(getattr(model, "image_encoder", None), "trunk")


def hiera_stages(model: nn.Module) -> list[range]:
    """The block indices of each of Hiera's stages (stage ``s`` is item ``s - 1``), e.g. Hiera-T's
    ``[range(0, 1), range(1, 3), range(3, 10), range(10, 12)]``."""
    ends = list(model.image_encoder.trunk.stage_ends)
    return [range(start, end + 1) for start, end in zip([0] + [e + 1 for e in ends[:-1]], ends)]


def check_placement(blocks: Optional[Sequence[int]], stages: Optional[Sequence[int]]) -> None:
    """A :class:`ConfigError` naming the option unless ``blocks`` (indices >= 0) and ``stages`` (numbers >= 1) are
    each ``None`` or a non-empty increasing list of integers, and not both are given."""
    for name, values, low in (("blocks", blocks, 0), ("stages", stages, 1)):
        if values is not None and (not isinstance(values, (list, tuple)) or not values
                                   or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values)
                                   or list(values) != sorted(set(values))):
            raise ConfigError(f"Option {name} must be a non-empty increasing list of integers >= {low}, got "
                              f"{values!r}.")
    if blocks is not None and stages is not None:
        raise ConfigError("Give blocks or stages, not both (stages=[3] is blocks= the blocks of stage 3).")


def placed_blocks(model: nn.Module, blocks: Optional[Sequence[int]] = None,
                  stages: Optional[Sequence[int]] = None) -> list[nn.Module]:
    """The encoder blocks the adapters go in: every block (default), the ``blocks`` given by index, or every block
    of the Hiera ``stages`` given (1 to 4); a :class:`ConfigError` for an index or stage the model does not have."""
    all_blocks = encoder_blocks(model)
    check_placement(blocks, stages)
    if stages is not None:
        if not is_hiera(model):
            raise ConfigError("Option stages is for SAM 2's Hiera, whose blocks come in 4 stages; SAM's ViT has "
                              "none: choose its blocks with blocks= instead.")
        spans = hiera_stages(model)
        if stages[-1] > len(spans):
            raise ConfigError(f"Option stages={list(stages)}: this Hiera has stages 1 to {len(spans)}.")
        blocks = [i for s in stages for i in spans[s - 1]]
    if blocks is None:
        return list(all_blocks)
    if blocks[-1] >= len(all_blocks):
        raise ConfigError(f"Option blocks={list(blocks)}: this encoder has blocks 0 to {len(all_blocks) - 1}.")
    return [all_blocks[i] for i in blocks]
