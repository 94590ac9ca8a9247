"""One training run = one directory (DESIGN.md), and atomic writes into it.

::

    <run dir>/
      config.json               the resolved TrainConfig: everything needed to rerun
      history.csv               one row per epoch: epoch, train_loss, aux_loss, lr, val_<metric>..., time_s
      metrics.json              best epoch, its val metrics, and the test splits' metrics (best weights)
      checkpoint/
        best.safetensors        trainable tensors only (adapter + trained decoder) at the best epoch
        last.safetensors        trainable tensors only after the last completed epoch
        resume.pt               optimizer, scheduler, scaler, RNG states, epoch, best so far, history
      figures/loss_curve.png

Every file is written to a temporary name in the same folder and then moved into place with
``os.replace``, so a crash never leaves a half-written file: ``resume.pt`` is either the old
epoch's or the new one's.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError


class RunDir:
    """The paths of a run directory and the atomic readers/writers of its files."""

    def __init__(self, path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoint")
    best = property(lambda self: self.checkpoint_dir / "best.safetensors")
    last = property(lambda self: self.checkpoint_dir / "last.safetensors")
    resume_state = property(lambda self: self.checkpoint_dir / "resume.pt")
    figures = property(lambda self: self.path / "figures")

    def create(self) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.figures.mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, data: dict) -> None:
        _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))

    def read_json(self, path: Path) -> dict:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist: {self.path} is not a (finished) run directory.")
        return json.loads(path.read_text())

    def write_history(self, rows: list[dict]) -> None:
        """Write ``rows`` (one dict per epoch, same keys) as ``history.csv``."""
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
                writer.writeheader()
                writer.writerows(rows)
        _atomic(self.history, write)

    def save_tensors(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        """Save ``tensors`` (detached, contiguous, on the CPU) as safetensors."""
        cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        _atomic(path, lambda tmp: save_file(cpu, str(tmp)))

    def load_tensors(self, path: Path) -> dict[str, torch.Tensor]:
        if not path.exists():
            raise CheckpointError(f"Checkpoint {path} is missing; rerun training for {self.path}.")
        return load_file(str(path))

    def save_state(self, state: dict) -> None:
        _atomic(self.resume_state, lambda tmp: torch.save(state, tmp))

    def load_state(self) -> dict:
        return torch.load(self.resume_state, map_location="cpu", weights_only=False)


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
