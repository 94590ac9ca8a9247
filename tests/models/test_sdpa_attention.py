"""SAM's attention through scaled_dot_product_attention equals Meta's (fp32 and bf16, forward and gradients) and
keeps no (L x L) matrix for the backward pass."""
import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from convlora_lite import apply_peft, build_sam
from convlora_lite.models.sdpa_attention import SdpaAttention, enable_sdpa_attention


def _pair(size, use_rel_pos=True, dim=48, heads=4):
    torch.manual_seed(0)
    meta = Attention(dim, heads, use_rel_pos=use_rel_pos, rel_pos_zero_init=False, input_size=(size, size))
    if use_rel_pos:
        with torch.no_grad():
            meta.rel_pos_h.normal_(0, 0.5), meta.rel_pos_w.normal_(0, 0.5)
    sdpa = Attention(dim, heads, use_rel_pos=use_rel_pos, input_size=(size, size))
    sdpa.load_state_dict(meta.state_dict())
    sdpa.__class__ = SdpaAttention
    return meta, sdpa


def _forward_backward(module, x):
    x = x.detach().requires_grad_(True)
    out = module(x)
    grads = torch.autograd.grad(out.float().square().sum(), [x] + list(module.parameters()))
    return out.float(), [g.float() for g in grads]


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("size, use_rel_pos", [(7, True), (14, True), (5, False)])
def test_equals_meta_forward_and_gradients(dtype, tol, size, use_rel_pos):
    meta, sdpa = (m.to(dtype) for m in _pair(size, use_rel_pos))
    x = torch.randn(2, size, size, 48).to(dtype)
    out_meta, grads_meta = _forward_backward(meta, x)
    out_sdpa, grads_sdpa = _forward_backward(sdpa, x)
    scale = out_meta.abs().max()
    torch.testing.assert_close(out_sdpa / scale, out_meta / scale, rtol=tol, atol=tol)
    for g_sdpa, g_meta in zip(grads_sdpa, grads_meta):
        torch.testing.assert_close(g_sdpa / g_meta.abs().max(), g_meta / g_meta.abs().max(), rtol=tol, atol=tol)
    if use_rel_pos:
        assert grads_meta[-1].abs().sum() > 0  # the relative positions are part of the compared gradients


def test_keeps_no_attention_matrix_for_the_backward():
    size = 32  # L = 1024 tokens: an (L x L) matrix per head would be 4 x 4 MiB
    meta, sdpa = _pair(size, dim=64, heads=4)
    x = torch.randn(1, size, size, 64, requires_grad=True)
    largest = {}
    for name, module in (("meta", meta), ("sdpa", sdpa)):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            module(x)
        largest[name] = max(sizes)
    assert largest["meta"] >= 4 * 1024 * 1024  # Meta's softmax: heads x L x L
    assert largest["sdpa"] <= 1024 * 4 * 128  # O(L x d): tokens x heads x the widened head


def test_enable_on_a_sam_with_conv_lora_keeps_names_and_outputs():
    sam = apply_peft(build_sam("test_tiny", checkpoint=None), "conv_lora").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = sam.image_encoder(images)
    names = [n for n, _ in sam.named_parameters()]
    enable_sdpa_attention(sam.image_encoder)
    assert all(type(b.attn) is SdpaAttention for b in sam.image_encoder.blocks)
    assert [n for n, _ in sam.named_parameters()] == names
    with torch.no_grad():
        torch.testing.assert_close(sam.image_encoder(images), expected, rtol=1e-4, atol=1e-5)


def test_a_run_config_chooses_the_attention():
    from convlora_lite.errors import ConfigError
    from convlora_lite.training import TrainConfig, build_model

    options = dict(model="test_tiny", image_size=64, checkpoint=None)
    sdpa = build_model(TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", attention="sdpa", **options))
    meta = build_model(TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", **options))
    assert {type(b.attn) for b in sdpa.image_encoder.blocks} == {SdpaAttention}
    assert {type(b.attn) for b in meta.image_encoder.blocks} == {Attention}
    with pytest.raises(ConfigError, match="attention='flash'"):
        TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", attention="flash", **options)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_trains_and_evaluates_under_cudas_autocast_policy(dtype):
    """The dtypes a GPU run meets (CUDA's autocast emulated on the CPU: tests/cuda_autocast.py)."""
    from cuda_autocast import EmulatedCudaAutocast

    from convlora_lite.training import TrainConfig, build_model
    from convlora_lite.training.losses import structure_loss

    config = TrainConfig.resolve("synth_polyp", "conv_lora", "smoke", model="test_tiny", image_size=64,
                                 checkpoint=None, attention="sdpa")
    model = build_model(config).train()
    images, masks = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    with EmulatedCudaAutocast(dtype):
        out = model(images)
        loss = structure_loss(out.logits, masks) + out.aux_loss
    loss.backward()
    assert out.logits.dtype == dtype and torch.isfinite(loss)
    assert model.image_encoder.blocks[1].attn.qkv.lora_B.grad.abs().sum() > 0  # B (A waits for B to leave 0)
    with torch.no_grad(), EmulatedCudaAutocast(dtype):
        assert torch.isfinite(model.eval()(images).logits).all()
