"""Metrics against independent references: pysodmetrics called directly, hand-computed
IoU / Dice / BER, a hand confusion matrix."""
import math

import numpy as np
import py_sod_metrics
import pytest
import torch

from convlora_lite.errors import DataError
from convlora_lite.training.metrics import METRIC_DIRECTIONS, BinarySegMetrics, MultiClassSegMetrics


def _random_batch(seed, batch=3, size=24):
    rng = np.random.default_rng(seed)
    masks = np.zeros((batch, size, size), dtype=np.float32)
    for b in range(batch):
        y, x = rng.integers(2, size // 2, size=2)
        masks[b, y : y + size // 3, x : x + size // 4] = 1
    noise = rng.random((batch, size, size)).astype(np.float32)
    probs = np.clip(0.6 * masks + 0.5 * noise, 0, 1).astype(np.float32)
    return probs, masks


def _pysod_reference(probs, masks):
    """pysodmetrics used directly, per image, with the official conversion (x255, gt > 128)."""
    sm, em, wfm, mae = (py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure(),
                        py_sod_metrics.WeightedFmeasure(beta=0.3), py_sod_metrics.MAE())
    per_image_em = []
    for prob, mask in zip(probs, masks):
        pred, gt = prob * np.float32(255), (mask * 255).astype(np.uint8)
        for measure in (sm, em, wfm, mae):
            measure.step(pred=pred, gt=gt)
        per_image_em.append(em.changeable_ems[-1].mean())
    return {
        "s_alpha": sm.get_results()["sm"],
        "e_phi_per_image_mean": float(np.mean(per_image_em)),
        "f_beta_w": wfm.get_results()["wfm"],
        "mae": mae.get_results()["mae"],
    }


def test_saliency_measures_match_pysodmetrics():
    probs, masks = _random_batch(0)
    metrics = BinarySegMetrics()
    metrics.update(torch.from_numpy(probs)[:, None], torch.from_numpy(masks)[:, None])
    result = metrics.compute()
    reference = _pysod_reference(probs, masks)
    assert result["s_alpha"] == pytest.approx(reference["s_alpha"], abs=1e-12)
    assert result["e_phi"] == pytest.approx(reference["e_phi_per_image_mean"], abs=1e-12)
    assert result["f_beta_w"] == pytest.approx(reference["f_beta_w"], abs=1e-12)
    assert result["mae"] == pytest.approx(reference["mae"], abs=1e-12)
    assert set(result) == set(BinarySegMetrics.KEYS)
    assert all(0 <= value <= 1 for value in result.values())


def test_weighted_f_uses_beta_squared_0_3_not_package_default():
    probs, masks = _random_batch(1, batch=1)
    metrics = BinarySegMetrics()
    metrics.update(probs, masks)
    default = py_sod_metrics.WeightedFmeasure()  # beta^2 = 1
    default.step(pred=probs[0] * np.float32(255), gt=(masks[0] * 255).astype(np.uint8))
    assert metrics.compute()["f_beta_w"] != pytest.approx(default.get_results()["wfm"], abs=1e-6)


def test_mae_is_of_min_max_normalised_prediction():
    mask = np.array([[[0, 1], [1, 0]]], dtype=np.float32)
    probs = np.array([[[0.2, 0.6], [0.4, 0.2]]], dtype=np.float32)  # min-max -> [0, 1, .5, 0]
    metrics = BinarySegMetrics()
    metrics.update(probs, mask)
    assert metrics.compute()["mae"] == pytest.approx((0 + 0 + 0.5 + 0) / 4, abs=1e-6)


# pysodmetrics' S-measure cuts a 2x3 image into quadrants, some empty: numpy warns (not our code).
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_iou_dice_ber_by_hand_on_2x3_masks():
    probs = np.array([
        [[0.9, 0.8, 0.1], [0.7, 0.2, 0.3]],   # pred 1 1 0 / 1 0 0
        [[0.1, 0.2, 0.3], [0.4, 0.5, 0.0]],   # pred all 0 (0.5 is not > 0.5)
        [[0.1, 0.9, 0.3], [0.4, 0.2, 0.0]],   # pred one pixel
    ], dtype=np.float32)
    masks = np.array([
        [[1, 0, 0], [1, 1, 0]],               # tp 2, fp 1, fn 1, tn 2
        [[0, 0, 0], [0, 0, 0]],               # empty mask, empty prediction
        [[0, 0, 0], [0, 0, 0]],               # empty mask, one false positive
    ], dtype=np.float32)
    metrics = BinarySegMetrics()
    metrics.update(probs, masks)
    result = metrics.compute()
    iou = [2 / 4, 1.0, 0.0]
    dice = [4 / 6, 1.0, 0.0]
    ber = [1 - (2 / 3 + 2 / 3) / 2, 0.0, 1 - 5 / 6]  # empty mask: error rate on background
    assert result["iou"] == pytest.approx(np.mean(iou))
    assert result["dice"] == pytest.approx(np.mean(dice))
    assert result["ber"] == pytest.approx(np.mean(ber))
    assert metrics.num_images == 3


def test_ber_all_foreground_mask_uses_foreground_error_rate():
    probs = np.array([[[0.9, 0.9, 0.1, 0.9]]], dtype=np.float32)
    metrics = BinarySegMetrics()
    metrics.update(probs, np.ones_like(probs))
    assert metrics.compute()["ber"] == pytest.approx(1 / 4)


def test_two_batches_equal_one_batch_and_reset():
    probs, masks = _random_batch(2, batch=4)
    whole = BinarySegMetrics()
    whole.update(probs, masks)
    split = BinarySegMetrics()
    split.update(probs[:1], masks[:1])
    split.update(torch.from_numpy(probs[1:]), torch.from_numpy(masks[1:]))
    assert split.num_images == 4
    assert split.compute() == pytest.approx(whole.compute(), abs=1e-12)
    split.reset()
    assert split.num_images == 0
    with pytest.raises(DataError, match="before any update"):
        split.compute()


def test_binary_errors():
    metrics = BinarySegMetrics()
    probs, masks = _random_batch(3, batch=1)
    with pytest.raises(DataError, match="differ in shape"):
        metrics.update(probs, masks[:, :-1])
    with pytest.raises(DataError, match="sigmoid"):
        metrics.update(probs * 4 - 2, masks)
    with pytest.raises(DataError, match="only 0 and 1"):
        metrics.update(probs, masks * 255)
    with pytest.raises(DataError, match=r"\(B, H, W\)"):
        metrics.update(probs[0], masks[0])
    assert metrics.num_images == 0


def _hand_example():
    # 3 classes; class 2 never occurs in targets nor predictions; 255 ignored.
    targets = np.array([[[0, 0, 1], [1, 255, 0]]])
    preds = np.array([[[0, 1, 1], [1, 2, 0]]])  # the 2 sits on the ignored pixel
    return preds, targets


def test_multiclass_hand_example_with_ignore_and_absent_class():
    preds, targets = _hand_example()
    metrics = MultiClassSegMetrics(3, class_names=["bg", "a", "b"])
    metrics.update(torch.from_numpy(preds), torch.from_numpy(targets))
    result = metrics.compute()
    # valid pixels: t=0,0,1,1,0 ; p=0,1,1,1,0 -> 4 correct of 5
    assert result["acc"] == pytest.approx(4 / 5)
    # class 0: inter 2, union 3 ; class 1: inter 2, union 3 ; class 2 absent
    assert result["iou_per_class"]["bg"] == pytest.approx(2 / 3)
    assert result["iou_per_class"]["a"] == pytest.approx(2 / 3)
    assert math.isnan(result["iou_per_class"]["b"])
    assert result["miou"] == pytest.approx(2 / 3)


def test_multiclass_accumulates_over_the_set_not_per_image():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, size=(3, 5, 6))
    targets[0, 0, :3] = 255
    preds = rng.integers(0, 4, size=(3, 5, 6))
    whole, split = MultiClassSegMetrics(4), MultiClassSegMetrics(4)
    whole.update(preds, targets)
    split.update(preds[:2], targets[:2])
    split.update(preds[2:], targets[2:])
    np.testing.assert_array_equal(split.confusion, whole.confusion)
    assert split.compute()["miou"] == whole.compute()["miou"]
    assert split.num_images == 3
    valid = targets != 255
    assert whole.compute()["acc"] == pytest.approx((preds[valid] == targets[valid]).mean())


def test_multiclass_errors():
    metrics = MultiClassSegMetrics(3)
    preds, targets = _hand_example()
    with pytest.raises(DataError, match="targets hold class ids"):
        metrics.update(preds, np.where(targets == 1, 7, targets))
    with pytest.raises(DataError, match="pred_labels hold class ids"):
        metrics.update(np.where(preds == 1, 3, preds), targets)
    with pytest.raises(DataError, match="differ in shape"):
        metrics.update(preds[:, :1], targets)
    with pytest.raises(DataError, match="no labelled pixel"):
        metrics.compute()


def test_metric_directions():
    assert METRIC_DIRECTIONS["mae"] == METRIC_DIRECTIONS["ber"] == "min"
    higher = set(BinarySegMetrics.KEYS) - {"mae", "ber"} | {"acc", "miou"}
    assert all(METRIC_DIRECTIONS[key] == "max" for key in higher)
