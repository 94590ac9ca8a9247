"""PEFT on SAM 2.1's Hiera: the block locator, the blocks= / stages= placement, LoRA on a qkv whose output is not
3 x its input, Conv-LoRA's experts on the token grid Meta's attention sees, and every method on SAM 2."""
import pytest
import torch
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.models.segmenter_sam2 import PromptFreeSAM2
from convlora_lite.peft import METHOD_NAMES, apply_peft
from convlora_lite.peft.conv_lora import ConvLoRALinear
from convlora_lite.peft.lora import LoRALinear
from convlora_lite.peft.placement import encoder_blocks, hiera_stages

TINY = "sam2.1_hiera_tiny"
ON_HIERA = ("decoder_only", "bitfit", "adapter", "ssf", "lora", "conv_lora")
NOT_ON_HIERA = ("vpt", "lst", "sam_adapter")


def hiera(image_size: int = 64, **kwargs) -> PromptFreeSAM2:
    torch.manual_seed(0)
    return PromptFreeSAM2(build_sam(TINY, checkpoint=None, image_size=image_size), **kwargs)


def wrapped(model) -> list[int]:
    return [i for i, block in enumerate(encoder_blocks(model)) if isinstance(block.attn.qkv, LoRALinear)]


def test_the_methods_are_sorted_into_available_or_not():
    assert sorted(ON_HIERA + NOT_ON_HIERA) == sorted(METHOD_NAMES)


def test_the_locator_finds_either_backbones_blocks():
    sam2 = hiera()
    assert encoder_blocks(sam2) is sam2.image_encoder.trunk.blocks and len(encoder_blocks(sam2)) == 12
    v1 = PromptFreeSAM(build_sam("test_tiny"))
    assert encoder_blocks(v1) is v1.image_encoder.blocks
    with pytest.raises(ConfigError, match="no SAM image encoder"):
        encoder_blocks(nn.Linear(2, 2))


def test_stages_are_metas_stages():
    model = hiera()
    trunk = model.image_encoder.trunk
    stages = hiera_stages(model)
    assert [s[-1] for s in stages] == list(trunk.stage_ends)
    assert [s[0] for s in stages[1:]] == list(trunk.q_pool_blocks)  # each later stage opens with the pooling block
    assert [list(s) for s in stages] == [[0], [1, 2], [3, 4, 5, 6, 7, 8, 9], [10, 11]]


@pytest.mark.parametrize("options, blocks", [({}, list(range(12))), ({"stages": [3]}, list(range(3, 10))),
                                             ({"stages": [1, 4]}, [0, 10, 11]), ({"blocks": [0, 5, 11]}, [0, 5, 11])])
def test_placement_chooses_the_wrapped_blocks(options, blocks):
    assert wrapped(apply_peft(hiera(), "lora", **options)) == blocks


@pytest.mark.parametrize("model, options, message", [
    ("sam2", {"blocks": [12]}, "blocks 0 to 11"),
    ("sam2", {"stages": [5]}, "stages 1 to 4"),
    ("sam2", {"blocks": [1], "stages": [1]}, "not both"),
    ("sam2", {"stages": [2, 1]}, "increasing list of integers >= 1"),
    ("sam2", {"blocks": []}, "non-empty"),
    ("sam2", {"stages": [0]}, ">= 1"),
    ("v1", {"stages": [1]}, "SAM's ViT has none: choose its blocks with blocks="),
    ("v1", {"blocks": [2]}, "blocks 0 to 1"),
])
def test_a_bad_placement_is_a_config_error(model, options, message):
    segmenter = hiera() if model == "sam2" else PromptFreeSAM(build_sam("test_tiny"))
    with pytest.raises(ConfigError, match=message):
        apply_peft(segmenter, "conv_lora", **options)


def test_v1_placement_by_blocks():
    assert wrapped(apply_peft(PromptFreeSAM(build_sam("test_tiny")), "lora", blocks=[1])) == [1]


def test_lora_on_a_qkv_whose_output_is_not_three_times_its_input():
    model = hiera().eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(images).logits
    apply_peft(model, "lora")
    layer = model.image_encoder.trunk.blocks[1].attn.qkv  # Hiera-T's block 1: 96 -> 3 x 192
    assert (layer.in_features, layer.out_features) == (96, 576)
    assert layer.lora_A.shape == (3, 96) and layer.lora_B.shape == (576, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, before, rtol=0, atol=0)  # B = 0: the frozen model
        layer.lora_B.normal_()
    seen = []
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    with torch.no_grad():
        changed = model(images).logits
    handle.remove()
    (x, y), base = seen[0], layer.base
    expected = x @ base.weight.T + base.bias + layer.scaling * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(y, expected)
    assert not torch.allclose(changed, before)


def test_conv_lora_experts_see_the_grid_metas_attention_sees():
    """Each block's qkv (and so its experts) sees what Meta's MultiScaleAttention receives: the block's windows, the
    previous stage's at a pooling block, padded where the grid is no multiple of them, or the whole map."""
    model = hiera(image_size=128)
    attention_inputs, expert_inputs = {}, {}

    def record(into: dict, i: int):
        def hook(module, inputs):
            into[i] = inputs[0].shape
        return hook

    for i, block in enumerate(model.image_encoder.trunk.blocks):
        block.attn.register_forward_pre_hook(record(attention_inputs, i))
    apply_peft(model, "conv_lora")
    for i, block in enumerate(model.image_encoder.trunk.blocks):
        assert isinstance(block.attn.qkv, ConvLoRALinear)
        block.attn.qkv.moe.register_forward_pre_hook(record(expert_inputs, i))
    model(torch.randn(2, 3, 128, 128))
    grids = {i: tuple(shape[:3]) for i, shape in attention_inputs.items()}
    assert {i: tuple(shape[:3]) for i, shape in expert_inputs.items()} == grids
    assert all(expert_inputs[i][3] == 3 for i in grids)  # rank-3 bottleneck
    # at 128 px: 32 x 32 tokens in 8 x 8 windows, 16 x 16 in 4 x 4, 8 x 8 padded into one 14 x 14 window or
    # global (blocks 5, 7, 9), 4 x 4 padded into one 7 x 7 window
    assert grids == {0: (32, 8, 8), 1: (32, 8, 8), 2: (32, 4, 4), 3: (32, 4, 4), 4: (2, 14, 14), 5: (2, 8, 8),
                     6: (2, 14, 14), 7: (2, 8, 8), 8: (2, 14, 14), 9: (2, 8, 8), 10: (2, 14, 14), 11: (2, 7, 7)}


def test_conv_lora_fast_equals_official_on_hiera():
    images = torch.randn(2, 3, 64, 64)
    fast = apply_peft(hiera(), "conv_lora")
    with torch.no_grad():  # route to several experts, with an update small enough not to blow up over 12 blocks
        for name, p in fast.named_parameters():
            if name.endswith(("lora_B", "moe.bias", "w_gate", "w_noise")):
                p.normal_(0, 1.0 if name.endswith(("w_gate", "w_noise")) else 0.05)
    official = apply_peft(hiera(), "conv_lora", implementation="official")
    official.load_state_dict(fast.state_dict())
    for training in (False, True):
        fast.train(training), official.train(training)
        torch.manual_seed(3)
        out_fast = fast(images)
        torch.manual_seed(3)
        out_official = official(images)
        torch.testing.assert_close(out_official.logits, out_fast.logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out_official.aux_loss, out_fast.aux_loss)
        layers = [(a, b) for a, b in zip(fast.modules(), official.modules()) if isinstance(a, ConvLoRALinear)]
        assert all(torch.equal(a.last_expert_index, b.last_expert_index) for a, b in layers)
    assert len(torch.cat([a.last_expert_index.flatten() for a, _ in layers]).unique()) > 1


@pytest.mark.parametrize("method", ON_HIERA)
def test_every_available_method_starts_as_sam2_and_trains_what_it_adds(method):
    model = hiera().eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(images).logits
    existing = {id(p): (n, p.detach().clone()) for n, p in model.named_parameters()}
    apply_peft(model, method)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, before, rtol=0, atol=1e-6)
    model.train()
    out = model(images)
    (out.logits.mean() + out.aux_loss).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    added = [n for n, p in trainable.items() if id(p) not in existing]
    assert all(n.startswith(("image_encoder.", "mask_decoder.")) for n in trainable)
    assert (method in ("decoder_only", "bitfit")) == (not added)
    if method == "bitfit":
        assert {n for n in trainable if n.startswith("image_encoder.")} == {
            n for n, _ in existing.values() if n.startswith("image_encoder.") and n.endswith(".bias")}
    assert not any(n.startswith(("prompt_encoder.", "mask_decoder.iou_prediction_head.")) for n in trainable)
    assert all(p.grad is not None for n, p in trainable.items() if ".moe.gate." not in n)
    torch.optim.SGD(trainable.values(), lr=0.1).step()
    assert all(torch.equal(p, existing[id(p)][1]) for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("method", NOT_ON_HIERA)
def test_the_other_methods_refuse_hiera_saying_why(method):
    with pytest.raises(ConfigError, match=r"not available on SAM 2's Hiera: .*docs/sam2.md"):
        apply_peft(hiera(), method)
