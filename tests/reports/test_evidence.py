"""Notebook 12's evidence on hand-written runs whose differences, intervals and detectable differences are computed
by hand (scipy's t quantile and an independent power simulation)."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from convlora_lite.bench.grid_cost import paper_scale_plan
from convlora_lite.reports import evidence
from convlora_lite.reports.seed_statistics import minimum_detectable_difference


def _runs(values: dict, dataset: str, metric: str) -> pd.DataFrame:
    """``collect_runs``-shaped rows of one task: ``{method: [value per seed]}`` (fractions)."""
    return pd.DataFrame([dict(dataset=dataset, method=method, seed=seed, split="test", metric=metric, value=value,
                              run_dir=f"{dataset}/{method}/{seed}")
                         for method, seeds in values.items() for seed, value in enumerate(seeds)])


def test_conv_lora_evidence_pairs_seeds_leaves_failed_runs_out_and_signs_ber():
    polyp = _runs({"lora": [0.80, 0.82, 0.84, 0.81], "conv_lora": [0.81, 0.84, 0.83, 0.20]}, "synth_polyp", "s_alpha")
    sbu = _runs({"lora": [0.10, 0.12], "conv_lora": [0.09, 0.12]}, "synth_sbu", "ber")
    floors = [{"test": {"s_alpha": 0.25}}, {"test": {"ber": 0.5}}]
    # seed 3's Conv-LoRA (20.0) does not beat the floor (25.0): left out, 3 pairs remain with differences 1, 2, -1
    table = evidence.conv_lora_evidence([polyp, sbu], floors).set_index("label")
    row = table.loc["polyp"]
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, -1], ddof=1) / math.sqrt(3)
    assert (row["n"], row["failed"]) == (3, 1)
    assert row["gain"] == pytest.approx(2 / 3) and (row["low"], row["high"]) == pytest.approx((2 / 3 - half,
                                                                                                 2 / 3 + half))
    assert row["mdd"] == pytest.approx(minimum_detectable_difference(np.std([1, 2, -1], ddof=1), 3))
    assert row["paper_gain"] == pytest.approx((0.8 + 0.6) / 2)  # Kvasir and CVC-612
    assert not row["seen"]  # 0.7 against an MDD of about 6
    ber = table.loc["sbu"]  # BER: LoRA - Conv-LoRA = 1, 0 per seed: a gain of 0.5 in Conv-LoRA's favour
    assert ber["gain"] == pytest.approx(0.5) and ber["low"] < 0.5 < ber["high"]
    assert ber["paper_gain"] == pytest.approx(0.2)
    lines = evidence.evidence_reading(evidence.conv_lora_evidence([polyp, sbu], floors))
    assert lines[0].startswith("polyp (s_alpha): +0.7 (95 % CI ") and "includes 0; 3 paired seeds" in lines[0]
    assert "1 failed run(s) left out" in lines[0] and lines[0].endswith("so the paper's gain of +0.7 could not have "
                                                                        "been seen.")


def test_seeds_needed_agrees_with_a_simulated_paired_t_test():
    n = evidence.seeds_needed(1.0, 1.0)
    assert evidence.seeds_needed(1.0, 1.0) == 10  # the noncentral t: 10 pairs reach 80 % power at d = 1
    rng = np.random.default_rng(0)

    def power(pairs):
        samples = rng.normal(1.0, 1.0, size=(20_000, pairs))
        t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(pairs))
        return np.mean(np.abs(t) > stats.t.ppf(0.975, pairs - 1))

    assert power(n) >= 0.79 and power(n - 1) < 0.8
    assert evidence.seeds_needed(0.01, 10.0, most=50) is None


def test_the_answer_counts_intervals_and_says_the_question_stays_open_when_nothing_could_be_seen():
    course = pd.DataFrame([dict(label="polyp", metric="s_alpha", n=3, failed=0, gain=0.5, low=-2.0, high=3.0, sd=1.0,
                                mdd=4.0, paper_gain=0.7, seen=False)], columns=evidence.COLUMNS)
    experiment = pd.DataFrame([dict(label="prior texture: d (conv_lora - lora)", metric="iou", n=10, failed=0,
                                    gain=0.5, low=-1.2, high=2.2, sd=2.4, mdd=2.4, paper_gain=None, seen=None)],
                              columns=evidence.COLUMNS)
    lines = evidence.answer(course, experiment, {"H1": "not detected", "H2": "not detected"}, (2, 2, 15.0, 19.0))
    assert lines[0].startswith("Does Conv-LoRA beat LoRA on the course's tasks? Over 1 task(s) with at least 2 paired "
                               "seeds, its interval lies above 0 on 0, below 0 on 0 and includes 0 on 1; a gain the "
                               "size of the paper's could have been seen on 0 of them")
    assert "+0.5 (-1.2 to +2.2) over 10 seeds, which detect 2.4 points" in lines[1]
    assert lines[2].startswith("What is robust: adapting the encoder at all.") and "in 2 of 2" in lines[2]
    assert "stays open" in lines[3] and "H1 not detected" in lines[3]
    seen = course.assign(seen=True, low=0.1)  # an interval above 0 where a paper-sized gain could be seen
    verdicts = {"H1": "not detected", "H2": "not detected"}
    lines = evidence.answer(seen, experiment, verdicts, (2, 1, -1.0, 5.0))
    assert "ahead with an interval above 0 on 1 task(s)" in lines[3] and "could have seen" in lines[3]
    assert lines[2].startswith("Adapting the encoder at all, here:")


def test_the_detectability_table_and_the_paper_scale_plan():
    course = pd.DataFrame([dict(label="polyp", metric="s_alpha", n=3, failed=0, gain=0.5, low=-2.0, high=3.0, sd=1.0,
                                mdd=4.0, paper_gain=1.0, seen=False)], columns=evidence.COLUMNS)
    table = evidence.detectability_table(course)
    assert table.loc["polyp", "seeds to see it"] == "10" and table.loc["polyp", "paper-sized gain seen?"] == "no"
    plan = paper_scale_plan(["polyp"], ["lora"], seeds=2, profiles=("t4",))
    assert plan["runs"] == 2 and plan["hours"]["t4"] > 0
    assert plan["command"] == ("convlora reproduce --preset paper --datasets polyp --methods lora --seeds 2 "
                               "--output-dir runs/paper")
