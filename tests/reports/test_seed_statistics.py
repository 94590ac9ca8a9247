"""Seed statistics against independent references: scipy's paired t-test, a hand table, the normal approximation
and a simulation of the test itself."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from convlora_lite.reports import seed_statistics as ss


def test_the_interval_is_scipy_s_paired_t_interval():
    a, b = np.array([71.0, 74.5, 69.2, 73.3]), np.array([70.1, 71.0, 70.4, 70.9])
    expected = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.95)
    assert ss.difference_interval(a - b) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert ss.CONFIDENCE == 0.95 and ss.difference_interval([1.0]) is None


def test_the_minimum_detectable_difference_matches_a_hand_table():
    # sd 1.5 of the per-seed differences, paired t-test at 80 % power and 5 % two-sided level, by hand (noncentral t)
    for n, expected in ((3, 4.9), (5, 2.52), (8, 1.73), (10, 1.49), (12, 1.33)):
        assert ss.minimum_detectable_difference(1.5, n) == pytest.approx(expected, abs=0.006), n
    assert ss.POWER_AND_LEVEL == "80 % power, 5 % two-sided level"
    assert ss.minimum_detectable_difference(1.5, 1) is None and ss.minimum_detectable_difference(np.nan, 3) is None
    assert ss.minimum_detectable_difference(0.0, 3) == 0.0


def test_for_many_seeds_it_approaches_the_normal_approximation():
    sd, n = 2.0, 400
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / np.sqrt(n)
    exact = ss.minimum_detectable_difference(sd, n)
    assert exact == pytest.approx(normal, rel=0.005) and exact > normal  # t's heavier tails need a little more


def test_a_simulated_paired_t_test_finds_the_minimum_detectable_difference_80_percent_of_the_time():
    rng = np.random.default_rng(0)
    sd, n, trials = 3.0, 5, 40_000
    mdd = ss.minimum_detectable_difference(sd, n)
    differences = rng.normal(mdd, sd, size=(trials, n))
    p = stats.ttest_1samp(differences, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.01)  # binomial sd of the rate: 0.002
    assert ss.paired_power(0.0, sd, n) == pytest.approx(0.05)  # no difference: rejected at the level


def test_paired_comparison_pairs_the_seeds_both_methods_ran():
    rows = [("conv_lora", 1, 0.75), ("conv_lora", 2, 0.72), ("conv_lora", 3, 0.70),
            ("lora", 1, 0.70), ("lora", 2, 0.71), ("lora", 4, 0.60)]  # seed 3 and 4: one method each
    runs = pd.DataFrame([dict(dataset="synth_leaf", split="test", metric="iou", method=m, seed=s, value=v)
                         for m, s, v in rows])
    (row,) = ss.paired_comparison(runs, "conv_lora", "lora").itertuples()
    assert row.seeds == (1, 2) and row.n == 2
    assert row.differences == pytest.approx((5.0, 1.0))
    assert (row.mean_a, row.mean_b, row.mean) == pytest.approx((73.5, 70.5, 3.0))
    assert (row.sd_a, row.sd_b, row.sd) == pytest.approx((np.sqrt(4.5), np.sqrt(0.5), np.sqrt(8.0)))
    half = stats.t.ppf(0.975, 1) * np.sqrt(8.0) / np.sqrt(2)
    assert (row.low, row.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert row.mdd == pytest.approx(ss.minimum_detectable_difference(np.sqrt(8.0), 2))
    assert ss.paired_comparison(runs, "conv_lora", "vpt").empty
