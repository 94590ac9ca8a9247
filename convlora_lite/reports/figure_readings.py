"""What the figures and measurements of notebooks 01, 02, 08, 09 and 10 show, as sentences computed from the
numbers they draw (the notebooks type no number about their results; ``docs/metrics.md`` defines the metrics).

* :func:`probe_reading` (01): the linear probe's accuracies against chance, one another and their sampling noise;
* :func:`attention_reading` (01): global blocks against uniform attention, the most local windowed block;
* :func:`gate_gradient_reading`, :func:`layer_reading` and :func:`usage_reading` (02, 10): who trains the gate of
  the official top-1, ``multiply_by_gates=False`` MoE, the rebuilt layer, and the routing counts with their n;
* :func:`area_reading` and :func:`disagreement_reading` (09): how much each method marks, and where two differ;
* :func:`region_routing_reading` (10): object against background windows (with n and a permutation test), and
  the centre against the border of the image.

Every difference is taken between the rounded numbers the sentence prints, so a reader's arithmetic agrees.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from convlora_lite.reports.shown_numbers import shown

#: the permutations of :func:`permutation_p_value` (its p-values are exact to about +-0.005 at p = 0.05).
PERMUTATIONS = 10_000


def _pct(value: float) -> float:
    """A fraction as the percentage the readings print (one decimal)."""
    return shown(100 * value)


def wilson_half_width(accuracy: float, n: int, z: float = 1.96) -> float:
    """Half the width of the 95 % Wilson interval of an accuracy measured on ``n`` items, in percentage points."""
    centre_scale = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * centre_scale


def probe_reading(results: dict, n_test: int, sam: str, mae: str, floor: str | None = None) -> list[str]:
    """What 01's linear probe shows: each encoder's test accuracy against chance and its 95 % interval on ``n_test``
    images, whether the paper's ordering (``mae`` above ``sam``) appears, and whether pretraining beats the
    randomly initialised ``floor`` encoder. ``results``: name ->
    :class:`~convlora_lite.analysis.linear_probe.ProbeResult`. Used in notebook 01."""
    chance = _pct(max(r.chance for r in results.values()))
    accuracy = {name: _pct(r.test_accuracy) for name, r in results.items()}
    widest = max(wilson_half_width(r.test_accuracy, n_test) for r in results.values())
    lines = [f"On {n_test} test images one image is {100 / n_test:.1f} points, and a 95 % interval on each accuracy "
             f"spans up to +-{widest:.0f} points: " + ", ".join(f"{n} {a:.1f} %" for n, a in accuracy.items())
             + f" against chance {chance:.1f} %."]
    below = [name for name, a in accuracy.items() if a < chance]
    for name in below:
        lines.append(f"{name} is below chance (by {chance - accuracy[name]:.1f} points) and fits "
                     f"{_pct(results[name].train_accuracy):.1f} % of its own training images: its pooled features "
                     "hold no usable class information here.")
    gap = round(accuracy[mae] - accuracy[sam], 1)
    ordered = "reproduces" if gap > 0 else "does not reproduce"
    compared = (f"{mae} and {sam} tie at {accuracy[mae]:.1f} %" if gap == 0 else
                f"{mae} {accuracy[mae]:.1f} % against {sam} {accuracy[sam]:.1f} %, {gap:+.1f} points "
                f"({abs(gap) * n_test / 100:.0f} test images)")
    lines.append(f"This probe {ordered} the paper's ordering (MAE above SAM): {compared}.")
    if floor is not None and floor in accuracy:
        beaten = [name for name in (sam, mae) if accuracy[name] > accuracy[floor] + widest]
        under = [name for name in (sam, mae) if accuracy[name] <= accuracy[floor]]
        if under:
            verdict = (f"{' and '.join(under)} {'does' if len(under) == 1 else 'do'} not even beat it, so this small "
                       "probe cannot rank the pretrainings")
        elif beaten:
            verdict = f"{' and '.join(beaten)} {'beats' if len(beaten) == 1 else 'beat'} it by more than the interval"
        else:
            verdict = "no pretraining beats it by more than the interval, so this small probe cannot rank them"
        lines.append(f"Random weights ({floor}) score {accuracy[floor]:.1f} %: {verdict}.")
    return lines


def attention_reading(table: pd.DataFrame, uniform_px: float, name: str) -> str:
    """What 01's attention-distance figure shows for one encoder (``table``:
    :func:`~convlora_lite.analysis.attention_distance.attention_distance_table`): each global block's mean distance
    against ``uniform_px`` (uniform attention over the whole grid), and the most local windowed block.
    Used in notebook 01."""
    per_block = table.groupby(["block", "kind"])["distance_px"].mean().round(1)
    window_px = table.groupby("block")["window_px"].first()
    uniform = round(uniform_px, 1)
    parts = []
    kinds = set(per_block.index.get_level_values("kind"))
    if "global" in kinds:
        for (block, _), distance in per_block.xs("global", level="kind", drop_level=False).items():
            share = round(100 * distance / uniform)
            kind = "as spread as uniform attention" if share >= 95 else "more local than uniform attention"
            parts.append(f"global block {block} attends at {distance:.1f} px, {share} % of the {uniform:.1f} px of "
                         f"uniform attention ({kind})")
    if "windowed" in kinds:
        windowed = per_block.xs("windowed", level="kind")
        local = int(windowed.idxmin())
        parts.append(f"the most local block is windowed block {local} ({windowed[local]:.1f} px inside a "
                     f"{window_px[local]} px window)")
    else:
        parts.append("no block of this encoder is windowed")
    return f"{name}: " + "; ".join(parts) + "."


def gate_gradient_reading(task_gradient: torch.Tensor | None, aux_gradient: torch.Tensor,
                          aux_weight: float = 0.01) -> str:
    """02's "who trains the gate?" result in words: ``task_gradient`` is ``W_gate.grad`` after a task loss alone
    (``None`` or zeros: no path), ``aux_gradient`` after the load-balancing loss alone (weight ``aux_weight``).
    Used in notebooks 02 and 10."""
    reached = task_gradient is not None and bool(task_gradient.abs().max() > 0)
    aux = float(aux_gradient.abs().max())
    if reached:
        return (f"The task loss reaches W_gate (max |gradient| {float(task_gradient.abs().max()):.1e}) as well as the "
                f"load-balancing loss ({aux:.1e}): this gate can learn which expert lowers the task loss.")
    return ("The task loss sends no gradient to W_gate: with the official top-1 gate and multiply_by_gates=False the "
            "chosen expert's output is added unscaled, so nothing connects the loss to the gate's logits. Only the "
            f"load-balancing loss (weight {aux_weight:g}, in training) trains the gate (max |gradient| {aux:.1e} "
            "here): it learns to spread windows evenly over the experts, not which scale suits a window.")


def layer_reading(layer, max_difference: float, tolerance: float = 1e-4) -> str:
    """02's rebuild in one sentence: the hand computation's largest difference from ``layer`` (a
    :class:`~convlora_lite.peft.conv_lora.ConvLoRALinear`) against the asserted ``tolerance``, and the parameters its
    mixture adds per layer over plain LoRA (the experts' convolutions, the gate's and the noise's matrices).
    Used in notebook 02."""
    moe = layer.moe
    experts = sum(p.numel() for name, p in moe.named_parameters() if not name.startswith("gate."))
    gate = sum(p.numel() for p in moe.gate.parameters())
    return (f"Rebuilt by hand, the layer equals ConvLoRALinear to {max_difference:.1e} (asserted at {tolerance:g}); "
            f"its mixture adds {experts + gate:,} parameters per layer over LoRA: {moe.num_experts} experts "
            f"({experts:,}) and the gate's two {moe.gate.w_gate.shape[0]} x {moe.num_experts} matrices ({gate:,}).")


def usage_reading(usage: pd.DataFrame) -> str:
    """What 02's and 10's usage heat maps hold, per layer, without a verdict: the routing samples (windows, or
    images in a global block), how many experts they used and the share of the top two. ``usage``:
    :func:`~convlora_lite.analysis.expert_routing.usage_table`. Used in notebooks 02 and 10."""
    parts = []
    for (block, kind), part in usage.groupby(["block", "kind"]):
        top_two = part["count"].nlargest(2).sum() / part["count"].sum()
        parts.append(f"block {block} ({kind}, n = {part['count'].sum()}): {int((part['count'] > 0).sum())} of "
                     f"{len(part)} experts used, top two {_pct(top_two):.0f} %")
    return "; ".join(parts) + "."


def area_reading(masks: torch.Tensor, predictions: dict, threshold: float = 0.5) -> str:
    """How much each method marks (09's grid and error maps): per method, in how many of the N images it predicts
    more foreground than the truth, the mean ratio of predicted to true area, and its mean IoU over the images.
    ``masks`` (N, S, S) in {0, 1}; ``predictions``: method -> (N, S, S) probabilities. Used in notebook 09."""
    truth = masks.flatten(1) > 0.5
    parts = []
    for method, probabilities in predictions.items():
        predicted = probabilities.flatten(1) > threshold
        ratio = predicted.sum(1).float() / truth.sum(1).clamp_min(1).float()
        iou = (predicted & truth).sum(1).float() / (predicted | truth).sum(1).clamp_min(1).float()
        parts.append(f"{method} marks more than the truth in {int((ratio > 1).sum())} of {len(ratio)} images "
                     f"({ratio.mean().item():.2f} x its area on average, IoU {100 * iou.mean().item():.1f})")
    return "Per image: " + "; ".join(parts) + "."


def rim(masks: torch.Tensor, width: int) -> torch.Tensor:
    """(N, S, S) bool: the pixels within ``width`` pixels (chessboard distance) of the boundary of ``masks``
    (N, S, S) in {0, 1}."""
    mask = (masks > 0.5).float()[:, None]
    grown = F.max_pool2d(mask, 2 * width + 1, stride=1, padding=width)
    shrunk = -F.max_pool2d(-mask, 2 * width + 1, stride=1, padding=width)
    return (grown - shrunk)[:, 0] > 0


def disagreement_reading(masks: torch.Tensor, first: torch.Tensor, second: torch.Tensor, names: tuple[str, str],
                         width: int = 3, threshold: float = 0.5) -> str:
    """09's disagreement map in words: the share of pixels two methods' predictions (N, S, S probabilities) differ
    on; the share of those within ``width`` px (:func:`rim`) of the edge of the mask both predict (a band along a
    contour they share, rather than a blob only one predicts) and of the true boundary (``masks`` (N, S, S)); and in
    how many images each method marks pixels the other does not. Used in notebook 09."""
    a, b = first > threshold, second > threshold
    differ = a != b
    share = differ.flatten(1).float().mean(1)
    total = differ.sum().clamp_min(1)
    on_shared = (differ & rim((a & b).float(), width)).sum() / total
    on_truth = (differ & rim(masks, width)).sum() / total
    only_a, only_b = (a & ~b).flatten(1).sum(1), (b & ~a).flatten(1).sum(1)
    more_b = int((only_b > only_a).sum())
    return (f"{names[0]} and {names[1]} differ on {_pct(share.min().item()):.1f}-{_pct(share.max().item()):.1f} % of "
            f"the pixels of each image; {_pct(on_shared.item()):.1f} % of those lie within {width} px of the edge of "
            f"the mask both predict and {_pct(on_truth.item()):.1f} % within {width} px of the true boundary. "
            f"{names[1]} marks more pixels that {names[0]} leaves out than the reverse in {more_b} of {len(share)} "
            f"images ({int(only_b.sum()):,} against {int(only_a.sum()):,} pixels in all).")


def permutation_p_value(first, second, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided permutation p-value of the difference of means of two samples (the labels shuffled
    ``permutations`` times; (count + 1) / (permutations + 1), so never 0)."""
    values = np.concatenate([np.asarray(first, float), np.asarray(second, float)])
    n, observed = len(first), abs(np.mean(first) - np.mean(second))
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(values) for _ in range(permutations)])
    differences = np.abs(shuffled[:, :n].mean(1) - shuffled[:, n:].mean(1))
    return float((np.sum(differences >= observed - 1e-12) + 1) / (permutations + 1))


def _versus(first: pd.Series, second: pd.Series, names: tuple[str, str], permutations: int) -> str:
    """``"<a> 2.0 (n = 4) against <b> 3.3 (n = 140), p = 0.20"`` for two samples of chosen scales."""
    p = permutation_p_value(first, second, permutations)
    return (f"{names[0]} {first.mean():.1f} (n = {len(first)}) against {names[1]} {second.mean():.1f} "
            f"(n = {len(second)}), " + (f"p = {p:.2f}" if p >= 0.01 else "p < 0.01"))


def _by_region(part: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """The chosen scales of one block's windows (:func:`~convlora_lite.analysis.expert_routing.window_table` rows):
    object, background, and the same two among the centre windows (off the border)."""
    centre = part[~part.border]
    return (part[part.region == "object"].scale, part[part.region == "background"].scale,
            centre[centre.region == "object"].scale, centre[centre.region == "background"].scale)


def region_routing_reading(windows: pd.DataFrame, permutations: int = PERMUTATIONS) -> list[str]:
    """10's routing by region, with its n: per windowed block, the mean chosen scale of object and background
    windows with their counts and a permutation p-value, the same among the centre windows only (where the
    object sits, away from a border effect such as a vignette), and border against centre windows. ``windows``:
    :func:`~convlora_lite.analysis.expert_routing.window_table` (one row per window of every image).
    Used in notebook 10."""
    lines = []
    for block, part in windows.groupby("block"):
        obj, back, centre_obj, centre_back = _by_region(part)
        centre = part[~part.border]
        parts = [_versus(obj, back, ("object", "background"), permutations) if len(obj) and len(back)
                 else f"no object window (background n = {len(back)})"]
        if len(centre_obj) and len(centre_back):
            parts.append("centre windows only: " + _versus(centre_obj, centre_back, ("object", "background"),
                                                             permutations))
        if part.border.any() and (~part.border).any():
            parts.append(_versus(part[part.border].scale, centre.scale, ("border", "centre"), permutations))
        lines.append(f"block {block}: " + "; ".join(parts) + ".")
    return lines


def gate_story(task_gradient: torch.Tensor | None, windows: pd.DataFrame, level: float = 0.05,
               permutations: int = PERMUTATIONS) -> str:
    """02's gate result and 10's routing, linked in one paragraph (12): whether the task loss reaches ``W_gate``
    (``task_gradient``, as for :func:`gate_gradient_reading`), then, per windowed block of ``windows``
    (:func:`~convlora_lite.analysis.expert_routing.window_table`), whether object and background windows choose
    different scales at ``level`` (permutation test), and whether that difference holds among the centre windows,
    away from the border. Every number is computed here. Used in notebook 12."""
    reached = task_gradient is not None and bool(task_gradient.abs().max() > 0)
    lines = [("The task loss reaches W_gate, so the gate can learn which scale lowers it." if reached else
              "The task loss sends no gradient to W_gate (02): only the load-balancing loss trains the gate, which "
              "spreads windows over the experts without knowing which scale suits one.")]
    found = []
    for block, part in windows.groupby("block"):
        obj, back, c_obj, c_back = _by_region(part)
        if not len(obj) or not len(back):
            continue
        p = permutation_p_value(obj, back, permutations)
        p_centre = permutation_p_value(c_obj, c_back, permutations) if len(c_obj) and len(c_back) else None
        found.append((block, p, p_centre, len(obj), len(back)))
    if not found:
        return lines[0] + " No image here has both object and background windows, so routing by region is not read."
    differ = [f for f in found if f[1] < level]
    if not differ:
        smallest = min(found, key=lambda f: f[1])
        lines.append(f"Consistently, no windowed block routes object windows differently from background ones at the "
                     f"{level:g} level (smallest p = {smallest[1]:.2f}, block {smallest[0]}, n = {smallest[3]} object "
                     f"and {smallest[4]} background windows).")
    else:
        kept = [f for f in differ if f[2] is not None and f[2] < level]
        named = ", ".join(f"block {b} (p = {p:.3f}; centre only: " + ("no object window" if pc is None else
                          f"p = {pc:.2f}") + ")" for b, p, pc, _, _ in differ)
        lines.append(f"Object and background windows choose different scales in {len(differ)} of {len(found)} blocks "
                     f"({named}); among the centre windows the difference holds in {len(kept)} of them" +
                     ("." if kept else ": it follows the image's border, not the object."))
    if not reached:
        lines.append("So what routing shows is not what the task asked for: Conv-LoRA's gain, where there is one, "
                     "comes from its convolution experts acting as a fixed mixture, not from a learned choice of "
                     "scale.")
    return " ".join(lines)
