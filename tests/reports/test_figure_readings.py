"""The sentences of notebooks 01, 02, 08, 09 and 10, from hand-written inputs with hand-computed numbers."""
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from convlora_lite.reports import figure_readings as fr


def probe(test, train=1.0, chance=1 / 6):
    return SimpleNamespace(test_accuracy=test, train_accuracy=train, chance=chance)


def test_the_probe_reading_states_noise_chance_the_ordering_and_the_random_floor():
    results = {"micro_sam": probe(12 / 48), "micro_mae": probe(5 / 48, train=0.755), "random init": probe(10 / 48)}
    # Wilson 95 % half-width at 12/48: 1.96 sqrt(0.25 * 0.75 / 48 + 1.96^2 / (4 * 48^2)) / (1 + 1.96^2 / 48) = 11.9
    assert fr.wilson_half_width(0.25, 48) == pytest.approx(11.93, abs=0.01)
    assert fr.probe_reading(results, 48, "micro_sam", "micro_mae", "random init") == [
        "On 48 test images one image is 2.1 points, and a 95 % interval on each accuracy spans up to +-12 points: "
        "micro_sam 25.0 %, micro_mae 10.4 %, random init 20.8 % against chance 16.7 %.",
        "micro_mae is below chance (by 6.3 points) and fits 75.5 % of its own training images: its pooled features "
        "hold no usable class information here.",
        "This probe does not reproduce the paper's ordering (MAE above SAM): micro_mae 10.4 % against micro_sam "
        "25.0 %, -14.6 points (7 test images).",
        "Random weights (random init) score 20.8 %: micro_mae does not even beat it, so this small probe cannot rank "
        "the pretrainings."]
    # the paper's ordering, clear of random weights by more than the widest interval (45.6 > 20.8 + 24.0)
    ordered = {"SAM": probe(0.30, chance=0.1), "MAE": probe(0.70, chance=0.1), "random": probe(0.10, chance=0.1)}
    lines = fr.probe_reading(ordered, 10, "SAM", "MAE", "random")
    assert lines[1] == "This probe reproduces the paper's ordering (MAE above SAM): MAE 70.0 % against SAM 30.0 %, " \
                       "+40.0 points (4 test images)."
    assert lines[2] == "Random weights (random) score 10.0 %: MAE beats it by more than the interval."
    tie = fr.probe_reading({"SAM": probe(0.30, chance=0.1), "MAE": probe(0.30, chance=0.1)}, 10, "SAM", "MAE")
    assert tie[1] == "This probe does not reproduce the paper's ordering (MAE above SAM): MAE and SAM tie at 30.0 %."
    close = {"SAM": probe(0.30, chance=0.1), "MAE": probe(0.40, chance=0.1), "random": probe(0.20, chance=0.1)}
    assert fr.probe_reading(close, 10, "SAM", "MAE", "random")[2] == "Random weights (random) score 20.0 %: no " \
        "pretraining beats it by more than the interval, so this small probe cannot rank them."


def test_the_attention_reading_compares_global_blocks_with_uniform_attention():
    from convlora_lite.analysis.attention_distance import uniform_attention_distance

    # a 2 x 2 grid: each token is 0, 1, 1 and sqrt(2) tokens from the four keys; mean (2 + sqrt 2) / 4 tokens
    assert uniform_attention_distance(2, 16) == pytest.approx((2 + math.sqrt(2)) / 4 * 16)
    table = pd.DataFrame([dict(block=b, head=h, kind=k, distance_px=d, window_px=w) for b, k, w, ds in (
        (0, "windowed", 96, (10.0, 20.0)), (1, "global", 256, (100.0, 110.0)), (2, "windowed", 96, (5.0, 7.0)),
        (3, "global", 256, (50.0, 60.0))) for h, d in enumerate(ds)])
    assert fr.attention_reading(table, 100.0, "enc") == (
        "enc: global block 1 attends at 105.0 px, 105 % of the 100.0 px of uniform attention (as spread as uniform "
        "attention); global block 3 attends at 55.0 px, 55 % of the 100.0 px of uniform attention (more local than "
        "uniform attention); the most local block is windowed block 2 (6.0 px inside a 96 px window).")
    global_only = table[table["kind"] == "global"]  # e.g. an MAE ViT: no windowed block
    assert fr.attention_reading(global_only, 100.0, "mae") == (
        "mae: global block 1 attends at 105.0 px, 105 % of the 100.0 px of uniform attention (as spread as uniform "
        "attention); global block 3 attends at 55.0 px, 55 % of the 100.0 px of uniform attention (more local than "
        "uniform attention); no block of this encoder is windowed.")


def test_the_gate_gradient_reading_says_who_trains_the_gate():
    aux = torch.tensor([[0.0, -6.683e-3], [1e-3, 0.0]])
    text = fr.gate_gradient_reading(None, aux)
    assert text.startswith("The task loss sends no gradient to W_gate")
    assert "Only the load-balancing loss (weight 0.01, in training) trains the gate (max |gradient| 6.7e-03 " \
           "here)" in text
    assert fr.gate_gradient_reading(torch.zeros(2, 2), aux) == text  # a zero gradient is no path either
    reached = fr.gate_gradient_reading(torch.tensor([[2e-4]]), aux)
    assert reached.startswith("The task loss reaches W_gate (max |gradient| 2.0e-04)")


def test_the_area_and_disagreement_readings_count_pixels():
    masks = torch.zeros(1, 8, 8)
    masks[0, 2:6, 2:6] = 1
    wide, narrow = masks.clone(), torch.zeros(1, 8, 8)
    wide[0, 1, 2:6] = 1  # 16 + 4 pixels: 1.25 x the area, IoU 16 / 20
    narrow[0, 2:4, 2:6] = 1  # 8 pixels: 0.5 x, IoU 8 / 16
    assert fr.area_reading(masks, {"vpt": wide, "lora": narrow}) == (
        "Per image: vpt marks more than the truth in 1 of 1 images (1.25 x its area on average, IoU 80.0); lora marks "
        "more than the truth in 0 of 1 images (0.50 x its area on average, IoU 50.0).")
    ring = fr.rim(masks, 1)[0]  # dilated [1:7] minus eroded [3:5]: 36 - 4 pixels
    assert ring.sum() == 32 and ring[1, 3] and not ring[3, 3] and not ring[7, 7]
    second = masks.clone()
    second[0, 1, 3] = second[0, 7, 7] = 1  # one extra pixel on the rim, one off it: 2 of 64 differ
    assert fr.disagreement_reading(masks, masks, second, ("lora", "conv_lora"), width=1) == (
        "lora and conv_lora differ on 3.1-3.1 % of the pixels of each image; 50.0 % of those lie within 1 px of the "
        "edge of the mask both predict and 50.0 % within 1 px of the true boundary. conv_lora marks more pixels that "
        "lora leaves out than the reverse in 1 of 1 images (2 against 0 pixels in all).")


def test_the_permutation_test_and_the_region_reading_give_n_and_p():
    # 3 against 3 fully separated: 2 of the C(6, 3) = 20 labellings are as extreme, p = 0.1
    assert fr.permutation_p_value([0, 0, 0], [10, 10, 10]) == pytest.approx(0.1, abs=0.01)
    assert fr.permutation_p_value([1, 2, 3], [1, 2, 3]) == 1.0
    rows = [dict(block=0, region="object", border=False, scale=1.0)] * 5 + \
        [dict(block=0, region="background", border=True, scale=8.0)] * 5 + \
        [dict(block=3, region="background", border=b, scale=s) for b, s in ((True, 2.0), (False, 4.0))] + \
        [dict(block=4, region=r, border=False, scale=s) for r, s in (("object", 3.0), ("background", 3.0))]
    # block 0: 2 of the C(10, 5) = 252 labellings as extreme, p = 0.008; block 4: equal scales, p = 1
    assert fr.region_routing_reading(pd.DataFrame(rows)) == [
        "block 0: object 1.0 (n = 5) against background 8.0 (n = 5), p < 0.01; border 8.0 (n = 5) against centre "
        "1.0 (n = 5), p < 0.01.",
        "block 3: no object window (background n = 2); border 2.0 (n = 1) against centre 4.0 (n = 1), p = 1.00.",
        "block 4: object 3.0 (n = 1) against background 3.0 (n = 1), p = 1.00; centre windows only: object 3.0 "
        "(n = 1) against background 3.0 (n = 1), p = 1.00."]


def test_the_layer_and_usage_readings_count_parameters_and_routing_samples():
    from convlora_lite.peft.conv_lora import ConvLoRALinear

    layer = ConvLoRALinear(torch.nn.Linear(12, 36), rank=3, alpha=32)
    # 8 experts of 3 * 3 * 3 * 3 + 3 = 84 parameters, and w_gate, w_noise of 3 x 8: 672 + 48 = 720
    assert fr.layer_reading(layer, 1.55e-6) == (
        "Rebuilt by hand, the layer equals ConvLoRALinear to 1.5e-06 (asserted at 0.0001); its mixture adds 720 "
        "parameters per layer over LoRA: 8 experts (672) and the gate's two 3 x 8 matrices (48).")
    usage = pd.DataFrame([dict(block=b, kind=k, expert=e, scale=e + 1, count=c)
                          for b, k, counts in ((0, "windowed", (5, 3, 2, 0)), (2, "global", (0, 4, 0, 0)))
                          for e, c in enumerate(counts)])
    assert fr.usage_reading(usage) == ("block 0 (windowed, n = 10): 3 of 4 experts used, top two 80 %; "
                                       "block 2 (global, n = 4): 1 of 4 experts used, top two 100 %.")
