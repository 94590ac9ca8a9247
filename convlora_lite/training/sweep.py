"""Run a grid of trainings (datasets x methods x seeds) and write the paper-style table.

Every run has its own directory ``{output_dir}/{dataset}/{method}/seed{seed}``; a finished run is
skipped and an interrupted one resumes from its last completed epoch (``fit`` with
``resume=True``), so an interrupted sweep continues where it stopped when it is started again.

Several workers (GPUs, nodes, SLURM array tasks) split one grid with ``shard=(k, n)``: worker
``k`` of ``n`` (``0 <= k < n``) trains the grid's runs ``k, k + n, k + 2n, ...`` (the grid in
dataset, method, seed order), so the ``n`` shards are disjoint and together cover the grid once.
They share ``output_dir`` (a shared file system); each shard is resumable on its own, and the
worker that finds the whole grid complete gets the grid's runs back, from which ``convlora reproduce``
writes ``results.md``/``results.csv`` (:func:`convlora_lite.reports.results_tables.write_results`; any
worker run again, or ``convlora table``, writes it later).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from convlora_lite.errors import ConfigError
from convlora_lite.training.config import TrainConfig, preset_value
from convlora_lite.training.presets import get_preset
from convlora_lite.training.run_data import ensure_synthetic
from convlora_lite.training.rundir import RunDir

#: where ``convlora reproduce`` puts a grid when no ``--output-dir`` is given.
DEFAULT_SWEEP_DIR = "runs/reproduce"


def seeds_for(preset: str, n: int | None = None) -> list[int]:
    """The ``n`` seeds of a sweep: the preset's seed, then the next ``n - 1`` integers
    (``n=None``: the preset's number of seeds, :attr:`~convlora_lite.training.presets.Preset.seeds`)."""
    n = get_preset(preset).seeds if n is None else n
    if n < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {n}).")
    base = preset_value(preset, "seed")
    return [base + i for i in range(n)]


def parse_shard(text) -> Optional[tuple[int, int]]:
    """``"K/N"`` (or a ``(k, n)`` pair, or ``None``) -> ``(k, n)`` with ``0 <= k < n``; a
    :class:`ConfigError` otherwise."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard {text!r}: write K/N, e.g. 0/4 for the first of 4 workers.") from None
    else:
        k, n = text
    if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 0 <= k < n):
        raise ConfigError(f"shard {k}/{n}: need N >= 1 and 0 <= K < N (K counts from 0, as SLURM_ARRAY_TASK_ID "
                          "with --array=0-(N-1)).")
    return k, n


def grid_configs(preset: str, datasets: list[str], methods: list[str], seeds: int | None = 1,
                 output_dir=DEFAULT_SWEEP_DIR, **overrides) -> list:
    """The :class:`~convlora_lite.training.TrainConfig` of every run of the grid, in dataset,
    method, seed order (the order the shards are dealt from)."""
    for name in ("output_dir", "seed", "resume"):
        if name in overrides:
            raise ConfigError(f"reproduce sets {name!r} itself for every run; do not pass it.")
    return [TrainConfig.resolve(dataset, method, preset, seed=seed, resume=True,
                                output_dir=str(RunDir.of(output_dir, dataset, method, seed).path), **overrides)
            for dataset in datasets for method in methods for seed in seeds_for(preset, seeds)]


def shard_of(configs: list, shard) -> list:
    """The part of ``configs`` that worker ``k`` of ``n`` trains (every ``n``-th from ``k``)."""
    parsed = parse_shard(shard)
    if parsed is None:
        return list(configs)
    k, n = parsed
    return list(configs[k::n])


def reproduce(preset: str, datasets: list[str], methods: list[str], seeds: int | None = 1,
              output_dir=DEFAULT_SWEEP_DIR, log=print, shard=None, on_finish: Optional[Callable] = None,
              run_log: Optional[Callable[[str], None]] = None, **overrides) -> Optional[list[RunDir]]:
    """Train every (dataset, method, seed) under ``preset`` into ``output_dir``; returns the grid's
    runs, or ``None`` while other shards' runs are still missing.

    ``overrides`` are :class:`~convlora_lite.training.TrainConfig` fields applied to every run
    (e.g. ``model="vit_b"``, ``epochs=2``); ``output_dir``, ``seed`` and ``resume`` are set here.
    ``seeds=None`` trains the preset's number of seeds (3 on ``paper``, else 1). ``shard=(k, n)``
    (or ``"k/n"``) trains only worker ``k``'s part of the grid (see the module docstring).
    ``on_finish`` is passed to every :func:`~convlora_lite.training.trainer.fit`, ``run_log`` as its ``log``
    (the run's own lines; ``log`` gets the sweep's, one per run, saying whether it trains or is read back). Every
    config of the grid is resolved (and its method options checked) before the first run starts.
    """
    from convlora_lite.training.trainer import fit

    configs = grid_configs(preset, datasets, methods, seeds, output_dir, **overrides)
    mine = shard_of(configs, shard)
    parsed = parse_shard(shard)
    where = f"shard {parsed[0]}/{parsed[1]}: " if parsed else ""
    for i, config in enumerate(mine, 1):
        done = " (finished earlier: read back)" if RunDir(config.output_dir).is_complete() else ""
        log(f"{where}[{i}/{len(mine)}] {config.dataset} / {config.method} / seed {config.seed} -> "
            f"{config.output_dir}{done}")
        fit(config, on_finish=on_finish, log=run_log)
    runs = [RunDir(c.output_dir) for c in configs]
    missing = [run for run in runs if not run.is_complete()]
    if missing:
        log(f"{where}done; {len(missing)} of the grid's {len(configs)} runs are not complete yet (other shards). "
            "The worker that completes the grid writes results.md; or run `convlora table` on the folder later.")
        return None
    return runs


#: the budget overrides that name a sweep folder of their own -> their tag in the folder name (a model other than
#: the preset's is named as it is: ``sweep_cpu_micro_sam2``).
_BUDGET_TAGS = {"epochs": "e", "image_size": "px", "max_train_batches": "b", "model": ""}


def sweep_dir(output_dir, preset: str, budget: dict | None = None) -> Path:
    """The shared sweep folder of ``preset`` under ``output_dir`` (``sweep_<preset>``); a shrunk or grown
    budget (overrides such as ``{"epochs": 2}``, or another backbone, ``{"model": "micro_sam2"}``) gets its own folder
    (``sweep_cpu_e2``, ``sweep_cpu_micro_sam2``), so its runs never meet the preset's. Used by the notebooks
    (:class:`convlora_lite.notebook.Session`)."""
    unknown = set(budget or {}) - set(_BUDGET_TAGS)
    if unknown:
        raise ConfigError(f"budget {sorted(unknown)}: a sweep's budget sets {', '.join(_BUDGET_TAGS)} only.")
    tag = "".join(f"_{_BUDGET_TAGS[k]}{v}" for k, v in sorted((budget or {}).items()))
    return Path(output_dir).resolve() / f"sweep_{preset}{tag}"


def run_sweep(preset: str, datasets, methods, seeds: int, output_dir, data_root, checkpoint="auto", log=print,
              budget: dict | None = None, on_finish: Optional[Callable] = None,
              run_log: Optional[Callable[[str], None]] = None) -> list[RunDir]:
    """Train (or read back) the grid ``datasets`` x ``methods`` x ``seeds`` seeds of ``preset`` with the
    ``budget`` overrides into its :func:`sweep_dir`, the analogs generated first at the preset's size
    (:func:`~convlora_lite.training.run_data.ensure_synthetic`); returns the grid's runs. ``log`` and
    ``run_log``: as :func:`reproduce`'s."""
    root = ensure_synthetic(datasets, preset, data_root)
    return reproduce(preset, list(datasets), list(methods), seeds, output_dir=sweep_dir(output_dir, preset, budget),
                     log=log, data_root=str(root), checkpoint=checkpoint, on_finish=on_finish, run_log=run_log,
                     **(budget or {}))
