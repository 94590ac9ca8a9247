"""SAM's image-encoder attention through ``F.scaled_dot_product_attention``, without the (L x L) attention matrix.

Meta's :class:`segment_anything.modeling.image_encoder.Attention` computes, per head, on L = H x W tokens::

    logits[i, j] = scale * q_i . k_j + rel_h[i, row(j)] + rel_w[i, col(j)]        (L x L, materialised)
    out = softmax(logits) v

with the decomposed relative-position terms ``rel_h = q Rh^T`` (L x H) and ``rel_w = q Rw^T`` (L x W). The
softmax of a global block at 1024 px is 4096 x 4096 per head, saved for the backward pass. Here the two
relative-position terms become part of the dot product: with

    q'_i = [scale * q_i, rel_h[i, :], rel_w[i, :]]        k'_j = [k_j, onehot_H(row(j)), onehot_W(col(j))]

``q'_i . k'_j`` is the logit above, so ``scaled_dot_product_attention(q', k', v', scale=1)`` gives Meta's
output with a fused (flash or memory-efficient) kernel that never stores the L x L matrix: what the backward
keeps is O(L x d). The price is a head dimension of d + H + W (rounded up to a multiple of 8; ``v`` is
zero-padded to it, so every backend can take it), i.e. more arithmetic in the global blocks' attention
(``docs/performance.md`` has what was measured). Parameters and their names are Meta's: a checkpoint, a
PEFT method and a run directory do not see the difference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

#: The attention implementations of the image encoder (``TrainConfig.attention``).
ATTENTIONS = ("meta", "sdpa")


class SdpaAttention(Attention):
    """Meta's ``Attention`` (same parameters) computed by ``F.scaled_dot_product_attention`` (module docstring).

    ``forward(x (B, H, W, dim)) -> (B, H, W, dim)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, L, d) each
        d = q.shape[-1]
        if self.use_rel_pos:
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", q.reshape(batch, heads, height, width, d),
                                 get_rel_pos(height, height, self.rel_pos_h).to(q.dtype))
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", q.reshape(batch, heads, height, width, d),
                                 get_rel_pos(width, width, self.rel_pos_w).to(q.dtype))
            q = torch.cat([q * self.scale, rel_h.flatten(2, 3), rel_w.flatten(2, 3)], dim=-1)
            k = torch.cat([k, _key_positions(height, width, k).expand(batch, heads, -1, -1)], dim=-1)
            scale = 1.0
        else:
            scale = self.scale
        size = q.shape[-1] + -q.shape[-1] % 8  # one head size for q, k and v, a multiple of 8
        q, k, v = (t if t.shape[-1] == size else F.pad(t, (0, size - t.shape[-1])) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :d]
        out = out.view(batch, heads, height, width, d).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out)


def _key_positions(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(L, H + W): each key's row and column as one-hot vectors, in ``like``'s dtype and device."""
    rows = torch.arange(height, device=like.device).repeat_interleave(width)
    cols = torch.arange(width, device=like.device).repeat(height)
    return torch.cat([F.one_hot(rows, height), F.one_hot(cols, width)], dim=1).to(like.dtype)


def enable_sdpa_attention(encoder: nn.Module) -> None:
    """Compute every block's attention of ``encoder`` (a SAM ``ImageEncoderViT``) with :class:`SdpaAttention`, in
    place (the modules keep their parameters and their names)."""
    for block in encoder.blocks:
        if type(block.attn) is Attention:
            block.attn.__class__ = SdpaAttention
