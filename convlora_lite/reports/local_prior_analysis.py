"""The preregistered analysis of the local-prior experiment (``docs/experiments/local_prior.md``, "Analysis" and
"Decision rule") on the per-seed table of :func:`convlora_lite.analysis.local_prior.collect`:

* :func:`failed_runs`: the runs whose test IoU is below :data:`FAILED_BELOW` (they predict no object); each is
  left out of every paired difference it belongs to;
* :func:`paired_differences`: per task, d = conv_lora - lora and e = conv_lora - one_expert on the same seeds,
  their mean, sample sd, 95 % t interval and minimum detectable difference (80 % power, 5 % level), from
  :mod:`convlora_lite.reports.seed_statistics`;
* :func:`interaction`: per seed, d(texture) - d(colour), and the same summary;
* :func:`analyse`: all of it, with the verdicts on H1 and H2 by the decision rule (:func:`verdict`), and
  :func:`verdict_lines`: the sentences that state them with their numbers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from convlora_lite.analysis.local_prior import TASKS
from convlora_lite.reports.paper_tables import PAPER_RESULTS, paper_gains
from convlora_lite.reports.seed_statistics import (
    POWER_AND_LEVEL,
    difference_interval,
    minimum_detectable_difference,
    paired_comparison,
)

#: a run whose test IoU (x100) is below this predicts no object: it failed.
FAILED_BELOW = 1.0
#: the paired differences of the analysis: name -> (arm, minus arm).
DIFFERENCES = {"d": ("conv_lora", "lora"), "e": ("conv_lora", "one_expert")}


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`collect`'s ``frame`` whose test IoU is below :data:`FAILED_BELOW`: the runs that never
    left the all-background prediction."""
    return frame[frame["test_iou"] < FAILED_BELOW]


def verdict(interval: Optional[tuple[float, float]]) -> str:
    """The decision rule on one 95 % interval: ``"supported"`` if it lies above 0, ``"contradicted"`` if below,
    otherwise (or with no interval) ``"not detected"``."""
    if interval is None or not np.all(np.isfinite(interval)):
        return "not detected"
    if interval[0] > 0:
        return "supported"
    return "contradicted" if interval[1] < 0 else "not detected"


def _summary(differences: pd.Series) -> dict:
    """n, mean, sample sd, 95 % t interval (low, high) and minimum detectable difference of per-seed differences."""
    values = differences.to_numpy(dtype=float)
    sd = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    low, high = difference_interval(values) or (np.nan, np.nan)
    return dict(n=len(values), mean=float(values.mean()) if len(values) else np.nan, sd=sd, low=low, high=high,
                mdd=minimum_detectable_difference(sd, len(values)))


def paired_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task and difference of :data:`DIFFERENCES` (d = conv_lora - lora, e = conv_lora - one_expert), the
    seeds both arms finished without failing (a failed run's seed is left out of its pairs): columns task,
    difference, arm, baseline, seeds, differences (per seed, x100), n, mean, sd, low, high (95 % t interval), mdd
    (:func:`~convlora_lite.reports.seed_statistics.minimum_detectable_difference` at the observed sd)."""
    kept = frame.drop(failed_runs(frame).index)
    runs = pd.DataFrame(dict(dataset=kept["task"], split="test", metric="iou", method=kept["arm"],
                             seed=kept["seed"], value=kept["test_iou"] / 100))
    rows = []
    for name, (arm, baseline) in DIFFERENCES.items():
        table = paired_comparison(runs, arm, baseline)
        for task in dict.fromkeys(frame["task"]):
            match = table[table["dataset"] == task]
            seeds, values = (match["seeds"].iloc[0], match["differences"].iloc[0]) if len(match) else ((), ())
            rows.append(dict(task=task, difference=name, arm=arm, baseline=baseline, seeds=tuple(seeds),
                             differences=tuple(values), **_summary(pd.Series(values, dtype=float))))
    return pd.DataFrame(rows)


def interaction(differences: pd.DataFrame, tasks=TASKS) -> tuple[pd.Series, dict]:
    """Per seed present in both tasks' d, d(``tasks[0]``) - d(``tasks[1]``) (texture minus colour), and its
    :func:`_summary` (n, mean, sd, low, high, mdd)."""
    first, second = (differences[(differences["task"] == t) & (differences["difference"] == "d")] for t in tasks)
    per_task = [pd.Series(row["differences"].iloc[0], index=row["seeds"].iloc[0], dtype=float) if len(row)
                else pd.Series(dtype=float) for row in (first, second)]
    values = (per_task[0] - per_task[1]).dropna().sort_index()
    return values, _summary(values)


def analyse(frame: pd.DataFrame) -> dict:
    """The preregistered analysis of :func:`collect`'s ``frame``: ``failed`` (the failed runs' rows), ``means``
    (per task and arm: n, mean and sd of the test IoU over the runs that did not fail), ``differences``
    (:func:`paired_differences`), ``interaction`` (the per-seed series and its summary) and the verdicts
    ``H1`` (supported if d's interval on texture and the interaction's lie above 0, contradicted if d's lies
    below 0, else not detected) and ``H2`` (:func:`verdict` of e's interval on texture). Used in notebook 12."""
    failed = failed_runs(frame)
    kept = frame.drop(failed.index)
    means = kept.groupby(["task", "arm"], sort=False)["test_iou"].agg(["count", "mean", "std"]).reset_index()
    differences = paired_differences(frame)
    per_seed, summary = interaction(differences)

    def interval(task, name):
        row = differences[(differences["task"] == task) & (differences["difference"] == name)]
        return (row["low"].iloc[0], row["high"].iloc[0]) if len(row) else None

    d_texture = verdict(interval("texture", "d"))
    both = d_texture == "supported" and verdict((summary["low"], summary["high"])) == "supported"
    h1 = "supported" if both else ("contradicted" if d_texture == "contradicted" else "not detected")
    return dict(failed=failed, means=means, differences=differences,
                interaction=dict(per_seed=per_seed, **summary), H1=h1, H2=verdict(interval("texture", "e")))


def _interval_text(summary) -> str:
    """``"+1.2 [-0.3, +2.7] (n 10, sd 2.1, MDD 2.1)"`` of a summary (a :func:`paired_differences` row or dict)."""
    mdd = "n/a" if summary["mdd"] is None else f"{summary['mdd']:.1f}"
    return (f"{summary['mean']:+.1f} [{summary['low']:+.1f}, {summary['high']:+.1f}] (n {summary['n']}, "
            f"sd {summary['sd']:.1f}, MDD {mdd})")


def _paper_sized_gain(texture_d) -> str:
    """Whether the paper's largest gain of Conv-LoRA over LoRA (:func:`~.paper_tables.paper_gains`, every cell) is
    ruled out by d's interval on texture, and whether it is at least d's minimum detectable difference."""
    gains = [gain for r in PAPER_RESULTS for gain in paper_gains(r.dataset, r.split, r.metric).values()]
    largest, low, high, mdd = max(gains), texture_d["low"], texture_d["high"], texture_d["mdd"]
    inside = bool(low <= largest <= high)
    seen = mdd is not None and largest >= mdd
    return (f"The paper's gains of Conv-LoRA over LoRA span {min(gains):+.1f} to {largest:+.1f} points; on texture a "
            f"true d of {largest:+.1f} is {'inside' if inside else 'outside'} d's interval (the data "
            f"{'do not rule it out' if inside else 'rule it out'}) and {'at or above' if seen else 'below'} its MDD: "
            f"these seeds {'could' if seen else 'could not reliably'} have seen a paper-sized gain.")


def verdict_lines(result: dict) -> list[str]:
    """The sentences that state :func:`analyse`'s ``result`` against the decision rule, every number from it:
    the failed runs, H1 with d on texture and colour and the interaction, H2 with e on texture (mean, 95 % t
    interval, n, sd and the minimum detectable difference at :data:`~.seed_statistics.POWER_AND_LEVEL`), and whether
    a paper-sized gain could have been seen on texture. Used in notebook 12."""
    differences = result["differences"]

    def row(task, name):
        return differences[(differences["task"] == task) & (differences["difference"] == name)].iloc[0]

    failed = result["failed"]
    lines = [f"Failed runs (test IoU below {FAILED_BELOW:g}, left out of their pairs): "
             + (", ".join(failed["run_dir"]) if len(failed) else "none") + "."]
    lines.append(f"H1 (local prior) {result['H1']}: d = conv_lora - lora, test IoU points, mean [95 % t interval], "
                 f"texture {_interval_text(row('texture', 'd'))}, colour {_interval_text(row('colour', 'd'))}; "
                 f"interaction d(texture) - d(colour) {_interval_text(result['interaction'])}.")
    lines.append(f"H2 (multi-scale mixture) {result['H2']}: e = conv_lora - one_expert on texture "
                 f"{_interval_text(row('texture', 'e'))}.")
    lines.append(_paper_sized_gain(row("texture", "d")))
    lines.append(f"MDD: the smallest true difference these seeds detect at {POWER_AND_LEVEL}, from the observed sd; "
                 "a true difference outside a 95 % interval is ruled out at that confidence.")
    return lines


def reduced_reading(live: pd.DataFrame, full: dict, preset: str) -> str:
    """A reduced live run of the experiment (``live``: :func:`~convlora_lite.analysis.local_prior.collect`'s table of
    fewer seeds, texture only, LoRA and Conv-LoRA) next to the recorded full one (``full``: :func:`analyse`'s result),
    saying that it is reduced and how much wider its interval is. Used in notebook 12."""
    def texture_d(differences):
        return differences[(differences["task"] == "texture") & (differences["difference"] == "d")]

    mine, full_row = texture_d(paired_differences(live)), texture_d(full["differences"])
    reference = f"the recorded experiment's d: {_interval_text(full_row.iloc[0])}"
    if mine.empty or mine["n"].iloc[0] < 2:
        n = 0 if mine.empty else int(mine["n"].iloc[0])
        return (f"REDUCED live run ({preset} preset, texture only, LoRA and Conv-LoRA): {n} paired seed(s), too few "
                f"for an interval; {reference}.")
    row = mine.iloc[0]
    widths = (row["high"] - row["low"]) / (full_row["high"].iloc[0] - full_row["low"].iloc[0])
    return (f"REDUCED live run ({preset} preset, texture only, LoRA and Conv-LoRA, {row['n']} seeds; the recorded "
            f"experiment has {full_row['n'].iloc[0]} seeds, both tasks and three arms): d = {_interval_text(row)}; "
            f"{reference}. Its interval is {widths:.1f} times as wide: a run this small shows the method, the "
            "recorded one decides.")
