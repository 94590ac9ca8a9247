"""Readings: the sentences a notebook states about its own results, computed from run directories.

A notebook never types a claim about its numbers; it prints what these functions return:

* :func:`method_readings`: per test metric, which method is ahead and whether the gap is larger
  than the spread over seeds (one seed: no conclusion);
* :func:`baseline_readings`: whether each method beat the task's trivial baseline (predicting
  background everywhere, scored with the task's own metrics: :func:`trivial_baseline`);
* :func:`convergence_readings`: whether the selection metric was still improving at the last epoch;
* :func:`zero_shot_readings`: the zero-shot promptable SAM against the filled box and the fine-tuned runs;
* :func:`budget_reading`: how many parameters a method trains here and on SAM ViT-H, and the decoder's share;
* :func:`routing_reading`: how Conv-LoRA's routing is spread over the experts.

Why Conv-LoRA may not beat LoRA offline is measured in ``benchmarks/transfer_micro_sam_cpu.md``;
:data:`CONV_LORA_OFFLINE_NOTE` points there.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from convlora_lite.training.config import TrainConfig
from convlora_lite.training.metrics import METRIC_DIRECTIONS, task_metrics
from convlora_lite.training.rundir import RunDir

#: said when Conv-LoRA is not ahead of LoRA on every metric of an offline run (micro SAM on an analog), and
#: only there: it describes the micro SAM, not a ViT-B/H run on real data.
CONV_LORA_OFFLINE_NOTE = (
    "Conv-LoRA does not beat LoRA on every metric here. What the project measured about why (micro SAM: 6 "
    "blocks, 16x16 tokens and 6x6 windows, so the experts' larger scales have little room; a short schedule on 64 "
    "images, where LoRA starts as the identity and the experts and their gate start random) is in "
    "benchmarks/transfer_micro_sam_cpu.md (3 seeds of every analog, at 8 epochs).")


#: two means (x100) closer than this print the same to one decimal: a tie, not a lead.
TIE = 0.05


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if METRIC_DIRECTIONS.get(metric, "max") == "max" else a < b


def method_readings(runs: pd.DataFrame) -> list[str]:
    """One sentence per (dataset, split, metric) of :func:`~convlora_lite.reports.results_tables.collect_runs`
    output: the leading method, its margin over the next one (x100), and whether that margin exceeds
    the larger of the two standard deviations over seeds."""
    sentences = []
    for (dataset, split, metric), rows in runs.groupby(["dataset", "split", "metric"], sort=False):
        stats = rows.groupby("method")["value"].agg(["mean", "std", "count"]).mul([100, 100, 1])
        order = sorted(stats.index, key=lambda m: stats.at[m, "mean"],
                       reverse=METRIC_DIRECTIONS.get(metric, "max") == "max")
        lower = " (lower is better)" if METRIC_DIRECTIONS.get(metric) == "min" else ""
        head = f"{dataset}/{split} {metric}{lower}:"
        if len(order) < 2:
            sentences.append(f"{head} only {order[0]} was run ({stats.at[order[0], 'mean']:.1f}).")
            continue
        first, second = order[0], order[1]
        gap = abs(stats.at[first, "mean"] - stats.at[second, "mean"])
        seeds = int(stats.loc[[first, second], "count"].min())
        if gap < TIE:
            sentences.append(f"{head} {first} and {second} tie at {stats.at[first, 'mean']:.1f}.")
            continue
        line = (f"{head} {first} {stats.at[first, 'mean']:.1f} ahead of {second} "
                f"{stats.at[second, 'mean']:.1f} by {gap:.1f}")
        if seeds < 2:
            sentences.append(f"{line}; one seed: no conclusion.")
            continue
        spread = float(np.nanmax(stats.loc[[first, second], "std"]))
        verdict = "larger than" if gap > spread else "within"
        sentences.append(f"{line}, {verdict} the spread over seeds (std up to {spread:.1f}, {seeds} seeds).")
    return sentences


def conv_lora_verdict(runs: pd.DataFrame, offline: bool = False) -> str | None:
    """Whether Conv-LoRA's mean is ahead of LoRA's on every test metric, on some, or on none
    (``None`` when the runs do not hold both); where it is not ahead everywhere on an ``offline`` run,
    :data:`CONV_LORA_OFFLINE_NOTE` follows."""
    if not {"lora", "conv_lora"} <= set(runs["method"]):
        return None
    means = runs.groupby(["dataset", "split", "metric", "method"])["value"].mean().unstack("method")
    tied = [abs(row["conv_lora"] - row["lora"]) * 100 < TIE for _, row in means.iterrows()]
    ahead = [not tie and _better(metric, row["conv_lora"], row["lora"])
             for ((_, _, metric), row), tie in zip(means.iterrows(), tied)]
    seeds = runs[runs["method"].isin(["lora", "conv_lora"])].groupby("method")["seed"].nunique().min()
    caveat = " One seed: no conclusion." if seeds < 2 else ""
    metrics = f"{len(ahead)} test metric{'s' if len(ahead) > 1 else ''}"
    if all(tied):
        return f"Conv-LoRA and LoRA tie on {'all ' if len(ahead) > 1 else 'the '}{metrics}."
    if all(ahead):
        return f"Conv-LoRA's mean is ahead of LoRA's on {'all ' if len(ahead) > 1 else 'the '}{metrics}.{caveat}"
    ties = f" (tied on {sum(tied)})" if any(tied) else ""
    note = f" {CONV_LORA_OFFLINE_NOTE}" if offline else ""
    return f"Conv-LoRA's mean is ahead of LoRA's on {sum(ahead)} of {metrics}{ties}.{caveat}{note}"


@torch.no_grad()
def trivial_baseline(dataset, spec, max_items: int | None = None) -> dict:
    """The task's metrics of predicting background everywhere on ``dataset`` (binary: probability 0
    for every pixel; multi-class: class 0 everywhere): the floor a trained model must clear."""
    metrics = task_metrics(spec, len(spec.classes) if spec.task == "multiclass" else 1)
    count = len(dataset) if max_items is None else min(len(dataset), max_items)
    for i in range(count):
        mask = dataset[i]["mask"][None]
        if spec.task == "binary":
            metrics.update(torch.zeros(mask.shape, dtype=torch.float32), mask)
        else:
            metrics.update(torch.zeros(mask.shape, dtype=torch.long), mask.long())
    return metrics.compute()


def baseline_readings(runs: pd.DataFrame, baseline: dict, split: str) -> list[str]:
    """Per metric of ``split``: the all-background score and which methods beat it (means over seeds)."""
    sentences = []
    rows = runs[runs["split"] == split]
    for metric, part in rows.groupby("metric", sort=False):
        if metric not in baseline:
            continue
        floor = 100 * baseline[metric]
        means = part.groupby("method")["value"].mean() * 100
        beat = [m for m, v in means.items() if _better(metric, v, floor)]
        missed = [m for m in means.index if m not in beat]
        verdict = ("every method beats it" if not missed else
                   f"{', '.join(missed)} {'does' if len(missed) == 1 else 'do'} NOT beat it")
        sentences.append(f"{split} {metric}: predicting background everywhere scores {floor:.1f}; {verdict}.")
    return sentences


def convergence_readings(run_dirs, spec) -> list[str]:
    """Per method: the best epoch of the selection metric in each of its runs, and whether training was
    still improving at the last epoch (one sentence per method; a single run names its seed)."""
    by_method: dict[str, list] = {}
    for run in map(RunDir, run_dirs):
        values = run.read_history()[f"val_{spec.select_metric}"].to_numpy()
        best = int(np.argmax(values) if spec.select_mode == "max" else np.argmin(values))
        config = TrainConfig.of_run(run.path)
        by_method.setdefault(config.method, []).append((config.seed, best + 1, len(values)))
    sentences = []
    for method, runs in by_method.items():
        still = [seed for seed, best, epochs in runs if best == epochs > 1]
        if len(runs) == 1:
            (seed, best, epochs) = runs[0]
            name = f"{method} (seed {seed})"
            sentences.append(f"{name}: val {spec.select_metric} was still improving at the last epoch ({epochs}): a "
                             "longer schedule would likely score higher." if still else
                             f"{name}: best val {spec.select_metric} at epoch {best} of {epochs}.")
            continue
        line = (f"{method} ({len(runs)} seeds): best val {spec.select_metric} at epochs "
                f"{', '.join(str(best) for _, best, _ in runs)} of {runs[0][2]}")
        sentences.append(line + (f"; still improving at the last epoch in {len(still)} of {len(runs)}: a longer "
                                 "schedule would likely score higher." if still else "."))
    return sentences


def zero_shot_readings(zero_shot: pd.DataFrame, runs: pd.DataFrame, split: str) -> list[str]:
    """For the first metric of :func:`~convlora_lite.analysis.zero_shot.zero_shot_scores`' table: one
    box against the filled box (what needs no model), and the best fine-tuned method (prompt-free,
    mean over seeds) against one box."""
    metric = next(c for c in zero_shot.columns if c != "images")
    box, point = zero_shot.at["one box", metric], zero_shot.at["one point", metric]
    filled = zero_shot.at["filled box (no model)", metric]
    diff = box - filled
    relation = "level with" if abs(diff) < 0.5 else "better than" if _better(metric, box, filled) else "worse than"
    lines = [f"zero-shot {split} {metric}: one box {box:.1f}, one point {point:.1f}; one box is {relation} the "
             f"filled box alone ({filled:.1f}, difference {diff:+.1f})."]
    means = runs[(runs["split"] == split) & (runs["metric"] == metric)].groupby("method")["value"].mean() * 100
    if len(means):
        best = max(means.index, key=lambda m: means[m] if METRIC_DIRECTIONS.get(metric, "max") == "max"
                   else -means[m])
        verdict = "beats" if _better(metric, means[best], box) else "does not beat"
        lines.append(f"fine-tuned without prompts, the best method ({best}, {means[best]:.1f}) {verdict} zero-shot "
                     f"SAM with one box ({box:.1f}).")
    return lines


def routing_reading(usage: pd.DataFrame, collapsed: float = 0.9, trained: bool = True) -> str:
    """How :func:`~convlora_lite.analysis.expert_routing.usage_table` is spread: per layer the share of
    its two most chosen experts; layers where they take more than ``collapsed`` are called collapsed
    (``trained``: the gates were trained with the load-balancing loss, which the sentence then says).
    Used in notebooks 02 and 10."""
    top_two = usage.groupby("block")["fraction"].apply(lambda f: float(np.sort(f.to_numpy())[-2:].sum()))
    used = usage[usage["fraction"] > 0].groupby("block")["expert"].count()
    narrow = [int(b) for b, share in top_two.items() if share > collapsed]
    summary = ", ".join(f"block {b}: {used[b]} expert(s) used, top two {100 * s:.0f} %" for b, s in top_two.items())
    if narrow:
        despite = ", despite the load-balancing loss" if trained else ""
        return (f"Routing collapses onto one or two experts in {len(narrow)} of {len(top_two)} layers "
                f"(blocks {narrow}){despite}. {summary}.")
    return f"Routing is spread over the experts in every layer. {summary}."


def budget_reading(model_name: str, method: str = "conv_lora") -> str:
    """``method``'s trainable parameters on ``model_name`` and on SAM ViT-H (the paper's Ratio: against
    the whole SAM, prompt encoder and full mask decoder included, plus what the method adds; a
    prompt-free model built here holds fewer parameters, so its own count's ratio is higher), with
    the mask decoder's share of the trainable budget (decoder-only trains the decoder alone)."""
    from convlora_lite.analysis.parameter_counts import paper_param_table

    def counts(name):
        (decoder,), (row,) = paper_param_table(name, ["decoder_only"]), paper_param_table(name, [method])
        return row, decoder["trainable"] / row["trainable"]

    here, decoder_share = counts(model_name)
    line = (f"{method} on {model_name}: {here['trainable']:,} of {here['total']:,} parameters train "
            f"({100 * here['ratio']:.2f} %, counted as the paper's table counts: against the whole SAM plus what "
            f"the method adds), {100 * decoder_share:.0f} % of them in the mask decoder")
    if model_name == "vit_h":
        return line + "."
    paper, paper_share = counts("vit_h")
    return (line + f"; on SAM ViT-H: {paper['trainable']:,} ({100 * paper['ratio']:.2f} %), "
            f"{100 * paper_share:.0f} % in the decoder.")


def task_readings(runs: pd.DataFrame, run_dirs, spec, baselines: dict, zero_shot: pd.DataFrame | None = None,
                  offline: bool = False) -> list[str]:
    """Everything a task's runs show, in the order a domain notebook prints it: which method is ahead and by
    how much against the seed spread (:func:`method_readings`), Conv-LoRA against LoRA, the all-background
    floor of each test split (``baselines``: split -> :func:`trivial_baseline`), whether training had
    converged, and the zero-shot SAM (``zero_shot``) when it was measured. ``offline``: the runs are the micro
    SAM's on an analog, which :data:`CONV_LORA_OFFLINE_NOTE` is about. Used in notebooks 03-08."""
    lines = method_readings(runs)
    verdict = conv_lora_verdict(runs, offline)
    lines += [verdict] if verdict else []
    for split in spec.test_splits:
        lines += baseline_readings(runs, baselines[split], split)
    lines += convergence_readings(run_dirs, spec)
    if zero_shot is not None:
        lines += zero_shot_readings(zero_shot, runs, spec.test_splits[0])
    return lines


def takeaways(model_name: str, task_runs) -> list[str]:
    """A notebook's closing lines: the trainable budget (:func:`budget_reading`), then per task (``task_runs``:
    one :func:`~convlora_lite.reports.results_tables.collect_runs` table each) the leader on its first test
    metric and Conv-LoRA against LoRA (without the offline note, which the task's reading printed). Used in
    notebooks 00 and 03-08."""
    lines = [budget_reading(model_name)]
    for runs in task_runs:
        verdict = conv_lora_verdict(runs)
        lines += [method_readings(runs)[0]] + ([verdict] if verdict else [])
    return lines
