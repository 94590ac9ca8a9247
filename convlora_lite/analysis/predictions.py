"""Run a model (or a finished run's best weights) on a few dataset items, for figures.

:func:`predict_items` takes a model and a dataset, :func:`predict_run` a run directory,
:func:`predict_runs` several run directories of one dataset (one per method, for
:func:`convlora_lite.plots.figures.prediction_grid`). They return :class:`Predictions`: the items'
images and masks as the dataset gives them, and one prediction per item:

* binary models: ``(N, S, S)`` float foreground probabilities (``model.predict``);
* multi-class models: ``(N, S, S)`` long class ids (``model.predict(...).argmax(1)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import torch
from torch import nn

from convlora_lite.errors import ConfigError, DataError


class Predictions(NamedTuple):
    """``images`` (N, 3, S, S) ImageNet-normalised, ``masks`` (N, S, S), ``predictions`` (N, S, S)
    (probabilities for binary models, class ids for multi-class), ``names`` (N item names).
    Unpacks as ``images, masks, predictions, names = ...``."""

    images: torch.Tensor
    masks: torch.Tensor
    predictions: torch.Tensor
    names: list


def _indices(dataset, n: int, indices: Sequence[int] | None) -> list[int]:
    if indices is None:
        indices = range(min(n, len(dataset)))
    indices = list(indices)
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad or not indices:
        raise DataError(f"Item indices {bad or indices} are not in the dataset (it has {len(dataset)} items).")
    return indices


@torch.no_grad()
def predict_items(model: nn.Module, dataset, *, n: int = 4, indices: Sequence[int] | None = None,
                  device: str = "auto", batch_size: int = 4, precision: str = "fp32") -> Predictions:
    """The predictions of ``model`` (a :class:`~convlora_lite.models.segmenter.PromptFreeSAM`) on items
    ``indices`` of ``dataset`` (default: the first ``n``); the model is put in eval mode on
    ``device`` (``"auto"``: a GPU when there is one) and runs under ``precision``'s autocast. The
    results are float32 (or class ids), on the CPU."""
    from convlora_lite.training import devices

    device = devices.resolve_device(device)
    chosen = _indices(dataset, n, indices)
    items = [dataset[i] for i in chosen]
    images = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"] for item in items])
    model.eval().to(device)
    outputs = []
    for start in range(0, len(items), batch_size):
        with devices.autocast(device, precision):
            scores = model.predict(images[start:start + batch_size].to(device)).float().cpu()
        outputs.append(scores if getattr(model, "is_binary", True) else scores.argmax(1))
    return Predictions(images, masks, torch.cat(outputs), [item["name"] for item in items])


def _run_dataset(config, split: str, run_dir):
    """The ``split`` of a run's data (own data: the split recorded in the run directory)."""
    from convlora_lite.training.run_data import config_spec, run_datasets
    from convlora_lite.training.rundir import RunDir

    return run_datasets(config, config_spec(config), RunDir(run_dir), [split])[split]


def predict_run(run_dir, split: str = "test", *, n: int = 4, indices: Sequence[int] | None = None,
                device: str = "auto") -> Predictions:
    """:func:`predict_items` with the best weights of the finished run ``run_dir`` on ``split``
    of its dataset (read from the run's ``data_root`` at its ``image_size``), in the run's own precision
    (:func:`~convlora_lite.training.devices.inference_precision`). Used in notebook 00."""
    from convlora_lite.training.devices import inference_precision, resolve_device
    from convlora_lite.training.model import load_run

    model, config = load_run(run_dir)
    device = resolve_device(device)
    return predict_items(model, _run_dataset(config, split, run_dir), n=n, indices=indices, device=device,
                         precision=inference_precision(config.precision, device, config.model))


def predict_runs(run_dirs: Mapping[str, str | Path], split: str = "test", *, n: int = 4,
                 indices: Sequence[int] | None = None, device: str = "auto"):
    """Several finished runs of one dataset on the same items.

    ``run_dirs``: ``{label: run directory}`` (e.g. one per method). Returns
    ``(images, masks, {label: predictions})``, the arguments of
    :func:`convlora_lite.plots.figures.prediction_grid`.
    Used in notebook 09."""
    if not run_dirs:
        raise ConfigError("predict_runs needs at least one run directory.")
    from convlora_lite.training.rundir import RunDir

    datasets = {label: RunDir(path).dataset for label, path in run_dirs.items()}
    if len(set(datasets.values())) > 1:
        raise DataError(f"The runs must share a dataset to be compared on the same items; got {datasets}.")
    results = {label: predict_run(path, split, n=n, indices=indices, device=device) for label, path in run_dirs.items()}
    first = next(iter(results.values()))
    return first.images, first.masks, {label: result.predictions for label, result in results.items()}
