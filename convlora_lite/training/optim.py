"""The official optimiser and schedule (``docs/recipe.md``, "Training recipe").

* AdamW (0.9, 0.999, eps 1e-6), weight decay 1e-4 except on biases and normalisation weights,
  as PyTorch's fused kernel where the device has one (CUDA and the CPU): one operator per step for
  all parameters instead of about ten per parameter tensor, which matters when the step is bound by
  the host (``docs/performance.md``); the arithmetic is AdamW's.
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


#: Device types whose AdamW has a fused kernel (``torch.optim.AdamW(fused=True)``) and whose gradient clipping
#: has multi-tensor kernels: CUDA, and the CPU since torch 2.4.
FUSED_ADAMW_DEVICES = ("cuda", "cpu") if torch.__version__ >= "2.4" else ("cuda",)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, device="cpu") -> torch.optim.AdamW:
    """AdamW (0.9, 0.999, eps 1e-6) over :func:`param_groups`, fused where the parameters will train
    (``device``) has the kernel (CUDA, the CPU), multi-tensor (``foreach``) elsewhere."""
    fused = torch.device(device).type in FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-6,
                             fused=fused, foreach=None if fused else True)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the gradients of ``model``'s trainable parameters to a global L2 norm of ``max_norm`` in a few
    multi-tensor operators (``foreach``, on CUDA and the CPU); returns the norm before clipping. The gradients
    are already averaged over processes (plain data parallelism: Accelerate's DDP), so a local clip is the
    global one."""
    params = [p for p in model.parameters() if p.grad is not None]
    foreach = True if params and params[0].device.type in FUSED_ADAMW_DEVICES else None  # None: torch decides
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=foreach)


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr * (1 - step / total_steps)``, no warm-up; 0 after ``total_steps`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))

