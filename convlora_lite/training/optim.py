"""The official optimiser and schedule (``docs/recipe.md``, "Training recipe").

* AdamW (0.9, 0.999, eps 1e-6), weight decay 1e-4 except on biases and normalisation weights.
  The rule is the official one (AutoGluon's ``get_weight_decay_param_names``: every parameter of
  a norm layer and every parameter whose name contains ``bias`` is left out); other 1-D or
  embedding tensors (mask tokens, position tables, gates) do decay. SAM's ``LayerNorm2d`` counts
  as a norm layer.
* Linear decay of the learning rate to 0 over all optimizer steps, no warm-up: step ``s`` of
  ``T`` uses ``lr * (1 - s / T)``; after the last step the rate is 0.
"""
from __future__ import annotations

import torch
from torch import nn


def _is_norm(module: nn.Module) -> bool:
    from segment_anything.modeling.common import LayerNorm2d

    norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
             LayerNorm2d)
    return isinstance(module, norms)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups over the trainable parameters: ``[decay, no_decay]``.

    No decay on every parameter of a normalisation layer and on every parameter whose name
    contains ``bias`` (the official rule); each group carries ``names`` for inspection.
    """
    no_decay_ids = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    groups = {True: ([], []), False: ([], [])}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = "bias" not in name and id(p) not in no_decay_ids
            groups[decays][0].append(p)
            groups[decays][1].append(name)
    return [{"params": groups[True][0], "names": groups[True][1], "weight_decay": weight_decay},
            {"params": groups[False][0], "names": groups[False][1], "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (0.9, 0.999, eps 1e-6) over :func:`param_groups`."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-6)


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr * (1 - step / total_steps)``, no warm-up; 0 after ``total_steps`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))

