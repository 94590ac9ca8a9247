"""The optimiser: fused AdamW equals the reference single-tensor AdamW; gradient clipping equals the hand formula."""
import pytest
import torch
from torch import nn

from convlora_lite.training.optim import FUSED_ADAMW_DEVICES, build_optimizer, clip_gradients


def _model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    model[0].weight.requires_grad_(False)  # frozen weights take no part
    return model


def test_fused_adamw_takes_the_reference_steps():
    fused_model, reference_model = _model(), _model()
    optimizer = build_optimizer(fused_model, lr=1e-2, weight_decay=1e-4, device="cpu")
    assert optimizer.defaults["fused"] == ("cpu" in FUSED_ADAMW_DEVICES)
    reference = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                                   for g in build_optimizer(reference_model, 1e-2, 1e-4).param_groups],
                                  lr=1e-2, betas=(0.9, 0.999), eps=1e-6, foreach=False, fused=False)
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((fused_model, optimizer), (reference_model, reference)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(fused_model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(fused_model[2].weight, _model()[2].weight)  # it moved


@pytest.mark.parametrize("max_norm", [0.01, 100.0])
def test_clip_gradients_is_the_global_norm_formula(max_norm):
    model = _model()
    model(torch.randn(8, 4)).square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(grads) == 5  # the frozen weight has none
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    returned = clip_gradients(model, max_norm)
    torch.testing.assert_close(returned, norm)
    factor = min(1.0, max_norm / (norm.item() + 1e-6))
    for g, p in zip(grads, (p for p in model.parameters() if p.grad is not None)):
        torch.testing.assert_close(p.grad, g * factor)
