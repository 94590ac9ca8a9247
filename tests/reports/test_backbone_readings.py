"""The same methods on two backbones, on hand-written runs whose paired differences are computed in the comments."""
import math

import pandas as pd
import pytest
from scipy import stats

from convlora_lite.reports.backbone_readings import backbone_readings, backbone_summary

#: predicting background everywhere on synth_polyp's test split (fractions, as trivial_baseline gives them).
FLOOR = {"test": {"s_alpha": 0.40, "e_phi": 0.30}}


def _runs(values: dict, tag: str) -> pd.DataFrame:
    """``collect_runs``-shaped rows: ``{method: [S_alpha per seed]}``, E_phi fixed at 0.5."""
    return pd.DataFrame([dict(dataset="synth_polyp", method=method, seed=seed, split="test", metric=metric,
                              value=value if metric == "s_alpha" else 0.5, run_dir=f"{tag}/{method}/{seed}")
                         for method, seeds in values.items() for seed, value in enumerate(seeds)
                         for metric in ("s_alpha", "e_phi")])


def test_each_method_is_paired_across_backbones_then_conv_lora_against_lora_on_each():
    sam = _runs({"lora": [0.70, 0.72, 0.74], "conv_lora": [0.71, 0.71, 0.71]}, "sam")
    sam2 = _runs({"lora": [0.80, 0.83, 0.81], "conv_lora": [0.75, 0.76, 0.80]}, "sam2")
    lines = backbone_readings(sam, sam2, "micro_sam", "micro_sam2", FLOOR)
    lora = next(line for line in lines if line.startswith("lora, micro_sam2 - micro_sam: s_alpha"))
    # per seed 10, 11, 7: mean 9.33, sd sqrt(13/3) = 2.08; half width t(0.975, 2) * 2.08 / sqrt(3) = 5.17
    half = stats.t.ppf(0.975, 2) * math.sqrt(13 / 3) / math.sqrt(3)
    assert half == pytest.approx(5.171, abs=1e-3)
    assert ("micro_sam2 81.3 vs micro_sam 72.0, difference +9.3 over 3 seeds (per seed +10.0, +11.0, +7.0; "
            "95 % CI +4.2 to +14.5, above 0)") in lora
    on_sam2 = next(line for line in lines if line.startswith("On micro_sam2, Conv-LoRA - LoRA: s_alpha"))
    # per seed -5, -7, -1
    assert "Conv-LoRA 77.0 vs LoRA 81.3, difference -4.3" in on_sam2 and "per seed -5.0, -7.0, -1.0" in on_sam2
    assert sum(line.startswith("On micro_sam, Conv-LoRA - LoRA") for line in lines) == 2  # s_alpha and e_phi


def test_runs_at_the_floor_are_named_and_left_out():
    sam = _runs({"lora": [0.70, 0.72, 0.74]}, "sam")
    sam2 = _runs({"lora": [0.80, 0.39, 0.81]}, "sam2")  # seed 1 scores below the 40.0 floor
    lines = backbone_readings(sam, sam2, "micro_sam", "micro_sam2", FLOOR)
    assert lines[0].startswith("micro_sam2: synth_polyp: 1 of 3 lora seeds never left the trivial baseline (seed 1")
    paired = next(line for line in lines if line.startswith("lora, micro_sam2 - micro_sam: s_alpha"))
    assert "over 2 seeds (per seed +10.0, +7.0;" in paired
    one = backbone_readings(sam.iloc[:2], sam2.iloc[:2], "micro_sam", "micro_sam2", FLOOR)
    assert any("on 1 paired seed(s): no interval, nothing detectable." in line for line in one)


def test_the_summary_is_one_sentence_on_the_selection_metric():
    sam = _runs({"lora": [0.70, 0.72, 0.74], "conv_lora": [0.71, 0.71, 0.71]}, "sam")
    sam2 = _runs({"lora": [0.80, 0.83, 0.81], "conv_lora": [0.75, 0.76, 0.80]}, "sam2")
    # lora: +10, +11, +7 (the interval of the first test); conv_lora: +4, +5, +9: mean 6.0, sd sqrt(7);
    # Conv-LoRA - LoRA on micro_sam: +1, -1, -3 (mean -1, sd 2); on micro_sam2: -5, -7, -1 (mean -4.33, sd sqrt(28/3))
    half = stats.t.ppf(0.975, 2) * math.sqrt(7) / math.sqrt(3)
    half_sam, half_sam2 = (stats.t.ppf(0.975, 2) * sd / math.sqrt(3) for sd in (2, math.sqrt(28 / 3)))
    assert backbone_summary(sam, sam2, "micro_sam", "micro_sam2", FLOOR) == (
        "synth_polyp/test s_alpha, micro_sam2 minus micro_sam on the same seeds: lora +9.3 (95 % CI +4.2 to +14.5); "
        f"conv_lora +6.0 (95 % CI {6 - half:+.1f} to {6 + half:+.1f}); Conv-LoRA minus LoRA: -1.0 (95 % CI "
        f"{-1 - half_sam:+.1f} to {-1 + half_sam:+.1f}) on micro_sam, -4.3 (95 % CI {-13 / 3 - half_sam2:+.1f} to "
        f"{-13 / 3 + half_sam2:+.1f}) on micro_sam2.")
    assert (round(-1 - half_sam, 1), round(-13 / 3 + half_sam2, 1)) == (-6.0, 3.3)
