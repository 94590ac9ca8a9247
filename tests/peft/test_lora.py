"""LoRALinear and the "lora" PEFT method."""
import math

import pytest
import torch
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.peft import apply_peft
from convlora_lite.peft.lora import LoRALinear


def test_equals_base_at_init_on_4d_input():
    base = nn.Linear(8, 12)
    layer = LoRALinear(base)
    x = torch.randn(2, 3, 3, 8)
    assert torch.equal(layer(x), base(x))
    assert torch.all(layer.lora_B == 0)
    assert layer.scaling == pytest.approx(32 / 3)


def test_update_matches_direct_formula():
    base = nn.Linear(8, 12)
    layer = LoRALinear(base, rank=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 4, 8)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)


def test_lora_A_init_is_kaiming_uniform_bound():
    layer = LoRALinear(nn.Linear(300, 10), rank=64)
    bound = 1 / math.sqrt(300)  # kaiming_uniform(a=sqrt(5)) bound: sqrt(6 / ((1 + 5) * fan_in))
    assert layer.lora_A.abs().max() <= bound
    assert layer.lora_A.abs().max() > 0.9 * bound


def test_gradients_reach_only_lora_parameters():
    layer = LoRALinear(nn.Linear(6, 6), rank=2)
    layer(torch.randn(3, 6)).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0
    # B = 0 at init, so A gets a zero gradient (but a gradient).
    assert layer.lora_A.grad is not None and torch.all(layer.lora_A.grad == 0)


def test_dropout_acts_on_the_update_only():
    base = nn.Linear(6, 6)
    layer = LoRALinear(base, rank=2, dropout=0.5).train()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.ones(1, 6)
    outputs = {tuple(layer(x).flatten().tolist()) for _ in range(20)}
    assert len(outputs) > 1
    layer.eval()
    torch.testing.assert_close(layer(x), base(x) + layer.scaling * x @ layer.lora_A.T @ layer.lora_B.T)


@pytest.mark.parametrize("kwargs", [{"rank": 0}, {"dropout": 1.0}])
def test_bad_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        LoRALinear(nn.Linear(4, 4), **kwargs)


def test_apply_lora_to_sam_wraps_every_qkv_and_sets_trainable_set():
    sam = build_sam("test_tiny")
    x = torch.randn(1, 3, 64, 64)
    before = sam.image_encoder(x)
    apply_peft(sam, "lora")
    assert all(isinstance(b.attn.qkv, LoRALinear) for b in sam.image_encoder.blocks)
    torch.testing.assert_close(sam.image_encoder(x), before)  # B = 0: same function at init
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    lora = {f"image_encoder.blocks.{i}.attn.qkv.lora_{m}" for i in range(2) for m in "AB"}
    decoder = {f"mask_decoder.{n}" for n, _ in sam.mask_decoder.named_parameters()
               if not n.startswith("iou_prediction_head.")}
    assert trainable == lora | decoder


def test_lora_parameter_count_on_meta_vit_h():
    sam = build_sam("vit_h", device="meta")
    apply_peft(sam, "lora")
    added = sum(p.numel() for n, p in sam.image_encoder.named_parameters() if "lora_" in n)
    assert added == 32 * (3 * 1280 + 3840 * 3)


def test_state_dict_round_trip():
    torch.manual_seed(1)
    a = apply_peft(build_sam("test_tiny"), "lora")
    with torch.no_grad():
        for n, p in a.named_parameters():
            if "lora_B" in n:
                p.normal_()
    torch.manual_seed(2)
    b = apply_peft(build_sam("test_tiny"), "lora")
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(b.image_encoder(x), a.image_encoder(x))


def test_applying_twice_is_refused():
    sam = apply_peft(build_sam("test_tiny"), "lora")
    with pytest.raises(ConfigError):
        apply_peft(sam, "lora")
