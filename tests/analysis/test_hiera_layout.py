"""Hiera's layout, read from the model, against what Conv-LoRA's experts actually receive in a forward pass, and
against Hiera-S's published structure."""
import torch

from convlora_lite.analysis.hiera_layout import hiera_layout, stage_summary
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter_sam2 import PromptFreeSAM2
from convlora_lite.peft import apply_peft
from convlora_lite.peft.conv_lora import MoEConv
from convlora_lite.peft.placement import encoder_blocks


def test_layout_matches_the_grids_the_experts_receive():
    torch.manual_seed(0)
    model = apply_peft(PromptFreeSAM2(build_sam("micro_sam2", checkpoint=None)), "conv_lora").eval()
    seen = {}

    def record(index):
        def hook(_, args):
            seen.setdefault(index, tuple(args[0].shape))
        return hook

    for index, block in enumerate(encoder_blocks(model)):
        next(m for m in block.modules() if isinstance(m, MoEConv)).register_forward_pre_hook(record(index))
    with torch.no_grad():
        model(torch.randn(2, 3, 256, 256))
    layout = hiera_layout(model, 256)
    assert list(layout["stage"]) == [1, 2, 2, 3, 3, 3, 3, 4]
    assert list(layout["attention"]) == ["window", "window", "window", "window", "global", "window", "global",
                                         "window"]
    for row in layout.itertuples():
        samples, height, width, _ = seen[row.block]  # (images x samples, h, w, r)
        assert (height, width) == (row.window, row.window), row.block
        assert samples == 2 * row.samples, row.block
        assert row.window_px == row.window * row.stride_px
    assert layout.loc[1, "pools_queries"] and layout.loc[1, "grid"] == 64 and layout.loc[2, "grid"] == 32
    assert layout.loc[0, "expert_px_s1"] == 12 and layout.loc[7, "expert_px_s8"] == 6


def test_hiera_small_at_1024_px_has_its_published_stages():
    layout = hiera_layout(build_sam("sam2.1_hiera_small", device="meta"), 1024)
    summary = stage_summary(layout)
    assert list(summary["blocks"]) == ["0-0", "1-2", "3-13", "14-15"]
    assert list(summary["width"]) == ["96", "192", "384", "768"]
    assert list(summary["tokens per side"]) == [256, 128, 64, 32]
    assert list(summary["window (tokens)"]) == [8, 4, 14, 7]
    assert list(summary["global blocks"]) == [0, 0, 3, 0]
    assert set(layout.loc[layout["attention"] == "global", "block"]) == {7, 10, 13}
