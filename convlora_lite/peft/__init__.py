"""Parameter-efficient fine-tuning methods for SAM, all behind one call: :func:`apply_peft`.

Each method lives in its own file and registers a :class:`~convlora_lite.peft.base.PeftMethod`
in :data:`METHODS` (see ``base.py`` for the protocol and the trainable-set policy).
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .base import AuxLossModule, PeftMethod, collect_aux_loss

#: method name -> module that defines ``METHOD`` (imported on first use).
_METHOD_MODULES = {
    "decoder_only": "decoder_only",
    "lora": "lora",
    "conv_lora": "conv_lora",
    "bitfit": "bitfit",
    "adapter": "adapter",
    "vpt": "vpt",
    "lst": "lst",
    "sam_adapter": "sam_adapter",
    "ssf": "ssf",
}

#: The paper's table order.
METHOD_NAMES = ("decoder_only", "bitfit", "adapter", "vpt", "lst", "sam_adapter", "ssf", "lora", "conv_lora")


def available_methods() -> list[str]:
    """Names of the methods whose implementation is present, in the paper's table order."""
    import importlib.util

    return [n for n in METHOD_NAMES if importlib.util.find_spec(f"{__name__}.{_METHOD_MODULES[n]}") is not None]


def get_method(name: str) -> PeftMethod:
    """The registered method called ``name``; a clear ``ConfigError`` for an unknown name."""
    import importlib

    if name not in _METHOD_MODULES:
        raise ConfigError(f"Unknown PEFT method {name!r}. Choose one of: {', '.join(METHOD_NAMES)}.")
    try:
        module = importlib.import_module(f"{__name__}.{_METHOD_MODULES[name]}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{_METHOD_MODULES[name]}":
            raise ConfigError(f"PEFT method {name!r} is not available in this version.") from err
        raise
    return module.METHOD


def apply_peft(model: nn.Module, method: str, **cfg) -> nn.Module:
    """Inject ``method`` into ``model.image_encoder`` and set the trainable set (in place).

    Args:
        model: a module with ``image_encoder`` and ``mask_decoder`` attributes (a
            ``segment_anything`` ``Sam`` or a :class:`~convlora_lite.segmenter.PromptFreeSAM`),
            with no PEFT applied yet.
        method: a name from :data:`METHOD_NAMES`.
        **cfg: options of the method's ``inject`` (e.g. ``rank=3`` for LoRA).

    Returns:
        ``model`` itself, with ``model.peft_method`` and ``model.peft_config`` recorded.
    """
    spec = get_method(method)
    if getattr(model, "peft_method", None) is not None:
        raise ConfigError(f"This model already has PEFT method {model.peft_method!r} applied; build a fresh model.")
    unknown = set(cfg) - set(spec.defaults)
    if unknown:
        raise ConfigError(f"Unknown option(s) {sorted(unknown)} for method {method!r}; it takes {sorted(spec.defaults)}.")
    before = {id(p) for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    extra = spec.inject(model, **{**spec.defaults, **cfg}) or ()
    for p in model.parameters():
        if id(p) not in before:
            p.requires_grad_(True)
    for p in extra:
        p.requires_grad_(True)
    for name, p in model.mask_decoder.named_parameters():
        if not name.startswith("iou_prediction_head."):
            p.requires_grad_(True)
    model.peft_method = method
    model.peft_config = {**spec.defaults, **cfg}
    return model


__all__ = ["AuxLossModule", "PeftMethod", "METHOD_NAMES", "apply_peft", "available_methods", "collect_aux_loss", "get_method"]
