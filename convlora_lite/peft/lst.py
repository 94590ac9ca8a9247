"""LST, Ladder Side-Tuning (Sung, Cho and Bansal, NeurIPS 2022): a small side network that reads
the frozen backbone through "ladder" connections.

Where it enters SAM: SAM's image encoder runs unchanged; a side network of width
``w = d / reduction`` runs beside it:

* its state starts as a learned positional map ``h_0`` (1, g, g, w) (the side network's own
  position embedding, as SAM's encoder has one);
* at each ladder tap -- by default after every *global-attention* block, i.e. at the end of each
  of SAM's four stages (blocks 7, 15, 23, 31 of ViT-H) -- the block's output ``b_k`` is read,
  detached (no gradient ever flows into the backbone, LST's memory saving), projected down and
  mixed in by LST's gate: ``h <- side_block_k(mu_k down_k(b_k) + (1 - mu_k) h)`` with
  ``mu_k = sigmoid(alpha_k / T)``, ``alpha_k = 0`` at initialisation (mu = 0.5) and T = 0.1;
* ``side_block_k`` is a SAM ``Block`` of width w with the backbone's number of heads, MLP ratio 4,
  relative positions and global attention (the taps follow global blocks);
* the side output ``up(LayerNorm(h))`` (``up: Linear(w, C)``, C = 256) is added to the encoder's
  output, the (B, C, g, g) image embedding that the mask decoder reads.

Hooks do the wiring (a pre-hook on the encoder starts ``h``, forward hooks on the tapped blocks
update it, a forward hook on the encoder adds the side output), so SAM's parameter names are
unchanged; the side network is ``image_encoder.ladder_side``. Windowed blocks are not touched.

Initialisation and what we change: ``up`` is zero (weight and bias), so the side output is 0 and
the adapted SAM equals SAM at initialisation. LST initialises its side network from the backbone
by structural pruning; we initialise it randomly (PyTorch defaults, positional map trunc-normal
0.02), since SAM's encoder blocks have no counterpart of T5's pruning recipe in the paper.

Configuration and the paper's count (not published; derived to land on it). On ViT-H with the
defaults (reduction 4 -> w = 320, 16 heads, 4 taps): 4 side blocks x 1,238,040 (a SAM block of
width 320 with 127 x 20 relative-position tables) + 4 downsamplers x 409,920 + 4 gates +
1,310,720 (positional map 64 x 64 x 320) + 640 (LayerNorm) + 82,176 (``up`` to 256) = 7,985,380;
with the decoder's 3,505,536 that is 11,490,916 = 11.49 M, the paper's LST row. Its Ratio 1.77 %
is this count over the *adapted* model's total (641.09 M + 7.99 M); over SAM's 641.09 M alone it
would read 1.79 %.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence

import torch
from segment_anything.modeling.image_encoder import Block
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod, check_number, check_positive_int
from convlora_lite.peft.placement import encoder_blocks, is_hiera


@dataclass(frozen=True)
class LstConfig:
    """LST's options: side width = encoder width / ``reduction``, the gates' temperature, the tapped blocks
    (``None``: the global-attention blocks)."""

    reduction: int = 4
    gate_temperature: float = 0.1
    taps: Optional[Sequence[int]] = None

    def __post_init__(self) -> None:
        check_positive_int("reduction", self.reduction)
        check_number("gate_temperature", self.gate_temperature, 0.0, open_low=True)
        taps = self.taps
        if taps is not None and (not isinstance(taps, (list, tuple)) or not taps
                                 or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in taps)
                                 or list(taps) != sorted(set(taps))):
            raise ConfigError(f"Option taps must be increasing block indices >= 0, got {taps!r}.")


class LadderSideNetwork(nn.Module):
    """The side network: ladder downsamplers, gates, side blocks and the output projection.

    Args:
        dim: the backbone's width d.
        side_dim: the side network's width w.
        num_heads: attention heads of each side block.
        num_taps: number of ladder connections (= side blocks).
        grid: ``(g, g)`` the token grid.
        out_dim: channels of the encoder's output (the neck's, 256 for SAM).
        gate_temperature: T in ``mu = sigmoid(alpha / T)``.

    Use per forward pass: ``start(batch)``, then ``ladder(k, b_k)`` for k = 0..num_taps-1, then
    ``output()`` -> ``(B, out_dim, g, g)``.
    """

    def __init__(self, dim: int, side_dim: int, num_heads: int, num_taps: int, grid: tuple[int, int], out_dim: int,
                 gate_temperature: float):
        super().__init__()
        self.gate_temperature = gate_temperature
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0], grid[1], side_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.downsamplers = nn.ModuleList(nn.Linear(dim, side_dim) for _ in range(num_taps))
        self.gate_logits = nn.Parameter(torch.zeros(num_taps))
        self.blocks = nn.ModuleList(
            Block(side_dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                  use_rel_pos=True, window_size=0, input_size=grid)
            for _ in range(num_taps))
        self.norm = nn.LayerNorm(side_dim, eps=1e-6)
        self.up = nn.Linear(side_dim, out_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self._state: Optional[torch.Tensor] = None

    def gates(self) -> torch.Tensor:
        """``mu_k = sigmoid(alpha_k / T)`` for every tap: ``(num_taps,)``."""
        return torch.sigmoid(self.gate_logits / self.gate_temperature)

    def start(self, batch: int) -> None:
        """Set the side state to the positional map, for a batch of ``batch`` images."""
        self._state = self.pos_embed.expand(batch, -1, -1, -1)

    def ladder(self, index: int, backbone_features: torch.Tensor) -> None:
        """Mix tap ``index``'s backbone output ``(B, g, g, d)`` into the side state and run its block."""
        if self._state is None:
            raise RuntimeError("LadderSideNetwork.ladder() called before start(); run the image encoder's forward.")
        mu = self.gates()[index]
        mixed = mu * self.downsamplers[index](backbone_features.detach()) + (1 - mu) * self._state
        self._state = self.blocks[index](mixed)

    def output(self) -> torch.Tensor:
        """The side network's contribution to the image embedding: ``(B, out_dim, g, g)``."""
        state, self._state = self._state, None
        return self.up(self.norm(state)).permute(0, 3, 1, 2)


class _StartHook:
    """Forward pre-hook on the encoder: start the side state for this batch."""

    def __init__(self, side: LadderSideNetwork):
        self.side = side

    def __call__(self, module, inputs):
        self.side.start(inputs[0].shape[0])


class _LadderHook:
    """Forward hook on a tapped block: feed its output to the side network."""

    def __init__(self, side: LadderSideNetwork, index: int):
        self.side, self.index = side, index

    def __call__(self, module, inputs, output):
        self.side.ladder(self.index, output)


class _AddSideOutputHook:
    """Forward hook on the encoder: image embedding + side output."""

    def __init__(self, side: LadderSideNetwork):
        self.side = side

    def __call__(self, module, inputs, output):
        return output + self.side.output()


def inject(model: nn.Module, config: LstConfig) -> None:
    """Add ``image_encoder.ladder_side`` and hook it to the encoder.

    Args:
        reduction: side width = encoder width / reduction.
        gate_temperature: T of LST's gates.
        taps: indices of the blocks whose outputs feed the side network (default: the
            global-attention blocks).
    """
    reduction, gate_temperature, taps = config.reduction, config.gate_temperature, config.taps
    blocks = encoder_blocks(model)
    if is_hiera(model):
        raise ConfigError("LST is not available on SAM 2's Hiera: its side network is a ViT of one width on one "
                          "token grid, added to one image embedding, while Hiera's stages change width and grid and "
                          "its neck feeds the decoder three maps (docs/sam2.md, 'Methods'). Use lora, conv_lora, "
                          "adapter, bitfit, ssf or decoder_only.")
    encoder = model.image_encoder
    if hasattr(encoder, "ladder_side"):
        raise ConfigError("LST is already applied to this encoder; build a fresh model.")
    dim = encoder.patch_embed.proj.out_channels
    heads = blocks[0].attn.num_heads
    if not isinstance(reduction, int) or reduction < 1 or dim % reduction or (dim // reduction) % heads:
        raise ConfigError(f"LST reduction must be a positive integer that divides the encoder width {dim} into a "
                          f"side width divisible by its {heads} heads, got {reduction!r}.")
    taps = [i for i, b in enumerate(blocks) if b.window_size == 0] if taps is None else list(taps)
    if not taps or any(not 0 <= i < len(blocks) for i in taps) or taps != sorted(set(taps)):
        raise ConfigError(f"LST taps must be increasing block indices in [0, {len(blocks) - 1}], got {taps} "
                          "(the default, the global-attention blocks, needs at least one).")
    grid = (encoder.img_size // encoder.patch_embed.proj.kernel_size[0],) * 2
    ref = encoder.patch_embed.proj.weight
    side = LadderSideNetwork(dim, dim // reduction, heads, len(taps), grid, encoder.neck[0].out_channels,
                             gate_temperature).to(device=ref.device, dtype=ref.dtype)
    encoder.ladder_side = side
    encoder.register_forward_pre_hook(_StartHook(side))
    for index, block_index in enumerate(taps):
        blocks[block_index].register_forward_hook(_LadderHook(side, index))
    encoder.register_forward_hook(_AddSideOutputHook(side))


METHOD = PeftMethod(
    name="lst",
    paper="Sung, Cho and Bansal, LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer "
          "Learning, NeurIPS 2022",
    where="a side network of width d/4 beside the frozen encoder, fed by gated ladder connections after each "
          "global-attention block, its output added to the image embedding",
    inject=inject,
    config=LstConfig,
)
