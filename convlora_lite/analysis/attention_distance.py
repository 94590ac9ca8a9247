"""Mean attention distance per block of SAM's ViT image encoder (Dosovitskiy et al., 2021, fig. 7).

For a head of a block, the mean attention distance of a query token i is the distance to the
keys weighted by the attention it pays them::

    d_i = sum_j a_ij * ||p_i - p_j|| * patch_size          (pixels)

averaged over the real (non-padding) query tokens of every image. A small value means the head
looks around itself (a local, convolution-like head), a large one that it mixes the whole image.

SAM's encoder has two kinds of blocks, and the measure reads differently on them:

* windowed blocks attend within a ``window_size x window_size`` window only (14 x 14 tokens in
  SAM), so their distance is bounded by the window: they are local *by construction*, not
  because they learned to be;
* global blocks (``global_attn_indexes``, 4 of 32 in ViT-H) attend over the whole grid, so their
  distance says what the pretrained weights chose.

The attention probabilities are recomputed from the ``qkv`` output of each block (captured by a
forward hook, so a PEFT-wrapped ``qkv`` is measured as it computes) with the block's own scale and
decomposed relative positions, exactly as ``segment_anything``'s ``Attention.forward`` does.
Windowed blocks zero-pad the grid to a multiple of the window size; the padding tokens are real
keys there (SAM does not mask them) and are counted as such, but they are never queries here.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure
from segment_anything.modeling.image_encoder import Attention, add_decomposed_rel_pos
from torch import nn


@dataclass
class BlockAttention:
    """The attention of one block on a batch.

    Attributes:
        block: the block's index in ``encoder.blocks``.
        windowed: True for a windowed block, False for a global one.
        probs: (B', heads, N, N) attention probabilities; B' = B * windows for a windowed block
            (``segment_anything``'s window order), B for a global one; N = tokens per window/grid.
        coords: (N, 2) float (row, col) of each token in its window (windowed) or grid (global).
        valid: (B', N) bool, False for the padding tokens added by window partitioning.
    """

    block: int
    windowed: bool
    probs: torch.Tensor
    coords: torch.Tensor
    valid: torch.Tensor


def attention_probabilities(attn: Attention, qkv: torch.Tensor) -> torch.Tensor:
    """The softmax attention of ``attn`` given its ``qkv`` output (B', H, W, 3C): (B', heads, HW, HW)."""
    b, h, w, _ = qkv.shape
    heads = attn.num_heads
    q, k, _ = qkv.reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).reshape(3, b * heads, h * w, -1).unbind(0)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if attn.use_rel_pos:
        logits = add_decomposed_rel_pos(logits, q, attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w))
    return logits.softmax(dim=-1).view(b, heads, h * w, h * w)


def token_coords(height: int, width: int) -> torch.Tensor:
    """(height * width, 2) float (row, col) of the tokens of a map, row-major."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1).float()


def window_validity(batch: int, grid: int, window: int) -> torch.Tensor:
    """(batch * windows, window * window) bool: which tokens of each window (in
    ``segment_anything.window_partition`` order) lie inside the unpadded ``grid x grid`` map."""
    per_side = -(-grid // window)
    local = token_coords(window, window).long()
    wy, wx = torch.meshgrid(torch.arange(per_side), torch.arange(per_side), indexing="ij")
    rows = wy.reshape(-1, 1) * window + local[:, 0]
    cols = wx.reshape(-1, 1) * window + local[:, 1]
    return ((rows < grid) & (cols < grid)).repeat(batch, 1)


def mean_attention_distance(probs: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor | None = None,
                            patch_size: float = 1.0) -> torch.Tensor:
    """Mean attention distance per head, in pixels.

    Args:
        probs: (B', heads, N, N) attention probabilities (rows sum to 1).
        coords: (N, 2) token positions in token units.
        valid: (B', N) bool, the queries to average over (default: all).
        patch_size: pixels per token.

    Returns:
        (heads,) float: sum_j a_ij ||p_i - p_j|| averaged over the valid queries i of all B' maps,
        times ``patch_size``."""
    distance = torch.cdist(coords.double(), coords.double()).to(probs.dtype)  # (N, N)
    per_query = (probs * distance).sum(-1)  # (B', heads, N)
    if valid is None:
        valid = torch.ones(probs.shape[0], probs.shape[2], dtype=torch.bool, device=probs.device)
    weight = valid[:, None, :].to(probs.dtype)
    return (per_query * weight).sum(dim=(0, 2)) / weight.sum(dim=(0, 2)) * patch_size


def uniform_attention_distance(grid: int, patch_size: int) -> float:
    """The mean attention distance (pixels) of a head that attends uniformly over a whole ``grid x grid`` token
    map: the reference a global block's distance is read against. Used in notebook 01."""
    uniform = torch.full((1, 1, grid * grid, grid * grid), 1.0 / grid ** 2)
    return mean_attention_distance(uniform, token_coords(grid, grid), patch_size=patch_size).item()


def _grid_and_patch(encoder: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    patch = encoder.patch_embed.proj.kernel_size[0]
    return images.shape[-1] // patch, patch


@torch.no_grad()
def capture_attention(encoder: nn.Module, images: torch.Tensor) -> list[BlockAttention]:
    """Run ``encoder`` (SAM's ``ImageEncoderViT``) on ``images`` (B, 3, S, S) and return every
    block's :class:`BlockAttention` (memory grows with N^2 per block: use it on small models or
    one image; :func:`attention_distance_table` does not keep the maps)."""
    grid, _ = _grid_and_patch(encoder, images)
    captured: list[BlockAttention] = []

    def hook_for(index: int, block: nn.Module):
        def hook(_module, _inputs, qkv):
            probs = attention_probabilities(block.attn, qkv)
            side = qkv.shape[1]
            if block.window_size > 0:
                valid = window_validity(images.shape[0], grid, block.window_size)
            else:
                valid = torch.ones(qkv.shape[0], side * side, dtype=torch.bool)
            captured.append(BlockAttention(index, block.window_size > 0, probs, token_coords(side, side),
                                           valid.to(probs.device)))
        return hook

    handles = [block.attn.qkv.register_forward_hook(hook_for(i, block)) for i, block in enumerate(encoder.blocks)]
    try:
        encoder(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


@torch.no_grad()
def attention_distance_table(encoder: nn.Module, images: torch.Tensor, batch_size: int = 4) -> pd.DataFrame:
    """Mean attention distance of every head of every block over ``images`` (B, 3, S, S).

    Returns:
        A DataFrame with one row per (block, head): ``block``, ``head``, ``kind`` ("windowed" or
        "global"), ``distance_px`` (mean over all valid queries of all images), and
        ``window_px`` (the window side in pixels for windowed blocks, the image side for global).

    Used in notebook 01."""
    totals: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    grid, patch = _grid_and_patch(encoder, images)
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        for att in capture_attention(encoder, batch):
            n = batch.shape[0]
            totals[att.block] = totals.get(att.block, 0) + mean_attention_distance(
                att.probs, att.coords.to(att.probs.device), att.valid, patch).cpu() * n
            counts[att.block] = counts.get(att.block, 0) + n
    rows = []
    for i, block in enumerate(encoder.blocks):
        windowed = block.window_size > 0
        for head, value in enumerate((totals[i] / counts[i]).tolist()):
            rows.append(dict(block=i, head=head, kind="windowed" if windowed else "global", distance_px=value,
                             window_px=(block.window_size if windowed else grid) * patch))
    return pd.DataFrame(rows)


def plot_attention_distance(table: pd.DataFrame, title: str = "Mean attention distance per block", ax=None,
                            uniform: float | None = None):
    """Scatter of :func:`attention_distance_table`: one dot per head, coloured by block kind, with
    the window side drawn as a bound for windowed blocks and, given ``uniform`` (pixels,
    :func:`uniform_attention_distance`), uniform attention as a dashed line. Returns the figure. Used in notebook 01."""
    if ax is None:
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
    for kind, colour in (("windowed", "tab:blue"), ("global", "tab:red")):
        part = table[table["kind"] == kind]
        ax.scatter(part["block"], part["distance_px"], c=colour, label=f"{kind} blocks (one dot per head)", s=18)
    bound = table.drop_duplicates("block")
    ax.step(bound["block"], bound["window_px"], where="mid", c="gray", ls=":", label="window side / image side")
    if uniform is not None:
        ax.axhline(uniform, c="tab:red", ls="--", lw=1, label=f"uniform attention over the image ({uniform:.1f} px)")
    ax.set(title=title, xlabel="block", ylabel="mean attention distance (pixels)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below the axes, off the dots
    ax.figure.tight_layout()
    return ax.figure
