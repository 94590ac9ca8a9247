"""The one protocol every PEFT method follows.

A method is a :class:`PeftMethod`: a name, the paper it comes from, where it enters SAM, and an
``inject(model, **cfg)`` function that edits ``model.image_encoder`` in place. ``apply_peft``
(in ``convlora_lite.peft``) then sets the trainable set the same way for every method:

* every parameter that ``inject`` *created* trains (found by comparing parameter identities
  before and after the call, so a method cannot forget to register one);
* the existing parameters that ``inject`` *returns* also train (BitFit returns the encoder's
  biases; most methods return nothing);
* the mask decoder trains, except its IoU prediction head (REFERENCE.md);
* everything else (the rest of the image encoder, the prompt encoder) is frozen.

Modules that add an auxiliary loss (Conv-LoRA's load-balancing loss) subclass
:class:`AuxLossModule`; the segmenter sums their ``aux_loss`` after each forward pass, so the
loss travels through the model and never through a global.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

InjectFn = Callable[..., Optional[Iterable[nn.Parameter]]]


@dataclass(frozen=True)
class PeftMethod:
    """A registered adaptation method.

    Attributes:
        name: the method name used by the CLI and configs (e.g. ``"conv_lora"``).
        paper: the citation of the method.
        where: one sentence on where the method enters SAM.
        inject: ``inject(model, **cfg)`` edits ``model.image_encoder`` in place and returns the
            *existing* parameters that must train as well (or ``None``).
        defaults: the keyword defaults of ``inject`` (recorded in run configs).
    """

    name: str
    paper: str
    where: str
    inject: InjectFn
    defaults: dict


class AuxLossModule(nn.Module):
    """A module that leaves an auxiliary loss (a 0-dim tensor) in ``self.aux_loss`` after each
    forward pass, or ``None`` when it has none."""

    aux_loss: Optional[torch.Tensor] = None


def collect_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the ``aux_loss`` left by every :class:`AuxLossModule` inside ``model``.

    Returns a 0-dim tensor (zero when no module has a loss), on the device of the model's
    first parameter.
    """
    losses = [m.aux_loss for m in model.modules() if isinstance(m, AuxLossModule) and m.aux_loss is not None]
    if losses:
        return torch.stack([loss.float() for loss in losses]).sum()
    param = next(model.parameters(), None)
    return torch.zeros((), device=param.device if param is not None else "cpu")
