"""Losses against independent references: NumPy/SciPy re-implementations, the official call
itself (legacy structure loss), brute-force matching, hand formulas."""
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

from convlora_lite.errors import ConfigError, DataError
from convlora_lite.training.losses import LOSSES, SetCriterion, balanced_bce, get_loss, structure_loss


def _np_bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _np_structure(logits, mask, legacy=False):
    """NumPy PraNet structure loss; avgpool31 with zero padding counted = a 31x31 box filter."""
    weight = 1 + 5 * np.abs(uniform_filter(mask, size=(1, 1, 31, 31), mode="constant", cval=0.0) - mask)
    bce = _np_bce(logits, mask)
    wbce = np.full(len(logits), bce.mean()) if legacy else (weight * bce).sum((1, 2, 3)) / weight.sum((1, 2, 3))
    probs = 1 / (1 + np.exp(-logits))
    inter = (probs * mask * weight).sum((1, 2, 3))
    union = ((probs + mask) * weight).sum((1, 2, 3))
    return float(np.mean(wbce + 1 - (inter + 1) / (union - inter + 1)))


def _binary_case(seed=0, batch=2, size=40):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, 1, size, size, generator=gen, dtype=torch.float64) * 2
    mask = torch.zeros(batch, 1, size, size, dtype=torch.float64)
    mask[0, 0, 5:20, 8:30] = 1
    mask[1, 0, 25:38, 2:12] = 1
    return logits, mask


def test_structure_loss_matches_numpy_reimplementation():
    logits, mask = _binary_case()
    expected = _np_structure(logits.numpy(), mask.numpy())
    assert structure_loss(logits, mask).item() == pytest.approx(expected, rel=1e-10)
    # (B, H, W) inputs are accepted too
    assert structure_loss(logits[:, 0], mask[:, 0]).item() == pytest.approx(expected, rel=1e-10)


def test_structure_loss_legacy_matches_numpy_and_the_official_call():
    logits, mask = _binary_case(1)
    expected = _np_structure(logits.numpy(), mask.numpy(), legacy=True)
    legacy = structure_loss(logits, mask, legacy_reduce=True).item()
    assert legacy == pytest.approx(expected, rel=1e-10)
    assert legacy != pytest.approx(structure_loss(logits, mask).item(), rel=1e-3)
    # the official code, verbatim in its effect (AutoGluon StructureLoss.forward)
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wbce = F.binary_cross_entropy_with_logits(logits, mask, reduce="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    pred = torch.sigmoid(logits)
    inter = ((pred * mask) * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    official = (wbce + 1 - (inter + 1) / (union - inter + 1)).mean()
    assert legacy == pytest.approx(official.item(), rel=1e-10)


@pytest.mark.parametrize("shape", [(2, 1, 40, 37), (1, 1, 8, 8), (3, 1, 64, 64)])
def test_box_mean_is_the_31_pixel_average_pool(shape):
    """The separable box filter equals PyTorch's 2-D pool (zero padding counted), also where the
    window is larger than the image."""
    from convlora_lite.training.losses import box_mean

    x = (torch.rand(shape, dtype=torch.float64) > 0.6).double()
    expected = F.avg_pool2d(x, kernel_size=31, stride=1, padding=15)
    torch.testing.assert_close(box_mean(x, 31), expected, rtol=0, atol=1e-12)
    by_hand = torch.nn.functional.pad(x, (15, 15, 15, 15))[0, 0, 0:31, 0:31].sum() / 31 ** 2
    assert box_mean(x, 31)[0, 0, 0, 0].item() == pytest.approx(by_hand.item(), abs=1e-12)


def test_structure_loss_gradients_and_shape_errors():
    logits, mask = _binary_case(2)
    logits.requires_grad_(True)
    loss = structure_loss(logits, mask)
    assert loss.dim() == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(DataError, match="differ in shape"):
        structure_loss(logits.detach(), mask[:, :, :-1])
    with pytest.raises(DataError, match=r"\(B, 1, H, W\)"):
        structure_loss(logits.detach().repeat(1, 2, 1, 1), mask.repeat(1, 2, 1, 1))


def test_balanced_bce_matches_hand_formula():
    logits, mask = _binary_case(3, size=16)
    x, y = logits.numpy(), mask.numpy()
    pos, neg = y.sum(), (1 - y).sum()
    per_pixel = neg / (pos + neg) * y * _np_bce(x, 1.0) + pos / (pos + neg) * (1 - y) * _np_bce(x, 0.0)
    assert balanced_bce(logits, mask).item() == pytest.approx(per_pixel.mean(), rel=1e-8)


def test_balanced_bce_without_positives_is_finite_and_near_zero():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    loss = balanced_bce(logits, torch.zeros(2, 1, 8, 8))
    assert torch.isfinite(loss) and 0 <= loss.item() < 1e-9
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert balanced_bce(logits, torch.ones(2, 1, 8, 8)).item() == 0.0


# ---------------------------------------------------------------- set loss


def _set_case(num_queries=5, num_classes=4, size=12, seed=0):
    """A label map with classes {0, 2, 3} (class 1 absent), an ignored block, and a prediction
    where query perm[i] predicts class i's mask and class (the rest predict 'no object')."""
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, :6, :6] = 2
    labels[0, 6:, 6:] = 3
    labels[0, :2, 8:] = 255
    perm = {0: 3, 2: 0, 3: 4}  # class -> query
    mask_logits = torch.full((1, num_queries, size, size), -6.0)
    class_logits = torch.zeros(1, num_queries, num_classes + 1)
    class_logits[0, :, -1] = 4.0
    for cls, query in perm.items():
        mask_logits[0, query] = torch.where(labels[0] == cls, 6.0, -6.0)
        class_logits[0, query] = 0.0
        class_logits[0, query, cls] = 6.0
    gen = torch.Generator().manual_seed(seed)
    mask_logits = mask_logits + 0.3 * torch.randn(mask_logits.shape, generator=gen)
    return mask_logits, class_logits, labels, perm


def _np_pair_costs(logits, target, valid):
    bce = (_np_bce(logits, target) * valid).sum() / valid.sum()
    probs = 1 / (1 + np.exp(-logits)) * valid
    dice = 1 - (2 * (probs * target * valid).sum() + 1) / (probs.sum() + (target * valid).sum() + 1)
    return bce, dice


def test_hungarian_matching_recovers_permuted_queries():
    mask_logits, class_logits, labels, perm = _set_case()
    criterion = SetCriterion(num_classes=4)
    criterion(mask_logits, class_logits, labels)
    queries, classes = criterion.last_indices[0]
    assert dict(zip(classes.tolist(), queries.tolist())) == perm


def test_matching_is_the_brute_force_optimum_of_the_cost():
    gen = torch.Generator().manual_seed(1)
    mask_logits = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    class_logits = torch.randn(1, 4, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (1, 8, 8), generator=gen)
    labels[0, 0] = 255
    criterion = SetCriterion(num_classes=3)
    criterion(mask_logits, class_logits, labels)
    queries, classes = criterion.last_indices[0]

    x, lab = mask_logits[0].numpy().reshape(4, -1), labels[0].numpy().ravel()
    valid = (lab != 255).astype(float)
    probs = np.exp(class_logits[0].numpy()) / np.exp(class_logits[0].numpy()).sum(-1, keepdims=True)
    present = sorted(set(lab[lab != 255].tolist()))
    cost = np.zeros((4, len(present)))
    for q in range(4):
        for t, cls in enumerate(present):
            bce, dice = _np_pair_costs(x[q], (lab == cls).astype(float), valid)
            cost[q, t] = -probs[q, cls] + 5 * bce + 5 * dice
    best = min(itertools.permutations(range(4), len(present)),
               key=lambda qs: sum(cost[q, t] for t, q in enumerate(qs)))
    chosen = dict(zip(classes.tolist(), queries.tolist()))
    assert [chosen[cls] for cls in present] == list(best)


def test_set_loss_value_matches_numpy_given_the_matching():
    mask_logits, class_logits, labels, perm = _set_case()
    criterion = SetCriterion(num_classes=4, class_weight=2.0, mask_weight=5.0, dice_weight=3.0)
    loss = criterion(mask_logits.double(), class_logits.double(), labels).item()

    x, lab = mask_logits[0].double().numpy().reshape(5, -1), labels[0].numpy().ravel()
    valid = (lab != 255).astype(float)
    bces, dices = zip(*(_np_pair_costs(x[q], (lab == cls).astype(float), valid) for cls, q in perm.items()))
    target = np.full(5, 4)
    for cls, q in perm.items():
        target[q] = cls
    logits = class_logits[0].double().numpy()
    nll = -(logits[np.arange(5), target] - np.log(np.exp(logits).sum(-1)))
    weight = np.where(target == 4, 0.1, 1.0)
    ce = (weight * nll).sum() / weight.sum()
    expected = 2.0 * ce + 5.0 * np.sum(bces) / 3 + 3.0 * np.sum(dices) / 3
    assert loss == pytest.approx(expected, rel=1e-9)
    assert criterion.last_terms["ce"] == pytest.approx(ce, rel=1e-9)


def test_set_loss_lower_for_right_classes_than_shuffled():
    mask_logits, class_logits, labels, perm = _set_case()
    criterion = SetCriterion(num_classes=4)
    right = criterion(mask_logits, class_logits, labels)
    shuffled = class_logits.clone()
    shuffled[0, perm[0]], shuffled[0, perm[2]], shuffled[0, perm[3]] = (
        class_logits[0, perm[2]], class_logits[0, perm[3]], class_logits[0, perm[0]])
    assert criterion(mask_logits, shuffled, labels) > right + 1.0


def test_set_loss_ignores_ignored_pixels_and_gradients_flow():
    mask_logits, class_logits, labels, _ = _set_case()
    criterion = SetCriterion(num_classes=4)
    changed = mask_logits.clone()
    changed[:, :, labels[0] == 255] = 50.0
    assert criterion(changed, class_logits, labels).item() == pytest.approx(
        criterion(mask_logits, class_logits, labels).item(), rel=1e-6)

    mask_logits.requires_grad_(True)
    class_logits.requires_grad_(True)
    loss = criterion(mask_logits, class_logits, labels)
    assert loss.dim() == 0
    loss.backward()
    assert mask_logits.grad.abs().sum() > 0 and class_logits.grad.abs().sum() > 0
    assert mask_logits.grad[0, 1].abs().sum() == 0  # unmatched query: no mask gradient
    assert mask_logits.grad[:, :, labels[0] == 255].abs().sum() == 0


def test_set_loss_batch_with_an_all_ignored_image_and_resizing():
    mask_logits, class_logits, labels, _ = _set_case(size=16)
    labels = torch.cat([labels, torch.full_like(labels, 255)])
    mask_logits, class_logits = mask_logits.repeat(2, 1, 1, 1), class_logits.repeat(2, 1, 1)
    criterion = SetCriterion(num_classes=4, loss_size=8)
    loss = criterion(mask_logits, class_logits, labels)
    assert torch.isfinite(loss)
    assert len(criterion.last_indices[1][0]) == 0
    # labels at twice the logits' size are nearest-resized to them
    big_labels = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert SetCriterion(num_classes=4)(mask_logits, class_logits, big_labels).item() == pytest.approx(
        SetCriterion(num_classes=4)(mask_logits, class_logits, labels).item(), rel=1e-6)


def test_set_loss_errors():
    mask_logits, class_logits, labels, _ = _set_case()
    with pytest.raises(DataError, match="num_classes \\+ 1"):
        SetCriterion(num_classes=5)(mask_logits, class_logits, labels)
    with pytest.raises(DataError, match="outside 0..3"):
        SetCriterion(num_classes=4)(mask_logits, class_logits, torch.where(labels == 3, 9, labels))
    with pytest.raises(DataError, match="integer class ids"):
        SetCriterion(num_classes=4)(mask_logits, class_logits, labels.float())


def test_registry_and_get_loss():
    assert set(LOSSES) == {"structure", "balanced_bce", "set"}
    assert get_loss("balanced_bce") is balanced_bce
    logits, mask = _binary_case(4)
    legacy = get_loss("structure", legacy_reduce=True)
    assert legacy(logits, mask).item() == structure_loss(logits, mask, legacy_reduce=True).item()
    assert isinstance(get_loss("set", num_classes=12), SetCriterion)
    with pytest.raises(ConfigError, match="needs num_classes"):
        get_loss("set")
    with pytest.raises(ConfigError, match="balanced_bce, set, structure"):
        get_loss("dice")
