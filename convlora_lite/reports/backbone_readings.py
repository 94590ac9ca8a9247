"""The same method on two backbones, seed by seed (notebook 13: micro SAM 2 next to micro SAM on one analog).

:func:`backbone_readings` puts two :func:`~convlora_lite.reports.results_tables.collect_runs` tables of one task side
by side, one per backbone, trained with the same methods, seeds and recipe: per method and test metric, the second
backbone minus the first on the seeds both trained (the paired comparison of ``docs/metrics.md``, "Seed
statistics"), with the interval, the spreads and the smallest difference these seeds detect; then Conv-LoRA minus
LoRA on each backbone, so the question "does the local prior help more on one backbone than on the other" is read
from the same numbers. Runs that never left the all-background floor are named and left out first
(:func:`~convlora_lite.reports.readings.failed_runs`). Numbers are shown and compared as :mod:`.shown_numbers`
rounds them.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.reports.paired_readings import interval_text
from convlora_lite.reports.readings import floor_check, without_runs
from convlora_lite.reports.seed_statistics import POWER_AND_LEVEL, paired_comparison
from convlora_lite.reports.shown_numbers import lower_note, shown


def _kept(runs: pd.DataFrame, baselines: Mapping[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` without those that never left the floor (on the task's selection metric), and the sentences naming
    them."""
    failed, named = floor_check(runs, dict(baselines), get_dataset_spec(runs["dataset"].iloc[0]))
    return without_runs(runs, failed), named


def _difference_sentence(row, head: str, name_a: str, name_b: str) -> str:
    """A :func:`paired_comparison` row (``a`` minus ``b``) in words, after ``head``."""
    a, b = shown(row.mean_a), shown(row.mean_b)
    head = f"{head} {row.metric}{lower_note(row.metric)} ({row.split}): {name_a} {a:.1f} vs {name_b} {b:.1f}"
    if row.n < 2:
        return f"{head} on {row.n} paired seed(s): no interval, nothing detectable."
    return (f"{head}, difference {shown(a - b):+.1f} over {row.n} seeds ({interval_text(row)}); these seeds detect "
            f"{row.mdd:.1f} points or more ({POWER_AND_LEVEL}).")


def _pairs(kept_a: pd.DataFrame, kept_b: pd.DataFrame) -> pd.DataFrame:
    """Both backbones' kept runs in one table, each method tagged ``@a`` or ``@b``."""
    return pd.concat([kept_a.assign(method=kept_a["method"] + "@a"), kept_b.assign(method=kept_b["method"] + "@b")])


def _gap(row) -> str:
    """A paired difference as the summary prints it: the mean, and its interval from 2 seeds on."""
    interval = "" if row.n < 2 else f" (95 % CI {shown(row.low):+.1f} to {shown(row.high):+.1f})"
    return f"{shown(row.mean_a) - shown(row.mean_b):+.1f}{interval}"


def backbone_summary(runs_a: pd.DataFrame, runs_b: pd.DataFrame, name_a: str, name_b: str,
                     baselines: Mapping[str, dict]) -> str:
    """:func:`backbone_readings` in one sentence on the task's selection metric and first test split: each method
    on ``b`` minus on ``a`` over the seeds both trained, then Conv-LoRA minus LoRA on each backbone (failed runs
    left out, as there)."""
    spec = get_dataset_spec(runs_b["dataset"].iloc[0])
    kept_a, kept_b = _kept(runs_a, baselines)[0], _kept(runs_b, baselines)[0]
    metric, split = spec.select_metric, spec.test_splits[0]

    def rows(table, a, b):
        found = paired_comparison(table, a, b)
        return found[(found["metric"] == metric) & (found["split"] == split)].itertuples()

    methods = [m for m in dict.fromkeys(kept_b["method"]) if m in set(kept_a["method"])]
    across = [f"{m} {_gap(row)}" for m in methods for row in rows(_pairs(kept_a, kept_b), f"{m}@b", f"{m}@a")]
    within = [f"{_gap(row)} on {name}" for name, kept in ((name_a, kept_a), (name_b, kept_b))
              for row in rows(kept, "conv_lora", "lora")]
    head = f"{spec.name}/{split} {metric}{lower_note(metric)}"
    sentence = f"{head}, {name_b} minus {name_a} on the same seeds: {'; '.join(across) or 'no method both trained'}"
    return sentence + (f"; Conv-LoRA minus LoRA: {', '.join(within)}." if within else ".")


def backbone_readings(runs_a: pd.DataFrame, runs_b: pd.DataFrame, name_a: str, name_b: str,
                      baselines: Mapping[str, dict]) -> list[str]:
    """Sentences comparing backbone ``b`` with backbone ``a`` on one task.

    Args:
        runs_a, runs_b: :func:`~convlora_lite.reports.results_tables.collect_runs` tables of the task's runs on each
            backbone (same dataset, methods and seeds).
        name_a, name_b: the backbones' names, as the sentences print them.
        baselines: test split -> :func:`~convlora_lite.reports.readings.trivial_baseline` of the task.

    Returns:
        The failed runs of either backbone (named, left out), then per method both trained and test metric
        ``b - a`` seed by seed, then Conv-LoRA - LoRA on each backbone where both methods trained."""
    kept_a, failed_a = _kept(runs_a, baselines)
    kept_b, failed_b = _kept(runs_b, baselines)
    sentences = [f"{name_a}: {s}" for s in failed_a] + [f"{name_b}: {s}" for s in failed_b]
    both = _pairs(kept_a, kept_b)
    for method in [m for m in dict.fromkeys(kept_b["method"]) if m in set(kept_a["method"])]:
        for row in paired_comparison(both, f"{method}@b", f"{method}@a").itertuples():
            sentences.append(_difference_sentence(row, f"{method}, {name_b} - {name_a}:", name_b, name_a))
    for name, kept in ((name_a, kept_a), (name_b, kept_b)):
        for row in paired_comparison(kept, "conv_lora", "lora").itertuples():
            sentences.append(_difference_sentence(row, f"On {name}, Conv-LoRA - LoRA:", "Conv-LoRA", "LoRA"))
    return sentences
