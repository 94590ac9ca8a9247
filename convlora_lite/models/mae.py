"""Masked image modelling on SAM's ``ImageEncoderViT`` and the bundled ``micro_mae`` encoder.

The paper contrasts SAM features with MAE features (linear probing). ``micro_mae`` is an image
encoder with exactly the ``micro_sam`` sizes, pretrained by masked image modelling on the same
generated images, so the two can be compared feature for feature.

Difference from MAE (He et al., 2022), on purpose: MAE's encoder drops the masked tokens and
sees only the visible 25 %. SAM's encoder uses windowed attention on the full token grid (and
relative positions), which needs every grid cell, so we mask the input the SimMIM way (Xie et
al., 2022): masked patch embeddings are replaced by a learned mask token, the encoder sees the
full grid, and a light head (a 1x1 conv on the neck output) predicts the per-patch normalised
pixels of the masked patches (MAE's ``norm_pix_loss``); the loss counts masked patches only.
Training the head on the neck output trains the neck too, so ``encoder(x)`` gives usable features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from convlora_lite.errors import CheckpointError
from convlora_lite.models.checkpoints import ASSETS_DIR
from convlora_lite.models.sam import get_config, sam_from_config

MICRO_MAE_PATH = ASSETS_DIR / "micro_mae.safetensors"


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p, W/p, p*p*C), each patch's pixels flattened in (row, col, channel) order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, h // patch, w // patch, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, h, w, p*p*C) -> (B, C, h*p, w*p)."""
    b, h, w, _ = patches.shape
    x = patches.reshape(b, h, w, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, h * patch, w * patch)


def random_patch_mask(rng: np.random.Generator, batch: int, grid: int, ratio: float) -> torch.Tensor:
    """Bool (batch, grid, grid): exactly ``round(ratio * grid**2)`` masked (True) patches per image."""
    count = int(round(ratio * grid * grid))
    order = np.argsort(rng.random((batch, grid * grid)), axis=1)
    mask = np.zeros((batch, grid * grid), bool)
    np.put_along_axis(mask, order[:, :count], True, axis=1)
    return torch.from_numpy(mask.reshape(batch, grid, grid))


class MaskedImageModel(nn.Module):
    """SimMIM-style masked image model around an ``ImageEncoderViT`` (see the module docstring).

    Args:
        encoder: SAM's image encoder (its neck output has ``out_chans`` channels).
    """

    def __init__(self, encoder: ImageEncoderViT):
        super().__init__()
        self.encoder = encoder
        self.patch = encoder.patch_embed.proj.kernel_size[0]
        embed_dim = encoder.patch_embed.proj.out_channels
        out_chans = encoder.neck[0].out_channels
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Conv2d(out_chans, self.patch * self.patch * 3, kernel_size=1)

    def encode(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S), mask (B, h, w) bool -> neck features (B, out_chans, h, w)."""
        x = self.encoder.patch_embed(images)
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        if self.encoder.pos_embed is not None:
            x = x + self.encoder.pos_embed
        for block in self.encoder.blocks:
            x = block(x)
        return self.encoder.neck(x.permute(0, 3, 1, 2))

    def predict(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted normalised pixels for every patch: (B, h, w, p*p*3)."""
        return self.head(self.encode(images, mask)).permute(0, 2, 3, 1)

    @staticmethod
    def target(images: torch.Tensor, patch: int) -> torch.Tensor:
        """Per-patch normalised pixels (zero mean, unit variance per patch): (B, h, w, p*p*3)."""
        patches = patchify(images, patch)
        mean = patches.mean(-1, keepdim=True)
        var = patches.var(-1, keepdim=True)
        return (patches - mean) / (var + 1e-6).sqrt()

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the masked patches only (0-dim tensor)."""
        error = ((self.predict(images, mask) - self.target(images, self.patch)) ** 2).mean(-1)
        return error[mask].mean()


def build_micro_mae_encoder(checkpoint: str | Path | None = None) -> ImageEncoderViT:
    """The bundled ``micro_mae`` image encoder (``micro_sam`` sizes), weights cast to float32.

    Args:
        checkpoint: a safetensors file of ``ImageEncoderViT.state_dict()``; default the bundled one.

    Used in notebook 01."""
    path = Path(checkpoint) if checkpoint is not None else MICRO_MAE_PATH
    if not path.is_file():
        raise CheckpointError(f"No micro_mae weights at {path}. Reinstall convlora_lite, or make them with "
                              "`python -m convlora_lite.pretrain micro_mae` (see assets/micro_mae.json).")
    encoder = sam_from_config(get_config("micro_sam")).image_encoder
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the micro_sam image encoder: {err}. "
                              "Pass an ImageEncoderViT state dict saved by the micro_mae pretraining.") from err
    return encoder.eval()
