"""LoRA (Hu et al., 2021) on the fused ``qkv`` projection of every SAM image-encoder block (or of the blocks
``blocks=`` / ``stages=`` choose: :mod:`convlora_lite.peft.placement`), on SAM's ViT or SAM 2's Hiera.

``LoRALinear`` wraps a frozen ``nn.Linear`` (W0, b0) and adds a trainable low-rank update::

    y = W0 x + b0 + scaling * B (A dropout(x)),   scaling = alpha / r

with A (r x d_in) Kaiming-uniform (a = sqrt(5)) and B (d_out x r) zero, so the wrapped layer
equals the base layer at initialisation (the style of ``microsoft/LoRA`` ``loralib/layers.py``).
The input may have any leading dimensions; in SAM's ViT the ``qkv`` layer receives a 4-D
(B', H, W, C) map (B' = batch x windows in windowed blocks), and so does Hiera's, whose ``qkv`` at the first
block of a stage maps C to 3 x 2C (d_out != 3 d_in: A is r x d_in, B is d_out x r whatever the two are).

Subclasses change only what happens to the rank-r bottleneck ``h = A x`` by overriding
:meth:`LoRALinear.adapt_bottleneck` (Conv-LoRA adds its mixture of convolution experts there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod, check_number, check_positive_int
from convlora_lite.peft.placement import check_placement, placed_blocks


@dataclass(frozen=True)
class LoraConfig:
    """LoRA's options (official defaults, ``docs/method.md``): rank r, alpha (the update is scaled by
    alpha / r), dropout on the input of A, and where the layers go: every block (default), the ``blocks`` given by
    0-based index, or SAM 2's Hiera ``stages`` given (1 to 4) (:mod:`convlora_lite.peft.placement`)."""

    rank: int = 3
    alpha: float = 32
    dropout: float = 0.0
    blocks: Optional[Sequence[int]] = None
    stages: Optional[Sequence[int]] = None

    def __post_init__(self) -> None:
        check_positive_int("rank", self.rank)
        check_number("alpha", self.alpha, float("-inf"))
        check_number("dropout", self.dropout, 0.0, 1.0)
        check_placement(self.blocks, self.stages)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    Args:
        base: the linear layer to adapt; it is kept as ``self.base`` and frozen.
        rank: r, the rank of the update (> 0).
        alpha: the update is scaled by ``alpha / rank``.
        dropout: dropout probability on the input of A (0 disables it).

    Shapes: ``forward(x (..., d_in)) -> (..., d_out)``.
    """

    def __init__(self, base: nn.Linear, rank: int = LoraConfig.rank, alpha: float = LoraConfig.alpha,
                 dropout: float = LoraConfig.dropout):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ConfigError(f"LoRA wraps an nn.Linear, got {type(base).__name__}; adapt a linear layer.")
        LoraConfig(rank=rank, alpha=alpha, dropout=dropout)  # the values' checks live in the config
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, rank, **factory))
        # Identity (not Dropout(0)) so that p = 0 draws no random numbers.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_lora_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_lora_parameters(self) -> None:
        """A: Kaiming-uniform (a = sqrt(5), as ``nn.Linear``); B: zeros (the update starts at 0)."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def adapt_bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        """What happens to ``h = A x`` (..., r) before B; LoRA leaves it unchanged."""
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.adapt_bottleneck(F.linear(self.dropout(x), self.lora_A))
        out = self.base(x)
        # out + scaling * h B^T in one pass over the (large) output, forward and backward.
        update = torch.addmm(out.reshape(-1, self.out_features), h.reshape(-1, self.rank), self.lora_B.t(),
                             alpha=self.scaling)
        return update.view(out.shape)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, alpha={self.alpha}"


def wrap_encoder_qkv(model: nn.Module, make: Callable[[nn.Linear], nn.Module], config: LoraConfig) -> None:
    """Replace ``attn.qkv`` of the image-encoder blocks ``config`` places the layers in (SAM's or SAM 2's:
    :func:`~convlora_lite.peft.placement.placed_blocks`) by ``make(qkv)``.

    Raises ConfigError if the model has no SAM image encoder, the placement does not fit it or a block is
    already wrapped.
    """
    blocks = placed_blocks(model, config.blocks, config.stages)
    for block in blocks:
        qkv = block.attn.qkv
        if not isinstance(qkv, nn.Linear):
            raise ConfigError(f"An image-encoder block's attn.qkv is a {type(qkv).__name__}, not an nn.Linear; "
                              "apply a PEFT method to a fresh model.")
    for block in blocks:
        block.attn.qkv = make(block.attn.qkv)


def inject(model: nn.Module, config: LoraConfig) -> None:
    """Wrap the ``qkv`` linear of the placed image-encoder blocks (default: every block) in a :class:`LoRALinear`."""
    rank, alpha, dropout = config.rank, config.alpha, config.dropout
    wrap_encoder_qkv(model, lambda qkv: LoRALinear(qkv, rank=rank, alpha=alpha, dropout=dropout), config)


METHOD = PeftMethod(
    name="lora",
    paper="Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022",
    where="a rank-r update on the fused qkv projection of every image-encoder block (or of the blocks placed)",
    inject=inject,
    config=LoraConfig,
)
