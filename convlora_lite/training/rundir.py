"""One training run = one directory, owned by :class:`RunDir`: its layout, readers and atomic writers.

::

    <run dir>/
      config.json               the resolved TrainConfig: everything needed to rerun
      history.csv               one row per epoch: epoch, train_loss, aux_loss, lr, val_loss, val_<metric>..., time_s
      metrics.json              best epoch, its val metrics, and the test splits' metrics (best weights); the
                                test pass's seconds (test_s), the device's name and the processes
      split.json                own data only (--data-dir): the spec and which images are in which split
      checkpoint/
        best.safetensors        trainable tensors only (adapter + trained decoder) at the best epoch
        last.safetensors        trainable tensors only after the last completed epoch
        resume.pt               optimizer, scheduler, scaler, RNG states, epoch, best so far, history
      figures/loss_curve.png
      tensorboard/              TensorBoard event files: the history's scalars per epoch, the test scores

A sweep keeps its runs at ``{output_dir}/{dataset}/{method}/seed{seed}`` (:meth:`RunDir.of`);
:meth:`RunDir.find` finds the runs below any folder, and a run's dataset, method and seed are read
from its ``config.json``, never from its path. These file names are known to this module only.
Every file is written to a temporary name in the same folder and then moved into place
(:func:`convlora_lite.io.atomic_write`), so a crash never leaves a half-written file: ``resume.pt`` is
either the old epoch's or the new one's.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from convlora_lite.errors import CheckpointError, DataError
from convlora_lite.io import atomic_write, load_torch_file

#: the file whose presence marks a run directory.
METRICS_NAME = "metrics.json"


class RunDir:
    """The paths of a run directory and the atomic readers/writers of its files. Used in notebook 11."""

    def __init__(self, path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, output_dir, dataset: str, method: str, seed: int) -> "RunDir":
        """The run of (``dataset``, ``method``, ``seed``) in the sweep folder ``output_dir``."""
        return cls(Path(output_dir) / dataset / method / f"seed{seed}")

    @classmethod
    def find(cls, paths) -> list["RunDir"]:
        """Every finished-or-not run directory (a folder holding ``metrics.json``) at or below ``paths``
        (run directories or folders of them), sorted by path."""
        found: set[Path] = set()
        for path in map(Path, paths):
            if not path.exists():
                raise DataError(f"{path} does not exist; pass run directories or folders that contain them.")
            found.update(p.parent for p in path.rglob(METRICS_NAME))
        return [cls(path) for path in sorted(found)]

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        """A RunDir is a path too: ``Path(run)``, ``open``, ``RunDir(run)`` take it."""
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    config = property(lambda self: self.path / "config.json")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / METRICS_NAME)
    checkpoint_dir = property(lambda self: self.path / "checkpoint")
    best = property(lambda self: self.checkpoint_dir / "best.safetensors")
    last = property(lambda self: self.checkpoint_dir / "last.safetensors")
    resume_state = property(lambda self: self.checkpoint_dir / "resume.pt")
    figures = property(lambda self: self.path / "figures")
    loss_curve = property(lambda self: self.figures / "loss_curve.png")
    split = property(lambda self: self.path / "split.json")
    tensorboard = property(lambda self: self.path / "tensorboard")

    @property
    def dataset(self) -> str:
        """The run's dataset (registry name or own-data label), from ``config.json``."""
        return self.read_config_dict()["dataset"]

    @property
    def method(self) -> str:
        """The run's PEFT method, from ``config.json``."""
        return self.read_config_dict()["method"]

    @property
    def seed(self) -> int:
        """The run's seed, from ``config.json``."""
        return int(self.read_config_dict()["seed"])

    def create(self) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.figures.mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, data: dict) -> None:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))

    def read_json(self, path: Path) -> dict:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist: {self.path} is not a (finished) run directory.")
        return json.loads(path.read_text())

    def read_config_dict(self) -> dict:
        """``config.json`` as written (a run of an older version may lack newer fields)."""
        return self.read_json(self.config)

    def write_config(self, config: dict) -> None:
        """Write ``config.json`` (a :meth:`TrainConfig.to_dict`)."""
        self.write_json(self.config, config)

    def write_metrics(self, metrics: dict) -> None:
        """Write ``metrics.json``."""
        self.write_json(self.metrics, metrics)

    def read_metrics(self) -> dict:
        """``metrics.json``: best epoch, its val metrics, the test splits' metrics."""
        return self.read_json(self.metrics)

    def write_split(self, record: dict) -> None:
        """Record an own-data run's split (``split.json``: the data's spec and split -> image keys)."""
        self.write_json(self.split, record)

    def read_split(self) -> dict:
        """``split.json`` of an own-data run (see :func:`convlora_lite.data.own.own_datasets`)."""
        return self.read_json(self.split)

    def has_weights(self) -> bool:
        """Whether the run holds its best trainable weights."""
        return self.best.is_file()

    def is_complete(self) -> bool:
        """Whether the run finished (``metrics.json`` says ``completed``)."""
        return self.metrics.exists() and bool(self.read_metrics().get("completed"))

    def read_history(self) -> pd.DataFrame:
        """``history.csv`` as a DataFrame, one row per finished epoch (every value a float)."""
        if not self.history.exists():
            raise CheckpointError(f"{self.history} does not exist: {self.path} is not a run directory "
                                  "with at least one finished epoch.")
        with open(self.history, newline="") as f:
            return pd.DataFrame([{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)])

    def write_history(self, rows: list[dict]) -> None:
        """Write ``rows`` (one dict per epoch, same keys) as ``history.csv``."""
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
                writer.writeheader()
                writer.writerows(rows)
        atomic_write(self.history, write)

    def save_tensors(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        """Save ``tensors`` (detached, contiguous, on the CPU) as safetensors."""
        cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        atomic_write(path, lambda tmp: save_file(cpu, str(tmp)))

    def load_tensors(self, path: Path) -> dict[str, torch.Tensor]:
        if not path.exists():
            raise CheckpointError(f"Checkpoint {path} is missing; rerun training for {self.path}.")
        return load_file(str(path))

    def save_state(self, state: dict) -> None:
        atomic_write(self.resume_state, lambda tmp: torch.save(state, tmp))

    def load_state(self) -> dict:
        """The resume state (tensors and plain values only: :func:`~convlora_lite.io.load_torch_file`)."""
        return load_torch_file(self.resume_state, f"the resume state of {self.path}")

