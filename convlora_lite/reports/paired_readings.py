"""Conv-LoRA against LoRA seed by seed, in words: what the paired comparison of
:func:`~convlora_lite.reports.seed_statistics.paired_comparison` says, next to the paper's gain on the same task
(:func:`~convlora_lite.reports.paper_tables.paper_gains`), and whether a gain that size could have been seen with
these seeds (``docs/metrics.md``, "Seed statistics"):

* :func:`conv_lora_readings`: one sentence per test metric (means, per-seed differences, interval, spreads, the
  paper's gain, the smallest detectable difference);
* :func:`detectability_reading`: one sentence over the test metrics, for the takeaways.

Failed runs (:func:`~convlora_lite.reports.readings.failed_runs`) are left out of ``runs`` before these are called.
Numbers are shown and compared as :mod:`.shown_numbers` rounds them.
"""
from __future__ import annotations

import pandas as pd

from convlora_lite.reports.paper_tables import paper_gains
from convlora_lite.reports.seed_statistics import CONFIDENCE, POWER_AND_LEVEL, paired_comparison
from convlora_lite.reports.shown_numbers import lower_note, shown
from convlora_lite.training.metrics import METRIC_DIRECTIONS


def _paper_gain(row) -> tuple[str, float | None]:
    """The sentence on the paper's gain of Conv-LoRA over LoRA for a :func:`paired_comparison` row, signed as the
    row's differences are (Conv-LoRA - LoRA: negative is the gain on a lower-is-better metric), and the largest of
    its gains (``None`` where the paper has none)."""
    gains = paper_gains(row.dataset, row.split, row.metric)
    if not gains:
        return " The paper reports no Conv-LoRA vs LoRA gain for this metric.", None
    sign, lower = (1, "") if METRIC_DIRECTIONS.get(row.metric, "max") == "max" else (-1, " (Conv-LoRA - LoRA)")
    named = ", ".join(f"{sign * gain:+.1f}" + (f" ({test_set})" if len(gains) > 1 else "")
                      for test_set, gain in gains.items())
    return f" The paper's gain on {row.dataset.removeprefix('synth_')}: {named}{lower}.", max(map(abs, gains.values()))


def _seen(gain: float, mdd: float) -> bool:
    """Whether a paper-sized ``gain`` reaches the minimum detectable difference ``mdd``, both as shown."""
    return shown(gain) >= shown(mdd)


def _detectable(gain: float | None, mdd: float) -> str:
    """The sentence on whether a paper-sized ``gain`` could have been seen with seeds that detect ``mdd``."""
    if gain is None:
        return f"These seeds detect {mdd:.1f} points or more ({POWER_AND_LEVEL})."
    could = "could" if _seen(gain, mdd) else "could not"
    return (f"A paper-sized gain of {gain:.1f} {could} have been seen: these seeds detect {mdd:.1f} points or more "
            f"({POWER_AND_LEVEL}).")


def interval_text(row) -> str:
    """The seeds of a :func:`paired_comparison` row with 2 or more paired seeds, as the readings print them: each
    seed's difference, the confidence interval and which side of 0 it lies on."""
    low, high = shown(row.low), shown(row.high)
    side = "above 0" if low > 0 else "below 0" if high < 0 else "includes 0"
    per_seed = ", ".join(f"{d:+.1f}" for d in row.differences)
    return f"per seed {per_seed}; {100 * CONFIDENCE:.0f} % CI {low:+.1f} to {high:+.1f}, {side}"


def _comparison_sentence(row) -> str:
    """One :func:`paired_comparison` row (Conv-LoRA as a, LoRA as b) in words."""
    head = f"{row.dataset}/{row.split} {row.metric}{lower_note(row.metric)}:"
    if row.n == 0:
        return f"{head} Conv-LoRA and LoRA share no seed that trained: no paired comparison."
    conv, lora = shown(row.mean_a), shown(row.mean_b)
    difference = shown(conv - lora)
    gap = "a tie" if difference == 0 else f"difference {difference:+.1f}"
    paper, gain = _paper_gain(row)
    head = f"{head} Conv-LoRA {conv:.1f} vs LoRA {lora:.1f}"
    if row.n == 1:
        return f"{head} on one seed, {gap}: one seed gives no interval and detects nothing.{paper}"
    return (f"{head} over the {row.n} seeds both trained, {gap} ({interval_text(row)}); seed sd Conv-LoRA "
            f"{row.sd_a:.1f}, LoRA {row.sd_b:.1f}, of the differences {row.sd:.1f}.{paper} "
            f"{_detectable(gain, row.mdd)}")


def conv_lora_readings(runs: pd.DataFrame) -> list[str]:
    """Per (dataset, split, metric) of a :func:`~convlora_lite.reports.results_tables.collect_runs` table where both
    ran, Conv-LoRA minus LoRA on the seeds both ran: the means as shown and their difference, each seed's difference,
    the confidence interval of the mean difference (:data:`~.seed_statistics.CONFIDENCE`), each method's and the
    differences' sample standard deviation, the paper's gain on the task, and whether a paper-sized gain reaches the
    smallest difference these seeds detect (:data:`~.seed_statistics.POWER_AND_LEVEL`)."""
    return [_comparison_sentence(row) for row in paired_comparison(runs, "conv_lora", "lora").itertuples()]


def detectability_reading(runs: pd.DataFrame) -> str | None:
    """In one sentence over the test metrics of ``runs``: on how many a paper-sized gain of Conv-LoRA over LoRA
    could have been seen, with the smallest difference these seeds detect and the paper's gain on each (``None``
    with fewer than 2 paired seeds)."""
    comparison = paired_comparison(runs, "conv_lora", "lora")
    comparison = comparison[comparison["n"] > 1]
    if comparison.empty:
        return None
    parts, seen = [], []
    for row in comparison.itertuples():
        gain = _paper_gain(row)[1]
        parts.append(f"{row.metric} {row.mdd:.1f}" + ("" if gain is None else f" against the paper's {gain:.1f}"))
        seen += [] if gain is None else [_seen(gain, row.mdd)]
    detect = f"these {int(comparison['n'].min())} seeds detect {', '.join(parts)} ({POWER_AND_LEVEL})"
    if not seen:
        return f"T{detect[1:]}; the paper reports no gain to set them against."
    where = ("on every test metric" if all(seen) else "on no test metric" if not any(seen) else
             f"on {sum(seen)} of {len(seen)} test metrics")
    return f"A paper-sized gain could have been seen {where}: {detect}."
