"""The six baselines of the paper's table (BitFit, Adapter, VPT, LST, SAM-Adapter, SSF) on the
common PEFT protocol: trainable sets, counts against the paper, frozen weights, identity at
initialisation, gradients, windowed blocks at 256 and 1024 px, state-dict round trips."""
import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from convlora_lite.analysis.parameter_counts import count_parameters
from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam, get_config, sam_from_config
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.peft import apply_peft
from convlora_lite.peft.sam_adapter import high_frequency_component
from convlora_lite.peft.vpt import prompted_attention

BASELINES = ("bitfit", "adapter", "vpt", "lst", "sam_adapter", "ssf")
#: Methods designed to start as the unadapted model (VPT's random prompts do not).
IDENTITY_AT_INIT = ("bitfit", "adapter", "lst", "sam_adapter", "ssf")
#: Methods wired with forward hooks (their copies must stay independent).
HOOKED = ("adapter", "lst", "sam_adapter", "ssf")


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return PromptFreeSAM(build_sam("test_tiny")).eval()


@pytest.fixture()
def images():
    return torch.randn(2, 3, 64, 64)


def adapted(base, method, **cfg):
    return apply_peft(copy.deepcopy(base), method, **cfg)


def trainable_encoder(model) -> dict:
    return {n: p for n, p in model.image_encoder.named_parameters() if p.requires_grad}


def perturb_(params, scale=0.1):
    """Move every given parameter off its initial value (so zero-initialised ones matter)."""
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn_like(p))


# ---------------------------------------------------------------- what trains, and how much
def expected_trainable(base, method) -> set:
    """Hand-written rule for the encoder names each method trains (test_tiny: 2 blocks)."""
    encoder = base.image_encoder
    names = [n for n, _ in encoder.named_parameters()]
    blocks = range(len(encoder.blocks))
    if method == "bitfit":
        return {n for n in names if n.endswith(".bias")}
    if method == "adapter":
        return {f"blocks.{i}.{a}_adapter.{layer}.{w}" for i in blocks for a in ("attn", "mlp")
                for layer in ("down", "up") for w in ("weight", "bias")}
    if method == "vpt":
        return {f"blocks.{i}.prompts" for i in blocks}
    if method == "ssf":
        ops = [n for n, m in encoder.named_modules() if type(m) in (nn.Linear, nn.Conv2d, nn.LayerNorm, LayerNorm2d)]
        return {f"{n}.ssf_{s}" for n in ops for s in ("scale", "shift")}
    prefix = {"lst": "ladder_side.", "sam_adapter": "prompt_generator."}[method]
    return {n for n, _ in adapted(base, method).image_encoder.named_parameters() if n.startswith(prefix)}


@pytest.mark.parametrize("method", BASELINES)
def test_trainable_set_is_exactly_the_method(base_model, method):
    model = adapted(base_model, method)
    assert set(trainable_encoder(model)) == expected_trainable(base_model, method)
    # SAM's own parameters keep their names; all but BitFit's biases stay frozen.
    adapted_names = dict(model.image_encoder.named_parameters())
    for name, _ in base_model.image_encoder.named_parameters():
        assert adapted_names[name].requires_grad == (method == "bitfit" and name.endswith(".bias")), name
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    for name, p in model.mask_decoder.named_parameters():
        assert p.requires_grad == (not name.startswith("iou_prediction_head.")), name


#: ViT-H: d = 1280, depth 32, MLP 5120, patch 16, 64 x 64 tokens, neck 256; hand formulas of the
#: module docstrings, and the paper's #Params (M) and Ratio (%).
D, DEPTH, MLP, NECK = 1280, 32, 5120, 256
VIT_H_ENCODER_ADDITIONS = {
    "bitfit": DEPTH * (D + 3 * D + D + D + MLP + D) + D + 2 * NECK,
    "adapter": DEPTH * 2 * (2 * D * 2 + 2 + D),
    "vpt": DEPTH * 12 * D,
    "lst": 4 * (12 * 320 ** 2 + 13 * 320 + 2 * 127 * 20) + 4 * (D * 320 + 320) + 4 + 64 * 64 * 320 + 2 * 320
    + 320 * NECK + NECK,
    "sam_adapter": (3 * 16 * 16 * 80 + 80) + (D * 80 + 80) + DEPTH * (80 * 80 + 80) + (80 * D + D),
    "ssf": DEPTH * 2 * (D + 3 * D + D + D + MLP + D) + 2 * D + 2 * 4 * NECK,
}
PAPER = {"bitfit": (3.96, 0.62), "adapter": (3.92, 0.61), "vpt": (4.00, 0.62), "lst": (11.49, 1.77),
         "sam_adapter": (3.98, 0.62), "ssf": (4.42, 0.69)}
SAM_VIT_H = 641_090_608


@pytest.mark.parametrize("method", BASELINES)
def test_vit_h_count_lands_on_the_paper_table(method):
    with torch.device("meta"):
        model = PromptFreeSAM(build_sam("vit_h", device="meta"))
        before = sum(p.numel() for p in model.parameters())
        apply_peft(model, method)
    encoder = sum(p.numel() for p in model.image_encoder.parameters() if p.requires_grad)
    assert encoder == VIT_H_ENCODER_ADDITIONS[method]
    trainable = count_parameters(model)["trainable"]
    assert trainable == encoder + 3_505_536  # + the prompt-free decoder without its IoU head
    paper_m, paper_ratio = PAPER[method]
    assert abs(trainable / 1e6 - paper_m) <= 0.01
    if method != "ssf":  # SSF: 4.411 M against 4.42 M (documented in ssf.py)
        assert round(trainable / 1e6, 2) == paper_m
    added = sum(p.numel() for p in model.parameters()) - before
    # The paper's Ratio divides by the adapted model (SAM + what the method adds).
    assert round(100 * trainable / (SAM_VIT_H + added), 2) == paper_ratio


# ---------------------------------------------------------------- training behaviour
def segmentation_loss(model, images):
    out = model(images)
    target = (images[:, :1] > 0).float()
    return F.binary_cross_entropy_with_logits(out.logits, target) + out.aux_loss


@pytest.mark.parametrize("method", BASELINES)
def test_frozen_weights_unchanged_after_an_optimiser_step(base_model, images, method):
    model = adapted(base_model, method).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    segmentation_loss(model, images).backward()
    optimiser.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[name]), f"frozen {name} changed"
    moved = [n for n, p in trainable_encoder(model).items() if not torch.equal(p, before[f"image_encoder.{n}"])]
    assert moved, "no encoder parameter of the method moved"


@pytest.mark.parametrize("method", IDENTITY_AT_INIT)
def test_starts_as_the_unadapted_model(base_model, images, method):
    model = adapted(base_model, method)
    with torch.no_grad():
        assert torch.equal(model.image_encoder(images), base_model.image_encoder(images))
        assert torch.equal(model(images).logits, base_model(images).logits)


def test_vpt_does_not_start_as_the_unadapted_model(base_model, images):
    """VPT's prompts are random (Xavier-uniform): every token gives them attention from the start."""
    model = adapted(base_model, "vpt")
    with torch.no_grad():
        assert not torch.allclose(model.image_encoder(images), base_model.image_encoder(images), atol=1e-4)


@pytest.mark.parametrize("method", BASELINES)
def test_gradients_reach_every_trainable_tensor(base_model, images, method):
    model = adapted(base_model, method).train()
    params = trainable_encoder(model)
    perturb_(params.values())  # zero-initialised outputs would block the gradient of what feeds them
    segmentation_loss(model, images).backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


# ---------------------------------------------------------------- SAM's windowed 4-D blocks
def windowed_sam(image_size):
    """A narrow SAM with SAM's own tiling: patch 16, window 14 (16 x 16 tokens -> 4 padded windows at
    256 px; 64 x 64 -> 25 windows at 1024 px). At 256 px block 1 is global; at 1024 px both blocks
    are windowed (a global 64 x 64 block is slow on a CPU; 256 px covers global blocks)."""
    cfg = dataclasses.replace(get_config("test_tiny"), embed_dim=16, num_heads=2, image_size=image_size,
                              patch_size=16, window_size=14, global_attn_indexes=(1,) if image_size == 256 else ())
    return sam_from_config(cfg)


@pytest.mark.parametrize("image_size", [256, 1024])
@pytest.mark.parametrize("method", BASELINES)
def test_windowed_blocks_at_256_and_1024_px(method, image_size):
    base = windowed_sam(image_size)
    assert base.image_encoder.blocks[0].window_size == 14
    # LST taps the global blocks by default; with none (1024 px here) tap the last block.
    cfg = {"taps": [1]} if method == "lst" else {}
    model = apply_peft(copy.deepcopy(base), method, **cfg)
    image = torch.randn(1, 3, image_size, image_size)
    grid = image_size // 16
    with torch.no_grad():
        out = model.image_encoder(image)
        assert out.shape == (1, 32, grid, grid)
        if method in IDENTITY_AT_INIT:
            assert torch.equal(out, base.image_encoder(image))
    params = trainable_encoder(model)
    perturb_(params.values())
    model.image_encoder(image).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


# ---------------------------------------------------------------- saving and copying
@pytest.mark.parametrize("method", BASELINES)
def test_state_dict_round_trip(base_model, images, method, tmp_path):
    model = adapted(base_model, method)
    perturb_(trainable_encoder(model).values())
    trained = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trained, tmp_path / "adapter.safetensors")

    fresh = adapted(base_model, method)
    missing, unexpected = fresh.load_state_dict(load_file(tmp_path / "adapter.safetensors"), strict=False)
    assert not unexpected and not set(trained) & set(missing)
    with torch.no_grad():
        assert torch.equal(fresh(images).logits, model(images).logits)
    other = adapted(base_model, method)
    other.load_state_dict(model.state_dict())  # the full state dict, strict
    with torch.no_grad():
        assert torch.equal(other(images).logits, model(images).logits)


@pytest.mark.parametrize("method", HOOKED)
def test_deep_copy_hooks_follow_the_copy(base_model, images, method):
    model = adapted(base_model, method)
    clone = copy.deepcopy(model)
    perturb_(trainable_encoder(clone).values())
    with torch.no_grad():
        assert torch.equal(model(images).logits, base_model(images).logits)
        assert not torch.equal(clone(images).logits, model(images).logits)


# ---------------------------------------------------------------- method-specific references
def reference_prompted_attention(attn, x, prompts):
    """VPT's attention written out per head with an explicit relative-position bias:
    bias[(hq, wq), (hk, wk)] = q . Rh[hq - hk + H - 1] + q . Rw[wq - wk + W - 1]."""
    batch, height, width, dim = x.shape
    heads, n = attn.num_heads, prompts.shape[0]
    tokens = torch.cat([x.reshape(batch, height * width, dim), prompts.expand(batch, n, dim)], dim=1)
    q, k, v = attn.qkv(tokens).reshape(batch, -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    q = q[:, :, : height * width]  # (B, heads, HW, hd): the prompts' own outputs are dropped
    logits = q @ k.transpose(-2, -1) * attn.scale  # (B, heads, HW, HW + n)
    coords = torch.cartesian_prod(torch.arange(height), torch.arange(width))  # (HW, 2): row, col
    rel_h = attn.rel_pos_h[coords[:, None, 0] - coords[None, :, 0] + height - 1]  # (HW, HW, hd)
    rel_w = attn.rel_pos_w[coords[:, None, 1] - coords[None, :, 1] + width - 1]
    bias = torch.einsum("bhqc,qkc->bhqk", q, rel_h + rel_w)
    logits[..., : height * width] += bias
    out = logits.softmax(-1) @ v  # (B, heads, HW, hd)
    return attn.proj(out.permute(0, 2, 1, 3).reshape(batch, height, width, dim))


def test_vpt_attention_is_attention_over_window_tokens_and_prompts(base_model):
    attn = copy.deepcopy(base_model.image_encoder.blocks[0].attn)  # 3 x 3 windows
    x, prompts = torch.randn(4, 3, 3, 32), torch.randn(5, 32)
    with torch.no_grad():
        # 1. SAM's own attention on the concatenated sequence (no relative positions).
        attn.rel_pos_h.zero_()
        attn.rel_pos_w.zero_()
        plain = copy.deepcopy(attn)
        plain.use_rel_pos = False
        sequence = torch.cat([x.reshape(4, 9, 32), prompts.expand(4, 5, 32)], dim=1).unsqueeze(1)
        expected = plain(sequence)[:, 0, :9].reshape(4, 3, 3, 32)
        torch.testing.assert_close(prompted_attention(attn, x, prompts), expected)
        # 2. With relative positions: between image tokens only.
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
        torch.testing.assert_close(prompted_attention(attn, x, prompts), reference_prompted_attention(attn, x, prompts))


def test_sam_adapter_high_frequency_filter():
    constant = torch.full((1, 3, 32, 32), 0.7)
    torch.testing.assert_close(high_frequency_component(constant), torch.zeros_like(constant), atol=1e-6, rtol=0)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0  # the Nyquist frequency only
    checker = checker.expand(1, 3, 32, 32)
    torch.testing.assert_close(high_frequency_component(checker), checker.abs())
    # A low frequency inside the removed central square (side 2 * (sqrt(32*32*0.25) // 2) = 16) vanishes.
    low = torch.cos(2 * math.pi * 3 * torch.arange(32) / 32).expand(1, 3, 32, 32)
    torch.testing.assert_close(high_frequency_component(low), torch.zeros_like(low), atol=1e-6, rtol=0)


def test_sam_adapter_official_initialisation_is_not_the_identity(base_model, images):
    model = adapted(base_model, "sam_adapter", zero_init=False)
    with torch.no_grad():
        assert not torch.equal(model.image_encoder(images), base_model.image_encoder(images))


def test_lst_taps_the_global_blocks_and_sends_no_gradient_into_the_backbone(base_model, images):
    model = adapted(base_model, "lst")
    assert len(model.image_encoder.ladder_side.blocks) == 1  # test_tiny: block 1 is the only global one
    perturb_(trainable_encoder(model).values())
    x = images.clone().requires_grad_()
    (grad_adapted,) = torch.autograd.grad(model.image_encoder(x).sum(), x)
    x = images.clone().requires_grad_()
    (grad_base,) = torch.autograd.grad(base_model.image_encoder(x).sum(), x)
    assert torch.equal(grad_adapted, grad_base)


def test_ssf_official_initialisation(base_model):
    model = adapted(base_model, "ssf", init_std=0.02)
    scale = model.image_encoder.blocks[0].attn.qkv.ssf_scale
    assert scale.shape == (96,) and 0 < (scale - 1).abs().mean() < 0.1


@pytest.mark.parametrize("method, cfg, message", [
    ("adapter", {"bottleneck": 0}, "bottleneck"),
    ("vpt", {"num_prompts": 0}, "num_prompts"),
    ("lst", {"reduction": 3}, "reduction"),
    ("lst", {"taps": [5]}, "taps"),
    ("sam_adapter", {"scale_factor": 5}, "scale_factor"),
    ("sam_adapter", {"freq_ratio": 1.5}, "freq_ratio"),
    ("ssf", {"init_std": -1.0}, "init_std"),
])
def test_bad_options_are_clear_errors(base_model, method, cfg, message):
    with pytest.raises(ConfigError, match=message):
        adapted(base_model, method, **cfg)
