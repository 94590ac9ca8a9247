"""``--compile``: the training step's forward and backward through ``torch.compile`` (``docs/performance.md``).

On a GPU a step of SAM with LoRA or Conv-LoRA is bound by the host: thousands of small operators, each
dispatched and launched one by one. The compiler traces the model once into one graph and runs it as a few
fused kernels. Conv-LoRA's routing has no host synchronisation and no data-dependent shapes, so the whole
model is one graph (no graph break, no recompilation from one step to the next; tested).

* Modes: ``default`` (Inductor's fused kernels), ``reduce-overhead`` (the same replayed as CUDA graphs, for
  static shapes on a GPU), ``max-autotune`` (tries kernel variants: slow to compile).
* The first call runs eagerly: it fills the shape-dependent caches (Conv-LoRA's resize operators) that the
  compiled graph then reads as constants; compilation happens at the second call.
* Random numbers are drawn as in eager mode (Inductor's ``fallback_random``), so a compiled run draws the
  gate's noise an eager run draws, and a run may resume compiled from an eager checkpoint or the reverse.
* Checkpoints hold the un-compiled module's weights (the trainer saves the module it compiled, never the
  compiled wrapper), so compilation changes nothing in a run directory.
* Evaluation runs eagerly (its batches vary in size and run once per epoch).

Where the compiler is missing (no C++ compiler on the CPU, no Triton on a GPU, another device or Python
version torch cannot trace), :func:`compile_blocker` says why and the run trains eagerly after saying so.
"""
from __future__ import annotations

import os
import shutil
from typing import Callable, Optional

import torch
from torch import nn

#: The ``--compile`` modes (``torch.compile(mode=...)``; ``default`` is torch's own default).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def compile_blocker(device) -> Optional[str]:
    """Why ``torch.compile`` cannot compile for ``device`` here, or None when it can."""
    import torch._dynamo

    device = torch.device(device)
    if not torch._dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} cannot trace this Python version"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "its GPU code generator, Triton, is missing or does not support this GPU (pip install triton)"
    elif device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in compilers if c):
            return "it needs a C++ compiler for the CPU (apt-get install g++, or set CXX)"
    else:
        return f"its default backend does not support {device.type} devices"
    return None


class CompiledModel:
    """``model`` called eagerly once, then through ``torch.compile(model, mode=mode)``; same signature.

    Attributes:
        model: the un-compiled module (what checkpoints save).
        calls: how many times it has been called.
    """

    def __init__(self, model: nn.Module, mode: str):
        self.model = model
        self.compiled = torch.compile(model, mode=None if mode == "default" else mode)
        self.calls = 0

    def __call__(self, *inputs):
        self.calls += 1
        return self.model(*inputs) if self.calls == 1 else self.compiled(*inputs)


def compile_model(model: nn.Module, mode: Optional[str], device, log: Callable[[str], None]):
    """What the training step calls: ``model`` itself when ``mode`` is None or the compiler is missing (after
    logging why), else a :class:`CompiledModel`."""
    if mode is None:
        return model
    blocker = compile_blocker(device)
    if blocker is not None:
        log(f"--compile {mode}: torch.compile is not available here ({blocker}); training eagerly.")
        return model
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    return CompiledModel(model, mode)
