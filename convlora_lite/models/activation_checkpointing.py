"""Activation checkpointing of SAM's image encoder: recompute each block in the backward pass."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint


def enable_activation_checkpointing(encoder: nn.Module) -> None:
    """Recompute each of ``encoder.blocks`` in the backward pass instead of storing its
    activations (``torch.utils.checkpoint``, non-reentrant, RNG state preserved), in training
    with gradients on only. Parameter names are unchanged (the block's ``forward`` is wrapped)."""
    for block in encoder.blocks:
        def forward(x, _block=block, _forward=block.forward):
            if _block.training and torch.is_grad_enabled():
                return activation_checkpoint(_forward, x, use_reentrant=False)
            return _forward(x)
        block.forward = forward

