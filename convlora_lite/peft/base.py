"""The one protocol every PEFT method follows.

A method is a :class:`PeftMethod`: a name, the paper it comes from, where it enters SAM, a small
config dataclass (the one home of its options and their defaults, like Hugging Face PEFT's
``LoraConfig``) and an ``inject(model, config)`` function that edits ``model.image_encoder`` in
place. ``apply_peft``
(in ``convlora_lite.peft``) then sets the trainable set the same way for every method:

* every parameter that ``inject`` *created* trains (found by comparing parameter identities
  before and after the call, so a method cannot forget to register one);
* the existing parameters that ``inject`` *returns* also train (BitFit returns the encoder's
  biases; most methods return nothing);
* the mask decoder trains, except its IoU prediction head and SAM 2's object-score head
  (``docs/method.md``, "Where it is applied and what trains");
* everything else (the rest of the image encoder, the prompt encoder) is frozen.

Modules that add an auxiliary loss (Conv-LoRA's load-balancing loss) subclass
:class:`AuxLossModule`; the segmenter sums their ``aux_loss`` after each forward pass, so the
loss travels through the model and never through a global.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from convlora_lite.errors import ConfigError

InjectFn = Callable[..., Optional[Iterable[nn.Parameter]]]


@dataclass(frozen=True)
class NoOptions:
    """The config of a method that takes no options."""


@dataclass(frozen=True)
class PeftMethod:
    """A registered adaptation method.

    Attributes:
        name: the method name used by the CLI and configs (e.g. ``"conv_lora"``).
        paper: the citation of the method.
        where: one sentence on where the method enters SAM.
        inject: ``inject(model, config)`` edits ``model.image_encoder`` in place and returns the
            *existing* parameters that must train as well (or ``None``).
        config: the method's options, a dataclass whose field defaults are the method's defaults.
    """

    name: str
    paper: str
    where: str
    inject: InjectFn
    config: type = NoOptions

    @property
    def defaults(self) -> dict[str, Any]:
        """The method's options at their defaults (recorded in run configs)."""
        return dataclasses.asdict(self.config())

    def make_config(self, **options):
        """The method's config with ``options`` set, its values checked by the config's ``__post_init__``;
        a :class:`ConfigError` naming the options the method takes for an unknown one."""
        names = {field.name for field in dataclasses.fields(self.config)}
        unknown = set(options) - names
        if unknown:
            raise ConfigError(f"Unknown option(s) {sorted(unknown)} for method {self.name!r}; "
                              f"it takes {sorted(names) or 'none'}.")
        return self.config(**options)

    def options(self, **options) -> dict[str, Any]:
        """Every option of the method: ``options`` over the defaults (checked like :meth:`make_config`)."""
        return dataclasses.asdict(self.make_config(**options))


def check_positive_int(name: str, value) -> None:
    """A :class:`ConfigError` naming option ``name`` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Option {name} must be a positive integer, got {value!r}.")


def check_number(name: str, value, low: float, high: Optional[float] = None, *, open_low: bool = False) -> None:
    """A :class:`ConfigError` naming option ``name`` unless ``value`` is a number in ``[low, high)``
    (``(low, high)`` with ``open_low``; no upper bound when ``high`` is None)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or value < low or (open_low and value == low) or (high is not None and value >= high):
        bounds = f"{'(' if open_low else '['}{low}, {'inf' if high is None else high})"
        raise ConfigError(f"Option {name} must be a number in {bounds}, got {value!r}.")


def parse_options(pairs, context: str = "") -> dict[str, Any]:
    """``["rank=4", "gated=true"]`` -> ``{"rank": 4, "gated": True}``: values are read as JSON when
    they parse (numbers, ``true``, ``null``, lists), else kept as strings."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            where = f" in {context!r}" if context else ""
            raise ConfigError(f"Bad option {pair!r}{where}; write options as key=value.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


class AuxLossModule(nn.Module):
    """A module that leaves an auxiliary loss (a 0-dim tensor) in ``self.aux_loss`` after each
    forward pass, or ``None`` when it has none. A class may sum the losses of its modules in one batch
    by overriding :meth:`total_aux_loss` (Conv-LoRA does: its layers' load-balancing losses are one batched
    formula, not one small formula per layer)."""

    aux_loss: Optional[torch.Tensor] = None

    @classmethod
    def total_aux_loss(cls, modules: Sequence["AuxLossModule"]) -> Optional[torch.Tensor]:
        """The sum of ``modules``' (all of this class) losses as a 0-dim float tensor, None when none has one."""
        losses = [m.aux_loss.float() for m in modules if m.aux_loss is not None]
        return torch.stack(losses).sum() if losses else None


def collect_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the ``aux_loss`` left by every :class:`AuxLossModule` inside ``model``.

    Returns a 0-dim tensor (zero when no module has a loss), on the device of the model's
    first parameter.
    """
    by_class: dict[type, list] = {}
    for module in model.modules():
        if isinstance(module, AuxLossModule):
            by_class.setdefault(type(module), []).append(module)
    totals = []
    for cls, modules in by_class.items():
        total = cls.total_aux_loss(modules)
        if total is not None:
            totals.append(total)
    if totals:
        return totals[0] if len(totals) == 1 else torch.stack(totals).sum()
    param = next(model.parameters(), None)
    return torch.zeros((), device=param.device if param is not None else "cpu")
