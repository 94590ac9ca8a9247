"""Parameter-efficient fine-tuning methods for SAM, all behind one call: :func:`apply_peft`.

Each method lives in its own file, named after it, which defines a
:class:`~convlora_lite.peft.base.PeftMethod` as ``METHOD`` (see ``base.py`` for the protocol, the
config dataclass and the trainable-set policy).
"""
from __future__ import annotations

from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.base import AuxLossModule, PeftMethod, collect_aux_loss

#: The paper's table order.
METHOD_NAMES = ("decoder_only", "bitfit", "adapter", "vpt", "lst", "sam_adapter", "ssf", "lora", "conv_lora")
#: The mask decoder's heads that stay frozen: they score masks (SAM's IoU head, SAM 2's object-score head), and
#: no loss of the project reaches them.
FROZEN_DECODER_HEADS = ("iou_prediction_head.", "pred_obj_score_head.")


def get_method(name: str) -> PeftMethod:
    """The registered method called ``name``; a clear ``ConfigError`` for an unknown name."""
    import importlib

    if name not in METHOD_NAMES:
        raise ConfigError(f"Unknown PEFT method {name!r}. Choose one of: {', '.join(METHOD_NAMES)}.")
    return importlib.import_module(f"{__name__}.{name}").METHOD


def apply_peft(model: nn.Module, method: str, **cfg) -> nn.Module:
    """Inject ``method`` into ``model.image_encoder`` and set the trainable set (in place).

    Args:
        model: a module with ``image_encoder`` and ``mask_decoder`` attributes (a
            ``segment_anything`` ``Sam``, a :class:`~convlora_lite.models.segmenter.PromptFreeSAM` or another of the
            project's segmenters, SAM 2's included), with no PEFT applied yet.
        method: a name from :data:`METHOD_NAMES`.
        **cfg: the method's options (fields of its config dataclass, e.g. ``rank`` for LoRA).

    Returns:
        ``model`` itself, with ``model.peft_method`` (the name) and ``model.peft_config`` (the method's
        config dataclass, built and checked once) recorded.

    Used in notebooks 00 and 02."""
    spec = get_method(method)
    if getattr(model, "peft_method", None) is not None:
        raise ConfigError(f"This model already has PEFT method {model.peft_method!r} applied; build a fresh model.")
    config = spec.make_config(**cfg)
    before = {id(p) for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    extra = spec.inject(model, config) or ()
    for p in model.parameters():
        if id(p) not in before:
            p.requires_grad_(True)
    for p in extra:
        p.requires_grad_(True)
    for name, p in model.mask_decoder.named_parameters():
        if not name.startswith(FROZEN_DECODER_HEADS):
            p.requires_grad_(True)
    model.peft_method = method
    model.peft_config = config
    return model


__all__ = ["AuxLossModule", "PeftMethod", "METHOD_NAMES", "apply_peft", "collect_aux_loss", "get_method"]
