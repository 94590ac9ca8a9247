"""BitFit (Ben Zaken, Goldberg and Ravfogel, ACL 2022): train only the bias terms.

Where it enters SAM: nothing is added. Every bias of the image encoder trains again, in the
patch embedding (its conv), in each block (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.lin1``, ``mlp.lin2``) and in the neck's two ``LayerNorm2d``; the weights stay frozen.
The neck's convolutions and the relative-position tables have no bias.

Configuration (no options) and the paper's count. On ViT-H the encoder's biases are
32 x (1280 + 3840 + 1280 + 1280 + 5120 + 1280) + 1280 (patch embedding) + 2 x 256 (neck norms)
= 452,352; with the decoder's 3,505,536 that is 3,957,888 = 3.96 M, the paper's BitFit row
(Ratio 0.62 %). Leaving the LayerNorm biases out would give 3.88 M, so the paper's row counts them,
as BitFit's own experiments do ("all bias terms").

At initialisation the model *is* the unadapted model: no parameter is added or changed.
"""
from __future__ import annotations

from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import PeftMethod


def encoder_biases(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model.image_encoder`` whose name ends with ``bias``."""
    encoder = getattr(model, "image_encoder", None)
    if encoder is None:
        raise ConfigError("The model has no `image_encoder`; pass a segment_anything Sam or a PromptFreeSAM.")
    return [p for name, p in encoder.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]


def inject(model: nn.Module, config=None) -> list[nn.Parameter]:
    """Add nothing; return the encoder's biases so that ``apply_peft`` makes them trainable."""
    return encoder_biases(model)


METHOD = PeftMethod(
    name="bitfit",
    paper="Ben Zaken, Goldberg and Ravfogel, BitFit: Simple Parameter-efficient Fine-tuning for "
          "Transformer-based Masked Language-models, ACL 2022",
    where="no new parameters: every bias of the image encoder (linear, conv and LayerNorm) trains",
    inject=inject,
)
