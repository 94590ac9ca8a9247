"""Where a run computes: the device, the precision, the Accelerate state, the process group."""
from __future__ import annotations

import os

import torch

from convlora_lite.errors import ConfigError


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``cuda`` if available, else ``mps``, else ``cpu``; a clear error when the
    requested device is not there."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"device={name!r} is not available on this machine; use --device auto or cpu.")
    return name


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` -> fp16 on CUDA (the official setting), else fp32. fp16 needs CUDA."""
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU (device is {device!r}); use --precision fp32 or bf16.")
    return precision



def make_accelerator(device: str, precision: str):
    """An ``Accelerator`` on ``device`` with ``precision`` (DDP tolerates parameters that get no
    gradient, e.g. Conv-LoRA's gate on a step where only the task loss reaches it).

    Accelerate keeps one process-wide state that refuses a second precision or device; in a
    single process (a notebook fitting a CPU run, then a bf16 one) that state is reset first.
    Under a multi-process launch it is left alone."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision],
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])



def end_distributed() -> None:
    """Destroy the default process group of a multi-process launch, if there is one.

    Call it once, at the end of a script that ran :func:`fit` under ``accelerate launch`` (the
    ``convlora`` command does). Without it, gloo's worker threads can abort the interpreter as it
    exits ("terminate called without an active exception", an intermittent SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

