"""The explorers' drawing functions and their wiring: callbacks called directly, widgets driven by value."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from convlora_lite.analysis.expert_routing import record_routing
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.peft import apply_peft
from convlora_lite.plots import widgets


def _pixels(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


def _data():
    images = torch.rand(3, 3, 16, 16)
    masks = (torch.rand(3, 16, 16) > 0.5).float()
    ramp = torch.linspace(0, 1, 16).expand(16, 16)
    return images, masks, {"lora": [ramp] * 3, "conv_lora": [1 - ramp] * 3}


def test_draw_prediction_titles_the_choice_and_the_threshold_changes_the_picture():
    images, masks, predictions = _data()
    low = widgets.draw_prediction(images, masks, predictions, 1, "lora", 0.2)
    assert low._suptitle.get_text() == "image 2 of 3: lora, threshold 0.20"
    high = widgets.draw_prediction(images, masks, predictions, 1, "lora", 0.8)
    assert not np.array_equal(_pixels(low), _pixels(high))


def test_headless_explorers_are_static_figures(monkeypatch):
    monkeypatch.setenv("CONVLORA_HEADLESS", "1")
    images, masks, predictions = _data()
    assert isinstance(widgets.prediction_explorer(images, masks, predictions), Figure)


def test_live_explorer_redraws_on_every_change(monkeypatch):
    pytest.importorskip("ipywidgets")
    import ipywidgets as w

    monkeypatch.delenv("CONVLORA_HEADLESS", raising=False)
    calls = []

    def draw(index, method):
        calls.append((index, method))
        return Figure()

    controls = {"index": w.IntSlider(value=0, min=0, max=2), "method": w.Dropdown(options=["a", "b"], value="a")}
    box = widgets.explorer(draw, controls, {"index": 0, "method": "a"})
    assert calls == [(0, "a")] and box.caption.value == "index 0, method a"
    controls["index"].value = 2
    controls["method"].value = "b"
    assert calls == [(0, "a"), (2, "a"), (2, "b")] and box.caption.value == "index 2, method b"
    full = widgets.prediction_explorer(*_data())
    assert full.caption.value == "index 0, method conv_lora, threshold 0.5"


def test_expert_and_routing_drawings_show_the_layer():
    torch.manual_seed(0)
    model = apply_peft(PromptFreeSAM(build_sam("test_tiny", checkpoint=None)), "conv_lora").eval()
    layer = model.image_encoder.blocks[0].attn.qkv
    window = torch.randn(3, 3, 3)
    with torch.no_grad():
        layer.moe.bias.normal_()  # the experts start with a zero bias: make the check see it
    figure = widgets.draw_expert(layer.moe, window, 2.0)
    # the expert of scale 2 by its formula (docs/method.md): bicubic up x2, 3x3 conv + GELU, bicubic back down
    up = F.interpolate(window[None], scale_factor=2.0, mode="bicubic", align_corners=False)
    hidden = F.gelu(F.conv2d(up, layer.moe.weight[1], layer.moe.bias[1], padding=1))
    expected = F.interpolate(hidden, size=(3, 3), mode="bicubic", align_corners=False)[0, 0].detach().numpy()
    panels = [np.asarray(ax.images[0].get_array()) for ax in figure.axes[:3]]  # subplots first, then colour bars
    np.testing.assert_allclose(panels[0], window[0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(panels[1], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(panels[2], window[0].numpy() + expected, rtol=1e-5, atol=1e-6)
    every = widgets.draw_experts(layer.moe, window)  # the input, then the experts in order of scale
    drawn = [np.asarray(ax.images[0].get_array()) for ax in every.axes[:1 + layer.moe.num_experts]]
    assert [ax.get_title() for ax in every.axes[1:1 + layer.moe.num_experts]] == \
        [f"expert x{expert.scale:g}" for expert in layer.moe.experts]
    np.testing.assert_allclose(drawn[0], window[0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(drawn[2], expected, rtol=1e-5, atol=1e-6)
    limit = float(np.abs(np.stack(drawn[1:])).max())  # one colour scale for every expert: the largest output
    for ax in every.axes[1:1 + layer.moe.num_experts]:
        np.testing.assert_allclose(ax.images[0].get_clim(), (-limit, limit), rtol=1e-6)
    images = torch.randn(2, 3, 64, 64)
    routings = record_routing(model, images)
    grid = model.image_size // model.config.patch_size
    figure = widgets.draw_routing(np.random.rand(64, 64, 3), routings, routings[0].block, 1, grid)
    assert figure.axes[0].get_title().startswith(f"block {routings[0].block} (")
