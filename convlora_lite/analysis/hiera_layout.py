"""Hiera, block by block: which stage, how wide, which token grid its attention (and so Conv-LoRA's experts) sees,
and how many pixels an expert's 3 x 3 convolution covers there (notebook 13, ``docs/sam2.md``).

Hiera (SAM 2's image encoder) embeds the image at stride 4 and halves the token grid at the first block of stages
2-4, where the queries are max-pooled and the width doubles; each stage attends in windows of its own size
(``trunk.window_spec``; a stage's first block keeps the previous stage's window and grid for its keys and values),
except the global-attention blocks. A Conv-LoRA layer wraps each block's ``qkv``, so its experts see the samples
``qkv`` sees: the windows, or the whole map in a global block (``peft/conv_lora.py``). Expert ``s`` (scale
``s = 1..8``) upsamples a sample ``s`` times, applies a 3 x 3 convolution and resizes back, so its kernel spans
``3 / s`` tokens: ``3 * stride / s`` pixels of the input image.
"""
from __future__ import annotations

import math

import pandas as pd
from torch import nn

#: the columns of :func:`hiera_layout`.
COLUMNS = ["block", "stage", "width", "pools_queries", "attention", "grid", "window", "samples", "stride_px",
           "window_px", "expert_px_s1", "expert_px_s8"]


def _trunk(model: nn.Module) -> nn.Module:
    """Hiera of a ``SAM2Base`` or of a SAM 2 segmenter."""
    return model.image_encoder.trunk


def hiera_layout(model: nn.Module, image_size: int) -> pd.DataFrame:
    """One row per Hiera block of ``model`` (a ``SAM2Base`` or a SAM 2 segmenter) at ``image_size`` px.

    Columns: ``block`` (0-based, as Meta's ``global_att_blocks``), ``stage`` (1-4), ``width`` ("dim -> dim_out"),
    ``pools_queries``, ``attention`` ("window" or "global"), ``grid`` (tokens per side of the map ``qkv`` reads),
    ``window`` (tokens per side of one attention sample: the window, or the grid in a global block), ``samples``
    (samples per image: windows, padded maps counted whole), ``stride_px`` (input pixels per token of that map),
    ``window_px`` (a sample's side in pixels), ``expert_px_s1`` and ``expert_px_s8`` (the side, in pixels, of a
    Conv-LoRA expert's 3 x 3 kernel at scale 1 and 8)."""
    trunk = _trunk(model)
    stride = trunk.patch_embed.proj.stride[0]
    ends = list(trunk.stage_ends)
    rows = []
    for index, block in enumerate(trunk.blocks):
        stage = 1 + sum(index > end for end in ends)
        pools = block.q_stride is not None
        step = stride * 2 ** (stage - 1 - pools)  # the keys' and values' grid: the previous stage's at a pooling block
        grid = image_size // step
        window = block.window_size or grid
        samples = math.ceil(grid / window) ** 2
        rows.append(dict(block=index, stage=stage, width=f"{block.dim} -> {block.dim_out}", pools_queries=pools,
                         attention="window" if block.window_size else "global", grid=grid, window=window,
                         samples=samples, stride_px=step, window_px=window * step, expert_px_s1=3.0 * step,
                         expert_px_s8=3.0 * step / 8))
    return pd.DataFrame(rows, columns=COLUMNS)


def stage_summary(layout: pd.DataFrame) -> pd.DataFrame:
    """:func:`hiera_layout` per stage: its blocks, width, the grid and windows of its own (non-pooling) blocks,
    how many of them attend globally, and the expert footprints there. Used in notebook 13."""
    rows = []
    for stage, part in layout.groupby("stage"):
        own = part[~part["pools_queries"]] if (~part["pools_queries"]).any() else part
        windowed = own[own["attention"] == "window"]
        rows.append({"stage": stage, "blocks": f"{part['block'].min()}-{part['block'].max()}",
                     "width": own["width"].iloc[-1].split(" -> ")[1], "tokens per side": own["grid"].iloc[0],
                     "px per token": own["stride_px"].iloc[0],
                     "window (tokens)": windowed["window"].iloc[0] if len(windowed) else "-",
                     "global blocks": int((own["attention"] == "global").sum()),
                     "expert 3x3 at scale 1 (px)": own["expert_px_s1"].iloc[0],
                     "at scale 8 (px)": own["expert_px_s8"].iloc[0]})
    return pd.DataFrame(rows).set_index("stage")
