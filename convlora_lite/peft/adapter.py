"""Adapter (Houlsby et al., ICML 2019): bottleneck adapters inside every transformer block.

Where it enters SAM: two serial adapters per image-encoder block, placed as Houlsby places them,
on the output of each sub-layer before its residual addition:

* after the attention (``block.attn``, i.e. after its output projection ``proj``), and
* after the MLP (``block.mlp``, after ``lin2``).

Each adapter is ``h -> h + up(GELU(down(h)))`` with ``down: Linear(d, m)`` and
``up: Linear(m, d)``. It works on any leading shape; in SAM the attention output is the
un-partitioned (B, H, W, d) map, so windowed and global blocks are handled alike. On SAM 2's Hiera the
adapters act on each block's output width (``dim_out``, which doubles at a stage's first block). The adapters
are attached with forward hooks (``block.attn_adapter`` / ``block.mlp_adapter`` hold the weights),
so SAM's own parameter names are unchanged.

Initialisation: ``down`` as ``nn.Linear`` (Kaiming-uniform), ``up`` weight *and* bias zero, so
every adapter is exactly the identity at initialisation and the adapted SAM equals SAM (Houlsby
uses a near-zero normal initialisation for a near-identity start; zero makes it exact, as
AdaptFormer does). Houlsby also trains the LayerNorms; we keep them frozen (they would add
5,120 parameters per ViT-H block and move the count off the paper's).

Configuration and the paper's count. With bottleneck m the adapters add
``depth x 2 x (2 d m + m + d)`` parameters. On ViT-H (d = 1280, depth 32) the default m = 2 gives
409,728; with the decoder's 3,505,536 that is 3,915,264 = 3.92 M, the paper's Adapter row
(Ratio 0.61 %). (m = 1 gives 3.75 M and m = 3 gives 4.08 M.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convlora_lite.peft.base import PeftMethod, check_positive_int
from convlora_lite.peft.placement import encoder_blocks


@dataclass(frozen=True)
class AdapterConfig:
    """Adapter's options: the bottleneck width of each adapter."""

    bottleneck: int = 2

    def __post_init__(self) -> None:
        check_positive_int("bottleneck", self.bottleneck)


class BottleneckAdapter(nn.Module):
    """``x + up(GELU(down(x)))``, the identity at initialisation (``up`` is zero).

    Shapes: ``forward(x (..., dim)) -> (..., dim)``.
    """

    def __init__(self, dim: int, bottleneck: int, device=None, dtype=None):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, device=device, dtype=dtype)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class _ApplyAdapter:
    """Forward hook ``(module, inputs, output) -> adapter(output)`` (a picklable callable that
    follows the adapter through ``copy.deepcopy``)."""

    def __init__(self, adapter: BottleneckAdapter):
        self.adapter = adapter

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        return self.adapter(output)


def inject(model: nn.Module, config: AdapterConfig) -> None:
    """Attach a :class:`BottleneckAdapter` after the attention and after the MLP of every block."""
    bottleneck = config.bottleneck
    for block in encoder_blocks(model):
        ref = block.attn.proj.weight
        for sublayer, name in ((block.attn, "attn_adapter"), (block.mlp, "mlp_adapter")):
            adapter = BottleneckAdapter(ref.shape[0], bottleneck, device=ref.device, dtype=ref.dtype)
            block.add_module(name, adapter)
            sublayer.register_forward_hook(_ApplyAdapter(adapter))


METHOD = PeftMethod(
    name="adapter",
    paper="Houlsby et al., Parameter-Efficient Transfer Learning for NLP, ICML 2019",
    where="two bottleneck adapters per image-encoder block, on the attention and MLP outputs before "
          "each residual addition",
    inject=inject,
    config=AdapterConfig,
)
