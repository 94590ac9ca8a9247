"""SAM-Adapter (Chen et al., 2023): task knowledge from patch-embedding and high-frequency features,
injected into every block by MLP adapters (the explicit visual prompting of Liu et al., CVPR 2023).

Where it enters SAM (as ``tianrun-chen/SAM-Adapter-PyTorch`` does it):

1. high-frequency component of the input image: the 2-D FFT with the central (low-frequency)
   square of side ``sqrt(freq_ratio) x`` the image side removed, transformed back, absolute value;
2. ``hfc = Conv2d(3, c, patch, stride=patch)(high_freq(image))`` -> (B, g, g, c), c = d / scale;
3. ``emb = Linear(d, c)(patch_embed(image))`` -- the patch embedding, before the position
   embedding;
4. for block i: ``prompt_i = shared(GELU(mlp_i(hfc + emb)))`` with ``mlp_i: Linear(c, c)`` and one
   ``shared: Linear(c, d)`` for all blocks, added to the block's input: ``x <- x + prompt_i``.

The prompts are per token on the full (B, g, g, d) map, added before the block partitions it into
windows, so windowed and global blocks are handled alike. The modules live in
``image_encoder.prompt_generator``; forward hooks on ``patch_embed`` (which sees the image and
the patch tokens) and on each block's input apply them, so SAM's own parameter names are
unchanged. The FFT runs in float32 (half-precision FFTs are restricted to power-of-two sizes).

Initialisation: weights trunc-normal (std 0.02), biases zero, conv He-normal, as the official
code; **except** ``shared``, which we zero (weight and bias) by default so that every prompt is 0
and the adapted SAM equals SAM at initialisation (``zero_init=False`` gives the official
trunc-normal ``shared``).

Configuration and the paper's count. With c = d / scale_factor the method adds
``3 c p^2 + c`` (conv) + ``d c + c`` (embedding) + ``depth (c^2 + c)`` + ``c d + d`` (shared).
The official ``scale_factor = 32`` gives 186,960 on ViT-H (3.69 M in all); our default
``scale_factor = 16`` (c = 80) gives 61,520 + 102,480 + 207,360 + 103,680 = 475,040, with the
decoder's 3,505,536 that is 3,980,576 = 3.98 M, the paper's SAM-Adapter row (Ratio 0.62 %).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod, check_number, check_positive_int
from convlora_lite.peft.placement import encoder_blocks, is_hiera


@dataclass(frozen=True)
class SamAdapterConfig:
    """SAM-Adapter's options: the prompt MLP's width reduction, the high-frequency cut-off, zero-initialised
    up-projections."""

    scale_factor: int = 16
    freq_ratio: float = 0.25
    zero_init: bool = True

    def __post_init__(self) -> None:
        check_positive_int("scale_factor", self.scale_factor)
        check_number("freq_ratio", self.freq_ratio, 0.0, 1.0)
        if not isinstance(self.zero_init, bool):
            raise ConfigError(f"Option zero_init must be true or false, got {self.zero_init!r}.")


def high_frequency_component(images: torch.Tensor, freq_ratio: float = 0.25) -> torch.Tensor:
    """SAM-Adapter's FFT high-pass filter.

    The centred 2-D spectrum loses a central square of side ``2 * (int(sqrt(H W freq_ratio)) // 2)``
    (the low frequencies); the result is ``|ifft2(...)|``.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)`` float32.
    """
    height, width = images.shape[-2:]
    half = int(math.sqrt(height * width * freq_ratio) // 2)
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.float(), norm="forward"), dim=(-2, -1))
    keep = torch.ones(height, width, device=images.device)
    keep[height // 2 - half:height // 2 + half, width // 2 - half:width // 2 + half] = 0
    spectrum = spectrum * keep
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)), norm="forward").real.abs()


class PromptGenerator(nn.Module):
    """SAM-Adapter's prompt generator for an encoder of width ``dim`` and ``depth`` blocks.

    ``begin(images, patch_tokens)`` computes the shared features ``hfc + emb`` (B, g, g, c) for
    one forward pass; ``prompt(i)`` then gives block i's prompt (B, g, g, dim).
    """

    def __init__(self, dim: int, depth: int, patch_size: int, scale_factor: int, freq_ratio: float,
                 zero_init: bool, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        hidden = dim // scale_factor
        self.freq_ratio = freq_ratio
        self.handcrafted = nn.Conv2d(3, hidden, kernel_size=patch_size, stride=patch_size, **factory)
        self.embedding = nn.Linear(dim, hidden, **factory)
        self.lightweight_mlps = nn.ModuleList(nn.Linear(hidden, hidden, **factory) for _ in range(depth))
        self.shared = nn.Linear(hidden, dim, **factory)
        for linear in [self.embedding, *self.lightweight_mlps, self.shared]:
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.handcrafted.weight, std=math.sqrt(2.0 / (patch_size * patch_size * hidden)))
        nn.init.zeros_(self.handcrafted.bias)
        if zero_init:
            nn.init.zeros_(self.shared.weight)
        self._features = None

    def begin(self, images: torch.Tensor, patch_tokens: torch.Tensor) -> None:
        """Store ``hfc + emb`` for this forward pass.

        Args:
            images: ``(B, 3, S, S)`` the encoder's input.
            patch_tokens: ``(B, g, g, dim)`` the patch embedding's output.
        """
        high = high_frequency_component(images, self.freq_ratio).to(patch_tokens.dtype)
        hfc = self.handcrafted(high).permute(0, 2, 3, 1)
        self._features = hfc + self.embedding(patch_tokens)

    def prompt(self, index: int) -> torch.Tensor:
        """Block ``index``'s prompt ``shared(GELU(mlp_index(features)))``: ``(B, g, g, dim)``."""
        if self._features is None:
            raise RuntimeError("PromptGenerator.prompt() called before begin(); run the image encoder's forward.")
        features = self._features
        if index == len(self.lightweight_mlps) - 1:
            self._features = None  # the last block: do not keep the features past this forward pass
        return self.shared(F.gelu(self.lightweight_mlps[index](features)))


class _BeginHook:
    """Forward hook on ``patch_embed``: (module, (images,), tokens) -> generator.begin(...)."""

    def __init__(self, generator: PromptGenerator):
        self.generator = generator

    def __call__(self, module, inputs, output):
        self.generator.begin(inputs[0], output)


class _AddPromptHook:
    """Forward pre-hook on block ``index``: its input ``x`` becomes ``x + prompt(index)``."""

    def __init__(self, generator: PromptGenerator, index: int):
        self.generator, self.index = generator, index

    def __call__(self, module, inputs):
        return (inputs[0] + self.generator.prompt(self.index),)


def inject(model: nn.Module, config: SamAdapterConfig) -> None:
    """Add ``image_encoder.prompt_generator`` and hook it into the patch embedding and every block."""
    scale_factor, freq_ratio, zero_init = config.scale_factor, config.freq_ratio, config.zero_init
    encoder_blocks(model)
    if is_hiera(model):
        raise ConfigError("SAM-Adapter is not available on SAM 2's Hiera: it adds one prompt of the encoder's one "
                          "width to every token of one patch grid, while Hiera's stages change both "
                          "(docs/sam2.md, 'Methods'). Use lora, conv_lora, adapter, bitfit, ssf or decoder_only.")
    encoder = model.image_encoder
    if hasattr(encoder, "prompt_generator"):
        raise ConfigError("SAM-Adapter is already applied to this encoder; build a fresh model.")
    dim = encoder.patch_embed.proj.out_channels
    if not isinstance(scale_factor, int) or scale_factor < 1 or dim % scale_factor:
        raise ConfigError(f"SAM-Adapter scale_factor must be a positive integer dividing the encoder width {dim}, "
                          f"got {scale_factor!r}.")
    ref = encoder.patch_embed.proj.weight
    generator = PromptGenerator(dim, len(encoder.blocks), encoder.patch_embed.proj.kernel_size[0], scale_factor,
                                freq_ratio, zero_init, device=ref.device, dtype=ref.dtype)
    encoder.prompt_generator = generator
    encoder.patch_embed.register_forward_hook(_BeginHook(generator))
    for i, block in enumerate(encoder.blocks):
        block.register_forward_pre_hook(_AddPromptHook(generator, i))


METHOD = PeftMethod(
    name="sam_adapter",
    paper="Chen et al., SAM Fails to Segment Anything? -- SAM-Adapter: Adapting SAM in Underperformed "
          "Scenes: Camouflage, Shadow, Medical Image Segmentation, and More, arXiv:2304.09148, 2023",
    where="a prompt from patch-embedding and high-frequency image features, made by a per-block MLP and "
          "a shared up-projection, added to the input of every image-encoder block",
    inject=inject,
    config=SamAdapterConfig,
)
