"""Zero-shot promptable SAM on a binary dataset: the table's shape, and each row by hand (the filled-box floor;
SAM's own prompt encoder and mask decoder for the box and the point, IoU and Dice counted with numpy)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convlora_lite.analysis.zero_shot import objects, zero_shot_examples, zero_shot_predict, zero_shot_scores
from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam

SPEC = SimpleNamespace(name="discs", task="binary", classes=("background", "foreground"), metrics=("iou", "dice"))


def test_scores_each_prompt_and_the_filled_box_by_hand():
    sam = build_sam("test_tiny", checkpoint=None)
    mask = torch.zeros(64, 64)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    mask[((yy - 30) ** 2 + (xx - 30) ** 2) <= 100] = 1  # a disc of radius 10: its tight box is 21 x 21
    items = [dict(image=torch.randn(3, 64, 64), mask=mask),
             dict(image=torch.randn(3, 64, 64), mask=torch.zeros(64, 64))]
    table = zero_shot_scores(sam, items, SPEC)
    assert list(table.index) == ["one box", "one point", "filled box (no model)"]
    assert list(table.columns) == ["iou", "dice"] + ["images", "objects"]
    assert (table["objects"] == 1).all()  # one disc: one object, one prompt
    assert (table["images"] == 1).all()  # the empty mask gives no prompt
    assert table.at["filled box (no model)", "iou"] == pytest.approx(100 * mask.sum().item() / 21 ** 2, abs=1e-4)
    # The model rows, recomputed without the library's prompt or metric code: the prompts by hand (the disc covers
    # x, y = 20..40: box (20, 20, 41, 41), right edge exclusive; the pixel farthest from its border is its centre
    # (30, 30), whose nearest outside pixels, e.g. (40, 31), lie sqrt(101) away, so the point is (30.5, 30.5)),
    # SAM's prompt encoder and mask decoder called directly on the one image with foreground, the logits upsampled
    # bilinearly to the 64 px mask, binarised at sigmoid > 0.5, IoU and Dice counted with numpy.
    gt = mask.numpy() > 0.5
    with torch.no_grad():
        embedding = sam.image_encoder(items[0]["image"][None])
        for row, points, boxes, multimask in [
                ("one box", None, torch.tensor([[20.0, 20.0, 41.0, 41.0]]), False),
                ("one point", (torch.tensor([[[30.5, 30.5]]]), torch.ones(1, 1)), None, True)]:
            sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
            low, iou_pred = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=multimask)
            assert low.shape[1] == (3 if multimask else 1)
            chosen = low[:, int(iou_pred[0].argmax())]  # a single mask, or SAM's pick: the highest predicted IoU
            logits = F.interpolate(chosen[:, None], size=gt.shape, mode="bilinear", align_corners=False)[0, 0]
            pred = torch.sigmoid(logits).numpy() > 0.5
            tp, fp, fn = np.sum(pred & gt), np.sum(pred & ~gt), np.sum(~pred & gt)
            assert tp > 0 and fp + fn > 0  # a partial overlap: neither score is a trivial 0 or 100
            assert table.at[row, "iou"] == pytest.approx(100 * tp / (tp + fp + fn), abs=1e-4)
            assert table.at[row, "dice"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn), abs=1e-4)


def test_multiclass_and_empty_splits_are_refused():
    sam = build_sam("test_tiny", checkpoint=None)
    with pytest.raises(ConfigError, match="class-agnostic"):
        zero_shot_scores(sam, [], SimpleNamespace(name="t", task="multiclass"))
    with pytest.raises(ConfigError, match="has foreground"):
        zero_shot_scores(sam, [dict(image=torch.randn(3, 64, 64), mask=torch.zeros(64, 64))], SPEC)


def test_a_mask_with_two_objects_gets_one_prompt_each_and_the_union_of_their_masks():
    sam = build_sam("test_tiny", checkpoint=None).eval()
    mask = torch.zeros(64, 64)
    mask[5:15, 8:20] = 1  # object 1: rows 5-14, columns 8-19
    mask[40:50, 30:34] = 1  # object 2: rows 40-49, columns 30-33
    mask[50, 34] = 1  # touches object 2 only diagonally: the same object (8-connected)
    assert len(objects(mask.numpy() > 0.5)) == 2
    image = torch.randn(3, 64, 64)
    answer = zero_shot_predict(sam, image, mask)
    np.testing.assert_array_equal(answer.boxes, [[8, 5, 20, 15], [30, 40, 35, 51]])
    filled = np.zeros((64, 64))
    filled[5:15, 8:20] = filled[40:51, 30:35] = 1
    np.testing.assert_array_equal(answer.filled.numpy(), filled)
    # Each object's box decoded on its own with SAM's prompt encoder and mask decoder; the image's answer is the
    # pixelwise maximum of the two probabilities (the union of the two masks at any threshold).
    with torch.no_grad():
        embedding = sam.image_encoder(image[None])
        single = []
        for box in answer.boxes:
            sparse, dense = sam.prompt_encoder(points=None, boxes=torch.from_numpy(box[None]), masks=None)
            low, _ = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
            single.append(torch.sigmoid(F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False))[0, 0])
    torch.testing.assert_close(answer.box, torch.maximum(*single), atol=1e-5, rtol=0)
    assert answer.points.shape == (2, 2) and answer.point.shape == (64, 64)
    items = [dict(image=image, mask=torch.zeros(64, 64), name="empty"), dict(image=image, mask=mask, name="two")]
    table = zero_shot_scores(sam, items, SPEC)
    assert (table["objects"] == 2).all() and (table["images"] == 1).all()
    (item, example), = zero_shot_examples(sam, items, n=3)  # the image without foreground is skipped
    assert item["name"] == "two" and len(example.boxes) == 2
