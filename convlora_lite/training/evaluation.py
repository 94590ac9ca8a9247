"""Scoring with the task's metrics (``docs/metrics.md``), at two levels.

* :func:`evaluate_model`: a model on a dataset;
* :func:`evaluate`: a finished run directory's best weights on one split of its dataset;
* :func:`zero_shot_baseline`: the promptable SAM of a prompted run's config, not fine-tuned, with
  the same evaluation prompts (the baseline a prompted run is compared with).

A model that takes prompts (``model.prompt`` box or point) is scored with the prompts
:func:`~convlora_lite.models.prompts.eval_prompts` derives from each image's ground-truth mask.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convlora_lite.errors import ConfigError
from convlora_lite.models.prompts import batch_names, eval_prompts
from convlora_lite.progress import progress_bar
from convlora_lite.training import devices
from convlora_lite.training.metrics import task_metrics
from convlora_lite.training.model import build_segmenter, load_run
from convlora_lite.training.run_data import config_spec, run_datasets
from convlora_lite.training.rundir import RunDir


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, spec, *, batch_size: int = 1, device="cpu",
                   max_batches: Optional[int] = None, autocast=nullcontext, desc: str = "eval",
                   loss_fn: Optional[Callable] = None) -> dict:
    """Score ``model`` on ``dataset`` with the task's metrics.

    ``autocast``: a callable returning the context of the forward passes (a run's
    :func:`~convlora_lite.training.devices.autocast`); the metrics are computed in float32.
    Binary: :class:`BinarySegMetrics` on the model's probabilities (``model.probabilities`` of its output, what
    ``predict`` returns); multi-class: :class:`MultiClassSegMetrics` on their ``argmax(1)``. A prompted model
    (``model.prompt`` box or point) gets each image's evaluation prompt from its mask. ``loss_fn``: the run's
    task loss, ``loss_fn(output, masks)``, also computed on the same forward passes: its mean over the batches
    is returned as ``"loss"`` beside the metrics (the validation loss).
    """
    metrics = task_metrics(spec, getattr(model, "num_classes", 1))
    prompt = getattr(model, "prompt", "none")
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    losses = []
    for i, batch in enumerate(progress_bar(loader, total=total, desc=desc)):
        if i == total:
            break
        inputs = [batch["image"].to(device)]
        if prompt != "none":
            names = batch_names(batch, i * batch_size)
            inputs.append(eval_prompts(batch["mask"], names, prompt).to(device))
        with autocast():
            out = model(*inputs)
            if loss_fn is not None:
                losses.append(float(loss_fn(out, batch["mask"].to(device))))
            probs = model.probabilities(out).float().cpu()
        if spec.task == "binary":
            metrics.update(probs, batch["mask"])
        else:
            metrics.update(probs.argmax(1), batch["mask"])
    model.train(was_training)
    return {**metrics.compute(), **({"loss": sum(losses) / len(losses)} if losses else {})}


def evaluate(run_dir, split: str = "test", *, spec=None, dataset: Optional[Dataset] = None,
             device: str = "auto") -> dict:
    """The task's metrics of a finished run's best weights on ``split`` (built from the registry
    under the run's ``data_root`` unless ``dataset`` is given; a run on own data reads the split
    recorded in its directory), in the run's own precision on ``device``
    (:func:`~convlora_lite.training.devices.inference_precision`), as its trainer scored it. Used in notebook 00."""
    model, config = load_run(run_dir)
    spec = spec if spec is not None else config_spec(config)
    if dataset is None:
        dataset = run_datasets(config, spec, RunDir(run_dir), [split])[split]
    device = devices.resolve_device(device)
    precision = devices.inference_precision(config.precision, device, config.model)
    return evaluate_model(model.to(device), dataset, spec, batch_size=config.batch_size, device=device,
                          autocast=lambda: devices.autocast(device, precision), desc=f"eval {split}")


def zero_shot_baseline(config, dataset: Dataset, spec, *, device="cpu", max_batches: Optional[int] = None,
                       autocast=nullcontext, desc: str = "zero-shot") -> dict:
    """The task's metrics of the zero-shot promptable SAM of ``config`` on ``dataset``.

    ``config`` is a :class:`~convlora_lite.training.TrainConfig` with ``prompt`` box or point: its
    SAM (``model``, ``checkpoint``, ``image_size``) as a
    :class:`~convlora_lite.models.segmenter.PromptedSAM` with no PEFT method and no training,
    scored by :func:`evaluate_model` with the same evaluation prompts as the fine-tuned model
    (building it does not draw from the global random stream).
    """
    if config.prompt == "none":
        raise ConfigError("The zero-shot baseline is for prompted runs (prompt box or point): a prompt-free "
                          "SAM has no zero-shot semantic segmentation to compare with.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # a random base (checkpoint None) is then the run's own
        model = build_segmenter(config).to(device)
    return evaluate_model(model, dataset, spec, batch_size=config.batch_size, device=device, max_batches=max_batches,
                          autocast=autocast, desc=desc)
