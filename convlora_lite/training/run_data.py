"""The spec and the data of a run, in one place: what the trainer trains on, what ``evaluate`` and the
predictions score, and what ``TrainConfig.resolve`` checks a config against.

* :func:`dataset_spec` / :func:`config_spec`: a registry dataset's spec or your own data's
  (:mod:`convlora_lite.data.own`), with the run's ``loss``/``select_metric`` applied and checked
  (:func:`with_recipe`);
* :func:`run_spec`: the spec of a finished run, without its data;
* :func:`run_datasets`: the datasets of a run's splits: the registry's files (installed, or a synthetic
  analog generated, first) or your own data's, whose split is recorded in the run directory and read
  back from it (:func:`own_datasets`), so ``eval`` and ``--resume`` see the same images;
* :func:`preset_data_root`, :func:`ensure_synthetic`: where a preset's analogs live and at what size
  (:class:`~convlora_lite.training.presets.Preset`'s ``data_subfolder``, ``synthetic_sizes``).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from convlora_lite.data.datasets import build_dataset
from convlora_lite.data.install import ensure_dataset, is_installed
from convlora_lite.data.own import SPLIT_FRACTIONS, OwnDataSpec, build_own_splits, own_spec, raise_problems, scan
from convlora_lite.data.own import split_keys as own_split_keys
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.data.synthetic import generate_synthetic
from convlora_lite.errors import ConfigError
from convlora_lite.training.losses import LOSSES
from convlora_lite.training.metrics import METRIC_DIRECTIONS
from convlora_lite.training.presets import get_preset
from convlora_lite.training.rundir import RunDir


def with_recipe(spec, loss: Optional[str] = None, select_metric: Optional[str] = None):
    """``spec`` (own or registry) with another loss or selection metric, both checked."""
    if loss is not None:
        if loss not in LOSSES:
            raise ConfigError(f"loss={loss!r}; choose one of {', '.join(sorted(LOSSES))}.")
        if (loss == "set") != (spec.task == "multiclass"):
            raise ConfigError(f"loss {loss!r} does not fit a {spec.task} task; "
                              f"{'use set' if spec.task == 'multiclass' else 'use structure or balanced_bce'}.")
        spec = replace(spec, loss=loss)
    if select_metric is not None:
        allowed = ("acc", "miou") if spec.task == "multiclass" else tuple(
            k for k in METRIC_DIRECTIONS if k not in ("acc", "miou"))
        if select_metric not in allowed:
            raise ConfigError(f"select_metric={select_metric!r} is not a {spec.task} metric; choose one of "
                              f"{', '.join(allowed)}.")
        spec = replace(spec, select_metric=select_metric, select_mode=METRIC_DIRECTIONS[select_metric])
    return spec


def dataset_spec(dataset: Optional[str], *, data_dir=None, task: Optional[str] = None, loss: Optional[str] = None,
                 select_metric: Optional[str] = None):
    """The spec of the registry dataset ``dataset``, or of your own data at ``data_dir`` (labelled
    ``dataset``), with ``loss``/``select_metric`` applied."""
    if data_dir:
        spec = own_spec(data_dir, task=task, name=dataset)
    else:
        spec = get_dataset_spec(dataset)
    return with_recipe(spec, loss, select_metric)


def config_spec(config):
    """The spec a run of ``config`` (a :class:`~convlora_lite.training.config.TrainConfig`) trains and
    scores with."""
    return dataset_spec(config.dataset, data_dir=config.data_dir, task=config.task, loss=config.loss,
                        select_metric=config.select_metric)


def run_spec(run_dir):
    """The spec of a finished run, without its data: the recorded own-data spec, or the registry's."""
    run = RunDir(run_dir)
    if run.split.exists():
        return OwnDataSpec.from_dict(run.read_split()["spec"])
    config = run.read_config_dict()
    return with_recipe(get_dataset_spec(config["dataset"]), config.get("loss"), config.get("select_metric"))


def own_datasets(spec: OwnDataSpec, config, run: Optional[RunDir] = None) -> dict:
    """The datasets of a run on own data: the split recorded in ``run`` when it has one, else a new one
    (the data's own, or seeded by ``config.seed``), recorded there."""
    found = scan(spec.source)
    raise_problems(found, spec.source)
    if run is not None and run.split.exists():
        keys = run.read_split()["splits"]
    else:
        keys = own_split_keys(found, config.seed)
        if run is not None:
            run.write_split({"data_dir": spec.source, "shape": spec.shape, "seed": config.seed,
                             "fractions": list(SPLIT_FRACTIONS) if {s.split for s in found.samples} == {None} else None,
                             "spec": spec.to_dict(), "splits": keys})
    return build_own_splits(spec, keys, config.image_size, found)


def run_datasets(config, spec, run: Optional[RunDir] = None, splits: Optional[Sequence[str]] = None, *,
                 cache_bytes: int = 0, log=print) -> dict:
    """``{split: dataset}`` of a run: ``splits`` (default: train, val and the test splits), training
    transforms for ``train`` only, each keeping up to ``cache_bytes`` of decoded samples in memory.

    Registry data is installed first (a synthetic analog generated, a missing real dataset named with the
    command that downloads it); own data reads or records its split in ``run``. A split the dataset does
    not have is a :class:`ConfigError` naming the ones it has."""
    splits = list(spec.all_splits if splits is None else splits)
    unknown = [split for split in splits if split not in spec.all_splits]
    if unknown:
        raise ConfigError(f"{config.dataset} has no split {unknown[0]!r}; choose one of {', '.join(spec.all_splits)}.")
    if config.data_dir:
        datasets = own_datasets(spec, config, run)
        return {split: datasets[split] for split in splits}
    ensure_dataset(spec, config.data_root, log=log)
    return {split: build_dataset(spec, split, config.data_root, config.image_size, train=(split == "train"),
                                 cache_bytes=cache_bytes) for split in splits}


def preset_data_root(preset: str, data_root) -> Path:
    """Where ``preset``'s datasets live: ``data_root`` (made absolute), or its ``data_subfolder``."""
    root = Path(data_root).resolve()
    subfolder = get_preset(preset).data_subfolder
    return root / subfolder if subfolder else root


def ensure_synthetic(datasets, preset: str, data_root) -> Path:
    """Generate every ``synth_<task>`` of ``datasets`` that is not installed (missing, or its generation was
    interrupted) at ``preset``'s size. Real datasets are left alone (``download_dataset`` installs them, and
    accepts a folder once ``convlora data install`` adopted it). Returns the data root used."""
    root = preset_data_root(preset, data_root)
    for name in datasets:
        spec = get_dataset_spec(name)
        if spec.synthetic and not is_installed(spec, root):
            generate_synthetic(spec.name, root, **get_preset(preset).synthetic_sizes)
    return root
