"""Segmentation metrics, scored as the Conv-LoRA paper scores them.

Two accumulators, both with ``update(...)`` / ``compute()`` / ``reset()``:

* :class:`BinarySegMetrics` scores sigmoid probabilities against binary masks, per image, then
  averages over images: the saliency measures S_alpha, E_phi, weighted F_beta and MAE through
  ``pysodmetrics`` (``import py_sod_metrics``), and IoU, Dice and BER at threshold 0.5.
* :class:`MultiClassSegMetrics` accumulates one confusion matrix over the whole set (Trans10K-v2):
  pixel accuracy, mIoU and the per-class IoU.

Every value is a fraction in [0, 1]; tables multiply by 100. :data:`METRIC_DIRECTIONS` says which
way is better for each key (``"max"`` or ``"min"``, the vocabulary of ``DatasetSpec.select_mode``).

How the official evaluation feeds pysodmetrics (AutoGluon MultiModal,
``optim/metrics/semantic_seg_metrics.py``, classes ``SM``/``EM``/``FM``/``MAE``): per image it passes
``pred = probs * 255`` (float32, not rounded to uint8) and ``gt = mask * 255`` into the package's
default preprocessing, which binarises ``gt > 128`` and turns ``pred`` back into ``pred / 255``
min-max normalised over the image (left as is when the image is constant, MATLAB's
``mapminmax(im2double(...))``). We do exactly that, in float32 like the official tensors. E_phi
is the package's 256-threshold curve (prediction truncated to uint8 levels) averaged over
thresholds; the package averages the curves over images first, and since both averages are plain
means this equals "per-image curve mean, then mean over images". Weighted F_beta: the package's
``beta`` argument is beta^2 and defaults to 1, so we pass 0.3 (AutoGluon's own copy of the class
defaults to 0.3).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import py_sod_metrics
import torch

from convlora_lite.data.registry import IGNORE_INDEX
from convlora_lite.errors import DataError

#: "max" where higher is better, "min" where lower is better.
METRIC_DIRECTIONS = {
    "s_alpha": "max",
    "e_phi": "max",
    "f_beta_w": "max",
    "mae": "min",
    "iou": "max",
    "dice": "max",
    "ber": "min",
    "acc": "max",
    "miou": "max",
}

#: the threshold that binarises probabilities for IoU, Dice and BER.
THRESHOLD = 0.5

#: beta^2 of the weighted F-measure (pysodmetrics' ``beta`` argument).
F_BETA_SQUARED = 0.3


def _to_numpy(array, name: str) -> np.ndarray:
    """A torch tensor (any device, any float/int/bool dtype) or array-like as a NumPy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu")
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        return array.numpy()
    try:
        return np.asarray(array)
    except Exception as exc:  # noqa: BLE001 - reported as a user-facing error below
        raise DataError(f"{name} must be a torch tensor or a NumPy array, got {type(array).__name__}.") from exc


def _as_image_batch(array: np.ndarray, name: str) -> np.ndarray:
    """(B, H, W) or (B, 1, H, W) -> (B, H, W)."""
    if array.ndim == 4 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 3:
        return array
    raise DataError(
        f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(array.shape)}; "
        "add a batch dimension for a single image (e.g. x[None])."
    )


def _binary_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """IoU, Dice and BER of one binarised prediction against one mask, both (H, W) bool.

    Empty prediction and empty mask: IoU = Dice = 1 (nothing to find, nothing found). An empty
    mask with a non-empty prediction (or the reverse) scores 0.
    BER = 1 - (TPR + TNR) / 2. When the mask has only one class (no foreground, or no
    background), the rate of the absent class is undefined; BER is then the error rate on the
    class that is present (1 - TNR, or 1 - TPR).
    """
    tp = np.count_nonzero(pred & gt)
    fp = np.count_nonzero(pred & ~gt)
    fn = np.count_nonzero(~pred & gt)
    tn = pred.size - tp - fp - fn
    union = tp + fp + fn
    iou = tp / union if union else 1.0
    dice = 2 * tp / (2 * tp + fp + fn) if union else 1.0
    rates = []
    if tp + fn:
        rates.append(tp / (tp + fn))
    if tn + fp:
        rates.append(tn / (tn + fp))
    ber = 1.0 - float(np.mean(rates))
    return float(iou), float(dice), ber


class BinarySegMetrics:
    """Per-image binary segmentation metrics, averaged over images.

    ``update(probs, masks)``: ``probs`` (B, H, W) or (B, 1, H, W) sigmoid probabilities in [0, 1];
    ``masks`` the same shape with values in {0, 1}; torch tensors or NumPy arrays.
    ``compute()`` -> ``dict(s_alpha, e_phi, f_beta_w, mae, iou, dice, ber)``, floats in [0, 1]:

    * ``s_alpha``: S-measure, alpha = 0.5.
    * ``e_phi``: mean E-measure (mean over the 256-threshold curve of each image).
    * ``f_beta_w``: weighted F-measure, beta^2 = 0.3.
    * ``mae``: mean absolute error of the min-max normalised prediction.
    * ``iou``, ``dice``: at ``probs > 0.5`` (strictly greater, as torchmetrics' binary threshold
      used by the official evaluation); an image whose mask and prediction are both empty scores 1.
      Differs from the official torchmetrics ``JaccardIndex``, which scores that case 0.
    * ``ber``: balanced error rate 1 - (TPR + TNR) / 2 at ``probs > 0.5``; when the mask holds one
      class only, the error rate on that class. The official evaluation binarises at 125/255
      (``x * 255 > 125``) and lets torchmetrics score a class that is absent from the mask but
      predicted as a recall of 0; we use 0.5 and the definition above.

    See the module docstring for how predictions reach pysodmetrics.
    """

    KEYS = ("s_alpha", "e_phi", "f_beta_w", "mae", "iou", "dice", "ber")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._smeasure = py_sod_metrics.Smeasure(alpha=0.5)
        self._emeasure = py_sod_metrics.Emeasure()
        self._wfmeasure = py_sod_metrics.WeightedFmeasure(beta=F_BETA_SQUARED)
        self._mae = py_sod_metrics.MAE()
        self._iou: list[float] = []
        self._dice: list[float] = []
        self._ber: list[float] = []

    @property
    def num_images(self) -> int:
        """How many images have been added since the last reset."""
        return len(self._iou)

    def update(self, probs, masks) -> None:
        """Add a batch: ``probs`` and ``masks`` of shape (B, H, W) or (B, 1, H, W)."""
        probs = _as_image_batch(_to_numpy(probs, "probs"), "probs")
        masks = _as_image_batch(_to_numpy(masks, "masks"), "masks")
        if probs.shape != masks.shape:
            raise DataError(
                f"probs {tuple(probs.shape)} and masks {tuple(masks.shape)} differ in shape; "
                "resize the prediction to the mask (or the mask to the prediction, nearest) first."
            )
        if probs.dtype == bool or not np.issubdtype(probs.dtype, np.number):
            raise DataError(f"probs must be floating-point probabilities, got dtype {probs.dtype}.")
        if probs.size and (np.isnan(probs).any() or probs.min() < 0 or probs.max() > 1):
            raise DataError(
                "probs must be probabilities in [0, 1] (found values outside or NaN); "
                "apply torch.sigmoid to the logits first."
            )
        if masks.size and not np.isin(masks, (0, 1)).all():
            raise DataError(
                "masks must hold only 0 and 1; found "
                f"{np.unique(masks)[:8].tolist()}... binarise them (e.g. mask > 127 for 0-255 PNGs)."
            )
        probs = probs.astype(np.float32)
        masks = masks.astype(bool)
        for prob, mask in zip(probs, masks):
            pred_255 = prob * np.float32(255)
            gt_255 = mask.astype(np.uint8) * np.uint8(255)
            for measure in (self._smeasure, self._emeasure, self._wfmeasure, self._mae):
                measure.step(pred=pred_255, gt=gt_255)
            iou, dice, ber = _binary_scores(prob > THRESHOLD, mask)
            self._iou.append(iou)
            self._dice.append(dice)
            self._ber.append(ber)

    def compute(self) -> dict[str, float]:
        """The metrics over every image added since the last reset."""
        if not self.num_images:
            raise DataError("BinarySegMetrics.compute() called before any update(); add predictions first.")
        return {
            "s_alpha": float(self._smeasure.get_results()["sm"]),
            "e_phi": float(self._emeasure.get_results()["em"]["curve"].mean()),
            "f_beta_w": float(self._wfmeasure.get_results()["wfm"]),
            "mae": float(self._mae.get_results()["mae"]),
            "iou": float(np.mean(self._iou)),
            "dice": float(np.mean(self._dice)),
            "ber": float(np.mean(self._ber)),
        }


class MultiClassSegMetrics:
    """Pixel accuracy and IoU from one confusion matrix accumulated over the whole set.

    ``update(pred_labels, targets)``: integer label maps (B, H, W), torch or NumPy; ``targets``
    pixels equal to ``ignore_index`` are left out. K = ``num_classes`` counts background as a class.
    ``compute()`` -> ``dict(acc, miou, iou_per_class)``:

    * ``acc``: correctly labelled pixels / non-ignored pixels.
    * ``iou_per_class``: ``{class name: intersection / union}``; a class absent from both the
      predictions and the targets of the whole set has no IoU and gets NaN.
    * ``miou``: the mean over the classes that have an IoU (background included). The official
      Trans2Seg/AutoGluon score divides by union + eps and so counts such a class as 0; on the
      Trans10K-v2 test set every class occurs, so both agree there.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 1:
            raise DataError(f"num_classes must be at least 1, got {num_classes}.")
        if 0 <= ignore_index < num_classes:
            raise DataError(f"ignore_index {ignore_index} is a class id (num_classes={num_classes}); pick another.")
        if class_names is None:
            class_names = [f"class_{i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise DataError(f"{len(class_names)} class names given for {num_classes} classes.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        #: confusion[t, p] = number of pixels of target class t predicted as p.
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_images = 0

    def update(self, pred_labels, targets) -> None:
        """Add a batch of predicted and target label maps, both (B, H, W) integers."""
        pred = _to_numpy(pred_labels, "pred_labels")
        target = _to_numpy(targets, "targets")
        for name, array in (("pred_labels", pred), ("targets", target)):
            if array.ndim != 3:
                raise DataError(f"{name} must have shape (B, H, W), got {tuple(array.shape)}.")
            if not np.issubdtype(array.dtype, np.integer):
                raise DataError(f"{name} must hold integer class ids, got dtype {array.dtype}; take argmax first.")
        if pred.shape != target.shape:
            raise DataError(f"pred_labels {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape.")
        batch = pred.shape[0]
        valid = target != self.ignore_index
        target, pred = target[valid].astype(np.int64), pred[valid].astype(np.int64)
        bad_target = (target < 0) | (target >= self.num_classes)
        if bad_target.any():
            raise DataError(
                f"targets hold class ids {np.unique(target[bad_target])[:8].tolist()} outside "
                f"0..{self.num_classes - 1} (and not the ignore value {self.ignore_index}); check num_classes."
            )
        bad_pred = (pred < 0) | (pred >= self.num_classes)
        if bad_pred.any():
            raise DataError(
                f"pred_labels hold class ids {np.unique(pred[bad_pred])[:8].tolist()} outside "
                f"0..{self.num_classes - 1}; check num_classes."
            )
        counts = np.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)
        self.num_images += batch

    def compute(self) -> dict:
        """``acc`` and ``miou`` (floats), ``iou_per_class`` ({name: float, NaN for absent classes})."""
        total = self.confusion.sum()
        if not total:
            raise DataError(
                "MultiClassSegMetrics.compute(): no labelled pixel was added (all ignored, or no update())."
            )
        intersection = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, intersection / union, np.nan)
        return {
            "acc": float(intersection.sum() / total),
            "miou": float(np.nanmean(iou)),
            "iou_per_class": {name: float(value) for name, value in zip(self.class_names, iou)},
        }


def task_metrics(spec, num_classes: int):
    """The metrics object of a task: :class:`BinarySegMetrics`, or :class:`MultiClassSegMetrics`
    over ``num_classes`` classes named by ``spec.classes`` (255 ignored)."""
    if spec.task == "binary":
        return BinarySegMetrics()
    return MultiClassSegMetrics(num_classes, ignore_index=IGNORE_INDEX, class_names=tuple(spec.classes))
