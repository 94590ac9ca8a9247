"""Scoring with the task's metrics (``docs/metrics.md``), at two levels.

* :func:`evaluate_model`: a model on a dataset;
* :func:`evaluate`: a finished run directory's best weights on one split of its dataset.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convlora_lite.data.datasets import build_dataset
from convlora_lite.data.install import ensure_dataset
from convlora_lite.data.own import config_spec, own_datasets
from convlora_lite.errors import ConfigError
from convlora_lite.training.devices import resolve_device
from convlora_lite.training.metrics import task_metrics
from convlora_lite.training.model import load_run
from convlora_lite.training.progress import progress_bar
from convlora_lite.training.rundir import RunDir


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, spec, *, batch_size: int = 1, device="cpu",
                   max_batches: Optional[int] = None, autocast=nullcontext, desc: str = "eval") -> dict:
    """Score ``model`` on ``dataset`` with the task's metrics.

    Binary: :class:`BinarySegMetrics` on ``model.predict`` probabilities; multi-class:
    :class:`MultiClassSegMetrics` on ``predict(...).argmax(1)``.
    """
    metrics = task_metrics(spec, getattr(model, "num_classes", 1))
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    for i, batch in enumerate(progress_bar(loader, total=total, desc=desc)):
        if i == total:
            break
        with autocast():
            probs = model.predict(batch["image"].to(device)).float().cpu()
        if spec.task == "binary":
            metrics.update(probs, batch["mask"])
        else:
            metrics.update(probs.argmax(1), batch["mask"])
    model.train(was_training)
    return metrics.compute()


def evaluate(run_dir, split: str = "test", *, spec=None, dataset: Optional[Dataset] = None,
             device: str = "auto") -> dict:
    """The task's metrics of a finished run's best weights on ``split`` (built from the registry
    under the run's ``data_root`` unless ``dataset`` is given; a run on own data reads the split
    recorded in its directory)."""
    model, config = load_run(run_dir)
    spec = spec if spec is not None else config_spec(config)
    if dataset is None and config.data_dir:
        if split not in spec.all_splits:
            raise ConfigError(f"{config.dataset} has no split {split!r}; choose one of {', '.join(spec.all_splits)}.")
        dataset = own_datasets(spec, config, RunDir(run_dir))[split]
    if dataset is None:
        if split not in spec.all_splits:
            raise ConfigError(f"{config.dataset} has no split {split!r}; choose one of {', '.join(spec.all_splits)}.")
        ensure_dataset(spec, config.data_root)
        dataset = build_dataset(spec.name, split, config.data_root, config.image_size, train=False)
    device = resolve_device(device)
    return evaluate_model(model.to(device), dataset, spec, batch_size=config.batch_size, device=device,
                          desc=f"eval {split}")
