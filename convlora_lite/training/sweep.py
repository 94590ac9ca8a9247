"""Run a grid of trainings (datasets x methods x seeds) and write the paper-style table.

Every run has its own directory ``{output_dir}/{dataset}/{method}/seed{seed}``; a finished run is
skipped and an interrupted one resumes from its last completed epoch (``fit`` with
``resume=True``), so an interrupted sweep continues where it stopped when it is started again.
"""
from __future__ import annotations

from pathlib import Path

from convlora_lite.analysis.results_tables import collect_runs, results_table, table_markdown
from convlora_lite.errors import ConfigError
from convlora_lite.training.presets import get_preset


def seeds_for(preset: str, n: int) -> list[int]:
    """The ``n`` seeds of a sweep: the preset's seed, then the next ``n - 1`` integers."""
    if n < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {n}).")
    base = get_preset(preset).value("seed")
    return [base + i for i in range(n)]


def reproduce(preset: str, datasets: list[str], methods: list[str], seeds: int = 1,
              output_dir="runs/reproduce", log=print, **overrides) -> Path:
    """Train every (dataset, method, seed) under ``preset`` and write ``results.md`` and
    ``results.csv`` into ``output_dir``; returns the path of ``results.md``.

    ``overrides`` are :class:`~convlora_lite.training.TrainConfig` fields applied to every run
    (e.g. ``model="vit_b"``, ``epochs=2``); ``output_dir``, ``seed`` and ``resume`` are set here.
    """
    from convlora_lite.training.config import TrainConfig
    from convlora_lite.training.trainer import fit

    for name in ("output_dir", "seed", "resume"):
        if name in overrides:
            raise ConfigError(f"reproduce sets {name!r} itself for every run; do not pass it.")
    root = Path(output_dir)
    configs = [TrainConfig.resolve(dataset, method, preset, seed=seed, resume=True,
                                   output_dir=str(root / dataset / method / f"seed{seed}"), **overrides)
               for dataset in datasets for method in methods for seed in seeds_for(preset, seeds)]
    for i, config in enumerate(configs, 1):
        log(f"[{i}/{len(configs)}] {config.dataset} / {config.method} / seed {config.seed} -> {config.output_dir}")
        fit(config)
    runs = collect_runs([c.output_dir for c in configs])
    runs.to_csv(root / "results.csv", index=False)
    (root / "results.md").write_text(table_markdown(results_table(runs)))
    return root / "results.md"
