"""Conv-LoRA: the fast layer against the official algorithm, direct formulas and the paper's counts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.peft import apply_peft, collect_aux_loss
from convlora_lite.peft.conv_lora import ConvLoRALinear, MoEConv
from convlora_lite.peft.conv_lora_official import OfficialConvLoRALinear
from convlora_lite.peft.moe_gate import NoisyTopKGate, load_balancing_loss, top_experts


def _randomise(module: nn.Module, scale: float = 1.0) -> None:
    """Give B and the gate non-zero weights so that the update and the routing are non-trivial."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("lora_B", "w_gate", "w_noise", "moe.bias")) or name == "bias":
                p.normal_(0, scale)


def _layer_pair(d_in=16, d_out=24, **options):
    fast = ConvLoRALinear(nn.Linear(d_in, d_out), **options)
    _randomise(fast)
    official = OfficialConvLoRALinear(nn.Linear(d_in, d_out), **options)
    official.load_state_dict(fast.state_dict())
    return fast, official


def _grads(layer, loss):
    params = [p for p in layer.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def _assert_grads_close(fast_grads, official_grads):
    for g_fast, g_official in zip(fast_grads, official_grads):
        if g_fast is None or g_official is None:
            assert (g_fast is None or torch.all(g_fast == 0)) and (g_official is None or torch.all(g_official == 0))
        else:
            torch.testing.assert_close(g_fast, g_official, rtol=1e-4, atol=1e-5)


def test_equals_base_at_init():
    base = nn.Linear(16, 24)
    layer = ConvLoRALinear(base)
    x = torch.randn(4, 5, 5, 16)
    assert torch.equal(layer(x), base(x))


@pytest.mark.parametrize("gated", [False, True])
def test_fast_equals_official_in_eval(gated):
    fast, official = _layer_pair(gated=gated)
    fast.eval(), official.eval()
    x = torch.randn(32, 6, 6, 16)
    y_fast, y_official = fast(x), official(x)
    torch.testing.assert_close(y_fast, y_official, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.aux_loss, official.aux_loss.reshape(()))
    assert torch.equal(fast.last_expert_index, official.last_expert_index)
    assert len(fast.last_expert_index.unique()) >= 4  # the comparison covers several experts
    torch.testing.assert_close(fast.routing_counts, official.routing_counts)
    _assert_grads_close(_grads(fast, y_fast.square().mean() + fast.aux_loss),
                        _grads(official, y_official.square().mean() + official.aux_loss.sum()))


def test_fast_equals_official_in_training_with_the_same_noise():
    fast, official = _layer_pair(dropout=0.0)
    fast.train(), official.train()
    x = torch.randn(32, 6, 6, 16)
    torch.manual_seed(7)
    y_fast = fast(x)
    torch.manual_seed(7)
    y_official = official(x)
    torch.testing.assert_close(y_fast, y_official, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.aux_loss, official.aux_loss.reshape(()))
    assert torch.equal(fast.last_expert_index, official.last_expert_index)
    _assert_grads_close(_grads(fast, y_fast.square().mean() + fast.aux_loss),
                        _grads(official, y_official.square().mean() + official.aux_loss.sum()))
    torch.manual_seed(8)
    fast(x)
    assert not torch.equal(fast.last_expert_index, official.last_expert_index)  # other noise, other routes


def test_fast_equals_official_on_a_tiny_sam_windowed_and_global_blocks():
    fast = apply_peft(build_sam("test_tiny"), "conv_lora")
    _randomise(fast, scale=0.5)
    official = apply_peft(build_sam("test_tiny"), "conv_lora", implementation="official")
    official.load_state_dict(fast.state_dict())
    images = torch.randn(2, 3, 64, 64)
    for training in (False, True):
        fast.train(training), official.train(training)
        torch.manual_seed(3)
        out_fast = fast.image_encoder(images)
        torch.manual_seed(3)
        out_official = official.image_encoder(images)
        torch.testing.assert_close(out_fast, out_official, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(collect_aux_loss(fast), collect_aux_loss(official))
    windowed, global_ = fast.image_encoder.blocks  # test_tiny: 9 windows of 3x3 per image, then the 8x8 grid
    assert windowed.attn.qkv.last_expert_index.shape == (2 * 9, 1)
    assert global_.attn.qkv.last_expert_index.shape == (2, 1)


@pytest.mark.parametrize("scale", [2, 3, 8])
def test_expert_matches_direct_formula(scale):
    moe = MoEConv(3, scales=[1, scale])
    expert = moe.experts[1]
    with torch.no_grad():
        expert.bias.normal_()  # a view: writes the mixture's stacked bias
    assert torch.equal(moe.bias[1], expert.bias) and moe.bias[1].abs().sum() > 0
    h = torch.randn(2, 3, 5, 5)
    up = F.interpolate(h, scale_factor=scale, mode="bicubic", align_corners=False)
    hidden = F.gelu(F.conv2d(up, moe.weight[1], moe.bias[1], padding=1))
    expected = F.interpolate(hidden, size=(5, 5), mode="bicubic", align_corners=False)
    torch.testing.assert_close(expert(h), expected)
    assert expert.num_parameters == 84 and expert.scale == scale


def test_scale_one_expert_skips_interpolation(monkeypatch):
    expert = MoEConv(3, scales=[1]).experts[0]
    h = torch.randn(2, 3, 4, 4)
    expected = F.gelu(F.conv2d(h, expert.weight, expert.bias, padding=1))
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: pytest.fail("scale 1 must not interpolate"))
    assert torch.equal(expert(h), expected)


def test_experts_start_as_the_official_conv2d_with_a_zero_bias():
    torch.manual_seed(4)
    moe = MoEConv(3, scales=[1, 2, 3])
    torch.manual_seed(4)
    convs = [nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)]  # the official experts' init, in order
    for expert, conv in zip(moe.experts, convs):
        assert torch.equal(expert.weight, conv.weight)
    assert torch.all(moe.bias == 0) and moe.weight.shape == (3, 3, 3, 3, 3)


def test_state_dict_with_one_conv_module_per_expert_loads():
    """Runs saved before the experts' convolutions were stacked hold ``moe.experts.{e}.conv.{weight,bias}``."""
    layer = ConvLoRALinear(nn.Linear(8, 8), num_experts=3)
    _randomise(layer)
    state = layer.state_dict()
    legacy = {k: v for k, v in state.items() if k not in ("moe.weight", "moe.bias")}
    for e in range(3):
        legacy[f"moe.experts.{e}.conv.weight"] = state["moe.weight"][e].clone()
        legacy[f"moe.experts.{e}.conv.bias"] = state["moe.bias"][e].clone()
    fresh = ConvLoRALinear(nn.Linear(8, 8), num_experts=3)
    fresh.load_state_dict(legacy)
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_fast_moe_gives_each_sample_its_chosen_experts_output():
    moe = MoEConv(3, scales=list(range(1, 9))).eval()
    _randomise(moe)
    angles = torch.arange(8) * (2 * torch.pi / 8)
    with torch.no_grad():  # expert e wins for pooled features pointing at angle e * 45 degrees
        moe.gate.w_gate.copy_(torch.stack([angles.cos(), angles.sin(), torch.zeros(8)]))
    h = torch.randn(64, 3, 6, 6) + 2 * torch.randn(64, 3, 1, 1)
    delta, routing = moe(h.permute(0, 2, 3, 1))  # the layer works channels last
    chosen = routing.expert_index[:, 0]
    assert set(chosen.tolist()) == set(range(8))
    for n in range(h.shape[0]):
        expected = moe.experts[chosen[n]](h[n:n + 1])[0].permute(1, 2, 0)
        torch.testing.assert_close(delta[n], expected, rtol=1e-4, atol=1e-5)


def test_non_square_and_rectangular_maps():
    layer = ConvLoRALinear(nn.Linear(8, 8), scales=[1, 2, 3], num_experts=3)
    _randomise(layer)
    layer.eval()
    x = torch.randn(3, 4, 6, 8)  # H != W
    delta, routing = layer.moe(F.linear(x, layer.lora_A))
    for n in range(3):
        expert = layer.moe.experts[routing.expert_index[n, 0]]
        expected = expert(F.linear(x[n:n + 1], layer.lora_A).permute(0, 3, 1, 2))[0].permute(1, 2, 0)
        torch.testing.assert_close(delta[n], expected, rtol=1e-4, atol=1e-5)


def test_3d_input_is_viewed_as_a_square_map():
    layer = ConvLoRALinear(nn.Linear(8, 12))
    _randomise(layer)
    layer.eval()
    x = torch.randn(2, 5, 5, 8)
    torch.testing.assert_close(layer(x.reshape(2, 25, 8)), layer(x).reshape(2, 25, 12))
    official = OfficialConvLoRALinear(nn.Linear(8, 12)).eval()
    official.load_state_dict(layer.state_dict())
    torch.testing.assert_close(official(x.reshape(2, 25, 8)), layer(x).reshape(2, 25, 12), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="not a square"):
        layer(torch.randn(2, 24, 8))
    with pytest.raises(ConfigError, match="expects"):
        layer(torch.randn(24, 8))


def test_ungated_gate_learns_only_from_the_aux_loss():
    layer = ConvLoRALinear(nn.Linear(8, 8))
    _randomise(layer)
    layer.train()
    y = layer(torch.randn(6, 4, 4, 8))
    gate = [layer.moe.gate.w_gate, layer.moe.gate.w_noise]
    assert all(g is None for g in torch.autograd.grad(y.sum(), gate, retain_graph=True, allow_unused=True))
    aux_grads = torch.autograd.grad(layer.aux_loss, gate)
    assert all(g.abs().sum() > 0 for g in aux_grads)


def test_gated_gate_learns_from_the_task_loss_with_top_2():
    layer = ConvLoRALinear(nn.Linear(8, 8), gated=True, top_k=2)
    _randomise(layer)
    layer.eval()  # no noise: only the task loss path through the gate values
    y = layer(torch.randn(6, 4, 4, 8))
    (grad,) = torch.autograd.grad(y.square().sum(), [layer.moe.gate.w_gate])
    assert grad.abs().sum() > 0


def test_equal_logits_go_to_the_expert_of_lower_index_in_both_implementations():
    logits = torch.randint(0, 3, (500, 8)).float()  # many ties
    expected = np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :3]  # best first, ties in index order
    assert np.array_equal(top_experts(logits, 3).numpy(), expected)
    distinct = torch.randn(500, 8)
    assert torch.equal(top_experts(distinct, 3), distinct.topk(3, dim=1).indices)
    # an untrained gate (w_gate = 0, every logit equal) sends every window to expert 0, fast and official alike
    fast, official = _layer_pair()
    with torch.no_grad():
        for layer in (fast, official):
            layer.moe.gate.w_gate.zero_()
    fast.eval(), official.eval()
    x = torch.randn(6, 4, 4, fast.base.in_features)
    torch.testing.assert_close(fast(x), official(x), rtol=1e-4, atol=1e-4)
    assert fast.last_expert_index.unique().tolist() == official.last_expert_index.unique().tolist() == [0]


def test_gate_values_are_the_softmax_of_the_chosen_logits():
    top_1 = NoisyTopKGate(3, 4, top_k=1).eval()
    _randomise(top_1)
    assert top_1(torch.randn(5, 3)).gate_values is None  # a softmax over one logit: identically 1
    top_2 = NoisyTopKGate(3, 4, top_k=2).eval()
    _randomise(top_2)
    pooled = torch.randn(5, 3)
    routing = top_2(pooled)
    logits = pooled @ top_2.w_gate
    torch.testing.assert_close(routing.gate_values, logits.topk(2, dim=1).values.softmax(dim=1))
    assert torch.equal(routing.expert_index, logits.topk(2, dim=1).indices)


def test_aux_loss_hand_formula_in_eval():
    gate = NoisyTopKGate(2, 4, top_k=1).eval()
    with torch.no_grad():
        gate.w_gate.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0]]))
    pooled = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.4], [0.1, 1.0]])
    # logits: [1,0,0,0] -> 0; [2,0,0,0] -> 0; [0,.4,.8,0] -> 2; [.1,1,2,0] -> 2
    routing = gate(pooled)
    assert routing.expert_index[:, 0].tolist() == [0, 0, 2, 2]
    counts = np.array([2.0, 0.0, 2.0, 0.0])  # importance (gate values are 1) and load
    cv2 = counts.var(ddof=1) / (counts.mean() ** 2 + 1e-10)
    assert gate.aux_loss(routing.balance).item() == pytest.approx(0.01 * 2 * cv2, rel=1e-6)


def test_aux_loss_hand_formula_in_training():
    gate = NoisyTopKGate(2, 3, top_k=1).train()
    w_gate = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]])
    w_noise = np.array([[0.2, 0.0, -0.3], [0.1, 0.5, 0.0]])
    with torch.no_grad():
        gate.w_gate.copy_(torch.tensor(w_gate))
        gate.w_noise.copy_(torch.tensor(w_noise))
    pooled = np.array([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.0], [0.7, 0.7]])
    torch.manual_seed(5)
    routing = gate(torch.tensor(pooled, dtype=torch.float32))
    torch.manual_seed(5)
    noise = torch.randn(4, 3).double().numpy()

    clean = pooled @ w_gate
    std = np.log1p(np.exp(pooled @ w_noise)) + 1e-2
    noisy = clean + noise * std
    top = np.sort(noisy, axis=1)[:, ::-1]
    prob = np.empty_like(clean)
    for n in range(4):
        for e in range(3):
            threshold = top[n, 1] if noisy[n, e] > top[n, 1] else top[n, 0]
            prob[n, e] = norm.cdf((clean[n, e] - threshold) / std[n, e])
    load = prob.sum(0)
    importance = np.bincount(noisy.argmax(1), minlength=3).astype(float)

    def cv2(v):
        return v.var(ddof=1) / (v.mean() ** 2 + 1e-10)

    assert routing.expert_index[:, 0].tolist() == noisy.argmax(1).tolist()
    assert gate.aux_loss(routing.balance).item() == pytest.approx(0.01 * (cv2(importance) + cv2(load)), rel=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_top_2_aux_loss_equals_official(training):
    fast, official = _layer_pair(dropout=0.0, top_k=2)
    fast.train(training), official.train(training)
    x = torch.randn(32, 6, 6, 16)
    torch.manual_seed(7)
    fast(x)
    torch.manual_seed(7)
    official(x)
    assert torch.equal(fast.last_expert_index, official.last_expert_index)
    torch.testing.assert_close(fast.aux_loss, official.aux_loss)
    assert fast.aux_loss > 0


@pytest.mark.parametrize("training", [False, True])
def test_load_balancing_loss_of_several_layers_in_one_batch(training):
    gates = [NoisyTopKGate(4, 6, top_k=2).train(training) for _ in range(3)]
    for gate in gates:
        _randomise(gate)
    balances = [gate(torch.randn(rows, 4)).balance for gate, rows in zip(gates, (5, 1, 12))]
    per_layer = [load_balancing_loss([balance], 2, 0.01) for balance in balances]
    batched = load_balancing_loss(balances, 2, 0.01)
    torch.testing.assert_close(batched, torch.stack(per_layer).sum())
    assert all(loss > 0 for loss in per_layer)
    grads = torch.autograd.grad(batched, [gates[0].w_gate, gates[2].w_gate])
    assert all(g.abs().sum() > 0 for g in grads)


def test_routing_counts_are_recorded_without_host_sync(monkeypatch):
    layer = ConvLoRALinear(nn.Linear(8, 8), top_k=2)
    _randomise(layer)
    layer.train()
    x = torch.randn(10, 4, 4, 8)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync in the fast Conv-LoRA forward")

    with monkeypatch.context() as patch:
        for name in ("tolist", "item", "__bool__"):
            patch.setattr(torch.Tensor, name, forbidden)
        patch.setattr(torch, "nonzero", forbidden)
        layer(x)
    assert isinstance(layer.routing_counts, torch.Tensor) and layer.routing_counts.shape == (8,)
    expected = torch.bincount(layer.last_expert_index.flatten(), minlength=8).float()
    assert torch.equal(layer.routing_counts, expected)
    assert layer.routing_counts.sum().item() == 20


def test_apply_conv_lora_trainable_set():
    sam = apply_peft(build_sam("test_tiny"), "conv_lora")
    assert all(isinstance(b.attn.qkv, ConvLoRALinear) for b in sam.image_encoder.blocks)
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    adapter = set()
    for i in range(2):
        prefix = f"image_encoder.blocks.{i}.attn.qkv."
        adapter |= {prefix + "lora_A", prefix + "lora_B", prefix + "moe.gate.w_gate", prefix + "moe.gate.w_noise"}
        adapter |= {prefix + "moe.weight", prefix + "moe.bias"}
    decoder = {f"mask_decoder.{n}" for n, _ in sam.mask_decoder.named_parameters()
               if not n.startswith("iou_prediction_head.")}
    assert trainable == adapter | decoder


def test_parameter_counts_on_meta_vit_h():
    sam = apply_peft(build_sam("vit_h", device="meta"), "conv_lora")
    for block in sam.image_encoder.blocks:
        qkv = block.attn.qkv
        assert qkv.lora_A.numel() + qkv.lora_B.numel() == 3 * 1280 + 3840 * 3
        assert sum(p.numel() for p in qkv.moe.parameters()) == 2 * 3 * 8 + 8 * 84
    moe_total = sum(p.numel() for n, p in sam.named_parameters() if ".moe." in n)
    assert moe_total == 23_040


def test_state_dict_round_trip_and_official_compatibility():
    a = apply_peft(build_sam("test_tiny"), "conv_lora")
    _randomise(a, scale=0.5)
    b = apply_peft(build_sam("test_tiny"), "conv_lora")
    c = apply_peft(build_sam("test_tiny"), "conv_lora", implementation="official")
    state = a.state_dict()
    b.load_state_dict(state)
    c.load_state_dict(state)
    images = torch.randn(1, 3, 64, 64)
    for model in (a, b, c):
        model.eval()
    torch.testing.assert_close(b.image_encoder(images), a.image_encoder(images))
    torch.testing.assert_close(c.image_encoder(images), a.image_encoder(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"num_experts": 3, "scales": [1, 2]}, "scales"),
    ({"top_k": 9}, "top_k"),
    ({"scales": [0.5, 1, 2, 3, 4, 5, 6, 7]}, "scales"),
    ({"implementation": "cuda"}, "implementation"),
])
def test_bad_options_raise_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        apply_peft(build_sam("test_tiny"), "conv_lora", **options)
