"""Does adapting SAM's image encoder help at all, and does it matter how? The encoder adapters (LoRA, Conv-LoRA)
against the methods that leave the encoder's weights alone (prompt tuning, VPT, and the mask decoder trained alone,
decoder-only), seed by seed (``docs/metrics.md``, "Seed statistics"):

* :func:`adapter_effects`: per (dataset, split) on one metric, each adapter's gain over each other method as the
  mean of per-seed paired differences with its confidence interval, signed so that positive is better, with the
  methods that never left the all-background floor marked;
* :func:`adapter_effect_reading`: those gains in words, one sentence per (dataset, split, metric);
* :func:`budget_parity_reading`: VPT's and LoRA's trainable budgets side by side.

Used by the domain notebooks (03-07, through :func:`~convlora_lite.reports.domain_readings.against_baselines`),
08's grid and 12's summary. Differences are taken between the rounded numbers the sentences print
(:mod:`.shown_numbers`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.reports.seed_statistics import CONFIDENCE, paired_comparison
from convlora_lite.reports.shown_numbers import lower_note, shown
from convlora_lite.training.metrics import METRIC_DIRECTIONS

#: the methods that adapt the image encoder.
ADAPTERS = ("lora", "conv_lora")
#: the methods they are compared with: prompt tuning and the mask decoder alone.
OTHERS = ("vpt", "decoder_only")
#: a mean (x100) less than this much better than predicting background everywhere has not left that floor.
FLOOR_MARGIN = 0.5
#: the columns of :func:`adapter_effects`.
COLUMNS = ["dataset", "split", "metric", "adapter", "other", "n", "adapter_mean", "other_mean", "gain", "low", "high",
           "floor", "at_floor"]


def _sign(metric: str) -> int:
    """+1 where higher is better, -1 where lower is (a difference times this is a gain)."""
    return 1 if METRIC_DIRECTIONS.get(metric, "max") == "max" else -1


def _at_floor(metric: str, mean: float, floor: float | None) -> bool:
    """Whether ``mean`` (x100) is within :data:`FLOOR_MARGIN` of the all-background ``floor`` (x100) or worse."""
    return floor is not None and _sign(metric) * (shown(mean) - shown(floor)) <= FLOOR_MARGIN


def adapter_effects(runs: pd.DataFrame, baselines: Mapping[str, Mapping[str, float]] | None = None,
                    metric: str | None = None, adapters: Sequence[str] = ADAPTERS,
                    others: Sequence[str] = OTHERS) -> pd.DataFrame:
    """Each of ``adapters`` against each of ``others`` on the seeds both ran, per (dataset, split) of a
    :func:`~convlora_lite.reports.results_tables.collect_runs` table, on ``metric`` (default: each dataset's
    selection metric).

    Returns one row per pair with a shared seed, columns :data:`COLUMNS`: n paired seeds, both means over them as
    shown (x100), ``gain`` (the adapter's mean minus the other's as shown, signed so that positive is better),
    ``low``/``high`` (the :data:`~.seed_statistics.CONFIDENCE` interval of the per-seed gains; NaN for one seed),
    ``floor`` (predicting background everywhere, x100; NaN where unknown) and ``at_floor``: the names of the pair's
    methods within :data:`FLOOR_MARGIN` of predicting background everywhere
    (``baselines``: ``{split: {metric: fraction}}`` of :func:`~convlora_lite.reports.readings.trivial_baseline`), a
    tuple, empty where both left it or no floor is known. Used in notebook 08."""
    rows = []
    for (dataset, split), part in runs.groupby(["dataset", "split"], sort=False):
        chosen = metric or get_dataset_spec(dataset).select_metric
        part = part[part["metric"] == chosen]
        floor = (baselines or {}).get(split, {}).get(chosen)
        floor = None if floor is None else 100 * float(floor)
        sign = _sign(chosen)
        for adapter in [m for m in adapters if m in set(part["method"])]:
            for other in [m for m in others if m in set(part["method"])]:
                table = paired_comparison(part, adapter, other)
                if table.empty or table["n"].iloc[0] == 0:
                    continue
                row = table.iloc[0]
                low, high = sorted((sign * row.low, sign * row.high))
                stuck = tuple(name for name, mean in ((adapter, row.mean_a), (other, row.mean_b))
                              if _at_floor(chosen, mean, floor))
                rows.append(dict(dataset=dataset, split=split, metric=chosen, adapter=adapter, other=other, n=row.n,
                                 adapter_mean=shown(row.mean_a), other_mean=shown(row.mean_b),
                                 gain=shown(sign * (shown(row.mean_a) - shown(row.mean_b))), low=low, high=high,
                                 floor=np.nan if floor is None else shown(floor), at_floor=stuck))
    return pd.DataFrame(rows, columns=COLUMNS)


def _pair_text(row) -> str:
    """One pair of :func:`adapter_effects` in words: the gain with its interval, or why no gain is read."""
    if row.at_floor:
        return (f"{row.adapter} {row.adapter_mean:.1f} vs {row.other} {row.other_mean:.1f}: "
                f"{' and '.join(row.at_floor)} at the floor, no gain read")
    word = "better" if row.gain >= 0 else "worse"
    spread = ("one seed: no interval" if row.n < 2 else
              f"{100 * CONFIDENCE:.0f} % CI {row.low:+.1f} to {row.high:+.1f} over {row.n} paired seeds")
    return (f"{row.adapter} {row.adapter_mean:.1f} vs {row.other} {row.other_mean:.1f}: {word} by "
            f"{abs(row.gain):.1f} ({spread})")


def adapter_effect_reading(effects: pd.DataFrame) -> list[str]:
    """:func:`adapter_effects` in words, one sentence per (dataset, split, metric): how many of the gains that can be
    read (both methods off the all-background floor, at least 2 seeds) have an interval above 0, then each pair's
    gain and interval, and the floor where a method sits at it. Used in notebooks 08 and 12."""
    lines = []
    for (dataset, split, metric), part in effects.groupby(["dataset", "split", "metric"], sort=False):
        readable = part[(part["n"] > 1) & (part["at_floor"].map(len) == 0)]
        clear = int((readable["low"] > 0).sum())
        if readable.empty:
            verdict = "no gain can be read with an interval here"
        elif clear == len(readable):
            verdict = "adapting the encoder wins every comparison, each interval above 0"
        else:
            verdict = f"{clear} of {len(readable)} gains have an interval above 0"
        stuck = any(len(names) for names in part["at_floor"])
        note = (f" Predicting background everywhere scores {part['floor'].iloc[0]:.1f}: a method at that floor "
                "learned nothing on this metric." if stuck else "")
        lines.append(f"{dataset}/{split} {metric}{lower_note(metric)}, {verdict}: "
                     + "; ".join(_pair_text(row) for row in part.itertuples()) + f".{note}")
    return lines


def budget_parity_reading(trainable: Mapping[str, int]) -> list[str]:
    """VPT's and LoRA's trainable parameters (``trainable``: method -> count) side by side, in one sentence: at nearly
    the same budget, which parameters train is what differs. Empty without both. Used in notebook 08."""
    if "vpt" not in trainable or "lora" not in trainable:
        return []
    vpt, lora = trainable["vpt"], trainable["lora"]
    same = "exactly the same" if vpt == lora else f"nearly the same ({100 * (lora - vpt) / vpt:+.1f} %)"
    return [f"VPT trains {vpt:,} parameters and LoRA {lora:,}: at {same} budget, which parameters train matters, not "
            "how many."]


def encoder_gain_range(effects: pd.DataFrame, other: str = "decoder_only") -> tuple[int, int, float, float] | None:
    """Over the readable pairs of :func:`adapter_effects` against ``other`` (both off the floor, at least 2 seeds):
    how many there are, how many have an interval above 0, and the smallest and largest gain; ``None`` when there is
    no such pair. Used in notebook 12."""
    readable = effects[(effects["other"] == other) & (effects["n"] > 1) & (effects["at_floor"].map(len) == 0)]
    if readable.empty:
        return None
    return len(readable), int((readable["low"] > 0).sum()), float(np.min(readable["gain"])), float(
        np.max(readable["gain"]))
