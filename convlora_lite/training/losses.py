"""Training losses of the official Conv-LoRA recipe.

* :func:`structure_loss`: PraNet's weighted BCE + weighted IoU (polyp, CAMO, ISIC, leaf, road).
* :func:`balanced_bce`: class-balanced BCE-with-logits (SBU shadows).
* :class:`SetCriterion`: Mask2Former-style set loss with Hungarian matching (Trans10K-v2).

``LOSSES`` maps the names used by ``DatasetSpec.loss`` to these; :func:`get_loss` looks one up.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from convlora_lite.errors import ConfigError, DataError


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision (AMP) tensors as float32; float32/float64 unchanged."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _as_nchw(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """(B, H, W) -> (B, 1, H, W); (B, 1, H, W) unchanged."""
    if tensor.dim() == 3:
        return tensor.unsqueeze(1)
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        return tensor
    raise DataError(f"{name} must have shape (B, 1, H, W) or (B, H, W), got {tuple(tensor.shape)}.")


def _binary_pair(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, mask = _as_nchw(logits, "logits"), _as_nchw(mask, "mask")
    if logits.shape != mask.shape:
        raise DataError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ in shape.")
    logits = _at_least_float32(logits)  # fp16/bf16 logits under AMP: compute the loss in float32
    return logits, mask.to(logits.dtype)


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.avg_pool2d(x, size, stride=1, padding=size // 2)`` (zero padding counted) of x (B, C, H, W),
    as two one-dimensional passes: the same average, in 2 x size instead of size^2 additions per
    pixel (on a CPU the 31 x 31 pool took a third of a micro-SAM training step;
    ``benchmarks/README.md``)."""
    rows = F.avg_pool2d(x, (size, 1), stride=1, padding=(size // 2, 0))
    return F.avg_pool2d(rows, (1, size), stride=1, padding=(0, size // 2))


def structure_loss(logits: torch.Tensor, mask: torch.Tensor, legacy_reduce: bool = False) -> torch.Tensor:
    """PraNet's structure loss: weighted BCE + weighted IoU, averaged over the batch.

    Args:
        logits: (B, 1, H, W) (or (B, H, W)) raw scores.
        mask: same shape, float in [0, 1].
        legacy_reduce: reproduce the official code's reduction quirk (see below).

    Returns:
        0-dim tensor.

    With w = 1 + 5 |avgpool31(mask) - mask| (kernel 31, stride 1, padding 15, zero padding counted
    in the average), per image b:
        wbce_b = sum(w * bce(logits, mask)) / sum(w)            (bce per pixel, with logits)
        wiou_b = 1 - (sum(w * p * mask) + 1) / (sum(w * (p + mask)) - sum(w * p * mask) + 1),
                 p = sigmoid(logits)
    and the loss is mean_b(wbce_b + wiou_b).

    ``legacy_reduce=True``: the official code (PraNet, AutoGluon ``StructureLoss``) calls
    ``F.binary_cross_entropy_with_logits(logits, mask, reduce="none")``. ``reduce`` is the
    deprecated boolean argument, and the non-empty string ``"none"`` is truthy, so the call
    returns the plain mean BCE over every pixel of the batch (a scalar), not a per-pixel map.
    ``sum(w * scalar) / sum(w)`` then gives that scalar back: the BCE term is unweighted and
    batch-averaged, i.e. loss = mean_all_pixels(bce) + mean_b(wiou_b). The weighted IoU term is
    the same in both modes. The default (False) is the weighted BCE PraNet describes.
    """
    logits, mask = _binary_pair(logits, mask)
    weight = 1 + 5 * torch.abs(box_mean(mask, 31) - mask)
    if legacy_reduce:
        wbce = F.binary_cross_entropy_with_logits(logits, mask).expand(logits.shape[0])
    else:
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        wbce = (weight * bce).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))
    probs = torch.sigmoid(logits)
    inter = (probs * mask * weight).sum(dim=(1, 2, 3))
    union = ((probs + mask) * weight).sum(dim=(1, 2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def balanced_bce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE-with-logits over the whole batch (the official SBU loss).

    Args:
        logits: (B, 1, H, W) (or (B, H, W)) raw scores.
        mask: same shape, float in {0, 1}.

    Returns:
        0-dim tensor: (P / (P + N)) * mean(BCEWithLogits(logits, mask, pos_weight = N / P)),
        P = #positive pixels + 1e-10, N = #negative pixels, counted over the whole batch. That is
        the mean over pixels of the per-pixel BCE weighted N / (P + N) on positive pixels and
        P / (P + N) on negative ones: the rarer class weighs more.

    As in the official code (AutoGluon ``BBCEWithLogitLoss``), P carries eps = 1e-10, so a batch
    without positives gives pos_weight = N / 1e-10 (harmless: it multiplies only positive-target
    terms, which are absent) and an overall factor 1e-10 / (1e-10 + N): a finite loss of about 0,
    never NaN. A batch without negatives gives pos_weight 0 and a loss of 0. Such batches teach
    nothing.
    """
    logits, mask = _binary_pair(logits, mask)
    num_pos = mask.sum() + 1e-10
    num_neg = (1.0 - mask).sum()
    bce = F.binary_cross_entropy_with_logits(logits, mask, pos_weight=num_neg / num_pos)
    return num_pos / (num_pos + num_neg) * bce


def _pairwise_mask_costs(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid BCE and dice between every query mask and every target mask, on valid pixels.

    Args:
        logits: (Q, P) mask logits over P pixels; targets: (T, P) in {0, 1}; valid: (P,) float.

    Returns:
        bce (Q, T): mean BCE over valid pixels; dice (Q, T): 1 - (2 p.t + 1) / (sum p + sum t + 1).
    """
    targets, valid = targets.to(logits.dtype), valid.to(logits.dtype)
    num_valid = valid.sum().clamp(min=1)
    targets = targets * valid
    loss_if_pos = F.softplus(-logits) * valid
    loss_if_neg = F.softplus(logits) * valid
    bce = (loss_if_pos @ targets.T + loss_if_neg @ (valid - targets).T) / num_valid
    probs = torch.sigmoid(logits) * valid
    dice = 1 - (2 * probs @ targets.T + 1) / (probs.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)
    return bce, dice


class SetCriterion(nn.Module):
    """Mask2Former-style set loss for the multi-class head, against a semantic label map.

    Targets: for each image, one binary mask per class id present in its label map (background
    counts as a class, as in Trans10K-v2); pixels equal to ``ignore_index`` belong to no mask and
    are left out of every mask cost and loss. Each image's queries are matched one-to-one to its
    targets by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on
    ``cost_class * (-softmax(class)[target class]) + cost_mask * BCE + cost_dice * dice``.

    Loss = ``class_weight * CE + mask_weight * BCE + dice_weight * dice``:

    * CE: cross-entropy of every query's K+1 class logits; matched queries target their class,
      the others the last ("no object") class; class weights 1, no-object ``no_object_weight``;
      weighted mean as ``nn.CrossEntropyLoss(weight=...)``.
    * BCE, dice: over matched (query, target) pairs, BCE averaged over the valid pixels of the
      pair, both summed over pairs and divided by the number of target masks in the batch
      (at least 1), as Mask2Former normalises.

    Where we differ from the official code (AutoGluon uses Hugging Face's ``Mask2FormerLoss``):

    * Mask2Former scores masks on 12,544 sampled points (uniform for the matcher, uncertainty
      importance sampling for the loss). We use every pixel at ``loss_size`` (default: the mask
      logits' own resolution); pass e.g. ``loss_size=256`` to downsample the logits (bilinear)
      and labels (nearest) to SAM's low-res mask size first. Labels of another size than the
      logits are nearest-resized to the logits' size.
    * Hugging Face's loss returns the three terms unweighted and AutoGluon's training step adds
      them as they are, so the official run trains on CE + BCE + dice (its configured 10/5/5
      weights are not applied). Our defaults are 1 / 5 / 5; pass ``class_weight=1.0,
      mask_weight=1.0, dice_weight=1.0`` for the official sum. Matcher costs 1 / 5 / 5 are
      the official ones.

    Args of ``forward``:
        mask_logits: (B, Q, H, W); class_logits: (B, Q, K + 1); labels: (B, H', W') long.

    Returns:
        a 0-dim loss. After each call ``last_indices`` holds the matching (list over the batch of
        (query indices, target class ids), LongTensors) and ``last_terms`` the three unweighted
        terms as floats.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        cost_class: float = 1.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        class_weight: float = 1.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        ignore_index: int = 255,
        loss_size: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1 (background included), got {num_classes}.")
        self.num_classes = num_classes
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.ignore_index = ignore_index
        self.loss_size = loss_size
        self.no_object_weight = no_object_weight
        self.last_indices: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.last_terms: dict[str, float] = {}

    def _check_and_resize(self, mask_logits, class_logits, labels):
        if mask_logits.dim() != 4 or class_logits.dim() != 3 or labels.dim() != 3:
            raise DataError(
                "SetCriterion expects mask_logits (B, Q, H, W), class_logits (B, Q, K+1) and labels (B, H, W); "
                f"got {tuple(mask_logits.shape)}, {tuple(class_logits.shape)}, {tuple(labels.shape)}."
            )
        if class_logits.shape[:2] != mask_logits.shape[:2] or labels.shape[0] != mask_logits.shape[0]:
            raise DataError("mask_logits, class_logits and labels disagree on batch size or number of queries.")
        if class_logits.shape[-1] != self.num_classes + 1:
            raise DataError(
                f"class_logits has {class_logits.shape[-1]} scores per query; expected num_classes + 1 = "
                f"{self.num_classes + 1} (the last one is 'no object')."
            )
        if labels.dtype.is_floating_point:
            raise DataError(f"labels must be integer class ids, got dtype {labels.dtype}.")
        size = tuple(mask_logits.shape[-2:]) if self.loss_size is None else (self.loss_size, self.loss_size)
        if tuple(mask_logits.shape[-2:]) != size:
            mask_logits = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        if tuple(labels.shape[-2:]) != size:
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        bad = (labels != self.ignore_index) & ((labels < 0) | (labels >= self.num_classes))
        if bad.any():
            raise DataError(
                f"labels hold class ids {labels[bad].unique()[:8].tolist()} outside 0..{self.num_classes - 1} "
                f"(and not the ignore value {self.ignore_index}); check num_classes."
            )
        return mask_logits, labels

    def _targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For one (H, W) label map: class ids (T,), masks (T, H*W) float, valid (H*W,) float."""
        flat = labels.flatten()
        valid = flat != self.ignore_index
        classes = flat[valid].unique()
        masks = (flat[None, :] == classes[:, None]).float()
        return classes, masks, valid.float()

    @torch.no_grad()
    def _match(self, logits, class_logits, classes, masks, valid) -> tuple[torch.Tensor, torch.Tensor]:
        """Hungarian matching for one image; returns (query indices, target indices)."""
        cost_class = -_at_least_float32(class_logits).softmax(-1)[:, classes]
        cost_bce, cost_dice = _pairwise_mask_costs(_at_least_float32(logits), masks, valid)
        cost = self.cost_class * cost_class + self.cost_mask * cost_bce + self.cost_dice * cost_dice
        cost = torch.nan_to_num(cost, nan=0.0, posinf=1e10, neginf=-1e10).cpu().numpy().astype(np.float64)
        rows, cols = linear_sum_assignment(cost)
        return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)

    def forward(self, mask_logits: torch.Tensor, class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """mask_logits (B, Q, H, W), class_logits (B, Q, K + 1), labels (B, H', W') -> 0-dim loss."""
        mask_logits, labels = self._check_and_resize(mask_logits, class_logits, labels)
        batch, num_queries = mask_logits.shape[:2]
        flat_logits = mask_logits.flatten(2)
        target_classes = torch.full(
            (batch, num_queries), self.num_classes, dtype=torch.long, device=class_logits.device
        )
        bce_sum = dice_sum = _at_least_float32(flat_logits).new_zeros(())
        num_masks = 0
        self.last_indices = []
        for b in range(batch):
            classes, masks, valid = self._targets(labels[b])
            num_masks += len(classes)
            if len(classes) == 0:
                empty = torch.zeros(0, dtype=torch.long)
                self.last_indices.append((empty, empty))
                continue
            queries, targets = self._match(flat_logits[b], class_logits[b], classes, masks, valid)
            self.last_indices.append((queries, classes[targets].cpu()))
            queries, targets = queries.to(classes.device), targets.to(classes.device)
            target_classes[b, queries] = classes[targets]
            pair_logits, pair_masks = flat_logits[b, queries], masks[targets]
            num_valid = valid.sum().clamp(min=1)
            bce = F.binary_cross_entropy_with_logits(pair_logits, pair_masks.to(pair_logits.dtype), reduction="none")
            bce_sum = bce_sum + ((bce * valid).sum(-1) / num_valid).sum()
            probs = torch.sigmoid(pair_logits) * valid
            dice = 1 - (2 * (probs * pair_masks).sum(-1) + 1) / (probs.sum(-1) + pair_masks.sum(-1) + 1)
            dice_sum = dice_sum + dice.sum()
        num_masks = max(num_masks, 1)
        class_logits = _at_least_float32(class_logits)
        class_weights = torch.ones(self.num_classes + 1, dtype=class_logits.dtype, device=class_logits.device)
        class_weights[-1] = self.no_object_weight
        ce = F.cross_entropy(class_logits.transpose(1, 2), target_classes, weight=class_weights)
        loss_mask, loss_dice = bce_sum / num_masks, dice_sum / num_masks
        self.last_terms = {"ce": ce.item(), "mask": loss_mask.item(), "dice": loss_dice.item()}
        return self.class_weight * ce + self.mask_weight * loss_mask + self.dice_weight * loss_dice


#: ``DatasetSpec.loss`` name -> loss. "structure" and "balanced_bce" are functions
#: ``(logits (B,1,H,W), mask (B,1,H,W)) -> 0-dim``; "set" is the :class:`SetCriterion` class.
LOSSES = {
    "structure": structure_loss,
    "balanced_bce": balanced_bce,
    "set": SetCriterion,
}


def get_loss(name: str, **options):
    """The loss called ``name``, ready to call.

    "structure" / "balanced_bce": the function (with ``options`` bound, e.g. ``legacy_reduce``).
    "set": ``SetCriterion(**options)``; ``num_classes`` (background included) is required.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}.")
    loss = LOSSES[name]
    if isinstance(loss, type):
        if "num_classes" not in options:
            raise ConfigError(f"loss {name!r} needs num_classes (the number of classes, background included).")
        return loss(**options)
    return functools.partial(loss, **options) if options else loss


def best_of_masks(loss: Callable, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SAM's rule for an ambiguous prompt: per image, only the output mask with the lowest loss counts.

    Args:
        loss: a binary loss ``loss(logits (1,1,S,S), mask (1,1,S,S)) -> 0-dim``, applied per image
            and mask.
        logits: ``(B, M, S, S)``, M candidate masks per image.
        mask: ``(B, S, S)`` targets.

    Returns:
        0-dim: the mean over images of the smallest of the M losses.
    """
    mask = mask.unsqueeze(1).to(logits.dtype)
    per_mask = torch.stack([torch.stack([loss(logits[b:b + 1, m:m + 1], mask[b:b + 1]) for m in range(logits.shape[1])])
                            for b in range(logits.shape[0])])  # (B, M)
    return per_mask.min(1).values.mean()


def task_loss(spec, num_classes: int) -> Callable:
    """``loss(output: SegOutput, mask) -> 0-dim`` for the dataset's ``loss`` (aux loss not included).

    Binary: ``loss(logits (B,1,S,S), mask (B,1,S,S))``, or, for an output with SAM's three masks
    (``multimask_logits``, point prompts), :func:`best_of_masks`; multi-class: the set loss on
    ``mask_logits``/``class_logits`` against the ``(B,S,S)`` label map.
    """
    if spec.task == "binary":
        loss = get_loss(spec.loss)

        def binary(out, mask):
            if out.multimask_logits is not None:
                return best_of_masks(loss, out.multimask_logits, mask)
            return loss(out.logits, mask.unsqueeze(1).to(out.logits.dtype))

        return binary
    loss = get_loss(spec.loss, num_classes=num_classes)
    return lambda out, mask: loss(out.mask_logits, out.class_logits, mask)
