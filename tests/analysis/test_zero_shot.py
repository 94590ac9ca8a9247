"""Zero-shot promptable SAM on a binary dataset: shapes of the table and the filled-box floor by hand."""
from types import SimpleNamespace

import pytest
import torch

from convlora_lite.analysis.zero_shot import zero_shot_scores
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
    assert list(table.columns) == ["iou", "dice"] + ["images"]
    assert (table["images"] == 1).all()  # the empty mask gives no prompt
    assert table.at["filled box (no model)", "iou"] == pytest.approx(100 * mask.sum().item() / 21 ** 2, abs=1e-4)
    assert ((table[["iou", "dice"]] >= 0) & (table[["iou", "dice"]] <= 100)).all().all()


def test_multiclass_and_empty_splits_are_refused():
    sam = build_sam("test_tiny", checkpoint=None)
    with pytest.raises(ConfigError, match="class-agnostic"):
        zero_shot_scores(sam, [], SimpleNamespace(name="t", task="multiclass"))
    with pytest.raises(ConfigError, match="has foreground"):
        zero_shot_scores(sam, [dict(image=torch.randn(3, 64, 64), mask=torch.zeros(64, 64))], SPEC)
