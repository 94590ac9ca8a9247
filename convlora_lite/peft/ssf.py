"""SSF (Lian et al., NeurIPS 2022): scale and shift the features after every operation.

Where it enters SAM: after every operation of the image encoder that has weights, a learned
per-channel affine map ``y -> y * scale + shift`` is applied to its output:

* the patch embedding's conv (``patch_embed.proj``);
* in each block: ``norm1``, ``attn.qkv`` (3 d channels), ``attn.proj``, ``norm2``, ``mlp.lin1``
  (4 d channels), ``mlp.lin2``;
* the neck: ``neck.0`` conv, ``neck.1`` LayerNorm2d, ``neck.2`` conv, ``neck.3`` LayerNorm2d.

The scale and shift are parameters of the module they follow (``<module>.ssf_scale``,
``<module>.ssf_shift``) and are applied by a forward hook, so SAM's own parameter names are
unchanged. Channels are the last dimension for ``Linear``/``LayerNorm`` ((B, H, W, C) maps in
SAM, windowed or not) and dimension 1 for the neck's ``Conv2d``/``LayerNorm2d`` ((B, C, H, W)).
After training the maps can be folded into the preceding weights (SSF's re-parameterisation).

Initialisation: scale 1 and shift 0 by default, so the adapted SAM equals SAM exactly at the
start. SSF's own code draws scale ~ N(1, 0.02^2) and shift ~ N(0, 0.02^2); ``init_std=0.02``
reproduces that.

Configuration and the paper's count. Each operation adds 2 x its output channels: per ViT-H
block 2 x (1280 + 3840 + 1280 + 1280 + 5120 + 1280) = 28,160, times 32 blocks, plus 2 x 1280 (patch
embedding) and 2 x 4 x 256 (neck) = 905,728; with the decoder's 3,505,536 that is 4,411,264 =
4.41 M against the paper's 4.42 M (0.009 M apart, within 0.01 M; Ratio 0.69 % as in the paper).
No other natural placement lands closer: the paper's configuration is not published.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod, check_number

#: The layer types SSF follows, and the dimension of their output that holds the channels.
_CHANNEL_DIM = {nn.Linear: -1, nn.LayerNorm: -1, nn.Conv2d: 1, LayerNorm2d: 1}


@dataclass(frozen=True)
class SsfConfig:
    """SSF's options: the standard deviation of the scales' and shifts' initial noise (0: exact identity)."""

    init_std: float = 0.0

    def __post_init__(self) -> None:
        check_number("init_std", self.init_std, 0.0)


def _num_channels(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    return module.weight.shape[0]  # LayerNorm / LayerNorm2d


def _scale_shift_hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: ``output * ssf_scale + ssf_shift`` along the module's channel dimension."""
    shape = [1] * output.dim()
    shape[_CHANNEL_DIM[type(module)]] = -1
    return output * module.ssf_scale.view(shape) + module.ssf_shift.view(shape)


def add_scale_shift(module: nn.Module, init_std: float = 0.0) -> None:
    """Give ``module`` an SSF scale and shift and apply them to its output from now on."""
    channels = _num_channels(module)
    factory = {"device": module.weight.device, "dtype": module.weight.dtype}
    module.ssf_scale = nn.Parameter(torch.ones(channels, **factory))
    module.ssf_shift = nn.Parameter(torch.zeros(channels, **factory))
    if init_std > 0:
        nn.init.normal_(module.ssf_scale, mean=1.0, std=init_std)
        nn.init.normal_(module.ssf_shift, std=init_std)
    module.register_forward_hook(_scale_shift_hook)


def inject(model: nn.Module, config: SsfConfig) -> None:
    """Add a scale and shift after every Linear, Conv2d, LayerNorm and LayerNorm2d of the encoder."""
    init_std = config.init_std
    encoder = getattr(model, "image_encoder", None)
    if encoder is None:
        raise ConfigError("The model has no `image_encoder`; pass a segment_anything Sam or a PromptFreeSAM.")
    targets = [m for m in encoder.modules() if type(m) in _CHANNEL_DIM]
    if any(hasattr(m, "ssf_scale") for m in targets):
        raise ConfigError("SSF is already applied to this encoder; build a fresh model.")
    for module in targets:
        add_scale_shift(module, init_std)


METHOD = PeftMethod(
    name="ssf",
    paper="Lian, Zhou, Feng and Wang, Scaling & Shifting Your Features: A New Baseline for Efficient "
          "Model Tuning, NeurIPS 2022",
    where="a per-channel scale and shift after every linear, conv and norm of the image encoder",
    inject=inject,
    config=SsfConfig,
)
