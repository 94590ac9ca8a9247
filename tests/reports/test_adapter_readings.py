"""The encoder adapters against VPT and decoder-only, on hand-written runs whose paired differences and intervals are
computed by hand in the comments."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from convlora_lite.reports.adapter_readings import (
    adapter_effect_reading,
    adapter_effects,
    budget_parity_reading,
    encoder_gain_range,
)


def _runs(values: dict, dataset="synth_polyp", split="test") -> pd.DataFrame:
    """``collect_runs``-shaped rows: ``{(method, metric): [value per seed]}`` (fractions)."""
    return pd.DataFrame([dict(dataset=dataset, method=method, seed=seed, split=split, metric=metric, value=value)
                         for (method, metric), seeds in values.items() for seed, value in enumerate(seeds)])


def test_gains_are_paired_per_seed_with_a_t_interval():
    runs = _runs({("lora", "s_alpha"): [0.80, 0.82, 0.84], ("vpt", "s_alpha"): [0.70, 0.71, 0.69],
                  ("lora", "e_phi"): [0.1, 0.1, 0.1], ("vpt", "e_phi"): [0.9, 0.9, 0.9]})
    (row,) = adapter_effects(runs).itertuples()  # the selection metric (S_alpha) only
    # per seed 10, 11, 15: mean 12, sd sqrt(7), half width t(0.975, 2) sqrt(7) / sqrt(3)
    half = stats.t.ppf(0.975, 2) * math.sqrt(7) / math.sqrt(3)
    assert (row.metric, row.n, row.adapter_mean, row.other_mean, row.gain) == ("s_alpha", 3, 82.0, 70.0, 12.0)
    assert (row.low, row.high) == pytest.approx((12 - half, 12 + half), abs=1e-9)
    assert half == pytest.approx(6.572, abs=1e-3) and row.at_floor == () and np.isnan(row.floor)
    (line,) = adapter_effect_reading(adapter_effects(runs))
    assert line == ("synth_polyp/test s_alpha, adapting the encoder wins every comparison, each interval above 0: "
                    "lora 82.0 vs vpt 70.0: better by 12.0 (95 % CI +5.4 to +18.6 over 3 paired seeds).")
    close = _runs({("lora", "s_alpha"): [0.80, 0.70, 0.90], ("vpt", "s_alpha"): [0.75, 0.76, 0.77]})  # 5, -6, 13
    assert adapter_effect_reading(adapter_effects(close))[0].startswith(
        "synth_polyp/test s_alpha, 0 of 1 gains have an interval above 0: lora 80.0 vs vpt 76.0: better by 4.0")
    assert adapter_effects(close, adapters=("conv_lora",)).empty  # nothing to compare


def test_a_lower_is_better_metric_is_signed_so_that_a_gain_is_positive():
    # SBU's BER: decoder-only 10, 12 and LoRA 7, 8 -> gains 3, 4: mean 3.5, interval flipped to the gain's side
    runs = _runs({("decoder_only", "ber"): [0.10, 0.12], ("lora", "ber"): [0.07, 0.08]}, dataset="synth_sbu")
    (row,) = adapter_effects(runs).itertuples()
    half = stats.t.ppf(0.975, 1) * np.std([3, 4], ddof=1) / math.sqrt(2)
    assert row.gain == 3.5 and (row.low, row.high) == pytest.approx((3.5 - half, 3.5 + half))
    (line,) = adapter_effect_reading(adapter_effects(runs))
    assert line.startswith("synth_sbu/test ber (lower is better), 0 of 1 gains have an interval above 0: lora 7.5 vs "
                           "decoder_only 11.0: better by 3.5 (95 % CI")


def test_no_gain_is_read_from_a_method_at_the_all_background_floor():
    # Trans10K's failure: LoRA at the all-background mIoU (6.3 vs 6.2, within 0.5), decoder-only above it (7.2)
    runs = _runs({("decoder_only", "miou"): [0.071, 0.073], ("lora", "miou"): [0.062, 0.064]},
                 dataset="synth_trans10k")
    (row,) = adapter_effects(runs, {"test": {"miou": 0.062, "acc": 0.742}}).itertuples()
    assert row.at_floor == ("lora",) and row.floor == 6.2
    (line,) = adapter_effect_reading(adapter_effects(runs, {"test": {"miou": 0.062}}))
    assert line == ("synth_trans10k/test miou, no gain can be read with an interval here: lora 6.3 vs decoder_only "
                    "7.2: lora at the floor, no gain read. Predicting background everywhere scores 6.2: a method at "
                    "that floor learned nothing on this metric.")
    assert encoder_gain_range(adapter_effects(runs, {"test": {"miou": 0.062}})) is None


def test_gains_are_differences_of_the_rounded_means_and_their_range_is_summed_up():
    # 64.94 and 84.06 print as 64.9 and 84.1: the gain printed is 19.2, not the unrounded 19.12
    runs = _runs({("decoder_only", "s_alpha"): [0.6494, 0.6494], ("lora", "s_alpha"): [0.8406, 0.8506],
                  ("conv_lora", "s_alpha"): [0.70, 0.60]})
    effects = adapter_effects(runs)
    assert list(effects["gain"]) == [19.7, 0.1]  # 84.6 - 64.9; 65.0 - 64.9
    # LoRA's interval lies above 0 (per seed 19.12, 20.12), Conv-LoRA's does not (5.06, -4.94)
    assert encoder_gain_range(effects) == (2, 1, 0.1, 19.7)


def test_the_budget_sentence_compares_vpt_and_lora():
    assert budget_parity_reading({"vpt": 631_000, "lora": 632_262}) == [
        "VPT trains 631,000 parameters and LoRA 632,262: at nearly the same (+0.2 %) budget, which parameters train "
        "matters, not how many."]
    assert budget_parity_reading({"vpt": 7, "lora": 7})[0].startswith("VPT trains 7 parameters and LoRA 7: at exactly")
    assert budget_parity_reading({"lora": 7}) == []
