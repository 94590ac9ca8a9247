"""What both pretraining scripts share: input normalisation, the learning-rate schedule, the
resumable training state, fp16 safetensors export and the JSON model card."""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from convlora_lite.errors import CheckpointError
from convlora_lite.io import atomic_write, load_torch_file


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases, norms, embeddings of dim < 2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999))


class TrainState:
    """The resumable state of a run, kept in ``work_dir/state.pt`` (written atomically).

    Holds the model and optimiser state, the next step, the wall time spent so far and the
    config it was started with (a resume with a different config is refused)."""

    def __init__(self, work_dir: str | Path, config: dict):
        self.path = Path(work_dir) / "state.pt"
        self.config = config
        self.step = 0
        self.elapsed_s = 0.0
        self.resumed = 0

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Continue from ``state.pt``; raises CheckpointError if it is missing or from another config."""
        if not self.path.exists():
            raise CheckpointError(f"Nothing to resume: {self.path} does not exist. Run without --resume to start.")
        state = load_torch_file(self.path, "a pretraining state")
        if state["config"] != self.config:
            raise CheckpointError(f"{self.path} was written by a run with another configuration "
                                  f"({state['config']}); use the same options or another --work-dir.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed_s, self.resumed = state["step"], state["elapsed_s"], state["resumed"] + 1

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        state = {"config": self.config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "step": self.step, "elapsed_s": self.elapsed_s, "resumed": self.resumed}
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))


def save_fp16_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path) -> str:
    """Write floating tensors as fp16 (others unchanged) to ``path``; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
               for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    path.chmod(0o644)  # safetensors writes 0600; the asset is shipped and read by everyone
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment_record(threads: int) -> dict:
    """Versions and machine facts that decide whether a rerun reproduces the weights bit for bit."""
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "torch_threads": threads, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def write_card(path: str | Path, card: dict) -> None:
    """Write the JSON model card (sorted keys, indented, trailing newline)."""
    Path(path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   grad_clip: float) -> None:
    """Backpropagate ``loss``, clip the gradient norm of ``model`` to ``grad_clip`` and step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def run_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict, steps: int, train_step,
              work_dir, resume: bool, checkpoint_every_s: float, log) -> TrainState:
    """Call ``train_step(step) -> loss`` for every step not yet done, logging every 20 steps and saving
    the resumable state every ``checkpoint_every_s`` seconds and at the end.

    ``config`` (a dict) is stored with the state; ``resume`` continues from ``work_dir/state.pt``.
    Returns the final state, whose ``elapsed_s`` is the training wall time over all sessions."""
    state = TrainState(work_dir, config)
    if resume:
        state.load(model, optimizer)
        log(f"resumed at step {state.step}")
    clock = Stopwatch(state.elapsed_s)
    last_save = clock.total()
    while state.step < steps:
        loss = train_step(state.step)
        state.step += 1
        if state.step % 20 == 0 or state.step == steps:
            log(f"step {state.step}/{steps} loss {loss:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                f"elapsed {clock.total():.0f}s")
        if clock.total() - last_save > checkpoint_every_s:
            state.elapsed_s = clock.total()
            state.save(model, optimizer)
            last_save = clock.total()
    state.elapsed_s = clock.total()
    state.save(model, optimizer)
    return state


class Stopwatch:
    """Wall time that continues across resumes (``offset`` = seconds spent by earlier sessions)."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.start = offset, time.perf_counter()

    def total(self) -> float:
        return self.offset + time.perf_counter() - self.start
