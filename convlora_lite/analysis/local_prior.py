"""The local-prior experiment, preregistered in ``docs/experiments/local_prior.md``: does Conv-LoRA's mixture of
convolution experts help where local texture, not colour, defines the object?

* :data:`ARMS`: the three methods compared: ``lora``, ``conv_lora`` (the official options) and ``one_expert``
  (``conv_lora`` with one scale-1 expert: the same convolution in LoRA's bottleneck, no multi-scale mixture);
* :func:`train_grid`: trains (or reads back) every (task, arm, seed) run of the ``cpu`` preset on the tasks
  ``synth_prior_texture`` and ``synth_prior_colour`` (:mod:`convlora_lite.data.prior_scenes`) into
  ``{output_dir}/{task}/{arm}/seed{seed}``; finished runs are read back, interrupted ones resume;
* :func:`collect`: the per-seed test IoU (x100) of the best-validation epoch as a tidy table.

The preregistered analysis of that table (failed runs, paired differences, interaction, verdicts) is
:mod:`convlora_lite.reports.local_prior_analysis`.

The recorded full experiment is ``benchmarks/local_prior_cpu.md`` (written by
``benchmarks/local_prior_experiment.py``); its per-seed table ships with the package (:func:`recorded`).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from convlora_lite.errors import ConfigError
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.run_data import ensure_synthetic
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.trainer import fit

#: the two tasks, in the preregistration's order; their datasets are ``synth_prior_<task>``.
TASKS = ("texture", "colour")
#: arm -> (PEFT method, method options over its defaults).
ARMS = {
    "lora": ("lora", {}),
    "conv_lora": ("conv_lora", {}),
    "one_expert": ("conv_lora", {"num_experts": 1, "scales": [1]}),
}
#: the experiment's 10 seeds, chosen by the power calculation of the preregistration.
SEEDS = tuple(range(42686693, 42686703))
#: the learnability pilot's seed (LoRA only), outside the experiment's seeds.
PILOT_SEED = 1
#: the recorded full experiment's per-seed table (:func:`collect`'s columns), shipped with the package.
RECORDED = Path(__file__).resolve().parents[1] / "assets" / "local_prior_cpu.csv"
#: the columns of :func:`collect`'s table.
COLUMNS = ["task", "arm", "seed", "test_iou", "best_epoch", "run_dir"]


def dataset_name(task: str) -> str:
    """The registry dataset of ``task`` (``"texture"`` -> ``"synth_prior_texture"``)."""
    if task not in TASKS:
        raise ConfigError(f"task {task!r}; the local-prior experiment has {', '.join(TASKS)}")
    return f"synth_prior_{task}"


def run_directory(output_dir, task: str, arm: str, seed: int) -> RunDir:
    """The run of (``task``, ``arm``, ``seed``) in the experiment folder ``output_dir``."""
    return RunDir(Path(output_dir) / task / arm / f"seed{seed}")


def run_config(task: str, arm: str, seed: int, output_dir, data_root, preset: str = "cpu") -> TrainConfig:
    """The :class:`TrainConfig` of one run: ``preset``'s settings (micro SAM, 256 px, batch 4, 4 epochs, lr 2e-3
    for ``cpu``), the arm's method and options, resumable."""
    if arm not in ARMS:
        raise ConfigError(f"arm {arm!r}; the local-prior experiment has {', '.join(ARMS)}")
    method, options = ARMS[arm]
    return TrainConfig.resolve(dataset_name(task), method, preset, seed=seed, method_options=dict(options),
                               output_dir=str(run_directory(output_dir, task, arm, seed).path),
                               data_root=str(data_root), resume=True)


def train_grid(output_dir, data_root="data", *, tasks=TASKS, arms=tuple(ARMS), seeds=SEEDS, preset: str = "cpu",
               log: Callable[[str], None] = print, run_log: Optional[Callable[[str], None]] = None) -> list[RunDir]:
    """Train (or read back) every run of ``tasks`` x ``arms`` x ``seeds`` (in that order) into ``output_dir``, one
    after the other, the tasks' datasets generated first under ``data_root`` at ``preset``'s size. ``log`` gets
    one line per run (which run, its test IoU, or that it was read back); ``run_log`` the runs' own lines
    (default ``tqdm.write``). Returns the runs."""
    root = ensure_synthetic([dataset_name(task) for task in tasks], preset, data_root)
    runs = []
    for task, arm, seed in itertools.product(tasks, arms, seeds):
        config = run_config(task, arm, seed, output_dir, root, preset)
        run = RunDir(config.output_dir)
        done = run.is_complete()
        if not done:
            fit(config, log=run_log)
        metrics = run.read_metrics()
        log(f"{task} / {arm} / seed {seed}: test IoU {100 * metrics['test']['test']['iou']:.1f} "
            f"(best epoch {metrics['best_epoch']}){' (finished earlier: read back)' if done else ''}")
        runs.append(run)
    return runs


def collect(output_dir, *, tasks=TASKS, arms=tuple(ARMS), seeds=SEEDS) -> pd.DataFrame:
    """The finished runs of the grid in ``output_dir`` as one row per run, in task, arm, seed order: task, arm,
    seed, test_iou (x100, the best-validation epoch's weights), best_epoch, run_dir (relative to
    ``output_dir``). A run that is missing or unfinished has no row."""
    rows = []
    for task, arm, seed in itertools.product(tasks, arms, seeds):
        run = run_directory(output_dir, task, arm, seed)
        if not run.is_complete():
            continue
        metrics = run.read_metrics()
        rows.append(dict(task=task, arm=arm, seed=seed, test_iou=100 * metrics["test"]["test"]["iou"],
                         best_epoch=int(metrics["best_epoch"]),
                         run_dir=run.path.relative_to(output_dir).as_posix()))
    return pd.DataFrame(rows, columns=COLUMNS)


def recorded() -> pd.DataFrame:
    """The recorded full experiment (``benchmarks/local_prior_cpu.md``): :func:`collect`'s table of its 60 runs,
    read from :data:`RECORDED`. Used in notebook 12."""
    return pd.read_csv(RECORDED)
