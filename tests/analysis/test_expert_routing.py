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


def test_the_window_table_labels_each_window_and_the_scale_maps_write_every_choice():
    from convlora_lite.analysis.expert_routing import LayerRouting, plot_scale_by_mask, plot_scale_maps, window_table

    # a 5 x 5 token grid in 2 x 2 windows of 3 tokens (padded to 6); the object covers the top-left 3 x 3 tokens
    choice = torch.tensor([[[0, 1], [1, 0]]])
    routings = [LayerRouting(0, 3, choice, (1.0, 4.0)), LayerRouting(1, 0, torch.tensor([[[1]]]), (1.0, 4.0))]
    masks = torch.zeros(1, 5, 5)
    masks[0, :3, :3] = 1
    table = window_table(routings, masks, grid=5)
    assert table.to_dict("list") == dict(block=[0] * 4, image=[0] * 4, row=[0, 0, 1, 1], col=[0, 1, 0, 1],
                                         scale=[1.0, 4.0, 4.0, 1.0], foreground=[1.0, 0.0, 0.0, 0.0],
                                         region=["object", "background", "background", "background"],
                                         border=[True] * 4)
    assert scale_by_mask(routings, masks, 5).to_dict("list") == dict(
        block=[0, 0], region=["object", "background"], windows=[1, 3], mean_scale=[1.0, 3.0])
    figure = plot_scale_maps(torch.rand(20, 20, 3).numpy(), routings, 0, grid=5)
    written = [[t.get_text() for t in ax.texts] for ax in figure.axes[1:3]]
    assert written == [["×1", "×4", "×4", "×1"], ["×4"]]  # every window's scale, and the global block's one
    bars = plot_scale_by_mask(scale_by_mask(routings, masks, 5)).axes[0]
    assert sorted(t.get_text() for t in bars.texts) == ["n=1", "n=3"]


def test_gate_gradients_of_a_model_find_no_task_path_to_the_gate():
    from convlora_lite.analysis.expert_routing import gate_gradients

    model = _model_with_random_gates()
    from_task, from_balance = gate_gradients(model, torch.randn(2, 3, 64, 64))
    assert from_task is None and from_balance.abs().max() > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
