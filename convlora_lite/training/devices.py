"""Where a run computes: the device, the precision, the Accelerate state, the process group.

The precision policy (``docs/precision.md``): a run resolves its precision once (:func:`resolve_precision`)
and every forward pass of its model, training, validation, testing, ``convlora eval`` and ``predict``,
runs under :func:`autocast` of that precision; fp16 training scales its loss (:func:`grad_scaler`).
Results (losses, probabilities, metrics, saved weights) are float32.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Optional

import torch

from convlora_lite.errors import ConfigError
from convlora_lite.models.configs import get_config


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``cuda`` if available, else ``mps``, else ``cpu``; a clear error when the
    requested device is not there."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"device={name!r} is not available on this machine; use --device auto or cpu.")
    return name


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU of compute capability 8.0 or more (Ampere, Ada,
    Hopper, ...). A T4 (7.5) or V100 (7.0) is not one: PyTorch may run bf16 there, emulated, slower than fp32."""
    return torch.device(device).type == "cuda" and torch.cuda.get_device_capability(torch.device(device)) >= (8, 0)


def resolve_precision(precision: str, device: str, model: Optional[str] = None) -> str:
    """``"auto"`` -> for SAM (``model`` one of its ViTs, or ``None``): fp16 on CUDA (the official setting), else
    fp32; for SAM 2.1 (``model`` a ``sam2.1_hiera_*`` name): bf16 on a GPU with native bf16 (:func:`native_bf16`;
    SAM 2 was trained in bf16), else fp32 (a T4, a CPU, MPS: ``docs/precision.md``, "SAM 2.1"). fp16 needs CUDA."""
    if precision == "auto":
        if model is not None and get_config(model).backbone == "hiera":
            return "bf16" if native_bf16(device) else "fp32"
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU (device is {device!r}); use --precision fp32 or bf16.")
    return precision


def device_name(device: str) -> str:
    """What ``device`` is, as a run records it (``metrics.json``'s ``device``): the GPU's name on CUDA
    (``"NVIDIA H200"``), else the device itself (``"cpu"``, ``"mps"``)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return device


def inference_precision(precision: str, device: str, model: Optional[str] = None) -> str:
    """The precision a finished run's model (SAM ``model``) is scored in on ``device``: the run's own (``"auto"``
    resolved for ``device`` and ``model``), so that ``convlora eval`` reproduces the scores of its ``metrics.json``;
    an fp16 run scored on a machine without CUDA runs in fp32 (CPUs have no fast fp16)."""
    if precision == "fp16" and device != "cuda":
        return "fp32"
    return resolve_precision(precision, device, model)


#: the autocast dtype of each mixed precision.
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast(device: str, precision: str):
    """The context every forward pass of a run's model runs in: ``torch.autocast`` to fp16 or bf16 on
    ``device`` (``"cuda"``, ``"cpu"``, ``"mps"``, or ``"cuda:1"``), a no-op for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: str, precision: str) -> Optional[torch.amp.GradScaler]:
    """fp16 training's loss scaler (the official recipe's; bf16 and fp32 need none)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def make_accelerator(device: str):
    """An ``Accelerator`` on ``device`` for data parallelism (DDP tolerates parameters that get no
    gradient, e.g. Conv-LoRA's gate on a step where only the task loss reaches it). The precision is
    the trainer's own (:func:`autocast`, :func:`grad_scaler`), so that training and evaluation share
    one policy: Accelerate's mixed precision is off.

    Accelerate keeps one process-wide state that refuses a second device; in a single process (a
    notebook fitting a CPU run, then a GPU one) that state is reset first.
    Under a multi-process launch it is left alone."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(cpu=device == "cpu", mixed_precision="no",
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def end_distributed() -> None:
    """Destroy the default process group of a multi-process launch, if there is one.

    Call it once, at the end of a script that ran :func:`fit` under ``accelerate launch`` (the
    ``convlora`` command does). Without it, gloo's worker threads can abort the interpreter as it
    exits ("terminate called without an active exception", an intermittent SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

