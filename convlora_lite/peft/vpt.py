"""VPT-Deep (Jia et al., ECCV 2022): learned prompt tokens in every transformer block.

Where it enters SAM: each image-encoder block gets ``n`` learned prompt tokens P (n, d). VPT-Deep
prepends them to the token sequence of every layer and discards their outputs at the layer's
end (the next layer brings its own prompts). Only what the image tokens read from the prompts
survives, i.e. the prompts' keys and values in the attention, so here the prompts enter the
attention as ``n`` extra key/value tokens:

    q, k, v = qkv(norm1(x))  for the image tokens (as in SAM)
    k_p, v_p = qkv(norm1(P))  (the block's own frozen norm1 and qkv)
    out = softmax([q k^T * s + relpos, q k_p^T * s]) [v; v_p]

This is exactly VPT-Deep's computation for the image tokens; the prompts' own queries and MLP,
whose results VPT throws away, are not computed.

SAM's blocks work on a 2-D map: windowed blocks attend inside 14 x 14 windows (B' = B x windows),
global blocks over the whole 64 x 64 map. Design choice: the block's n prompts are **shared by
every window** -- each window's attention sees its own 196 tokens plus the same n prompts. Why:
(1) a prompt then plays in every window the role it plays for the whole sequence in VPT (a
learned memory every token can read); (2) the parameter count does not depend on the image size
or on the number of windows (one prompt set per window would multiply the count by 25 at
1024 px and change it with the resolution); (3) windows still do not talk to each other, so
SAM's windowed structure is kept. Prompts have no position on the map, so SAM's decomposed
relative-position bias applies between image tokens only; image-to-prompt logits get no bias.
Global blocks work the same way with one "window", the whole map.

Initialisation: VPT's uniform Xavier range ``sqrt(6 / (3 * patch^2 + d))``. The adapted model
does *not* start as SAM: at initialisation every image token already gives the prompts part of
its attention (what holds: the frozen path is untouched and the output for the image tokens is
exactly softmax attention over [window tokens; prompts], tested against SAM's own attention on
the concatenated sequence).

Configuration and the paper's count. n prompts per block add ``depth x n x d``; on ViT-H the
default n = 12 gives 32 x 12 x 1280 = 491,520, with the decoder's 3,505,536 that is 3,997,056 =
4.00 M, the paper's VPT row (Ratio 0.62 %).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    add_decomposed_rel_pos,
    window_partition,
    window_unpartition,
)
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod, check_positive_int
from convlora_lite.peft.placement import encoder_blocks, is_hiera


@dataclass(frozen=True)
class VptConfig:
    """VPT-Deep's options: the number of prompt tokens per block."""

    num_prompts: int = 12

    def __post_init__(self) -> None:
        check_positive_int("num_prompts", self.num_prompts)


def prompted_attention(attn: Attention, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """SAM's multi-head attention over the tokens of ``x`` plus ``prompts`` as extra keys/values.

    Args:
        attn: a (frozen) SAM ``Attention``.
        x: ``(B', H, W, C)`` normalised tokens (one window or the whole map per row of B').
        prompts: ``(n, C)`` normalised prompt tokens, shared by every row of B'.

    Returns:
        ``(B', H, W, C)``: the attention output for the image tokens (prompts' outputs dropped).
    """
    batch, height, width, _ = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, batch * heads, height * width, -1).unbind(0)  # (B' heads, HW, hd)
    prompt_kv = attn.qkv(prompts).reshape(-1, 3, heads, q.shape[-1])[:, 1:]  # (n, 2, heads, hd)
    k_p, v_p = prompt_kv.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch, -1, -1, -1).reshape(
        2, batch * heads, prompts.shape[0], -1).unbind(0)  # (B' heads, n, hd)

    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if attn.use_rel_pos:
        logits = add_decomposed_rel_pos(logits, q, attn.rel_pos_h, attn.rel_pos_w, (height, width), (height, width))
    logits = torch.cat([logits, (q * attn.scale) @ k_p.transpose(-2, -1)], dim=-1)
    out = logits.softmax(dim=-1) @ torch.cat([v, v_p], dim=1)
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return attn.proj(out)


class PromptedBlock(nn.Module):
    """A SAM image-encoder ``Block`` whose attention also reads ``num_prompts`` learned tokens.

    It adopts the block's own modules under the same names (``norm1``, ``attn``, ``norm2``,
    ``mlp``), so SAM's parameter names are unchanged; ``prompts`` ``(n, d)`` is the only addition.

    Shapes: ``forward(x (B, H, W, d)) -> (B, H, W, d)``.
    """

    def __init__(self, block: Block, num_prompts: int, init_range: float):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = block.norm1, block.attn, block.norm2, block.mlp
        self.window_size = block.window_size
        ref = block.attn.proj.weight
        self.prompts = nn.Parameter(torch.empty(num_prompts, ref.shape[0], device=ref.device, dtype=ref.dtype))
        nn.init.uniform_(self.prompts, -init_range, init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        height, width = x.shape[1], x.shape[2]
        if self.window_size > 0:
            x, padded = window_partition(x, self.window_size)
        x = prompted_attention(self.attn, x, self.norm1(self.prompts))
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, padded, (height, width))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def inject(model: nn.Module, config: VptConfig) -> None:
    """Replace every image-encoder block by a :class:`PromptedBlock` with ``num_prompts`` prompts."""
    num_prompts = config.num_prompts
    blocks = encoder_blocks(model)
    if is_hiera(model):
        raise ConfigError("VPT is not available on SAM 2's Hiera: its prompted attention is SAM's ViT attention "
                          "(relative positions, one width); Hiera's blocks pool their queries and change width "
                          "(docs/sam2.md, 'Methods'). Use lora, conv_lora, adapter, bitfit, ssf or decoder_only.")
    encoder = model.image_encoder
    if not all(isinstance(b, Block) for b in blocks):
        raise ConfigError("The image encoder's blocks are already modified; apply VPT to a fresh model.")
    patch = math.prod(encoder.patch_embed.proj.kernel_size)
    dim = blocks[0].attn.proj.out_features
    init_range = math.sqrt(6.0 / (3 * patch + dim))  # VPT's Xavier-uniform range
    for i, block in enumerate(blocks):
        blocks[i] = PromptedBlock(block, num_prompts, init_range)


METHOD = PeftMethod(
    name="vpt",
    paper="Jia et al., Visual Prompt Tuning, ECCV 2022 (VPT-Deep)",
    where="n learned prompt tokens per image-encoder block, read by every window's attention as extra "
          "keys and values",
    inject=inject,
    config=VptConfig,
)
