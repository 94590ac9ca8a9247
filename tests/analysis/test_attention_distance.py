"""Mean attention distance: hand computations, the recomputed attention against SAM's own, windows."""
import math

import pytest
import torch

from convlora_lite.analysis.attention_distance import (
    attention_distance_table,
    attention_probabilities,
    capture_attention,
    mean_attention_distance,
    token_coords,
    window_validity,
)
from convlora_lite.models.sam import build_sam
from convlora_lite.peft import apply_peft


def test_distance_equals_hand_computation_on_a_tiny_map():
    # 2x2 grid: tokens at (0,0), (0,1), (1,0), (1,1); one map, two heads.
    coords = token_coords(2, 2)
    probs = torch.zeros(1, 2, 4, 4)
    probs[0, 0] = torch.eye(4)  # head 0 attends to itself only: distance 0
    probs[0, 1] = torch.tensor([[0.5, 0.5, 0.0, 0.0],  # query 0: half itself, half its right neighbour
                                [0.0, 0.0, 1.0, 0.0],  # query 1 (0,1) -> (1,0): sqrt(2)
                                [0.0, 0.0, 0.0, 1.0],  # query 2 (1,0) -> (1,1): 1
                                [0.25] * 4])            # query 3 uniform: (sqrt2 + 1 + 1 + 0) / 4
    hand = (0.5 + math.sqrt(2) + 1 + (math.sqrt(2) + 2) / 4) / 4
    got = mean_attention_distance(probs, coords, patch_size=16)
    assert got[0].item() == pytest.approx(0.0)
    assert got[1].item() == pytest.approx(16 * hand, rel=1e-6)
    # padding queries are left out of the mean
    valid = torch.tensor([[True, False, False, False]])
    assert mean_attention_distance(probs, coords, valid)[1].item() == pytest.approx(0.5)


def test_window_validity_marks_the_padding():
    valid = window_validity(batch=2, grid=8, window=3)  # 8 -> padded to 9, 3x3 windows
    assert valid.shape == (18, 9)
    assert valid.sum().item() == 2 * 64
    last = valid[8].view(3, 3)  # bottom-right window: only its top-left 2x2 tokens are real
    assert last.tolist() == [[True, True, False], [True, True, False], [False, False, False]]


def test_recomputed_attention_reproduces_sams_attention_output():
    torch.manual_seed(0)
    sam = build_sam("test_tiny")
    attn = sam.image_encoder.blocks[1].attn
    torch.nn.init.normal_(attn.rel_pos_h, std=0.5)
    x = torch.randn(2, 8, 8, 32)
    qkv = attn.qkv(x)
    probs = attention_probabilities(attn, qkv)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, 64))
    v = qkv.reshape(2, 64, 3, 2, -1).permute(2, 0, 3, 1, 4)[2]  # (B, heads, N, hd)
    out = attn.proj((probs @ v).permute(0, 2, 1, 3).reshape(2, 8, 8, 32))
    assert torch.allclose(out, attn(x), atol=1e-5)


def test_table_windowed_blocks_are_bounded_by_their_window_and_peft_layers_are_measured():
    torch.manual_seed(0)
    sam = build_sam("test_tiny")
    images = torch.randn(3, 3, 64, 64)
    table = attention_distance_table(sam.image_encoder, images, batch_size=2)
    assert list(table["kind"]) == ["windowed", "windowed", "global", "global"]
    windowed = table[table["kind"] == "windowed"]
    assert (windowed["distance_px"] <= 8 * 2 * math.sqrt(2) + 1e-6).all()  # max offset in a 3x3 window
    # the batched mean equals the per-image mean of capture_attention
    att = capture_attention(sam.image_encoder, images)[1]
    direct = mean_attention_distance(att.probs, att.coords, att.valid, patch_size=8)
    assert torch.allclose(torch.tensor(table[table.block == 1]["distance_px"].to_numpy(), dtype=torch.float), direct,
                          atol=1e-5)
    # a LoRA-wrapped qkv (B = 0 at init) measures the same attention
    adapted = apply_peft(sam, "lora")
    again = attention_distance_table(adapted.image_encoder, images, batch_size=2)
    assert torch.allclose(torch.tensor(again["distance_px"].to_numpy()), torch.tensor(table["distance_px"].to_numpy()),
                          atol=1e-5)


def test_the_attention_figure_draws_uniform_attention_as_a_reference():
    import pandas as pd

    from convlora_lite.analysis.attention_distance import plot_attention_distance

    table = pd.DataFrame([dict(block=0, head=0, kind="windowed", distance_px=10.0, window_px=96),
                          dict(block=1, head=0, kind="global", distance_px=130.0, window_px=256)])
    ax = plot_attention_distance(table, uniform=133.2).axes[0]
    (line,) = [line for line in ax.get_lines() if "uniform" in line.get_label()]
    assert list(line.get_ydata()) == [133.2, 133.2] and "133.2 px" in line.get_label()
