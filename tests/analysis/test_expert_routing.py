"""Routing statistics read from Conv-LoRA layers: counts, window grids, maps, receptive fields."""
import pytest
import torch

from convlora_lite.analysis.expert_routing import (
    conv_lora_layers,
    expert_receptive_field,
    layer_routing,
    receptive_field_radius,
    record_routing,
    scale_by_mask,
    scale_by_region,
    scale_map,
    usage_table,
)
from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.peft import apply_peft
from convlora_lite.peft.conv_lora import MoEConv


def _model_with_random_gates():
    model = apply_peft(build_sam("test_tiny"), "conv_lora")
    for _, layer, _ in conv_lora_layers(model):
        torch.nn.init.normal_(layer.moe.gate.w_gate, std=3.0)
    return model.eval()


def test_counts_equal_the_layers_record_and_sum_to_the_windows():
    model = _model_with_random_gates()
    routings = record_routing(model, torch.randn(2, 3, 64, 64))
    usage = usage_table(routings)
    layers = conv_lora_layers(model)
    assert [r.block for r in routings] == [0, 1] and [r.kind for r in routings] == ["windowed", "global"]
    assert routings[0].choice.shape == (2, 3, 3)  # 8x8 tokens padded to 9x9: 3x3 windows of 3x3
    assert routings[1].choice.shape == (2, 1, 1)
    for (block, layer, _), routing in zip(layers, routings):
        counts = torch.tensor(usage[usage.block == block].sort_values("expert")["count"].to_numpy(), dtype=torch.float)
        assert torch.equal(counts, layer.routing_counts.cpu())
        assert torch.equal(routing.choice.reshape(-1), layer.last_expert_index[:, 0])
    assert usage.groupby("block")["count"].sum().tolist() == [2 * 9, 2]
    assert usage.groupby("block")["fraction"].sum().tolist() == pytest.approx([1.0, 1.0])
    assert len(set(routings[0].choice.reshape(-1).tolist())) > 1  # random gates: several experts used


def test_scale_map_paints_each_window_and_crops_the_padding():
    model = _model_with_random_gates()
    routings = record_routing(model, torch.randn(1, 3, 64, 64))
    windowed = routings[0]
    tokens = scale_map(windowed, grid=8)
    assert tokens.shape == (1, 8, 8)
    # row 4 -> window row 1, col 7 -> 2
    assert tokens[0, 4, 7].item() == windowed.scales[windowed.choice[0, 1, 2].item()]
    pixels = scale_map(windowed, grid=8, image_size=64)
    assert pixels.shape == (1, 64, 64) and pixels[0, 63, 63] == tokens[0, 7, 7]
    assert torch.all(scale_map(routings[1], grid=8) == routings[1].scales[routings[1].choice[0, 0, 0].item()])
    assert scale_by_region(routings)[0].shape == (3, 3)


def test_scale_by_mask_splits_object_and_background_windows():
    model = _model_with_random_gates()
    routings = record_routing(model, torch.randn(1, 3, 64, 64))
    mask = torch.zeros(1, 64, 64)
    mask[:, :24, :24] = 1  # exactly the top-left window (3x3 tokens of 8 px)
    table = scale_by_mask(routings, mask, grid=8)
    obj = table[table.region == "object"].iloc[0]
    expected = routings[0].scales[routings[0].choice[0, 0, 0].item()]
    assert obj.windows == 1 and obj.mean_scale == expected
    assert table[table.region == "background"].iloc[0].windows == 8


def test_receptive_field_of_the_unit_scale_expert_is_its_3x3_conv_and_errors_are_clear():
    torch.manual_seed(0)
    expert1 = MoEConv(3, scales=[1]).experts[0]
    field = expert_receptive_field(expert1, size=9)
    assert field.sum().item() == pytest.approx(1.0)
    assert field[4, 4] > 0 and field[0, 0] == 0 and field[3:6, 3:6].sum().item() == pytest.approx(1.0)  # a 3x3 conv
    assert receptive_field_radius(field) <= 2 ** 0.5
    with pytest.raises(ConfigError, match="apply_peft"):
        conv_lora_layers(build_sam("test_tiny"))
    fresh = apply_peft(build_sam("test_tiny"), "conv_lora")
    with pytest.raises(ConfigError, match="has not run"):
        layer_routing(0, conv_lora_layers(fresh)[0][1], 3, 1)


def test_scale_colours_give_each_scale_its_own_colour():
    from convlora_lite.analysis.expert_routing import scale_colours

    cmap, norm, ticks = scale_colours([1.0, 2.0, 3.0, 2.0])
    assert ticks == [1.0, 2.0, 3.0] and cmap.N == 3
    assert [int(norm(s)) for s in ticks] == [0, 1, 2]
