"""What the course's runs say about its question, *does Conv-LoRA's local prior help SAM?* (notebook 12), computed
from run directories and the recorded local-prior experiment, never typed (``docs/metrics.md``, "Seed statistics";
``docs/experiments/local_prior.md``):

* :func:`conv_lora_evidence`: per task, Conv-LoRA minus LoRA on the task's selection metric, seed by seed (failed runs
  left out), with its interval, the smallest difference those seeds detect and the paper's gain, signed so that
  positive favours Conv-LoRA;
* :func:`experiment_evidence`: the local-prior experiment's paired differences in the same columns;
* :func:`evidence_reading`: both in words, and whether a paper-sized gain could have been seen on each;
* :func:`seeds_needed`: how many paired seeds a difference needs at a given spread;
* :func:`answer`: the course's answer in as many words as the evidence allows.

The forest plot of these rows is :func:`convlora_lite.plots.evidence.forest_plot`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.reports.paper_tables import paper_gains
from convlora_lite.reports.readings import failed_runs, run_baselines, selection_metric, without_runs
from convlora_lite.reports.seed_statistics import CONFIDENCE, POWER, POWER_AND_LEVEL, paired_comparison, paired_power
from convlora_lite.reports.shown_numbers import shown
from convlora_lite.training.metrics import METRIC_DIRECTIONS

#: the columns of :func:`conv_lora_evidence` and :func:`experiment_evidence`: one row per comparison, every number
#: x100 and signed so that positive favours the first arm (Conv-LoRA).
COLUMNS = ["label", "dataset", "metric", "n", "failed", "gain", "low", "high", "sd", "mdd", "paper_gain", "seen"]


def _row(label: str, dataset: str, metric: str, n: int, failed: int, gain: float, low: float, high: float, sd: float,
         mdd, paper_gain) -> dict:
    """One row of :data:`COLUMNS`; ``seen``: a paper-sized gain reaches the minimum detectable difference."""
    seen = None if paper_gain is None or mdd is None else bool(shown(abs(paper_gain)) >= shown(mdd))
    return dict(label=label, dataset=dataset, metric=metric, n=n, failed=failed, gain=gain, low=low, high=high, sd=sd,
                mdd=mdd, paper_gain=paper_gain, seen=seen)


def conv_lora_evidence(task_runs: Sequence[pd.DataFrame], baselines: Sequence[dict | None] | None = None
                       ) -> pd.DataFrame:
    """Per task (``task_runs``: one :func:`~convlora_lite.reports.results_tables.collect_runs` table each; the
    ``baselines``: split -> :func:`~convlora_lite.reports.readings.trivial_baseline` per task, else scored from the
    runs' data), Conv-LoRA minus LoRA on the task's selection metric and first test split, on the seeds both trained
    without failing: columns :data:`COLUMNS`, ``label`` the task's name, ``failed`` the LoRA and Conv-LoRA runs left
    out, ``gain`` the mean of the per-seed differences, ``low``/``high`` its :data:`~.seed_statistics.CONFIDENCE`
    interval, ``sd`` the differences' sd, ``mdd`` the smallest difference these seeds detect
    (:data:`~.seed_statistics.POWER_AND_LEVEL`), ``paper_gain`` the paper's (the mean over its test sets), all
    signed so that positive favours Conv-LoRA (BER: LoRA minus Conv-LoRA). Tasks without both methods have no row."""
    rows = []
    for i, runs in enumerate(task_runs):
        runs = runs[runs["method"].isin(["lora", "conv_lora"])]
        if set(runs["method"]) != {"lora", "conv_lora"}:
            continue
        dataset = runs["dataset"].iloc[0]
        metric = selection_metric(runs, get_dataset_spec(dataset))
        split = runs.loc[runs["metric"] == metric, "split"].iloc[0]
        floors = baselines[i] if baselines is not None else run_baselines(runs["run_dir"].iloc[0])
        failed = failed_runs(runs, floors, metric) if floors else runs.iloc[:0]
        kept = without_runs(runs, failed)
        kept = kept[(kept["metric"] == metric) & (kept["split"] == split)]
        sign = 1 if METRIC_DIRECTIONS.get(metric, "max") == "max" else -1
        table = paired_comparison(kept, "conv_lora", "lora")
        gains = paper_gains(dataset, split, metric)
        paper = float(np.mean(list(gains.values()))) if gains else None
        if table.empty or table["n"].iloc[0] == 0:
            rows.append(_row(dataset.removeprefix("synth_"), dataset, metric, 0, len(failed), np.nan, np.nan, np.nan,
                             np.nan, None, paper))
            continue
        r = table.iloc[0]
        low, high = sorted((sign * r.low, sign * r.high))
        rows.append(_row(dataset.removeprefix("synth_"), dataset, metric, int(r.n), len(failed), sign * r["mean"], low,
                         high, r.sd, r.mdd, paper))
    return pd.DataFrame(rows, columns=COLUMNS)


def experiment_evidence(result: dict) -> pd.DataFrame:
    """The local-prior experiment's paired differences (:func:`~.local_prior_analysis.analyse`'s ``differences``) as
    rows of :data:`COLUMNS`: ``label`` "prior <task>: d" (Conv-LoRA - LoRA) or "... e" (Conv-LoRA - one scale-1
    expert), test IoU; ``paper_gain`` none (the tasks are the experiment's own)."""
    rows = []
    for r in result["differences"].itertuples():
        failed = int(((result["failed"]["task"] == r.task) & result["failed"]["arm"].isin([r.arm, r.baseline])).sum())
        rows.append(_row(f"prior {r.task}: {r.difference} ({r.arm} - {r.baseline})", f"synth_prior_{r.task}", "iou",
                         int(r.n), failed, r.mean, r.low, r.high, r.sd, r.mdd, None))
    return pd.DataFrame(rows, columns=COLUMNS)


def _side(row) -> str:
    """Where a row's interval lies: above 0, below 0, or across it (no interval with fewer than 2 seeds)."""
    if row.n < 2:
        return "no interval"
    return "above 0" if shown(row.low) > 0 else "below 0" if shown(row.high) < 0 else "includes 0"


def evidence_reading(evidence: pd.DataFrame) -> list[str]:
    """One sentence per row of :func:`conv_lora_evidence` or :func:`experiment_evidence`: the mean difference with its
    interval and seeds, the smallest difference they detect, and the paper's gain with whether one that size could
    have been seen."""
    lines = []
    for row in evidence.itertuples():
        failed = f"; {row.failed} failed run(s) left out" if row.failed else ""
        if row.n == 0:
            lines.append(f"{row.label} ({row.metric}): no seed where both trained{failed}.")
            continue
        if row.n == 1:
            lines.append(f"{row.label} ({row.metric}): {shown(row.gain):+.1f} on one seed, no interval{failed}.")
            continue
        head = (f"{row.label} ({row.metric}): {shown(row.gain):+.1f} ({100 * CONFIDENCE:.0f} % CI "
                f"{shown(row.low):+.1f} to {shown(row.high):+.1f}, {_side(row)}; {row.n} paired seeds, sd "
                f"{row.sd:.1f}{failed}); these seeds detect {row.mdd:.1f} points or more")
        if row.paper_gain is None or pd.isna(row.paper_gain):
            lines.append(head + ".")
            continue
        could = "could" if row.seen else "could not"
        lines.append(f"{head}, so the paper's gain of {row.paper_gain:+.1f} {could} have been seen.")
    return lines


def seeds_needed(difference: float, sd: float, power: float = POWER, most: int = 1000) -> int | None:
    """The fewest paired seeds whose t-test detects a true mean ``difference`` with probability ``power`` when the
    per-seed differences have standard deviation ``sd`` (:func:`~.seed_statistics.paired_power`); ``None`` beyond
    ``most``."""
    for n in range(2, most + 1):
        if paired_power(abs(difference), sd, n) >= power:
            return n
    return None


def _conclusion(counts: dict, tasks: int, seen: int, h1: str | None) -> str:
    """The last sentence of :func:`answer`, from the interval counts over ``tasks``, the tasks where a paper-sized
    gain could have been seen and the experiment's H1 verdict."""
    if h1 == "supported" and counts["above 0"]:
        return "So, on this micro SAM, Conv-LoRA's local prior helps: the controlled experiment and the tasks agree."
    if h1 == "supported":
        return ("So the local prior helps where only texture defines the object, but no course task shows a gain "
                "its seeds can resolve.")
    found = (f"Conv-LoRA is ahead with an interval above 0 on {counts['above 0']} task(s), " if counts["above 0"] else
             "no task shows Conv-LoRA ahead with an interval above 0, ")
    found += (f"behind on {counts['below 0']}" if counts["below 0"] else "none shows it behind")
    if seen < tasks:
        return (f"So, on this micro SAM: {found}, and the controlled experiment did not detect the local prior "
                f"(H1 {h1}). On {tasks - seen} of {tasks} task(s) a difference the size of the paper's is below what "
                "these seeds detect: 'no gain here' is not evidence against the paper, whose question stays open until "
                "it is rerun at paper scale with enough seeds.")
    return (f"So, on this micro SAM: {found}, and the controlled experiment did not detect the local prior (H1 {h1}), "
            "although these seeds could have seen a paper-sized gain: here the local prior does not help.")


def answer(evidence: pd.DataFrame, experiment: pd.DataFrame, verdicts: dict, encoder: tuple | None) -> list[str]:
    """The course's answer, every clause computed: on how many tasks Conv-LoRA's interval lies above, below or
    across 0 and on how many a paper-sized gain could have been seen (``evidence``: :func:`conv_lora_evidence`);
    the preregistered experiment's verdicts (``verdicts``: "H1", "H2" of :func:`~.local_prior_analysis.analyse`)
    with its texture difference (``experiment``: :func:`experiment_evidence`); and the one robust effect
    (``encoder``: :func:`~.adapter_readings.encoder_gain_range` against decoder-only)."""
    read = evidence[evidence["n"] > 1]
    sides = read.apply(_side, axis=1) if len(read) else pd.Series(dtype=str)
    counts = {side: int((sides == side).sum()) for side in ("above 0", "below 0", "includes 0")}
    seen = int(read["seen"].fillna(False).astype(bool).sum())
    lines = [f"Does Conv-LoRA beat LoRA on the course's tasks? Over {len(read)} task(s) with at least 2 paired seeds, "
             f"its interval lies above 0 on {counts['above 0']}, below 0 on {counts['below 0']} and includes 0 on "
             f"{counts['includes 0']}; a gain the size of the paper's could have been seen on {seen} of them "
             f"({POWER_AND_LEVEL})."]
    texture = experiment[experiment["label"].str.startswith("prior texture: d")]
    if len(texture):
        t = texture.iloc[0]
        lines.append(f"Does its local prior help where only local texture defines the object? The preregistered "
                     f"experiment: H1 (local prior) {verdicts['H1']}, H2 (multi-scale mixture) {verdicts['H2']}; "
                     f"Conv-LoRA - LoRA {shown(t.gain):+.1f} ({shown(t.low):+.1f} to {shown(t.high):+.1f}) over "
                     f"{t.n} seeds, which detect {t.mdd:.1f} points.")
    if encoder is not None:
        pairs, clear, smallest, largest = encoder
        head = ("What is robust: adapting the encoder at all." if clear == pairs else
                "Adapting the encoder at all, here:")
        lines.append(f"{head} LoRA and Conv-LoRA beat decoder-only with an interval above 0 in {clear} of {pairs} "
                     f"task comparisons (gains {smallest:+.1f} to {largest:+.1f}).")
    lines.append(_conclusion(counts, len(read), seen, verdicts.get("H1")))
    return lines


def detectability_table(evidence: pd.DataFrame) -> pd.DataFrame:
    """What each comparison of ``evidence`` could detect, one row each: paired seeds, the sd of the per-seed
    differences, the minimum detectable difference (:data:`~.seed_statistics.POWER_AND_LEVEL`), the paper's gain,
    whether a gain that size could have been seen, and how many paired seeds would see it at this spread
    (:func:`seeds_needed`; "-" where there is no paper gain or no spread)."""
    def needed(row):
        if row.paper_gain is None or pd.isna(row.paper_gain) or not row.sd > 0 or row.paper_gain == 0:
            return "-"
        n = seeds_needed(row.paper_gain, row.sd)
        return "over 1000" if n is None else str(n)

    return pd.DataFrame({
        "comparison": evidence["label"], "metric": evidence["metric"], "paired seeds": evidence["n"],
        "sd of differences": evidence["sd"].round(1),
        "MDD": [None if m is None or pd.isna(m) else round(m, 1) for m in evidence["mdd"]],
        "paper's gain": [None if g is None or pd.isna(g) else round(g, 1) for g in evidence["paper_gain"]],
        "paper-sized gain seen?": evidence["seen"].map({True: "yes", False: "no"}).fillna("-"),
        "seeds to see it": [needed(row) for row in evidence.itertuples()],
    }).set_index("comparison")


def adapter_evidence(task_runs: Sequence[pd.DataFrame], baselines: dict[str, dict]) -> pd.DataFrame:
    """:func:`~convlora_lite.reports.adapter_readings.adapter_effects` over every run of ``task_runs`` (tables of
    :func:`~convlora_lite.reports.results_tables.collect_runs`; a run in two tables counts once), per dataset with its
    ``baselines`` (dataset -> split -> :func:`~convlora_lite.reports.readings.trivial_baseline`), one table."""
    from convlora_lite.reports.adapter_readings import adapter_effects

    runs = pd.concat(task_runs, ignore_index=True).drop_duplicates(["run_dir", "split", "metric"])
    return pd.concat([adapter_effects(part, baselines.get(dataset)) for dataset, part in runs.groupby("dataset",
                                                                                                      sort=False)],
                     ignore_index=True)
