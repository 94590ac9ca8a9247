"""Readings: the sentences a notebook states about its own results, computed from run directories.

A notebook never types a claim about its numbers; it prints what these functions return:

* :func:`failed_runs` and :func:`failed_readings`: the runs that never left the trivial baseline (their selection
  metric no better than predicting background everywhere, :func:`trivial_baseline`), named and counted; every
  reading below leaves them out of its means and differences;
* :func:`method_readings`: per test metric, which method is ahead and whether the gap is larger
  than the spread over seeds (one seed: no conclusion);
* :func:`~convlora_lite.reports.paired_readings.conv_lora_readings`: per test metric, Conv-LoRA minus LoRA seed by
  seed, with its confidence interval, the seeds' spread, the smallest difference these seeds detect and the paper's
  gain on the task (``docs/metrics.md``, "Seed statistics"), and whether a paper-sized gain could have been seen;
  :func:`conv_lora_verdict` and :func:`~convlora_lite.reports.paired_readings.detectability_reading` sum them up;
* :func:`baseline_readings`: whether each method beat the task's trivial baseline;
* :func:`convergence_readings`: whether the selection metric was still improving at the last epoch;
* :func:`zero_shot_readings`: the zero-shot promptable SAM against the filled box and the fine-tuned runs;
* :func:`budget_reading`: how many parameters a method trains here and on SAM ViT-H, and the decoder's share;
* :func:`routing_reading`: how Conv-LoRA's routing is spread over the experts.

Every difference a reading prints is the difference of the rounded numbers it shows (:mod:`.shown_numbers`):
96.1 against 96.1 is a tie, 82.3 against 84.5 is -2.2. :func:`task_readings` (a domain notebook's reading),
:func:`takeaways` (its closing lines) and :func:`index_readings` (the main job's ``index.md``) put them together.

Whether Conv-LoRA's local prior helps the micro SAM offline was tested by a preregistered experiment;
:data:`CONV_LORA_OFFLINE_NOTE` states what it measured.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from convlora_lite.reports.paired_readings import conv_lora_readings, detectability_reading
from convlora_lite.reports.shown_numbers import better, lower_note, shown
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.metrics import METRIC_DIRECTIONS, task_metrics
from convlora_lite.training.run_data import own_datasets, run_spec
from convlora_lite.training.rundir import RunDir

#: said when Conv-LoRA is not ahead of LoRA on every metric of an offline run (micro SAM on an analog), and
#: only there: it describes the micro SAM, not a ViT-B/H run on real data. Its numbers are those of the
#: preregistered local-prior experiment (``docs/experiments/local_prior.md``, ``benchmarks/local_prior_cpu.md``);
#: a test recomputes them from :func:`~convlora_lite.analysis.local_prior.recorded`.
CONV_LORA_OFFLINE_NOTE = (
    "Conv-LoRA does not beat LoRA on every metric here. The project's controlled experiment on this micro SAM "
    "(benchmarks/local_prior_cpu.md, preregistered, 10 seeds) found no local-prior gain either: where only local "
    "texture defines the object, Conv-LoRA minus LoRA was +0.5 test IoU points (95 % interval -1.2 to +2.2; those "
    "seeds detect 2.4), and one scale-1 expert did as well as the eight-scale mixture (-1.0, interval -2.2 to +0.1).")

#: said where the all-background floor could not be scored, so that a failed run cannot be told from a result.
NO_FLOOR = ("The all-background floor could not be scored here (own data, or data no longer where the runs recorded "
            "it): runs that never left it are not flagged.")


def selection_metric(runs: pd.DataFrame, spec=None) -> str:
    """The metric a failed run is judged on: the task's selection metric (``spec``'s, else the spec its first run
    recorded) where ``runs`` hold it, else their first metric."""
    spec = spec or run_spec(runs["run_dir"].iloc[0])
    return spec.select_metric if spec.select_metric in set(runs["metric"]) else runs["metric"].iloc[0]


def failed_runs(runs: pd.DataFrame, baselines: dict, metric: str) -> pd.DataFrame:
    """The runs of one task's :func:`~convlora_lite.reports.results_tables.collect_runs` table that never left the
    trivial baseline: on no test split of ``baselines`` (split -> :func:`trivial_baseline`) does their ``metric``,
    as shown, beat predicting background everywhere. One row per such run (its first split): the table's columns,
    ``value`` x100, and ``floor``, the all-background score x100."""
    rows = runs[(runs["metric"] == metric) & runs["split"].map(lambda split: metric in baselines.get(split, {}))]
    rows = rows.assign(value=rows["value"] * 100, floor=[100 * float(baselines[s][metric]) for s in rows["split"]])
    beat = [better(metric, shown(value), shown(floor)) for value, floor in zip(rows["value"], rows["floor"])]
    return rows[~rows["run_dir"].isin(set(rows["run_dir"][beat]))].drop_duplicates("run_dir")


def without_runs(runs: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    """``runs`` less the runs of ``failed`` (:func:`failed_runs`)."""
    return runs[~runs["run_dir"].isin(set(failed["run_dir"]))]


def failed_readings(failed: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """Per method with runs in ``failed`` (:func:`failed_runs` of ``runs``): how many of its seeds never left the
    trivial baseline, which ones with their score and the floor, and that they are left out."""
    sentences = []
    for (dataset, method), part in failed.groupby(["dataset", "method"], sort=False):
        total = runs.loc[(runs["dataset"] == dataset) & (runs["method"] == method), "seed"].nunique()
        seeds = ", ".join(f"seed {row.seed}: {row.split} {row.metric} {row.value:.1f}" for row in part.itertuples())
        left = "it is" if len(part) == 1 else "they are"
        sentences.append(f"{dataset}: {len(part)} of {total} {method} seed{'s' if total > 1 else ''} never left the "
                         f"trivial baseline ({seeds}; predicting background everywhere scores "
                         f"{part['floor'].iloc[0]:.1f}): {left} left out of the means and paired differences that "
                         "follow.")
    return sentences


def method_readings(runs: pd.DataFrame) -> list[str]:
    """One sentence per (dataset, split, metric) of :func:`~convlora_lite.reports.results_tables.collect_runs`
    output (failed runs left out beforehand: :func:`without_runs`): the leading method, its margin over the next
    one (x100, between the means as shown), and whether that margin exceeds the larger of the two standard
    deviations over seeds."""
    sentences = []
    for (dataset, split, metric), rows in runs.groupby(["dataset", "split", "metric"], sort=False):
        stats = rows.groupby("method")["value"].agg(["mean", "std", "count"]).mul([100, 100, 1])
        order = sorted(stats.index, key=lambda m: stats.at[m, "mean"],
                       reverse=METRIC_DIRECTIONS.get(metric, "max") == "max")
        head = f"{dataset}/{split} {metric}{lower_note(metric)}:"
        if len(order) < 2:
            sentences.append(f"{head} only {order[0]} was run ({stats.at[order[0], 'mean']:.1f}).")
            continue
        first, second = order[0], order[1]
        a, b = shown(stats.at[first, "mean"]), shown(stats.at[second, "mean"])
        seeds = int(stats.loc[[first, second], "count"].min())
        if a == b:
            sentences.append(f"{head} {first} and {second} tie at {a:.1f}.")
            continue
        gap = shown(abs(a - b))
        line = f"{head} {first} {a:.1f} ahead of {second} {b:.1f} by {gap:.1f}"
        if seeds < 2:
            sentences.append(f"{line}; one seed: no conclusion.")
            continue
        spread = shown(np.nanmax(stats.loc[[first, second], "std"]))
        verdict = "larger than" if gap > spread else "within"
        sentences.append(f"{line}, {verdict} the spread over seeds (std up to {spread:.1f}, {seeds} seeds).")
    return sentences


def conv_lora_verdict(runs: pd.DataFrame, offline: bool = False) -> str | None:
    """Whether Conv-LoRA's mean over its seeds is ahead of LoRA's, as shown, on every test metric, on some, or on none
    (``None`` when the runs do not hold both; failed runs left out beforehand); where it is not ahead everywhere on an
    ``offline`` run, :data:`CONV_LORA_OFFLINE_NOTE` follows."""
    if not {"lora", "conv_lora"} <= set(runs["method"]):
        return None
    means = (runs.groupby(["dataset", "split", "metric", "method"])["value"].mean() * 100).map(shown).unstack("method")
    means = means.dropna(subset=["lora", "conv_lora"])
    tied = list(means["conv_lora"] == means["lora"])
    ahead = [not tie and better(metric, conv, lora)
             for (_, _, metric), conv, lora, tie in zip(means.index, means["conv_lora"], means["lora"], tied)]
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


def run_baselines(run_dir) -> dict | None:
    """split -> :func:`trivial_baseline` of every test split of the run in ``run_dir``, on the images it was scored on
    (the first ``max_eval_batches`` batches where its config capped them), read where the run recorded its data;
    ``None`` for a run on its own data or whose data is no longer installed there."""
    from convlora_lite.data.datasets import build_dataset
    from convlora_lite.data.install import is_installed

    config, spec = TrainConfig.of_run(run_dir), run_spec(run_dir)
    cap = None if config.max_eval_batches is None else config.max_eval_batches * config.batch_size
    if config.data_dir:
        if not Path(config.data_dir).exists():
            return None
        datasets = own_datasets(spec, config, RunDir(run_dir))
        return {split: trivial_baseline(datasets[split], spec, max_items=cap) for split in spec.test_splits}
    if not is_installed(spec, config.data_root):
        return None
    return {split: trivial_baseline(build_dataset(spec, split, config.data_root, config.image_size, train=False),
                                    spec, max_items=cap) for split in spec.test_splits}


def _missed(part: pd.DataFrame, floor: float, metric: str) -> list[str]:
    """The methods of ``part`` (one split and metric) whose mean over seeds, as shown, does not beat ``floor``."""
    means = part.groupby("method", sort=False)["value"].mean() * 100
    return [method for method, value in means.items() if not better(metric, shown(value), shown(floor))]


def baseline_readings(runs: pd.DataFrame, baseline: dict, split: str) -> list[str]:
    """Per metric of ``split``: the all-background score and which methods beat it (means over every seed, failed
    ones included, as shown)."""
    sentences = []
    rows = runs[runs["split"] == split]
    for metric, part in rows.groupby("metric", sort=False):
        if metric not in baseline:
            continue
        floor = 100 * float(baseline[metric])
        missed = _missed(part, floor, metric)
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
    relation = "level with" if abs(diff) < 0.5 else "better than" if better(metric, box, filled) else "worse than"
    lines = [f"zero-shot {split} {metric}: one box {box:.1f}, one point {point:.1f}; one box is {relation} the "
             f"filled box alone ({filled:.1f}, difference {diff:+.1f})."]
    means = runs[(runs["split"] == split) & (runs["metric"] == metric)].groupby("method")["value"].mean() * 100
    if len(means):
        best = max(means.index, key=lambda m: means[m] if METRIC_DIRECTIONS.get(metric, "max") == "max"
                   else -means[m])
        verdict = "beats" if better(metric, means[best], box) else "does not beat"
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


def floor_check(runs: pd.DataFrame, baselines: dict | None, spec=None) -> tuple[pd.DataFrame, list[str]]:
    """The failed runs of one task's ``runs`` (:func:`failed_runs` on its :func:`selection_metric`) and the sentences
    that name them; with no ``baselines`` (``None``: they could not be scored), none and :data:`NO_FLOOR`."""
    if baselines is None:
        return runs.iloc[:0], [f"{runs['dataset'].iloc[0]}: {NO_FLOOR}"]
    failed = failed_runs(runs, baselines, selection_metric(runs, spec))
    return failed, failed_readings(failed, runs)


def task_readings(runs: pd.DataFrame, run_dirs, spec, baselines: dict, zero_shot: pd.DataFrame | None = None,
                  offline: bool = False) -> list[str]:
    """Everything a task's runs show, in the order a domain notebook prints it: the runs that never left the
    all-background floor (``baselines``: split -> :func:`trivial_baseline`), named and left out of what follows;
    which method is ahead and by how much against the seed spread (:func:`method_readings`); Conv-LoRA against
    LoRA seed by seed with what these seeds can detect
    (:func:`~convlora_lite.reports.paired_readings.conv_lora_readings`) and in sum (:func:`conv_lora_verdict`); the
    floor of each test split; whether training had converged; and the zero-shot SAM (``zero_shot``) when it was
    measured. ``offline``: the runs are the micro SAM's on an analog, which :data:`CONV_LORA_OFFLINE_NOTE` is about.
    Used in notebooks 03-08."""
    failed, lines = floor_check(runs, baselines, spec)
    kept = without_runs(runs, failed)
    lines += method_readings(kept) + conv_lora_readings(kept)
    verdict = conv_lora_verdict(kept, offline)
    lines += [verdict] if verdict else []
    for split in spec.test_splits:
        lines += baseline_readings(runs, baselines[split], split)
    lines += convergence_readings(run_dirs, spec)
    if zero_shot is not None:
        lines += zero_shot_readings(zero_shot, kept, spec.test_splits[0])
    return lines


def _task_takeaways(runs: pd.DataFrame, baselines: dict | None) -> list[str]:
    """One task's takeaways (:func:`takeaways`)."""
    dataset = runs["dataset"].iloc[0]
    failed, named = floor_check(runs, baselines)
    kept = without_runs(runs, failed)
    unbeaten, lines = [], []
    for (split, metric), part in runs.groupby(["split", "metric"], sort=False):
        if metric not in (baselines or {}).get(split, {}):
            continue
        floor = 100 * float(baselines[split][metric])
        missed = _missed(part, floor, metric)
        if not missed:
            continue
        everyone = len(missed) == part["method"].nunique()
        who = "no method beats" if everyone else f"{', '.join(missed)} {'does' if len(missed) == 1 else 'do'} NOT beat"
        lines.append(f"{dataset}/{split} {metric}: {who} predicting background everywhere ({floor:.1f}).")
        unbeaten += [(split, metric)] if everyone else []
    first = (runs["split"].iloc[0], runs["metric"].iloc[0])
    leader = method_readings(kept)[:1] if len(kept) and first not in unbeaten else []
    verdict, detect = conv_lora_verdict(kept), detectability_reading(kept)
    summary = [f"{dataset}: {verdict}" + (f" {detect}" if detect else "")] if verdict else []
    return named + leader + lines + summary


def takeaways(model_name: str, task_runs, baselines=None) -> list[str]:
    """A notebook's closing lines: the trainable budget (:func:`budget_reading`), then per task (``task_runs``:
    one :func:`~convlora_lite.reports.results_tables.collect_runs` table each; ``baselines``: one
    split -> :func:`trivial_baseline` dict each, else scored from the runs' data by :func:`run_baselines`) the runs
    that never left the all-background floor, the leader on its first test metric (none where no method beats that
    floor there), every metric where a method does not beat the floor, and Conv-LoRA against LoRA with whether a
    paper-sized gain could have been seen (without the offline note, which the task's reading printed).
    Used in notebooks 00 and 03-08."""
    lines = [budget_reading(model_name)]
    for i, runs in enumerate(task_runs):
        lines += _task_takeaways(runs, run_baselines(runs["run_dir"].iloc[0]) if baselines is None else baselines[i])
    return lines


def index_readings(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """What the main job's ``index.md`` states under one task's results table (``runs``: its
    :func:`~convlora_lite.reports.results_tables.collect_runs` rows): the runs to table (every run but those that
    never left the all-background floor, scored by :func:`run_baselines`) and the sentences: the failed runs named,
    then Conv-LoRA against LoRA seed by seed and in sum, as in :func:`task_readings`."""
    failed, lines = floor_check(runs, run_baselines(runs["run_dir"].iloc[0]))
    kept = without_runs(runs, failed)
    verdict = conv_lora_verdict(kept)
    return kept, lines + conv_lora_readings(kept) + ([verdict] if verdict else [])
