"""Readings of the domain notebooks (00, 03-07) about their figures and baselines, computed, never typed:

* :func:`oracle_reading`: the fine-tuned, prompt-free models against zero-shot SAM given oracle prompts (drawn
  from the test masks) and against the filled boxes (the localisation alone);
* :func:`error_reading`: where the wrong pixels of an error map are (misses or false positives, at the border
  or away from it), with the false-positive rate that the balanced error rate counts;
* :func:`against_baselines`: for a domain notebook's task, the encoder adapters (LoRA, Conv-LoRA) against decoder-only,
  which trains the mask decoder alone (:mod:`.adapter_readings`: does adapting the image encoder help at all?), and
  the oracle reading, as one printed paragraph;
* :func:`grid_reading`: how much of each method's mask outline runs along the token grid (blocky masks),
  against the ground truth's.

Differences are taken between the rounded numbers the sentence prints, so that they add up on the page.
The protocol of the zero-shot baseline is in ``docs/recipe.md`` ("Zero-shot SAM").
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.reports.adapter_readings import adapter_effect_reading, adapter_effects
from convlora_lite.reports.shown_numbers import shown
from convlora_lite.training.metrics import METRIC_DIRECTIONS


def _gain(metric: str, value: float, reference: float) -> float:
    """How much better ``value`` is than ``reference`` on ``metric`` (rounded to 0.1 first; positive = better)."""
    diff = shown(value) - shown(reference)
    return diff if METRIC_DIRECTIONS.get(metric, "max") == "max" else -diff


def oracle_reading(zero_shot: pd.DataFrame, runs: pd.DataFrame, split: str) -> list[str]:
    """What the gap between the fine-tuned models and zero-shot SAM means, on the first metric of
    :func:`~convlora_lite.analysis.zero_shot.zero_shot_scores`' table: its prompts come from the test mask (an
    oracle that says where each object is), the filled boxes score that localisation alone, and the best
    fine-tuned method (mean over seeds) had no prompt. Empty when no run scored ``split``. Used in notebook 00."""
    metric = zero_shot.columns[0]
    box, filled = zero_shot.at["one box", metric], zero_shot.at["filled box (no model)", metric]
    objects = zero_shot["objects"].iloc[0] if "objects" in zero_shot else 1.0
    means = runs[(runs["split"] == split) & (runs["metric"] == metric)].groupby("method")["value"].mean() * 100
    if not len(means):
        return []
    best = max(means.index, key=lambda m: _gain(metric, means[m], 0.0))
    tuned = f"{best} ({means[best]:.1f})"
    lines = [f"The zero-shot prompts are an oracle: drawn from each test mask ({objects:.1f} object(s) per image, one "
             f"box or point each), they tell SAM where the objects are; the filled boxes alone, no model, score "
             f"{filled:.1f} {metric}. The fine-tuned models get no prompt and must find the objects themselves."]
    if _gain(metric, means[best], filled) <= 0:
        above_box = (f" It does beat SAM given the oracle boxes ({box:.1f}): here the boxes alone make a better mask "
                     "than SAM makes of them." if _gain(metric, means[best], box) > 0 else "")
        lines.append(f"The best fine-tuned model, {tuned}, does not beat the filled boxes ({filled:.1f}): knowing "
                     "only where the objects are scores as much, so what the fine-tuned model lacks is mostly "
                     f"localisation, which the oracle prompts give away.{above_box}")
    elif _gain(metric, means[best], box) > 0:
        lines.append(f"Without any prompt, the best fine-tuned model, {tuned}, beats SAM given the oracle boxes "
                     f"({box:.1f}, by {_gain(metric, means[best], box):.1f}) and the filled boxes: it learned where "
                     "the objects are and their shape.")
    else:
        lines.append(f"The best fine-tuned model, {tuned}, lies between the filled boxes ({filled:.1f}) and SAM given "
                     f"the oracle boxes ({box:.1f}): it finds more than the boxes' area alone, but SAM told where "
                     "to look still does better.")
    return lines


def against_baselines(task) -> str:
    """What a domain notebook prints after a task's results: the encoder adapters against decoder-only on the task's
    selection metric (:func:`~convlora_lite.reports.adapter_readings.adapter_effect_reading`) and, when the task
    measured zero-shot SAM, :func:`oracle_reading` of its first test split. ``task``: a
    :class:`~convlora_lite.notebook.task.Task` (its ``run_paths``, ``zero_shot``, ``spec`` and ``baseline``).
    Used in notebooks 03, 04, 05, 06 and 07."""
    from convlora_lite.reports.results_tables import collect_runs

    runs = collect_runs(task.run_paths)
    baselines = {split: task.baseline(split) for split in task.spec.test_splits}
    lines = adapter_effect_reading(adapter_effects(runs, baselines, others=("decoder_only",)))
    if task.zero_shot is not None:
        lines += oracle_reading(task.zero_shot, runs, task.spec.test_splits[0])
    if not lines:
        return "No baseline to read here: decoder-only was not trained and zero-shot SAM was not measured."
    return "Against the baselines (computed from the run directories):\n- " + "\n- ".join(lines)


def _border_distance(mask: np.ndarray) -> np.ndarray:
    """Per pixel, its distance (px) to the nearest pixel on the other side of ``mask``'s border."""
    if mask.all() or not mask.any():
        return np.full(mask.shape, np.inf)
    return np.where(mask, ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask))


def error_reading(masks: torch.Tensor, predictions: torch.Tensor, *, multiclass: bool = False, border: int = 3,
                  threshold: float = 0.5) -> str:
    """Where the wrong pixels of ``predictions`` ``(N, S, S)`` against ``masks`` ``(N, S, S)`` are, summed over
    the N images of an error map. Binary (probabilities, foreground above ``threshold``): the shares of misses
    and false positives, the share of wrong pixels within ``border`` px of the true border, and the false
    positives as a share of the background (the rate the balanced error rate counts) and of the foreground's
    area. Multi-class (class ids; 255 ignored): the share of object pixels given their class, and how the wrong
    pixels split into objects labelled background, background labelled as an object and wrong object classes."""
    masks, predictions = masks.numpy(), predictions.float().numpy()
    if multiclass:
        valid = masks != IGNORE_INDEX
        wrong = valid & (predictions != masks)
        objects = valid & (masks > 0)
        kinds = (objects & wrong & (predictions == 0), valid & (masks == 0) & wrong,
                 objects & wrong & (predictions > 0))
        counts = [int(k.sum()) for k in kinds]
        share = [100 * c / max(sum(counts), 1) for c in counts]
        return (f"In these {len(masks)} images, {100 * (objects & ~wrong).sum() / max(objects.sum(), 1):.0f} % of the "
                f"object pixels get their class. Of the wrong pixels, {share[0]:.0f} % are objects labelled "
                f"background, {share[1]:.0f} % background labelled as an object, {share[2]:.0f} % objects given "
                "another class.")
    truth, found = masks > 0.5, predictions > threshold
    fp, fn = found & ~truth, truth & ~found
    near = np.stack([_border_distance(m) <= border for m in truth])
    wrong = int(fp.sum() + fn.sum())
    if not wrong:
        return f"In these {len(masks)} images every pixel is right."
    return (f"In these {len(masks)} images, {100 * fn.sum() / wrong:.0f} % of the wrong pixels are misses (blue) and "
            f"{100 * fp.sum() / wrong:.0f} % false positives (red); {100 * ((fp | fn) & near).sum() / wrong:.0f} % lie "
            f"within {border} px of the true border, the rest farther away (parts or objects missed or added "
            f"whole). The false positives cover {100 * fp.sum() / max((~truth).sum(), 1):.1f} % of the background "
            f"(the rate a balanced error rate counts) and {fp.sum() / max(truth.sum(), 1):.2f} times the "
            "foreground's area.")


def outline_on_grid(prediction: np.ndarray, patch: int, tolerance: int = 1) -> tuple[int, int]:
    """``(near the grid, all)``: the changes between horizontally or vertically adjacent pixels of a bool
    ``(S, S)`` mask (its outline), and how many of them lie within ``tolerance`` px of the ``patch``-px token
    grid (the decoder's upsampling blurs a token's edge by about a pixel). A mask made of whole tokens has all
    of its outline there; an outline that ignores the grid about ``(2 * tolerance + 1) / patch`` of it."""
    across_x = prediction[:, 1:] != prediction[:, :-1]  # between column x and x + 1, i.e. at position x + 1
    across_y = prediction[1:, :] != prediction[:-1, :]
    position = np.arange(1, prediction.shape[1])
    near = np.minimum(position % patch, patch - position % patch) <= tolerance
    return int(across_x[:, near].sum() + across_y[near, :].sum()), int(across_x.sum() + across_y.sum())


def grid_reading(masks: torch.Tensor, predictions_by_method: Mapping[str, torch.Tensor], patch: int,
                 threshold: float = 0.5) -> str:
    """Per method (binary predictions ``(N, S, S)``, foreground above ``threshold``) and for the ground truth
    ``masks`` ``(N, S, S)`` (the reference of a smooth outline): the share of the mask outlines within 1 px of
    the ``patch``-px token grid, over the N images together (:func:`outline_on_grid`). A blocky mask, drawn in
    whole tokens, scores far above the ground truth."""
    shares = []
    for method, maps in {"ground truth": masks.float(), **predictions_by_method}.items():
        on, total = np.sum([outline_on_grid(p, patch) for p in maps.float().numpy() > threshold], axis=0)
        shares.append(f"{method} {100 * on / total:.0f} %" if total else f"{method}: no outline")
    return (f"Share of each mask outline within 1 px of the {patch}-px token grid (a mask drawn in whole tokens: "
            f"100 %): {', '.join(shares)}.")


def prediction_readings(masks: torch.Tensor, predictions_by_method: Mapping[str, torch.Tensor], method: str,
                        classes: Sequence[str], patch: int) -> list[str]:
    """What a domain notebook prints under its prediction grid and error map: :func:`error_reading` of
    ``method`` (the error map's), and for binary tasks :func:`grid_reading` of every method."""
    multiclass = len(classes) > 2
    lines = [f"{method}: " + error_reading(masks, predictions_by_method[method], multiclass=multiclass)]
    if not multiclass:
        lines.append(grid_reading(masks, predictions_by_method, patch))
    return lines
