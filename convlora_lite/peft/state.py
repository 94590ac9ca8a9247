"""The trainable state of an adapted model (adapter + trained decoder): take it, put it back."""
from __future__ import annotations

import torch
from torch import nn

from convlora_lite.errors import CheckpointError


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors (adapter + trained decoder), by parameter name."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source="checkpoint") -> None:
    """Copy ``tensors`` into the trainable parameters of ``model``; they must match exactly."""
    expected = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{source} does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}. "
                              "Was it written by a run with another method or model?")
    with torch.no_grad():
        for name, p in expected.items():
            if p.shape != tensors[name].shape:
                raise CheckpointError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, "
                                      f"the model expects {tuple(p.shape)}.")
            p.copy_(tensors[name])

